//! Sending an upload ahead of its commit: while a closed file waits out the write-back delay, the
//! [`OutboxReplayer`] starts its upload session and sends every fragment but the last
//! ([`DriveApi::upload_ahead`](crate::remote::drive_api::DriveApi::upload_ahead)); when the delay ends, the
//! upload resumes the session and sends the last fragment, which commits it. A big file is then on OneDrive soon
//! after the delay instead of a whole upload later, and an editor's save (write a temporary file, rename it over
//! the original within the delay) still keeps the original's item id: nothing is committed before the delay ends.
//!
//! The session's target is journalled before the session exists ([`held_session_key`], [`HeldTarget`]: the item
//! it replaces, or a new file at the place of [`first_upload_key`]). It is resumed only for that target: a file renamed or moved
//! meanwhile, or one that took over another item, starts a new session at its place, and a session for an item
//! OneDrive deleted meanwhile is left. A held session never created an item (its last fragment was never sent
//! while the key exists), so the recognition of items a crashed attempt made (`recovery`) leaves such an entry
//! out, and a superseded entry's held session is not passed on. Bytes sent ahead of a version that changes again
//! are never committed: the change journals a later entry that supersedes this one (and the commit checks the
//! uploaded hash).

use super::{real_id, remote_version, Failure, OutboxReplayer};
use crate::remote::drive_api::{ConflictBehavior, DriveError, UploadRequest, UploadSource, UploadTarget};
use crate::store::ItemRow;
use chrono::{TimeZone, Utc};

use super::recovery::{first_upload_key, held_session_key, FirstUploadTarget, HeldTarget};
use crate::sync::conflict_copies::remote_moved_on;

impl OutboxReplayer {
    /// While entry `seq` of `row` waits out the write-back delay: starts its upload session and sends every
    /// fragment but the last, unless it has a session already, goes by simple upload, or its commit will not
    /// replace the item it was edited from (OneDrive deleted it or moved on: a new file or a conflict copy). A
    /// failure here only means the upload sends everything when it goes.
    pub(super) async fn send_ahead(
        &self,
        seq: i64,
        has_session: bool,
        row: &ItemRow,
        parent_id: &str,
        source: &UploadSource,
    ) -> Result<(), Failure> {
        if has_session || row.size <= crate::remote::drive_api::SIMPLE_UPLOAD_MAX {
            return Ok(());
        }
        let UploadSource::File(_) = source else {
            return Ok(());
        };
        let ino = row.ino;
        let target = match real_id(row).filter(|_| !row.remote_removed) {
            Some(id) => {
                let remote = match self.drive.item(&id).await {
                    Ok(item) if item.deleted.is_none() => item,
                    Ok(_) | Err(DriveError::NotFound(_)) => return Ok(()),
                    Err(e) => {
                        tracing::debug!(ino, error = %e, "not sending ahead: OneDrive's version is unknown");
                        return Ok(());
                    }
                };
                if remote_moved_on(row, &remote_version(&remote)) {
                    return Ok(());
                }
                HeldTarget::Item(remote.id)
            }
            // An earlier attempt of this entry sent a first upload (before a crash): its recovery applies.
            None if self.store.meta(&first_upload_key(seq))?.is_some() => return Ok(()),
            None => HeldTarget::New,
        };
        let (upload_target, conflict) = match &target {
            HeldTarget::Item(id) => (
                UploadTarget::Replace {
                    item_id: id.clone(),
                    if_match: None,
                },
                ConflictBehavior::Replace,
            ),
            HeldTarget::New => (
                UploadTarget::New {
                    parent_id: parent_id.to_string(),
                    name: row.name.clone(),
                },
                ConflictBehavior::Fail,
            ),
        };
        self.store.write_durable(|t| {
            t.set_meta(&held_session_key(seq), &target.encode())?;
            if target == HeldTarget::New {
                t.set_meta(
                    &first_upload_key(seq),
                    &FirstUploadTarget::encode(parent_id, &row.name, ino),
                )?;
            }
            Ok::<(), crate::store::StoreError>(())
        })?;
        let request = UploadRequest {
            target: upload_target,
            source: source.clone(),
            modified: Utc.timestamp_opt(row.mtime, 0).single(),
            conflict,
            resume_url: None,
            session_journal: Some(self.session_journal(seq)),
        };
        match self.drive.upload_ahead(request).await {
            Ok(0) => {}
            Ok(sent) => tracing::debug!(ino, sent, "upload sent ahead of the write-back delay's end"),
            Err(e) => tracing::debug!(ino, error = %e, "sending ahead failed; the upload sends everything"),
        }
        Ok(())
    }
}
