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
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", handle.ready_json());
        let _ = out.flush();
        drop(out);
        wait_for_signal().await?;
        handle
            .shutdown()
            .await
            .map_err(|e| CliError::failure(format!("emulator shutdown: {e:#}")))
    })
}

async fn wait_for_signal() -> Result<(), CliError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| CliError::failure(format!("signal handler: {e}")))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}
