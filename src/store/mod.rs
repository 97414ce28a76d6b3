//! The metadata store (SQLite, WAL): the gallery's items with stable inode numbers (row id = inode, never
//! reused, root = 1), small key-value metadata (delta link, drive id, last sync), the content cache's block map
//! with LRU bookkeeping, thumbnail states, the durable outbox of pending local operations, and the record of deletes
//! made through galleryfs (trash). Knows rows,
//! nothing of HTTP or FUSE; no rusqlite type crosses this module's public API.
//!
//! Concurrency: one writer connection behind a `parking_lot::Mutex`, plus (for a file-backed store) a small pool
//! of read-only connections. SQLite's WAL mode gives every reader a consistent snapshot without waiting for the
//! writer, so `lookup`/`getattr`/`readdir` never block behind a long delta transaction. An in-memory store (tests)
//! has no readers; everything goes through the writer. Do not call `Store` methods from inside a
//! [`Store::write`] closure (use the [`StoreTx`] you were given): the writer mutex is not re-entrant.
//!
//! Lock order: a caller holds at most one of the store's mutexes (the writer, or one reader) at a time. They come
//! after the callers' long locks (the filesystem's namespace and staging locks, the outbox replayer's pass) and
//! before their short mutexes: a write closure may take a short mutex of the caller (the filesystem's open-file
//! maps), so nothing may call the store while holding one. On an in-memory store a read takes the writer, so
//! the rule holds for reads too.
//!
//! Durability: `synchronous=NORMAL` for everything that OneDrive can give back (items, blocks, thumbnails, meta:
//! a power cut may lose the last transactions, and the next delta round restores them), `synchronous=FULL` for
//! outbox writes, which record local user intent that exists nowhere else and must be on disk before the syscall
//! that produced it returns.

mod blocks;
mod items;
mod media;
mod meta;
mod outbox;
mod roots;
mod schema;
mod thumbs;
mod trash;

pub use blocks::EvictionCandidate;
pub use items::{name_key, ContentState, ItemKind, ItemRow, NewItem, RemoteAttrs, LOCAL_ID_PREFIX, ROOT_INO};
pub use media::{MediaEntry, MediaFacet};
pub use meta::keys as meta_keys;
pub use outbox::{OutboxCounts, OutboxEntry, OutboxOp};
pub use thumbs::{ThumbCounts, ThumbRow, ThumbSize, ThumbState, ThumbStateUpdate};
pub use trash::TrashRow;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// How long a connection waits for a lock held by another process or connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Read-only connections of a file-backed store.
const READER_COUNT: usize = 2;

/// An opaque database failure (the underlying SQLite error, kept as the source).
#[derive(Debug, Error)]
#[error(transparent)]
pub struct DbError(#[from] rusqlite::Error);

/// Errors of the metadata store.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot open the metadata store {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: DbError,
    },
    #[error("the metadata store has schema version {found}, newer than this galleryfs supports ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("no item with inode {0}")]
    NoSuchInode(u64),
    #[error("an item named {name:?} already exists in folder inode {parent}")]
    NameExists { parent: u64, name: String },
    #[error("the OneDrive item id is already in the store")]
    DuplicateItemId,
    #[error("inode {0} is not a folder")]
    NotADirectory(u64),
    #[error("moving inode {0} there would put it inside itself")]
    WouldCycle(u64),
    #[error("no outbox entry {0}")]
    NoSuchOutboxEntry(i64),
    #[error("the metadata store holds an unreadable value: {0}")]
    Corrupt(String),
    #[error("metadata store: {0}")]
    Database(#[from] DbError),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(DbError(e))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The metadata store. Cheap to share behind an `Arc`; every method is safe to call from any thread.
pub struct Store {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// One transaction on the store (read-write from [`Store::write`], a read snapshot from [`Store::read`]). All item,
/// block, thumbnail, outbox and meta operations are methods of this type; `Store` wraps the common ones.
pub struct StoreTx<'a> {
    conn: &'a Connection,
}

impl StoreTx<'_> {
    /// Runs one statement, prepared once per connection and kept (the content cache commits a block every MiB
    /// read; parsing its SQL each time was a tenth of the daemon's time).
    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.conn.prepare_cached(sql)?.execute(params)
    }

    /// The one row of a query, mapped by `f`, with the statement kept as in [`StoreTx::exec`].
    fn one<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.conn.prepare_cached(sql)?.query_row(params, f)
    }
}

