//! The on-disk content cache `<cache dir>/content/`: one sparse file per item content version, the block map in
//! the metadata store, the byte budget with LRU eviction, and whole-file verification when the last missing range
//! of a version arrives.
//!
//! Layout: `content/<h(item id)>/<h(cTag)>` where `h` is the first 32 hex digits of SHA-256, so names are safe and
//! fixed-length whatever OneDrive's ids and tags look like. When a new version of an item is first written, the
//! files of its other versions are deleted.
//!
//! Truth: a byte is cached only when the store's block map says so (`mark_present` after the bytes are written);
//! bytes in a file that the map does not cover are ignored. The last range of a version is marked only after the
//! whole file matched the item's quickXorHash, so an item never becomes `Cached` unverified.
//!
//! Suspect versions: a version whose download failed its quickXorHash is remembered (for the life of the
//! process) until a whole download of it verifies; readers of a suspect version serve no byte before that
//! ([`DiskCache::is_suspect`]), so bytes that failed a check are never served again.
//!
//! Locking (per item, a read-write lock holding the item's *generation*):
//! - `read_at` and the data half of `write_at` take the read lock: any number of readers and writers of the same
//!   item run in parallel. Two fetches writing the same range write the same bytes of the same version, which is
//!   harmless.
//! - committing a range (the completeness check, verification and `mark_present`), eviction and stale-version
//!   removal take the write lock, so two fetches finishing complementary halves cannot both skip verification.
//! - eviction bumps the generation; a write that began under an older generation is not marked present (its file
//!   may have been deleted underneath it).
//!
//! Lock order (a lock is only taken while holding locks above it in this list; never the other way):
//! 1. `DiskCache::enforcing` (one budget enforcer at a time; held across the evictions it makes);
//! 2. `DiskCache::slots`, the map of per-item slots (held only to find, create or prune a slot, or to read a
//!    slot's open-reader count; nothing else is taken under it);
//! 3. an item's `generation` lock (`ItemSlot::generation`, read or write; [`OpenGuard::while_generation`] tries
//!    it, without waiting, for a reader's direct file read). At most one item's at a time;
//! 4. under it, any of: the metadata store's writer (`Store`'s connection mutex, `store/mod.rs`), the item's
//!    stream hasher (`stream_hash.rs`), `DiskCache::suspect`.
//!
//! Leaves, never held while taking another lock: an item's `in_flight` list (claims), its `last_touch`, and the
//! `changed` notification, which is signalled after the locks are released. No lock is held across an `.await`
//! (every method here is blocking). The filesystem reaches these through `Originals` (`mount/fs_backends.rs`): a
//! read holds none of its locks; a copy of a cached original (`copy_cached`) may run under its staging lock (an
//! async mutex, `fs/gallery/writes.rs`), which therefore comes before all of these.
//!
//! The locks and atomics come from [`super::sync_shim`], so that the claim protocol (claim, write, commit, evict,
//! wait) runs under the shuttle model checker in `tests/content_claims_shuttle.rs`.
//!
//! Shared fetches: readers claim the ranges they fetch ([`DiskCache::claim_fetch`], atomic under the item's
//! in-flight list) and wait on the item's [`ItemWatch`] for ranges another reader has claimed; every commit and
//! every end of a fetch (also an aborted one: the claim is a guard) wakes the item's waiters. Readers pinned to
//! different cTags never share.
//!
//! Budget: only bytes that may be evicted count (the store's eviction candidates: not pinned, not dirty). Items
//! with an open reader are not evicted while open. All methods block (file I/O and SQLite): call them from
//! `spawn_blocking` in async code.

use super::stream_hash::{HashCounters, StreamHasher};
use super::sync_shim::{AtomicU64, AtomicUsize, Mutex, RwLock};
use super::verify;
use crate::store::{ContentState, ItemKind, ItemRow, Store, StoreError};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// How often reads of one item refresh its LRU position at most.
const TOUCH_INTERVAL: Duration = Duration::from_secs(1);
/// Eviction candidates fetched per round.
const EVICTION_BATCH: usize = 64;
/// Lock slots kept before unused ones are forgotten.
const SLOT_PRUNE_THRESHOLD: usize = 4096;
/// Enough rows to sum every evictable item.
const ALL_ROWS: usize = 10_000_000;

/// Errors of the content cache.
#[derive(Debug, Error)]
pub enum CacheError {
    #[error("no item with inode {0}")]
    NoSuchItem(u64),
    #[error("inode {0} is not a file with content on OneDrive")]
    NotRemoteFile(u64),
    #[error("inode {0} has local changes not yet uploaded; its content is not in the download cache")]
    Dirty(u64),
    #[error("the downloaded content of {item} does not match its quickXorHash")]
    HashMismatch { item: String },
    #[error("{item} changed on OneDrive (new content version) while it was being read")]
    VersionChanged { item: String },
    #[error("content cache file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One content version of one item, as seen when a file was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemVersion {
    pub ino: u64,
    pub item_id: String,
    /// The item's name, for log lines.
    pub name: String,
    pub ctag: String,
    pub size: u64,
    /// The expected quickXorHash (base64), when OneDrive gave one.
    pub quick_xor_hash: Option<String>,
}

impl ItemVersion {
    /// The current content version of a stored item.
    pub fn of(row: &ItemRow) -> Result<ItemVersion, CacheError> {
        if row.kind != ItemKind::File || row.local_only {
            return Err(CacheError::NotRemoteFile(row.ino));
        }
        if row.is_dirty() {
            return Err(CacheError::Dirty(row.ino));
        }
        let ctag = row.ctag.clone().ok_or(CacheError::NotRemoteFile(row.ino))?;
        Ok(ItemVersion {
            ino: row.ino,
            item_id: row.item_id.clone(),
            name: row.name.clone(),
            ctag,
            size: row.size,
            quick_xor_hash: row.quick_xor_hash.clone(),
        })
    }
}

/// What committing a written range did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commit {
    /// Marked present; the version is still incomplete.
    Partial,
    /// The version is now complete and verified (`ContentState::Cached`).
    Complete,
    /// Not marked: the item's cache was evicted or reset while the bytes were being written.
    Discarded,
}

/// Cache usage for `galleryfs status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheUsage {
    /// Bytes counted against the budget (cached originals that are neither pinned nor dirty).
    pub used_bytes: u64,
    pub budget_bytes: u64,
}

