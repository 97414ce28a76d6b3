//! The on-demand reader: one [`PrefetchingReader`] per open file handle serves reads from the content cache and
//! fetches what is missing by ranged downloads ([`DriveApi::download`]), pinned to the content version (cTag) seen at
//! open, with read-ahead.
//!
//! Read-ahead (after mountpoint-s3's prefetcher): the first request after open or a seek covers the read plus
//! `header_window` (64 KiB): enough for a photo's EXIF/XMP or a container's header, so a metadata scan
//! (`exiftool -fast`, a photo manager's import) or a reader that jumps to a trailer fetches those bytes only; while
//! the reads stay small (the kernel's read-ahead ramps its requests up as a reader reads on), only what is read is
//! fetched. A request of `streaming_request` bytes (the kernel's read-ahead at full size) or reading on past
//! `header_span` shows a streaming reader: the window becomes `initial_window` (1 MiB + 128 KiB, Linux
//! readahead's extra 128 KiB included), or the whole file when the streaming request is the first read, at offset 0,
//! of a file of at most `part_size` (a photo read whole: one request); from then on, each time a sequential reader has used half of what is requested ahead of it,
//! the window doubles (up to the larger of `max_window` and the parts in flight times `part_size`) and is topped
//! up; when the next top-up would reach the end of the file, the rest is requested at once (a photo read whole
//! costs one request less: no last short one after another round trip). Ranges are fetched as parts of at most `part_size`; the number of
//! ahead-of-reader parts in flight follows the measured link ([`LinkStats`]: enough parts to hide a request's
//! latency behind the transfer of the others), between `max_parts_in_flight` and `max_parts_cap` (parts the
//! reader is waiting for always start). A forward seek that lands within `seek_tolerance` of the requested region
//! waits for it; a backward seek of more than `backward_tolerance` or a far forward seek resets the window and
//! cancels read-ahead parts outside the new position.
//!
//! Handles on the same item share their fetches: a range another handle is fetching is waited for, not fetched
//! again (see [`DiskCache::claim_fetch`]).
//!
//! Locks: a reader holds no lock of the disk cache between its calls (the order of those is written in
//! [`DiskCache`]'s module); a part's outcome slot (`PartOutcome`, a mutex) is a leaf. The filesystem serialises
//! the reads of one handle (`mount/fs_backends.rs` keeps the reader behind an async mutex).
//!
//! Reads are answered from the chunks the parts received (`received.rs`: at most `received_max` bytes per reader,
//! near its position) as soon as they arrive; the parts write and commit the cache file behind them. A read that
//! reaches the end of the file is answered only once every byte answered before is checked: from the cache file,
//! after the ranges answered from chunks before are committed (the commit that completes the version carries the
//! whole-file hash check, so a reader of the whole file still sees a mismatch), or, for a file received whole in
//! one part (a photo read whole), from the received chunks as soon as the part's own check of the whole body
//! against the quickXorHash passed ([`WholeCheck`]); the read waits for that verdict while the part runs.
//!
//! Memory stays bounded: a part pulls its body only as fast as it writes it to the sparse cache file, holding at
//! most `flush_max` bytes (plus one chunk) before writing, and the chunks kept for reads are at most
//! `received_max`; the window bounds disk use ahead of the reader, not RAM. The part of a file of at most
//! `part_size` (a photo) reads on while its previous piece is written (one write in flight, so at most
//! `2 × flush_max` held), so the commit that completes the file starts right after its last byte; a part that
//! fetches the whole of such a file (and of at most `received_max`) holds it whole and writes it once, after the
//! body (at most `part_size` held): the disk write then stays off the reader's path.
//!
//! Reads answered from received chunks take no lock of the item's cache on the runtime thread: a commit holds the
//! item's generation exclusively, and waiting for it here stalled the read (and the thread) for milliseconds.
//! [`PrefetchingReader::read_now`] answers, without waiting at all, the reads the received chunks or a range known
//! cached can answer (the FUSE thread that received the request asks it first).
//!
//! Integrity: a short body or a retryable error is retried from where it stopped, at most `max_attempts` requests
//! per part, then the read fails. The commit that completes a version verifies the whole file's quickXorHash
//! (see [`DiskCache`]); a mismatch fails the read waiting for it with [`ReadError::HashMismatch`] and every later
//! read of the handle too. A reader of a version whose download failed its check before (a suspect version) first
//! downloads and verifies the whole version, and serves nothing unless it verifies. Dropping the reader aborts its
//! fetches.

use super::disk_cache::{CacheError, Commit, DiskCache, InFlight, ItemVersion, OpenGuard};
use super::link_stats::{LinkStats, Stream};
use super::received::Received;
use super::verify;
use crate::remote::drive_api::{DriveApi, DriveError};
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::task::JoinHandle;

const MIB: u64 = 1024 * 1024;

