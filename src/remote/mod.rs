//! The OneDrive side: the Microsoft Graph client (HTTP + JSON, one retry policy for every request) and sign-in
//! with the Microsoft identity platform. Nothing here knows of FUSE, SQLite or the cache.
//!
//! - [`graph`], [`delta`], [`download`], [`upload`], [`http`], [`error`]: the Graph client ([`GraphClient`]).
//! - [`drive_api`]: [`drive_api::DriveApi`], the one trait for OneDrive (listings, delta, thumbnails, ranged
//!   downloads pinned to a cTag, uploads, moves, deletes), used by the sync engine, the content cache and the
//!   outbox; implemented over the real client by [`graph_drive_api::GraphDrive`] (which also holds the one
//!   `GraphError` → `DriveError` mapping), and, with the `mock` cargo feature (tests only), in memory by
//!   `mock_drive::MockDrive` with the failure injector `mock_drive::FailingDrive`.
//! - [`notifications`]: the socket.io change-notification channel (a wake-up for delta).
//! - [`auth`]: sign-in and tokens. [`endpoints`]: base URLs. [`models`]: the Graph resources.

pub mod auth;
pub mod delta;
pub mod download;
pub mod drive_api;
pub mod endpoints;
pub mod error;
pub mod graph;
pub mod graph_drive_api;
pub mod http;
#[cfg(any(test, feature = "mock"))]
pub mod mock_drive;
pub mod models;
pub mod notifications;
pub mod paths;
pub mod quickxor;
pub mod upload;

pub use delta::{DeltaRound, DeltaStart};
pub use download::DownloadUrl;
pub use endpoints::Endpoints;
pub use error::GraphError;
pub use graph::{ChildrenCursor, GraphClient, ThumbnailRef};
pub use http::{redact, RetryPolicy, UrlKind};
pub use quickxor::QuickXorHash;
pub use upload::{FileSource, FragmentOutcome, UploadEvent, UploadJob, UploadOptions, UploadSource, UploadTarget};
