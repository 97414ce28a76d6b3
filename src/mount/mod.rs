//! A mount, assembled: account settings and sign-in, the Graph client, the metadata store, the sync engine, the
//! content cache, thumbnails, the gallery filesystem and its FUSE session; then serving until unmounted
//! (`umount`, `fusermount3 -u`, `galleryfs unmount`) or signalled (SIGTERM, SIGINT), and a clean stop.
//! Pending local changes stay journalled in the store across stops.
//!
//! The foreground process does all of this; `galleryfs mount` without `-f` runs it in the background and waits
//! on the readiness pipe ([`crate::daemon`]).

pub mod fs_backends;

use crate::cache::disk_cache::DiskCache;
use crate::cache::reader::OriginalFetcher;
use crate::config::{AccountPaths, AccountSettings};
use crate::daemon::ReadyReporter;
use crate::fs::gallery::{GalleryConfig, GalleryFs, QuotaFigures};
use crate::mount_options::MountOptions;
use crate::remote::auth::session::RefreshingTokenSource;
use crate::remote::auth::TokenStore;
use crate::remote::drive_api::DriveApi;
use crate::remote::graph_drive_api::GraphDrive;
use crate::remote::notifications::{ChannelSettings, NotificationChannel};
use crate::remote::{GraphClient, RetryPolicy};
use crate::store::Store;
use crate::sync::engine::{InitialSync, SyncEngine, SyncSettings};
use crate::sync::foreground::Foreground;
use crate::sync::notification_listener::NotificationListener;
use crate::sync::status::SyncStatus;
use crate::sync::thumbnail_fetcher::{ListedThumbnailSets, ThumbnailFetcher, ThumbnailSettings};
use crate::thumbnails::PersonalCache;
use fs_backends::{CachedOriginals, PinDownloader, ThumbnailFiles};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What a running mount records in `<cache>/<account>/mount.json` (for `galleryfs status`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MountRecord {
    pub pid: u32,
    pub mountpoint: String,
    pub folder: Option<String>,
    pub cache_budget: u64,
}

impl MountRecord {
    pub fn path(paths: &AccountPaths) -> PathBuf {
        paths.cache_dir.join("mount.json")
    }

    /// The record of a mount whose process is still alive.
    pub fn load_live(paths: &AccountPaths) -> Option<MountRecord> {
        let rec: MountRecord = serde_json::from_slice(&std::fs::read(Self::path(paths)).ok()?).ok()?;
        rec.process_alive().then_some(rec)
    }

    /// Whether the mount's process still runs (a zombie waiting to be reaped has ended).
    pub fn process_alive(&self) -> bool {
        let exists = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), None).is_ok();
        // `/proc/<pid>/stat`: "pid (comm) S ...", the state after the last ')'.
        let zombie = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false);
        exists && !zombie
    }
}

/// What to mount.
pub struct MountRequest {
    pub account: String,
    /// Canonical path of the mount point.
    pub mountpoint: PathBuf,
    pub options: MountOptions,
}

/// Runs a mount in this process until it is unmounted or signalled. Reports readiness (or the one-line reason it
/// could not start) through `reporter`.
pub fn serve(req: MountRequest, reporter: &mut ReadyReporter) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .thread_name("galleryfs")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    // Signals are caught from the start: a SIGTERM right after readiness must unmount cleanly, not kill us.
    let signals = runtime
        .block_on(async { Signals::install() })
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    let account = Account::open(&req)?;
    let engine = start_engine(&runtime, &req, &account)?;
    let parts = build_gallery(&runtime, &req, &account)?;
    let fs = parts.fs.clone();

    let fuse_config = crate::fuse::fuser_config(&req.options, &format!("galleryfs:{}", req.account));
    let mounted = crate::fuse::mount(fs.clone(), runtime.handle().clone(), &req.mountpoint, &fuse_config)
        .map_err(|e| format!("cannot mount at {}: {e}", req.mountpoint.display()))?;
    fs.set_invalidator(mounted.invalidator());
    let background = start_background(&runtime, &req, &account, &engine, &parts)?;

    answer_check(&req.mountpoint)?;
    let record = MountRecord {
        pid: std::process::id(),
        mountpoint: req.mountpoint.display().to_string(),
        folder: account.folder.clone(),
        cache_budget: req.options.cache_size,
    };
    let _ = crate::private_file::write_private_atomic(
        &MountRecord::path(&account.paths),
        &serde_json::to_vec(&record).expect("record serializes"),
    );
    tracing::info!(mountpoint = %req.mountpoint.display(), account = %req.account, "mounted");
    reporter.ready();

    let ended = wait_for_end(&runtime, mounted, &req.mountpoint, signals);
    stop(runtime, &req, &account, &engine, background);
    ended
}

