//! [`SyncEngine`]: keeps the store in step with the gallery folder on OneDrive.
//!
//! - [`SyncEngine::initial_sync`] at mount: with a delta link in the store the mount lists from the store at once
//!   and catches up in the background ([`SyncEngine::run`] re-locates the gallery, then polls). Otherwise it finds
//!   the gallery ([`locate_gallery`]), takes a folder-scoped `token=latest` delta link and lists the folders with
//!   `children()`, several at once (`list_tree`: far fewer round trips than 200-item delta pages) — or, when the
//!   service has no such link, enumerates it by delta (folder-scoped first, the drive root filtered by the
//!   applier when that is refused) — and applies the whole listing as one full round together with its delta
//!   link (the quota is read meanwhile). Changes made during the listing come with the first incremental round.
//!   Nothing is served before it returns, so pages are not applied one by one (that doubled the store writes);
//!   progress reports the items received. A resync while mounted applies every page as it arrives so a big
//!   listing shows progressively, then re-applies the whole enumeration as one full round (which places items
//!   whose parent came in a later page and removes rows OneDrive no longer has). Resyncs and the periodic full
//!   re-list stay on delta: they run while the mount serves, where a consistent enumeration matters more than
//!   round trips.
//! - [`SyncEngine::poll_once`]: one delta round from the stored link. `410` → full resync from the service's
//!   `Location`; folders new to the store → listed with `children()`; the gallery deleted → status `missing`,
//!   nothing local thrown away (the round is not applied and the link not advanced).
//! - Periodic full re-list ([`SyncEngine::run`]): delta reports a deletion only once, so a missed one would stay
//!   in the mount for ever. Every `full_relist_polls` poll intervals (default 12, so 6 min at the default 30 s)
//!   or `full_relist_max_interval` (default 6 h), whichever is sooner, the gallery is enumerated again and applied
//!   as a full round (rows OneDrive no longer has go; local-only and dirty rows are protected by the applier).
//! - Failures keep the store serving: offline → `online: false` and retries with backoff; `401` → "sign in
//!   again"; throttled → wait until the service's time.
//! - Locks: `hooks` (read) is held while the `on_changes` hooks run, before any lock of theirs (the filesystem's
//!   short mutexes, the content store's); the engine holds no lock of its own across a store transaction or a
//!   request.
//! - After each applied round the `on_changes` hooks run (the fs layer invalidates the kernel cache there) and
//!   the thumbnail fetcher is woken. The first listing carries the items' thumbnail URLs to the fetcher
//!   ([`SyncEngine::set_listed_thumbnails`]).
//! - Quota: the drive (`GET /me/drive`) is read with the poll, so a full OneDrive is noticed within two poll
//!   intervals: once per poll interval while OneDrive reports `normal` with room left, and at every round (also
//!   rounds woken early) while the state is anything else, less than [`QUOTA_LOW_FRACTION`] of the total is free,
//!   or an upload was refused with 507 since. After each read the `on_quota` hooks run (the mount updates what
//!   `statfs` reports and whether writes get `ENOSPC`).

use chrono::Utc;
use parking_lot::{Mutex, RwLock};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::Notify;

use super::delta_apply::{
    apply_delta_round, apply_fresh_delta_round_with_link, apply_pending_listing, pending_listing, AppliedChanges,
    DeltaApplyError, RoundKind, TreeScope,
};

/// How many times a delta round is fetched again because local changes were sent meanwhile.
const MAX_REFETCHES: u32 = 3;
use super::camera_roll::CameraRollTree;
use super::gallery_locator::{locate_gallery, normalize_folder_path, LocateError};
use super::outbox_replay::SentChanges;
use super::status::{GalleryState, QuotaStatus, SyncStatus};
use super::tree_listing::{
    list_tree_with_thumbnails, ListedThumbnailSets, TreeListingError, DEFAULT_FOLDERS_IN_FLIGHT, LISTED_SIZES,
};
use crate::remote::drive_api::{DeltaRequest, DriveApi, DriveError};
use crate::remote::models::DriveItem;
use crate::store::{meta_keys, Store, StoreError};

/// Below this fraction of the total free, the quota is read at every round.
pub const QUOTA_LOW_FRACTION: f64 = 0.10;

/// How the engine polls.
#[derive(Clone, Debug)]
pub struct SyncSettings {
    /// The account name (for the "sign in again" message).
    pub account: String,
    /// `--folder` / `folder=`.
    pub folder: Option<String>,
    /// `poll_interval=` (default 30 s).
    pub poll_interval: Duration,
    /// First retry delay after a failure; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// A full re-list every this many poll intervals (0: never) …
    pub full_relist_polls: u32,
    /// … or after this long, whichever is sooner.
    pub full_relist_max_interval: Duration,
    /// Follow the drive's Camera Roll as one more tree (`camera_roll=`; the mount's default is on).
    pub camera_roll: bool,
}

