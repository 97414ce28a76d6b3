//! The Graph emulator: a local HTTP server that behaves as Microsoft Graph (OneDrive v1.0) and the Microsoft
//! identity platform are documented to behave, for tests and for `galleryfs demo`. Built from the
//! documentation (docs/emulator-coverage.md names the page behind each behaviour), never from what the galleryfs
//! client sends.
//!
//! Listeners (all on loopback): the API host (`/v1.0/...`, `/{tenant}/oauth2/v2.0/...`, test controls under
//! `/_emulator/...`) and a separate content host serving the pre-authenticated download, thumbnail and upload
//! URLs, so a client that leaks its bearer token to those hosts is caught.
//!
//! Parts: [`identity`] (sign-in endpoints and tokens), [`media`] (seed gallery and deterministic content,
//! thumbnails), [`faults`] (fault injection), [`request_log`] (what clients sent); the drive: [`drive`] and
//! [`drive_ops`] (the model and its changes), [`names`] (naming rules), [`blob`] (stored bytes), [`quickxor`] (its
//! own content hash), [`camera_backup`] (uploads as OneDrive Camera Backup makes them), [`facets`]
//! (image/photo facets of uploads), [`render`] (JSON), [`errors`], the handlers `api_*` ([`api_router`] parses
//! addresses), [`control`] (test controls), [`socketio`] (the socket.io notification channel), [`persist`] (state file) and [`server`] (assembly, [`start`] and
//! [`EmulatorHandle`]).

pub mod faults;
pub mod identity;
pub mod media;
pub mod request_log;

pub mod addressing;
pub mod api_content;
pub mod api_delta;
pub mod api_items;
pub mod api_router;
pub mod api_thumbnails;
pub mod api_upload;
pub mod blob;
pub mod camera_backup;
pub mod control;
pub mod delta_cursor;
pub mod drive;
pub mod drive_ops;
pub mod errors;
pub mod facets;
pub mod names;
pub mod notification_hub;
pub mod persist;
pub mod quickxor;
pub mod render;
pub mod server;
pub mod socketio;
pub mod state;
pub mod thumb_cache;
pub mod upload_session;

pub use control::{RecycleEntry, StateEntry};
pub use server::{start, EmulatorHandle};
pub use state::EmulatorState;

use std::net::SocketAddr;
use std::path::PathBuf;

/// How to start an emulator.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// API listener; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Seed `Pictures/Samsung Gallery` with this many photos and videos.
    pub seed_gallery: usize,
    /// Persist state to this file (loaded at start when it exists).
    pub state_file: Option<PathBuf>,
    /// Approve device codes as soon as they are issued (`galleryfs demo`).
    pub auto_approve: bool,
    /// The display name of the Camera Roll special folder (localized: "Rullino"); `None`: "Camera Roll".
    pub camera_roll_name: Option<String>,
    /// Camera Backup uploads of the last days to seed the Camera Roll with (0: the drive has no Camera Roll).
    pub seed_camera_roll: usize,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:0".parse().unwrap(),
            seed_gallery: 0,
            state_file: None,
            auto_approve: false,
            camera_roll_name: None,
            seed_camera_roll: 0,
        }
    }
}