/// Tuning of the read-ahead.
#[derive(Clone, Debug)]
pub struct ReaderConfig {
    /// Read-ahead of the first read after open or a seek (a header's worth).
    pub header_window: u64,
    /// The window once the reader streams; it doubles from there.
    pub initial_window: u64,
    /// A read request at least this large (the kernel's read-ahead at its full size) shows a streaming reader.
    pub streaming_request: u64,
    /// A reader that reads on this far past where it started streams, whatever its request sizes.
    pub header_span: u64,
    pub max_window: u64,
    pub part_size: u64,
    /// Ahead-of-reader parts in flight before the link is measured, and at least afterwards.
    pub max_parts_in_flight: usize,
    /// At most this many ahead-of-reader parts in flight, whatever the link.
    pub max_parts_cap: usize,
    pub seek_tolerance: u64,
    /// A read this far behind the furthest one read is still sequential (FUSE requests arrive out of order).
    pub backward_tolerance: u64,
    /// Requests per part before a short body or retryable error fails the read.
    pub max_attempts: u32,
    /// Wait before the n-th retry: n × this.
    pub retry_backoff: Duration,
    /// A part writes to the cache (and readers see its bytes) first after this many bytes, the threshold then
    /// doubling up to `flush_max`.
    pub flush_min: usize,
    pub flush_max: usize,
    /// Received chunks kept in memory per reader to answer its reads before they reach the cache file.
    pub received_max: usize,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig {
            header_window: 64 * 1024,
            initial_window: MIB + 128 * 1024,
            streaming_request: 128 * 1024,
            header_span: 512 * 1024,
            max_window: 64 * MIB,
            part_size: 8 * MIB,
            max_parts_in_flight: 4,
            max_parts_cap: 16,
            seek_tolerance: 16 * MIB,
            // The kernel's read-ahead requests are answered by several FUSE threads and reach the reader out of
            // order (2 MiB behind the furthest read was measured with 1 MiB requests): those are not seeks.
            backward_tolerance: 8 * MIB,
            max_attempts: 3,
            retry_backoff: Duration::from_millis(200),
            // Reads are answered from the received chunks, not from the file: writes can be large (few commits:
            // a 4 MB photo in two, a 1 GiB file in 512), as large as the daemon's memory bound allows (each part
            // in flight holds up to this much).
            flush_min: 2 * MIB as usize,
            flush_max: 2 * MIB as usize,
            received_max: 16 * MIB as usize,
        }
    }
}

impl ReadError {
    /// A failure another attempt may not meet: a server error, a refused pre-authenticated download URL (the next
    /// attempt gets a fresh one) or a broken-off body; not the content, the version, the sign-in, or a device that
    /// is offline (that answer should come fast).
    pub fn is_transient(&self) -> bool {
        match self {
            ReadError::Remote { source, .. } => match source {
                DriveError::Offline(_) => false,
                DriveError::Other { status: Some(403), .. } => true,
                source => source.is_retryable(),
            },
            ReadError::ShortBody { .. } => true,
            _ => false,
        }
    }
}

/// Why a read failed, with its cause. The filesystem turns it into its own error (`mount/fs_backends.rs`), which
/// chooses the errno (`fs/error.rs`).
#[derive(Debug, Error)]
pub enum ReadError {
    #[error("cannot download {item}: {source}")]
    Remote {
        item: String,
        #[source]
        source: DriveError,
    },
    #[error("{item} changed on OneDrive since it was opened")]
    VersionChanged { item: String },
    #[error("the downloaded content of {item} does not match its quickXorHash")]
    HashMismatch { item: String },
    #[error("the download of {item} stopped at byte {at} of the range ending at {wanted}, {attempts} times")]
    ShortBody {
        item: String,
        at: u64,
        wanted: u64,
        attempts: u32,
    },
    #[error("the cached bytes of {item} kept disappearing under the read (eviction racing it)")]
    Unstable { item: String },
    #[error("download task ended abnormally: {0}")]
    Task(String),
    #[error(transparent)]
    Cache(CacheError),
}

impl From<CacheError> for ReadError {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::HashMismatch { item } => ReadError::HashMismatch { item },
            CacheError::VersionChanged { item } => ReadError::VersionChanged { item },
            other => ReadError::Cache(other),
        }
    }
}

/// A failure that ends every later read of a handle.
#[derive(Clone, Copy, Debug)]
enum Poison {
    HashMismatch,
    VersionChanged,
}

/// Opens readers and downloads whole items, over one disk cache and one drive.
#[derive(Clone)]
pub struct OriginalFetcher {
    content: Arc<DiskCache>,
    drive: Arc<dyn DriveApi>,
    config: ReaderConfig,
    link: Arc<LinkStats>,
}

impl OriginalFetcher {
    pub fn new(content: Arc<DiskCache>, drive: Arc<dyn DriveApi>) -> Self {
        OriginalFetcher {
            content,
            drive,
            config: ReaderConfig::default(),
            link: Arc::new(LinkStats::default()),
        }
    }

    pub fn with_config(mut self, config: ReaderConfig) -> Self {
        self.config = config;
        self
    }

    pub fn content(&self) -> &Arc<DiskCache> {
        &self.content
    }

    /// What the readers measured of the link (latency, rate).
    pub fn link_stats(&self) -> &Arc<LinkStats> {
        &self.link
    }

    /// A reader of the item's current content version (blocks briefly on the store).
    pub fn open(&self, ino: u64) -> Result<PrefetchingReader, ReadError> {
        let version = self.content.version(ino)?;
        Ok(PrefetchingReader::new(
            self.content.clone(),
            self.drive.clone(),
            version,
            self.config.clone(),
            self.link.clone(),
        ))
    }

    /// Downloads whatever of the item is not cached yet, verified (for pinning). `progress(done, total)` is called
    /// after every part with the cached byte count.
    pub async fn fetch_whole(&self, ino: u64, mut progress: impl FnMut(u64, u64) + Send) -> Result<(), ReadError> {
        let mut reader = self.open(ino)?;
        let v = reader.version().clone();
        if v.size == 0 {
            let content = self.content.clone();
            blocking(move || content.complete_empty(&v)).await?;
            progress(0, 0);
            return Ok(());
        }
        let mut offset = 0;
        while offset < v.size {
            let end = (offset + self.config.part_size).min(v.size);
            reader.ensure_present(offset, end).await?;
            offset = end;
            let store = self.content.store().clone();
            let done = blocking(move || Ok(store.present_bytes(ino)?)).await?;
            progress(done.min(v.size), v.size);
        }
        Ok(())
    }
}

