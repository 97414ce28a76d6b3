//! Recognising, after a crash or a lost answer, what an earlier attempt of the [`super::OutboxReplayer`] already
//! did on OneDrive: an item with our bytes under the file's name, an upload session of a superseded version that
//! completed, a first upload sent to the place the file had before a rename. Each is adopted instead of being
//! duplicated (or kept beside as a conflict copy).

use super::{Failure, OutboxReplayer};
use crate::remote::drive_api::{DriveError, UploadSource};
use crate::remote::models::DriveItem;
use crate::remote::QuickXorHash;
use crate::store::{name_key, OutboxOp};
use chrono::{DateTime, Utc};

/// Meta key of the place (`<parent id>\n<name>`) a first upload of outbox entry `seq` was sent to.
pub(super) fn first_upload_key(seq: i64) -> String {
    format!("first_upload_target:{seq}")
}

impl OutboxReplayer {
    /// The file named `name` in `parent_id` when it holds exactly the staged bytes of `source`.
    pub(super) async fn own_earlier_upload(
        &self,
        parent_id: &str,
        name: &str,
        source: &UploadSource,
    ) -> Result<Option<DriveItem>, Failure> {
        let key = name_key(name);
        let Some(existing) = self
            .drive
            .children(parent_id)
            .await?
            .into_iter()
            .find(|c| c.is_file() && c.name.as_deref().map(name_key).as_deref() == Some(key.as_str()))
        else {
            return Ok(None);
        };
        Ok((same_bytes(&existing, source) && self.is_free_or_duplicate(&existing.id)?).then_some(existing))
    }

    /// A superseded upload had started a session (which may have completed before a crash, its item never
    /// journalled): the next upload of the file inherits the URL as an expired marker (never resumed: its bytes
    /// differ) so a name clash with that item is recognised as our own.
    pub(super) fn pass_session_on(&self, ino: u64, seq: i64) -> Result<(), Failure> {
        let later = self.store.pending()?.into_iter().find(|e| {
            e.seq > seq && e.upload_url.is_none() && matches!(&e.op, OutboxOp::Upload { ino: i, .. } if *i == ino)
        });
        if let Some(later) = later {
            let url = "galleryfs:superseded-session";
            self.store
                .set_upload_session(later.seq, url, Some(DateTime::<Utc>::UNIX_EPOCH))?;
            if let Some(target) = self.store.meta(&first_upload_key(seq))? {
                if self.store.meta(&first_upload_key(later.seq))?.is_none() {
                    self.store.set_meta(&first_upload_key(later.seq), &target)?;
                }
            }
        }
        self.store.delete_meta(&first_upload_key(seq))?;
        Ok(())
    }

    /// The item a first upload of this entry created before a crash at the place the file had then (journalled
    /// under [`first_upload_key`]), when the file has moved since and OneDrive holds an item there the store does
    /// not know: (item, the old parent's inode, the old name).
    pub(super) async fn earlier_first_upload(
        &self,
        seq: i64,
        parent_id: &str,
        name: &str,
    ) -> Result<Option<(DriveItem, u64, String)>, Failure> {
        let Some(saved) = self.store.meta(&first_upload_key(seq))? else {
            return Ok(None);
        };
        let Some((old_parent_id, old_name)) = saved.split_once('\n') else {
            return Ok(None);
        };
        if old_parent_id == parent_id && name_key(old_name) == name_key(name) {
            // Same place: a name clash there is recognised by its bytes (`own_earlier_upload`).
            return Ok(None);
        }
        let Some(old_parent) = self.store.get_by_item_id(old_parent_id)? else {
            return Ok(None);
        };
        let children = match self.drive.children(old_parent_id).await {
            Ok(c) => c,
            Err(DriveError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let key = name_key(old_name);
        let Some(item) = children
            .into_iter()
            .find(|c| c.is_file() && c.name.as_deref().map(name_key).as_deref() == Some(key.as_str()))
        else {
            return Ok(None);
        };
        Ok(self
            .is_free_or_duplicate(&item.id)?
            .then(|| (item, old_parent.ino, old_name.to_string())))
    }

    /// The file named `name` in `parent_id`, when the store does not know it (an upload session of ours that
    /// completed before a crash).
    pub(super) async fn earlier_session_item(&self, parent_id: &str, name: &str) -> Result<Option<DriveItem>, Failure> {
        let key = name_key(name);
        let Some(existing) = self
            .drive
            .children(parent_id)
            .await?
            .into_iter()
            .find(|c| c.is_file() && c.name.as_deref().map(name_key).as_deref() == Some(key.as_str()))
        else {
            return Ok(None);
        };
        Ok(self.is_free_or_duplicate(&existing.id)?.then_some(existing))
    }

    /// Whether OneDrive item `id` is unknown to the store, or known only as a clean, empty row a delta round
    /// added for an item this replayer created (the commit replaces that row).
    pub(super) fn is_free_or_duplicate(&self, id: &str) -> Result<bool, Failure> {
        Ok(match self.store.get_by_item_id(id)? {
            None => true,
            Some(row) => !row.is_dirty() && !row.local_only && self.store.child_count(row.ino)? == 0,
        })
    }
}

/// Whether OneDrive's `item` holds exactly the bytes of `source` (by quickXorHash; false when it has no hash yet).
pub(super) fn same_bytes(item: &DriveItem, source: &UploadSource) -> bool {
    let Some(theirs) = item.quick_xor_hash() else {
        return false;
    };
    let ours = match source {
        UploadSource::Bytes(b) => QuickXorHash::of(b),
        UploadSource::File(path) => match hash_file(path) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cannot hash a staged file");
                return false;
            }
        },
    };
    ours == theirs
}

fn hash_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hash = QuickXorHash::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hash.finish_base64());
        }
        hash.update(&buf[..n]);
    }
}
