//! Recognising, after a crash or a lost answer, what an earlier attempt of the [`OutboxReplayer`] already
//! did on OneDrive: an item with our bytes under the file's name, an upload session of a superseded version that
//! completed, a first upload sent to the place the file had before a rename. Each is adopted instead of being
//! duplicated (or kept beside as a conflict copy). The place a first upload is sent to is journalled before it
//! is sent, and a first upload's session is resumed only at that place, so an item an earlier attempt made is
//! always where the journal says. A session sent ahead of its commit (`send_ahead`) journals its target too
//! ([`HeldTarget`]); while that key exists the session made no item, so none is looked for.

use super::{real_id, Failure, OutboxReplayer};
use crate::remote::drive_api::{DriveError, UploadSource};
use crate::remote::models::DriveItem;
use crate::remote::QuickXorHash;
use crate::store::{name_key, ItemRow, OutboxEntry, OutboxOp};
use chrono::{DateTime, Utc};

/// Meta key prefix of [`first_upload_key`].
const FIRST_UPLOAD_PREFIX: &str = "first_upload_target:";

/// Meta key of the place a first upload of outbox entry `seq` was sent to ([`FirstUploadTarget`]).
pub(super) fn first_upload_key(seq: i64) -> String {
    format!("{FIRST_UPLOAD_PREFIX}{seq}")
}

/// Where a first upload was sent, journalled before it is (`<parent id>\n<name>\n<ino>`).
pub(super) struct FirstUploadTarget {
    pub parent_id: String,
    pub name: String,
    /// The file's inode (absent in entries journalled by older versions).
    pub ino: Option<u64>,
}

impl FirstUploadTarget {
    pub(super) fn encode(parent_id: &str, name: &str, ino: u64) -> String {
        format!("{parent_id}\n{name}\n{ino}")
    }
    pub(super) fn decode(value: &str) -> Option<FirstUploadTarget> {
        let mut parts = value.splitn(3, '\n');
        let parent_id = parts.next()?.to_string();
        let name = parts.next()?.to_string();
        let ino = parts.next().and_then(|i| i.parse().ok());
        Some(FirstUploadTarget { parent_id, name, ino })
    }
}

/// Meta key prefix of [`held_session_key`].
const HELD_SESSION_PREFIX: &str = "held_session:";

/// Meta key of the target of outbox entry `seq`'s session sent ahead ([`HeldTarget`]), present from before the
/// session exists until the entry is done.
pub(super) fn held_session_key(seq: i64) -> String {
    format!("{HELD_SESSION_PREFIX}{seq}")
}

/// What a session sent ahead uploads to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum HeldTarget {
    /// Replaces the content of this OneDrive item.
    Item(String),
    /// Creates a new file (with `fail` on a name clash) at the place journalled under [`first_upload_key`].
    New,
}

impl HeldTarget {
    pub(super) fn encode(&self) -> String {
        match self {
            HeldTarget::Item(id) => format!("item\n{id}"),
            HeldTarget::New => "new".to_string(),
        }
    }

    fn decode(value: &str) -> Option<HeldTarget> {
        match value.split_once('\n') {
            Some(("item", id)) => Some(HeldTarget::Item(id.to_string())),
            None if value == "new" => Some(HeldTarget::New),
            _ => None,
        }
    }
}

/// Meta key of the versions (quickXorHashes, one per line) of file `ino` sent to OneDrive since its last
/// recorded upload.
fn sent_versions_key(ino: u64) -> String {
    format!("sent_versions:{ino}")
}

/// How many sent versions of one file are remembered (a file rewritten while each attempt's answer is lost).
const SENT_VERSIONS_KEPT: usize = 8;

impl OutboxReplayer {
    /// Journals, before an upload of file `ino` is sent, the hash of the version it sends: should the answer be
    /// lost (a connection reset after OneDrive acted, a crash) and the file change again before the next attempt,
    /// OneDrive holding this version is then recognised as our own doing, not a change made elsewhere. Returns
    /// the versions sent before this attempt (since the file's last recorded upload).
    pub(super) fn note_sending(&self, ino: u64, hash: Option<&str>) -> Result<Vec<String>, Failure> {
        let key = sent_versions_key(ino);
        let before = self.sent_versions(ino)?;
        let Some(hash) = hash.filter(|h| !before.iter().any(|b| b == h)) else {
            return Ok(before);
        };
        let mut sent = before.clone();
        sent.push(hash.to_string());
        let skip = sent.len().saturating_sub(SENT_VERSIONS_KEPT);
        let value = sent[skip..].join("\n");
        self.store.write_durable(|t| t.set_meta(&key, &value))?;
        Ok(before)
    }

    /// The target of entry `seq`'s session sent ahead, if it has one.
    pub(super) fn held_target(&self, seq: i64) -> Result<Option<HeldTarget>, Failure> {
        Ok(self
            .store
            .meta(&held_session_key(seq))?
            .as_deref()
            .and_then(HeldTarget::decode))
    }

