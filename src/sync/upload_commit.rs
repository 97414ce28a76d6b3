//! The store transactions that finish an upload ([`commit_upload`]) or a conflict copy ([`commit_conflict`]):
//! the row takes OneDrive's id, name and attributes as its new baseline and the outbox entry is completed, in one
//! transaction. A row moved, renamed, deleted or taken over by another item while the upload ran keeps the local
//! state (follow-up moves and deletes are journalled here); `keep_dirty` (the file changed since the upload's
//! snapshot) keeps the local content. [`drop_delta_duplicate`] removes the row a delta round made of the new item.

use super::server_names::suffixed_name;
use crate::store::{ContentState, ItemKind, NewItem, OutboxOp, RemoteAttrs, StoreError, StoreTx};
use std::path::PathBuf;

/// An item as OneDrive answered an upload or a folder creation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteResult {
    pub item_id: String,
    pub name: String,
    pub attrs: RemoteAttrs,
    /// The place (parent inode, name) the upload asked for, when it created the item: if the row has been moved
    /// or renamed since (rsync's `.name.XXXXXX` → `name`), the local place is newer and wins.
    pub requested: Option<(u64, String)>,
    /// The OneDrive item the row had when the upload started: a row that still has it while OneDrive answered
    /// with another item had its item deleted there (the file was created anew), not taken over another one.
    pub started_from: Option<String>,
}

/// The store updates of a finished upload; `keep_dirty`: the file changed since the upload's snapshot.
pub fn commit_upload(
    t: &StoreTx<'_>,
    ino: u64,
    seq: i64,
    r: &RemoteResult,
    keep_dirty: bool,
) -> Result<bool, StoreError> {
    let done = |t: &StoreTx<'_>| match t.complete(seq) {
        Ok(()) | Err(StoreError::NoSuchOutboxEntry(_)) => Ok(()),
        Err(e) => Err(e),
    };
    // A detached row is a file removed while open (see `writes::file_closed`): as good as gone here.
    let Some(row) = t
        .get(ino)?
        .filter(|r| r.parent_ino.is_some() || r.ino == crate::store::ROOT_INO)
    else {
        // Gone since the upload started. If another row took over the item meanwhile (an editor's next save
        // renamed over this file), what was just uploaded is OneDrive's version that row's change follows: its
        // new baseline, so its own upload is not mistaken for a conflict with ours.
        if let Some(heir) = t.get_by_item_id(&r.item_id)? {
            if heir.ino != ino && heir.is_dirty() {
                t.set_baseline(
                    heir.ino,
                    r.attrs.ctag.as_deref(),
                    r.attrs.quick_xor_hash.as_deref(),
                    r.attrs.size,
                )?;
            }
        }
        done(t)?;
        return Ok(false);
    };
    let keep_dirty = keep_dirty || t.has_later_op(ino, "upload", seq)?;
    let took_over =
        !row.local_only && row.item_id != r.item_id && r.started_from.as_deref() != Some(row.item_id.as_str());
    if took_over {
        // While this upload ran, the row took over another item (an editor's save: `sed -i`, write-then-rename).
        // The item uploaded to is a stray: remove it (unless the takeover already journalled that); the content
        // goes to the adopted item.
        if !t.has_later_delete(ino, &r.item_id, seq)? {
            t.enqueue(&OutboxOp::Delete {
                ino,
                item_id: r.item_id.clone(),
            })?;
        }
        if !t.has_later_op(ino, "upload", seq)? {
            t.enqueue(&OutboxOp::Upload {
                ino,
                staged_path: PathBuf::new(),
                size: row.size,
                mtime: row.mtime,
            })?;
        }
        done(t)?;
        return Ok(true);
    }
    drop_delta_duplicate(t, ino, &r.item_id)?;
    if row.item_id != r.item_id {
        t.set_item_id(ino, &r.item_id)?;
    }
    let moved_locally = r
        .requested
        .as_ref()
        .is_some_and(|(parent, name)| row.parent_ino != Some(*parent) || row.name != *name);
    if moved_locally {
        // Renamed or moved while its first upload ran: the local place is newer. OneDrive gets it by a move,
        // journalled with this commit (no move was journalled before: the item had no OneDrive id yet).
        if !t.has_later_op(ino, "move", seq)? {
            let parent_id = match row.parent_ino {
                Some(p) => t.get(p)?.map(|p| p.item_id).unwrap_or_default(),
                None => String::new(),
            };
            t.enqueue(&OutboxOp::Move {
                ino,
                item_id: r.item_id.clone(),
                new_parent_id: parent_id,
                new_name: row.name.clone(),
            })?;
        }
    } else if row.name != r.name && !t.has_later_op(ino, "move", seq)? {
        // (A rename journalled while the upload ran is newer than the name OneDrive answered with.)
        if let Some(parent) = row.parent_ino {
            if t.lookup(parent, &r.name)?.is_none_or(|o| o.ino == ino) {
                t.rename(ino, parent, &r.name)?;
            }
        }
    }
    t.update_remote(ino, &r.attrs)?;
    t.set_remote_removed(ino, false)?;
    if keep_dirty {
        t.update_local_content(ino, row.size, row.mtime)?;
    } else if row.kind == ItemKind::File {
        t.drop_blocks(ino)?;
        t.set_content_state(ino, ContentState::Cloud)?;
    }
    done(t)?;
    Ok(true)
}