impl SyncSettings {
    pub fn new(account: &str) -> SyncSettings {
        SyncSettings {
            account: account.to_string(),
            folder: None,
            poll_interval: Duration::from_secs(30),
            min_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(300),
            full_relist_polls: DEFAULT_FULL_RELIST_POLLS,
            full_relist_max_interval: DEFAULT_FULL_RELIST_MAX_INTERVAL,
            camera_roll: false,
        }
    }

    /// How long after a full listing the next one is due; `None` when disabled.
    pub fn full_relist_interval(&self) -> Option<Duration> {
        (self.full_relist_polls > 0).then(|| {
            self.poll_interval
                .saturating_mul(self.full_relist_polls)
                .min(self.full_relist_max_interval)
        })
    }
}

/// Default of [`SyncSettings::full_relist_polls`] (abraunegg's "true-up" every 12 cycles).
pub const DEFAULT_FULL_RELIST_POLLS: u32 = 12;
/// Default of [`SyncSettings::full_relist_max_interval`].
pub const DEFAULT_FULL_RELIST_MAX_INTERVAL: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug, Error)]
pub enum SyncError {
    #[error(transparent)]
    Drive(#[from] DriveError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Apply(#[from] DeltaApplyError),
    #[error(transparent)]
    Locate(#[from] LocateError),
}

impl SyncError {
    fn drive_error(&self) -> Option<&DriveError> {
        match self {
            SyncError::Drive(e) | SyncError::Locate(LocateError::Drive(e)) => Some(e),
            _ => None,
        }
    }
}

/// How [`SyncEngine::initial_sync`] got the listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitialSync {
    /// From the store of an earlier mount; catching up happens in [`SyncEngine::run`].
    FromStore,
    /// A full enumeration; `items` rows are in the store.
    Enumerated { items: u64 },
}

/// What one [`SyncEngine::poll_once`] did.
#[derive(Clone, Debug, Default)]
pub struct PollOutcome {
    pub changes: AppliedChanges,
    /// The round was a full resync after `410 Gone`.
    pub resynced: bool,
    /// The gallery folder is gone from OneDrive; nothing was applied.
    pub gallery_missing: bool,
    /// Folders listed with `children()` because delta does not repeat a moved-in folder's content.
    pub listed_folders: usize,
}

/// Called after each applied round.
pub type ChangesHook = Arc<dyn Fn(&AppliedChanges) + Send + Sync>;
/// Called after each read of the quota.
pub type QuotaHook = Arc<dyn Fn(&QuotaStatus) + Send + Sync>;
/// Called during a full enumeration with the number of items in the store so far.
pub type ProgressHook = Arc<dyn Fn(u64) + Send + Sync>;

/// The sync engine (see the module note). Share it as `Arc<SyncEngine>`.
pub struct SyncEngine {
    store: Arc<Store>,
    drive: Arc<dyn DriveApi>,
    settings: SyncSettings,
    status: Arc<SyncStatus>,
    gallery_id: RwLock<Option<String>>,
    hooks: RwLock<Vec<ChangesHook>>,
    quota_hooks: RwLock<Vec<QuotaHook>>,
    progress: RwLock<Option<ProgressHook>>,
    thumbnail_waker: RwLock<Option<Arc<Notify>>>,
    /// Where the first listing's thumbnail URLs go (the thumbnail fetcher's); `None`: listed without them.
    listed_thumbnails: RwLock<Option<Arc<ListedThumbnailSets>>>,
    wake: Notify,
    stop: Notify,
    stopped: AtomicBool,
    /// The gallery has not been looked up on OneDrive during this mount yet.
    needs_catch_up: AtomicBool,
    quota_read: Mutex<Option<Instant>>,
    /// When the gallery was last enumerated in full (or the engine made).
    last_full_listing: Mutex<Instant>,
    /// The Camera Roll's tree, synced after the gallery's in every round.
    camera_roll: CameraRollTree,
    /// The changes this mount's outbox replayer sent to OneDrive (a round fetched meanwhile is fetched again).
    sent_changes: Arc<SentChanges>,
}

impl SyncEngine {
    pub fn new(store: Arc<Store>, drive: Arc<dyn DriveApi>, settings: SyncSettings) -> SyncEngine {
        SyncEngine::with_status(store, drive, settings, Arc::new(SyncStatus::new()))
    }

