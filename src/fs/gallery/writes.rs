//! The write side of [`GalleryFs`]: create, open for writing, write, truncate/utimens, flush/fsync/release,
//! mkdir, unlink, rmdir, rename. Content goes to the staging area ([`super::staging`]); every change that must
//! reach OneDrive is journalled in the store's outbox with `write_durable` before the syscall that completes it
//! returns:
//!
//! - a changed file → an `Upload` entry at each close (flush) or fsync, after its staged bytes are synced to disk
//!   (the replayer coalesces a burst: only the last upload of an inode runs); a file the kernel may write
//!   directly (`LocalFile::may_change`, see `mod.rs`) is durably `Dirty` from its open and journalled at its last
//!   writer's release unless its bytes are still OneDrive's;
//! - unlink/rmdir → a `Delete` entry (to OneDrive's recycle bin) and a trash record, or, for an item never
//!   uploaded, nothing at all: its row, staged bytes and pending entries are dropped;
//! - mkdir → a local folder row and a `Mkdir` entry; rename → a `Move` entry (PATCH keeps the item id);
//! - a new file renamed over an existing one (an editor's atomic save) takes over the existing item's identity,
//!   so its content is uploaded to that item (same id, OneDrive keeps the version history).
//!
//! Folders keep times as a local filesystem's do: creating, removing or renaming an entry sets the folder's mtime
//! and ctime to now (both folders of a rename; the renamed item's ctime too), and `utimensat` on a folder keeps the
//! time and journals a `Times` entry that sends it to OneDrive's `fileSystemInfo`.
//!
//! Items never uploaded (`local_only`) need no `Move`: their upload or folder creation uses the row's current
//! name and folder when it runs.

use super::names::check_local_name;
use super::{GalleryFs, Handle};
use crate::fs::core::FsResult;
use crate::fs::error::FsError;
use crate::fs::types::*;
use crate::store::{ContentState, ItemKind, ItemRow, NewItem, OutboxOp, StoreError, TrashRow};
use crate::thumbnails::SHARED_REPO_DIR;
use std::ffi::OsStr;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Copy-up reads the original in pieces of this size.
const COPY_UP_CHUNK: u32 = 1 << 20;

/// The in-memory write state of a file whose content is staged.
#[derive(Clone, Debug)]
pub(crate) struct LocalFile {
    /// Open handles that may write.
    pub writers: u32,
    pub size: u64,
    /// Local mtime, whole Unix seconds.
    pub mtime: i64,
    /// Changed since the last journalled upload.
    pub modified: bool,
    /// The row is marked `Dirty` in the store.
    pub dirty_marked: bool,
    /// When the last writer closed (the write-back delay counts from here).
    pub last_close: Option<Instant>,
    /// fsync asked for the upload now: no write-back delay, no hold while open.
    pub forced: bool,
    /// The staged file is the cached original handed over while the file was open (see the module note): the
    /// kernel may write it directly (FUSE passthrough), so its size and mtime are the file's, and every close
    /// or fsync of a writer journals an upload.
    pub may_change: bool,
}

/// Item id given to the row of a file replaced by an editor's save while open (see `move_entry`).
const LOCAL_ORPHAN_PREFIX: &str = "local:replaced-";

/// Whether a rename over an existing file is an editor's save ([`GalleryFs::editor_save`]).
struct EditorSave {
    /// The file whose OneDrive item the renamed file takes over.
    adopt: Option<ItemRow>,
    /// The renamed file was created through this mount a moment ago and its own upload already finished.
    recent_upload: bool,
}

/// How long after its creation through this mount a file renamed over another counts as an editor's save.
pub(crate) const BORN_HERE_WINDOW: std::time::Duration = std::time::Duration::from_secs(600);
/// Entries of the born-here map before old ones are pruned.
const BORN_HERE_LIMIT: usize = 4096;

/// A staging I/O failure as the syscall sees it (a full local disk is `ENOSPC`).
pub(crate) fn staging_err(e: std::io::Error) -> FsError {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        FsError::NoSpace {
            reason: "the local disk holding galleryfs' staging area is full".into(),
        }
    } else {
        FsError::io(format!("staging area: {e}"))
    }
}

