//! Filesystem semantics in plain Rust: lookup, attributes, reads, writes, xattrs, errno mapping. No fuser types,
//! so everything here is testable without a mount.
//!
//! - [`core`]: the [`FsCore`] trait every filesystem answers through (the FUSE adapter calls it).
//! - [`types`]: the plain values it answers with.
//! - [`error`]: [`FsError`], mapped to errno in one place.
//! - [`gallery`]: [`gallery::GalleryFs`], the gallery over the metadata store (reads, thumbnails, xattrs).
//! - [`content`]: what the core needs from the content cache and the thumbnail fetcher.
//! - [`virtual_nodes`]: the hidden `.sh_thumbnails` inodes.
//! - [`passthrough`]: an [`FsCore`] over a local directory: the reference the benchmarks compare against, and the
//!   adapter's own test subject.

pub mod content;
pub mod core;
pub mod error;
pub mod gallery;
pub mod passthrough;
pub mod types;
pub mod virtual_nodes;

pub use self::core::{FsCore, FsResult, Invalidator, NoInvalidator};
pub use error::FsError;
pub use types::*;