    pub fn with_status(
        store: Arc<Store>,
        drive: Arc<dyn DriveApi>,
        settings: SyncSettings,
        status: Arc<SyncStatus>,
    ) -> SyncEngine {
        let camera_roll = CameraRollTree::new(store.clone(), drive.clone(), status.clone(), settings.camera_roll);
        SyncEngine {
            store,
            drive,
            settings,
            status,
            camera_roll,
            gallery_id: RwLock::new(None),
            hooks: RwLock::new(Vec::new()),
            quota_hooks: RwLock::new(Vec::new()),
            progress: RwLock::new(None),
            thumbnail_waker: RwLock::new(None),
            listed_thumbnails: RwLock::new(None),
            wake: Notify::new(),
            stop: Notify::new(),
            stopped: AtomicBool::new(false),
            needs_catch_up: AtomicBool::new(false),
            quota_read: Mutex::new(None),
            last_full_listing: Mutex::new(Instant::now()),
            sent_changes: Arc::default(),
        }
    }

    /// The count of changes sent to OneDrive by this mount's outbox replayer: give it to the replayer
    /// ([`crate::sync::outbox_replay::OutboxReplayer::with_sent_changes`]).
    pub fn sent_changes(&self) -> Arc<SentChanges> {
        self.sent_changes.clone()
    }

    pub fn status(&self) -> Arc<SyncStatus> {
        self.status.clone()
    }
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
    /// The gallery folder's OneDrive id, once known.
    pub fn gallery_id(&self) -> Option<String> {
        self.gallery_id.read().clone()
    }
    /// Adds a hook run after every applied round.
    pub fn on_changes(&self, hook: ChangesHook) {
        self.hooks.write().push(hook);
    }
    /// Adds a hook run after every read of the quota.
    pub fn on_quota(&self, hook: QuotaHook) {
        self.quota_hooks.write().push(hook);
    }
    /// Sets the progress hook of full enumerations.
    pub fn on_progress(&self, hook: ProgressHook) {
        *self.progress.write() = Some(hook);
    }
    /// The thumbnail fetcher's wake-up (see `ThumbnailFetcher::waker`).
    pub fn set_thumbnail_waker(&self, waker: Arc<Notify>) {
        *self.thumbnail_waker.write() = Some(waker);
    }
    /// The first listing asks for each item's thumbnails with the folders' pages (`$expand=thumbnails`) and puts
    /// them here (see `ThumbnailFetcher::listed_thumbnails`).
    pub fn set_listed_thumbnails(&self, sink: Arc<ListedThumbnailSets>) {
        *self.listed_thumbnails.write() = Some(sink);
    }
    /// Where the listings put thumbnail URLs, when set.
    pub fn listed_thumbnails(&self) -> Option<Arc<ListedThumbnailSets>> {
        self.listed_thumbnails.read().clone()
    }
    /// Polls now instead of at the next interval (push notifications, `fsync`-style nudges).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
    /// Ends [`SyncEngine::run`] at its next wait.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.stop.notify_one();
    }

