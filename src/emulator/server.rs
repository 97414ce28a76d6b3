//! Assembly of the emulator: the shared state, the two loopback listeners (API host with `/v1.0`, the identity
//! router and `/_emulator` controls; content host with download, thumbnail and upload-session URLs), seeding,
//! loading and saving the state file, and the handle tests and `galleryfs emulator` hold.

use super::drive::{Drive, ItemNo};
use super::faults::{self, Faults};
use super::identity::{Identity, IdentityConfig};
use super::request_log::{self, RequestLog};
use super::state::{identity_restore, EmulatorState, Settings, GALLERY_SEED};
use super::thumb_cache::ThumbCache;
use super::{api_content, api_router, control, media, persist, EmulatorConfig};
use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::Router;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// A running emulator.
pub struct EmulatorHandle {
    pub state: Arc<EmulatorState>,
    api_addr: SocketAddr,
    content_addr: SocketAddr,
    state_file: Option<std::path::PathBuf>,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _spool: SpoolDir,
}

impl EmulatorHandle {
    /// `http://127.0.0.1:P/v1.0`
    pub fn graph_url(&self) -> String {
        format!("http://{}/v1.0", self.api_addr)
    }
    /// `http://127.0.0.1:P`, the identity platform base.
    pub fn login_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }
    /// `http://127.0.0.1:Q`, the content host.
    pub fn content_url(&self) -> String {
        format!("http://{}", self.content_addr)
    }
    /// `http://127.0.0.1:P/_emulator`
    pub fn control_url(&self) -> String {
        format!("http://{}/_emulator", self.api_addr)
    }
    pub fn drive_id(&self) -> String {
        self.state.drive.lock().drive_id.clone()
    }
    /// A bearer token the emulator accepts.
    pub fn test_token(&self) -> String {
        self.state.identity.issue_test_token()
    }
    /// Waits until every file has its quickXorHash (large content is hashed in the background after a seed);
    /// false on timeout.
    pub async fn wait_for_hashes(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.state.drive.lock().pending_hashes() == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The ready line `galleryfs emulator` prints.
    pub fn ready_json(&self) -> serde_json::Value {
        serde_json::json!({
            "graph": self.graph_url(),
            "login": self.login_url(),
            "content": self.content_url(),
            "control": self.control_url(),
            "drive_id": self.drive_id(),
        })
    }

    /// Stops both listeners (in-flight requests finish) and saves the state file if one was configured.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop().await;
        if let Some(path) = self.state_file.take() {
            persist::save(&self.state, &path)?;
        }
        Ok(())
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
    }
}

/// The emulator's private temporary directory, removed with the handle.
struct SpoolDir(std::path::PathBuf);

