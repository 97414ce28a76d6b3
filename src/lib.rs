//! galleryfs: the OneDrive Samsung Gallery folder as a local FUSE filesystem.
//!
//! Layers, bottom up. A module names only modules below it, so each is testable without the ones above
//! (`tests/suite/module_layers.rs` fails on a cycle and prints the graph). A lower layer that needs something of an upper
//! one declares a trait, the upper one implements it, and [`mount`] wires them (docs/architecture.md).
//! - [`store`]: the SQLite metadata store; knows rows. [`thumbnails`]: the freedesktop thumbnail spec.
//!   [`private_file`]: files only the user may read. [`crash_points`], [`logging`], [`error`], [`daemon`],
//!   [`mount_options`]: small pieces that name nothing above them.
//! - [`remote`]: Microsoft Graph client and identity-platform sign-in; knows HTTP and JSON, nothing of FUSE or
//!   the store.
//! - [`cache`]: originals on disk, fetched by ranges through [`remote`], their block map in [`store`].
//! - [`sync`]: reconciles OneDrive (delta) with the store and sends the local outbox; what it needs of the mounted
//!   filesystem is a trait of its own (`sync::local_edits::LocalEdits`). [`config`]: where things live.
//! - [`fs`]: filesystem semantics in plain Rust (no fuser types) over the store.
//! - [`fuse`]: the thin `fuser` adapter over [`fs`].
//! - [`mount`]: one mount assembled from the layers.
//! - [`cli`]: the command line (README.md).
//! - [`emulator`]: a local Graph + identity-platform server, for tests and `galleryfs demo`; it names no module
//!   of the client.

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