#[derive(Default)]
struct ItemSlot {
    generation: RwLock<u64>,
    open_readers: AtomicUsize,
    /// Hash mismatches seen on this item (bumped before the bad blocks are dropped).
    mismatches: AtomicU64,
    /// Content changes OneDrive made to the item ([`DiskCache::forget_stale`]).
    version_changes: AtomicU64,
    /// Ranges being fetched by any reader of the item: (fetch id, cTag, start, end).
    in_flight: Mutex<Vec<(u64, String, u64, u64)>>,
    /// Woken after every commit to the item and whenever a fetch ends.
    changed: tokio::sync::Notify,
    last_touch: Mutex<Option<Instant>>,
    /// The quickXorHash of the bytes written so far, in offset order (see [`super::stream_hash`]).
    stream_hash: StreamHasher,
}

/// The on-disk store of one account's originals: sparse files of verified blocks, the block map, the budget.
pub struct DiskCache {
    dir: PathBuf,
    store: Arc<Store>,
    budget: AtomicU64,
    slots: Mutex<HashMap<u64, Arc<ItemSlot>>>,
    enforcing: Mutex<()>,
    hash_counters: HashCounters,
    /// Versions (inode → cTag) whose download failed its quickXorHash and has not verified since.
    suspect: Mutex<HashMap<u64, String>>,
}

impl std::fmt::Debug for DiskCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskCache")
            .field("dir", &self.dir)
            .field("budget", &self.budget.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Keeps an item from being evicted while a reader has it open; see [`DiskCache::register_reader`].
pub struct OpenGuard {
    slot: Arc<ItemSlot>,
    mismatches_at_open: u64,
    /// `version_changes` when last looked at ([`OpenGuard::version_changes_seen`]).
    version_changes_seen: AtomicU64,
}

impl OpenGuard {
    /// Whether OneDrive changed the item's content since the guard was taken or this last returned true.
    pub fn version_changes_seen(&self) -> bool {
        let now = self.slot.version_changes.load(Ordering::SeqCst);
        self.version_changes_seen.swap(now, Ordering::SeqCst) != now
    }

    /// Whether [`Self::version_changes_seen`] would return true, without marking the change as seen.
    pub fn version_change_pending(&self) -> bool {
        self.slot.version_changes.load(Ordering::SeqCst) != self.version_changes_seen.load(Ordering::SeqCst)
    }

    /// Whether a download of this item failed verification since the guard was taken. A reader checks this after
    /// finding bytes missing, so that it reports the mismatch instead of refetching the dropped blocks.
    /// A mismatch being handled (the count is bumped under the exclusive generation lock, before the blocks are
    /// dropped) is reported once its handling is done: the shared lock is taken first.
    pub fn mismatch_since_open(&self) -> bool {
        let _settled = self.slot.generation.read();
        self.mismatch_counted_since_open()
    }

    /// [`Self::mismatch_since_open`] without waiting for a mismatch being handled (no lock: a commit holding the
    /// item's generation does not stall the caller). For bytes about to be served from received chunks: a range
    /// served that way is confirmed by the commits before the read that reaches the end of the file.
    pub fn mismatch_counted_since_open(&self) -> bool {
        self.slot.mismatches.load(Ordering::SeqCst) != self.mismatches_at_open
    }
}

impl OpenGuard {
    /// Runs `f` holding the item's generation (shared, so no eviction runs meanwhile) if it is still `generation`.
    /// Never waits: `None` also while the lock is held exclusively or wanted so (a commit or an eviction of the
    /// item is running), so an async reader never stalls its runtime thread behind a commit; the caller then takes
    /// the long way (a block-map query on the blocking pool).
    pub fn while_generation<R>(&self, generation: u64, f: impl FnOnce() -> R) -> Option<R> {
        let current = self.slot.generation.try_read()?;
        (*current == generation).then(f)
    }

    /// A handle to wait for changes to the item's cache.
    pub fn watch(&self) -> ItemWatch {
        ItemWatch(self.slot.clone())
    }
}

/// Waits for changes to one item's cache.
#[derive(Clone)]
pub struct ItemWatch(Arc<ItemSlot>);

impl ItemWatch {
    /// The item's cache generation now (bumped by eviction, a hash mismatch or a lost file: bytes known present
    /// under an older generation may be gone). Blocking: for the blocking pool.
    pub fn generation(&self) -> u64 {
        *self.0.generation.read()
    }

    /// Resolves at the next commit to the item or the end of any fetch of it. Create and `enable` it before
    /// looking at the block map to miss no change.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.0.changed.notified()
    }
}

/// A range being fetched; other readers of the item wait for it instead of fetching it again. Dropping it (the
/// fetch ended or was aborted) wakes them.
pub struct InFlight {
    slot: Arc<ItemSlot>,
    id: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.slot.in_flight.lock().retain(|e| e.0 != self.id);
        self.slot.changed.notify_waiters();
    }
}

static NEXT_FETCH_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.slot.open_readers.fetch_sub(1, Ordering::AcqRel);
    }
}

