//! galleryfs: the OneDrive Samsung Gallery folder as a local FUSE filesystem.
//!
//! Layers, bottom up (each testable without the one above it):
//! - [`remote`]: Microsoft Graph client and identity-platform sign-in; knows HTTP and JSON, nothing of FUSE.
//! - [`store`]: the SQLite metadata store; knows rows.
//! - [`cache`]: on-disk content and thumbnail caches.
//! - [`sync`]: reconciles OneDrive (delta) with the store, and sends the local outbox.
//! - [`fs`]: filesystem semantics in plain Rust (no fuser types).
//! - [`thumbnails`]: the freedesktop thumbnail spec (personal cache, shared repository).
//! - [`fuse`]: the thin `fuser` adapter.
//! - [`emulator`]: a local Graph + identity-platform server, for tests and `galleryfs demo`.
//! - [`cli`], [`config`]: the command line of `../CONTRACT.md` and where things live.

pub mod cache;
pub mod cli;
pub mod config;
pub mod crash_points;
pub mod daemon;
pub mod emulator;
pub mod error;
pub mod fs;
pub mod fuse;
pub mod logging;
pub mod mount;
pub mod mount_options;
pub mod private_file;
pub mod remote;
pub mod store;
pub mod sync;
pub mod thumbnails;
