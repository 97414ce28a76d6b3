//! What the outbox replayer (`crate::sync::outbox_replay`) asks of and tells the filesystem, as the
//! [`LocalEdits`] trait: whether an upload may start (write-back delay, files open for writing, fsync), and the
//! store changes that finish an upload or a conflict copy, made under the filesystem's write-state lock so a
//! write racing with an upload is never mistaken for uploaded. [`StoreOnlyEdits`] does the same without a mount.

use super::GalleryFs;
use crate::fs::types::Ino;
use crate::store::OutboxOp;
use crate::store::{ContentState, ItemKind, NewItem, RemoteAttrs, Store, StoreError, StoreTx};
use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

/// Whether the upload of a file may start now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadHold {
    Ready,
    /// Inside the write-back delay after the last close: ask again after this long.
    Wait(Duration),
    /// Open for writing (and no fsync asked for it): ask again after the last close.
    OpenForWriting,
}

/// An item as OneDrive answered an upload or a folder creation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteResult {
    pub item_id: String,
    pub name: String,
    pub attrs: RemoteAttrs,
    /// The place (parent inode, name) the upload asked for, when it created the item: if the row has been moved
    /// or renamed since (rsync's `.name.XXXXXX` → `name`), the local place is newer and wins.
    pub requested: Option<(u64, String)>,
}

/// The filesystem side of the outbox replay.
pub trait LocalEdits: Send + Sync {
    fn upload_hold(&self, ino: u64) -> UploadHold;
    /// Where the staged content of `ino` is.
    fn staged_path(&self, ino: u64) -> Option<PathBuf>;
    /// Upload `seq` of `ino` succeeded as `result`: records the id, name and remote attributes (the new
    /// baseline) and completes `seq`; unless the file changed meanwhile, its staged copy is dropped and it is no
    /// longer dirty. Returns whether the row still existed.
    fn upload_committed(&self, ino: u64, seq: i64, result: &RemoteResult) -> Result<bool, StoreError>;
    /// The local version of `ino` was uploaded as a conflict copy `copy` because OneDrive's version (`original`,
    /// keeping the item id and name) changed since the baseline: the row becomes the conflict copy and the
    /// original comes back as its own row.
    fn conflict_committed(
        &self,
        ino: u64,
        seq: i64,
        copy: &RemoteResult,
        original: &RemoteAttrs,
    ) -> Result<bool, StoreError>;
    fn set_quota_exceeded(&self, exceeded: bool);
    /// Whether `ino` is open (a file removed while open keeps its OneDrive item until the last close, so the
    /// open descriptors can still read what is not cached).
    fn held_open(&self, _ino: u64) -> bool {
        false
    }
    /// The store changed behind the kernel's back (names, ids): forget the cached entries and attributes.
    fn invalidate(&self, parent: Ino, names: &[&str], inos: &[Ino]);
}

