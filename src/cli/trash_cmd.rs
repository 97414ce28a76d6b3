//! `galleryfs trash …`: what was deleted through galleryfs in the last 30 days (OneDrive Personal has no
//! recycle-bin listing API, so the store keeps its own record of deletes), restoring items through OneDrive's
//! `restore` action, and the big-delete guard's `confirm-deletes` / `cancel-deletes`.

use crate::config::{AccountPaths, AccountSettings};
use crate::error::CliError;
use crate::remote::drive_api::{DriveApi, DriveError};
use crate::store::{OutboxOp, Store, TrashRow};
use crate::sync::outbox_replay;
use std::path::PathBuf;
use std::sync::Arc;

/// How far back `trash list` looks (OneDrive keeps deleted items in the recycle bin for 30 days).
pub const TRASH_DAYS: i64 = 30;

/// The metadata store of an account.
pub fn store_path(paths: &AccountPaths) -> PathBuf {
    paths.cache_dir.join("meta.db")
}

fn open_store(account: &str) -> Result<Option<Store>, CliError> {
    crate::config::validate_account_name(account).map_err(CliError::usage)?;
    let path = store_path(&AccountPaths::new(account));
    if !path.exists() {
        return Ok(None);
    }
    Store::open(&path)
        .map(Some)
        .map_err(|e| CliError::failure(e.to_string()))
}

fn require_store(account: &str) -> Result<Store, CliError> {
    open_store(account)?.ok_or_else(|| {
        CliError::failure(format!(
            "account {account:?} has not been mounted on this device yet: nothing was deleted through galleryfs"
        ))
    })
}

/// The deletes of the last [`TRASH_DAYS`] days, newest first.
pub fn recent(store: &Store) -> Result<Vec<TrashRow>, CliError> {
    let since = chrono::Utc::now() - chrono::Duration::days(TRASH_DAYS);
    store
        .read(|t| t.trash_since(since))
        .map_err(|e| CliError::failure(e.to_string()))
}

pub fn list(account: &str) -> Result<(), CliError> {
    let rows = match open_store(account)? {
        Some(store) => recent(&store)?,
        None => Vec::new(),
    };
    if rows.is_empty() {
        println!("Nothing deleted through galleryfs in the last {TRASH_DAYS} days.");
        return Ok(());
    }
    println!(
        "{:<20} {:<15} {:>12}  {:<40} ID",
        "DELETED (UTC)", "STATE", "SIZE", "PATH"
    );
    for r in rows {
        let state = if r.in_recycle_bin {
            "recycle bin"
        } else {
            "delete pending"
        };
        let path = if r.is_dir {
            format!("{}/", r.path)
        } else {
            r.path.clone()
        };
        println!(
            "{:<20} {:<15} {:>12}  {:<40} {}",
            r.deleted_at.format("%Y-%m-%d %H:%M:%S"),
            state,
            r.size,
            path,
            r.item_id
        );
    }
    println!("Restore with: galleryfs trash restore --account {account} ID|PATH ...");
    Ok(())
}

/// What became of one `trash restore` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    /// Back on OneDrive (it shows in the mount at the next sync).
    Restored { path: String },
    /// The delete had not reached OneDrive yet: it was cancelled.
    DeleteCancelled { path: String },
}

/// Restores each item (an item id, or a path as `trash list` shows it) through `drive`.
pub async fn restore_items(store: &Store, drive: &dyn DriveApi, items: &[String]) -> Result<Vec<Restored>, CliError> {
    let rows = recent(store)?;
    let mut out = Vec::new();
    for wanted in items {
        let trimmed = wanted.trim_end_matches('/');
        let row = rows
            .iter()
            .find(|r| r.item_id == *wanted)
            .or_else(|| {
                rows.iter()
                    .find(|r| r.path == trimmed || format!("/{trimmed}") == r.path)
            })
            .ok_or_else(|| {
                CliError::failure(format!(
                    "{wanted:?} is not among the deletes of the last {TRASH_DAYS} days (see `galleryfs trash list`)"
                ))
            })?;
        if !row.in_recycle_bin {
            cancel_pending_delete(store, &row.item_id)?;
            out.push(Restored::DeleteCancelled { path: row.path.clone() });
            continue;
        }
        match drive.restore(&row.item_id, None, None).await {
            Ok(_) => {}
            Err(DriveError::Conflict(_)) => {
                return Err(CliError::failure(format!(
                    "cannot restore {}: its folder already has an item with that name; rename that item first",
                    row.path
                )))
            }
            Err(DriveError::NotFound(_)) => {
                return Err(CliError::failure(format!(
                    "{} is no longer in OneDrive's recycle bin (emptied, or restored elsewhere)",
                    row.path
                )))
            }
            Err(e) => return Err(CliError::failure(format!("cannot restore {}: {e}", row.path))),
        }
        store
            .write(|t| t.forget_trash(&row.item_id))
            .map_err(|e| CliError::failure(e.to_string()))?;
        out.push(Restored::Restored { path: row.path.clone() });
    }
    Ok(out)
}