struct Shared {
    content: Arc<DiskCache>,
    drive: Arc<dyn DriveApi>,
    version: ItemVersion,
    config: ReaderConfig,
    link: Arc<LinkStats>,
    /// Chunks the parts received lately, near the reader (see `received.rs`).
    received: Mutex<Received>,
    /// Signalled when a part kept a received chunk.
    arrived: tokio::sync::Notify,
    /// The check of a whole version received in one part against its quickXorHash (see [`run_part`]): one of
    /// `WHOLE_*`. Once verified, received chunks answer any read of it, also the one that reaches the end.
    whole: AtomicU8,
}

/// Times a read that failed for a passing reason is tried again ([`ReadError::is_transient`]).
const READ_RETRIES: u32 = 2;

/// No whole-body check runs ([`Shared::whole`]).
const WHOLE_NONE: u8 = 0;
/// A part receives the whole version and checks it as it arrives.
const WHOLE_RUNNING: u8 = 1;
/// The whole version was received and matched its quickXorHash.
const WHOLE_VERIFIED: u8 = 2;

/// Held by a part that checks the whole body: when the part ends unverified (a mismatch, an error, an abort) the
/// check is over; readers waiting for it are woken either way.
struct WholeCheck<'a>(&'a Shared);

impl WholeCheck<'_> {
    fn start(shared: &Shared) -> WholeCheck<'_> {
        shared.whole.store(WHOLE_RUNNING, Ordering::SeqCst);
        WholeCheck(shared)
    }

    fn verified(&self) {
        self.0.whole.store(WHOLE_VERIFIED, Ordering::SeqCst);
        self.0.arrived.notify_waiters();
    }
}

impl Drop for WholeCheck<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .whole
            .compare_exchange(WHOLE_RUNNING, WHOLE_NONE, Ordering::SeqCst, Ordering::SeqCst);
        self.0.arrived.notify_waiters();
    }
}

type PartOutcome = Arc<Mutex<Option<Result<(), ReadError>>>>;

struct Part {
    start: u64,
    end: u64,
    outcome: PartOutcome,
    task: JoinHandle<()>,
}

/// Bytes of the version known to be in the cache file, from the last block-map query: valid while the item's
/// cache generation is unchanged (see [`ItemWatch::generation`](super::disk_cache::ItemWatch::generation)).
struct Known {
    generation: u64,
    lo: u64,
    hi: u64,
    /// The cache file, opened on first use under this generation.
    file: Option<std::fs::File>,
}

/// The reader of one open file handle. Not shared: the filesystem serialises reads of one handle.
pub struct PrefetchingReader {
    shared: Arc<Shared>,
    parts: Vec<Part>,
    window: u64,
    /// End of the furthest sequential read so far.
    read_pos: Option<u64>,
    /// End of the region requested ahead of the reader.
    ahead_end: u64,
    /// Where the current run of sequential reads started (open or the last seek).
    run_start: u64,
    poisoned: Option<Poison>,
    open: OpenGuard,
    /// Lets sequential reads of bytes already known present skip the block map (one query per run of reads).
    known: Option<Known>,
    /// Ranges answered from received chunks that were not yet committed to the cache when read (merged, in read
    /// order): a read that reaches the end of the file first waits for them to be committed, so that a reader of
    /// the whole file sees the whole-file hash check's verdict.
    unconfirmed: Vec<(u64, u64)>,
}

/// Unconfirmed ranges remembered per reader at most (a reader that keeps seeking forgets the oldest).
const MAX_UNCONFIRMED: usize = 64;

impl Drop for PrefetchingReader {
    fn drop(&mut self) {
        for part in &self.parts {
            part.task.abort();
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CacheError> + Send + 'static,
) -> Result<T, ReadError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ReadError::Task(e.to_string()))?
        .map_err(ReadError::from)
}

fn overlaps(ranges: &[(u64, u64)], start: u64, end: u64) -> bool {
    ranges.iter().any(|&(lo, hi)| lo < end && start < hi)
}

impl PrefetchingReader {
    pub fn new(
        content: Arc<DiskCache>,
        drive: Arc<dyn DriveApi>,
        version: ItemVersion,
        config: ReaderConfig,
        link: Arc<LinkStats>,
    ) -> PrefetchingReader {
        let open = content.register_reader(version.ino);
        let received = Received::new(
            config.received_max,
            config.backward_tolerance.min(config.received_max as u64 / 4),
        );
        PrefetchingReader {
            window: config.header_window,
            shared: Arc::new(Shared {
                content,
                drive,
                version,
                config,
                link,
                received: Mutex::new(received),
                arrived: tokio::sync::Notify::new(),
                whole: AtomicU8::new(WHOLE_NONE),
            }),
            parts: Vec::new(),
            read_pos: None,
            ahead_end: 0,
            run_start: 0,
            poisoned: None,
            open,
            known: None,
            unconfirmed: Vec::new(),
        }
    }

    /// The content version this reader is pinned to.
    pub fn version(&self) -> &ItemVersion {
        &self.shared.version
    }

