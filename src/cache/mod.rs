//! The cache of originals (photo and video content): sparse files, block map, byte budget, LRU. OneDrive's
//! thumbnails are kept by the sync engine (`sync/thumbnail_fetcher.rs`), rendered ones by `thumbnails/`.
//!
//! Originals are fetched on demand from OneDrive through [`DriveApi::download`](crate::remote::drive_api::DriveApi::download)
//! (ranged, pinned to the cTag seen at open) and kept under `<cache dir>/content/`:
//! - [`disk_cache`]: [`DiskCache`], the sparse files, the block map (in the metadata store), the byte budget
//!   and LRU eviction; a version becomes `Cached` only after its quickXorHash matched.
//! - [`reader`]: [`PrefetchingReader`], the per-open-handle prefetcher, and [`OriginalFetcher`], which opens
//!   readers and downloads whole items for pinning.
//! - `received`: the chunks a reader's downloads received recently, which answer its reads while the cache
//!   file is written behind them.
//! - [`verify`]: quickXorHash of a cached file; [`stream_hash`]: the hash fed while a download streams in.
//! - [`link_stats`]: the measured latency and rate of ranged requests, which size the prefetcher's parts in flight.
//! - `sync_shim`: the disk cache's locks and atomics, swapped for shuttle's with the `shuttle` feature (a model
//!   check of the claim protocol).
//!
//! Concurrency: handles on the same item share its cache file; the locks and their order are written at the top
//! of [`disk_cache`]. A [`PrefetchingReader`] is used by one handle at a time (`&mut self`); its fetches run as
//! tokio tasks and are aborted when it is dropped. SQLite and file I/O run on `spawn_blocking`.
//!
//! No FUSE and no HTTP here. A failed read is a typed [`ReadError`] that keeps its cause (the [`DriveError`]
//! of the download, a hash mismatch, a version change); `mount/fs_backends.rs` turns it into the filesystem's
//! error, whose errno is chosen in `fs/error.rs`.
//!
//! [`DriveError`]: crate::remote::drive_api::DriveError

pub mod disk_cache;
pub mod link_stats;
pub mod reader;
mod received;
pub mod stream_hash;
mod sync_shim;
pub mod verify;

pub use disk_cache::{CacheError, CacheUsage, Commit, DiskCache, InFlight, ItemVersion, ItemWatch, OpenGuard};
pub use reader::{OriginalFetcher, PrefetchingReader, ReadError, ReaderConfig};
