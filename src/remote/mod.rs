//! The OneDrive side: the Microsoft Graph client (HTTP + JSON, one retry policy for every request) and sign-in
//! with the Microsoft identity platform. Nothing here knows of FUSE, SQLite or the cache.

pub mod auth;
pub mod delta;
pub mod download;
pub mod drive_api;
pub mod endpoints;
pub mod error;
pub mod graph;
pub mod http;
pub mod mock_drive;
pub mod models;
pub mod paths;
pub mod quickxor;
pub mod upload;
// Adapters to other layers' traits, wired in once those branches are merged (they need `drive_api.rs` from
// sync-engine and `cache/range_source.rs` from content-cache):
pub mod graph_drive_api;
// pub mod graph_range_source;

pub use delta::{DeltaRound, DeltaStart};
pub use download::DownloadUrl;
pub use endpoints::Endpoints;
pub use error::GraphError;
pub use graph::{ChildrenCursor, GraphClient, ThumbnailRef};
pub use http::{redact, RetryPolicy, UrlKind};
pub use quickxor::QuickXorHash;
pub use upload::{FileSource, FragmentOutcome, UploadEvent, UploadJob, UploadOptions, UploadSource, UploadTarget};
