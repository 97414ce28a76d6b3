//! The OneDrive side: the Microsoft Graph client (HTTP + JSON, one retry policy for every request) and sign-in
//! with the Microsoft identity platform. Nothing here knows of FUSE, SQLite or the cache.

pub mod auth;
pub mod drive_api;
pub mod endpoints;
pub mod mock_drive;
pub mod models;
pub mod quickxor;

pub use endpoints::Endpoints;
pub use quickxor::QuickXorHash;
