//! The sync engine: applies OneDrive delta rounds to the store and replays the local outbox to OneDrive. It sits
//! below the filesystem (`fs`) and never names it: what it needs from the mounted filesystem is a trait declared
//! here ([`local_edits::LocalEdits`]), and what it reports (applied rounds) goes to hooks the mount registers.
//!
//! - [`delta_apply`]: one round of delta items (or a full enumeration) → store changes, in one transaction.
//! - [`server_names`]: what a server name must be to be shown, and the suffix for case clashes.
//! - [`gallery_locator`]: finding the gallery folder at mount.
//! - [`camera_roll`]: the drive's Camera Roll as one more folder at the root, synced as a tree of its own.
//! - [`engine`]: [`engine::SyncEngine`]: first listing, delta polling, resync, offline and sign-in handling.
//! - [`tree_listing`]: the first listing by folders (`children()`, several at once) after a `token=latest` link.
//! - [`notification_listener`]: socket.io change notifications → [`engine::SyncEngine::wake`].
//! - [`thumbnail_fetcher`]: OneDrive thumbnails into the thumbnail cache and the freedesktop personal cache.
//! - [`foreground`]: [`foreground::Foreground`], the signal the read path raises so the thumbnail pass gives way.
//! - [`status`]: the shared status behind `galleryfs status`.
//! - [`outbox_replay`]: the journalled local changes → OneDrive, in order, with conflict copies and guards.
//! - [`local_edits`]: what the replayer asks of the local write state ([`local_edits::LocalEdits`]).
//! - [`upload_commit`]: the store transactions that finish an upload or a conflict copy.
//! - [`conflict_copies`]: conflict copies' names, and whether OneDrive's version moved on from a baseline.
//! - [`capture_date`], [`timeline_index`]: a photo's capture date, and where the Timeline shows each file (the
//!   filesystem's Timeline view and the thumbnail fetcher both read it).

pub mod camera_roll;
pub mod capture_date;
pub mod conflict_copies;
pub mod delta_apply;
pub mod engine;
pub mod foreground;
pub mod gallery_locator;
pub mod local_edits;
pub mod notification_listener;
pub mod outbox_replay;
pub mod server_names;
pub mod status;
pub mod thumbnail_fetcher;
pub mod timeline_index;
pub mod tree_listing;
pub mod upload_commit;
