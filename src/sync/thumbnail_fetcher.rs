//! [`ThumbnailFetcher`]: fetches OneDrive's thumbnails of the gallery's photos and videos in the background, never
//! their originals.
//!
//! For every media item the store reports pending (per freedesktop size, for its current cTag): the thumbnail
//! URLs the first listing carried ([`ListedThumbnailSets`], filled by the sync engine from
//! `$expand=thumbnails($select=`[`LISTED_SIZES`]`)`: `c128x128` for `normal`, `c256x256` for `large`, so neither
//! needs scaling) when it carried them for the item's cTag; otherwise one `thumbnails(id)` call, then per size the smallest OneDrive thumbnail at least as large as the target (`normal`
//! 128 px → `medium` 176; `large` 256 px → `large` 800, replaced by a custom `c256x256` because scaling 800 px
//! images costs far more CPU; the largest there is when none is big enough), downloaded once, kept as
//! `<thumbnail dir>/<size>/<escaped id>.jpg` (the mount's `.sh_thumbnails` serves from there) and, when the mount
//! point is known, rendered into the freedesktop personal cache as a PNG labelled with the file's URI under the
//! mount point and its whole-second mtime. The store records `ready`.
//!
//! An empty thumbnail list records `missing` and writes the spec's failure marker, unless the item changed in the
//! last [`THUMBNAIL_GENERATION_GRACE`] (OneDrive may not have made them yet: that counts as a failure and is
//! retried). Other errors record `failed` (attempts counted by the store) and are retried later with exponential
//! backoff. Network trouble and throttling pause the fetcher without counting as the item's failure.
//!
//! Renames and moves made on OneDrive change the files' URIs: [`ThumbnailFetcher::changes_hook`] collects them and
//! the personal-cache PNGs are rendered again under the new URIs from the kept JPEGs, without any request.
//!
//! Concurrency is bounded ([`ThumbnailSettings::concurrency`] items fetched at once); rendering and writing run on
//! the blocking pool, [`WRITERS`] items at a time (more threads creating files in the same directories only contend
//! for their locks), each size decoded and compressed once and labelled per URI (album and Timeline). `ready` states are recorded in batches
//! (one store transaction per [`STATE_BATCH`] thumbnails, and at the end of each pass).
//!
//! Foreground first: while an app reads an original from OneDrive ([`Foreground::is_busy`], raised by the read
//! path), the pass narrows to one item at a time with a [`NARROWED_PAUSE`] after each, leaving the link and the CPU
//! to the reader without stopping (a long video would otherwise hold every thumbnail back).

use futures::stream::{self, StreamExt};
use parking_lot::Mutex;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

use super::delta_apply::AppliedChanges;
use super::engine::ChangesHook;
use super::foreground::Foreground;
use super::status::{SyncStatus, ThumbnailProgress};
use super::timeline_index::TimelineIndex;
pub use super::tree_listing::{ListedThumbnailSets, LISTED_SIZES};
use crate::remote::drive_api::{DriveApi, DriveError};
use crate::remote::models::{Thumbnail, ThumbnailSet};
use crate::store::{ItemRow, Store, StoreError, ThumbSize, ThumbState, ThumbStateUpdate};
use crate::thumbnails::{self, file_uri, prepare_png, render_png, PersonalCache, ThumbExtra};

/// Characters kept as they are in a thumbnail file name made from an item id.
const ID_FILE_SAFE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'!').remove(b'_').remove(b'-');
/// Items read from the store per pass.
const BATCH: usize = 5_000;
/// Sizes fetched.
const SIZES: [ThumbSize; 2] = [ThumbSize::Normal, ThumbSize::Large];
/// `ready` states recorded per store transaction.
pub const STATE_BATCH: usize = 256;
/// How often a pass publishes its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Items whose thumbnails are rendered and written at once.
const WRITERS: usize = 2;
/// While the foreground is busy: the pause after each item (at most ~10 items a second then).
const NARROWED_PAUSE: Duration = Duration::from_millis(100);