    /// Forgets the sent versions of `ino` once an upload's answer is recorded.
    pub(super) fn forget_sent(&self, ino: u64) -> Result<(), Failure> {
        self.store.delete_meta(&sent_versions_key(ino))?;
        Ok(())
    }

    /// The file named `name` in `parent_id` when it is an earlier upload of this file whose answer was lost: it
    /// holds a version sent before this attempt (`sent_before`), or (when `same_bytes_are_ours`) exactly the
    /// bytes hashed `our_hash`.
    pub(super) async fn own_earlier_upload(
        &self,
        parent_id: &str,
        name: &str,
        our_hash: Option<&str>,
        sent_before: &[String],
        same_bytes_are_ours: bool,
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
        let ours = (same_bytes_are_ours && same_bytes(&existing, our_hash)) || sent_earlier(sent_before, &existing);
        Ok((ours && self.is_free_or_duplicate(&existing)?).then_some(existing))
    }

    /// A superseded upload had started a session (which may have completed before a crash, its item never
    /// journalled): the next upload of the file inherits the URL as an expired marker (never resumed: its bytes
    /// differ) so a name clash with that item is recognised as our own.
    pub(super) fn pass_session_on(&self, ino: u64, seq: i64) -> Result<(), Failure> {
        if self.held_target(seq)?.is_some() {
            // Sent ahead and never committed: nothing on OneDrive to recognise later; the session expires.
            self.store.delete_meta(&held_session_key(seq))?;
            self.store.delete_meta(&first_upload_key(seq))?;
            return Ok(());
        }
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

    /// Whether the upload session journalled on entry `seq` may be resumed for `row`, in the folder `parent_id`:
    /// always for an item OneDrive has (its session replaces that item's content); for a first upload only while
    /// the file is still at the place journalled for it ([`first_upload_key`], the place its session was made
    /// for, where the session creates its item). A session made before a rename or a move is left: resumed, it
    /// would complete at the old place while the journal names the new one, and an item it completed there is
    /// found by [`OutboxReplayer::earlier_first_upload`].
    pub(super) fn session_made_for_here(&self, seq: i64, row: &ItemRow, parent_id: &str) -> Result<bool, Failure> {
        match self.held_target(seq)? {
            // Sent ahead for an item: only for that item (not after the file took over another one).
            Some(HeldTarget::Item(id)) => return Ok(real_id(row).as_deref() == Some(id.as_str())),
            // Sent ahead as a new file: not for a file that took over an item meanwhile.
            Some(HeldTarget::New) if real_id(row).is_some() => return Ok(false),
            Some(HeldTarget::New) | None => {}
        }
        if real_id(row).is_some() {
            return Ok(true);
        }
        let Some(target) = self
            .store
            .meta(&first_upload_key(seq))?
            .as_deref()
            .and_then(FirstUploadTarget::decode)
        else {
            return Ok(true);
        };
        Ok(target.parent_id == parent_id && name_key(&target.name) == name_key(&row.name))
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
        if self.held_target(seq)?.is_some() {
            // Journalled by a session sent ahead, whose last fragment was never sent: it made no item.
            return Ok(None);
        }
        let Some(FirstUploadTarget {
            parent_id: old_parent_id,
            name: old_name,
            ..
        }) = FirstUploadTarget::decode(&saved)
        else {
            return Ok(None);
        };
        let (old_parent_id, old_name) = (old_parent_id.as_str(), old_name.as_str());
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
            .is_free_or_duplicate(&item)?
            .then(|| (item, old_parent.ino, old_name.to_string())))
    }

    /// First uploads whose outbox entry is gone without their answer recorded (the file was deleted, or replaced
    /// by a save, after an attempt whose answer was lost): the item such an attempt may have created is taken back
    /// off OneDrive (to its recycle bin) when it holds a version this replayer sent of that file and the store
    /// does not know it as a file of its own. Kept for the next pass while OneDrive cannot be asked.
    pub(super) async fn sweep_abandoned_first_uploads(&self) -> Result<(), Failure> {
        let held = self.store.meta_with_prefix(HELD_SESSION_PREFIX)?;
        if !held.is_empty() {
            let pending: std::collections::HashSet<i64> = self.store.pending()?.iter().map(|e| e.seq).collect();
            for (key, _) in held {
                let seq: Option<i64> = key[HELD_SESSION_PREFIX.len()..].parse().ok();
                if seq.is_none_or(|seq| !pending.contains(&seq)) {
                    // Its entry is done; a first upload it journalled is looked at below like any other.
                    self.store.delete_meta(&key)?;
                }
            }
        }
        let journalled = self.store.meta_with_prefix(FIRST_UPLOAD_PREFIX)?;
        if journalled.is_empty() {
            return Ok(());
        }
        let pending: std::collections::HashSet<i64> = self.store.pending()?.iter().map(|e| e.seq).collect();
        for (key, value) in journalled {
            let seq: Option<i64> = key[FIRST_UPLOAD_PREFIX.len()..].parse().ok();
            if seq.is_some_and(|seq| pending.contains(&seq)) {
                continue;
            }
            if let Some(target) = FirstUploadTarget::decode(&value) {
                if let Some(ino) = target.ino {
                    let sent = self.sent_versions(ino)?;
                    let key_name = name_key(&target.name);
                    let found = match self.drive.children(&target.parent_id).await {
                        Ok(children) => children.into_iter().find(|c| {
                            c.is_file() && c.name.as_deref().map(name_key).as_deref() == Some(key_name.as_str())
                        }),
                        Err(DriveError::NotFound(_)) => None,
                        Err(e) => return Err(e.into()),
                    };
                    let still_here = self.store.get(ino)?.is_some_and(|r| r.parent_ino.is_some());
                    if let Some(item) = found.filter(|i| sent_earlier(&sent, i)) {
                        if !still_here && self.is_free_or_duplicate(&item)? {
                            match self.drive.delete(&item.id, None).await {
                                Ok(()) | Err(DriveError::NotFound(_)) => {}
                                Err(e) => return Err(e.into()),
                            }
                            tracing::info!(
                                ino,
                                "a file deleted here after an upload whose answer was lost: the item that upload \
                                 created went to OneDrive's recycle bin"
                            );
                        }
                    }
                    if !still_here {
                        self.forget_sent(ino)?;
                    }
                }
            }
            self.store.delete_meta(&key)?;
        }
        Ok(())
    }

