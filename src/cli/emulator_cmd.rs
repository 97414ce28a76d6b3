//! `galleryfs emulator`: run the Graph emulator in the foreground, printing its URLs as one JSON line, until
//! SIGINT or SIGTERM (then saving `--state` if given).

use super::EmulatorArgs;
use crate::emulator::{self, EmulatorConfig};
use crate::error::CliError;
use std::io::Write;

pub fn emulator(args: EmulatorArgs) -> Result<(), CliError> {
    let listen = args
        .listen
        .parse()
        .map_err(|_| CliError::usage(format!("--listen: '{}' is not ADDR:PORT", args.listen)))?;
    let config = EmulatorConfig {
        listen,
        seed_gallery: args.seed_gallery,
        state_file: args.state,
        auto_approve: args.auto_approve,
        ..Default::default()
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| CliError::failure(format!("starting the runtime: {e}")))?;
    runtime.block_on(async move {
        let handle = emulator::start(config)
            .await
            .map_err(|e| CliError::failure(format!("emulator: {e:#}")))?;
        // The handlers are in place before the ready line: a SIGTERM sent as soon as it is read saves the state.
        let signals = wait_for_signal()?;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", handle.ready_json());
        let _ = out.flush();
        drop(out);
        signals.await;
        handle
            .shutdown()
            .await
            .map_err(|e| CliError::failure(format!("emulator shutdown: {e:#}")))
    })
}

/// Installs the SIGINT and SIGTERM handlers now; the future ends at the first of the two.
fn wait_for_signal() -> Result<impl std::future::Future<Output = ()>, CliError> {
    use tokio::signal::unix::{signal, SignalKind};
    let handler = |kind| signal(kind).map_err(|e| CliError::failure(format!("signal handler: {e}")));
    let mut term = handler(SignalKind::terminate())?;
    let mut int = handler(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}
