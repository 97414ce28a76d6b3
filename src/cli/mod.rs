//! The command line as README.md describes it: parsing and dispatch. Each command lives in its own
//! file; a command that is not built yet says so plainly and exits 1.
//!
//! Besides the subcommands, `galleryfs ACCOUNT MOUNTPOINT [-o OPTIONS]` is the form `mount.fuse3` uses for fstab
//! type `fuse.galleryfs`; it is recognised before clap sees the arguments.

mod completions;
mod demo_cmd;
mod desktop_cmd;
mod emulator_cmd;
mod files_cmd;
mod login_cmd;
mod mount_cmd;
mod status_cmd;
mod trash_cmd;

use crate::error::{exit, CliError};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "galleryfs",
    version,
    about = "Mount the OneDrive Samsung Gallery folder as a local directory",
    long_about = "Mount the OneDrive Samsung Gallery folder as a local directory: listings and thumbnails come \
from a local metadata store, originals are fetched on demand and kept in a size-bounded cache, and edits, deletes \
and renames go back to OneDrive.\n\n\
Besides the subcommands, `galleryfs ACCOUNT MOUNTPOINT [-o OPTIONS]` mounts: the form mount(8) uses for an fstab \
line of type fuse.galleryfs (or type galleryfs, through mount.galleryfs).",
    after_long_help = "Examples:\n  \
galleryfs login --client-id APP-ID\n  \
galleryfs mount ~/Gallery -o cache_size=20G\n  \
galleryfs pin ~/Gallery/DCIM/Camera\n  \
fstab: default /home/me/Gallery fuse.galleryfs rw,_netdev,user,uid=1000,gid=1000 0 0\n\n\
Files: configuration and tokens in $XDG_CONFIG_HOME/galleryfs; the metadata store, caches and the log \
(ACCOUNT/galleryfs.log) in $XDG_CACHE_HOME/galleryfs. Every file of a mount carries the extended attributes \
user.galleryfs.state (cloud, cached, pinned, dirty, conflict) and user.galleryfs.id."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone, Default)]
pub struct AccountArg {
    /// Account name.
    #[arg(long, default_value = "default")]
    pub account: String,
}

#[derive(Debug, Args, Clone)]
pub struct LoginArgs {
    #[command(flatten)]
    pub account: AccountArg,
    /// Application (client) id of the app registration to sign in with.
    #[arg(long)]
    pub client_id: Option<String>,
    /// Tenant: `consumers` (personal accounts, default), `common`, `organizations` or a tenant id.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Microsoft Graph base URL (default https://graph.microsoft.com/v1.0).
    #[arg(long)]
    pub graph_url: Option<String>,
    /// Identity platform base URL (default https://login.microsoftonline.com).
    #[arg(long)]
    pub login_url: Option<String>,
    /// Gallery folder, a path from the drive root (default: `Samsung Gallery` in the Pictures special folder).
    #[arg(long)]
    pub folder: Option<String>,
    /// Sign in in a browser (authorization code + PKCE, loopback redirect) instead of by device code.
    #[arg(long)]
    pub browser: bool,
}

#[derive(Debug, Args, Clone)]
pub struct LogoutArgs {
    #[command(flatten)]
    pub account: AccountArg,
    /// Also delete the metadata store and caches of the account.
    #[arg(long)]
    pub purge_cache: bool,
}

#[derive(Debug, Args, Clone)]
pub struct MountArgs {
    #[command(flatten)]
    pub account: AccountArg,
    /// An empty directory to show the gallery in (`mkdir -p ~/Gallery`).
    pub mountpoint: PathBuf,
    /// Mount options, comma separated (`-o ro,cache_size=20G`); may be repeated.
    #[arg(short = 'o', value_name = "OPTIONS", long_help = mount_options_long_help())]
    pub options: Vec<String>,
    /// Stay in the foreground, logging to stderr too.
    #[arg(short = 'f', long = "foreground")]
    pub foreground: bool,
}