    /// The listing at mount (see the module note).
    pub async fn initial_sync(&self) -> Result<InitialSync, SyncError> {
        let stored_gallery = self.store.meta(meta_keys::GALLERY_ITEM_ID)?;
        if let (Some(gallery), Some(_)) = (stored_gallery, self.store.delta_link()?) {
            if self.folder_setting_changed()? {
                // Another `folder=` than the store's: look it up now, so the mount shows the new folder at once.
                match locate_gallery(self.drive.as_ref(), self.settings.folder.as_deref()).await {
                    Ok(located) if located.item.id == gallery => self.record_folder_setting()?,
                    Ok(located) => {
                        tracing::info!(location = ?located.location, "the mount is given another folder; listing it");
                        let (_, listed) =
                            tokio::join!(self.refresh_quota(true), self.switch_gallery(&located.item.id, true));
                        listed?;
                        self.note_success();
                        self.camera_roll_round(true).await;
                        let items = self.store.item_count()?;
                        return Ok(InitialSync::Enumerated { items });
                    }
                    Err(LocateError::Drive(e)) => {
                        // Offline: serve the store and look the folder up again when OneDrive answers.
                        self.note_error(&e);
                        tracing::warn!(error = %e, "cannot look the folder up; listing from the store meanwhile");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            self.store.write(|t| t.prune_retired_roots())?;
            *self.gallery_id.write() = Some(gallery);
            self.needs_catch_up.store(true, Ordering::SeqCst);
            tracing::info!("listing from the store; catching up with OneDrive in the background");
            return Ok(InitialSync::FromStore);
        }
        let (gallery, changed) = self.locate_and_record().await?;
        // The quota read overlaps the enumeration. Pages are not applied one by one: nothing is served before
        // this returns, so the one full round at the end is enough (progress counts the items received).
        let (_, listed) = tokio::join!(self.refresh_quota(true), self.list_first(&gallery));
        listed?;
        if changed {
            self.store.write(|t| t.prune_retired_roots())?;
        }
        self.note_success();
        self.camera_roll_round(true).await;
        let items = self.store.item_count()?;
        tracing::info!(items, "gallery listed");
        Ok(InitialSync::Enumerated { items })
    }

    /// Looks the gallery up again (first poll of a mount that listed from the store), then polls.
    pub async fn catch_up(&self) -> Result<PollOutcome, SyncError> {
        let current = self.gallery_id();
        match locate_gallery(self.drive.as_ref(), self.settings.folder.as_deref()).await {
            Ok(located) if Some(&located.item.id) == current.as_ref() => self.record_folder_setting()?,
            Ok(located) => {
                tracing::info!(location = ?located.location, "the gallery folder is another folder now; listing it");
                self.needs_catch_up.store(false, Ordering::SeqCst);
                let changes = self.switch_gallery(&located.item.id, false).await?;
                self.note_success();
                return Ok(PollOutcome {
                    changes,
                    resynced: true,
                    ..PollOutcome::default()
                });
            }
            Err(LocateError::Drive(e)) => {
                self.note_error(&e);
                return Err(e.into());
            }
            // Not found by name: keep following the known folder by id (an ancestor may have been renamed).
            Err(e) => tracing::info!(reason = %e, "gallery not found by name; following it by id"),
        }
        self.needs_catch_up.store(false, Ordering::SeqCst);
        self.poll_once().await
    }

    /// One round of the Camera Roll's tree (in full when `full`); its failures are its own (logged, and the
    /// gallery's round goes on).
    async fn camera_roll_round(&self, full: bool) {
        let Some(gallery) = self.gallery_id() else {
            return;
        };
        match self.camera_roll.sync(&gallery, full).await {
            Ok(changes) => self.after_round(&changes),
            Err(e) => tracing::warn!(error = %e, "the Camera Roll's round failed; serving it from the store"),
        }
    }

    /// One delta round of the gallery, then of the Camera Roll (see the module note).
    pub async fn poll_once(&self) -> Result<PollOutcome, SyncError> {
        let outcome = self.poll_gallery().await;
        self.camera_roll_round(false).await;
        outcome
    }

    async fn poll_gallery(&self) -> Result<PollOutcome, SyncError> {
        let outcome = self.poll_inner().await;
        match &outcome {
            Ok(o) => {
                if !o.gallery_missing {
                    self.note_success();
                }
                if !o.resynced {
                    // A resync's enumeration has run the hooks page by page already.
                    self.after_round(&o.changes);
                }
            }
            Err(e) => {
                if let Some(d) = e.drive_error() {
                    self.note_error(d);
                }
                tracing::warn!(error = %e, "delta poll failed; serving from the store");
            }
        }
        outcome
    }

    async fn poll_inner(&self) -> Result<PollOutcome, SyncError> {
        let gallery = match self.gallery_id() {
            Some(g) => g,
            None => {
                let (g, _) = self.locate_and_record().await?;
                g
            }
        };
        self.refresh_quota(false).await;
        let Some(link) = self.store.delta_link()? else {
            let changes = self.enumerate(&gallery, None, true).await?;
            return Ok(PollOutcome {
                changes,
                resynced: true,
                ..PollOutcome::default()
            });
        };
        let scope = TreeScope::gallery(&gallery);
        let earlier = self.list_pending_folders(&scope).await?;
        let mut refetches = 0;
        let mut changes = loop {
            let sent_before = self.sent_changes.count();
            let round = match self.drive.delta(DeltaRequest::Link(link.clone())).await {
                Ok(round) => round,
                Err(DriveError::ResyncRequired { location }) => {
                    tracing::info!("OneDrive asked for a delta resync; enumerating the gallery again");
                    let changes = self.enumerate(&gallery, location, true).await?;
                    return Ok(PollOutcome {
                        changes,
                        resynced: true,
                        ..PollOutcome::default()
                    });
                }
                Err(DriveError::NotFound(_)) => {
                    // A folder-scoped link of a deleted folder, or a link the service forgot.
                    return match self.drive.item(&gallery).await {
                        Ok(item) if !item.is_deleted() => {
                            let changes = self.enumerate(&gallery, None, true).await?;
                            Ok(PollOutcome {
                                changes,
                                resynced: true,
                                ..PollOutcome::default()
                            })
                        }
                        Ok(_) | Err(DriveError::NotFound(_)) => Ok(self.gallery_missing()),
                        Err(e) => Err(e.into()),
                    };
                }
                Err(e) => return Err(e.into()),
            };
            if gallery_deleted_in(&round.items, &gallery) {
                return Ok(self.gallery_missing());
            }
            // A change of ours recorded while the round was fetched may be older in the round than in the store
            // (a rename reverted, an old version shown): fetch the round again (a few times at most).
            let stale = || refetches < MAX_REFETCHES && self.sent_changes.count() != sent_before;
            match apply_fresh_delta_round_with_link(
                &self.store,
                &gallery,
                &round.items,
                RoundKind::Incremental,
                &round.delta_link,
                stale,
            )? {
                Some(changes) => break changes,
                None => {
                    refetches += 1;
                    tracing::debug!(
                        refetches,
                        "local changes were sent while a delta round was fetched; fetching it again"
                    );
                }
            }
        };
        if changes.gallery_deleted {
            self.status.update(|s| s.gallery = GalleryState::Missing);
        }
        let mut listed_folders = changes.needs_listing.len();
        if listed_folders > 0 {
            if let Some((_, listed)) = self.list_pending_folders(&scope).await? {
                changes.merge(listed);
            }
        }
        if let Some((folders, mut earlier)) = earlier {
            listed_folders += folders;
            earlier.merge(changes);
            changes = earlier;
        }
        Ok(PollOutcome {
            changes,
            listed_folders,
            ..PollOutcome::default()
        })
    }

    /// Enumerates the gallery again and applies it as a full round (see the module note).
    pub async fn full_relist(&self) -> Result<PollOutcome, SyncError> {
        let outcome = async {
            let gallery = match self.gallery_id() {
                Some(g) => g,
                None => self.locate_and_record().await?.0,
            };
            tracing::info!("periodic full re-list of the gallery");
            let changes = match self.enumerate(&gallery, None, false).await {
                Ok(changes) => changes,
                Err(SyncError::Drive(DriveError::NotFound(_))) => {
                    // The folder-scoped listing of a folder that is gone: say so, and try again a period later.
                    *self.last_full_listing.lock() = Instant::now();
                    return match self.drive.item(&gallery).await {
                        Ok(item) if !item.is_deleted() => Err(SyncError::Drive(DriveError::NotFound(
                            "the gallery folder could not be listed".into(),
                        ))),
                        Ok(_) | Err(DriveError::NotFound(_)) => Ok(self.gallery_missing()),
                        Err(e) => Err(e.into()),
                    };
                }
                Err(e) => return Err(e),
            };
            Ok::<_, SyncError>(PollOutcome {
                changes,
                resynced: true,
                ..PollOutcome::default()
            })
        }
        .await;
        match &outcome {
            Ok(o) => {
                if !o.changes.removed.is_empty() {
                    tracing::info!(
                        removed = o.changes.removed.len(),
                        "full re-list removed items delta had missed"
                    );
                }
                if !o.gallery_missing {
                    self.note_success();
                }
            }
            Err(e) => {
                if let Some(d) = e.drive_error() {
                    self.note_error(d);
                }
                tracing::warn!(error = %e, "full re-list failed; serving from the store");
            }
        }
        self.camera_roll_round(true).await;
        outcome
    }

    fn full_relist_due(&self) -> bool {
        self.settings
            .full_relist_interval()
            .is_some_and(|every| self.last_full_listing.lock().elapsed() >= every)
    }

    /// Polls every `poll_interval` (sooner when woken) until stopped; after failures retries with backoff, and
    /// when throttled not before the service's time.
    pub async fn run(self: Arc<Self>) {
        let mut failures: u32 = 0;
        let mut immediate = self.needs_catch_up.load(Ordering::SeqCst);
        while !self.stopped.load(Ordering::SeqCst) {
            if !immediate {
                let delay = self.next_delay(failures);
                let next = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                self.status.update(|s| s.next_sync = Some(next));
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = self.wake.notified() => {}
                    _ = self.stop.notified() => break,
                }
                if self.stopped.load(Ordering::SeqCst) {
                    break;
                }
            }
            immediate = false;
            let result = if self.needs_catch_up.load(Ordering::SeqCst) {
                self.catch_up().await
            } else if self.full_relist_due() {
                self.full_relist().await
            } else {
                self.poll_once().await
            };
            match result {
                Ok(_) => failures = 0,
                Err(_) => failures = failures.saturating_add(1),
            }
        }
        tracing::debug!("sync loop stopped");
    }

    fn next_delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return self.settings.poll_interval;
        }
        let backoff = self
            .settings
            .min_backoff
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
            .min(self.settings.max_backoff);
        let throttle = self
            .status
            .snapshot()
            .throttled_until
            .and_then(|t| (t - Utc::now()).to_std().ok())
            .unwrap_or_default();
        backoff.max(throttle)
    }