fn hashed(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl DiskCache {
    /// Opens (creating) `<cache_dir>/content/` with a budget of `budget_bytes`.
    pub fn open(cache_dir: &Path, store: Arc<Store>, budget_bytes: u64) -> Result<DiskCache, CacheError> {
        let dir = cache_dir.join("content");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(DiskCache {
            dir,
            store,
            budget: AtomicU64::new(budget_bytes),
            slots: Mutex::new(HashMap::new()),
            enforcing: Mutex::new(()),
            hash_counters: HashCounters::default(),
            suspect: Mutex::new(HashMap::new()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn budget(&self) -> u64 {
        self.budget.load(Ordering::Relaxed)
    }

    pub fn set_budget(&self, bytes: u64) {
        self.budget.store(bytes, Ordering::Relaxed);
    }

    /// Bytes read back from cache files to verify them. A version downloaded by this process reads back nothing,
    /// in whatever order its parts arrived (see [`super::stream_hash`]).
    pub fn hash_reread_bytes(&self) -> u64 {
        self.hash_counters.reread.load(Ordering::Relaxed)
    }

    /// Whether a download of this version failed its quickXorHash and no download of it has verified since:
    /// its bytes must not be served before the whole version is downloaded and verified.
    pub fn is_suspect(&self, v: &ItemVersion) -> bool {
        self.suspect.lock().get(&v.ino) == Some(&v.ctag)
    }

    /// The current content version of inode `ino`.
    pub fn version(&self, ino: u64) -> Result<ItemVersion, CacheError> {
        let row = self.store.get(ino)?.ok_or(CacheError::NoSuchItem(ino))?;
        ItemVersion::of(&row)
    }

    /// The directory holding every version of an item.
    pub fn item_dir(&self, item_id: &str) -> PathBuf {
        self.dir.join(hashed(item_id))
    }

    /// The sparse file of one content version.
    pub fn path_of(&self, v: &ItemVersion) -> PathBuf {
        self.item_dir(&v.item_id).join(hashed(&v.ctag))
    }

    fn slot(&self, ino: u64) -> Arc<ItemSlot> {
        self.slots.lock().entry(ino).or_default().clone()
    }

    /// Marks the item as open by a reader until the guard is dropped (such items are not evicted for budget).
    pub fn register_reader(&self, ino: u64) -> OpenGuard {
        let slot = self.slot(ino);
        slot.open_readers.fetch_add(1, Ordering::AcqRel);
        let mismatches_at_open = slot.mismatches.load(Ordering::SeqCst);
        let version_changes_seen = AtomicU64::new(slot.version_changes.load(Ordering::SeqCst));
        OpenGuard {
            slot,
            mismatches_at_open,
            version_changes_seen,
        }
    }

    fn is_open(&self, ino: u64) -> bool {
        self.slots
            .lock()
            .get(&ino)
            .is_some_and(|s| s.open_readers.load(Ordering::Acquire) > 0)
    }

    /// Claims the parts of `[start, end)` of version `v` that no reader is fetching: each returned range is
    /// registered until its guard is dropped. Checking and registering is atomic, so two readers never claim the
    /// same bytes.
    pub fn claim_fetch(&self, v: &ItemVersion, start: u64, end: u64) -> Vec<(u64, u64, InFlight)> {
        let slot = self.slot(v.ino);
        let mut in_flight = slot.in_flight.lock();
        let mut busy: Vec<(u64, u64)> = in_flight
            .iter()
            .filter(|e| e.1 == v.ctag && e.2 < end && start < e.3)
            .map(|e| (e.2, e.3))
            .collect();
        busy.sort_unstable();
        let mut free = Vec::new();
        let mut cursor = start;
        for (lo, hi) in busy {
            if lo > cursor {
                free.push((cursor, lo));
            }
            cursor = cursor.max(hi);
        }
        if cursor < end {
            free.push((cursor, end));
        }
        free.into_iter()
            .map(|(lo, hi)| {
                let id = NEXT_FETCH_ID.fetch_add(1, Ordering::Relaxed);
                in_flight.push((id, v.ctag.clone(), lo, hi));
                let guard = InFlight { slot: slot.clone(), id };
                (lo, hi, guard)
            })
            .collect()
    }

    /// The ranges of version `v` being fetched by any reader.
    pub fn fetches_in_flight(&self, v: &ItemVersion) -> Vec<(u64, u64)> {
        let slot = self.slot(v.ino);
        let in_flight = slot.in_flight.lock();
        in_flight.iter().filter(|e| e.1 == v.ctag).map(|e| (e.2, e.3)).collect()
    }

    /// The sub-ranges of `[start, end)` of version `v` that are not cached.
    pub fn missing_ranges(&self, v: &ItemVersion, start: u64, end: u64) -> Result<Vec<(u64, u64)>, CacheError> {
        Ok(self.store.missing_ranges(v.ino, &v.ctag, start, end.min(v.size))?)
    }

    /// Bytes `[offset, offset + len)` (clipped to the item size) of version `v`, or `None` when not all of them
    /// are cached.
    pub fn read_at(&self, v: &ItemVersion, offset: u64, len: u64) -> Result<Option<Vec<u8>>, CacheError> {
        let end = offset.saturating_add(len).min(v.size);
        if offset >= end {
            return Ok(Some(Vec::new()));
        }
        let slot = self.slot(v.ino);
        let path = self.path_of(v);
        let buf = {
            let _shared = slot.generation.read();
            if !self.missing_ranges(v, offset, end)?.is_empty() {
                return Ok(None);
            }
            let outcome =
                File::open(&path).and_then(|file| read_exact_unzeroed(&file, offset, (end - offset) as usize));
            match outcome {
                Ok(buf) => buf,
                Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof) => {
                    drop(_shared);
                    // The block map promises bytes the file does not have (deleted or cut by hand): forget them
                    // so that they are fetched again.
                    tracing::warn!(ino = v.ino, item = %v.name, error = %e, "cache file lost bytes; refetching");
                    let mut generation = slot.generation.write();
                    *generation += 1;
                    self.store.drop_blocks(v.ino)?;
                    return Ok(None);
                }
                Err(e) => return Err(io_err(&path)(e)),
            }
        };
        let due = {
            let mut last = slot.last_touch.lock();
            let due = last.is_none_or(|t| t.elapsed() >= TOUCH_INTERVAL);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            self.store.touch(v.ino)?;
        }
        Ok(Some(buf))
    }

    /// The cache file of version `v`, opened for reading, when the version is complete (verified) in the cache;
    /// `None` otherwise. The open file keeps the version's bytes readable even if the item is evicted or replaced
    /// by a newer version afterwards (the file is then only unlinked), so reads through it need no block-map check:
    /// they are the bytes of the version pinned at open. Refreshes the item's LRU position.
    pub fn open_complete(&self, v: &ItemVersion) -> Result<Option<File>, CacheError> {
        let slot = self.slot(v.ino);
        let path = self.path_of(v);
        let file = {
            let _shared = slot.generation.read();
            if v.size == 0 || !self.missing_ranges(v, 0, v.size)?.is_empty() {
                return Ok(None);
            }
            match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_err(&path)(e)),
            }
        };
        // A file cut short by hand is not served from (the reader's path notices and refetches).
        if file.metadata().map_err(io_err(&path))?.len() < v.size {
            return Ok(None);
        }
        self.store.touch(v.ino)?;
        Ok(Some(file))
    }

    /// Writes `bytes` at `offset` into the cache file of version `v`, then commits the range: marks it present,
    /// or — when it completes the version — verifies the whole file first. Afterwards the budget is enforced.
    pub fn write_at(&self, v: &ItemVersion, offset: u64, bytes: &[u8]) -> Result<Commit, CacheError> {
        self.write_slices_at(v, offset, &[bytes])
    }

    /// [`DiskCache::write_at`] for bytes that arrived in pieces (a download's chunks): written one after the
    /// other from `offset` without gathering them into one buffer first.
    pub fn write_slices_at(&self, v: &ItemVersion, offset: u64, slices: &[&[u8]]) -> Result<Commit, CacheError> {
        let total: u64 = slices.iter().map(|s| s.len() as u64).sum();
        let end = (offset + total).min(v.size);
        if offset >= end {
            return Ok(Commit::Discarded);
        }
        let slot = self.slot(v.ino);
        let path = self.path_of(v);
        if !path.exists() {
            let _exclusive = slot.generation.write();
            self.create_version_file(v, &path)?;
        }
        let generation = {
            let generation = slot.generation.read();
            let file = match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(f) => f,
                // Evicted between creation and now.
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Commit::Discarded),
                Err(e) => return Err(io_err(&path)(e)),
            };
            // Bytes past the version's size are never written.
            let mut at = offset;
            let mut kept: Vec<&[u8]> = Vec::with_capacity(slices.len());
            for slice in slices {
                if at >= end {
                    break;
                }
                let slice = &slice[..(end - at).min(slice.len() as u64) as usize];
                kept.push(slice);
                at += slice.len() as u64;
            }
            write_all_vectored_at(&file, &kept, offset).map_err(io_err(&path))?;
            let mut at = offset;
            for slice in kept {
                slot.stream_hash.feed(&v.ctag, *generation, at, slice);
                at += slice.len() as u64;
            }
            *generation
        };
        let commit = self.commit(v, &slot, generation, offset, end);
        slot.changed.notify_waiters();
        let commit = commit?;
        if commit != Commit::Discarded {
            self.enforce_budget()?;
        }
        Ok(commit)
    }

    /// Creates the (empty, sparse) file of a version and deletes the item's other versions. Call with the item's
    /// write lock held.
    fn create_version_file(&self, v: &ItemVersion, path: &Path) -> Result<(), CacheError> {
        if path.exists() {
            return Ok(());
        }
        // A reader still pinned to an older version must not replace the current version's file.
        let row = self.store.get(v.ino)?.ok_or(CacheError::NoSuchItem(v.ino))?;
        if row.ctag.as_deref() != Some(v.ctag.as_str()) {
            return Err(CacheError::VersionChanged { item: v.name.clone() });
        }
        let dir = self.item_dir(&v.item_id);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        remove_other_versions(&dir, path);
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err(path))?;
        Ok(())
    }

    fn commit(
        &self,
        v: &ItemVersion,
        slot: &ItemSlot,
        generation: u64,
        start: u64,
        end: u64,
    ) -> Result<Commit, CacheError> {
        let mut current = slot.generation.write();
        if *current != generation {
            return Ok(Commit::Discarded);
        }
        let row = self.store.get(v.ino)?.ok_or(CacheError::NoSuchItem(v.ino))?;
        if row.ctag.as_deref() != Some(v.ctag.as_str()) || row.is_dirty() {
            return Err(CacheError::VersionChanged { item: v.name.clone() });
        }
        let missing = self.store.missing_ranges(v.ino, &v.ctag, 0, v.size)?;
        let completes = !missing.is_empty() && missing.iter().all(|&(lo, hi)| lo >= start && hi <= end);
        if !completes {
            self.store.mark_present(v.ino, &v.ctag, start, end)?;
            return Ok(if missing.is_empty() {
                Commit::Complete
            } else {
                Commit::Partial
            });
        }
        let path = self.path_of(v);
        let verdict = match &v.quick_xor_hash {
            Some(expected) => match slot
                .stream_hash
                .finish(&v.ctag, generation, &path, v.size, &self.hash_counters)
            {
                Ok(actual) if verify::hashes_match(expected, &actual) => Ok(()),
                Ok(actual) => Err(format!("expected {expected}, got {actual}")),
                Err(e) => Err(format!("cannot read the cache file back: {e}")),
            },
            None => {
                tracing::debug!(ino = v.ino, item = %v.name, "no quickXorHash to verify the download against");
                Ok(())
            }
        };
        match verdict {
            Ok(()) => {
                self.store.mark_present(v.ino, &v.ctag, start, end)?;
                if self.suspect.lock().remove(&v.ino).is_some() {
                    tracing::info!(ino = v.ino, item = %v.name, "content verified after an earlier mismatch");
                }
                tracing::debug!(ino = v.ino, item = %v.name, size = v.size, "content cached and verified");
                Ok(Commit::Complete)
            }
            Err(why) => {
                tracing::warn!(ino = v.ino, item = %v.name, size = v.size, %why,
                    "downloaded content does not match its quickXorHash; discarded");
                *current += 1;
                slot.mismatches.fetch_add(1, Ordering::SeqCst);
                self.suspect.lock().insert(v.ino, v.ctag.clone());
                let _ = fs::remove_file(&path);
                self.store.drop_blocks(v.ino)?;
                Err(CacheError::HashMismatch { item: v.name.clone() })
            }
        }
    }

    /// Evicts an item's cached content (`galleryfs free`, or the budget): deletes its files, forgets its blocks,
    /// and sets it to `ContentState::Cloud`. Returns the bytes freed. A dirty item is refused.
    pub fn evict(&self, ino: u64) -> Result<u64, CacheError> {
        let row = self.store.get(ino)?.ok_or(CacheError::NoSuchItem(ino))?;
        if row.is_dirty() {
            return Err(CacheError::Dirty(ino));
        }
        let slot = self.slot(ino);
        let mut generation = slot.generation.write();
        *generation += 1;
        slot.stream_hash.reset();
        let freed = self.store.present_bytes(ino)?;
        let dir = self.item_dir(&row.item_id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&dir)(e)),
        }
        self.store.drop_blocks(ino)?;
        tracing::debug!(ino, item = %row.name, freed, "content evicted");
        Ok(freed)
    }

    /// After the item's cTag changed (delta): deletes the files of other versions and forgets blocks that belong
    /// to an older version. Readers pinned to an older version learn of the change at their next read.
    pub fn forget_stale(&self, ino: u64) -> Result<(), CacheError> {
        let Some(row) = self.store.get(ino)? else {
            return Ok(());
        };
        let slot = self.slot(ino);
        slot.version_changes.fetch_add(1, Ordering::SeqCst);
        let mut generation = slot.generation.write();
        let Some(ctag) = row.ctag.as_deref() else {
            return Ok(());
        };
        let dir = self.item_dir(&row.item_id);
        let current = dir.join(hashed(ctag));
        remove_other_versions(&dir, &current);
        let present = self.store.present_bytes(ino)?;
        let none_current = row.size > 0 && self.store.missing_ranges(ino, ctag, 0, row.size)? == [(0, row.size)];
        if present > 0 && none_current && !row.is_dirty() {
            *generation += 1;
            self.store.drop_blocks(ino)?;
        }
        Ok(())
    }

    /// Gives a replaced file's cached version a second name under `new_item_id` (a hard link in the cache
    /// directory), for a row that keeps the version's bytes and block map but takes a local item id: readers that
    /// open that row find the file under its new id, whatever later happens to the item's own directory. Returns
    /// whether a file was linked (false when the version has no cache file). Takes no lock: it may run inside a
    /// store transaction; a version removed at the same moment is simply not linked.
    pub fn link_version_as(&self, v: &ItemVersion, new_item_id: &str) -> Result<bool, CacheError> {
        let from = self.path_of(v);
        let to_dir = self.item_dir(new_item_id);
        fs::create_dir_all(&to_dir).map_err(io_err(&to_dir))?;
        let to = to_dir.join(hashed(&v.ctag));
        match fs::hard_link(&from, &to) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(true),
            Err(e) => Err(io_err(&to)(e)),
        }
    }

    /// Deletes the cached files of an item removed from the store (its blocks went with its row).
    pub fn remove_item_files(&self, item_id: &str) -> Result<(), CacheError> {
        let dir = self.item_dir(item_id);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&dir)(e)),
            _ => Ok(()),
        }
    }

    /// Bytes counted against the budget and the budget.
    pub fn usage(&self) -> Result<CacheUsage, CacheError> {
        let used = self.evictable_bytes()?;
        Ok(CacheUsage {
            used_bytes: used,
            budget_bytes: self.budget(),
        })
    }

    fn evictable_bytes(&self) -> Result<u64, CacheError> {
        Ok(self
            .store
            .eviction_candidates(ALL_ROWS)?
            .iter()
            .map(|c| c.cached_bytes)
            .sum())
    }

    /// Evicts least-recently-used items (never pinned, dirty or open ones) until the evictable bytes fit the
    /// budget. Returns the bytes freed.
    pub fn enforce_budget(&self) -> Result<u64, CacheError> {
        let budget = self.budget();
        self.prune_slots();
        // All cached bytes bound the evictable ones from above: a cheap aggregate first.
        if self.store.total_cached_bytes()? <= budget {
            return Ok(0);
        }
        // One enforcer at a time, or two would both count the same bytes as still to free.
        let _enforcing = self.enforcing.lock();
        let mut used = self.evictable_bytes()?;
        let mut freed = 0;
        if used <= budget {
            return Ok(0);
        }
        let mut skipped = std::collections::HashSet::new();
        while used > budget {
            let candidates = self.store.eviction_candidates(EVICTION_BATCH + skipped.len())?;
            let mut progressed = false;
            for c in candidates {
                if used <= budget {
                    break;
                }
                if skipped.contains(&c.ino) {
                    continue;
                }
                if self.is_open(c.ino) {
                    skipped.insert(c.ino);
                    continue;
                }
                let n = self.evict(c.ino)?;
                used = used.saturating_sub(n);
                freed += n;
                progressed = true;
            }
            if !progressed {
                tracing::debug!(
                    used,
                    budget,
                    "content cache over budget; the rest is open, pinned or dirty"
                );
                break;
            }
        }
        tracing::debug!(freed, used, budget, "content cache budget enforced");
        Ok(freed)
    }

    /// Forgets the lock slots nobody holds (keeps the map small on large galleries). A slot still referenced by a
    /// write in progress or an open reader is kept, so a generation check never compares against a fresh slot.
    fn prune_slots(&self) {
        let mut slots = self.slots.lock();
        if slots.len() > SLOT_PRUNE_THRESHOLD {
            slots.retain(|_, s| Arc::strong_count(s) > 1 || s.open_readers.load(Ordering::Acquire) > 0);
        }
    }

    /// Deletes cache directories of items no longer in the store and files of versions other than each item's
    /// current cTag (run at mount, before readers exist). Returns how many files and directories were removed.
    pub fn sweep_orphans(&self) -> Result<usize, CacheError> {
        let entries: Vec<fs::DirEntry> = match fs::read_dir(&self.dir) {
            Ok(e) => e.flatten().collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_err(&self.dir)(e)),
        };
        if entries.is_empty() {
            // A new cache (a first mount of a large gallery): nothing to compare the items with.
            return Ok(0);
        }
        let items = self.store.read(|t| t.all_item_versions())?;
        let keep: HashMap<String, Option<String>> = items
            .into_iter()
            .map(|(item_id, ctag)| (hashed(&item_id), ctag.map(|c| hashed(&c))))
            .collect();
        let mut removed = 0;
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            match keep.get(&name) {
                None => {
                    let gone = if path.is_dir() {
                        fs::remove_dir_all(&path)
                    } else {
                        fs::remove_file(&path)
                    };
                    removed += gone.is_ok() as usize;
                }
                Some(current) => {
                    for file in fs::read_dir(&path).into_iter().flatten().flatten() {
                        if current.as_deref() != Some(file.file_name().to_string_lossy().as_ref()) {
                            removed += fs::remove_file(file.path()).is_ok() as usize;
                        }
                    }
                }
            }
        }
        if removed > 0 {
            tracing::info!(removed, "removed orphaned content cache files");
        }
        Ok(removed)
    }

    /// Marks a zero-length version cached (there is nothing to download) after checking its hash.
    pub fn complete_empty(&self, v: &ItemVersion) -> Result<(), CacheError> {
        if let Some(expected) = &v.quick_xor_hash {
            let actual = crate::remote::QuickXorHash::of(&[]);
            if !verify::hashes_match(expected, &actual) {
                tracing::warn!(ino = v.ino, item = %v.name, "an empty file's quickXorHash does not match");
                return Err(CacheError::HashMismatch { item: v.name.clone() });
            }
        }
        let row = self.store.get(v.ino)?.ok_or(CacheError::NoSuchItem(v.ino))?;
        if !row.is_dirty() && row.content_state != ContentState::Cached {
            self.store.set_content_state(v.ino, ContentState::Cached)?;
        }
        Ok(())
    }

    /// Keeps a file just uploaded as the cached original of the item's current version, so reading it back needs
    /// no download: `staged` (on the same filesystem as the cache) is moved into place when its length and
    /// quickXorHash are those OneDrive recorded for the version. Returns whether it was kept; when not, `staged`
    /// is left where it was.
    pub fn adopt_uploaded_file(&self, ino: u64, staged: &Path) -> Result<bool, CacheError> {
        let row = self.store.get(ino)?.ok_or(CacheError::NoSuchItem(ino))?;
        let Ok(v) = ItemVersion::of(&row) else {
            return Ok(false);
        };
        let len = fs::metadata(staged).map_err(io_err(staged))?.len();
        if len != v.size {
            return Ok(false);
        }
        if let Some(expected) = &v.quick_xor_hash {
            let actual = verify::quick_xor_of_file(staged, v.size).map_err(io_err(staged))?;
            if !verify::hashes_match(expected, &actual) {
                tracing::warn!(ino, item = %v.name, "an uploaded file's bytes differ from what OneDrive recorded; \
                    it will be downloaded when read");
                return Ok(false);
            }
        }
        let slot = self.slot(ino);
        {
            let mut generation = slot.generation.write();
            let now = self.store.get(ino)?.ok_or(CacheError::NoSuchItem(ino))?;
            if now.ctag != row.ctag || now.is_dirty() {
                return Ok(false);
            }
            *generation += 1;
            let dir = self.item_dir(&v.item_id);
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            let path = self.path_of(&v);
            if let Err(e) = fs::rename(staged, &path) {
                tracing::debug!(ino, error = %e, "cannot move an uploaded file into the content cache");
                return Ok(false);
            }
            remove_other_versions(&dir, &path);
            self.store.drop_blocks(ino)?;
            if v.size == 0 {
                self.store.set_content_state(ino, ContentState::Cached)?;
            } else {
                self.store.mark_present(ino, &v.ctag, 0, v.size)?;
            }
        }
        slot.changed.notify_waiters();
        tracing::debug!(ino, item = %v.name, size = v.size, "uploaded content kept as the cached original");
        self.enforce_budget()?;
        Ok(true)
    }

    /// Hands the complete cached original of `ino`'s current version over to `to` (on the same filesystem): the
    /// file gets the name `to` (a hard link), the cache forgets the version (blocks dropped, its name removed), so
    /// the same file — which FUSE passthrough opens may be reading — can become a local edit's staged content
    /// without ever again counting as OneDrive's bytes. Returns false (and changes nothing) when the version is not
    /// complete in the cache or `to` cannot be linked (another filesystem). A crash part-way leaves either the
    /// cached version intact or a staged file that nothing refers to (removed at the next start).
    pub fn take_complete_to(&self, ino: u64, to: &Path) -> Result<bool, CacheError> {
        let row = self.store.get(ino)?.ok_or(CacheError::NoSuchItem(ino))?;
        if row.is_dirty() {
            return Ok(false);
        }
        let Ok(v) = ItemVersion::of(&row) else {
            return Ok(false);
        };
        if v.size == 0 {
            return Ok(false);
        }
        let slot = self.slot(ino);
        {
            let mut generation = slot.generation.write();
            if !self.store.missing_ranges(ino, &v.ctag, 0, v.size)?.is_empty() {
                return Ok(false);
            }
            let path = self.path_of(&v);
            let _ = fs::remove_file(to);
            if let Err(e) = fs::hard_link(&path, to) {
                tracing::debug!(ino, error = %e, "cannot hand a cached original over to staging");
                return Ok(false);
            }
            *generation += 1;
            slot.stream_hash.reset();
            self.store.drop_blocks(ino)?;
            let _ = fs::remove_file(&path);
        }
        slot.changed.notify_waiters();
        tracing::debug!(ino, item = %v.name, "cached original handed over to a local edit");
        Ok(true)
    }

    /// Copies the complete cached original of `ino`'s current version to `to`. Returns false (and copies
    /// nothing) when the version is not complete in the cache.
    pub fn copy_complete_to(&self, ino: u64, to: &Path) -> Result<bool, CacheError> {
        let row = self.store.get(ino)?.ok_or(CacheError::NoSuchItem(ino))?;
        let Ok(v) = ItemVersion::of(&row) else {
            return Ok(false);
        };
        let slot = self.slot(ino);
        let _generation = slot.generation.read();
        if v.size > 0 && !self.store.missing_ranges(ino, &v.ctag, 0, v.size)?.is_empty() {
            return Ok(false);
        }
        if v.size == 0 {
            File::create(to).map_err(io_err(to))?;
            return Ok(true);
        }
        let path = self.path_of(&v);
        match fs::copy(&path, to) {
            Ok(n) if n == v.size => Ok(true),
            Ok(_) => {
                let _ = fs::remove_file(to);
                Ok(false)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(to)(e)),
        }
    }
}