fn mount_options_long_help() -> String {
    format!(
        "Mount options, comma separated (`-o ro,cache_size=20G`); may be repeated.\n\n{}",
        crate::mount_options::options_help().trim_end()
    )
}

/// The paths of `pin`, `unpin` and `free`.
#[derive(Debug, Args, Clone)]
pub struct FilesArgs {
    /// Only act on paths in this account's mount (default: whichever mount holds them).
    #[arg(long)]
    pub account: Option<String>,
    /// Files or folders inside a galleryfs mount (a folder stands for every file below it).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct DemoArgs {
    /// An empty directory to show the sample gallery in (`mkdir -p ~/Gallery`).
    pub mountpoint: PathBuf,
    /// Also write the log to the terminal (it always goes to the demo account's log file).
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

#[derive(Debug, Args, Clone)]
pub struct EmulatorArgs {
    /// Address of the API listener.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Seed `Pictures/Samsung Gallery` with N photos and videos.
    #[arg(long, default_value_t = 0)]
    pub seed_gallery: usize,
    /// Keep the emulator's drive in this file across restarts.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Approve every device code at once (no browser step).
    #[arg(long)]
    pub auto_approve: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign in to a Microsoft account (device code by default).
    Login(LoginArgs),
    /// Forget an account's tokens.
    Logout(LogoutArgs),
    /// Mount the gallery.
    Mount(MountArgs),
    /// Unmount a galleryfs mount.
    Unmount {
        /// Where the gallery is mounted.
        mountpoint: PathBuf,
    },
    /// What galleryfs is doing.
    Status {
        #[command(flatten)]
        account: AccountArg,
        /// One JSON object with exact figures, for scripts.
        #[arg(long)]
        json: bool,
        /// Files inside a mount: their state instead of the account's.
        paths: Vec<PathBuf>,
    },
    /// Always keep these files on this device.
    Pin(FilesArgs),
    /// Let these files be evicted again.
    Unpin(FilesArgs),
    /// Give the space of these files back (keep them online only).
    Free(FilesArgs),
    /// OneDrive's recycle bin, for what galleryfs deleted.
    Trash {
        #[command(subcommand)]
        action: TrashAction,
    },
    /// Try galleryfs without an account: the bundled emulator with a sample gallery, mounted.
    Demo(DemoArgs),
    /// Run the Graph emulator.
    Emulator(EmulatorArgs),
    /// File-manager actions (Nautilus, Dolphin, Thunar) for the current user.
    Desktop {
        #[command(subcommand)]
        action: DesktopAction,
    },
    /// Print a shell completion script (`galleryfs completions bash > /etc/bash_completion.d/galleryfs`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (galleryfs.1 and one per subcommand) into DIR; used when packaging.
    #[command(hide = true)]
    Manpages { dir: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum DesktopAction {
    /// Add "Keep on this device", "Free up space" and "Show sync status" to the file managers' context menus,
    /// and state emblems where the file manager supports them.
    Install,
    /// Remove what `desktop install` added (and nothing else).
    Uninstall,
    /// Run one action on the selected files and show its outcome in a dialog (what the menus call).
    #[command(hide = true)]
    Run {
        #[arg(value_enum)]
        action: desktop_cmd::Action,
        paths: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrashAction {
    /// What was deleted through galleryfs in the last 30 days.
    List {
        #[command(flatten)]
        account: AccountArg,
    },
    /// Bring items back from OneDrive's recycle bin (by id or by the path `trash list` shows).
    Restore {
        #[command(flatten)]
        account: AccountArg,
        items: Vec<String>,
    },
    /// Send deletes held by the big-delete guard to OneDrive's recycle bin.
    ConfirmDeletes {
        #[command(flatten)]
        account: AccountArg,
    },
    /// Drop every pending delete: the items stay on OneDrive and reappear at the next sync.
    CancelDeletes {
        #[command(flatten)]
        account: AccountArg,
    },
}

const SUBCOMMANDS: &[&str] = &[
    "login",
    "logout",
    "mount",
    "unmount",
    "status",
    "pin",
    "unpin",
    "free",
    "trash",
    "demo",
    "emulator",
    "desktop",
    "completions",
    "manpages",
    "help",
];

/// Rewrites `galleryfs ACCOUNT MOUNTPOINT [-o OPTS]` (mount.fuse3's form) into
/// `galleryfs mount --account ACCOUNT MOUNTPOINT [-o OPTS]`.
pub fn normalize_args(args: Vec<String>) -> Vec<String> {
    let Some(first) = args.get(1) else { return args };
    if first.starts_with('-') || SUBCOMMANDS.contains(&first.as_str()) {
        return args;
    }
    let mut out = vec![args[0].clone(), "mount".into(), "--account".into(), first.clone()];
    out.extend(args[2..].iter().cloned());
    out
}

/// Entry point of the binary; returns the process exit code.
pub fn main() -> i32 {
    let args = normalize_args(std::env::args().collect());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { exit::OK };
            let _ = e.print();
            return code;
        }
    };
    match run(cli) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("galleryfs: {}", e.message);
            e.code
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    if !matches!(cli.command, Command::Mount(_) | Command::Emulator(_) | Command::Demo(_)) {
        crate::logging::init_for_command();
    }
    match cli.command {
        Command::Login(args) => login_cmd::login(args),
        Command::Logout(args) => login_cmd::logout(args),
        Command::Emulator(args) => emulator_cmd::emulator(args),
        Command::Mount(args) => mount_cmd::mount(args),
        Command::Unmount { mountpoint } => crate::daemon::unmount(&mountpoint).map_err(CliError::failure),
        Command::Status { json, paths, .. } if !paths.is_empty() => files_cmd::status_paths(&paths, json),
        Command::Status { account, json, .. } => status_cmd::status(&account.account, json),
        Command::Pin(args) => files_cmd::pin(files_cmd::in_account(args)?),
        Command::Unpin(args) => files_cmd::unpin(files_cmd::in_account(args)?),
        Command::Free(args) => files_cmd::free(files_cmd::in_account(args)?),
        Command::Trash { action } => match action {
            TrashAction::List { account } => trash_cmd::list(&account.account),
            TrashAction::Restore { account, items } => trash_cmd::restore(&account.account, &items),
            TrashAction::ConfirmDeletes { account } => trash_cmd::confirm_deletes(&account.account),
            TrashAction::CancelDeletes { account } => trash_cmd::cancel_deletes(&account.account),
        },
        Command::Demo(args) => demo_cmd::demo(&args.mountpoint, args.verbose),
        Command::Desktop { action } => match action {
            DesktopAction::Install => desktop_cmd::install(),
            DesktopAction::Uninstall => desktop_cmd::uninstall(),
            DesktopAction::Run { action, paths } => desktop_cmd::run(action, &paths),
        },
        Command::Completions { shell } => completions::completions(shell),
        Command::Manpages { dir } => completions::manpages(&dir),
    }
}

#[allow(dead_code)] // every command is built now; kept for the next one
fn not_built(what: &str) -> Result<(), CliError> {
    Err(CliError::failure(format!(
        "`{what}` is not built yet in this version of galleryfs"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn fstab_form_becomes_mount() {
        assert_eq!(
            normalize_args(s(&["galleryfs", "work", "/mnt/g", "-o", "rw,_netdev"])),
            s(&["galleryfs", "mount", "--account", "work", "/mnt/g", "-o", "rw,_netdev"])
        );
        assert_eq!(
            normalize_args(s(&["galleryfs", "status", "--json"])),
            s(&["galleryfs", "status", "--json"])
        );
        let cli = Cli::try_parse_from(normalize_args(s(&["galleryfs", "work", "/mnt/g", "-o", "ro"]))).unwrap();
        match cli.command {
            Command::Mount(m) => {
                assert_eq!(m.account.account, "work");
                assert_eq!(m.options, vec!["ro".to_string()]);
            }
            other => panic!("{other:?}"),
        }
    }
}