/// A delta round that ran between an upload (or folder creation) and its commit may have listed the new item as
/// a row of its own: that row is this one, so it goes (when it holds nothing local).
pub fn drop_delta_duplicate(t: &StoreTx<'_>, ino: u64, item_id: &str) -> Result<(), StoreError> {
    if let Some(other) = t.get_by_item_id(item_id)? {
        if other.ino != ino && !other.is_dirty() && t.child_count(other.ino)? == 0 {
            t.remove(other.ino)?;
        }
    }
    Ok(())
}

/// The store updates of an upload sent as a conflict copy `copy`: the row becomes the copy (under a free name)
/// and OneDrive's version (`original`, keeping the item id and name) comes back as a row of its own.
pub fn commit_conflict(
    t: &StoreTx<'_>,
    ino: u64,
    seq: i64,
    copy: &RemoteResult,
    original: &RemoteAttrs,
    keep_dirty: bool,
) -> Result<bool, StoreError> {
    let Some(row) = t.get(ino)? else {
        if let Err(e) = t.complete(seq) {
            if !matches!(e, StoreError::NoSuchOutboxEntry(_)) {
                return Err(e);
            }
        }
        return Ok(false);
    };
    let parent = row.parent_ino.ok_or(StoreError::WouldCycle(ino))?;
    let mut name = copy.name.clone();
    let mut n = 2;
    while t.lookup(parent, &name)?.is_some_and(|o| o.ino != ino) {
        name = suffixed_name(&copy.name, n);
        n += 1;
    }
    // The row (with the local content, and any open handle) becomes the conflict copy...
    t.set_item_id(ino, &copy.item_id)?;
    t.rename(ino, parent, &name)?;
    // ...and OneDrive's version comes back under the original name and id.
    t.insert(&NewItem {
        item_id: row.item_id.clone(),
        parent_ino: parent,
        name: row.name.clone(),
        kind: ItemKind::File,
        size: original.size,
        etag: original.etag.clone(),
        ctag: original.ctag.clone(),
        quick_xor_hash: original.quick_xor_hash.clone(),
        mtime: original.mtime,
        mime_type: original.mime_type.clone(),
        is_media: original.is_media,
        content_state: ContentState::Cloud,
        local_only: false,
    })?;
    let renamed = RemoteResult { name, ..copy.clone() };
    commit_upload(t, ino, seq, &renamed, keep_dirty)
}