impl Store {
    /// Opens (creating if needed) the store at `path` and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        let open_err = |source: rusqlite::Error| StoreError::Open {
            path: path.clone(),
            source: DbError(source),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).ok();
        }
        // The store holds upload-session URLs: owner-only. SQLite gives its -wal and -shm files the same mode.
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path);
        }
        let mut writer = Connection::open(&path).map_err(open_err)?;
        configure(&writer, false).map_err(open_err)?;
        schema::migrate(&mut writer)?;
        let mut readers = Vec::with_capacity(READER_COUNT);
        for _ in 0..READER_COUNT {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
            let reader = Connection::open_with_flags(&path, flags).map_err(open_err)?;
            configure(&reader, true).map_err(open_err)?;
            readers.push(Mutex::new(reader));
        }
        tracing::debug!(path = %path.display(), "metadata store opened");
        Ok(Store {
            writer: Mutex::new(writer),
            readers,
            path: Some(path),
        })
    }

    /// A private in-memory store (tests).
    pub fn open_in_memory() -> Result<Store> {
        let mut writer = Connection::open_in_memory()?;
        configure(&writer, false)?;
        schema::migrate(&mut writer)?;
        Ok(Store {
            writer: Mutex::new(writer),
            readers: Vec::new(),
            path: None,
        })
    }

    /// The database file, `None` for an in-memory store.
    pub fn db_path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Runs `f` in one read-write transaction (`BEGIN IMMEDIATE`): committed when `f` returns `Ok`, rolled back
    /// otherwise.
    pub fn write<T, E: From<StoreError>>(&self, f: impl FnOnce(&StoreTx<'_>) -> Result<T, E>) -> Result<T, E> {
        let mut conn = self.writer.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::from)?;
        let value = f(&StoreTx { conn: &tx })?;
        tx.commit().map_err(StoreError::from)?;
        Ok(value)
    }

    /// Like [`Store::write`], committed with `synchronous=FULL` (the commit is on disk when this returns).
    pub fn write_durable<T, E: From<StoreError>>(&self, f: impl FnOnce(&StoreTx<'_>) -> Result<T, E>) -> Result<T, E> {
        let mut conn = self.writer.lock();
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(StoreError::from)?;
        let outcome = (|| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(StoreError::from)?;
            let value = f(&StoreTx { conn: &tx })?;
            tx.commit().map_err(StoreError::from)?;
            Ok(value)
        })();
        if let Err(e) = conn.pragma_update(None, "synchronous", "NORMAL") {
            tracing::warn!(error = %e, "could not restore synchronous=NORMAL");
        }
        outcome
    }

    /// Runs `f` on one consistent read snapshot. On a file-backed store this uses a reader connection and never
    /// waits for a write transaction.
    pub fn read<T, E: From<StoreError>>(&self, f: impl FnOnce(&StoreTx<'_>) -> Result<T, E>) -> Result<T, E> {
        if self.readers.is_empty() {
            let conn = self.writer.lock();
            return f(&StoreTx { conn: &conn });
        }
        let guard = self
            .readers
            .iter()
            .find_map(|r| r.try_lock())
            .unwrap_or_else(|| self.readers[0].lock());
        // A deferred transaction pins one WAL snapshot for all statements of `f`.
        guard.execute_batch("BEGIN").map_err(StoreError::from)?;
        let outcome = f(&StoreTx { conn: &guard });
        if let Err(e) = guard.execute_batch("COMMIT") {
            tracing::warn!(error = %e, "ending a read snapshot failed");
        }
        outcome
    }

    // ---- items ----

    /// The gallery root (inode 1).
    pub fn root(&self) -> Result<ItemRow> {
        self.read(|t| t.get(ROOT_INO)?.ok_or(StoreError::NoSuchInode(ROOT_INO)))
    }
    pub fn get(&self, ino: u64) -> Result<Option<ItemRow>> {
        self.read(|t| t.get(ino))
    }
    /// The item's path below the gallery root (`/Camera/IMG_1.jpg`).
    pub fn item_path(&self, ino: u64) -> Result<String> {
        self.read(|t| t.path(ino))
    }
    pub fn get_by_item_id(&self, item_id: &str) -> Result<Option<ItemRow>> {
        self.read(|t| t.get_by_item_id(item_id))
    }
    /// Case-insensitive lookup of `name` in folder `parent_ino`.
    pub fn lookup(&self, parent_ino: u64, name: &str) -> Result<Option<ItemRow>> {
        self.read(|t| t.lookup(parent_ino, name))
    }
    /// All children of a folder, sorted by case-folded name.
    pub fn children(&self, parent_ino: u64) -> Result<Vec<ItemRow>> {
        self.read(|t| t.children(parent_ino))
    }
    /// At most `limit` children sorted by case-folded name, starting after the child whose `name_key` is `after`.
    pub fn children_after(&self, parent_ino: u64, after: Option<&str>, limit: usize) -> Result<Vec<ItemRow>> {
        self.read(|t| t.children_after(parent_ino, after, limit))
    }
    /// At most `limit` children sorted by case-folded name, skipping the first `offset`.
    pub fn children_at(&self, parent_ino: u64, offset: u64, limit: usize) -> Result<Vec<ItemRow>> {
        self.read(|t| t.children_at(parent_ino, offset, limit))
    }
    pub fn child_count(&self, parent_ino: u64) -> Result<u64> {
        self.read(|t| t.child_count(parent_ino))
    }
    pub fn subfolder_count(&self, ino: u64) -> Result<u64> {
        self.read(|t| t.subfolder_count(ino))
    }
    pub fn insert(&self, item: &NewItem) -> Result<u64> {
        self.write(|t| t.insert(item))
    }
    pub fn update_remote(&self, ino: u64, attrs: &RemoteAttrs) -> Result<()> {
        self.write(|t| t.update_remote(ino, attrs))
    }
    pub fn update_local_content(&self, ino: u64, size: u64, mtime: i64) -> Result<()> {
        self.write(|t| t.update_local_content(ino, size, mtime))
    }
    pub fn set_content_state(&self, ino: u64, state: ContentState) -> Result<()> {
        self.write(|t| t.set_content_state(ino, state))
    }
    pub fn set_pinned(&self, ino: u64, pinned: bool) -> Result<()> {
        self.write(|t| t.set_pinned(ino, pinned))
    }
    pub fn set_baseline(&self, ino: u64, ctag: Option<&str>, hash: Option<&str>, size: u64) -> Result<()> {
        self.write(|t| t.set_baseline(ino, ctag, hash, size))
    }
    pub fn rename(&self, ino: u64, new_parent: u64, new_name: &str) -> Result<()> {
        self.write(|t| t.rename(ino, new_parent, new_name))
    }
    /// Removes an item and its subtree; returns the removed inodes (deepest first).
    pub fn remove(&self, ino: u64) -> Result<Vec<u64>> {
        self.write(|t| t.remove(ino))
    }
    pub fn set_root_item(&self, item_id: &str) -> Result<()> {
        self.write(|t| t.set_root_item(item_id))
    }
    /// Records the real OneDrive id of a local-only item after its upload (clears `local_only`).
    pub fn set_item_id(&self, ino: u64, real_id: &str) -> Result<()> {
        self.write(|t| t.set_item_id(ino, real_id))
    }
    /// Items other than the root.
    pub fn item_count(&self) -> Result<u64> {
        self.read(|t| t.item_count())
    }
    pub fn media_count(&self) -> Result<u64> {
        self.read(|t| t.media_count())
    }

    // ---- meta ----

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.read(|t| t.meta(key))
    }
    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.write(|t| t.set_meta(key, value))
    }
    pub fn delete_meta(&self, key: &str) -> Result<()> {
        self.write(|t| t.delete_meta(key))
    }
    pub fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>> {
        self.read(|t| t.meta_with_prefix(prefix))
    }
    /// The saved `@odata.deltaLink` (a secret-free URL, but long: do not log it at info level).
    pub fn delta_link(&self) -> Result<Option<String>> {
        self.meta(meta_keys::DELTA_LINK)
    }
    pub fn set_delta_link(&self, link: &str) -> Result<()> {
        self.set_meta(meta_keys::DELTA_LINK, link)
    }

    // ---- blocks ----

    pub fn mark_present(&self, ino: u64, ctag: &str, start: u64, end: u64) -> Result<()> {
        self.write(|t| t.mark_present(ino, ctag, start, end))
    }
    pub fn missing_ranges(&self, ino: u64, ctag: &str, start: u64, end: u64) -> Result<Vec<(u64, u64)>> {
        self.read(|t| t.missing_ranges(ino, ctag, start, end))
    }
    pub fn present_bytes(&self, ino: u64) -> Result<u64> {
        self.read(|t| t.present_bytes(ino))
    }
    pub fn drop_blocks(&self, ino: u64) -> Result<()> {
        self.write(|t| t.drop_blocks(ino))
    }
    pub fn touch(&self, ino: u64) -> Result<()> {
        self.write(|t| t.touch(ino))
    }
    pub fn eviction_candidates(&self, limit: usize) -> Result<Vec<EvictionCandidate>> {
        self.read(|t| t.eviction_candidates(limit))
    }
    pub fn total_cached_bytes(&self) -> Result<u64> {
        self.read(|t| t.total_cached_bytes())
    }

    // ---- thumbnails ----

    pub fn set_thumbnail_state(
        &self,
        item_id: &str,
        size: ThumbSize,
        ctag: Option<&str>,
        state: ThumbState,
    ) -> Result<()> {
        self.write(|t| t.set_thumbnail_state(item_id, size, ctag, state))
    }
    /// Records many thumbnails' states in one transaction (the fetcher's batches).
    pub fn set_thumbnail_states(&self, states: &[ThumbStateUpdate]) -> Result<()> {
        if states.is_empty() {
            return Ok(());
        }
        self.write(|t| {
            for u in states {
                t.set_thumbnail_state(&u.item_id, u.size, u.ctag.as_deref(), u.state)?;
            }
            Ok(())
        })
    }
    pub fn thumbnail(&self, item_id: &str, size: ThumbSize) -> Result<Option<ThumbRow>> {
        self.read(|t| t.thumbnail(item_id, size))
    }
    pub fn thumbnail_counts(&self, size: ThumbSize) -> Result<ThumbCounts> {
        self.read(|t| t.thumbnail_counts(size))
    }
    pub fn pending_thumbnails(&self, size: ThumbSize, max_attempts: u32, limit: usize) -> Result<Vec<ItemRow>> {
        self.read(|t| t.pending_thumbnails(size, max_attempts, limit))
    }

    // ---- outbox (always committed with synchronous=FULL) ----

    pub fn enqueue(&self, op: &OutboxOp) -> Result<i64> {
        self.write_durable(|t| t.enqueue(op))
    }
    pub fn pending(&self) -> Result<Vec<OutboxEntry>> {
        self.read(|t| t.pending())
    }
    pub fn set_upload_session(
        &self,
        seq: i64,
        url: &str,
        expires: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<()> {
        self.write_durable(|t| t.set_upload_session(seq, url, expires))
    }
    pub fn complete(&self, seq: i64) -> Result<()> {
        self.write_durable(|t| t.complete(seq))
    }
    pub fn fail(&self, seq: i64, error: &str, retry_at: chrono::DateTime<chrono::Utc>) -> Result<()> {
        self.write_durable(|t| t.fail(seq, error, retry_at))
    }
    pub fn outbox_counts(&self) -> Result<OutboxCounts> {
        self.read(|t| t.outbox_counts())
    }
}

fn configure(conn: &Connection, read_only: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Every statement the store runs stays prepared (there are about a hundred).
    conn.set_prepared_statement_cache_capacity(256);
    if !read_only {
        // In-memory databases answer "memory"; that is fine.
        let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    if read_only {
        conn.pragma_update(None, "query_only", "ON")?;
    }
    Ok(())
}

/// Current time in Unix milliseconds (LRU clock).
pub(crate) fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