    /// Finds the gallery on OneDrive and records it; returns its id and whether it differs from the stored one.
    async fn locate_and_record(&self) -> Result<(String, bool), SyncError> {
        let located = match locate_gallery(self.drive.as_ref(), self.settings.folder.as_deref()).await {
            Ok(l) => l,
            Err(e) => {
                if let LocateError::Drive(d) = &e {
                    self.note_error(d);
                }
                return Err(e.into());
            }
        };
        tracing::info!(location = ?located.location, "gallery folder found");
        let stored = self.store.meta(meta_keys::GALLERY_ITEM_ID)?;
        let changed = stored.as_deref().is_some_and(|s| s != located.item.id);
        let id = self.record_gallery(&located.item.id, stored.as_deref())?;
        Ok((id, changed))
    }

    fn record_gallery(&self, id: &str, previous: Option<&str>) -> Result<String, SyncError> {
        let folder = self.folder_setting();
        self.store.write(|t| {
            if previous.is_some_and(|p| p != id) {
                // Another folder: the old tree is kept for its pending changes, its delta link dropped.
                t.retire_root(id)?;
            }
            t.set_root_item(id)?;
            t.set_meta(meta_keys::GALLERY_FOLDER, &folder)
        })?;
        *self.gallery_id.write() = Some(id.to_string());
        self.status.update(|s| s.gallery = GalleryState::Ok);
        Ok(id.to_string())
    }