/// The URL of the custom size `c{target}x{target}` in the sets, when listed.
fn listed_custom_url(sets: &[ThumbnailSet], target: u32) -> Option<String> {
    let key = format!("c{target}x{target}");
    let set = sets.iter().find(|s| s.id == "0").or_else(|| sets.first())?;
    let thumb: Thumbnail = serde_json::from_value(set.custom.get(&key)?.clone()).ok()?;
    thumb.url
}

/// How the fetcher works.
#[derive(Clone, Debug)]
pub struct ThumbnailSettings {
    /// `<cache dir>/<account>/thumbnails`: the JPEGs from OneDrive.
    pub thumbnail_dir: PathBuf,
    /// The mount point's canonical path (for `Thumb::URI`); without it the personal cache is not seeded.
    pub mountpoint: Option<PathBuf>,
    /// The personal cache to seed (normally [`PersonalCache::from_env`]).
    pub personal_cache: Option<PersonalCache>,
    /// Items fetched at once.
    pub concurrency: usize,
    /// Failures per content version before giving up on an item (until its content changes).
    pub max_attempts: u32,
    /// First retry delay after a failure; doubles per attempt.
    pub retry_base: Duration,
    /// Ask for a custom size (`c256x256`) when the nearest named size is more than twice the target.
    pub custom_sizes: bool,
    /// The mount shows the Timeline: seed the personal cache for each photo's Timeline URI too.
    pub timeline: bool,
}

impl ThumbnailSettings {
    pub fn new(thumbnail_dir: impl Into<PathBuf>) -> ThumbnailSettings {
        ThumbnailSettings {
            thumbnail_dir: thumbnail_dir.into(),
            mountpoint: None,
            personal_cache: None,
            concurrency: 16,
            max_attempts: 5,
            retry_base: Duration::from_secs(30),
            custom_sizes: true,
            timeline: false,
        }
    }
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FetchSummary {
    /// Items looked at.
    pub items: u64,
    /// (item, size) pairs made ready.
    pub ready: u64,
    pub missing: u64,
    pub failed: u64,
    /// Items skipped for now (offline, throttled).
    pub deferred: u64,
}

/// Where the OneDrive thumbnail of `item_id` at `size` is kept.
pub fn thumbnail_file(thumbnail_dir: &Path, item_id: &str, size: ThumbSize) -> PathBuf {
    thumbnail_dir
        .join(size.as_str())
        .join(format!("{}.jpg", utf8_percent_encode(item_id, ID_FILE_SAFE)))
}

/// The longest edge of a thumbnail, when OneDrive said.
fn edge_of(t: &Thumbnail) -> Option<u32> {
    t.width.max(t.height).map(|e| e.max(0) as u32)
}

/// The smallest thumbnail whose longest edge is at least `target` pixels, else the largest one.
pub fn choose_thumbnail(sets: &[ThumbnailSet], target: u32) -> Option<&Thumbnail> {
    let set = sets.iter().find(|s| s.id == "0").or_else(|| sets.first())?;
    let mut candidates: Vec<(u32, &Thumbnail)> = [(&set.small, 96), (&set.medium, 176), (&set.large, 800)]
        .into_iter()
        .filter_map(|(t, nominal)| {
            let t = t.as_ref().filter(|t| t.url.is_some())?;
            let edge = t.width.max(t.height).map(|e| e.max(0) as u32).unwrap_or(nominal);
            Some((edge, t))
        })
        .collect();
    candidates.sort_by_key(|(edge, _)| *edge);
    candidates
        .iter()
        .find(|(edge, _)| *edge >= target)
        .or(candidates.last())
        .map(|(_, t)| *t)
}

fn freedesktop_size(size: ThumbSize) -> thumbnails::ThumbSize {
    match size {
        ThumbSize::Normal => thumbnails::ThumbSize::Normal,
        ThumbSize::Large => thumbnails::ThumbSize::Large,
    }
}

/// How one item ended.
enum ItemOutcome {
    Done { ready: u64, missing: u64, failed: u64 },
    Deferred,
}

/// The background thumbnail fetcher (see the module note). Share it as `Arc<ThumbnailFetcher>`.
pub struct ThumbnailFetcher {
    store: Arc<Store>,
    drive: Arc<dyn DriveApi>,
    settings: ThumbnailSettings,
    status: Arc<SyncStatus>,
    waker: Arc<Notify>,
    stop: Notify,
    stopped: AtomicBool,
    /// Items not to try before this time (after a failure).
    retry_at: Mutex<HashMap<String, Instant>>,
    /// Every request waits until this time (throttled or offline).
    paused_until: Mutex<Option<Instant>>,
    /// When the progress was last published during a pass (counting the store costs a scan: not per item).
    last_progress: Mutex<Instant>,
    /// Items renamed or moved by a delta round: their personal-cache PNGs need their new URI.
    moved: Mutex<Vec<u64>>,
    /// Where the Timeline shows each file (built per pass when [`ThumbnailSettings::timeline`]).
    timeline: Mutex<Option<Arc<TimelineIndex>>>,
    /// Thumbnail URLs the listings carried.
    listed: Arc<ListedThumbnailSets>,
    /// Raised by the read path while a user waits for an original.
    foreground: Arc<Foreground>,
    /// While the foreground is busy, items run one at a time: this permit.
    narrow: tokio::sync::Semaphore,
    /// `ready` states not recorded yet.
    ready_batch: Mutex<Vec<ThumbStateUpdate>>,
    /// Items rendered and written at once (on the blocking pool).
    writers: tokio::sync::Semaphore,
}

impl ThumbnailFetcher {
    pub fn new(
        store: Arc<Store>,
        drive: Arc<dyn DriveApi>,
        settings: ThumbnailSettings,
        status: Arc<SyncStatus>,
    ) -> ThumbnailFetcher {
        ThumbnailFetcher {
            store,
            drive,
            settings,
            status,
            waker: Arc::new(Notify::new()),
            stop: Notify::new(),
            stopped: AtomicBool::new(false),
            retry_at: Mutex::new(HashMap::new()),
            paused_until: Mutex::new(None),
            last_progress: Mutex::new(Instant::now()),
            moved: Mutex::new(Vec::new()),
            timeline: Mutex::new(None),
            listed: Arc::new(ListedThumbnailSets::default()),
            foreground: Arc::new(Foreground::default()),
            narrow: tokio::sync::Semaphore::new(1),
            ready_batch: Mutex::new(Vec::new()),
            writers: tokio::sync::Semaphore::new(WRITERS),
        }
    }

