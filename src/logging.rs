//! Logging setup with `tracing`: interactive commands log warnings to stderr; a mount logs to
//! `<cache>/<account>/galleryfs.log` (one line per event, appended, written through at once so a crash loses
//! nothing) and, in the foreground, to stderr too. `GALLERYFS_LOG` (an env-filter directive such as
//! `galleryfs=debug`) sets the level. Secrets never reach a log: modules log redacted URLs and no tokens.

use std::path::Path;
use std::sync::Mutex;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::EnvFilter;

/// HTTP libraries log request URLs at debug level, and pre-authenticated download and upload URLs carry their
/// credentials in the query: keep them at `warn` whatever the user asks for.
const QUIET_HTTP: &str = "reqwest=warn,hyper=warn,hyper_util=warn,h2=warn,rustls=warn,oauth2=warn,fuser=error,\
tungstenite=warn,tokio_tungstenite=warn";

fn filter(default: &str) -> EnvFilter {
    let user = std::env::var("GALLERYFS_LOG").ok().filter(|v| !v.trim().is_empty());
    let directives = format!("{},{QUIET_HTTP}", user.as_deref().unwrap_or(default));
    EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new(format!("{default},{QUIET_HTTP}")))
}

/// For short commands: warnings and errors to stderr.
pub fn init_for_command() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter("warn"))
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// For a mount: the account's log file, and stderr when `foreground`.
pub fn init_for_mount(log_file: &Path, foreground: bool) -> std::io::Result<()> {
    if let Some(dir) = log_file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log_file)?;
    let file = Mutex::new(file);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter("info"))
        .with_ansi(false)
        .with_target(false);
    let res = if foreground {
        builder.with_writer(file.and(std::io::stderr)).try_init()
    } else {
        builder.with_writer(file).try_init()
    };
    let _ = res;
    Ok(())
}
