//! `galleryfs status [--account NAME] [--json]`: the account, its mount, the sync state the daemon publishes
//! (`status.json`), the outbox and cache figures from the metadata store, and what the user must do.

use crate::config::{validate_account_name, AccountPaths, AccountSettings};
use crate::error::CliError;
use crate::mount::MountRecord;
use crate::mount_options::DEFAULT_CACHE_SIZE;
use crate::remote::auth::token_store::TokenStore;
use crate::store::Store;
use crate::sync::status::{CacheStatus, OutboxStatus, StatusReport, StatusSnapshot, SyncStatus};

pub fn status(account: &str, json: bool) -> Result<(), CliError> {
    validate_account_name(account).map_err(CliError::usage)?;
    let paths = AccountPaths::new(account);
    let report = build_report(&paths)?;
    if json {
        println!("{}", serde_json::to_string(&report).expect("report serializes"));
    } else {
        print_for_people(&report);
    }
    Ok(())
}

fn build_report(paths: &AccountPaths) -> Result<StatusReport, CliError> {
    let settings = AccountSettings::load(&paths.settings_file).map_err(|e| CliError::failure(e.to_string()))?;
    let mount = MountRecord::load_live(paths);
    let signed_in = match TokenStore::new(paths.token_file.clone()).load() {
        Ok(Some(_)) => Ok(true),
        Ok(None) => Ok(false),
        Err(e) => Err(e.to_string()),
    };
    let mut sync = if mount.is_some() {
        SyncStatus::load(&paths.cache_dir.join("status.json")).unwrap_or_default()
    } else {
        // Nothing is running: nothing is online and nothing is scheduled.
        let mut s = SyncStatus::load(&paths.cache_dir.join("status.json")).unwrap_or_default();
        s.online = false;
        s.next_sync = None;
        s
    };
    match &signed_in {
        Ok(true) => {}
        Ok(false) => {
            sync.signed_in = false;
            sync.message = Some(format!("sign in: galleryfs login --account {}", paths.name));
        }
        Err(e) => {
            sync.signed_in = false;
            sync.message = Some(e.clone());
        }
    }
    let (outbox, used) = match open_store(paths) {
        Some(store) => {
            if sync.message.is_none() {
                // What the outbox needs from the user (held deletes, OneDrive full, gallery folder gone).
                sync.message = store
                    .meta(crate::sync::outbox_replay::meta_keys::OUTBOX_MESSAGE)
                    .ok()
                    .flatten();
            }
            let c = store.outbox_counts().unwrap_or_default();
            let used = store.total_cached_bytes().unwrap_or(0);
            (
                OutboxStatus {
                    pending: c.pending,
                    uploads: c.uploads,
                    deletes: c.deletes,
                },
                used,
            )
        }
        None => (OutboxStatus::default(), 0),
    };
    Ok(StatusReport {
        account: paths.name.clone(),
        mountpoint: mount.as_ref().map(|m| m.mountpoint.clone()),
        folder: mount
            .as_ref()
            .and_then(|m| m.folder.clone())
            .or_else(|| settings.as_ref().and_then(|s| s.folder.clone()))
            .or(Some("/Pictures/Samsung Gallery".into())),
        sync,
        outbox,
        cache: CacheStatus {
            used_bytes: used,
            budget_bytes: mount.as_ref().map(|m| m.cache_budget).unwrap_or(DEFAULT_CACHE_SIZE),
        },
    })
}

fn open_store(paths: &AccountPaths) -> Option<Store> {
    let db = paths.cache_dir.join("meta.db");
    db.exists().then(|| Store::open(&db).ok()).flatten()
}

fn print_for_people(r: &StatusReport) {
    let s: &StatusSnapshot = &r.sync;
    println!("account:     {}", r.account);
    println!("mounted at:  {}", r.mountpoint.as_deref().unwrap_or("(not mounted)"));
    println!(
        "folder:      {} ({})",
        r.folder.as_deref().unwrap_or("?"),
        serde_json::to_value(s.gallery)
            .unwrap_or_default()
            .as_str()
            .unwrap_or("?")
    );
    println!(
        "camera roll: {} ({}, {} files)",
        s.camera_roll.path.as_deref().unwrap_or("-"),
        serde_json::to_value(s.camera_roll.state)
            .unwrap_or_default()
            .as_str()
            .unwrap_or("?"),
        s.camera_roll.items
    );
    println!("signed in:   {}", if s.signed_in { "yes" } else { "no" });
    println!("online:      {}", if s.online { "yes" } else { "no" });
    if let Some(t) = s.throttled_until {
        println!("throttled:   until {t}");
    }
    println!(
        "last sync:   {}   next: {}",
        s.last_sync.map(|t| t.to_rfc3339()).unwrap_or_else(|| "never".into()),
        s.next_sync.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into())
    );
    println!(
        "pending:     {} ({} uploads, {} deletes)",
        r.outbox.pending, r.outbox.uploads, r.outbox.deletes
    );
    println!("cache:       {} of {} bytes", r.cache.used_bytes, r.cache.budget_bytes);
    println!("thumbnails:  {} of {} ready", s.thumbnails.ready, s.thumbnails.total);
    if let Some(q) = &s.quota {
        println!(
            "OneDrive:    {} of {} bytes used ({})",
            q.used.unwrap_or(0),
            q.total.unwrap_or(0),
            q.state.as_deref().unwrap_or("unknown")
        );
    }
    if let Some(m) = &s.message {
        println!("to do:       {m}");
    }
}