    /// Gives way to `foreground` (the mount's read path raises it).
    pub fn with_foreground(mut self, foreground: Arc<Foreground>) -> ThumbnailFetcher {
        self.foreground = foreground;
        self
    }

    /// Takes the thumbnail URLs listings put in `listed` (the sync engine's `set_listed_thumbnails`).
    pub fn with_listed(mut self, listed: Arc<ListedThumbnailSets>) -> ThumbnailFetcher {
        self.listed = listed;
        self
    }

    /// Where listings put the thumbnail URLs they carry.
    pub fn listed_thumbnails(&self) -> Arc<ListedThumbnailSets> {
        self.listed.clone()
    }

    /// Records the `ready` states gathered so far.
    fn flush_ready(&self) -> Result<(), StoreError> {
        let batch = std::mem::take(&mut *self.ready_batch.lock());
        self.store.set_thumbnail_states(&batch)
    }

    fn record_ready(&self, row: &ItemRow, size: ThumbSize) -> Result<(), StoreError> {
        let full = {
            let mut batch = self.ready_batch.lock();
            batch.push(ThumbStateUpdate {
                item_id: row.item_id.clone(),
                size,
                ctag: row.ctag.clone(),
                state: ThumbState::Ready,
            });
            batch.len() >= STATE_BATCH
        };
        if full {
            self.flush_ready()?;
        }
        Ok(())
    }

    /// Notify this to make the fetcher look for pending items now (the sync engine does after each round).
    pub fn waker(&self) -> Arc<Notify> {
        self.waker.clone()
    }

