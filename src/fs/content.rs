//! What the filesystem core needs from the layers that hold bytes, as traits it declares: [`Originals`], the
//! originals of files (a reader per open handle pinned to the version seen at open, whole cached files, eviction,
//! read-ahead), with [`OriginalReader`] for one handle's reads; and [`ThumbnailJpegs`], OneDrive's thumbnails kept
//! on disk by the sync engine's thumbnail fetcher. The mount implements them over the content cache and the
//! thumbnail files (`mount/fs_backends.rs`).

use super::error::FsError;
use crate::store::ItemRow;
use crate::thumbnails::ThumbSize;
use async_trait::async_trait;
use bytes::Bytes;
use std::path::Path;

/// Reads one open file's original content, pinned to the version (cTag) seen at open. A failure keeps its cause
/// ([`FsError::Content`](super::error::FsError::Content)).
#[async_trait]
pub trait OriginalReader: Send + Sync {
    /// Up to `len` bytes at `offset` (fewer only at the end of the file).
    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, FsError>;
    /// [`Self::read`] answered at once when that needs no waiting (no download, no lock another task holds);
    /// `None` otherwise, having changed nothing a later [`Self::read`] of the same range depends on.
    fn read_now(&self, _offset: u64, _len: u32) -> Option<Result<Bytes, FsError>> {
        None
    }
    /// Waits (briefly) until a file received whole is written to the cache; called when the file is closed, so
    /// that a file read whole is cached once its `close` returns.
    async fn settle(&self) {}
}

/// The originals of files, as the filesystem core reads them.
#[async_trait]
pub trait Originals: Send + Sync {
    /// A reader for the current version of `item`. Must not wait for the content: fetching starts on read.
    async fn open_reader(&self, item: &ItemRow) -> Result<Box<dyn OriginalReader>, FsError>;

    /// The original of `item`'s current version opened for reading, when it is complete and verified in the
    /// cache (reads of it need neither the network nor the block map; FUSE passthrough can serve them).
    async fn open_complete(&self, _item: &ItemRow) -> Option<std::fs::File> {
        None
    }

    /// Gives the cached original's space back ("free up space"). Never called for dirty items.
    async fn evict(&self, _item: &ItemRow) -> Result<(), FsError> {
        Err(FsError::Unsupported("freeing cached originals"))
    }

    /// Keeps the bytes of a file just uploaded (moved from `staged`) as the cached original of `item`'s current
    /// version. Returns whether it did; when not, `staged` is untouched and the original is downloaded on read.
    fn keep_uploaded(&self, _item: &ItemRow, _staged: &Path) -> bool {
        false
    }

    /// Starts fetching `item`'s whole original in the background (read-ahead), when a fetch slot is free. Never
    /// waits; a read of the item meanwhile shares the fetch.
    fn prefetch(&self, _item: &ItemRow) {}

    /// `item` (clean, its version perhaps cached) stays readable under the local id `local_id` while its OneDrive
    /// id passes to another row: its cached bytes get that id too. Runs inside a store transaction: no store call.
    fn keep_under_local_id(&self, _item: &ItemRow, _local_id: &str) {}

    /// The cached bytes kept under a local id (see [`Originals::keep_under_local_id`]) are no longer needed.
    fn drop_local_id(&self, _local_id: &str) {}

    /// Hands `item`'s complete cached original over to `to` (same file, a new name), after which the cache no
    /// longer holds that version: for an edit of a file whose cached original FUSE passthrough opens are reading.
    /// Returns whether it did.
    fn take_cached(&self, _item: &ItemRow, _to: &Path) -> bool {
        false
    }

    /// Whether the file at `path` holds exactly OneDrive's bytes of `item`'s current version (its size and
    /// quickXorHash). False when unknown.
    fn is_current_version(&self, _item: &ItemRow, _path: &Path) -> bool {
        false
    }

    /// Copies `item`'s original to `to` when it is complete in the cache. Returns whether it did.
    fn copy_cached(&self, _item: &ItemRow, _to: &Path) -> bool {
        false
    }
}

/// OneDrive's own thumbnail of an item, as fetched and kept by the sync engine.
pub trait ThumbnailJpegs: Send + Sync {
    /// The JPEG (or PNG) bytes OneDrive gave for `item_id` at `size`, when fetched.
    fn thumbnail(&self, item_id: &str, size: ThumbSize) -> Option<Vec<u8>>;
}

/// No originals available (a metadata-only mount, tests): every read fails with EIO saying why.
pub struct NoContent;

#[async_trait]
impl Originals for NoContent {
    async fn open_reader(&self, _item: &ItemRow) -> Result<Box<dyn OriginalReader>, FsError> {
        Err(FsError::io("originals cannot be fetched by this mount"))
    }
}

/// No thumbnails kept.
pub struct NoThumbnails;

impl ThumbnailJpegs for NoThumbnails {
    fn thumbnail(&self, _item_id: &str, _size: ThumbSize) -> Option<Vec<u8>> {
        None
    }
}
