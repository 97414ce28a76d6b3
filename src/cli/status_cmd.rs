//! `galleryfs status [--account NAME] [--json]`: the account, its mount, the sync state the daemon publishes
//! (`status.json`), the outbox and cache figures from the metadata store, and what the user must do. An account
//! that does not exist is an error naming those that do. For people, sizes are in KiB/MiB/GiB and times are local
//! and relative ("3 s ago"); `--json` keeps the exact figures of the contract.

use crate::config::{cache_dir, config_dir, validate_account_name, AccountPaths, AccountSettings};
use crate::error::CliError;
use crate::mount::MountRecord;
use crate::mount_options::DEFAULT_CACHE_SIZE;
use crate::remote::auth::token_store::TokenStore;
use crate::store::Store;
use crate::sync::status::{CacheStatus, OutboxStatus, StatusReport, StatusSnapshot, SyncStatus};
use chrono::{DateTime, Local, Utc};

pub fn status(account: &str, json: bool) -> Result<(), CliError> {
    validate_account_name(account).map_err(CliError::usage)?;
    let paths = AccountPaths::new(account);
    require_account(&paths)?;
    let report = build_report(&paths)?;
    if json {
        println!("{}", serde_json::to_string(&report).expect("report serializes"));
    } else {
        let synced = report.sync.last_sync.is_some() || open_store(&paths).is_some();
        print_for_people(&report, synced, Utc::now());
    }
    Ok(())
}

/// Whether an account of this name was ever signed in (settings or tokens) or has a store.
fn account_exists(paths: &AccountPaths) -> bool {
    paths.settings_file.exists() || paths.token_file.exists() || paths.cache_dir.join("meta.db").exists()
}

/// The names of the accounts that exist, sorted.
pub fn known_accounts() -> Vec<String> {
    let mut names = std::collections::BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(config_dir().join("accounts")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = name.strip_suffix(".tokens.json").or_else(|| name.strip_suffix(".json")) {
                names.insert(n.to_string());
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(cache_dir()) {
        for e in entries.flatten() {
            if e.path().join("meta.db").exists() {
                names.insert(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    names.into_iter().filter(|n| validate_account_name(n).is_ok()).collect()
}

/// An error naming the accounts that exist when `paths` is not one of them.
pub fn require_account(paths: &AccountPaths) -> Result<(), CliError> {
    if account_exists(paths) {
        return Ok(());
    }
    let known = known_accounts();
    Err(CliError::failure(if known.is_empty() {
        format!(
            "there is no account {:?}: no account is signed in yet (galleryfs login, or try galleryfs demo)",
            paths.name
        )
    } else {
        format!(
            "there is no account {:?}; accounts: {} (pass one with --account NAME)",
            paths.name,
            known.join(", ")
        )
    }))
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

fn print_for_people(r: &StatusReport, synced: bool, now: DateTime<Utc>) {
    let s: &StatusSnapshot = &r.sync;
    println!("account:     {}", r.account);
    println!("mounted at:  {}", r.mountpoint.as_deref().unwrap_or("(not mounted)"));
    let gallery = if synced {
        serde_json::to_value(s.gallery)
            .unwrap_or_default()
            .as_str()
            .unwrap_or("?")
            .to_string()
    } else {
        "not synced yet".to_string()
    };
    println!("folder:      {} ({gallery})", r.folder.as_deref().unwrap_or("?"));
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
        println!("throttled:   until {}", when(t, now));
    }
    println!(
        "last sync:   {}   next: {}",
        s.last_sync.map(|t| when(t, now)).unwrap_or_else(|| "never".into()),
        s.next_sync.map(|t| when(t, now)).unwrap_or_else(|| "-".into())
    );
    println!(
        "pending:     {} ({} uploads, {} deletes)",
        r.outbox.pending, r.outbox.uploads, r.outbox.deletes
    );
    println!(
        "cache:       {} of {}",
        human_bytes(r.cache.used_bytes),
        human_bytes(r.cache.budget_bytes)
    );
    println!("thumbnails:  {} of {} ready", s.thumbnails.ready, s.thumbnails.total);
    if let Some(q) = &s.quota {
        println!(
            "OneDrive:    {} of {} used ({})",
            human_bytes(q.used.unwrap_or(0).max(0) as u64),
            human_bytes(q.total.unwrap_or(0).max(0) as u64),
            q.state.as_deref().unwrap_or("unknown")
        );
    }
    if let Some(m) = &s.message {
        println!("to do:       {m}");
    }
}

/// A size for people: bytes below 1 KiB, else KiB/MiB/GiB/TiB with one decimal.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v >= 100.0 || v.fract() < 0.05 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A moment for people: the local time (with the date unless it is today) and how far it is from `now`.
pub fn when(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let local = t.with_timezone(&Local);
    let clock = if local.date_naive() == now.with_timezone(&Local).date_naive() {
        local.format("%H:%M:%S").to_string()
    } else {
        local.format("%Y-%m-%d %H:%M").to_string()
    };
    let secs = (t - now).num_seconds();
    let span = |s: i64| match s {
        0..=89 => format!("{s} s"),
        90..=5399 => format!("{} min", (s + 30) / 60),
        5400..=129_599 => format!("{} h", (s + 1800) / 3600),
        _ => format!("{} days", (s + 43_200) / 86_400),
    };
    if secs < 0 {
        format!("{clock} ({} ago)", span(-secs))
    } else if secs == 0 {
        format!("{clock} (now)")
    } else {
        format!("{clock} (in {})", span(secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(95 << 20), "95 MiB");
        assert_eq!(human_bytes(10 << 30), "10 GiB");
        assert_eq!(human_bytes(5 * (1u64 << 40) / 2), "2.5 TiB");
    }

    #[test]
    fn times_for_people_are_relative() {
        let now = Utc::now();
        assert!(when(now - Duration::seconds(3), now).ends_with("(3 s ago)"));
        assert!(when(now + Duration::seconds(25), now).ends_with("(in 25 s)"));
        assert!(when(now - Duration::minutes(7), now).ends_with("(7 min ago)"));
        assert!(when(now - Duration::days(3), now).ends_with("(3 days ago)"));
        assert!(!when(now, now).contains("T"), "not RFC 3339");
    }
}