    /// A hook for `SyncEngine::on_changes`: items renamed or moved remotely get their personal-cache thumbnails
    /// under the new URI (rendered from the kept JPEGs, no download), and new items are fetched.
    pub fn changes_hook(self: &Arc<Self>) -> ChangesHook {
        let fetcher = Arc::downgrade(self);
        Arc::new(move |changes: &AppliedChanges| {
            if let Some(f) = fetcher.upgrade() {
                f.moved.lock().extend(changes.updated.iter().copied());
                f.waker.notify_one();
            }
        })
    }

    /// Re-labels the thumbnails of items (and everything below folders) that were renamed or moved since the
    /// last call. The old URI's PNGs stay until the desktop's thumbnail cleaner removes them.
    pub async fn reseed_moved(&self) -> Result<u64, StoreError> {
        let inos: Vec<u64> = std::mem::take(&mut *self.moved.lock());
        let (Some(mountpoint), Some(cache)) = (&self.settings.mountpoint, &self.settings.personal_cache) else {
            return Ok(0);
        };
        let mut jobs = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for ino in inos {
            for i in self.store.read(|t| t.subtree(ino))? {
                if !seen.insert(i) {
                    continue;
                }
                let Some(row) = self.store.get(i)? else { continue };
                if row.is_dir() || !row.is_media {
                    continue;
                }
                let Some(rel) = relative_path(&self.store, &row)? else {
                    continue;
                };
                let uri = file_uri(&mountpoint.join(rel));
                for size in SIZES {
                    let ready = self
                        .store
                        .thumbnail(&row.item_id, size)?
                        .is_some_and(|t| t.state == ThumbState::Ready && t.ctag == row.ctag);
                    let fd_size = freedesktop_size(size);
                    if ready && !cache.is_current(&uri, fd_size, row.mtime) {
                        let jpeg = thumbnail_file(&self.settings.thumbnail_dir, &row.item_id, size);
                        jobs.push((jpeg, uri.clone(), fd_size, row.mtime, row.mime_type.clone()));
                    }
                }
            }
        }
        let cache = cache.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut done = 0;
            for (jpeg, uri, size, mtime, mimetype) in jobs {
                let extra = ThumbExtra {
                    mimetype,
                    ..ThumbExtra::default()
                };
                let result = std::fs::read(&jpeg)
                    .map_err(|e| e.to_string())
                    .and_then(|b| render_png(&b, size, &uri, mtime, &extra).map_err(|e| e.to_string()))
                    .and_then(|png| cache.store(&uri, size, &png).map_err(|e| e.to_string()));
                match result {
                    Ok(_) => done += 1,
                    Err(e) => tracing::warn!(error = %e, "cannot re-label a thumbnail after a rename"),
                }
            }
            done
        })
        .await
        .unwrap_or(0);
        Ok(done)
    }

    /// Ends [`ThumbnailFetcher::run`] at its next wait.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.stop.notify_one();
    }

    /// Fetches until nothing is pending (except items waiting for a retry), woken by the sync engine, until
    /// stopped.
    pub async fn run(self: Arc<Self>) {
        while !self.stopped.load(Ordering::SeqCst) {
            if let Err(e) = self.reseed_moved().await {
                tracing::warn!(error = %e, "re-labelling moved thumbnails failed");
            }
            match self.run_until_idle().await {
                // Nothing pending: URLs still kept are of items that need no thumbnail.
                Ok(_) if self.next_retry_in().is_none() => self.listed.clear(),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "thumbnail pass failed"),
            }
            let wait = self.next_retry_in().unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                _ = self.waker.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.notified() => break,
            }
        }
    }

    /// Passes until one finds nothing to do.
    pub async fn run_until_idle(&self) -> Result<FetchSummary, StoreError> {
        let mut total = FetchSummary::default();
        loop {
            let pass = self.fetch_pending().await?;
            total.items += pass.items;
            total.ready += pass.ready;
            total.missing += pass.missing;
            total.failed += pass.failed;
            total.deferred += pass.deferred;
            if pass.items == 0 || pass.items == pass.deferred || self.stopped.load(Ordering::SeqCst) {
                return Ok(total);
            }
        }
    }

    /// One pass over the items pending now.
    pub async fn fetch_pending(&self) -> Result<FetchSummary, StoreError> {
        let mut order: Vec<String> = Vec::new();
        let mut jobs: HashMap<String, (ItemRow, Vec<ThumbSize>)> = HashMap::new();
        let now = Instant::now();
        {
            let retry_at = self.retry_at.lock();
            for size in SIZES {
                for row in self.store.pending_thumbnails(size, self.settings.max_attempts, BATCH)? {
                    if retry_at.get(&row.item_id).is_some_and(|t| *t > now) {
                        continue;
                    }
                    let entry = jobs.entry(row.item_id.clone()).or_insert_with(|| {
                        order.push(row.item_id.clone());
                        (row, Vec::new())
                    });
                    entry.1.push(size);
                }
            }
        }
        let mut summary = FetchSummary::default();
        if order.is_empty() {
            self.publish_progress();
            return Ok(summary);
        }
        // How much there is to do, for `galleryfs status`, before doing it.
        self.publish_progress();
        if self.settings.timeline && self.settings.personal_cache.is_some() {
            let entries = self.store.read(|t| t.media_entries())?;
            *self.timeline.lock() = Some(Arc::new(TimelineIndex::build(entries)));
        }
        let work = order.into_iter().filter_map(|id| jobs.remove(&id));
        let outcomes: Vec<ItemOutcome> = stream::iter(work)
            .map(|(row, sizes)| self.fetch_item(row, sizes))
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        self.flush_ready()?;
        for outcome in outcomes {
            summary.items += 1;
            match outcome {
                ItemOutcome::Done { ready, missing, failed } => {
                    summary.ready += ready;
                    summary.missing += missing;
                    summary.failed += failed;
                }
                ItemOutcome::Deferred => summary.deferred += 1,
            }
        }
        self.publish_progress();
        Ok(summary)
    }

    async fn fetch_item(&self, row: ItemRow, sizes: Vec<ThumbSize>) -> ItemOutcome {
        // Foreground first: while a user waits for an original, one item at a time, with a pause after each.
        let narrowed = if self.foreground.is_busy() {
            self.narrow.acquire().await.ok()
        } else {
            None
        };
        let outcome = self.try_item(&row, &sizes).await;
        if narrowed.is_some() && self.foreground.is_busy() {
            tokio::time::sleep(NARROWED_PAUSE).await;
        }
        drop(narrowed);
        let due = {
            let mut last = self.last_progress.lock();
            let due = last.elapsed() >= PROGRESS_EVERY;
            if due {
                *last = Instant::now();
            }
            due
        };
        if due {
            // What is ready so far, as `galleryfs status` shows it.
            if let Err(e) = self.flush_ready() {
                tracing::warn!(error = %e, "thumbnail states not recorded");
            }
            self.publish_progress();
        }
        match outcome {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(item_id = %row.item_id, error = %e, "thumbnail state not recorded");
                ItemOutcome::Done {
                    ready: 0,
                    missing: 0,
                    failed: sizes.len() as u64,
                }
            }
        }
    }

    /// The URL per size from what the listing carried, when it carried one for every size asked.
    fn listed_urls(&self, row: &ItemRow, sizes: &[ThumbSize]) -> Option<Vec<(ThumbSize, String)>> {
        let sets = self.listed.take(&row.item_id, row.ctag.as_deref())?;
        sizes
            .iter()
            .map(|&size| {
                let target = freedesktop_size(size).pixels();
                let url = listed_custom_url(&sets, target).or_else(|| {
                    choose_thumbnail(&sets, target)
                        .filter(|t| !(self.settings.custom_sizes && edge_of(t).is_some_and(|e| e > 2 * target)))
                        .and_then(|t| t.url.clone())
                })?;
                Some((size, url))
            })
            .collect()
    }

    async fn try_item(&self, row: &ItemRow, sizes: &[ThumbSize]) -> Result<ItemOutcome, StoreError> {
        self.wait_if_paused().await;
        if let Some(urls) = self.listed_urls(row, sizes) {
            return self.try_listed_item(row, sizes, urls).await;
        }
        let ctag = row.ctag.as_deref();
        let sets = match self.drive.thumbnails(&row.item_id).await {
            Ok(sets) => sets,
            Err(e) => return self.failed(row, sizes, &e),
        };
        let uri = self.uri_of(row)?;
        let timeline_uri = self.timeline_uri_of(row);
        let mut missing = 0;
        let mut pending_generation = 0;
        let mut downloaded: HashMap<String, bytes::Bytes> = HashMap::new();
        let mut sources = Vec::new();
        for &size in sizes {
            let target = freedesktop_size(size).pixels();
            let Some(named) = choose_thumbnail(&sets, target) else {
                if recently_modified(row) {
                    // OneDrive makes thumbnails some time after an upload: try again later.
                    self.store
                        .set_thumbnail_state(&row.item_id, size, ctag, ThumbState::Failed)?;
                    self.schedule_retry(&row.item_id, size);
                    pending_generation += 1;
                } else {
                    self.store
                        .set_thumbnail_state(&row.item_id, size, ctag, ThumbState::Missing)?;
                    missing += 1;
                }
                continue;
            };
            let mut url = named.url.clone().unwrap_or_default();
            if self.settings.custom_sizes && edge_of(named).is_some_and(|e| e > 2 * target) {
                // Much bigger than needed (`large` is 800 px for a 256 px thumbnail): a custom size is cheaper to
                // download and to scale.
                match self
                    .drive
                    .thumbnail_custom(&row.item_id, &format!("c{target}x{target}"))
                    .await
                {
                    Ok(Some(custom)) if custom.url.is_some() => url = custom.url.unwrap_or_default(),
                    Ok(_) => {}
                    Err(e) if e.is_not_supported() => {}
                    Err(e) => return self.failed(row, sizes, &e),
                }
            }
            let bytes = match downloaded.get(&url) {
                Some(b) => b.clone(),
                None => match self.drive.download_thumbnail(&url).await {
                    Ok(b) => {
                        downloaded.insert(url, b.clone());
                        b
                    }
                    Err(e) => return self.failed(row, sizes, &e),
                },
            };
            sources.push((size, bytes));
        }
        if missing > 0 {
            if let (Some(uri), Some(cache)) = (&uri, &self.settings.personal_cache) {
                for uri in std::iter::once(uri).chain(timeline_uri.as_ref()) {
                    if let Err(e) = cache.store_fail_marker(uri, row.mtime) {
                        tracing::warn!(error = %e, "cannot write a thumbnail failure marker");
                    }
                }
            }
        }
        let outcome = self
            .finish_item(row, sizes, uri, timeline_uri, sources, missing)
            .await?;
        debug_assert!(matches!(outcome, ItemOutcome::Done { failed, .. } if pending_generation <= failed));
        Ok(outcome)
    }

    /// An item whose thumbnail URLs came with the listing: only the downloads.
    async fn try_listed_item(
        &self,
        row: &ItemRow,
        sizes: &[ThumbSize],
        urls: Vec<(ThumbSize, String)>,
    ) -> Result<ItemOutcome, StoreError> {
        let downloads = urls.iter().map(|(_, url)| self.drive.download_thumbnail(url));
        let mut sources = Vec::with_capacity(urls.len());
        for ((size, _), result) in urls.iter().zip(futures::future::join_all(downloads).await) {
            match result {
                Ok(bytes) => sources.push((*size, bytes)),
                Err(e) => return self.failed(row, sizes, &e),
            }
        }
        let uri = self.uri_of(row)?;
        let timeline_uri = self.timeline_uri_of(row);
        self.finish_item(row, sizes, uri, timeline_uri, sources, 0).await
    }

    /// Stores the downloaded thumbnails and records their states.
    async fn finish_item(
        &self,
        row: &ItemRow,
        sizes: &[ThumbSize],
        uri: Option<String>,
        timeline_uri: Option<String>,
        sources: Vec<(ThumbSize, bytes::Bytes)>,
        missing: u64,
    ) -> Result<ItemOutcome, StoreError> {
        let ctag = row.ctag.as_deref();
        let mut ready = 0;
        let stored = self.store_thumbnails(row, uri, timeline_uri, sources).await;
        for (size, result) in stored {
            match result {
                Ok(()) => {
                    self.record_ready(row, size)?;
                    ready += 1;
                }
                Err(message) => {
                    tracing::warn!(item_id = %row.item_id, error = %message, "cannot store a thumbnail");
                    self.store
                        .set_thumbnail_state(&row.item_id, size, ctag, ThumbState::Failed)?;
                    self.schedule_retry(&row.item_id, size);
                }
            }
        }
        self.retry_at.lock().remove(&row.item_id);
        let failed = sizes.len() as u64 - ready - missing;
        Ok(ItemOutcome::Done { ready, missing, failed })
    }

    /// Writes the JPEGs and seeds the personal cache (on the blocking pool).
    async fn store_thumbnails(
        &self,
        row: &ItemRow,
        uri: Option<String>,
        timeline_uri: Option<String>,
        sources: Vec<(ThumbSize, bytes::Bytes)>,
    ) -> Vec<(ThumbSize, Result<(), String>)> {
        let dir = self.settings.thumbnail_dir.clone();
        let cache = self.settings.personal_cache.clone();
        let item_id = row.item_id.clone();
        let mtime = row.mtime;
        let extra = ThumbExtra {
            mimetype: row.mime_type.clone(),
            ..ThumbExtra::default()
        };
        let sizes: Vec<ThumbSize> = sources.iter().map(|(s, _)| *s).collect();
        // Renders and file writes, a few at once: more threads writing into the same directories only contend
        // for their locks.
        let _writing = self.writers.acquire().await.ok();
        let job = tokio::task::spawn_blocking(move || {
            sources
                .into_iter()
                .map(|(size, bytes)| {
                    let result = (|| {
                        write_atomic(&thumbnail_file(&dir, &item_id, size), &bytes).map_err(|e| e.to_string())?;
                        if let (Some(uri), Some(cache)) = (&uri, &cache) {
                            let fd_size = freedesktop_size(size);
                            let prepared =
                                prepare_png(&bytes, fd_size, extra.orientation).map_err(|e| e.to_string())?;
                            for uri in std::iter::once(uri).chain(timeline_uri.as_ref()) {
                                let png = prepared.labelled(uri, mtime, &extra).map_err(|e| e.to_string())?;
                                cache.store(uri, fd_size, &png).map_err(|e| e.to_string())?;
                            }
                        }
                        Ok(())
                    })();
                    (size, result)
                })
                .collect::<Vec<_>>()
        });
        match job.await {
            Ok(results) => results,
            Err(e) => sizes.into_iter().map(|s| (s, Err(e.to_string()))).collect(),
        }
    }

    /// Records a failed fetch: network trouble and throttling pause everything and do not count against the
    /// item; other errors count (`failed`, retried with backoff).
    fn failed(&self, row: &ItemRow, sizes: &[ThumbSize], e: &DriveError) -> Result<ItemOutcome, StoreError> {
        match e {
            DriveError::Throttled { until } => {
                let wait = until
                    .and_then(|u| (u - chrono::Utc::now()).to_std().ok())
                    .unwrap_or(Duration::from_secs(30));
                self.pause_for(wait);
                Ok(ItemOutcome::Deferred)
            }
            DriveError::Offline(_) | DriveError::Unauthorized { .. } => {
                self.pause_for(self.settings.retry_base);
                self.retry_at
                    .lock()
                    .insert(row.item_id.clone(), Instant::now() + self.settings.retry_base);
                Ok(ItemOutcome::Deferred)
            }
            _ => {
                tracing::warn!(item_id = %row.item_id, error = %e, "cannot fetch a thumbnail");
                for &size in sizes {
                    self.store
                        .set_thumbnail_state(&row.item_id, size, row.ctag.as_deref(), ThumbState::Failed)?;
                    self.schedule_retry(&row.item_id, size);
                }
                Ok(ItemOutcome::Done {
                    ready: 0,
                    missing: 0,
                    failed: sizes.len() as u64,
                })
            }
        }
    }

    fn schedule_retry(&self, item_id: &str, size: ThumbSize) {
        let attempts = self
            .store
            .thumbnail(item_id, size)
            .ok()
            .flatten()
            .map(|t| t.attempts)
            .unwrap_or(1);
        let delay = self
            .settings
            .retry_base
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(10));
        self.retry_at.lock().insert(item_id.to_string(), Instant::now() + delay);
    }

    fn pause_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut paused = self.paused_until.lock();
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }

    async fn wait_if_paused(&self) {
        let until = *self.paused_until.lock();
        if let Some(until) = until {
            let now = Instant::now();
            if until > now {
                tokio::time::sleep(until - now).await;
            }
        }
    }

    fn next_retry_in(&self) -> Option<Duration> {
        let now = Instant::now();
        self.retry_at
            .lock()
            .values()
            .map(|t| t.saturating_duration_since(now))
            .min()
    }

    /// The `file://` URI of the item under the mount point, when the mount point is known.
    fn uri_of(&self, row: &ItemRow) -> Result<Option<String>, StoreError> {
        let Some(mountpoint) = &self.settings.mountpoint else {
            return Ok(None);
        };
        let Some(rel) = relative_path(&self.store, row)? else {
            return Ok(None);
        };
        Ok(Some(file_uri(&mountpoint.join(rel))))
    }

    /// The `file://` URI of the item in the Timeline, when the Timeline is on and shows it.
    fn timeline_uri_of(&self, row: &ItemRow) -> Option<String> {
        let mountpoint = self.settings.mountpoint.as_ref()?;
        let index = self.timeline.lock().clone()?;
        Some(file_uri(&mountpoint.join(index.path_of(row.ino)?)))
    }

    /// Puts the thumbnail counts into the status: ready = items ready in every size, total = media items OneDrive
    /// has a thumbnail for.
    pub fn publish_progress(&self) {
        let counts = SIZES.map(|s| self.store.thumbnail_counts(s));
        if let [Ok(normal), Ok(large)] = counts {
            let progress = ThumbnailProgress {
                ready: normal.ready.min(large.ready),
                total: normal.total.saturating_sub(normal.missing),
            };
            self.status.update(|s| s.thumbnails = progress);
        }
    }
}

