//! `galleryfs login` and `galleryfs logout`: resolve the account's endpoints (flags, else saved settings, else
//! defaults), run the device-code or browser flow, store the tokens (0600) and the settings; logout deletes the
//! token file (and with `--purge-cache` the account's cache directory). Idempotent.

use super::{LoginArgs, LogoutArgs};
use crate::config::{validate_account_name, AccountPaths, AccountSettings};
use crate::error::CliError;
use crate::remote::auth::browser::{try_open_browser, DEFAULT_REDIRECT_TIMEOUT};
use crate::remote::auth::{
    http_client, sign_in_with_browser, sign_in_with_device_code, AuthError, StoredTokens, TokenStore,
};
use crate::remote::models::Drive;
use crate::remote::Endpoints;
use std::time::Duration;

pub fn login(args: LoginArgs) -> Result<(), CliError> {
    let account = args.account.account.clone();
    validate_account_name(&account).map_err(CliError::usage)?;
    let paths = AccountPaths::new(&account);
    let saved = AccountSettings::load(&paths.settings_file)
        .map_err(|e| CliError::failure(format!("cannot read the settings of account {account}: {e}")))?;
    let settings = resolve_settings(&args, saved.as_ref()).map_err(CliError::usage)?;
    let endpoints = settings.endpoints.clone();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failure(format!("cannot start the async runtime: {e}")))?;
    let tokens = runtime
        .block_on(run_flow(&endpoints, args.browser))
        .map_err(|e| CliError::failure(with_registration_hint(&e)))?;

    let store = TokenStore::new(paths.token_file.clone());
    store.save(&tokens).map_err(|e| CliError::failure(e.to_string()))?;
    settings
        .save(&paths.settings_file)
        .map_err(|e| CliError::failure(format!("cannot save {}: {e}", paths.settings_file.display())))?;

    let who = runtime.block_on(drive_owner(&endpoints, &tokens.access_token));
    match who {
        Some(name) => println!("signed in as {name} (account {account})"),
        None => println!("signed in (account {account})"),
    }
    Ok(())
}

pub fn logout(args: LogoutArgs) -> Result<(), CliError> {
    let account = args.account.account.clone();
    validate_account_name(&account).map_err(CliError::usage)?;
    let paths = AccountPaths::new(&account);
    if args.purge_cache {
        // Before anything changes: a refusal leaves the account as it was.
        wait_for_mount_to_end(&paths)?;
    }
    let removed = TokenStore::new(paths.token_file.clone())
        .delete()
        .map_err(|e| CliError::failure(e.to_string()))?;
    if removed {
        eprintln!("signed out of account {account}");
    } else {
        eprintln!("account {account} was not signed in");
    }
    if args.purge_cache {
        purge_cache_dir(&paths.cache_dir)?;
    }
    Ok(())
}

/// How long `logout --purge-cache` waits for a mount of the account that is ending (just unmounted: its process
/// still writes its store and log for a moment).
const MOUNT_END_WAIT: Duration = Duration::from_secs(10);