/// Writes `slices` one after the other from `offset` in as few `pwritev` calls as the kernel allows. One call for
/// the whole flush lets the page cache use large folios (it sizes them from the bytes left to write), where a
/// `pwrite` per received chunk (16–64 KiB) spent a third of its time setting up small ones.
fn write_all_vectored_at(file: &File, slices: &[&[u8]], mut offset: u64) -> io::Result<()> {
    use std::io::IoSlice;
    const IOV_MAX: usize = 1024;
    let mut first = 0usize;
    let mut skip = 0usize;
    loop {
        while first < slices.len() && slices[first].len() == skip {
            first += 1;
            skip = 0;
        }
        if first == slices.len() {
            return Ok(());
        }
        let batch: Vec<IoSlice<'_>> = slices[first..]
            .iter()
            .take(IOV_MAX)
            .enumerate()
            .map(|(i, s)| IoSlice::new(if i == 0 { &s[skip..] } else { s }))
            .collect();
        let written = match nix::sys::uio::pwritev(file, &batch, offset as libc::off_t) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "pwritev wrote nothing")),
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        offset += written as u64;
        let mut left = written;
        while left > 0 {
            let rest = slices[first].len() - skip;
            let step = left.min(rest);
            skip += step;
            left -= step;
            if skip == slices[first].len() {
                first += 1;
                skip = 0;
            }
        }
    }
}