    /// The `folder=` setting as recorded in the store (normalized; empty for the default lookup).
    fn folder_setting(&self) -> String {
        self.settings
            .folder
            .as_deref()
            .filter(|f| !f.trim().is_empty())
            .map(normalize_folder_path)
            .unwrap_or_default()
    }

    /// Whether the mount is given another `folder=` than the one the store's gallery was looked up with (a store
    /// that never recorded it was made with the default lookup or the same setting).
    fn folder_setting_changed(&self) -> Result<bool, SyncError> {
        let wanted = self.folder_setting();
        Ok(match self.store.meta(meta_keys::GALLERY_FOLDER)? {
            Some(recorded) => recorded != wanted,
            None => !wanted.is_empty(),
        })
    }

    fn record_folder_setting(&self) -> Result<(), SyncError> {
        Ok(self.store.set_meta(meta_keys::GALLERY_FOLDER, &self.folder_setting())?)
    }

    /// Makes `new_id` the gallery (the old tree kept for its pending changes: store/roots.rs), lists it in
    /// full (rows found again by item id keep their inodes and cached originals), then prunes the old tree.
    async fn switch_gallery(&self, new_id: &str, first: bool) -> Result<AppliedChanges, SyncError> {
        let previous = self.store.meta(meta_keys::GALLERY_ITEM_ID)?;
        let gallery = self.record_gallery(new_id, previous.as_deref())?;
        let changes = if first {
            self.list_first(&gallery).await?
        } else {
            self.enumerate(&gallery, None, false).await?
        };
        let pruned = self.store.write(|t| t.prune_retired_roots())?;
        tracing::info!(pruned, "the old folder's rows that no pending change needs are gone");
        Ok(changes)
    }