/// Waits while a process serving the account is alive; refuses when it does not end (a mounted account's cache
/// is in use).
fn wait_for_mount_to_end(paths: &AccountPaths) -> Result<(), CliError> {
    let started = std::time::Instant::now();
    while let Some(mount) = crate::mount::MountRecord::load_live(paths) {
        if started.elapsed() >= MOUNT_END_WAIT {
            return Err(CliError::failure(format!(
                "account {} is mounted at {} (process {}); its cache was kept: unmount first with \
                 `galleryfs unmount {}`, then run this again",
                paths.name, mount.mountpoint, mount.pid, mount.mountpoint
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Deletes the account's cache directory. A file a process that just ended flushed meanwhile makes the directory
/// non-empty again: tried a few times.
fn purge_cache_dir(dir: &std::path::Path) -> Result<(), CliError> {
    let mut attempts = 0;
    loop {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {
                eprintln!("deleted {}", dir.display());
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty && attempts < 5 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(CliError::failure(format!("cannot delete {}: {e}", dir.display()))),
        }
    }
}

/// The error, plus where to look when it points at the app registration (wrong client id, public client flows
/// off, wrong tenant, redirect URI not registered).
fn with_registration_hint(err: &AuthError) -> String {
    const REGISTRATION_CODES: &[&str] = &["AADSTS700016", "AADSTS7000218", "AADSTS9002331", "AADSTS50011"];
    let message = err.to_string();
    let points_at_registration = match err {
        AuthError::Service { code, description } => {
            matches!(code.as_str(), "invalid_client" | "unauthorized_client")
                || REGISTRATION_CODES.iter().any(|c| description.contains(c))
        }
        _ => false,
    };
    if points_at_registration {
        format!("{message}\n(check the app registration, see docs/app-registration.md, and pass --client-id ID)")
    } else {
        message
    }
}

/// Flags first, then the account's saved settings, then the defaults; URLs checked (plain http on loopback only).
pub fn resolve_settings(args: &LoginArgs, saved: Option<&AccountSettings>) -> Result<AccountSettings, String> {
    let base = saved.map(|s| s.endpoints.clone()).unwrap_or_default();
    let endpoints = Endpoints {
        graph_url: args.graph_url.clone().unwrap_or(base.graph_url),
        login_url: args.login_url.clone().unwrap_or(base.login_url),
        tenant: args.tenant.clone().unwrap_or(base.tenant),
        client_id: args.client_id.clone().unwrap_or(base.client_id),
    }
    .validated()
    .map_err(|e| e.to_string())?;
    for (what, value) in [("--tenant", &endpoints.tenant), ("--client-id", &endpoints.client_id)] {
        if value.is_empty()
            || !value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err(format!("invalid {what} {value:?}"));
        }
    }
    let folder = match args.folder.as_deref() {
        Some(f) => Some(normalize_folder(f)?),
        None => saved.and_then(|s| s.folder.clone()),
    };
    Ok(AccountSettings { endpoints, folder })
}

/// `Pictures/Samsung Gallery/` → `/Pictures/Samsung Gallery`.
fn normalize_folder(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim_matches('/');
    if trimmed.is_empty() {
        return Err(format!(
            "invalid --folder {raw:?}: give a folder path from the drive root"
        ));
    }
    Ok(format!("/{trimmed}"))
}

async fn run_flow(endpoints: &Endpoints, browser: bool) -> Result<StoredTokens, AuthError> {
    let http = http_client()?;
    if browser {
        sign_in_with_browser(
            endpoints,
            &http,
            |url| {
                eprintln!("To sign in, open this address in a browser on this computer:\n\n  {url}\n");
                if try_open_browser(url) {
                    eprintln!("(opened it with xdg-open)");
                }
                eprintln!("Waiting for the sign-in to finish…");
            },
            DEFAULT_REDIRECT_TIMEOUT,
        )
        .await
    } else {
        sign_in_with_device_code(endpoints, &http, |prompt| {
            eprintln!("{}", prompt.instructions());
            eprintln!("Waiting for the code to be approved…");
        })
        .await
    }
}

/// Best effort: the display name of the drive's owner (`GET /me/drive`), for the confirmation line.
async fn drive_owner(endpoints: &Endpoints, access_token: &str) -> Option<String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .ok()?;
    let response = http
        .get(endpoints.graph("/me/drive"))
        .bearer_auth(access_token)
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        tracing::debug!(status = %response.status(), "GET /me/drive after sign-in failed");
        return None;
    }
    let drive: Drive = response.json().await.ok()?;
    drive.owner?.user?.display_name.filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::AccountArg;

    fn args() -> LoginArgs {
        LoginArgs {
            account: AccountArg { account: "a".into() },
            client_id: None,
            tenant: None,
            graph_url: None,
            login_url: None,
            folder: None,
            browser: false,
        }
    }

    #[test]
    fn flags_then_saved_then_defaults() {
        let none = resolve_settings(&args(), None).unwrap();
        assert_eq!(none.endpoints, Endpoints::default());
        assert_eq!(none.folder, None);

        let saved = AccountSettings {
            endpoints: Endpoints {
                graph_url: "http://127.0.0.1:9/v1.0".into(),
                login_url: "http://127.0.0.1:9".into(),
                tenant: "consumers".into(),
                client_id: "saved-id".into(),
            },
            folder: Some("/Pictures/Samsung Gallery".into()),
        };
        let mut a = args();
        a.client_id = Some("flag-id".into());
        a.folder = Some("Camera Roll/".into());
        let s = resolve_settings(&a, Some(&saved)).unwrap();
        assert_eq!(s.endpoints.client_id, "flag-id");
        assert_eq!(s.endpoints.login_url, "http://127.0.0.1:9");
        assert_eq!(s.folder.as_deref(), Some("/Camera Roll"));
    }

    #[test]
    fn registration_errors_point_at_the_docs() {
        let e = AuthError::Service {
            code: "unauthorized_client".into(),
            description: "AADSTS700016: Application with identifier 'x' was not found".into(),
        };
        assert!(with_registration_hint(&e).contains("docs/app-registration.md"));
        assert!(!with_registration_hint(&AuthError::CodeExpired).contains("docs/"));
    }

    #[test]
    fn plain_http_off_loopback_refused() {
        let mut a = args();
        a.login_url = Some("http://login.example.com".into());
        assert!(resolve_settings(&a, None).unwrap_err().contains("loopback"));
        let mut a = args();
        a.tenant = Some("../x".into());
        assert!(resolve_settings(&a, None).is_err());
    }
}