/// An account's files, its Graph client and its metadata store, opened for a mount.
struct Account {
    paths: AccountPaths,
    /// The gallery folder (`folder=` option, else the one `login` recorded).
    folder: Option<String>,
    client: GraphClient,
    drive: Arc<dyn DriveApi>,
    store: Arc<Store>,
    status: Arc<SyncStatus>,
}

impl Account {
    /// Loads the account's settings and tokens (an account signed out cannot mount) and opens its store.
    fn open(req: &MountRequest) -> Result<Account, String> {
        let paths = AccountPaths::new(&req.account);
        let settings = AccountSettings::load(&paths.settings_file)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "account {0} is not signed in: run galleryfs login --account {0}",
                    req.account
                )
            })?;
        let endpoints = settings.endpoints.clone().validated().map_err(|e| e.to_string())?;
        let folder = req.options.folder.clone().or(settings.folder.clone());
        // Signed out (`galleryfs logout`) is not the same as a revoked sign-in: without a token file there is no
        // account to mount. A revoked one still mounts and serves from the store, and says "sign in again".
        let not_signed_in = || {
            format!(
                "account {0} is not signed in: run galleryfs login --account {0}",
                req.account
            )
        };
        match TokenStore::new(paths.token_file.clone()).load() {
            Ok(Some(_)) => {}
            Ok(None) => return Err(not_signed_in()),
            Err(e) => return Err(e.to_string()),
        }
        let tokens = RefreshingTokenSource::for_account(&paths.name, &paths.token_file, &endpoints)
            .map_err(|e| e.to_string())?;
        let client =
            GraphClient::new(endpoints, Arc::new(tokens), RetryPolicy::default()).map_err(|e| e.to_string())?;
        let drive: Arc<dyn DriveApi> = Arc::new(GraphDrive::new(client.clone()));
        std::fs::create_dir_all(&paths.cache_dir).map_err(|e| format!("{}: {e}", paths.cache_dir.display()))?;
        let store = Arc::new(Store::open(paths.cache_dir.join("meta.db")).map_err(|e| e.to_string())?);
        let status = Arc::new(SyncStatus::persisted_to(paths.cache_dir.join("status.json")));
        Ok(Account {
            paths,
            folder,
            client,
            drive,
            store,
            status,
        })
    }
}

/// The sync engine of the mount, after its initial sync (from the store, or a first listing).
fn start_engine(
    runtime: &tokio::runtime::Runtime,
    req: &MountRequest,
    account: &Account,
) -> Result<Arc<SyncEngine>, String> {
    let mut sync_settings = SyncSettings::new(&req.account);
    sync_settings.folder = account.folder.clone();
    sync_settings.poll_interval = req.options.poll_interval;
    sync_settings.camera_roll = req.options.camera_roll;
    let engine = Arc::new(SyncEngine::with_status(
        account.store.clone(),
        account.drive.clone(),
        sync_settings,
        account.status.clone(),
    ));
    if req.options.thumbnails {
        // The first listing takes the thumbnail URLs with its pages; the fetcher takes them from here.
        engine.set_listed_thumbnails(Arc::new(ListedThumbnailSets::default()));
    }
    let initial = runtime.block_on(engine.initial_sync()).map_err(|e| e.to_string())?;
    match initial {
        InitialSync::FromStore => tracing::info!(account = %req.account, "listing from the metadata store"),
        InitialSync::Enumerated { items } => tracing::info!(account = %req.account, items, "gallery enumerated"),
    }
    Ok(engine)
}

/// The gallery filesystem and the caches it reads through.
struct GalleryParts {
    fs: Arc<GalleryFs>,
    content: Arc<DiskCache>,
    thumbnail_dir: PathBuf,
    foreground: Arc<Foreground>,
}

