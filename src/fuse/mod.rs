//! The thin `fuser` adapter: each callback hands its request to the filesystem core ([`crate::fs::FsCore`]) on
//! the tokio runtime and maps the answer to a reply. fuser types appear only in this module.
//!
//! - [`adapter`]: the `fuser::Filesystem` implementation.
//! - [`session`]: mount options → fuser config, mount/unmount, kernel-cache invalidation thread.
//! - [`live`]: applied remote changes replayed through the mount, so that inotify watchers see them.

pub mod adapter;
pub mod live;
pub mod session;

pub use session::{fuser_config, mount, MountedFs};