/// Exactly `len` bytes of `file` at `offset` (`UnexpectedEof` when the file is shorter), read into a buffer that
/// is not zeroed first.
pub(crate) fn read_exact_unzeroed(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    let mut done = 0usize;
    while done < len {
        // SAFETY: the destination is the vector's spare capacity after the `done` bytes already read, `len - done`
        // bytes long; pread writes at most that many bytes there.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                buf.as_mut_ptr().add(done).cast::<libc::c_void>(),
                len - done,
                (offset + done as u64) as libc::off_t,
            )
        };
        match n {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "cache file shorter than expected",
                ))
            }
            n if n > 0 => done += n as usize,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    // SAFETY: pread initialised the first `len` bytes.
    unsafe { buf.set_len(len) };
    Ok(buf)
}

/// Deletes every file in `dir` except `keep`.
fn remove_other_versions(dir: &Path, keep: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path != keep {
            if let Err(e) = fs::remove_file(&path) {
                tracing::debug!(path = %path.display(), error = %e, "could not remove a stale cache file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::QuickXorHash;
    use crate::store::{NewItem, ROOT_INO};

    #[test]
    fn vectored_writes_put_every_slice_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.path().join("f"))
            .unwrap();
        // More slices than one pwritev takes, empty ones among them, written from an offset into a sparse file.
        let owned: Vec<Vec<u8>> = (0..2500usize)
            .map(|i| (0..(i * 7) % 300).map(|j| (i * 31 + j) as u8).collect())
            .collect();
        let slices: Vec<&[u8]> = owned.iter().map(|v| v.as_slice()).collect();
        write_all_vectored_at(&file, &slices, 12_345).unwrap();
        let expected = slices.concat();
        let got = read_exact_unzeroed(&file, 12_345, expected.len()).unwrap();
        assert!(got == expected, "bytes differ");
        assert_eq!(file.metadata().unwrap().len(), 12_345 + expected.len() as u64);
        write_all_vectored_at(&file, &[&[], &[]], 0).unwrap();
    }

    fn setup(budget: u64) -> (tempfile::TempDir, Arc<Store>, DiskCache) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open_in_memory().unwrap());
        let content = DiskCache::open(dir.path(), store.clone(), budget).unwrap();
        (dir, store, content)
    }

    fn add(store: &Store, id: &str, data: &[u8], hash: Option<String>) -> u64 {
        store
            .insert(&NewItem {
                item_id: id.into(),
                parent_ino: ROOT_INO,
                name: format!("{id}.jpg"),
                kind: ItemKind::File,
                size: data.len() as u64,
                etag: None,
                ctag: Some("c1".into()),
                quick_xor_hash: hash,
                mtime: 0,
                mime_type: None,
                is_media: true,
                content_state: ContentState::Cloud,
                local_only: false,
            })
            .unwrap()
    }

    fn state(store: &Store, ino: u64) -> ContentState {
        store.get(ino).unwrap().unwrap().content_state
    }

    #[test]
    fn ranges_commit_and_the_last_one_verifies() {
        let (_d, store, content) = setup(u64::MAX);
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let ino = add(&store, "A", &data, Some(QuickXorHash::of(&data)));
        let v = content.version(ino).unwrap();
        assert_eq!(content.read_at(&v, 0, 10).unwrap(), None);
        // Bytes past the size are never written nor returned.
        let past_end = [&data[5000..], &[9u8; 50][..]].concat();
        assert_eq!(content.write_at(&v, 5000, &past_end).unwrap(), Commit::Partial);
        assert_eq!(state(&store, ino), ContentState::Partial);
        assert_eq!(content.read_at(&v, 6000, 100).unwrap().unwrap(), &data[6000..6100]);
        assert_eq!(content.read_at(&v, 4000, 2000).unwrap(), None, "partly missing");
        assert_eq!(content.write_at(&v, 0, &data[..5000]).unwrap(), Commit::Complete);
        assert_eq!(state(&store, ino), ContentState::Cached);
        assert_eq!(content.read_at(&v, 9990, 100).unwrap().unwrap(), &data[9990..]);
        assert_eq!(std::fs::metadata(content.path_of(&v)).unwrap().len(), data.len() as u64);
    }

    #[test]
    fn a_mismatching_last_range_drops_everything() {
        let (_d, store, content) = setup(u64::MAX);
        let data = vec![3u8; 4096];
        let ino = add(&store, "M", &data, Some(QuickXorHash::of(b"something else")));
        let v = content.version(ino).unwrap();
        content.write_at(&v, 0, &data[..2048]).unwrap();
        let err = content.write_at(&v, 2048, &data[2048..]).unwrap_err();
        assert!(matches!(err, CacheError::HashMismatch { .. }), "{err:?}");
        assert_eq!(state(&store, ino), ContentState::Cloud);
        assert_eq!(store.present_bytes(ino).unwrap(), 0);
        assert!(!content.path_of(&v).exists());
    }

    #[test]
    fn an_uploaded_file_becomes_the_cached_original_only_when_it_matches() {
        let (d, store, content) = setup(u64::MAX);
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 13) as u8).collect();
        let ino = add(&store, "U", &data, Some(QuickXorHash::of(&data)));
        let staged = d.path().join("staged");
        // Bytes that are not OneDrive's version stay where they are.
        std::fs::write(&staged, b"other bytes").unwrap();
        assert!(!content.adopt_uploaded_file(ino, &staged).unwrap());
        std::fs::write(&staged, [&data[..4999], &[0u8][..]].concat()).unwrap();
        assert!(!content.adopt_uploaded_file(ino, &staged).unwrap());
        assert!(staged.exists() && state(&store, ino) == ContentState::Cloud);
        // The right bytes are moved in and read back without a download.
        std::fs::write(&staged, &data).unwrap();
        assert!(content.adopt_uploaded_file(ino, &staged).unwrap());
        assert!(!staged.exists());
        assert_eq!(state(&store, ino), ContentState::Cached);
        let v = content.version(ino).unwrap();
        assert_eq!(content.read_at(&v, 0, 5000).unwrap().unwrap(), data);
        // And copied out again, complete.
        let copy = d.path().join("copy");
        assert!(content.copy_complete_to(ino, &copy).unwrap());
        assert_eq!(std::fs::read(&copy).unwrap(), data);
        content.evict(ino).unwrap();
        assert!(!content.copy_complete_to(ino, &d.path().join("copy2")).unwrap());
        assert!(!d.path().join("copy2").exists());
    }

    #[test]
    fn a_taken_original_is_the_same_file_and_no_longer_cached() {
        use std::os::unix::fs::MetadataExt;
        let (d, store, content) = setup(u64::MAX);
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 11) as u8).collect();
        let ino = add(&store, "T", &data, Some(QuickXorHash::of(&data)));
        let to = d.path().join("staged");
        let v = content.version(ino).unwrap();
        // Nothing complete: nothing taken.
        content.write_at(&v, 0, &data[..100]).unwrap();
        assert!(!content.take_complete_to(ino, &to).unwrap());
        assert!(!to.exists());
        content.write_at(&v, 100, &data[100..]).unwrap();
        let open = content.open_complete(&v).unwrap().expect("complete");
        assert!(content.take_complete_to(ino, &to).unwrap());
        // The very file an open handle reads, under its new name; the cache no longer has the version.
        assert_eq!(std::fs::metadata(&to).unwrap().ino(), open.metadata().unwrap().ino());
        assert_eq!(std::fs::read(&to).unwrap(), data);
        assert!(!content.path_of(&v).exists());
        assert_eq!(state(&store, ino), ContentState::Cloud);
        assert_eq!(content.read_at(&v, 0, 10).unwrap(), None);
        assert!(content.open_complete(&v).unwrap().is_none());
    }

    #[test]
    fn writes_begun_before_an_eviction_are_not_marked() {
        let (_d, store, content) = setup(u64::MAX);
        let data = vec![1u8; 1000];
        let ino = add(&store, "G", &data, None);
        let v = content.version(ino).unwrap();
        content.write_at(&v, 0, &data[..100]).unwrap();
        let slot = content.slot(ino);
        let generation = *slot.generation.read();
        content.evict(ino).unwrap();
        assert_eq!(
            content.commit(&v, &slot, generation, 100, 200).unwrap(),
            Commit::Discarded
        );
        assert_eq!(store.present_bytes(ino).unwrap(), 0);
        // A version change makes commits fail instead.
        store.set_baseline(ino, Some("c1"), None, 1000).unwrap();
        let row = store.get(ino).unwrap().unwrap();
        store
            .update_remote(
                ino,
                &crate::store::RemoteAttrs {
                    etag: None,
                    ctag: Some("c2".into()),
                    size: row.size,
                    quick_xor_hash: None,
                    mtime: 0,
                    mime_type: None,
                    is_media: true,
                },
            )
            .unwrap();
        assert!(matches!(
            content.write_at(&v, 0, &data[..10]),
            Err(CacheError::VersionChanged { .. })
        ));
    }

    #[test]
    fn an_old_version_writer_does_not_clobber_the_current_file() {
        let (_d, store, content) = setup(u64::MAX);
        let data = vec![4u8; 500];
        let ino = add(&store, "W", &data, None);
        let old = content.version(ino).unwrap();
        store
            .update_remote(
                ino,
                &crate::store::RemoteAttrs {
                    etag: None,
                    ctag: Some("c2".into()),
                    size: 500,
                    quick_xor_hash: None,
                    mtime: 0,
                    mime_type: None,
                    is_media: true,
                },
            )
            .unwrap();
        let new = content.version(ino).unwrap();
        content.write_at(&new, 0, &data[..100]).unwrap();
        assert!(matches!(
            content.write_at(&old, 0, &data[..10]),
            Err(CacheError::VersionChanged { .. })
        ));
        assert!(content.path_of(&new).exists() && !content.path_of(&old).exists());
        assert_eq!(content.read_at(&new, 0, 100).unwrap().unwrap(), &data[..100]);
    }

    #[test]
    fn claims_never_overlap_and_end_with_their_guard() {
        let (_d, store, content) = setup(u64::MAX);
        let ino = add(&store, "Q", &[0u8; 1000], None);
        let v = content.version(ino).unwrap();
        let first = content.claim_fetch(&v, 0, 100);
        assert_eq!(first.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(), vec![(0, 100)]);
        let second = content.claim_fetch(&v, 50, 300);
        assert_eq!(second.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(), vec![(100, 300)]);
        assert!(content.claim_fetch(&v, 20, 250).is_empty());
        let mut other = v.clone();
        other.ctag = "c9".into();
        assert_eq!(
            content.claim_fetch(&other, 0, 10).len(),
            1,
            "other versions do not share"
        );
        drop(first);
        let again = content.claim_fetch(&v, 0, 400);
        assert_eq!(
            again.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(),
            vec![(0, 100), (300, 400)]
        );
        drop((second, again));
        assert!(content.fetches_in_flight(&v).is_empty());
    }

    #[test]
    fn lost_cache_files_are_forgotten_not_served() {
        let (_d, store, content) = setup(u64::MAX);
        let data = vec![5u8; 3000];
        let ino = add(&store, "L", &data, Some(QuickXorHash::of(&data)));
        let v = content.version(ino).unwrap();
        content.write_at(&v, 0, &data).unwrap();
        assert_eq!(state(&store, ino), ContentState::Cached);
        std::fs::remove_file(content.path_of(&v)).unwrap();
        assert_eq!(content.read_at(&v, 0, 10).unwrap(), None);
        assert_eq!(store.present_bytes(ino).unwrap(), 0);
        assert_eq!(state(&store, ino), ContentState::Cloud);
    }

    #[test]
    fn sweep_removes_orphans_and_stale_versions() {
        let (_d, store, content) = setup(u64::MAX);
        let data = vec![5u8; 300];
        let ino = add(&store, "K", &data, None);
        let v = content.version(ino).unwrap();
        content.write_at(&v, 0, &data).unwrap();
        let stale = content.item_dir("K").join(hashed("c0"));
        std::fs::write(&stale, b"old").unwrap();
        let orphan = content.item_dir("gone");
        std::fs::create_dir_all(&orphan).unwrap();
        std::fs::write(orphan.join("x"), b"x").unwrap();
        assert_eq!(content.sweep_orphans().unwrap(), 2);
        assert!(!stale.exists() && !orphan.exists());
        assert!(content.path_of(&v).exists());
        assert_eq!(content.read_at(&v, 0, 300).unwrap().unwrap(), data);
    }

    #[test]
    fn local_dirty_and_folder_items_have_no_version() {
        let (_d, store, content) = setup(u64::MAX);
        let ino = add(&store, "X", b"abc", None);
        store.set_content_state(ino, ContentState::Dirty).unwrap();
        assert!(matches!(content.version(ino), Err(CacheError::Dirty(_))));
        assert!(matches!(content.version(ROOT_INO), Err(CacheError::NotRemoteFile(_))));
        assert!(matches!(content.version(999), Err(CacheError::NoSuchItem(999))));
    }
}
