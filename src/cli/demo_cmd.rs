//! `galleryfs demo MOUNTPOINT`: try galleryfs without a Microsoft account. Starts the bundled Graph emulator with
//! a sample Samsung Gallery (viewable photos with EXIF and thumbnails, a playable video), signs in to it by device
//! code (the emulator approves the code itself), mounts it in the foreground as account `demo`, and unmounts on
//! Ctrl-C or SIGTERM. The terminal gets a few lines for people; the log goes to the demo account's log file (and
//! to the terminal too with `-v`). Every run starts from a fresh sample; the `demo` account and its cache stay
//! until `galleryfs logout --account demo --purge-cache`, which the last line says.

use crate::config::{AccountPaths, AccountSettings};
use crate::daemon::{self, ReadyReporter};
use crate::emulator::{self, EmulatorConfig};
use crate::error::CliError;
use crate::mount::{serve, MountRequest};
use crate::mount_options::MountOptions;
use crate::remote::auth::{http_client, sign_in_with_device_code, TokenStore};
use crate::remote::Endpoints;
use std::path::Path;

pub const DEMO_ACCOUNT: &str = "demo";
/// Photos Camera Backup uploaded in the last days, in the demo drive's Camera Roll.
const DEMO_CAMERA_ROLL_ITEMS: usize = 12;
const DEMO_ITEMS: usize = 120;

pub fn demo(mountpoint: &Path, verbose: bool) -> Result<(), CliError> {
    daemon::check_fuse_available().map_err(CliError::failure)?;
    let mountpoint = daemon::check_mountpoint(mountpoint).map_err(CliError::failure)?;
    let paths = AccountPaths::new(DEMO_ACCOUNT);
    // Each demo is a fresh emulator: yesterday's metadata would describe another drive.
    if paths.cache_dir.exists() {
        std::fs::remove_dir_all(&paths.cache_dir)
            .map_err(|e| CliError::failure(format!("{}: {e}", paths.cache_dir.display())))?;
    }
    crate::logging::init_for_mount(&paths.log_file(), verbose).map_err(|e| CliError::failure(e.to_string()))?;

    let emu_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("galleryfs-emulator")
        .enable_all()
        .build()
        .map_err(|e| CliError::failure(e.to_string()))?;
    let emu = emu_rt
        .block_on(emulator::start(EmulatorConfig {
            seed_gallery: DEMO_ITEMS,
            seed_camera_roll: DEMO_CAMERA_ROLL_ITEMS,
            auto_approve: true,
            ..Default::default()
        }))
        .map_err(|e| CliError::failure(format!("cannot start the emulator: {e}")))?;
    emu.state.identity.set_poll_interval(1);
    let endpoints = Endpoints {
        graph_url: emu.graph_url(),
        login_url: emu.login_url(),
        ..Endpoints::default()
    };

    eprintln!(
        "galleryfs demo: a sample OneDrive runs at {} (no account needed)",
        emu.graph_url()
    );
    let tokens = emu_rt
        .block_on(async {
            let http = http_client()?;
            sign_in_with_device_code(&endpoints, &http, |prompt| {
                eprintln!(
                    "galleryfs demo: signing in by device code {} (approved by the emulator)",
                    prompt.user_code
                );
            })
            .await
        })
        .map_err(|e| CliError::failure(format!("demo sign-in failed: {e}")))?;
    TokenStore::new(paths.token_file.clone())
        .save(&tokens)
        .map_err(|e| CliError::failure(e.to_string()))?;
    AccountSettings {
        endpoints,
        folder: None,
    }
    .save(&paths.settings_file)
    .map_err(|e| CliError::failure(e.to_string()))?;

    eprintln!(
        "galleryfs demo: mounting {DEMO_ITEMS} sample photos and videos at {}; press Ctrl-C to stop",
        mountpoint.display()
    );
    eprintln!(
        "  try: ls -l {0}/DCIM/Camera; {1} status --account demo",
        mountpoint.display(),
        this_command()
    );
    eprintln!("  log: {}", paths.log_file().display());
    let mut reporter = ReadyReporter::from_env();
    let options = MountOptions {
        poll_interval: std::time::Duration::from_secs(5),
        ..MountOptions::default()
    };
    let result = serve(
        MountRequest {
            account: DEMO_ACCOUNT.into(),
            mountpoint: mountpoint.clone(),
            options,
        },
        &mut reporter,
    );
    // Nothing of the sample drive is kept: the emulator stops without waiting for its connections to close.
    drop(emu);
    emu_rt.shutdown_timeout(std::time::Duration::from_millis(200));
    result.map_err(CliError::failure)?;
    eprintln!(
        "galleryfs demo: unmounted {}. The next demo starts from a fresh sample.",
        mountpoint.display()
    );
    eprintln!(
        "  left behind: the signed-in account `demo` and its cache ({} in {}); remove both with:\n  {} logout --account demo --purge-cache",
        super::status_cmd::human_bytes(dir_size(&paths.cache_dir)),
        paths.cache_dir.display(),
        this_command()
    );
    Ok(())
}

/// How to run this binary from a shell: `galleryfs` when that is what PATH finds, else its full path (after
/// `cargo run`, for instance).
fn this_command() -> String {
    let me = std::env::current_exe().ok().and_then(|p| std::fs::canonicalize(p).ok());
    let on_path = daemon::which("galleryfs").and_then(|p| std::fs::canonicalize(p).ok());
    match me {
        Some(me) if on_path.as_ref() != Some(&me) => me.display().to_string(),
        _ => "galleryfs".to_string(),
    }
}

/// Bytes of the files below `dir` (as allocated: the content cache is sparse).
fn dir_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}