/// The content cache, the thumbnail files and the gallery filesystem over them (not mounted yet).
fn build_gallery(
    runtime: &tokio::runtime::Runtime,
    req: &MountRequest,
    account: &Account,
) -> Result<GalleryParts, String> {
    let (paths, store) = (&account.paths, &account.store);
    let content =
        Arc::new(DiskCache::open(&paths.cache_dir, store.clone(), req.options.cache_size).map_err(|e| e.to_string())?);
    if let Err(e) = content.sweep_orphans() {
        tracing::warn!(error = %e, "could not clean the content cache");
    }
    let cache = Arc::new(OriginalFetcher::new(content.clone(), account.drive.clone()));
    let thumbnail_dir = paths.cache_dir.join("thumbnails");
    let foreground = Arc::new(Foreground::default());
    let config = GalleryConfig {
        uid: req.options.uid.unwrap_or_else(|| nix::unistd::getuid().as_raw()),
        gid: req.options.gid.unwrap_or_else(|| nix::unistd::getgid().as_raw()),
        file_perm: req.options.file_perm(),
        dir_perm: req.options.dir_perm(),
        read_only: req.options.read_only,
        thumbnails: req.options.thumbnails,
        timeline: req.options.timeline,
        staging_dir: Some(paths.cache_dir.join("staging")),
        write_back: req.options.write_back,
        ..GalleryConfig::default()
    };
    let fs = Arc::new(GalleryFs::new(
        store.clone(),
        Arc::new(CachedOriginals {
            cache: cache.clone(),
            content: content.clone(),
            prefetch_slots: Arc::new(tokio::sync::Semaphore::new(fs_backends::PREFETCH_SLOTS)),
            foreground: foreground.clone(),
        }),
        Arc::new(ThumbnailFiles {
            dir: thumbnail_dir.clone(),
        }),
        config,
    ));
    fs.set_pin_requests(Arc::new(PinDownloader {
        cache: cache.clone(),
        runtime: runtime.handle().clone(),
    }));
    set_quota(&fs, &account.status);
    Ok(GalleryParts {
        fs,
        content,
        thumbnail_dir,
        foreground,
    })
}

/// What runs beside the mount until it ends.
struct Background {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    listener: NotificationListener,
    fetcher: Option<Arc<ThumbnailFetcher>>,
}

/// Wires the engine's rounds and quota reads to the mounted filesystem, then starts the background work: the
/// thumbnail fetcher, the engine's rounds, the outbox replay (unless read-only), the notification listener and
/// the housekeeping tick (quota, cache budget).
fn start_background(
    runtime: &tokio::runtime::Runtime,
    req: &MountRequest,
    account: &Account,
    engine: &Arc<SyncEngine>,
    parts: &GalleryParts,
) -> Result<Background, String> {
    let (fs, content, status, store, drive) = (
        &parts.fs,
        &parts.content,
        &account.status,
        &account.store,
        &account.drive,
    );
    {
        let (fs, content) = (fs.clone(), content.clone());
        engine.on_changes(Arc::new(move |changes| {
            for ino in &changes.content_changed {
                let _ = content.forget_stale(*ino);
            }
            fs.remote_changes_applied(changes);
        }));
    }
    {
        // A fresh quota reaches `statfs` and the ENOSPC check at once (not at the next housekeeping tick).
        let (fs, status) = (fs.clone(), status.clone());
        engine.on_quota(Arc::new(move |_| set_quota(&fs, &status)));
    }
    // Background work, stopped before the runtime goes (see `stop`).
    let mut tasks: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let fetcher = req.options.thumbnails.then(|| {
        let mut ts = ThumbnailSettings::new(&parts.thumbnail_dir);
        ts.mountpoint = Some(req.mountpoint.clone());
        ts.personal_cache = PersonalCache::from_env().ok();
        ts.timeline = req.options.timeline;
        let mut f = ThumbnailFetcher::new(store.clone(), drive.clone(), ts, status.clone())
            .with_foreground(parts.foreground.clone());
        if let Some(listed) = engine.listed_thumbnails() {
            f = f.with_listed(listed);
        }
        let f = Arc::new(f);
        engine.set_thumbnail_waker(f.waker());
        engine.on_changes(f.changes_hook());
        tasks.push(runtime.spawn(f.clone().run()));
        f
    });
    tasks.push(runtime.spawn(engine.clone().run()));
    if !req.options.read_only {
        // Local edits: journalled changes (also those of an earlier run) go to OneDrive in order.
        fs.journal_leftovers().map_err(|e| e.to_string())?;
        let (_, replayer) = crate::sync::outbox_replay::spawn_replayer(
            runtime.handle(),
            store.clone(),
            drive.clone(),
            fs.clone(),
            fs.outbox_wake(),
            engine.sent_changes(),
            crate::sync::outbox_replay::ReplayConfig {
                big_delete_limit: req.options.delete_guard,
                ..Default::default()
            },
        );
        tasks.push(replayer);
    }
    // Socket.IO change notifications wake the engine; without the channel, polling alone goes on.
    let listener = {
        let _runtime = runtime.enter();
        let channel = NotificationChannel::new(Arc::new(account.client.clone()), ChannelSettings::default());
        NotificationListener::start(channel, engine.clone())
    };
    {
        let (fs, status, content) = (fs.clone(), status.clone(), content.clone());
        tasks.push(runtime.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                set_quota(&fs, &status);
                let c = content.clone();
                let _ = tokio::task::spawn_blocking(move || c.enforce_budget()).await;
            }
        }));
    }
    Ok(Background {
        tasks,
        listener,
        fetcher,
    })
}