    /// The current read-ahead window in bytes.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// Up to `len` bytes at `offset`; fewer only at the end of the content, none at or past it. A failure is
    /// logged (once per handle for failures that end the handle) with the reason.
    pub async fn read(&mut self, offset: u64, len: usize) -> Result<Bytes, ReadError> {
        let was_poisoned = self.poisoned.is_some();
        let mut outcome = self.read_inner(offset, len).await;
        // A read that failed for a passing reason (a server error, a refused download URL, a body cut short, after
        // the parts' own retries) is tried again from scratch, up to `READ_RETRIES` times: for a page-cache read
        // the kernel does as much (a failed read-ahead is followed by reads of the pages), and a read that
        // bypasses the page cache gets no such second chance from it.
        for retry in 1..=READ_RETRIES {
            if !outcome.as_ref().is_err_and(ReadError::is_transient) {
                break;
            }
            tokio::time::sleep(self.shared.config.retry_backoff * retry).await;
            outcome = self.read_inner(offset, len).await;
        }
        if let Err(e) = &outcome {
            if !was_poisoned {
                let v = &self.shared.version;
                tracing::warn!(ino = v.ino, item = %v.name, offset, len, error = %e, "read of a cloud file failed");
            }
        }
        outcome
    }

    /// Waits (at most 10 s) for the part that received the whole version and verified it to write and commit it:
    /// the file is then cached when its handle closes (the read of its end did not wait for that).
    pub async fn settle_received(&mut self) {
        if self.shared.whole.load(Ordering::SeqCst) != WHOLE_VERIFIED {
            return;
        }
        let size = self.shared.version.size;
        for part in self.parts.iter_mut().filter(|p| p.start == 0 && p.end == size) {
            let _ = tokio::time::timeout(Duration::from_secs(10), &mut part.task).await;
        }
        // Finished parts go (a joined task is never awaited again); a failure is the next read's to report.
        let _ = self.reap();
    }

    /// [`Self::read`] when it needs no waiting, for a caller that must not wait (the FUSE thread that received
    /// the request): bytes the received chunks hold, or a range of the cache file known present, with no
    /// read-ahead to top up, no version change or failed check to look into and, for a read that reaches the end
    /// of the file, no range answered from chunks still to be confirmed. `None`: call [`Self::read`] (observing
    /// the read twice leaves the window as once: the second is the same sequential read).
    pub fn read_now(&mut self, offset: u64, len: usize) -> Option<Result<Bytes, ReadError>> {
        let size = self.shared.version.size;
        let end = offset.saturating_add(len as u64).min(size);
        if offset >= end {
            return Some(Ok(Bytes::new()));
        }
        let from_received = end < size;
        if self.poisoned.is_some()
            || self.open.version_change_pending()
            || self.open.mismatch_counted_since_open()
            || self.shared.content.is_suspect(&self.shared.version)
        {
            return None;
        }
        if !from_received {
            if let Some(data) = self.verified_bytes(offset, end) {
                self.observe(offset, end);
                return Some(Ok(data));
            }
            if !self.unconfirmed.is_empty() {
                return None;
            }
        }
        let received = if from_received {
            let mut r = self.shared.received.lock();
            r.advance(offset);
            r.get(offset, end)
        } else {
            None
        };
        if received.is_none() && !self.known_covers(offset, end) {
            return None;
        }
        let ahead_end = self.observe(offset, end);
        match self.reap() {
            Ok(failed) => {
                for (part_start, part_end, error) in failed {
                    tracing::debug!(ino = self.shared.version.ino, start = part_start, end = part_end, %error,
                        "read-ahead part failed");
                }
            }
            Err(e) => {
                let v = &self.shared.version;
                tracing::warn!(ino = v.ino, item = %v.name, offset, len, error = %e, "read of a cloud file failed");
                return Some(Err(e));
            }
        }
        if self.wants_more_parts(ahead_end) {
            return None;
        }
        match received {
            Some(data) => {
                self.note_unconfirmed(offset, end);
                Some(Ok(data))
            }
            None => self.read_known(offset, end).map(Ok),
        }
    }

