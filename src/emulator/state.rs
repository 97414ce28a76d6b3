//! [`EmulatorState`]: what every handler shares (the drive, the identity platform, faults, the request log,
//! the behaviour switches, and the tables of issued download URLs, upload sessions, delta cursors, rendered
//! thumbnails and notification subscriptions), and the download URLs it issues.

use super::blob::Blob;
use super::delta_cursor::DeltaCursor;
use super::drive::{Drive, Item, ItemNo};
use super::faults::Faults;
use super::identity::Identity;
use super::notification_hub::SocketIoHub;
use super::request_log::RequestLog;
use super::thumb_cache::ThumbCache;
use super::upload_session::UploadSession;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Seed of the generated gallery (the same gallery every run).
pub const GALLERY_SEED: u64 = 0x5eed_6a11;

/// Behaviour switches tests flip through controls.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Lifetime of pre-authenticated download URLs.
    pub download_url_lifetime: Duration,
    /// Largest simple upload (`PUT …/content`).
    pub simple_upload_max: u64,
    /// Lifetime of upload sessions.
    pub upload_session_lifetime: Duration,
    /// Server post-processing of uploads (graph-api.md §2): for this long after an upload the item has no
    /// thumbnails, then its eTag changes once more. `None`: uploads are final at once.
    pub post_processing: Option<Duration>,
    /// The next incremental delta round leaves out its first deleted item (a deletion "missed" by delta, which
    /// only the periodic full re-list repairs); cleared once used.
    pub drop_next_delta_deletion: bool,
    /// Scopes whose delta tokens were invalidated: scope → the first journal number of tokens still valid.
    pub delta_valid_from: HashMap<ItemNo, u64>,
    /// How long after an upload its `photo` facet (EXIF taken time, camera) appears, with one more change of the
    /// item; zero: at once.
    pub photo_facet_delay: Duration,
}

/// Simple-upload limit of the current Graph documentation (250 MB).
pub const SIMPLE_UPLOAD_MAX: u64 = 250 * 1024 * 1024;
/// Simple-upload limit of the older OneDrive documentation, the strict mode (4 MiB).
pub const STRICT_SIMPLE_UPLOAD_MAX: u64 = 4 * 1024 * 1024;

impl Default for Settings {
    fn default() -> Self {
        Self {
            download_url_lifetime: Duration::from_secs(300),
            simple_upload_max: SIMPLE_UPLOAD_MAX,
            upload_session_lifetime: Duration::from_secs(24 * 3600),
            post_processing: None,
            drop_next_delta_deletion: false,
            delta_valid_from: HashMap::new(),
            photo_facet_delay: Duration::from_secs(2),
        }
    }
}

/// Everything the handlers share.
pub struct EmulatorState {
    pub drive: Mutex<Drive>,
    pub identity: Arc<Identity>,
    pub faults: Arc<Faults>,
    pub log: Arc<RequestLog>,
    pub settings: Mutex<Settings>,
    pub(crate) downloads: Mutex<HashMap<String, DownloadGrant>>,
    pub(crate) uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<UploadSession>>>>,
    pub(crate) delta_cursors: Mutex<HashMap<String, DeltaCursor>>,
    /// Copy monitors: token → id of the copy.
    pub(crate) monitors: Mutex<HashMap<String, String>>,
    pub(crate) thumbs: ThumbCache,
    /// The socket.io notification channel.
    pub socketio: SocketIoHub,
    /// `http://127.0.0.1:P/v1.0`.
    pub graph_url: String,
    /// `http://127.0.0.1:P` of the API host.
    pub login_url: String,
    /// `http://127.0.0.1:Q` of the content host.
    pub content_url: String,
    /// Where uploads larger than a few MiB are spooled.
    pub spool_dir: std::path::PathBuf,
    /// Signs thumbnail URLs (they are pre-authenticated but stable).
    pub(crate) secret: String,
    pub(crate) hash_jobs: std::sync::mpsc::Sender<ItemNo>,
}

impl std::fmt::Debug for EmulatorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorState")
            .field("graph_url", &self.graph_url)
            .finish_non_exhaustive()
    }
}

/// One issued download URL.
#[derive(Clone, Debug)]
pub struct DownloadGrant {
    pub no: ItemNo,
    pub blob: Blob,
    pub mime: String,
    pub expires: Instant,
}

/// A fresh pre-authenticated URL for the current content of a file (`None` for folders).
pub fn issue_download_url(state: &EmulatorState, item: &Item) -> Option<String> {
    let f = item.file()?;
    let lifetime = state.settings.lock().download_url_lifetime;
    let token: String = format!("{:032x}{:032x}", rand::random::<u128>(), rand::random::<u128>());
    let now = Instant::now();
    let mut grants = state.downloads.lock();
    // Expired grants are dropped every 4096 grants (not at every grant once there are 4096: that made each
    // listing of a large folder, which grants one URL per file, slower than the one before).
    if grants.len() >= 4096 && grants.len() % 4096 == 0 {
        grants.retain(|_, g| g.expires + Duration::from_secs(600) > now);
    }
    grants.insert(
        token.clone(),
        DownloadGrant {
            no: item.no,
            blob: f.blob.clone(),
            mime: f.mime.clone(),
            expires: now + lifetime,
        },
    );
    Some(format!("{}/download/{token}", state.content_url))
}

/// The identity platform's part of the state file (tokens, clients), so signed-in clients stay signed in across
/// restarts. Holds secrets: it only goes into the emulator's own state file.
pub(crate) fn identity_snapshot(identity: &Identity) -> Option<serde_json::Value> {
    serde_json::to_value(identity.snapshot()).ok()
}

/// Takes back [`identity_snapshot`]'s value at start.
pub(crate) fn identity_restore(identity: &Identity, snapshot: serde_json::Value) {
    match serde_json::from_value(snapshot) {
        Ok(s) => identity.restore(s),
        Err(e) => tracing::warn!(error = %e, "the state file's identity part is unreadable; tokens start afresh"),
    }
}

/// Generated content up to this size is hashed at once; larger content in the background (its `hashes` appear
/// late, as the documentation allows).
pub const HASH_NOW_MAX: u64 = 4 * 1024 * 1024;

impl EmulatorState {
    /// Computes the quickXorHash of `item`'s current content in the background.
    pub(crate) fn hash_later(&self, no: ItemNo) {
        let _ = self.hash_jobs.send(no);
    }
}