/// A clean end: background work stops where it is (what it was doing is journalled or redone at the next mount)
/// and is waited for while the runtime still drives its connections, so nothing sees a connection torn down under
/// it. The HTTP pipeline is then closed: whatever still runs (a read-ahead fetch) ends without a retry or a
/// warning when the runtime goes.
fn stop(
    runtime: tokio::runtime::Runtime,
    req: &MountRequest,
    account: &Account,
    engine: &SyncEngine,
    background: Background,
) {
    let Background {
        tasks,
        listener,
        fetcher,
    } = background;
    engine.stop();
    listener.stop();
    if let Some(f) = fetcher {
        f.stop();
    }
    for task in &tasks {
        task.abort();
    }
    runtime.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(tasks)).await;
    });
    account.client.close();
    // Async tasks end at once; a blocking store or cache operation in flight gets a moment (each is crash-safe).
    runtime.shutdown_timeout(Duration::from_secs(1));
    match account.store.outbox_counts().map(|c| c.pending).unwrap_or(0) {
        0 => tracing::info!(mountpoint = %req.mountpoint.display(), "unmounted"),
        pending => tracing::info!(
            mountpoint = %req.mountpoint.display(),
            pending,
            "unmounted; {pending} pending changes stay journalled and are sent at the next mount"
        ),
    }
    // Last: while the record exists, `galleryfs logout --purge-cache` waits for this process to end.
    let _ = std::fs::remove_file(MountRecord::path(&account.paths));
}

fn set_quota(fs: &GalleryFs, status: &SyncStatus) {
    if let Some(q) = status.snapshot().quota {
        if let Some(state) = q.state.as_deref() {
            // An upload refused with 507 (journalled by the outbox until an upload goes through) says more than a
            // "normal" state: the file that did not fit may be larger than what is left.
            let refused = fs
                .store()
                .meta(crate::sync::outbox_replay::meta_keys::QUOTA_EXCEEDED)
                .ok()
                .flatten()
                .is_some();
            fs.set_quota_exceeded(state == "exceeded" || refused);
        }
        if let (Some(total), Some(used)) = (q.total, q.used) {
            let total = total.max(0) as u64;
            fs.set_quota(Some(QuotaFigures {
                total,
                remaining: total.saturating_sub(used.max(0) as u64),
            }));
        }
    }
}

/// The mount must answer before we say it is ready: stat its root from another thread, with a deadline.
fn answer_check(mountpoint: &Path) -> Result<(), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mp = mountpoint.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::metadata(&mp).map(|m| m.is_dir()));
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(format!("{} is not a directory after mounting", mountpoint.display())),
        Ok(Err(e)) => Err(format!("the mount at {} does not answer: {e}", mountpoint.display())),
        Err(_) => Err(format!(
            "the mount at {} did not answer within 20 s",
            mountpoint.display()
        )),
    }
}

/// SIGTERM and SIGINT, caught.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

/// Serves until the filesystem is unmounted from outside, or SIGTERM/SIGINT arrive (then unmounts it).
fn wait_for_end(
    runtime: &tokio::runtime::Runtime,
    mounted: crate::fuse::MountedFs,
    mountpoint: &Path,
    mut signals: Signals,
) -> Result<(), String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("galleryfs-session".into())
        .spawn(move || {
            let _ = tx.send(mounted.join());
        })
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let mut rx = rx;
        tokio::select! {
            r = &mut rx => return r.map_err(|e| e.to_string())?.map_err(|e| e.to_string()),
            _ = signals.term.recv() => tracing::info!("SIGTERM: unmounting"),
            _ = signals.int.recv() => tracing::info!("SIGINT: unmounting"),
        }
        // A clean unmount ends the session at once. A busy mount point (a shell's working directory, an open
        // file) is detached instead: its session ends only when the last user lets go, which is not waited for.
        let wait = match crate::daemon::unmount(mountpoint) {
            Ok(()) => Duration::from_secs(1),
            Err(e) => {
                tracing::warn!(error = %e, "unmount refused; detaching the mount lazily");
                let _ = nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH);
                Duration::from_millis(100)
            }
        };
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(r)) => r.map_err(|e| e.to_string()),
            _ => Ok(()),
        }
    })
}