    /// The versions of `ino` sent since its last recorded upload.
    fn sent_versions(&self, ino: u64) -> Result<Vec<String>, Failure> {
        Ok(match self.store.meta(&sent_versions_key(ino))? {
            Some(v) => v.lines().map(str::to_string).collect(),
            None => Vec::new(),
        })
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
        Ok(self.is_free_or_duplicate(&existing)?.then_some(existing))
    }

    /// Whether OneDrive's `item` is unknown to the store, or known only as a clean, empty row a delta round added
    /// for an item this replayer created (the commit replaces that row; the round may have put it under a
    /// disambiguated name beside the local file): never a row with journalled work of its own, nor an item a
    /// journalled delete or move takes away (an unlinked or renamed file whose change is not sent yet).
    pub(super) fn is_free_or_duplicate(&self, item: &DriveItem) -> Result<bool, Failure> {
        let pending = self.store.pending()?;
        let row = self.store.get_by_item_id(&item.id)?;
        if leaving(&pending, &item.id, row.as_ref().map(|r| r.ino)) {
            return Ok(false);
        }
        let Some(row) = row else {
            return Ok(true);
        };
        if row.is_dirty() || row.local_only || self.store.child_count(row.ino)? > 0 {
            return Ok(false);
        }
        Ok(!pending.iter().any(|e| e.op.ino() == row.ino))
    }

    /// Whether the file named `name` in `parent_id` on OneDrive is an item this outbox is about to delete or move
    /// away (an unlinked or renamed file whose change is journalled after a new file took its name).
    pub(super) async fn name_being_freed(&self, parent_id: &str, name: &str) -> Result<bool, Failure> {
        let key = name_key(name);
        let clash = self
            .drive
            .children(parent_id)
            .await?
            .into_iter()
            .find(|c| c.name.as_deref().map(name_key).as_deref() == Some(key.as_str()));
        let Some(item) = clash else {
            return Ok(false);
        };
        let row_ino = self.store.get_by_item_id(&item.id)?.map(|r| r.ino);
        Ok(leaving(&self.store.pending()?, &item.id, row_ino))
    }
}

/// The quickXorHash of what `source` would upload (`None` when the staged file cannot be read).
pub(super) fn source_hash(source: &UploadSource) -> Option<String> {
    match source {
        UploadSource::Bytes(b) => Some(QuickXorHash::of(b)),
        UploadSource::File(path) => match hash_file(path) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "cannot hash a staged file");
                None
            }
        },
    }
}

/// Whether OneDrive item `id` (known as row `row_ino`) has work in `pending` that takes it away from where it is:
/// a delete (its row is gone already), a move.
fn leaving(pending: &[OutboxEntry], id: &str, row_ino: Option<u64>) -> bool {
    pending.iter().any(|e| match &e.op {
        OutboxOp::Delete { item_id, .. } => item_id == id,
        OutboxOp::Move { ino, item_id, .. } => item_id == id || Some(*ino) == row_ino,
        _ => false,
    })
}

/// Whether OneDrive's `item` holds one of the versions in `sent` (sent by this replayer, answers never recorded).
pub(super) fn sent_earlier(sent: &[String], item: &DriveItem) -> bool {
    item.quick_xor_hash()
        .is_some_and(|theirs| sent.iter().any(|h| h == theirs))
}

/// Whether OneDrive's `item` holds exactly the bytes hashed `our_hash` (false when either hash is unknown).
pub(super) fn same_bytes(item: &DriveItem, our_hash: Option<&str>) -> bool {
    matches!((item.quick_xor_hash(), our_hash), (Some(theirs), Some(ours)) if theirs == ours)
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
