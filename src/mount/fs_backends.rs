//! The filesystem core's backends, over layers it does not know: [`Originals`] over the content cache
//! ([`CachedOriginals`], whose readers are [`PrefetchingReader`]s), [`ThumbnailJpegs`] over the thumbnail
//! fetcher's files ([`ThumbnailFiles`]), the [`Foreground`] signal raised while a handle reads through the cache,
//! and pin requests that download in the background ([`PinDownloader`]).
//! A failed read's [`ReadError`] becomes the filesystem's error here, cause kept (`From<ReadError> for FsError`);
//! its errno is chosen in `fs/error.rs`.

use crate::cache::disk_cache::DiskCache;
use crate::cache::reader::{OriginalFetcher, PrefetchingReader, ReadError};
use crate::cache::CacheError;
use crate::fs::content::{OriginalReader, Originals, ThumbnailJpegs};
use crate::fs::error::ContentFailure;
use crate::fs::gallery::PinRequests;
use crate::fs::{FsError, Ino};
use crate::remote::drive_api::DriveError;
use crate::store::ItemRow;
use crate::sync::foreground::Foreground;
use crate::sync::thumbnail_fetcher::thumbnail_file;
use crate::thumbnails::ThumbSize;
use async_trait::async_trait;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Originals through the content cache (ranged fetches pinned to the cTag, verified, budgeted).
pub struct CachedOriginals {
    pub cache: Arc<OriginalFetcher>,
    pub content: Arc<DiskCache>,
    /// Read-ahead fetches running at once at most.
    pub prefetch_slots: Arc<tokio::sync::Semaphore>,
    /// Raised while a handle reads through the cache (background work such as the thumbnail pass gives way).
    pub foreground: Arc<Foreground>,
}

/// Read-ahead fetches of whole photos at once (each is itself a few ranged GETs in flight).
pub const PREFETCH_SLOTS: usize = 2;

struct HandleReader(tokio::sync::Mutex<PrefetchingReader>, Arc<Foreground>);

/// A failed read of an original as the filesystem's error: what it amounts to (which chooses the errno in
/// `fs/error.rs`), with the cache's error kept as the cause. The cache logged the details when the read failed.
impl From<ReadError> for FsError {
    fn from(e: ReadError) -> FsError {
        let failure = match &e {
            ReadError::Cache(CacheError::NoSuchItem(_)) => return FsError::NotFound,
            ReadError::VersionChanged { .. } => ContentFailure::Changed,
            ReadError::HashMismatch { .. } | ReadError::ShortBody { .. } => ContentFailure::Corrupt,
            ReadError::Remote { source, .. } => remote_failure(source),
            ReadError::Unstable { .. } | ReadError::Task(_) | ReadError::Cache(_) => ContentFailure::Other,
        };
        FsError::content(failure, e)
    }
}

/// What a download's error amounts to for the reader of the file.
fn remote_failure(e: &DriveError) -> ContentFailure {
    match e {
        DriveError::PreconditionFailed(_) => ContentFailure::Changed,
        DriveError::Unauthorized { .. } => ContentFailure::SignInNeeded,
        e if e.is_retryable() => ContentFailure::Unreachable,
        _ => ContentFailure::Other,
    }
}

#[async_trait]
impl OriginalReader for HandleReader {
    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, FsError> {
        let _foreground = self.1.enter();
        self.0
            .lock()
            .await
            .read(offset, len as usize)
            .await
            .map_err(FsError::from)
    }

    async fn settle(&self) {
        self.0.lock().await.settle_received().await;
    }

    fn read_now(&self, offset: u64, len: u32) -> Option<Result<Bytes, FsError>> {
        // Another read of the handle in progress holds the reader: this one queues behind it the long way.
        let mut reader = self.0.try_lock().ok()?;
        let _foreground = self.1.enter();
        reader.read_now(offset, len as usize).map(|r| r.map_err(FsError::from))
    }
}

#[async_trait]
impl Originals for CachedOriginals {
    async fn open_reader(&self, item: &ItemRow) -> Result<Box<dyn OriginalReader>, FsError> {
        let reader = self.cache.open(item.ino).map_err(FsError::from)?;
        Ok(Box::new(HandleReader(
            tokio::sync::Mutex::new(reader),
            self.foreground.clone(),
        )))
    }

    async fn open_complete(&self, item: &ItemRow) -> Option<std::fs::File> {
        let version = crate::cache::ItemVersion::of(item).ok()?;
        let content = self.content.clone();
        let opened = tokio::task::spawn_blocking(move || content.open_complete(&version)).await;
        match opened {
            Ok(Ok(file)) => file,
            Ok(Err(e)) => {
                tracing::debug!(ino = item.ino, error = %e, "cannot open the cached original directly");
                None
            }
            Err(_) => None,
        }
    }