    async fn read_inner(&mut self, offset: u64, len: usize) -> Result<Bytes, ReadError> {
        let size = self.shared.version.size;
        let end = offset.saturating_add(len as u64).min(size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        if self.open.version_changes_seen() {
            // OneDrive changed the file while this handle reads it. The kernel now knows the new size and would
            // cut this handle's reads of the old version there: such a read fails (`ESTALE`) rather than end
            // early.
            let content = self.shared.content.clone();
            let ino = self.shared.version.ino;
            let current = blocking(move || content.version(ino)).await;
            if current.is_ok_and(|v| v.ctag != self.shared.version.ctag) {
                self.shared.received.lock().clear();
                self.poisoned = Some(Poison::VersionChanged);
                return Err(ReadError::VersionChanged {
                    item: self.shared.version.name.clone(),
                });
            }
        }
        if self.shared.content.is_suspect(&self.shared.version) {
            // Bytes of this version failed a check before: serve none until the whole version verifies.
            tracing::debug!(
                ino = self.shared.version.ino,
                "verifying the whole file before serving it"
            );
            self.ensure_present(0, size).await?;
        }
        // Received chunks answer reads, except one that reaches the end of the file: it waits for the cache
        // file, and first for the ranges answered from chunks before (their commits include the whole-file check).
        let from_received = end < size;
        if !from_received {
            // While the whole version is being received and checked, its verdict comes before any commit.
            let shared = self.shared.clone();
            loop {
                let arrived = shared.arrived.notified();
                tokio::pin!(arrived);
                arrived.as_mut().enable();
                if let Some(data) = self.verified_bytes(offset, end) {
                    return Ok(data);
                }
                if shared.whole.load(Ordering::SeqCst) != WHOLE_RUNNING {
                    break;
                }
                arrived.await;
            }
            for (lo, hi) in std::mem::take(&mut self.unconfirmed) {
                self.ensure(lo, hi, false, false).await?;
            }
        }
        for _ in 0..3 {
            if let Some(data) = self.ensure(offset, end, true, from_received).await? {
                self.note_unconfirmed(offset, end);
                return Ok(data);
            }
            if let Some(data) = self.read_known(offset, end) {
                return Ok(data);
            }
            let content = self.shared.content.clone();
            let v = self.shared.version.clone();
            if let Some(data) = blocking(move || content.read_at(&v, offset, end - offset)).await? {
                return Ok(Bytes::from(data));
            }
        }
        Err(ReadError::Unstable {
            item: self.shared.version.name.clone(),
        })
    }

    /// `[start, end)` from the received chunks when the whole version was received and verified in memory (no
    /// range answered before needs its commit: every byte is checked); `None` otherwise.
    fn verified_bytes(&mut self, start: u64, end: u64) -> Option<Bytes> {
        if self.shared.whole.load(Ordering::SeqCst) != WHOLE_VERIFIED {
            return None;
        }
        let data = self.shared.received.lock().get(start, end)?;
        self.unconfirmed.clear();
        Some(data)
    }

    fn note_unconfirmed(&mut self, start: u64, end: u64) {
        if let Some(last) = self.unconfirmed.last_mut() {
            if start <= last.1 && last.0 <= end {
                *last = (last.0.min(start), last.1.max(end));
                return;
            }
        }
        if self.unconfirmed.len() >= MAX_UNCONFIRMED {
            self.unconfirmed.remove(0);
        }
        self.unconfirmed.push((start, end));
    }

    fn known_covers(&self, start: u64, end: u64) -> bool {
        self.known.as_ref().is_some_and(|k| k.lo <= start && end <= k.hi)
    }

    /// `[start, end)` read straight from the cache file when the block map said it is there and the item's
    /// generation has not changed since; `None` sends the read the long way (the knowledge is dropped).
    fn read_known(&mut self, start: u64, end: u64) -> Option<Bytes> {
        if !self.known_covers(start, end) {
            return None;
        }
        let known = self.known.as_mut()?;
        if known.file.is_none() {
            match std::fs::File::open(self.shared.content.path_of(&self.shared.version)) {
                Ok(f) => known.file = Some(f),
                Err(_) => {
                    self.known = None;
                    return None;
                }
            }
        }
        let file = known.file.as_ref()?;
        let read = self.open.while_generation(known.generation, || {
            super::disk_cache::read_exact_unzeroed(file, start, (end - start) as usize)
        });
        match read {
            Some(Ok(data)) => Some(Bytes::from(data)),
            _ => {
                self.known = None;
                None
            }
        }
    }

    /// Records what a block-map query of `[start, scan_end)` under `generation` found present from `start`.
    fn learn(&mut self, generation: u64, start: u64, scan_end: u64, missing: &[(u64, u64)]) {
        let present_end = missing.first().map_or(scan_end, |m| m.0);
        if present_end <= start {
            return;
        }
        let file = match self.known.take() {
            Some(k) if k.generation == generation => k.file,
            _ => None,
        };
        self.known = Some(Known {
            generation,
            lo: start,
            hi: present_end,
            file,
        });
    }

    /// Whether read-ahead should be topped up: the requested region reaches past what is known present and
    /// being fetched, and more parts may run.
    fn wants_more_parts(&self, ahead_end: u64) -> bool {
        let known_end = self.known.as_ref().map_or(0, |k| k.hi);
        let requested = self.parts.iter().map(|p| p.end).max().unwrap_or(0).max(known_end);
        ahead_end > requested && self.parts.len() < self.parts_allowed()
    }

    fn poison_error(&self) -> Option<ReadError> {
        let item = self.shared.version.name.clone();
        self.poisoned.map(|p| match p {
            Poison::HashMismatch => ReadError::HashMismatch { item },
            Poison::VersionChanged => ReadError::VersionChanged { item },
        })
    }

    /// Waits until `[start, end)` is cached, fetching what is missing and reading ahead.
    pub async fn ensure_present(&mut self, start: u64, end: u64) -> Result<(), ReadError> {
        self.ensure(start, end, true, false).await.map(|_| ())
    }

    /// [`Self::ensure_present`], with the read-ahead window updated for a read of the range when `observe`; with
    /// `from_received`, returns the range's bytes as soon as received chunks hold them (committed or not), and
    /// `None` once the range is cached.
    async fn ensure(
        &mut self,
        start: u64,
        end: u64,
        observe: bool,
        from_received: bool,
    ) -> Result<Option<Bytes>, ReadError> {
        let end = end.min(self.shared.version.size);
        if let Some(e) = self.poison_error() {
            return Err(e);
        }
        if start >= end {
            return Ok(None);
        }
        let ahead_end = if observe {
            self.observe(start, end)
        } else {
            self.ahead_end
        };
        let received = |reader: &Self| -> Option<Bytes> {
            if !from_received {
                return None;
            }
            let mut r = reader.shared.received.lock();
            if observe {
                r.advance(start);
            }
            r.get(start, end)
        };
        // No lock here: a commit of the item (which holds its generation exclusively) must not stall a read the
        // received chunks can answer, nor the runtime thread it runs on.
        if !self.open.mismatch_counted_since_open() {
            if let Some(data) = received(self) {
                // Only look for finished parts and whether read-ahead needs topping up.
                for (part_start, part_end, error) in self.reap()? {
                    tracing::debug!(ino = self.shared.version.ino, start = part_start, end = part_end, %error,
                        "read-ahead part failed");
                }
                if !self.wants_more_parts(ahead_end) {
                    return Ok(Some(data));
                }
            }
        }
        if self.known_covers(start, end) {
            // Present already: only look for finished parts and whether read-ahead needs topping up.
            for (part_start, part_end, error) in self.reap()? {
                tracing::debug!(ino = self.shared.version.ino, start = part_start, end = part_end, %error,
                    "read-ahead part failed");
            }
            if !self.wants_more_parts(ahead_end) {
                return Ok(None);
            }
        }
        let mut started_for_read = 0usize;
        loop {
            let content = self.shared.content.clone();
            let v = self.shared.version.clone();
            let watch = self.open.watch();
            let notified = watch.changed();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let shared = self.shared.clone();
            let arrived = shared.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            // Reap before looking at the block map: a part that finished has committed everything it fetched, and
            // a part still listed covers its range, so nothing is fetched twice.
            let failed = self.reap()?;
            // Likewise for other readers' fetches: one listed now has either committed before the block map is
            // read, or will wake us when it ends.
            let busy = content.fetches_in_flight(&v);
            let scan_end = ahead_end.max(end);
            // The generation is read on the blocking pool too: a commit holding it must not stall this thread.
            let probe = self.open.watch();
            let (generation, missing) = blocking(move || {
                let generation = probe.generation();
                Ok((generation, content.missing_ranges(&v, start, scan_end)?))
            })
            .await?;
            self.learn(generation, start, scan_end, &missing);
            let needed: Vec<(u64, u64)> = missing
                .iter()
                .filter(|&&(lo, _)| lo < end)
                .map(|&(lo, hi)| (lo, hi.min(end)))
                .collect();
            let ino = self.shared.version.ino;
            for (part_start, part_end, error) in failed {
                if overlaps(&needed, part_start, part_end) {
                    return Err(error);
                }
                tracing::debug!(ino, start = part_start, end = part_end, %error,
                    "read-ahead part failed");
            }
            if !needed.is_empty() && self.open.mismatch_since_open() {
                self.poisoned = Some(Poison::HashMismatch);
                return Err(ReadError::HashMismatch {
                    item: self.shared.version.name.clone(),
                });
            }
            started_for_read += self.schedule(&missing, end, &busy);
            if let Some(data) = received(self) {
                return Ok(Some(data));
            }
            if needed.is_empty() {
                return Ok(None);
            }
            if started_for_read > 2 * self.shared.config.max_attempts as usize + needed.len() {
                return Err(ReadError::Unstable {
                    item: self.shared.version.name.clone(),
                });
            }
            // A commit or the end of a fetch: look at the block map again. A received chunk: only look at the
            // received chunks (no block-map query per chunk).
            loop {
                tokio::select! {
                    _ = &mut notified => break,
                    _ = &mut arrived => {
                        if let Some(data) = received(self) {
                            return Ok(Some(data));
                        }
                        arrived.set(shared.arrived.notified());
                        arrived.as_mut().enable();
                    }
                }
            }
        }
    }

    /// Where a sequential streaming reader at `end` is read ahead to: the window past it, or the end of the file
    /// when the next top-up (a doubled window) would reach it anyway: a photo read whole then costs one request
    /// less, not a last short one after another round trip.
    fn ahead_to(&self, end: u64, size: u64) -> u64 {
        let ahead = end + self.window;
        if ahead + 2 * self.window >= size {
            size
        } else {
            ahead
        }
    }

    /// Updates the window for a read of `[start, end)`; returns the end of the region to have requested.
    fn observe(&mut self, start: u64, end: u64) -> u64 {
        let c = &self.shared.config;
        let size = self.shared.version.size;
        let sequential = self.read_pos.is_some_and(|pos| {
            start + c.backward_tolerance >= pos && start <= self.ahead_end.max(pos) + c.seek_tolerance
        });
        let streaming_request = end - start >= c.streaming_request;
        if sequential {
            if self.window < c.initial_window {
                // Header phase: only what is read (the kernel's own read-ahead ramps up its requests while a
                // reader reads on, and a metadata scan stops after a few); a full-size request or a read past
                // `header_span` is a reader that streams.
                if streaming_request || end > self.run_start + c.header_span {
                    self.window = c.initial_window;
                    self.ahead_end = self.ahead_to(end, size);
                } else {
                    self.ahead_end = self.ahead_end.max(end).min(size);
                }
            } else if self.ahead_end < end + self.window / 2 {
                let parts = self.parts_allowed() as u64;
                self.window = (self.window * 2).min(c.max_window.max(parts * c.part_size));
                self.ahead_end = self.ahead_to(end, size);
            }
            self.read_pos = self.read_pos.max(Some(end));
        } else {
            if let Some(pos) = self.read_pos {
                tracing::trace!(
                    ino = self.shared.version.ino,
                    from = pos,
                    to = start,
                    "seek: read-ahead reset"
                );
            }
            self.window = if streaming_request {
                c.initial_window
            } else {
                c.header_window
            };
            self.run_start = start;
            // A streaming first read at the start of a file that fits in one part is a reader of the whole file
            // (`cp`, an image viewer): the whole file in one request, not a window and a top-up a round trip later.
            let whole = streaming_request && start == 0 && self.read_pos.is_none() && size <= c.part_size;
            let keep_end = if whole { size } else { (start + self.window).max(end) };
            self.parts.retain(|p| {
                let keep = p.start < keep_end && start < p.end;
                if !keep {
                    p.task.abort();
                }
                keep
            });
            self.ahead_end = keep_end.min(size);
            self.read_pos = Some(end);
        }
        self.ahead_end
    }

    /// Removes finished parts. Fails at once with an error that poisons the handle; returns the others' failures
    /// (range and error) for the caller to judge against the bytes it still needs.
    #[allow(clippy::type_complexity)]
    fn reap(&mut self) -> Result<Vec<(u64, u64, ReadError)>, ReadError> {
        let mut failed = Vec::new();
        let mut fatal: Option<ReadError> = None;
        self.parts.retain(|p| {
            let Some(outcome) = p.outcome.lock().take() else {
                return true;
            };
            match outcome {
                Ok(()) => {}
                Err(e @ (ReadError::HashMismatch { .. } | ReadError::VersionChanged { .. })) => {
                    fatal.get_or_insert(e);
                }
                Err(e) => failed.push((p.start, p.end, e)),
            }
            false
        });
        match fatal {
            Some(e) => {
                self.shared.received.lock().clear();
                self.poisoned = Some(match e {
                    ReadError::HashMismatch { .. } => Poison::HashMismatch,
                    _ => Poison::VersionChanged,
                });
                Err(e)
            }
            None => Ok(failed),
        }
    }

    /// Starts parts for the missing ranges not covered by running parts (this reader's, or `busy`: any reader's): always those before `needed_end`, the
    /// rest while fewer than `max_parts_in_flight` parts run. Returns how many parts for the read were started.
    fn schedule(&mut self, missing: &[(u64, u64)], needed_end: u64, busy: &[(u64, u64)]) -> usize {
        let (part_size, max_parts) = (self.shared.config.part_size, self.parts_allowed());
        let mut started = 0;
        for &(lo, hi) in missing {
            for (a, b) in self.uncovered(lo, hi, busy) {
                let mut pos = a;
                while pos < b {
                    let for_read = pos < needed_end;
                    if !for_read && self.parts.len() >= max_parts {
                        return started;
                    }
                    let part_end = (pos + part_size).min(b);
                    let claims = self.shared.content.claim_fetch(&self.shared.version, pos, part_end);
                    for (lo, hi, in_flight) in claims {
                        self.start_part(lo, hi, in_flight);
                        started += (lo < needed_end) as usize;
                    }
                    pos = part_end;
                }
            }
        }
        started
    }

    /// Ahead-of-reader parts to keep in flight, from the measured link.
    fn parts_allowed(&self) -> usize {
        let c = &self.shared.config;
        self.shared
            .link
            .parts_in_flight(c.part_size, c.max_parts_in_flight, c.max_parts_cap)
    }

    /// The sub-ranges of `[lo, hi)` that no fetch of this or another reader of the item covers.
    fn uncovered(&self, lo: u64, hi: u64, busy: &[(u64, u64)]) -> Vec<(u64, u64)> {
        let mut covered: Vec<(u64, u64)> = busy
            .iter()
            .copied()
            .chain(self.parts.iter().map(|p| (p.start, p.end)))
            .filter(|&(s, e)| s < hi && lo < e)
            .collect();
        covered.sort_unstable();
        let mut out = Vec::new();
        let mut cursor = lo;
        for (s, e) in covered {
            if s > cursor {
                out.push((cursor, s.min(hi)));
            }
            cursor = cursor.max(e);
        }
        if cursor < hi {
            out.push((cursor, hi));
        }
        out
    }

    fn start_part(&mut self, start: u64, end: u64, in_flight: InFlight) {
        let outcome: PartOutcome = Arc::new(Mutex::new(None));
        let shared = self.shared.clone();
        let slot = outcome.clone();
        let task = tokio::spawn(async move {
            let result = run_part(&shared, start, end).await;
            *slot.lock() = Some(result);
            // Unregisters the range and wakes every reader of the item (also when the task is aborted).
            drop(in_flight);
        });
        self.parts.push(Part {
            start,
            end,
            outcome,
            task,
        });
    }
}

/// Downloads `[start, end)` into the cache, retrying short bodies and retryable errors from where they stopped.
async fn run_part(shared: &Arc<Shared>, start: u64, end: u64) -> Result<(), ReadError> {
    let v = &shared.version;
    let c = &shared.config;
    // A file of one part (a photo) is written behind its body: the body is read on while the previous piece is
    // written and committed, so the commit that completes it (and that the read reaching its end waits for) starts
    // soon after the last byte. Larger files write in step (memory: a part holds at most `flush_max` unwritten).
    let pipelined = v.size <= c.part_size;
    // A part that fetches the whole of such a file, when the received chunks can hold it all, keeps its body in
    // memory and checks it against the version's quickXorHash as it arrives: once the last byte matches, readers
    // take every byte from the received chunks (the read reaching the end too), and the file is written and
    // committed (checked again) in one piece after the body, off their path.
    let expected = v.quick_xor_hash.as_deref();
    let whole = pipelined && start == 0 && end == v.size && v.size <= c.received_max as u64 && expected.is_some();
    let mut body_hash = whole.then(crate::remote::QuickXorHash::new);
    let check = whole.then(|| WholeCheck::start(shared));
    let mut pos = start;
    let mut attempts = 0u32;
    let mut last_error: Option<DriveError> = None;
    while pos < end {
        if attempts >= c.max_attempts {
            return Err(match last_error {
                Some(source) => ReadError::Remote {
                    item: v.name.clone(),
                    source,
                },
                None => ReadError::ShortBody {
                    item: v.name.clone(),
                    at: pos,
                    wanted: end,
                    attempts,
                },
            });
        }
        if attempts > 0 {
            tracing::debug!(ino = v.ino, at = pos, end, attempts, "retrying an interrupted download");
            tokio::time::sleep(c.retry_backoff * attempts).await;
        }
        attempts += 1;
        let requested = Instant::now();
        let mut first_byte: Option<(Instant, u64)> = None;
        let mut stream: Option<Stream<'_>> = None;
        let mut body = match shared.drive.download(&v.item_id, &v.ctag, pos, end).await {
            Ok(body) => body,
            Err(e) => {
                last_error = Some(check_source_error(v, e)?);
                continue;
            }
        };
        let mut buffer = Pending::default();
        let mut flush_at = c.flush_min;
        // The write of the previous piece, running while the body is read on (small files: see above).
        let mut writing: Option<WriteTask> = None;
        last_error = None;
        loop {
            match body.next().await {
                Some(Ok(chunk)) => {
                    if first_byte.is_none() {
                        shared.link.record_latency(requested.elapsed());
                        first_byte = Some((Instant::now(), pos + buffer.len() as u64));
                        stream = Some(shared.link.streaming());
                    }
                    let room = (end - pos - buffer.len() as u64) as usize;
                    let chunk = chunk.slice(..chunk.len().min(room));
                    if let Some(hash) = body_hash.as_mut() {
                        hash.update_at(pos + buffer.len() as u64, &chunk);
                    }
                    if shared.received.lock().insert(pos + buffer.len() as u64, chunk.clone()) {
                        shared.arrived.notify_waiters();
                    }
                    buffer.push(chunk);
                    let done = pos + buffer.len() as u64 >= end;
                    if let (true, Some(hash), Some(expected), Some(check)) =
                        (done, body_hash.as_mut(), expected, check.as_ref())
                    {
                        hash.set_len(v.size);
                        if verify::hashes_match(expected, &hash.finish_base64()) {
                            check.verified();
                        }
                    }
                    if (buffer.len() >= flush_at && !whole) || done {
                        // One write in flight at a time, committed in order.
                        settle(shared, writing.take()).await?;
                        let at = pos;
                        pos += buffer.len() as u64;
                        let task = spawn_write(shared, at, buffer.take());
                        if pipelined && !done {
                            writing = task;
                        } else {
                            settle(shared, task).await?;
                        }
                        flush_at = (flush_at * 2).min(c.flush_max);
                    }
                    if done {
                        if let (Some((at, from)), Some(stream)) = (first_byte, stream.take()) {
                            stream.finished(pos - from, at.elapsed());
                        }
                        break;
                    }
                }
                Some(Err(e)) => {
                    settle(shared, writing.take()).await?;
                    pos = flush(shared, pos, buffer.take()).await?;
                    last_error = Some(check_source_error(v, e)?);
                    break;
                }
                None => {
                    settle(shared, writing.take()).await?;
                    pos = flush(shared, pos, buffer.take()).await?;
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Turns a non-retryable download error into the read's error; returns a retryable one.
fn check_source_error(v: &ItemVersion, e: DriveError) -> Result<DriveError, ReadError> {
    match e {
        DriveError::PreconditionFailed(_) => Err(ReadError::VersionChanged { item: v.name.clone() }),
        e if e.is_retryable() => Ok(e),
        source => Err(ReadError::Remote {
            item: v.name.clone(),
            source,
        }),
    }
}

/// Body chunks received and not yet written (kept as they came: no copy into one buffer).
#[derive(Default)]
struct Pending {
    chunks: Vec<Bytes>,
    len: usize,
}

impl Pending {
    fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        self.chunks.push(chunk);
    }

    fn len(&self) -> usize {
        self.len
    }

    fn take(&mut self) -> Vec<Bytes> {
        self.len = 0;
        std::mem::take(&mut self.chunks)
    }
}

/// A piece of a part being written and committed to the cache on the blocking pool.
struct WriteTask {
    offset: u64,
    handle: JoinHandle<Result<Commit, CacheError>>,
}

/// Starts writing and committing `chunks` from `offset` (`write_slices_at` wakes the item's readers after
/// committing); `None` when there is nothing to write.
fn spawn_write(shared: &Arc<Shared>, offset: u64, chunks: Vec<Bytes>) -> Option<WriteTask> {
    if chunks.iter().all(|c| c.is_empty()) {
        return None;
    }
    let content = shared.content.clone();
    let v = shared.version.clone();
    let handle = tokio::task::spawn_blocking(move || {
        let slices: Vec<&[u8]> = chunks.iter().map(|c| c.as_ref()).collect();
        content.write_slices_at(&v, offset, &slices)
    });
    Some(WriteTask { offset, handle })
}

/// Waits for a write started by [`spawn_write`].
async fn settle(shared: &Arc<Shared>, task: Option<WriteTask>) -> Result<(), ReadError> {
    let Some(task) = task else {
        return Ok(());
    };
    let commit = task
        .handle
        .await
        .map_err(|e| ReadError::Task(e.to_string()))?
        .map_err(ReadError::from)?;
    match commit {
        Commit::Discarded => tracing::debug!(
            ino = shared.version.ino,
            offset = task.offset,
            "downloaded bytes discarded (evicted)"
        ),
        Commit::Partial | Commit::Complete => {}
    }
    Ok(())
}

/// Writes and commits `chunks` from `offset`, wakes the reader; returns the offset after them.
async fn flush(shared: &Arc<Shared>, offset: u64, chunks: Vec<Bytes>) -> Result<u64, ReadError> {
    let len: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    settle(shared, spawn_write(shared, offset, chunks)).await?;
    Ok(offset + len)
}