impl SpoolDir {
    fn create() -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "galleryfs-emulator-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(SpoolDir(dir))
    }
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for SpoolDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Binds the API and content listeners on loopback, seeds or loads the drive and starts serving.
pub async fn start(config: EmulatorConfig) -> anyhow::Result<EmulatorHandle> {
    let api_listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let api_addr = api_listener.local_addr()?;
    let content_listener = TcpListener::bind(SocketAddr::new(api_addr.ip(), 0))
        .await
        .context("binding content host")?;
    let content_addr = content_listener.local_addr()?;
    let spool = SpoolDir::create()?;

    let identity = Identity::new(IdentityConfig {
        auto_approve: config.auto_approve,
        ..Default::default()
    });
    let now = chrono::Utc::now();
    let mut pending_hashes = Vec::new();
    let drive = match config.state_file.as_deref().filter(|p| p.exists()) {
        Some(path) => {
            let (drive, saved_identity) =
                persist::load(path, spool.path()).with_context(|| format!("loading {}", path.display()))?;
            if let Some(snapshot) = saved_identity {
                identity_restore(&identity, snapshot);
            }
            drive
        }
        None => {
            let mut d = Drive::new(Drive::random_id(), now);
            if let Some(name) = &config.camera_roll_name {
                d.camera_roll_name = name.clone();
            }
            d.special("photos", now).map_err(|e| anyhow::anyhow!("{e}"))?;
            if config.seed_gallery > 0 {
                let files = media::samsung_gallery(config.seed_gallery, GALLERY_SEED);
                pending_hashes = d
                    .seed_gallery(files, now)
                    .map_err(|e| anyhow::anyhow!("seeding: {e}"))?;
            }
            d
        }
    };
    let (hash_tx, hash_rx) = std::sync::mpsc::channel();
    let state = Arc::new(EmulatorState {
        drive: Mutex::new(drive),
        identity,
        faults: Faults::new(),
        log: RequestLog::new(),
        settings: Mutex::new(Settings::default()),
        downloads: Mutex::new(HashMap::new()),
        uploads: Mutex::new(HashMap::new()),
        delta_cursors: Mutex::new(HashMap::new()),
        monitors: Mutex::new(HashMap::new()),
        thumbs: ThumbCache::default(),
        socketio: Default::default(),
        graph_url: format!("http://{api_addr}/v1.0"),
        login_url: format!("http://{api_addr}"),
        content_url: format!("http://{content_addr}"),
        spool_dir: spool.path().to_path_buf(),
        secret: format!("{:032x}", rand::random::<u128>()),
        hash_jobs: hash_tx,
    });
    spawn_hasher(&state, hash_rx);
    for no in pending_hashes {
        state.hash_later(no);
    }
    if config.state_file.as_deref().is_none_or(|p| !p.exists()) {
        // Recent captures, newest last, as Camera Backup uploaded them over the last days.
        for i in 0..config.seed_camera_roll {
            let back = chrono::Duration::hours(6 * (config.seed_camera_roll - i) as i64);
            let taken = chrono::Timelike::with_nanosecond(&(now - back), 0).unwrap_or(now);
            state
                .camera_backup(super::camera_backup::Platform::Android, taken, "jpg", None)
                .map_err(|e| anyhow::anyhow!("seeding the Camera Roll: {e}"))?;
        }
    }

    let graph = Router::new()
        .merge(api_router::router(state.clone()))
        .merge(state.identity.router())
        .layer(DefaultBodyLimit::disable());
    let graph = request_log::layer(
        faults::layer(graph, state.faults.clone(), "api"),
        state.log.clone(),
        "api",
    );
    let controls = Router::new()
        .nest("/_emulator/identity", state.identity.control_router())
        .nest("/_emulator/faults", faults::control_router(state.faults.clone()))
        .nest("/_emulator/log", request_log::control_router(state.log.clone()))
        .merge(control::router(state.clone()))
        .merge(super::socketio::router(state.clone()));
    let api_app = graph
        .merge(controls)
        .fallback(|| async { super::errors::GraphError::invalid("Resource not found").into_response() });

    let content = api_content::content_router(state.clone()).layer(DefaultBodyLimit::disable());
    let content_app = request_log::layer(
        faults::layer(content, state.faults.clone(), "content"),
        state.log.clone(),
        "content",
    );

    let (tx, rx) = tokio::sync::watch::channel(false);
    let tasks = vec![
        serve(api_listener, api_app, rx.clone()),
        serve(content_listener, content_app, rx.clone()),
        super::socketio::spawn_change_watcher(&state, rx),
    ];
    tracing::info!(graph = %state.graph_url, content = %state.content_url, "emulator listening");
    Ok(EmulatorHandle {
        state,
        api_addr,
        content_addr,
        state_file: config.state_file,
        shutdown: Some(tx),
        tasks,
        _spool: spool,
    })
}

fn serve(
    listener: TcpListener,
    app: Router,
    mut rx: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let stop = async move {
            let _ = rx.wait_for(|v| *v).await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
            tracing::error!(error = %e, "emulator listener failed");
        }
    })
}

/// The background hasher: computes hashes outside the drive lock, stores them if the content is unchanged.
fn spawn_hasher(state: &Arc<EmulatorState>, jobs: std::sync::mpsc::Receiver<ItemNo>) {
    let weak = Arc::downgrade(state);
    std::thread::spawn(move || {
        while let Ok(no) = jobs.recv() {
            let Some(state) = weak.upgrade() else { return };
            let job = {
                let d = state.drive.lock();
                d.item(no).and_then(|i| Some((i.ctag_ver, i.file()?.blob.clone())))
            };
            drop(state);
            let Some((ver, blob)) = job else { continue };
            if let Ok(hash) = blob.compute_hash() {
                match weak.upgrade() {
                    Some(state) => state.drive.lock().set_hash(no, ver, hash),
                    None => return,
                }
            }
        }
    });
}