    /// A full enumeration from `start` (a resync `Location`) or from scratch; pages are applied as they arrive
    /// when `progressive`, then everything once more as one full round with the delta link.
    async fn enumerate(
        &self,
        gallery: &str,
        start: Option<String>,
        progressive: bool,
    ) -> Result<AppliedChanges, SyncError> {
        let mut refetches = 0;
        'again: loop {
            let sent_before = self.sent_changes.count();
            let mut request = match start.clone() {
                Some(location) => DeltaRequest::Link(location),
                None => DeltaRequest::Full {
                    folder_id: Some(gallery.to_string()),
                },
            };
            let mut all: Vec<DriveItem> = Vec::new();
            let mut first_page = true;
            loop {
                let page = match self.drive.delta_page(&request).await {
                    Ok(page) => page,
                    Err(e) if first_page && e.is_not_supported() && matches!(request, DeltaRequest::Full { .. }) => {
                        tracing::info!("folder-scoped delta refused; enumerating from the drive root");
                        request = DeltaRequest::Full { folder_id: None };
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                first_page = false;
                if progressive && !page.items.is_empty() {
                    let changes = apply_delta_round(&self.store, gallery, &page.items)?;
                    crate::crash_points::crash_point("poller.page_applied");
                    self.after_round(&changes);
                    if let Some(progress) = self.progress.read().clone() {
                        progress(self.store.item_count()?);
                    }
                }
                all.extend(page.items);
                if !progressive && page.next_link.is_some() {
                    // Between pages (received, applied only with the whole enumeration).
                    crate::crash_points::crash_point("poller.page_applied");
                    // Items received so far (the last report, after the full round, is the store's count).
                    if let Some(progress) = self.progress.read().clone() {
                        progress(all.len() as u64);
                    }
                }
                match (page.next_link, page.delta_link) {
                    (Some(next), _) => request = DeltaRequest::Link(next),
                    (None, Some(delta_link)) => {
                        if gallery_deleted_in(&all, gallery) {
                            self.gallery_missing();
                            return Ok(AppliedChanges::default());
                        }
                        // As in an incremental round: a change of ours sent meanwhile may be older in the listing.
                        let stale = || refetches < MAX_REFETCHES && self.sent_changes.count() != sent_before;
                        let Some(changes) = self.apply_full_listing(gallery, all, &delta_link, stale)? else {
                            refetches += 1;
                            tracing::debug!(refetches, "local changes were sent during a listing; listing again");
                            continue 'again;
                        };
                        return Ok(changes);
                    }
                    (None, None) => {
                        return Err(DriveError::Other {
                            status: None,
                            message: "delta page has neither a nextLink nor a deltaLink".into(),
                        }
                        .into())
                    }
                }
            }
        }
    }

    /// The first listing of an empty store: by folders after a `token=latest` delta link (`list_tree`), as one
    /// full round with that link; by delta ([`Self::enumerate`]) when the service has no such link.
    async fn list_first(&self, gallery: &str) -> Result<AppliedChanges, SyncError> {
        let mut refetches = 0;
        loop {
            let sent_before = self.sent_changes.count();
            let progress = self.progress.read().clone();
            let thumbnail_sink = self.listed_thumbnails.read().clone();
            let listed = list_tree_with_thumbnails(
                self.drive.as_ref(),
                gallery,
                DEFAULT_FOLDERS_IN_FLIGHT,
                thumbnail_sink.as_ref().map(|_| LISTED_SIZES),
                |received| {
                    // Between folders (received, applied only with the whole listing).
                    crate::crash_points::crash_point("poller.page_applied");
                    if let Some(progress) = &progress {
                        progress(received);
                    }
                },
            )
            .await;
            let mut listing = match listed {
                Ok(listing) => listing,
                Err(TreeListingError::LatestRefused(e)) => {
                    tracing::info!(reason = %e, "no token=latest delta link; enumerating the gallery by delta");
                    return self.enumerate(gallery, None, false).await;
                }
                Err(TreeListingError::Drive(e)) => return Err(e.into()),
            };
            tracing::debug!(
                folders = listing.folders_listed,
                items = listing.items.len(),
                "gallery listed by folders"
            );
            if gallery_deleted_in(&listing.items, gallery) {
                self.gallery_missing();
                return Ok(AppliedChanges::default());
            }
            if let Some(sink) = &thumbnail_sink {
                // Before the round is applied: the fetcher it wakes finds them.
                sink.add(std::mem::take(&mut listing.thumbnails));
            }
            let stale = || refetches < MAX_REFETCHES && self.sent_changes.count() != sent_before;
            match self.apply_full_listing(gallery, listing.items, &listing.delta_link, stale)? {
                Some(changes) => return Ok(changes),
                None => {
                    refetches += 1;
                    tracing::debug!(refetches, "local changes were sent during a listing; listing again");
                }
            }
        }
    }

    /// Applies a whole enumeration as one full round with its delta link, unless `stale()` (then `None`: list
    /// again); then frees its memory, runs the hooks and reports the store's count.
    fn apply_full_listing(
        &self,
        gallery: &str,
        all: Vec<DriveItem>,
        delta_link: &str,
        stale: impl FnOnce() -> bool,
    ) -> Result<Option<AppliedChanges>, SyncError> {
        let applied =
            apply_fresh_delta_round_with_link(&self.store, gallery, &all, RoundKind::Full, delta_link, stale)?;
        let Some(changes) = applied else {
            return Ok(None);
        };
        // The enumeration held every item of the gallery (~1 KiB each); give the freed heap back.
        drop(all);
        release_freed_memory();
        *self.last_full_listing.lock() = Instant::now();
        self.after_round(&changes);
        if let Some(progress) = self.progress.read().clone() {
            progress(self.store.item_count()?);
        }
        Ok(Some(changes))
    }

    /// Lists the folders an incremental round brought in (and their subfolders), if a listing is pending, and
    /// applies their content with the round's unplaced items (see [`super::delta_apply::PendingListing`]); returns
    /// how many folders were listed and what their content changed.
    async fn list_pending_folders(&self, scope: &TreeScope) -> Result<Option<(usize, AppliedChanges)>, SyncError> {
        let Some(pending) = pending_listing(&self.store, scope)? else {
            return Ok(None);
        };
        let listed = super::tree_listing::everything_below(self.drive.as_ref(), pending.folders.clone()).await?;
        let changes = apply_pending_listing(&self.store, scope, &pending, listed)?;
        Ok(Some((pending.folders.len(), changes)))
    }

    fn gallery_missing(&self) -> PollOutcome {
        tracing::warn!("the gallery folder is missing on OneDrive; keeping the local view");
        self.status.update(|s| {
            s.gallery = GalleryState::Missing;
            s.online = true;
        });
        PollOutcome {
            gallery_missing: true,
            ..PollOutcome::default()
        }
    }

    fn after_round(&self, changes: &AppliedChanges) {
        if changes.is_empty() && changes.parents_changed.is_empty() {
            return;
        }
        for hook in self.hooks.read().iter() {
            hook(changes);
        }
        if let Some(waker) = self.thumbnail_waker.read().as_ref() {
            waker.notify_one();
        }
    }

    fn note_success(&self) {
        self.status.update(|s| {
            s.online = true;
            s.signed_in = true;
            s.gallery = GalleryState::Ok;
            s.throttled_until = None;
            s.message = None;
            s.last_sync = Some(Utc::now());
        });
    }

    fn note_error(&self, e: &DriveError) {
        let account = self.settings.account.clone();
        self.status.update(|s| match e {
            DriveError::Offline(_) => s.online = false,
            DriveError::Throttled { until } => {
                s.throttled_until = Some(until.unwrap_or_else(|| Utc::now() + chrono::Duration::seconds(60)));
            }
            DriveError::Unauthorized { .. } => {
                s.signed_in = false;
                s.message = Some(format!("sign in again: galleryfs login --account {account}"));
            }
            _ => {}
        });
    }

    /// Whether the quota needs reading at this round (see the module note).
    fn quota_due(&self) -> bool {
        let Some(last) = *self.quota_read.lock() else {
            return true;
        };
        let refused = self
            .store
            .meta(super::outbox_replay::meta_keys::QUOTA_EXCEEDED)
            .map_or(true, |v| v.is_some());
        let roomy = self.status.snapshot().quota.is_some_and(|q| {
            let low = match (q.total, q.used) {
                (Some(total), Some(used)) => ((total - used) as f64) < total as f64 * QUOTA_LOW_FRACTION,
                _ => true,
            };
            q.state.as_deref() == Some("normal") && !low
        });
        // Rounds come every poll interval; a little less tolerates timer jitter.
        refused || !roomy || last.elapsed() >= self.settings.poll_interval.mul_f64(0.8)
    }

    async fn refresh_quota(&self, force: bool) {
        if !force && !self.quota_due() {
            return;
        }
        match self.drive.drive().await {
            Ok(drive) => {
                *self.quota_read.lock() = Some(Instant::now());
                if let Some(q) = drive.quota {
                    let quota = QuotaStatus {
                        total: q.total,
                        used: q.used,
                        state: q.state.clone(),
                    };
                    self.status.update(|s| s.quota = Some(quota.clone()));
                    for hook in self.quota_hooks.read().iter() {
                        hook(&quota);
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot read the quota"),
        }
    }
}

/// Whether the last occurrence of the gallery folder in a round says it was deleted.
/// Returns freed heap memory to the system. glibc keeps what a large enumeration freed in its arenas (the
/// resident size would stay at the enumeration's peak, ~1 KiB per item); `malloc_trim` releases the free pages.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn gallery_deleted_in(items: &[DriveItem], gallery: &str) -> bool {
    items
        .iter()
        .rev()
        .find(|i| i.id == gallery)
        .is_some_and(|i| i.is_deleted())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::mock_drive::MockDrive;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_waits_out_throttling() {
        let mut settings = SyncSettings::new("a");
        settings.poll_interval = Duration::from_secs(30);
        settings.min_backoff = Duration::from_secs(2);
        settings.max_backoff = Duration::from_secs(60);
        let engine = SyncEngine::new(
            Arc::new(Store::open_in_memory().unwrap()),
            Arc::new(MockDrive::new()),
            settings,
        );
        assert_eq!(engine.next_delay(0), Duration::from_secs(30));
        assert_eq!(engine.next_delay(1), Duration::from_secs(2));
        assert_eq!(engine.next_delay(3), Duration::from_secs(8));
        assert_eq!(engine.next_delay(40), Duration::from_secs(60));
        engine.note_error(&DriveError::Throttled {
            until: Some(Utc::now() + chrono::Duration::seconds(600)),
        });
        assert!(engine.next_delay(1) > Duration::from_secs(590));
    }
}
