//! The cache of originals (photo and video content): sparse files, block map, byte budget, LRU. OneDrive's
//! thumbnails are kept by the sync engine (`sync/thumbnail_fetcher.rs`), rendered ones by `thumbnails/`.
//!
//! The content cache fetches originals on demand and keeps them under `<cache dir>/content/`:
//! - [`range_source`]: the [`RangeSource`] trait (ranged reads pinned to a cTag) and its test doubles.
//! - [`disk_cache`]: [`DiskCache`], the sparse files, the block map (in the metadata store), the byte budget
//!   and LRU eviction; a version becomes `Cached` only after its quickXorHash matched.
//! - [`reader`]: [`PrefetchingReader`], the per-open-handle prefetcher, and [`OriginalFetcher`], which opens readers and
//!   downloads whole items for pinning.
//! - [`verify`]: quickXorHash of a cached file; [`stream_hash`]: the hash fed while a download streams in.
//! - [`graph_source`]: [`RangeSource`] over the Graph client (the real OneDrive).
//! - [`link_stats`]: the measured latency and rate of ranged requests, which size the prefetcher's parts in flight.
//!
//! Concurrency: handles on the same item share its cache file; per-item locking is described in
//! [`disk_cache`]. A [`PrefetchingReader`] is used by one handle at a time (`&mut self`); its fetches run as tokio
//! tasks and are aborted when it is dropped. SQLite and file I/O run on `spawn_blocking`.
//!
//! No FUSE here, and HTTP only through `graph_source`'s use of the Graph client; the filesystem maps [`ReadError`] to an
//! errno with [`ReadError::errno`].

pub mod disk_cache;
pub mod graph_source;
pub mod link_stats;
pub mod range_source;
pub mod reader;
pub mod stream_hash;
pub mod verify;

pub use disk_cache::{CacheError, CacheUsage, Commit, DiskCache, InFlight, ItemVersion, ItemWatch, OpenGuard};
pub use range_source::{ByteStream, FailingSource, Failure, MockSource, RangeSource, RequestRecord, SourceError};
pub use reader::{OriginalFetcher, PrefetchingReader, ReadError, ReaderConfig};