/// Drops the queued delete of `item_id`; the next sync enumerates the gallery again and lists the item.
fn cancel_pending_delete(store: &Store, item_id: &str) -> Result<(), CliError> {
    let pending = store.pending().map_err(|e| CliError::failure(e.to_string()))?;
    store
        .write_durable(|t| {
            for e in &pending {
                if matches!(&e.op, OutboxOp::Delete { item_id: id, .. } if id == item_id) {
                    t.complete(e.seq)?;
                }
            }
            t.forget_trash(item_id)?;
            t.delete_meta(crate::store::meta_keys::DELTA_LINK)
        })
        .map_err(|e| CliError::failure(e.to_string()))
}

fn graph_drive(account: &str) -> Result<Arc<dyn DriveApi>, CliError> {
    let paths = AccountPaths::new(account);
    let settings = AccountSettings::load(&paths.settings_file)
        .map_err(|e| CliError::failure(e.to_string()))?
        .ok_or_else(|| CliError::failure(format!("not signed in: galleryfs login --account {account}")))?;
    let tokens = crate::remote::auth::session::RefreshingTokenSource::for_account(
        &paths.name,
        &paths.token_file,
        &settings.endpoints,
    )
    .map_err(|e| CliError::failure(e.to_string()))?;
    let client = crate::remote::GraphClient::new(
        settings.endpoints.clone(),
        Arc::new(tokens),
        crate::remote::RetryPolicy::default(),
    )
    .map_err(|e| CliError::failure(e.to_string()))?;
    Ok(Arc::new(crate::remote::graph_drive_api::GraphDrive::new(client)))
}

pub fn restore(account: &str, items: &[String]) -> Result<(), CliError> {
    if items.is_empty() {
        return Err(CliError::usage(
            "name at least one item: galleryfs trash restore ID|PATH ...",
        ));
    }
    let store = require_store(account)?;
    let drive = graph_drive(account)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failure(e.to_string()))?;
    for r in rt.block_on(restore_items(&store, drive.as_ref(), items))? {
        match r {
            Restored::Restored { path } => println!("restored {path} (it shows in the mount at the next sync)"),
            Restored::DeleteCancelled { path } => {
                println!("kept {path}: its delete had not reached OneDrive yet and is cancelled")
            }
        }
    }
    Ok(())
}

pub fn confirm_deletes(account: &str) -> Result<(), CliError> {
    let store = require_store(account)?;
    outbox_replay::confirm_deletes(&store).map_err(|e| CliError::failure(e.to_string()))?;
    println!(
        "held deletes will be sent to OneDrive's recycle bin (the guard is lifted for {} minutes)",
        outbox_replay::DELETE_CONFIRMATION.as_secs() / 60
    );
    Ok(())
}

pub fn cancel_deletes(account: &str) -> Result<(), CliError> {
    let store = require_store(account)?;
    let n = outbox_replay::cancel_deletes(&store).map_err(|e| CliError::failure(e.to_string()))?;
    println!("{n} pending deletes cancelled; the items stay on OneDrive and reappear at the next sync");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::mock_drive::MockDrive;

    #[tokio::test]
    async fn restores_from_the_recycle_bin_and_cancels_queued_deletes() {
        let mock = MockDrive::new();
        let gallery = mock.mkdir_p("/Pictures/Samsung Gallery");
        let sent = mock.add_file(&gallery, "sent.jpg", &b"s"[..]);
        mock.delete_item(&sent);
        let store = Store::open_in_memory().unwrap();
        store.set_delta_link("https://example/delta?token=1").unwrap();
        let row = |id: &str, path: &str, bin: bool| TrashRow {
            item_id: id.into(),
            name: path.trim_start_matches('/').into(),
            path: path.into(),
            parent_id: Some(gallery.clone()),
            is_dir: false,
            size: 1,
            deleted_at: chrono::Utc::now(),
            in_recycle_bin: bin,
        };
        store
            .write_durable(|t| {
                t.record_trash(&row(&sent, "/sent.jpg", true))?;
                t.record_trash(&row("Q!1", "/queued.jpg", false))?;
                t.enqueue(&OutboxOp::Delete {
                    ino: 9,
                    item_id: "Q!1".into(),
                })
            })
            .unwrap();
        assert!(restore_items(&store, &mock, &["/nope.jpg".into()]).await.is_err());
        let done = restore_items(&store, &mock, &["sent.jpg".into(), "Q!1".into()])
            .await
            .unwrap();
        assert_eq!(
            done,
            vec![
                Restored::Restored {
                    path: "/sent.jpg".into()
                },
                Restored::DeleteCancelled {
                    path: "/queued.jpg".into()
                }
            ]
        );
        assert!(mock.get(&sent).unwrap().deleted.is_none(), "back from the recycle bin");
        assert!(store.pending().unwrap().is_empty());
        assert!(recent(&store).unwrap().is_empty());
        assert_eq!(
            store.delta_link().unwrap(),
            None,
            "a full sync brings the kept item back"
        );
    }
}