fn store_err(e: StoreError) -> FsError {
    super::store_err(e)
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

impl GalleryFs {
    /// The staging area, or `EROFS` when this mount cannot write.
    pub(super) fn staging(&self) -> FsResult<&super::Staging> {
        if self.config.read_only {
            return Err(FsError::ReadOnly);
        }
        self.staging.as_ref().ok_or(FsError::ReadOnly)
    }

    fn check_quota(&self) -> FsResult<()> {
        if self.quota_exceeded.load(Ordering::Relaxed) {
            return Err(FsError::NoSpace {
                reason: "OneDrive reports its quota exceeded".into(),
            });
        }
        Ok(())
    }

    /// OneDrive's quota state: while exceeded, create, mkdir and write fail with `ENOSPC` (reads go on).
    pub fn set_quota_exceeded(&self, exceeded: bool) {
        let was = self.quota_exceeded.swap(exceeded, Ordering::Relaxed);
        if was != exceeded {
            tracing::warn!(
                exceeded,
                "OneDrive quota state changed: new writes are {}",
                if exceeded { "refused (ENOSPC)" } else { "accepted again" }
            );
        }
    }

    pub fn quota_exceeded(&self) -> bool {
        self.quota_exceeded.load(Ordering::Relaxed)
    }

    /// Woken whenever a change is journalled; the outbox replayer waits on it.
    pub fn outbox_wake(&self) -> Arc<tokio::sync::Notify> {
        self.outbox_wake.clone()
    }

    fn parent_dir(&self, parent: Ino) -> FsResult<ItemRow> {
        if crate::fs::virtual_nodes::VirtualInodes::is_virtual(parent) {
            return Err(FsError::NotPermitted {
                what: "changes to the thumbnail repository",
            });
        }
        let dir = self.item(parent)?;
        if dir.kind != ItemKind::Dir {
            return Err(FsError::NotDir);
        }
        Ok(dir)
    }

    fn checked_name<'a>(&self, name: &'a OsStr) -> FsResult<&'a str> {
        let checked = check_local_name(name).inspect_err(|e| {
            tracing::info!(name = %name.to_string_lossy(), rule = %e, "name refused: OneDrive would not accept it");
        })?;
        if self.config.thumbnails && name == SHARED_REPO_DIR {
            return Err(FsError::Exists);
        }
        Ok(checked)
    }

    /// Makes sure `item`'s content is staged (copying the original up unless `truncate` or empty) and has a
    /// [`LocalFile`] entry, counting one more writer when `writer`.
    async fn stage(&self, item: &ItemRow, truncate: bool, writer: bool) -> FsResult<()> {
        let staging = self.staging()?;
        let _guard = self.stage_lock.lock().await;
        if let Some(e) = self.local.lock().get_mut(&item.ino) {
            e.writers += writer as u32;
            return Ok(());
        }
        // The caller's row may predate an upload that committed meanwhile (clean again, staging dropped): decide
        // from the row as it is now.
        let fresh = self.item(item.ino)?;
        let item = &fresh;
        let reuse = item.is_dirty() && staging.exists(item.ino);
        let mut may_change = false;
        if !reuse && self.is_open(item.ino) && self.content.take_cached(item, &staging.path(item.ino)) {
            // The file is open and its complete cached original may be what FUSE passthrough opens read: that
            // very file becomes the staged content, so every open of the inode keeps reading one file. Recorded
            // durably before the open returns: the row is `Dirty` with staged content, which a restart journals
            // for upload (`journal_leftovers`), so bytes the kernel writes are never taken for OneDrive's.
            self.store
                .write_durable(|t| t.set_content_state(item.ino, ContentState::Dirty))
                .map_err(store_err)?;
            tracing::debug!(
                ino = item.ino,
                "an open file's cached original is now its staged content"
            );
            may_change = true;
        } else if !reuse {
            if truncate || item.size == 0 || item.is_dirty() {
                if item.is_dirty() && !truncate && item.size > 0 {
                    tracing::error!(
                        ino = item.ino,
                        "staged content of a changed file is missing; it starts empty"
                    );
                }
                staging.create_empty(item.ino).map_err(staging_err)?;
            } else {
                self.copy_up(item).await?;
            }
        }
        let size = staging.len(item.ino).map_err(staging_err)?.unwrap_or(0);
        self.local.lock().insert(
            item.ino,
            LocalFile {
                writers: writer as u32,
                size,
                mtime: item.mtime,
                modified: may_change,
                dirty_marked: item.is_dirty() || may_change,
                last_close: None,
                forced: false,
                may_change,
            },
        );
        Ok(())
    }

    /// Fetches the whole original of `item` into staging (before a first write that keeps its content).
    async fn copy_up(&self, item: &ItemRow) -> FsResult<()> {
        let staging = self.staging()?;
        let reader = self.content.open_reader(item).await?;
        let part = staging.create_part(item.ino).map_err(staging_err)?;
        let mut offset = 0u64;
        while offset < item.size {
            let want = (item.size - offset).min(COPY_UP_CHUNK as u64) as u32;
            let chunk = reader.read(offset, want).await?;
            if chunk.is_empty() {
                return Err(FsError::io("the original ended early while copying it for an edit"));
            }
            part.write_all_at(&chunk, offset).map_err(staging_err)?;
            offset += chunk.len() as u64;
        }
        drop(part);
        staging.install_part(item.ino).map_err(staging_err)?;
        tracing::debug!(ino = item.ino, bytes = offset, "original copied up for an edit");
        Ok(())
    }

    /// Records a content change of `ino` in memory (size, mtime) and marks its row dirty once.
    fn note_change(&self, ino: Ino, size: Option<u64>, mtime: i64) -> FsResult<()> {
        let mark = {
            let mut local = self.local.lock();
            let entry = local.get_mut(&ino).ok_or(FsError::BadHandle)?;
            if let Some(size) = size {
                entry.size = size;
            }
            entry.mtime = mtime;
            entry.modified = true;
            entry.forced = false;
            !std::mem::replace(&mut entry.dirty_marked, true)
        };
        if mark {
            match self.store.set_content_state(ino, ContentState::Dirty) {
                Ok(()) | Err(StoreError::NoSuchInode(_)) => {}
                Err(e) => return Err(store_err(e)),
            }
        }
        Ok(())
    }

    /// Journals the staged content of `ino` for upload: staged bytes synced, then row and `Upload` entry in one
    /// durable transaction. Nothing to do when unchanged since the last journal (unless `force`).
    async fn journal_upload(&self, ino: Ino, force: bool) -> FsResult<()> {
        if self.orphans.lock().contains(&ino) {
            // Unlinked while open: nothing to upload.
            return Ok(());
        }
        self.refresh_may_change(ino);
        let (size, mtime) = {
            let local = self.local.lock();
            match local.get(&ino) {
                Some(e) if e.modified || force => (e.size, e.mtime),
                _ => return Ok(()),
            }
        };
        let staging = self.staging()?;
        staging.sync(ino).map_err(staging_err)?;
        let staged_path = staging.path(ino);
        let outcome = self.store.write_durable(|t| {
            t.update_local_content(ino, size, mtime)?;
            t.set_content_state(ino, ContentState::Dirty)?;
            t.enqueue(&OutboxOp::Upload {
                ino,
                staged_path,
                size,
                mtime,
            })
        });
        match outcome {
            Ok(seq) => tracing::debug!(ino, seq, size, "upload journalled"),
            // Unlinked while open: nothing to upload.
            Err(StoreError::NoSuchInode(_)) => return Ok(()),
            Err(e) => return Err(store_err(e)),
        }
        if let Some(e) = self.local.lock().get_mut(&ino) {
            e.modified = false;
            e.dirty_marked = true;
            e.forced |= force;
            if e.writers == 0 || force {
                e.last_close = Some(Instant::now());
            }
        }
        self.outbox_wake.notify_one();
        Ok(())
    }

    /// The size and mtime of a staged file the kernel may write directly (`may_change`), from the file itself;
    /// `None` for other files (their in-memory state is exact).
    pub(super) fn may_change_attrs(&self, ino: Ino) -> Option<(u64, i64)> {
        if !self.local.lock().get(&ino).is_some_and(|e| e.may_change) {
            return None;
        }
        let meta = std::fs::metadata(self.staging.as_ref()?.path(ino)).ok()?;
        Some((meta.len(), unix_secs(meta.modified().ok()?)))
    }

    /// For a `may_change` file: takes its size and mtime from the staged file and counts it as changed (writes
    /// through the kernel are not seen here), so the next journal uploads it.
    fn refresh_may_change(&self, ino: Ino) {
        let Some((size, mtime)) = self.may_change_attrs(ino) else {
            return;
        };
        if let Some(e) = self.local.lock().get_mut(&ino) {
            if e.may_change {
                e.size = size;
                e.mtime = e.mtime.max(mtime);
                e.modified = true;
            }
        }
    }

    /// The last writer of a `may_change` file closed: when its staged bytes are still exactly OneDrive's version
    /// and no upload of it is journalled, the file is no edit. The row becomes clean again and the file goes back
    /// to the cache (which checks the hash once more); returns true. Otherwise (changed, or an upload pending)
    /// returns false and the caller journals it.
    fn may_change_unchanged(&self, ino: Ino) -> FsResult<bool> {
        let staging = self.staging()?;
        let Some(row) = self.store.get(ino).map_err(store_err)? else {
            return Ok(false);
        };
        if self.store.read(|t| t.has_op(ino, "upload")).map_err(store_err)? {
            return Ok(false);
        }
        let staged = staging.path(ino);
        if !self.content.is_current_version(&row, &staged) {
            return Ok(false);
        }
        {
            let mut local = self.local.lock();
            match local.get(&ino) {
                Some(e) if e.may_change && e.writers <= 1 => {}
                _ => return Ok(false),
            }
            local.remove(&ino);
        }
        self.store
            .write_durable(|t| t.set_content_state(ino, ContentState::Cloud))
            .map_err(store_err)?;
        let row = self.item(ino)?;
        if !self.content.keep_uploaded(&row, &staged) {
            staging.remove(ino);
        }
        tracing::debug!(ino, "opened for writing, left unchanged: OneDrive's version again");
        self.invalidator.read().inode(ino);
        Ok(true)
    }

    pub(super) async fn open_staged(&self, item: ItemRow, mode: OpenMode) -> FsResult<Opened> {
        let ino = item.ino;
        if mode.write || mode.truncate {
            self.staging()?;
        } else if self.staging.is_none() {
            return Err(FsError::io("this file's local changes cannot be read: no staging area"));
        }
        self.stage(&item, mode.truncate, mode.write).await?;
        let staging = self.staging.as_ref().ok_or(FsError::ReadOnly)?;
        let file = staging.open_file(ino).map_err(staging_err)?;
        if mode.truncate {
            file.set_len(0).map_err(staging_err)?;
            self.note_change(ino, Some(0), now_secs())?;
        }
        if mode.truncate && !mode.write {
            self.journal_upload(ino, false).await?;
        }
        let fh = self.add_handle(Handle::Staged {
            file: Arc::new(file),
            writable: mode.write,
        });
        self.file_opened(ino);
        Ok(Opened {
            fh,
            keep_cache: false,
            direct_io: false,
            fetched_on_read: false,
        })
    }

    pub(super) async fn write_at(&self, ino: Ino, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let handle = self.handles.lock().get(&fh).cloned().ok_or(FsError::BadHandle)?;
        let Handle::Staged {
            file, writable: true, ..
        } = &*handle
        else {
            return Err(FsError::BadHandle);
        };
        self.check_quota()?;
        if data.is_empty() {
            return Ok(0);
        }
        file.write_all_at(data, offset).map_err(staging_err)?;
        super::Staging::write_behind(file, offset, data.len());
        let end = offset + data.len() as u64;
        let size = self.local.lock().get(&ino).map(|e| e.size.max(end)).unwrap_or(end);
        self.note_change(ino, Some(size), now_secs())?;
        Ok(data.len() as u32)
    }

    /// close(2) of a handle: a changed file is journalled for upload now, so nothing is lost after close returns.
    pub(super) async fn flush_handle(&self, ino: Ino, fh: u64) -> FsResult<()> {
        let writable = matches!(
            self.handles
                .lock()
                .get(&fh)
                .map(|h| matches!(&**h, Handle::Staged { writable: true, .. })),
            Some(true)
        );
        if !writable {
            return Ok(());
        }
        if self.local.lock().get(&ino).is_some_and(|e| e.may_change) {
            // Already `Dirty` in the store with its staged bytes: a restart journals it. The release decides
            // whether it changed (`writer_closed`); here its bytes only reach the disk.
            return self.staging()?.sync(ino).map_err(staging_err);
        }
        self.journal_upload(ino, false).await
    }

    /// The last reference to a writable handle went away.
    pub(super) async fn writer_closed(&self, ino: Ino) -> FsResult<()> {
        let last_may_change = self
            .local
            .lock()
            .get(&ino)
            .is_some_and(|e| e.may_change && e.writers <= 1);
        if last_may_change && self.may_change_unchanged(ino)? {
            return Ok(());
        }
        self.journal_upload(ino, false).await?;
        // Read before `local` is taken: the store's connections come before the short mutexes (lock order in
        // `mod.rs`).
        let row_gone = matches!(self.store.get(ino), Ok(None));
        let (discard, changed_meanwhile) = {
            let mut local = self.local.lock();
            let Some(e) = local.get_mut(&ino) else {
                return Ok(());
            };
            e.writers = e.writers.saturating_sub(1);
            if e.writers == 0 {
                e.last_close = Some(Instant::now());
            }
            // Opened for writing but never changed (the copy-up is not needed), or removed while open.
            let removed = e.writers == 0 && e.dirty_marked && (self.orphans.lock().contains(&ino) || row_gone);
            let discard = e.writers == 0 && (!e.dirty_marked || removed);
            // A change made while the journal above was written (a `utimensat` or `truncate` racing the kernel's
            // asynchronous release: rsync sets the times right after close) saw this writer and left the
            // journal to it.
            let changed_meanwhile = e.writers == 0 && e.modified && !discard;
            if discard {
                local.remove(&ino);
            }
            (discard, changed_meanwhile)
        };
        if discard {
            if let Some(s) = &self.staging {
                s.remove(ino);
            }
        } else if changed_meanwhile {
            self.journal_upload(ino, false).await?;
        } else {
            self.outbox_wake.notify_one();
        }
        Ok(())
    }

    pub(super) async fn sync_file(&self, ino: Ino, _fh: u64, _datasync: bool) -> FsResult<()> {
        let staged = self.local.lock().get(&ino).map(|e| e.dirty_marked);
        if staged == Some(true) {
            self.journal_upload(ino, true).await?;
        }
        Ok(())
    }

    /// truncate(2)/ftruncate and utimensat on a file: staged like a write and journalled at once when no writer
    /// has the file open. utimensat on a folder: kept in its row and journalled for OneDrive's `fileSystemInfo`.
    pub(super) async fn set_content_attrs(&self, ino: Ino, set: &SetAttr) -> FsResult<()> {
        let item = self.item(ino)?;
        if item.kind == ItemKind::Dir {
            if set.size.is_some() {
                return Err(FsError::IsDir);
            }
            return self.set_folder_mtime(ino, set.mtime);
        }
        self.staging()?;
        if set.size.is_some_and(|s| s > item.size) {
            self.check_quota()?;
        }
        // A writer for the duration of the change: an upload committing meanwhile then keeps the file dirty and
        // its staged bytes, instead of marking it clean under our feet (the change would be lost).
        self.stage(&item, set.size == Some(0), true).await?;
        let changed = (|| {
            if let Some(size) = set.size {
                let file = self.staging()?.open_file(ino).map_err(staging_err)?;
                file.set_len(size).map_err(staging_err)?;
            }
            let mtime = match set.mtime {
                Some(SetTime::At(t)) => unix_secs(t),
                Some(SetTime::Now) => now_secs(),
                None => now_secs(),
            };
            self.note_change(ino, set.size, mtime)
        })();
        let open = match self.local.lock().get_mut(&ino) {
            Some(e) => {
                e.writers = e.writers.saturating_sub(1);
                e.writers > 0
            }
            None => false,
        };
        changed?;
        if set.mtime.is_some() {
            // Times set (perhaps into the past): the status change time is now.
            self.store
                .write(|t| t.status_changed_at(ino, now_secs()))
                .map_err(store_err)?;
        }
        if !open {
            self.journal_upload(ino, false).await?;
        }
        Ok(())
    }

    /// `utimensat` on a folder: the mtime is kept (ctime = now) and journalled for OneDrive, where it becomes the
    /// folder's `fileSystemInfo.lastModifiedDateTime`. Only the latest setting is sent. Without an mtime (atime
    /// only, which is not kept) nothing changes.
    fn set_folder_mtime(&self, ino: Ino, mtime: Option<SetTime>) -> FsResult<()> {
        let now = now_secs();
        let mtime = match mtime {
            None => return Ok(()),
            Some(SetTime::Now) => now,
            Some(SetTime::At(t)) => unix_secs(t),
        };
        self.staging()?;
        self.store
            .write_durable(|t| {
                t.set_folder_mtime(ino, mtime, now)?;
                t.drop_ops(ino, &["times"])?;
                t.enqueue(&OutboxOp::Times { ino })
            })
            .map_err(store_err)?;
        self.outbox_wake.notify_one();
        Ok(())
    }

    pub(super) async fn create_file(
        &self,
        caller: Caller,
        parent: Ino,
        name: &OsStr,
        mode: OpenMode,
    ) -> FsResult<(Entry, Opened)> {
        let namespace = self.namespace.lock().await;
        self.staging()?;
        let dir = self.parent_dir(parent)?;
        let checked = self.checked_name(name)?;
        if let Some(existing) = self.store.lookup(dir.ino, checked).map_err(store_err)? {
            if mode.exclusive {
                return Err(FsError::Exists);
            }
            // Opening may copy the original up (a download): not under the namespace lock.
            drop(namespace);
            let opened = crate::fs::core::FsCore::open(self, caller, existing.ino, mode).await?;
            return Ok((self.entry_of(self.attr_of(&self.item(existing.ino)?)), opened));
        }
        self.check_quota()?;
        let now = now_secs();
        let ino = self
            .store
            .write_durable(|t| {
                let ino = t.insert(&NewItem::local(dir.ino, checked, ItemKind::File, now))?;
                t.folder_entries_changed(dir.ino, now)?;
                Ok::<_, StoreError>(ino)
            })
            .map_err(store_err)?;
        self.note_born_here(ino);
        let item = self.item(ino)?;
        let opened = self
            .open_staged(
                item,
                OpenMode {
                    write: true,
                    truncate: true,
                    ..mode
                },
            )
            .await?;
        let entry = self.entry_of(self.attr_of(&self.item(ino)?));
        tracing::debug!(ino, parent, "file created");
        Ok((entry, opened))
    }

    pub(super) async fn make_dir(&self, _caller: Caller, parent: Ino, name: &OsStr) -> FsResult<Entry> {
        let _namespace = self.namespace.lock().await;
        self.staging()?;
        let dir = self.parent_dir(parent)?;
        let checked = self.checked_name(name)?;
        if self.store.lookup(dir.ino, checked).map_err(store_err)?.is_some() {
            return Err(FsError::Exists);
        }
        self.check_quota()?;
        let now = now_secs();
        let ino = self
            .store
            .write_durable(|t| {
                let ino = t.insert(&NewItem::local(dir.ino, checked, ItemKind::Dir, now))?;
                t.folder_entries_changed(dir.ino, now)?;
                t.enqueue(&OutboxOp::Mkdir {
                    ino,
                    parent: dir.ino,
                    name: checked.to_string(),
                })?;
                Ok::<_, StoreError>(ino)
            })
            .map_err(store_err)?;
        self.outbox_wake.notify_one();
        Ok(self.entry_of(self.attr_of(&self.item(ino)?)))
    }

    fn existing_child(&self, parent: Ino, name: &OsStr) -> FsResult<ItemRow> {
        if crate::fs::virtual_nodes::VirtualInodes::is_virtual(parent) || name == SHARED_REPO_DIR {
            return Err(FsError::NotPermitted {
                what: "changes to the thumbnail repository",
            });
        }
        let name = name.to_str().ok_or(FsError::NotFound)?;
        self.store
            .lookup(parent, name)
            .map_err(store_err)?
            .ok_or(FsError::NotFound)
    }

    /// The trash record of a delete about to be journalled.
    fn trash_record(&self, item: &ItemRow) -> FsResult<TrashRow> {
        let path = self.store.item_path(item.ino).map_err(store_err)?;
        let parent_id = match item.parent_ino {
            Some(p) => Some(self.item(p)?.item_id),
            None => None,
        };
        Ok(TrashRow {
            item_id: item.item_id.clone(),
            name: item.name.clone(),
            path,
            parent_id,
            is_dir: item.is_dir(),
            size: item.size,
            deleted_at: chrono::Utc::now(),
            in_recycle_bin: false,
        })
    }

    /// Removes `item`'s row with what depends on it, journalling a `Delete` unless it never reached OneDrive.
    fn remove_item(
        &self,
        t: &crate::store::StoreTx<'_>,
        item: &ItemRow,
        trash: Option<&TrashRow>,
    ) -> crate::store::Result<()> {
        // The row as it is in this transaction: a first upload may have committed since `item` was read, and then
        // OneDrive has the item and must lose it too.
        let current = t.get(item.ino)?;
        let item = current.as_ref().unwrap_or(item);
        t.drop_ops(item.ino, &["upload", "move", "mkdir", "times"])?;
        if self.keeps_removed(item) {
            // Open (or reachable by the kernel): the row stays, detached, for the open descriptors and racing
            // opens; the last close or the kernel's forget removes it.
            t.detach(item.ino)?;
            self.orphans.lock().insert(item.ino);
        } else {
            t.remove(item.ino)?;
        }
        if !item.local_only {
            t.enqueue(&OutboxOp::Delete {
                ino: item.ino,
                item_id: item.item_id.clone(),
            })?;
            if let Some(trash) = trash {
                t.record_trash(&TrashRow {
                    item_id: item.item_id.clone(),
                    ..trash.clone()
                })?;
            }
        }
        Ok(())
    }

    /// Whether a file being removed keeps its row (detached, as an orphan): while it is open, and under a kernel
    /// (which may have resolved its name for an `open` arriving just after the removal) until `forget`.
    fn keeps_removed(&self, item: &ItemRow) -> bool {
        self.is_open(item.ino) || (!item.is_dir() && self.kernel_refs.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Forgets the staged content of a removed file unless it stays as an orphan (which forgets it at the end).
    fn forget_staged_unless_orphan(&self, ino: Ino) {
        if !self.orphans.lock().contains(&ino) {
            self.forget_staged(ino);
        }
    }

    /// The kernel dropped `ino` for good: an orphan no longer open goes.
    pub(super) fn inode_forgotten(&self, ino: Ino) {
        if self.is_open(ino) || !self.orphans.lock().remove(&ino) {
            return;
        }
        self.remove_orphan(ino);
    }

    /// Removes an orphan's detached row and staged content.
    fn remove_orphan(&self, ino: Ino) {
        let removed = self.store.write_durable(|t| match t.get(ino)? {
            Some(row) if row.parent_ino.is_none() => t.remove(ino).map(|_| Some(row.item_id)),
            _ => Ok(None),
        });
        match removed {
            Ok(Some(item_id)) if item_id.starts_with(LOCAL_ORPHAN_PREFIX) => self.content.drop_local_id(&item_id),
            Ok(_) => {}
            Err(e) => tracing::warn!(ino, error = %e, "cannot remove a file unlinked while open; the next start does"),
        }
        self.forget_staged(ino);
        // Its delete may have waited for the last close.
        self.outbox_wake.notify_one();
    }

    /// A file handle of `ino` was opened.
    pub(super) fn file_opened(&self, ino: Ino) {
        *self.open_files.lock().entry(ino).or_insert(0) += 1;
    }

    /// Whether `ino` has open file handles.
    pub(super) fn is_open(&self, ino: Ino) -> bool {
        self.open_files.lock().get(&ino).is_some_and(|n| *n > 0)
    }

    /// A file handle of `ino` was released: the last one of a file removed while open takes its row away.
    pub(super) fn file_closed(&self, ino: Ino) {
        {
            let mut open = self.open_files.lock();
            match open.get_mut(&ino) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    return;
                }
                Some(_) => {
                    open.remove(&ino);
                }
                None => return,
            }
        }
        if self.kernel_refs.load(std::sync::atomic::Ordering::Relaxed) {
            // The kernel's forget removes it; its delete, held while it was open, may go now.
            if self.orphans.lock().contains(&ino) {
                self.outbox_wake.notify_one();
            }
            return;
        }
        if self.orphans.lock().remove(&ino) {
            self.remove_orphan(ino);
        }
    }

    /// Remembers that `ino` was created through this mount now.
    pub(super) fn note_born_here(&self, ino: Ino) {
        let mut born = self.born_here.lock();
        if born.len() >= BORN_HERE_LIMIT {
            born.retain(|_, at| at.elapsed() < BORN_HERE_WINDOW);
        }
        born.insert(ino, Instant::now());
    }

    /// Whether `ino` was created through this mount within [`BORN_HERE_WINDOW`].
    fn born_here_recently(&self, ino: Ino) -> bool {
        self.born_here
            .lock()
            .get(&ino)
            .is_some_and(|at| at.elapsed() < BORN_HERE_WINDOW)
    }

    /// Stages the complete cached original of a clean file so it can be uploaded again (to another item).
    fn stage_from_cache(&self, item: &ItemRow) -> bool {
        let Some(staging) = &self.staging else {
            return false;
        };
        item.kind == ItemKind::File && !item.is_dirty() && self.content.copy_cached(item, &staging.path(item.ino))
    }

    /// Forgets the staged content of a removed item. A writer that still has it open keeps writing to the
    /// unlinked file (POSIX), and nothing is journalled for it any more.
    fn forget_staged(&self, ino: Ino) {
        {
            let mut local = self.local.lock();
            if local.get(&ino).is_none_or(|e| e.writers == 0) {
                local.remove(&ino);
            }
        }
        if let Some(s) = &self.staging {
            s.remove(ino);
        }
    }

    pub(super) async fn remove_file(&self, _caller: Caller, parent: Ino, name: &OsStr) -> FsResult<()> {
        let _namespace = self.namespace.lock().await;
        self.staging()?;
        let item = self.existing_child(parent, name)?;
        if item.is_dir() {
            return Err(FsError::IsDir);
        }
        let trash = (!item.local_only).then(|| self.trash_record(&item)).transpose()?;
        self.store
            .write_durable(|t| {
                self.remove_item(t, &item, trash.as_ref())?;
                t.folder_entries_changed(parent, now_secs())
            })
            .map_err(store_err)?;
        self.forget_staged_unless_orphan(item.ino);
        self.outbox_wake.notify_one();
        Ok(())
    }

    pub(super) async fn remove_dir(&self, _caller: Caller, parent: Ino, name: &OsStr) -> FsResult<()> {
        let _namespace = self.namespace.lock().await;
        self.staging()?;
        let item = self.existing_child(parent, name)?;
        if !item.is_dir() {
            return Err(FsError::NotDir);
        }
        if self.store.child_count(item.ino).map_err(store_err)? > 0 {
            return Err(FsError::NotEmpty);
        }
        let trash = (!item.local_only).then(|| self.trash_record(&item)).transpose()?;
        self.store
            .write_durable(|t| {
                self.remove_item(t, &item, trash.as_ref())?;
                t.folder_entries_changed(parent, now_secs())
            })
            .map_err(store_err)?;
        self.outbox_wake.notify_one();
        Ok(())
    }

    pub(super) async fn move_entry(
        &self,
        _caller: Caller,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        noreplace: bool,
    ) -> FsResult<()> {
        let _namespace = self.namespace.lock().await;
        self.staging()?;
        let source = self.existing_child(parent, name)?;
        let dir = self.parent_dir(new_parent)?;
        let checked = self.checked_name(new_name)?;
        let Some(target) = self.rename_target(&source, &dir, checked, noreplace)? else {
            return Ok(());
        };
        let save = self.editor_save(&source, target.as_ref());
        let trash = match (&target, &save.adopt) {
            (Some(t), None) if !t.local_only => Some(self.trash_record(t)?),
            _ => None,
        };
        self.store
            .write_durable(|t| {
                if let Some(old) = &save.adopt {
                    self.adopt_in(t, &source, old, save.recent_upload)?;
                } else if let Some(old) = &target {
                    self.remove_item(t, old, trash.as_ref())?;
                }
                t.rename(source.ino, dir.ino, checked)?;
                let now = now_secs();
                t.status_changed_at(source.ino, now)?;
                t.folder_entries_changed(parent, now)?;
                t.folder_entries_changed(dir.ino, now)?;
                self.journal_rename_in(t, &source, &dir, checked, save.adopt.is_some())
            })
            .map_err(store_err)?;
        if let Some(old) = &target {
            self.forget_staged_unless_orphan(old.ino);
        }
        self.outbox_wake.notify_one();
        Ok(())
    }

    /// Checks a rename of `source` to `checked` in `dir`: `Ok(None)` when there is nothing to do (the same place),
    /// else the entry it replaces, if any.
    fn rename_target(
        &self,
        source: &ItemRow,
        dir: &ItemRow,
        checked: &str,
        noreplace: bool,
    ) -> FsResult<Option<Option<ItemRow>>> {
        if source.is_dir()
            && self
                .store
                .read(|t| t.is_within(dir.ino, source.ino))
                .map_err(store_err)?
        {
            return Err(FsError::InvalidArgument("a folder cannot move inside itself".into()));
        }
        let target = self
            .store
            .lookup(dir.ino, checked)
            .map_err(store_err)?
            .filter(|t| t.ino != source.ino);
        if let Some(target) = &target {
            if noreplace {
                return Err(FsError::Exists);
            }
            match (source.is_dir(), target.is_dir()) {
                (false, true) => return Err(FsError::IsDir),
                (true, false) => return Err(FsError::NotDir),
                (true, true) if self.store.child_count(target.ino).map_err(store_err)? > 0 => {
                    return Err(FsError::NotEmpty)
                }
                _ => {}
            }
        }
        if target.is_none() && source.parent_ino == Some(dir.ino) && source.name == checked {
            return Ok(None);
        }
        Ok(Some(target))
    }

    /// Whether renaming `source` over `target` is an editor's save: a new file renamed over an existing one takes
    /// over its OneDrive item (same id, so OneDrive keeps the version history). "New" is a file not uploaded yet,
    /// or one created through this mount a moment ago whose upload already finished (its own item is then a
    /// stray, deleted in [`GalleryFs::adopt_in`]); the latter needs its bytes here (staged, or complete in the
    /// cache), else it is a plain replace.
    fn editor_save(&self, source: &ItemRow, target: Option<&ItemRow>) -> EditorSave {
        let replaces_file = target.is_some_and(|t| !t.local_only && !t.is_dir()) && !source.is_dir();
        let recent_upload = replaces_file
            && !source.local_only
            && self.born_here_recently(source.ino)
            && (source.is_dirty() || self.stage_from_cache(source));
        let adopt = target
            .filter(|_| replaces_file && (source.local_only || recent_upload))
            .cloned();
        if let Some(old) = &adopt {
            tracing::debug!(
                source = source.ino,
                target = old.ino,
                recent_upload,
                "renamed over an existing file: takes over its OneDrive item"
            );
        }
        EditorSave { adopt, recent_upload }
    }

    /// In a rename's transaction: `source` takes over `old`'s OneDrive item (an editor's save).
    fn adopt_in(
        &self,
        t: &crate::store::StoreTx<'_>,
        source: &ItemRow,
        old: &ItemRow,
        recent_upload: bool,
    ) -> crate::store::Result<()> {
        // Both rows as they are in this transaction: the replayer may have committed an upload of either since
        // they were read (a new baseline for the target, a first upload's id for the source), and what the source
        // takes over must be current.
        let old = &t.get(old.ino)?.unwrap_or_else(|| old.clone());
        let fresh_source = t.get(source.ino)?.unwrap_or_else(|| source.clone());
        if !recent_upload && !fresh_source.local_only && fresh_source.item_id != old.item_id {
            // Its first upload committed meanwhile: that item is a stray now, as below.
            t.enqueue(&OutboxOp::Delete {
                ino: source.ino,
                item_id: fresh_source.item_id.clone(),
            })?;
        }
        t.drop_ops(old.ino, &["upload"])?;
        if recent_upload {
            // A move of the source's own item still journalled (renamed before this save) is moot: that item goes
            // (below).
            t.drop_ops(source.ino, &["move"])?;
        }
        // The adopted item's own moves still journalled (renamed before this save, to the place the adopting file
        // now takes) are the adopting file's now, in their place in the sequence: a folder removed after its file
        // moved out must still see the move first.
        t.reassign_moves(old.ino, source.ino)?;
        if self.keeps_removed(old) {
            // Open (a viewer showing the photo being saved) or reachable by the kernel: the old row stays,
            // detached, under a local id (the OneDrive id goes to the new content) until its last close or forget.
            // What of it is not read or cached yet cannot be fetched any more: reads of it fail with EIO.
            let local_id = format!("{LOCAL_ORPHAN_PREFIX}{}", old.ino);
            // Its cached bytes follow it to the local id, before any reader can find the row under that id.
            self.content.keep_under_local_id(old, &local_id);
            t.detach(old.ino)?;
            t.set_item_id(old.ino, &local_id)?;
            self.orphans.lock().insert(old.ino);
        } else {
            t.remove(old.ino)?;
        }
        if recent_upload {
            // The source's own item goes (an upload of it still running finds the row moved on and leaves this
            // delete to do the same); its bytes become the adopted item's next version.
            t.enqueue(&OutboxOp::Delete {
                ino: source.ino,
                item_id: source.item_id.clone(),
            })?;
            if !source.is_dirty() {
                // Staged from the cache above: the file is a local change again.
                t.drop_blocks(source.ino)?;
                t.set_content_state(source.ino, ContentState::Dirty)?;
            }
        }
        t.adopt_identity(source.ino, old)
    }

    /// In a rename's transaction, after the row moved: what OneDrive must be told. An adopting file's content goes
    /// to the adopted item (an upload, unless one is queued or a writer still has it open); any other file or
    /// folder on OneDrive is moved there.
    fn journal_rename_in(
        &self,
        t: &crate::store::StoreTx<'_>,
        source: &ItemRow,
        dir: &ItemRow,
        checked: &str,
        adopted: bool,
    ) -> crate::store::Result<()> {
        if adopted {
            if !t.has_op(source.ino, "upload")? && self.local.lock().get(&source.ino).is_none_or(|e| e.writers == 0) {
                let row = t.get(source.ino)?.ok_or(StoreError::NoSuchInode(source.ino))?;
                let staged_path = self.staging.as_ref().map(|s| s.path(source.ino)).unwrap_or_default();
                t.enqueue(&OutboxOp::Upload {
                    ino: source.ino,
                    staged_path,
                    size: row.size,
                    mtime: row.mtime,
                })?;
            }
        } else if let Some(now) = t.get(source.ino)?.filter(|now| !now.local_only) {
            // `now`, not `source`: a first upload may have committed since `source` was read, and then OneDrive has
            // the item at the old place.
            t.enqueue(&OutboxOp::Move {
                ino: source.ino,
                item_id: now.item_id.clone(),
                new_parent_id: dir.item_id.clone(),
                new_name: checked.to_string(),
            })?;
        }
        Ok(())
    }
}
