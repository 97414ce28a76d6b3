//! `galleryfs mount [--account NAME] MOUNTPOINT [-o OPTIONS] [-f]` (and the fstab form `galleryfs ACCOUNT
//! MOUNTPOINT -o OPTIONS`): checks what can be checked at once (options, account, `/dev/fuse`, the mount point),
//! then serves in the foreground with `-f`, or in the background, returning only once the mount answers.

use super::MountArgs;
use crate::config::{validate_account_name, AccountPaths};
use crate::daemon::{self, Readiness, ReadyReporter};
use crate::error::CliError;
use crate::mount::{serve, MountRequest};
use crate::mount_options::MountOptions;

pub fn mount(args: MountArgs) -> Result<(), CliError> {
    let options = MountOptions::parse(&args.options).map_err(|e| CliError::usage(e.to_string()))?;
    // `-o account=` names the account when --account was left at its default (fstab lines can carry either).
    let account = match (&options.account, args.account.account.as_str()) {
        (Some(a), "default") => a.clone(),
        _ => args.account.account.clone(),
    };
    validate_account_name(&account).map_err(CliError::usage)?;
    daemon::check_fuse_available().map_err(CliError::failure)?;
    let mountpoint = daemon::check_mountpoint(&args.mountpoint).map_err(CliError::failure)?;
    let paths = AccountPaths::new(&account);

    if !args.foreground {
        let mut child_args = vec!["mount".to_string(), "--account".into(), account.clone()];
        child_args.push(mountpoint.display().to_string());
        for o in &args.options {
            child_args.push("-o".into());
            child_args.push(o.clone());
        }
        child_args.push("-f".into());
        return match daemon::spawn_background(&child_args).map_err(|e| CliError::failure(e.to_string()))? {
            Readiness::Ready => Ok(()),
            Readiness::Failed(msg) => Err(CliError::failure(msg)),
            Readiness::Vanished => Err(CliError::failure(format!(
                "the mount process ended before the mount was ready; see {}",
                paths.log_file().display()
            ))),
        };
    }

    crate::logging::init_for_mount(&paths.log_file(), true)
        .map_err(|e| CliError::failure(format!("{}: {e}", paths.log_file().display())))?;
    for ignored in &options.ignored {
        tracing::debug!(option = %ignored, "mount option accepted and ignored");
    }
    let mut reporter = ReadyReporter::from_env();
    let req = MountRequest {
        account,
        mountpoint,
        options,
    };
    serve(req, &mut reporter).map_err(|msg| {
        tracing::error!("{msg}");
        reporter.failed(&msg);
        CliError::failure(msg)
    })
}