/// How long after a change an empty thumbnail list still means "not generated yet" rather than "none".
pub const THUMBNAIL_GENERATION_GRACE: Duration = Duration::from_secs(600);

fn recently_modified(row: &ItemRow) -> bool {
    let age = chrono::Utc::now().timestamp() - row.mtime;
    age < THUMBNAIL_GENERATION_GRACE.as_secs() as i64
}

/// The item's path below the gallery root, or `None` when it is not attached to the tree.
pub fn relative_path(store: &Store, row: &ItemRow) -> Result<Option<PathBuf>, StoreError> {
    match store.item_path(row.ino) {
        Ok(path) => Ok(Some(PathBuf::from(path.trim_start_matches('/')))),
        // Gone meanwhile, or no longer below the gallery: nothing to label.
        Err(StoreError::NoSuchInode(_)) | Err(StoreError::Corrupt(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no parent directory"))?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thumb(edge: i64) -> Option<Thumbnail> {
        Some(Thumbnail {
            width: Some(edge),
            height: Some(edge * 3 / 4),
            url: Some(format!("u{edge}")),
            source_item_id: None,
        })
    }

    #[test]
    fn picks_the_smallest_size_at_least_the_target() {
        let sets = vec![ThumbnailSet {
            id: "0".into(),
            small: thumb(96),
            medium: thumb(176),
            large: thumb(800),
            ..Default::default()
        }];
        let url = |t: u32| choose_thumbnail(&sets, t).and_then(|t| t.url.clone()).unwrap();
        assert_eq!(url(128), "u176");
        assert_eq!(url(256), "u800");
        assert_eq!(url(64), "u96");
        assert_eq!(url(1024), "u800", "the largest when none is big enough");
        assert!(choose_thumbnail(&[], 128).is_none());
    }

    #[test]
    fn thumbnail_files_escape_ids() {
        let p = thumbnail_file(Path::new("/c"), "ABC!12/../x", ThumbSize::Large);
        assert_eq!(p, Path::new("/c/large/ABC!12%2F%2E%2E%2Fx.jpg"));
    }
}