/// The store updates of a finished upload; `keep_dirty`: the file changed since the upload's snapshot.
fn commit_upload_in(
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
    if !row.local_only && row.item_id != r.item_id {
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
pub(crate) fn drop_delta_duplicate(t: &StoreTx<'_>, ino: u64, item_id: &str) -> Result<(), StoreError> {
    if let Some(other) = t.get_by_item_id(item_id)? {
        if other.ino != ino && !other.is_dirty() && t.child_count(other.ino)? == 0 {
            t.remove(other.ino)?;
        }
    }
    Ok(())
}

fn commit_conflict_in(
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
        name = crate::sync::delta_apply::suffixed_name(&copy.name, n);
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
    commit_upload_in(t, ino, seq, &renamed, keep_dirty)
}

impl GalleryFs {
    /// Whether `ino` changed since its last journalled upload or is open for writing.
    fn busy(&self, ino: Ino) -> bool {
        self.local.lock().get(&ino).is_some_and(|e| e.modified || e.writers > 0)
    }

    fn after_commit(&self, ino: Ino, still_there: bool) {
        self.conflicted.lock().remove(&ino);
        if !still_there {
            return;
        }
        let clean = match self.store.get(ino) {
            Ok(Some(row)) if !row.is_dirty() => Some(row),
            _ => None,
        };
        if let Some(row) = clean {
            let mut local = self.local.lock();
            if local.get(&ino).is_none_or(|e| !e.modified && e.writers == 0) {
                local.remove(&ino);
                drop(local);
                if let Some(s) = &self.staging {
                    // What was just uploaded is OneDrive's current version: keep it as the cached original.
                    let staged = s.path(ino);
                    if !(staged.exists() && self.content.keep_uploaded(&row, &staged)) {
                        s.remove(ino);
                    }
                }
            }
        }
        self.invalidator.read().inode(ino);
    }
}

impl GalleryFs {
    /// After a restart: journals an upload for every changed file whose change never reached the journal (the
    /// process died between its first write and its close), and removes staged files nothing refers to. Call
    /// once before serving. Returns how many uploads were journalled.
    pub fn journal_leftovers(&self) -> Result<usize, StoreError> {
        // Files removed while open when the last process ended: their last close never came.
        let orphans = self.store.write_durable(|t| {
            let detached = t.detached_items()?;
            for ino in &detached {
                t.drop_ops(*ino, &["upload", "move", "mkdir"])?;
                t.remove(*ino)?;
            }
            Ok::<_, StoreError>(detached.len())
        })?;
        if orphans > 0 {
            tracing::info!(
                orphans,
                "removed files that were unlinked while open when galleryfs last stopped"
            );
        }
        let Some(staging) = &self.staging else {
            return Ok(0);
        };
        let dirty = self.store.read(|t| t.dirty_items())?;
        let mut journalled = 0;
        for row in &dirty {
            if self.store.read(|t| t.has_op(row.ino, "upload"))? {
                continue;
            }
            let size = match staging.len(row.ino) {
                Ok(Some(n)) => n,
                Ok(None) => {
                    if let Err(e) = staging.create_empty(row.ino) {
                        tracing::warn!(ino = row.ino, error = %e, "cannot recreate a staged file");
                        continue;
                    }
                    0
                }
                Err(e) => {
                    tracing::warn!(ino = row.ino, error = %e, "cannot read a staged file");
                    continue;
                }
            };
            let _ = staging.sync(row.ino);
            self.store.write_durable(|t| {
                t.update_local_content(row.ino, size, row.mtime)?;
                t.enqueue(&crate::store::OutboxOp::Upload {
                    ino: row.ino,
                    staged_path: staging.path(row.ino),
                    size,
                    mtime: row.mtime,
                })
            })?;
            journalled += 1;
        }
        let keep: std::collections::HashSet<u64> = dirty.iter().map(|r| r.ino).collect();
        for ino in staging.staged_inodes().unwrap_or_default() {
            if !keep.contains(&ino) {
                staging.remove(ino);
            }
        }
        if journalled > 0 {
            tracing::info!(
                journalled,
                "changes interrupted by the last shutdown are journalled for upload"
            );
            self.outbox_wake.notify_one();
        }
        Ok(journalled)
    }
}

impl LocalEdits for GalleryFs {
    fn upload_hold(&self, ino: u64) -> UploadHold {
        let local = self.local.lock();
        let Some(e) = local.get(&ino) else {
            return UploadHold::Ready;
        };
        if e.forced {
            return UploadHold::Ready;
        }
        if e.writers > 0 {
            return UploadHold::OpenForWriting;
        }
        match e.last_close {
            Some(t) if t.elapsed() < self.config.write_back => UploadHold::Wait(self.config.write_back - t.elapsed()),
            _ => UploadHold::Ready,
        }
    }

    fn staged_path(&self, ino: u64) -> Option<PathBuf> {
        self.staging.as_ref().map(|s| s.path(ino))
    }

    fn upload_committed(&self, ino: u64, seq: i64, result: &RemoteResult) -> Result<bool, StoreError> {
        let before = self.store.get(ino)?;
        let busy = self.busy(ino);
        let there = self
            .store
            .write_durable(|t| commit_upload_in(t, ino, seq, result, busy))?;
        if let Some(before) = before {
            if before.name != result.name {
                if let Some(parent) = before.parent_ino {
                    self.invalidate(parent, &[&before.name, &result.name], &[]);
                }
            }
        }
        self.after_commit(ino, there);
        Ok(there)
    }

    fn conflict_committed(
        &self,
        ino: u64,
        seq: i64,
        copy: &RemoteResult,
        original: &RemoteAttrs,
    ) -> Result<bool, StoreError> {
        let before = self.store.get(ino)?;
        let busy = self.busy(ino);
        let there = self
            .store
            .write_durable(|t| commit_conflict_in(t, ino, seq, copy, original, busy))?;
        if let (Some(before), Ok(Some(after))) = (before, self.store.get(ino)) {
            if let Some(parent) = before.parent_ino {
                self.invalidate(parent, &[&before.name, &after.name], &[parent]);
            }
        }
        self.after_commit(ino, there);
        Ok(there)
    }

    fn set_quota_exceeded(&self, exceeded: bool) {
        GalleryFs::set_quota_exceeded(self, exceeded);
    }

    fn held_open(&self, ino: u64) -> bool {
        self.is_open(ino)
    }

    fn invalidate(&self, parent: Ino, names: &[&str], inos: &[Ino]) {
        let inv = self.invalidator.read().clone();
        for name in names {
            inv.entry(parent, OsStr::new(name));
        }
        for ino in inos {
            inv.inode(*ino);
        }
    }
}

/// [`LocalEdits`] without a mount: nothing is open, nothing waits, staged files are in `staging_dir`.
pub struct StoreOnlyEdits {
    pub store: std::sync::Arc<Store>,
    pub staging_dir: PathBuf,
}

impl LocalEdits for StoreOnlyEdits {
    fn upload_hold(&self, _ino: u64) -> UploadHold {
        UploadHold::Ready
    }
    fn staged_path(&self, ino: u64) -> Option<PathBuf> {
        Some(self.staging_dir.join(ino.to_string()))
    }
    fn upload_committed(&self, ino: u64, seq: i64, result: &RemoteResult) -> Result<bool, StoreError> {
        let there = self
            .store
            .write_durable(|t| commit_upload_in(t, ino, seq, result, false))?;
        if there && matches!(self.store.get(ino), Ok(Some(r)) if !r.is_dirty()) {
            let _ = std::fs::remove_file(self.staging_dir.join(ino.to_string()));
        }
        Ok(there)
    }
    fn conflict_committed(
        &self,
        ino: u64,
        seq: i64,
        copy: &RemoteResult,
        original: &RemoteAttrs,
    ) -> Result<bool, StoreError> {
        let there = self
            .store
            .write_durable(|t| commit_conflict_in(t, ino, seq, copy, original, false))?;
        if there {
            let _ = std::fs::remove_file(self.staging_dir.join(ino.to_string()));
        }
        Ok(there)
    }
    fn set_quota_exceeded(&self, _exceeded: bool) {}
    fn invalidate(&self, _parent: Ino, _names: &[&str], _inos: &[Ino]) {}
}