    async fn evict(&self, item: &ItemRow) -> Result<(), FsError> {
        let content = self.content.clone();
        let ino = item.ino;
        tokio::task::spawn_blocking(move || content.evict(ino))
            .await
            .map_err(|e| FsError::content(ContentFailure::Other, e))?
            .map(|_| ())
            .map_err(|e| FsError::content(ContentFailure::Other, e))
    }

    fn keep_uploaded(&self, item: &ItemRow, staged: &Path) -> bool {
        // Hashes the file once more: long for a video, so let the runtime move other tasks off this worker.
        let adopt = || self.content.adopt_uploaded_file(item.ino, staged);
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let kept = if multi_thread {
            tokio::task::block_in_place(adopt)
        } else {
            adopt()
        };
        match kept {
            Ok(kept) => kept,
            Err(e) => {
                tracing::debug!(ino = item.ino, error = %e, "uploaded content not kept in the cache");
                false
            }
        }
    }

    fn prefetch(&self, item: &ItemRow) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let Ok(permit) = self.prefetch_slots.clone().try_acquire_owned() else {
            return;
        };
        let (cache, ino) = (self.cache.clone(), item.ino);
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = cache.fetch_whole(ino, |_, _| {}).await {
                tracing::debug!(ino, error = %e, "read-ahead fetch ended early");
            }
        });
    }

    fn keep_under_local_id(&self, item: &ItemRow, local_id: &str) {
        let Ok(version) = crate::cache::ItemVersion::of(item) else {
            return;
        };
        if let Err(e) = self.content.link_version_as(&version, local_id) {
            tracing::debug!(ino = item.ino, error = %e, "a replaced file's cached bytes not kept for its readers");
        }
    }

    fn drop_local_id(&self, local_id: &str) {
        if let Err(e) = self.content.remove_item_files(local_id) {
            tracing::debug!(error = %e, "a replaced file's cached bytes not removed; the next start does");
        }
    }

    fn is_current_version(&self, item: &ItemRow, path: &Path) -> bool {
        let Some(expected) = item.quick_xor_hash.as_deref() else {
            return false;
        };
        if std::fs::metadata(path).map(|m| m.len()).ok() != Some(item.size) {
            return false;
        }
        // Hashes the whole file: long for a video, so let the runtime move other tasks off this worker.
        let hash = || crate::cache::verify::quick_xor_of_file(path, item.size);
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let actual = if multi_thread {
            tokio::task::block_in_place(hash)
        } else {
            hash()
        };
        actual.is_ok_and(|actual| crate::cache::verify::hashes_match(expected, &actual))
    }

    fn take_cached(&self, item: &ItemRow, to: &Path) -> bool {
        match self.content.take_complete_to(item.ino, to) {
            Ok(taken) => taken,
            Err(e) => {
                tracing::warn!(ino = item.ino, error = %e, "cannot hand a cached original over to staging");
                false
            }
        }
    }

    fn copy_cached(&self, item: &ItemRow, to: &Path) -> bool {
        match self.content.copy_complete_to(item.ino, to) {
            Ok(copied) => copied,
            Err(e) => {
                tracing::warn!(ino = item.ino, error = %e, "cannot copy a cached original");
                false
            }
        }
    }
}

/// OneDrive's thumbnails as the fetcher keeps them on disk.
pub struct ThumbnailFiles {
    pub dir: PathBuf,
}

impl ThumbnailJpegs for ThumbnailFiles {
    fn thumbnail(&self, item_id: &str, size: ThumbSize) -> Option<Vec<u8>> {
        let size = match size {
            ThumbSize::Normal => crate::store::ThumbSize::Normal,
            ThumbSize::Large => crate::store::ThumbSize::Large,
            _ => return None,
        };
        std::fs::read(thumbnail_file(&self.dir, item_id, size)).ok()
    }
}

/// Pinning downloads the whole original in the background (verified), so it stays on this device.
pub struct PinDownloader {
    pub cache: Arc<OriginalFetcher>,
    pub runtime: tokio::runtime::Handle,
}

impl PinRequests for PinDownloader {
    fn pin_changed(&self, ino: Ino, pinned: bool) {
        if !pinned {
            return;
        }
        let cache = self.cache.clone();
        self.runtime.spawn(async move {
            match cache.fetch_whole(ino, |_, _| {}).await {
                Ok(()) => tracing::info!(ino, "pinned file is on this device"),
                Err(e) => tracing::warn!(ino, error = %e, "cannot download a pinned file yet; it stays pinned and is retried at the next mount"),
            }
        });
    }
}
