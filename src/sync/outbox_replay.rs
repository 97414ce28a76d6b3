//! [`OutboxReplayer`]: sends the journalled local changes (the store's outbox) to OneDrive through [`DriveApi`],
//! in journal order, and records each result in the store before the entry is completed.
//!
//! - Order: entries are taken in sequence order; an entry that must wait (write-back delay, file open for
//!   writing, a parent folder not created yet, a retry time not reached) holds back the later entries of the same
//!   inode only. A burst of writes journals several uploads of one inode; only the last one runs.
//! - Parallel uploads: uploads of distinct inodes whose folder exists on OneDrive run beside each other, at most
//!   [`upload_limit::UploadLimit`]'s width at once (halved when OneDrive throttles, grown slowly after successes);
//!   the later entries of an inode with an upload in flight wait for it, and so does an upload to a OneDrive item
//!   another inode's upload in flight sends to (an editor's next save took the item over). Folder creations run
//!   between them (a folder is created before the uploads into it start). Every other entry (delete, move, a
//!   folder's time) waits until no upload is in flight and runs alone, and nothing after it starts before it is
//!   done. The uploads are
//!   futures of the pass's own task: only their requests (and the hashing, on blocking threads) overlap; their
//!   store and [`LocalEdits`] calls never run at the same time. Small files go by simple `PUT` (≤ 4 MiB), larger
//!   ones by an upload session ([`DriveApi::upload`] chooses).
//! - Uploads of existing items first compare OneDrive's version with the baseline the edit started from
//!   (cTag, then quickXorHash and size): when OneDrive moved on, the local version is uploaded beside it as a
//!   conflict copy and both survive. Items never uploaded, or deleted on OneDrive meanwhile, are created anew.
//! - Failures: offline and 5xx back off exponentially and end the round (nothing is lost: the entry stays);
//!   throttling pauses every request until `Retry-After`; 507 keeps the file dirty, tells the filesystem the
//!   quota is exceeded (new writes get `ENOSPC`) and retries later; other refusals back off per entry.
//! - A folder's time set locally (`utimensat`) is sent as its `fileSystemInfo.lastModifiedDateTime` (PATCH); the
//!   time OneDrive answers becomes the folder's remote baseline. A folder OneDrive creates keeps its local mtime.
//! - Big-delete guard: more than `big_delete_limit` deletes within `big_delete_window` holds further deletes
//!   until the user runs `galleryfs trash confirm-deletes` (or `cancel-deletes`); the status message says so.
//! - Upload sessions are driven inside [`DriveApi::upload`]; their URL is journalled on the entry as soon as a
//!   session exists, so after a crash or an outage the next attempt resumes it from `nextExpectedRanges` (a
//!   session gone or expired starts over from the staged file; nothing is lost either way). A first upload's
//!   session is resumed only while the file is at the place the session was made for (it creates its item
//!   there); after a rename or a move a new session starts at the file's place. While a closed file waits out the
//!   write-back delay, its session is started and every fragment but the last is sent ahead; the commit resumes
//!   it ([`send_ahead`]).
//! - Locks: `pass` (async) is held for a whole pass (its uploads in flight included), before the store's
//!   connections and before the locks [`LocalEdits`] takes (the filesystem's `local` map, read outside the commit
//!   transaction); `recent_deletes` and `upload_limit` (parking_lot) are each taken alone, never across an
//!   `.await`.
//! - After a crash between a request and its journal entry, what the earlier attempt did on OneDrive is recognised
//!   and adopted, not duplicated ([`recovery`]).

use super::conflict_copies::{conflict_name, local_host_name, remote_moved_on, RemoteVersion};
use super::local_edits::{LocalEdits, UploadHold};
use super::upload_commit::{drop_delta_duplicate, RemoteResult};
use crate::remote::drive_api::{
    ConflictBehavior, DriveApi, DriveError, MoveRequest, SessionJournal, UploadRequest, UploadSource, UploadTarget,
};
use crate::remote::models::DriveItem;
use crate::store::{name_key, ItemRow, OutboxEntry, OutboxOp, RemoteAttrs, Store, StoreError};
use chrono::{DateTime, TimeZone, Utc};
use futures::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

mod recovery;
mod send_ahead;
mod upload_limit;
use recovery::{first_upload_key, same_bytes, sent_earlier, source_hash, FirstUploadTarget};
use upload_limit::UploadLimit;

/// Meta keys the replayer keeps for `galleryfs status` and the trash commands.
pub mod meta_keys {
    /// What the user must do about the outbox (held deletes, quota), or absent.
    pub const OUTBOX_MESSAGE: &str = "outbox_message";
    /// RFC 3339 time until which the big-delete guard is lifted (`galleryfs trash confirm-deletes`).
    pub const DELETES_CONFIRMED_UNTIL: &str = "deletes_confirmed_until";
    /// Present while OneDrive refuses uploads for lack of space (`1`).
    pub const QUOTA_EXCEEDED: &str = "quota_exceeded";
}

/// The count of changes a mount's replayer made on OneDrive (uploads, deletes, moves, folders), bumped just before
/// the store records each. A delta round fetched before such a change can report the item as it was: the sync
/// engine, which owns the mount's counter ([`crate::sync::engine::SyncEngine::sent_changes`]) and gives it to the
/// replayer, refetches a round when the count moved while the round was fetched.
#[derive(Debug, Default)]
pub struct SentChanges(AtomicU64);

impl SentChanges {
    /// How many changes sent to OneDrive have been (or are being) recorded so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    fn note(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// How long a confirmation of held deletes lasts.
pub const DELETE_CONFIRMATION: Duration = Duration::from_secs(600);

#[derive(Clone, Debug)]
pub struct ReplayConfig {
    /// More deletes than this within `big_delete_window` hold further deletes (default 50).
    pub big_delete_limit: usize,
    pub big_delete_window: Duration,
    /// First retry delay; doubles per failed attempt up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// How long to sleep with nothing to do (a journalled change wakes the replayer earlier).
    pub idle_poll: Duration,
    /// Uploads in flight at once at first, and at most ([`upload_limit`]: halved under throttling, grown slowly
    /// after successes).
    pub uploads_in_flight: usize,
    pub max_uploads_in_flight: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            big_delete_limit: 50,
            big_delete_window: Duration::from_secs(60),
            base_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(15 * 60),
            idle_poll: Duration::from_secs(60),
            uploads_in_flight: 4,
            max_uploads_in_flight: 8,
        }
    }
}

#[derive(Debug, Error)]
pub enum ReplayError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one pass over the outbox did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplayReport {
    /// Entries completed (including superseded and no-longer-needed ones).
    pub done: usize,
    /// Uploads that became conflict copies.
    pub conflicts: usize,
    /// Entries waiting for the write-back delay, a close, a parent, or a retry time.
    pub waiting: usize,
    /// Entries that failed this pass and will be retried.
    pub failed: usize,
    pub deletes_held: usize,
    pub offline: bool,
    pub throttled_until: Option<DateTime<Utc>>,
    pub quota_exceeded: bool,
    /// The gallery folder itself is gone on OneDrive (deleted or moved away): nothing can be sent, nothing is
    /// dropped.
    pub gallery_missing: bool,
    /// When another pass is worth making (none: only when woken).
    pub next_wake: Option<Duration>,
}

impl ReplayReport {
    fn wake_in(&mut self, d: Duration) {
        self.next_wake = Some(self.next_wake.map_or(d, |w| w.min(d)));
    }
}

/// An upload running beside others in a pass: its entry, what it came to, and its own report (conflicts).
type UploadFuture<'a> = Pin<Box<dyn Future<Output = (OutboxEntry, Result<Step, Failure>, ReplayReport)> + Send + 'a>>;

/// What one pass keeps between its looks at the outbox.
#[derive(Default)]
struct PassState {
    /// Inodes with an upload in flight.
    busy: HashSet<u64>,
    /// Inodes whose entry waits for a close, the write-back delay or a folder (looked at again on a wake, or when
    /// a delay runs out, while uploads are in flight).
    held: HashSet<u64>,
    /// Inodes whose entry failed or whose delete is held: not tried again in this pass.
    parked: HashSet<u64>,
    /// Inodes counted in the report's `waiting`.
    counted: HashSet<u64>,
    /// The network or the service is down (or throttling asked for a long pause): nothing more starts.
    stopped: bool,
    /// When a held entry's delay (write-back, retry time) runs out, while uploads are in flight.
    recheck_at: Option<tokio::time::Instant>,
}

impl PassState {
    fn recheck_in(&mut self, d: Duration) {
        let at = tokio::time::Instant::now() + d;
        self.recheck_at = Some(self.recheck_at.map_or(at, |r| r.min(at)));
    }
}

enum Step {
    Done,
    Conflict,
    Wait(Option<Duration>),
    DeleteHeld,
}

/// An upload that can go now ([`OutboxReplayer::upload_ready`]).
struct ReadyUpload {
    row: ItemRow,
    /// The OneDrive id of its folder.
    parent_id: String,
    source: UploadSource,
    /// Inside the write-back delay: what is left of it (the upload may be sent ahead, not committed).
    hold: Option<Duration>,
}

/// One upload attempt's requests, and what earlier attempts sent ([`OutboxReplayer::plan_upload`]).
struct UploadPlan {
    parent_id: String,
    source: UploadSource,
    modified: Option<DateTime<Utc>>,
    /// A session an earlier attempt started, to go on with.
    resume_url: Option<String>,
    journal: SessionJournal,
    our_hash: Option<String>,
    /// The hashes of the versions earlier attempts sent of this file.
    sent_before: Vec<String>,
    conflict_copy_name: String,
}

impl UploadPlan {
    fn our_hash(&self) -> Option<&str> {
        self.our_hash.as_deref()
    }

    /// This version of the file as a new item `name` in the folder.
    fn new_here(&self, name: String, conflict: ConflictBehavior) -> UploadRequest {
        UploadRequest {
            target: UploadTarget::New {
                parent_id: self.parent_id.clone(),
                name,
            },
            source: self.source.clone(),
            modified: self.modified,
            conflict,
            resume_url: self.resume_url.clone(),
            session_journal: Some(self.journal.clone()),
        }
    }

    /// This version of the file to an existing item (replacing its content); `resume`: a session to go on with.
    fn to_item(&self, item_id: &str, resume: Option<String>) -> UploadRequest {
        UploadRequest {
            target: UploadTarget::Replace {
                item_id: item_id.to_string(),
                if_match: None,
            },
            source: self.source.clone(),
            modified: self.modified,
            conflict: ConflictBehavior::Replace,
            resume_url: resume,
            session_journal: Some(self.journal.clone()),
        }
    }
}

pub struct OutboxReplayer {
    store: Arc<Store>,
    drive: Arc<dyn DriveApi>,
    local: Arc<dyn LocalEdits>,
    config: ReplayConfig,
    host: String,
    recent_deletes: Mutex<VecDeque<Instant>>,
    /// Counts the changes sent (the sync engine's, once [`OutboxReplayer::with_sent_changes`] gave it).
    sent: Arc<SentChanges>,
    /// One pass at a time.
    pass: tokio::sync::Mutex<()>,
    /// How many uploads run at once; kept from pass to pass.
    upload_limit: Mutex<UploadLimit>,
    /// The item each upload in flight of the current pass sends to, by inode: its row's item when it was queued,
    /// then when the upload read the row (an editor's next save may take the item over in between). A file saved
    /// over by another (an editor's temp file renamed over it) is not uploaded to that item before the upload in
    /// flight there ends, or it would find OneDrive moved on and make a conflict copy. Emptied at each pass's start
    /// (a pass that ended early leaves no stale target).
    upload_targets: Mutex<HashMap<u64, String>>,
}

fn remote_result(item: &DriveItem) -> RemoteResult {
    RemoteResult {
        item_id: item.id.clone(),
        name: item.name.clone().unwrap_or_default(),
        attrs: remote_attrs(item),
        requested: None,
        started_from: None,
    }
}

fn remote_attrs(item: &DriveItem) -> RemoteAttrs {
    RemoteAttrs {
        etag: item.e_tag.clone(),
        ctag: item.c_tag.clone(),
        size: item.size.unwrap_or(0).max(0) as u64,
        quick_xor_hash: item.quick_xor_hash().map(str::to_string),
        mtime: item.modified().map(|t| t.timestamp()).unwrap_or(0),
        mime_type: item.file.as_ref().and_then(|f| f.mime_type.clone()),
        is_media: item.is_file() && item.is_media(),
    }
}

/// The version of OneDrive's `item` a conflict check compares with a row's baseline.
fn remote_version(item: &DriveItem) -> RemoteVersion {
    RemoteVersion {
        ctag: item.c_tag.clone(),
        hash: item.quick_xor_hash().map(str::to_string),
        size: item.size.unwrap_or(0).max(0) as u64,
    }
}

/// The OneDrive id of a row, when it has one (not a local placeholder, not the unlocated root).
fn real_id(row: &ItemRow) -> Option<String> {
    (!row.local_only && is_real_id(&row.item_id)).then(|| row.item_id.clone())
}

/// Whether `id` names a OneDrive item (not a placeholder for a file not uploaded yet).
fn is_real_id(id: &str) -> bool {
    !id.starts_with(crate::store::LOCAL_ID_PREFIX) && !id.starts_with("galleryfs:")
}

impl OutboxReplayer {
    pub fn new(store: Arc<Store>, drive: Arc<dyn DriveApi>, local: Arc<dyn LocalEdits>, config: ReplayConfig) -> Self {
        Self {
            store,
            drive,
            local,
            host: local_host_name(),
            recent_deletes: Mutex::new(VecDeque::new()),
            sent: Arc::default(),
            pass: tokio::sync::Mutex::new(()),
            upload_limit: Mutex::new(UploadLimit::new(config.uploads_in_flight, config.max_uploads_in_flight)),
            upload_targets: Mutex::default(),
            config,
        }
    }

    /// Counts the changes sent in `sent` (the sync engine's [`SentChanges`], so its rounds see them).
    pub fn with_sent_changes(mut self, sent: Arc<SentChanges>) -> Self {
        self.sent = sent;
        self
    }

    /// Uses `host` in conflict-copy names instead of this machine's name (tests).
    pub fn with_host(mut self, host: &str) -> Self {
        self.host = host.to_string();
        self
    }

    /// Replays until the task is dropped or aborted: a pass, then sleep until woken or until the report asks.
    pub async fn run(self: Arc<Self>, wake: Arc<tokio::sync::Notify>) {
        loop {
            let wait = match self.pass_over(Some(&wake)).await {
                Ok(r) => r.next_wake.unwrap_or(self.config.idle_poll),
                Err(e) => {
                    tracing::warn!(error = %e, "outbox replay failed; retrying");
                    self.config.base_backoff
                }
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait.max(Duration::from_millis(20))) => {}
            }
        }
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(16);
        (self.config.base_backoff * factor).min(self.config.max_backoff)
    }

    /// One pass over the outbox.
    pub async fn replay_once(&self) -> Result<ReplayReport, ReplayError> {
        self.pass_over(None).await
    }

    /// One pass over the outbox; `wake` (the filesystem's journal signal, when given) has the pass look at the
    /// outbox again while uploads are in flight, so files closed meanwhile join them (so does the end of a
    /// write-back delay).
    ///
    /// Entries are looked at in journal order. An upload whose file is ready and whose folder exists on OneDrive
    /// starts and runs beside the others (at most [`UploadLimit::width`] at once); the later entries of its inode
    /// wait until it is done. A folder creation runs at once, between them. Any other entry (delete, move, a
    /// folder's time) waits until every upload in flight is done and runs alone, and nothing after it starts
    /// before it is done. After each finished upload, and on `wake`, the outbox is looked at again.
    async fn pass_over(&self, wake: Option<&tokio::sync::Notify>) -> Result<ReplayReport, ReplayError> {
        let _pass = self.pass.lock().await;
        let mut report = ReplayReport::default();
        match self.sweep_abandoned_first_uploads().await {
            Ok(()) => {}
            Err(Failure::Store(e)) => return Err(e.into()),
            // Offline or refused: the journal keeps them for a later pass; the entries below find out the same.
            Err(Failure::Drive(e)) => tracing::debug!(error = %e, "abandoned first uploads not checked yet"),
        }
        self.upload_limit.lock().rebase(self.drive.throttle_answers());
        self.upload_targets.lock().clear();
        let mut pass = PassState::default();
        let mut in_flight: FuturesUnordered<UploadFuture<'_>> = FuturesUnordered::new();
        loop {
            if !pass.stopped {
                self.scan(&mut pass, &mut in_flight, &mut report).await?;
            }
            if in_flight.is_empty() {
                break;
            }
            let finished = match wake {
                Some(wake) => {
                    let recheck = pass.recheck_at.take();
                    let until = recheck.unwrap_or_else(|| tokio::time::Instant::now() + self.config.idle_poll);
                    tokio::select! {
                        f = in_flight.next() => {
                            pass.recheck_at = recheck;
                            f
                        }
                        // Something was journalled or closed, or a write-back delay ran out: the entries held for
                        // it look again.
                        _ = wake.notified() => {
                            pass.recheck_at = recheck;
                            pass.held.clear();
                            continue;
                        }
                        _ = tokio::time::sleep_until(until) => {
                            pass.held.clear();
                            continue;
                        }
                    }
                }
                None => in_flight.next().await,
            };
            let Some((entry, step, part)) = finished else { break };
            pass.busy.remove(&entry.op.ino());
            self.upload_targets.lock().remove(&entry.op.ino());
            report.conflicts += part.conflicts;
            let ok = matches!(step, Ok(Step::Done | Step::Conflict));
            let halved = {
                let mut limit = self.upload_limit.lock();
                let halved = limit.finished(ok, self.drive.throttle_answers());
                (halved, limit.width())
            };
            if halved.0 {
                tracing::info!(width = halved.1, "OneDrive throttled: fewer uploads in flight");
            }
            self.take_step(&entry, step, &mut pass, &mut report).await?;
        }
        if report.done > 0 {
            // Commits can journal follow-ups (a move for a file renamed while its first upload ran, the removal of
            // a stray): another pass picks them up now rather than at the idle poll.
            report.wake_in(Duration::ZERO);
        }
        self.update_message(&report)?;
        Ok(report)
    }

    /// Looks at the pending entries in order: starts the uploads that can go (up to the limit), runs folder
    /// creations, and runs one other entry when nothing is in flight (see [`OutboxReplayer::pass_over`]).
    async fn scan<'a>(
        &'a self,
        pass: &mut PassState,
        in_flight: &mut FuturesUnordered<UploadFuture<'a>>,
        report: &mut ReplayReport,
    ) -> Result<(), ReplayError> {
        let entries = self.store.pending()?;
        // Inodes whose earlier entries wait (this scan): their later entries wait too.
        let mut behind: HashSet<u64> = HashSet::new();
        for entry in entries {
            let ino = entry.op.ino();
            if behind.contains(&ino) || pass.busy.contains(&ino) {
                behind.insert(ino);
                continue;
            }
            if pass.held.contains(&ino) || pass.parked.contains(&ino) {
                behind.insert(ino);
                continue;
            }
            let now = Utc::now();
            if let Some(at) = entry.retry_at.filter(|at| *at > now) {
                behind.insert(ino);
                if pass.counted.insert(ino) {
                    report.waiting += 1;
                }
                let d = (at - now).to_std().unwrap_or_default();
                report.wake_in(d);
                pass.recheck_in(d);
                continue;
            }
            match &entry.op {
                OutboxOp::Upload { .. } => {
                    if in_flight.len() >= self.upload_limit.lock().width() {
                        // Full: the rest of the outbox waits for a slot (the next look starts here again).
                        return Ok(());
                    }
                    let item_id = self.store.get(ino)?.map(|row| row.item_id);
                    if let Some(id) = item_id.as_deref() {
                        if self.sending_to(id, ino) {
                            behind.insert(ino);
                            continue;
                        }
                    }
                    pass.busy.insert(ino);
                    if let Some(id) = item_id {
                        self.upload_targets.lock().insert(ino, id);
                    }
                    behind.insert(ino);
                    in_flight.push(Box::pin(async move {
                        let mut part = ReplayReport::default();
                        let step = self.upload(&entry, &mut part).await;
                        (entry, step, part)
                    }));
                }
                OutboxOp::Mkdir { .. } => {
                    let step = self.mkdir(&entry).await;
                    if !self.take_step(&entry, step, pass, report).await? {
                        behind.insert(ino);
                    }
                    if pass.stopped {
                        return Ok(());
                    }
                }
                _ if !in_flight.is_empty() => {
                    // Runs alone, after the uploads in flight; nothing after it starts before it.
                    return Ok(());
                }
                op => {
                    let step = match op {
                        OutboxOp::Delete { item_id, .. } => self.delete(&entry, item_id).await,
                        OutboxOp::Move { .. } => self.move_item(&entry).await,
                        _ => self.set_times(&entry).await,
                    };
                    if !self.take_step(&entry, step, pass, report).await? {
                        behind.insert(ino);
                    }
                    if pass.stopped {
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// Records what one entry's step came to; returns whether it is done (else its inode waits for this pass).
    async fn take_step(
        &self,
        entry: &OutboxEntry,
        step: Result<Step, Failure>,
        pass: &mut PassState,
        report: &mut ReplayReport,
    ) -> Result<bool, ReplayError> {
        let ino = entry.op.ino();
        match step {
            Ok(Step::Done) => report.done += 1,
            Ok(Step::Conflict) => {
                report.done += 1;
                report.conflicts += 1;
            }
            Ok(Step::Wait(d)) => {
                pass.held.insert(ino);
                if pass.counted.insert(ino) {
                    report.waiting += 1;
                }
                if let Some(d) = d {
                    report.wake_in(d);
                    pass.recheck_in(d);
                }
                return Ok(false);
            }
            Ok(Step::DeleteHeld) => {
                pass.parked.insert(ino);
                report.deletes_held += 1;
                return Ok(false);
            }
            Err(Failure::Store(e)) => return Err(e.into()),
            Err(Failure::Drive(e)) => {
                let stop = self.failed(entry, &e, report).await?;
                pass.parked.insert(ino);
                if stop {
                    pass.stopped = true;
                }
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Records a failed attempt; returns whether the pass should end (the network or the service is down).
    async fn failed(
        &self,
        entry: &OutboxEntry,
        e: &DriveError,
        report: &mut ReplayReport,
    ) -> Result<bool, ReplayError> {
        let attempts = entry.attempts + 1;
        let now = Utc::now();
        let (retry_in, stop) = match e {
            DriveError::Throttled { until } => {
                let wait = until
                    .and_then(|u| (u - now).to_std().ok())
                    .unwrap_or_else(|| self.backoff(attempts));
                report.throttled_until = Some(now + chrono::Duration::from_std(wait).unwrap_or_default());
                (wait, true)
            }
            DriveError::QuotaExceeded => {
                report.quota_exceeded = true;
                self.local.set_quota_exceeded(true);
                self.store.set_meta(meta_keys::QUOTA_EXCEEDED, "1")?;
                (self.backoff(attempts).max(Duration::from_secs(60)), false)
            }
            DriveError::Unauthorized { .. } => (self.backoff(attempts).max(Duration::from_secs(60)), true),
            DriveError::NotFound(_) if self.gallery_missing().await? => {
                report.gallery_missing = true;
                (self.backoff(attempts).max(Duration::from_secs(60)), true)
            }
            e if e.is_retryable() => {
                report.offline = true;
                (self.backoff(attempts), true)
            }
            _ => (self.backoff(attempts), false),
        };
        report.failed += 1;
        report.wake_in(retry_in);
        let retry_at = now + chrono::Duration::from_std(retry_in).unwrap_or_default();
        tracing::warn!(
            seq = entry.seq,
            op = entry.op.kind(),
            ino = entry.op.ino(),
            attempts,
            error = %e,
            retry_in_s = retry_in.as_secs(),
            "outbox entry failed; kept for a retry"
        );
        match self.store.fail(entry.seq, &e.to_string(), retry_at) {
            Ok(()) | Err(StoreError::NoSuchOutboxEntry(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(stop)
    }

    /// Whether the gallery folder (the root's item) no longer exists on OneDrive.
    async fn gallery_missing(&self) -> Result<bool, ReplayError> {
        let root = self.store.root()?;
        let Some(id) = real_id(&root) else {
            return Ok(false);
        };
        let answer = self.drive.item(&id).await;
        Ok(matches!(answer, Err(DriveError::NotFound(_))) || answer.is_ok_and(|i| i.deleted.is_some()))
    }

    fn update_message(&self, report: &ReplayReport) -> Result<(), ReplayError> {
        let message = if report.gallery_missing {
            Some(
                "the gallery folder was deleted or moved away on OneDrive: galleryfs keeps every pending change \
                 on this device; restore the folder (or mount another) to send them"
                    .to_string(),
            )
        } else if report.deletes_held > 0 {
            Some(format!(
                "{} deletes are held: more than {} items were deleted within {} s. Run `galleryfs trash \
                 confirm-deletes` to send them to OneDrive's recycle bin, or `galleryfs trash cancel-deletes` to \
                 keep them on OneDrive (they reappear at the next sync).",
                report.deletes_held,
                self.config.big_delete_limit,
                self.config.big_delete_window.as_secs()
            ))
        } else if report.quota_exceeded || self.store.meta(meta_keys::QUOTA_EXCEEDED)?.is_some() {
            // A 507 journalled by an earlier pass holds until an upload goes through: a pass that attempted
            // nothing (the refused upload waits for its retry) must not clear what `status` tells the user.
            Some(
                "OneDrive is full: changed files stay on this device (state dirty) until space is freed on OneDrive"
                    .into(),
            )
        } else {
            None
        };
        match message {
            Some(m) => {
                if self.store.meta(meta_keys::OUTBOX_MESSAGE)?.as_deref() != Some(m.as_str()) {
                    tracing::warn!(message = %m, "outbox needs the user");
                    self.store.set_meta(meta_keys::OUTBOX_MESSAGE, &m)?;
                }
            }
            None => self.store.delete_meta(meta_keys::OUTBOX_MESSAGE)?,
        }
        Ok(())
    }

    fn complete(&self, seq: i64) -> Result<(), Failure> {
        match self.store.complete(seq) {
            Ok(()) | Err(StoreError::NoSuchOutboxEntry(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The OneDrive id of the folder `row` is in, if it exists on OneDrive yet.
    fn parent_id(&self, row: &ItemRow) -> Result<Option<String>, Failure> {
        let Some(p) = row.parent_ino else { return Ok(None) };
        Ok(self.store.get(p)?.as_ref().and_then(real_id))
    }

    async fn upload(&self, entry: &OutboxEntry, report: &mut ReplayReport) -> Result<Step, Failure> {
        // A session sent ahead that this entry will not commit (superseded by a later version, or the file gone).
        let held_url = match &entry.upload_url {
            Some(url) if self.held_target(entry.seq)?.is_some() => Some(url.clone()),
            _ => None,
        };
        let ReadyUpload {
            row,
            parent_id,
            source,
            hold,
        } = match self.upload_ready(entry)? {
            Ok(ready) => ready,
            Err(Step::Done) => {
                if let Some(url) = held_url {
                    if let Err(e) = self.drive.cancel_upload(&url).await {
                        tracing::debug!(seq = entry.seq, error = %e, "a session sent ahead was not cancelled; it expires");
                    }
                }
                return Ok(Step::Done);
            }
            Err(step) => return Ok(step),
        };
        let ino = row.ino;
        if real_id(&row).is_some() {
            self.upload_targets.lock().insert(ino, row.item_id.clone());
        }
        if let Some(left) = hold {
            let until = Instant::now() + left;
            self.send_ahead(entry.seq, entry.upload_url.is_some(), &row, &parent_id, &source)
                .await?;
            return Ok(Step::Wait(Some(until.saturating_duration_since(Instant::now()))));
        }
        let mut plan = self.plan_upload(entry, &row, parent_id, source).await?;
        crate::crash_points::crash_point("replay.upload_start");
        let existing = match real_id(&row).filter(|_| !row.remote_removed) {
            Some(id) => match self.drive.item(&id).await {
                Ok(item) if item.deleted.is_none() => Some(item),
                Ok(_) | Err(DriveError::NotFound(_)) => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        if existing.is_none() && real_id(&row).is_some() {
            // The file's item is gone from OneDrive: the file is created anew, never through a session journalled
            // for that item (sent ahead, or cut by a crash).
            plan.resume_url = None;
        }
        // A first upload sent before a crash, to the place the file had then (renamed since): adopt that item.
        let earlier = match real_id(&row) {
            None => self.earlier_first_upload(entry.seq, &plan.parent_id, &row.name).await?,
            Some(_) => None,
        };
        let mut requested = None;
        let result = match (existing, earlier) {
            (None, Some((item, old_parent, old_name))) => {
                tracing::info!(
                    ino,
                    "a first upload sent before a crash is adopted and moved to the file's place"
                );
                requested = Some((old_parent, old_name));
                if same_bytes(&item, plan.our_hash()) {
                    item
                } else {
                    self.drive.upload(plan.to_item(&item.id, None)).await?
                }
            }
            (None, None) => match self.send_new(entry, &row, &plan, report).await? {
                Some(item) => item,
                None => return Ok(Step::Wait(None)),
            },
            (Some(remote), _) => match self.send_over(entry, &row, &plan, remote).await? {
                Ok(Some(item)) => item,
                Ok(None) => return Ok(Step::Conflict),
                Err(step) => return Ok(step),
            },
        };
        self.finish_upload(entry, &row, result, requested).await
    }

    /// Whether the upload of `entry` can go now: the row, the OneDrive id of its folder and what to send; or the
    /// step to take instead (done when superseded or gone, wait for the write-back delay, a close or the folder).
    fn upload_ready(&self, entry: &OutboxEntry) -> Result<Result<ReadyUpload, Step>, Failure> {
        let OutboxOp::Upload { ino, staged_path, .. } = &entry.op else {
            unreachable!("upload step of another op")
        };
        let ino = *ino;
        let Some(row) = self.store.get(ino)? else {
            return self.complete(entry.seq).map(|_| Err(Step::Done));
        };
        if self.store.read(|t| t.has_later_op(ino, "upload", entry.seq))? {
            // Superseded by a later journal entry of the same file: one upload for a burst of writes.
            if entry.upload_url.is_some() {
                self.pass_session_on(ino, entry.seq)?;
            }
            return self.complete(entry.seq).map(|_| Err(Step::Done));
        }
        let hold = match self.local.upload_hold(ino) {
            UploadHold::Ready => None,
            UploadHold::Wait(d) => Some(d),
            UploadHold::OpenForWriting => return Ok(Err(Step::Wait(None))),
        };
        let Some(parent_id) = self.parent_id(&row)? else {
            return Ok(Err(Step::Wait(None)));
        };
        let path = self.local.staged_path(ino).unwrap_or_else(|| staged_path.clone());
        let source = if path.is_file() {
            UploadSource::File(path)
        } else if row.size == 0 {
            UploadSource::Bytes(bytes::Bytes::new())
        } else {
            tracing::error!(
                ino,
                "the staged content of a changed file is missing; the change cannot be sent"
            );
            return self.complete(entry.seq).map(|_| Err(Step::Done));
        };
        Ok(Ok(ReadyUpload {
            row,
            parent_id,
            source,
            hold,
        }))
    }

    /// The requests of one upload attempt: the hash of this version is journalled as sent (before it is), a
    /// session an earlier (crashed) attempt started is resumed, and new sessions are journalled at once.
    async fn plan_upload(
        &self,
        entry: &OutboxEntry,
        row: &ItemRow,
        parent_id: String,
        source: UploadSource,
    ) -> Result<UploadPlan, Failure> {
        // Hashed on a blocking thread: the other uploads of the pass go on meanwhile.
        let our_hash = {
            let source = source.clone();
            tokio::task::spawn_blocking(move || source_hash(&source))
                .await
                .unwrap_or(None)
        };
        let sent_before = self.note_sending(row.ino, our_hash.as_deref())?;
        let mut resume_url = entry
            .upload_url
            .clone()
            .filter(|_| entry.upload_expires.is_none_or(|t| t > Utc::now()));
        if resume_url.is_some() && !self.session_made_for_here(entry.seq, row, &parent_id)? {
            tracing::info!(
                ino = row.ino,
                "the file was renamed or moved since its upload session began; a new session starts at its place"
            );
            resume_url = None;
        }
        let journal = self.session_journal(entry.seq);
        let today = chrono::Local::now().date_naive();
        Ok(UploadPlan {
            parent_id,
            source,
            modified: Utc.timestamp_opt(row.mtime, 0).single(),
            resume_url,
            journal,
            our_hash,
            sent_before,
            conflict_copy_name: conflict_name(&row.name, today, &self.host),
        })
    }

    /// Journals the upload sessions of entry `seq` on it (its URL and expiry), to be resumed.
    fn session_journal(&self, seq: i64) -> SessionJournal {
        let store = self.store.clone();
        SessionJournal(Arc::new(move |url: &str, expires| {
            if let Err(e) = store.set_upload_session(seq, url, expires) {
                tracing::warn!(seq, error = %e, "cannot journal an upload session; a crash would restart it");
            }
        }))
    }

    /// A file new on OneDrive (never uploaded, or deleted there while edited): created (anew), never lost. When
    /// the name is taken meanwhile, an item of ours found there (sent before a crash or a lost answer) is taken,
    /// else the file goes beside it as a conflict copy; a name held by an item leaving it makes the upload wait
    /// (`None`).
    async fn send_new(
        &self,
        entry: &OutboxEntry,
        row: &ItemRow,
        plan: &UploadPlan,
        report: &mut ReplayReport,
    ) -> Result<Option<DriveItem>, Failure> {
        let (ino, parent_id, our_hash) = (row.ino, &plan.parent_id, plan.our_hash());
        if real_id(row).is_none() {
            self.store.set_meta(
                &first_upload_key(entry.seq),
                &FirstUploadTarget::encode(parent_id, &row.name, ino),
            )?;
        }
        match self
            .drive
            .upload(plan.new_here(row.name.clone(), ConflictBehavior::Fail))
            .await
        {
            Err(DriveError::Conflict(_)) if self.name_being_freed(parent_id, &row.name).await? => {
                // Held by an item whose delete or move away is journalled (and runs in this pass or the next):
                // this new file takes the name after that.
                tracing::debug!(
                    ino,
                    "the name is held on OneDrive by an item leaving it; the upload waits"
                );
                Ok(None)
            }
            Err(DriveError::Conflict(_)) => {
                let item = match self
                    .own_earlier_upload(parent_id, &row.name, our_hash, &plan.sent_before, true)
                    .await?
                {
                    // Uploaded before a crash or a lost answer: the same bytes, or an earlier version of this
                    // file (which this one replaces).
                    Some(item) if same_bytes(&item, our_hash) => item,
                    Some(item) => self.drive.upload(plan.to_item(&item.id, None)).await?,
                    // (A session sent ahead never made an item: its last fragment was sent by this attempt, which
                    // OneDrive refused.)
                    None if entry.upload_url.is_some()
                        && real_id(row).is_none()
                        && self.held_target(entry.seq)?.is_none() =>
                    {
                        match self.earlier_session_item(parent_id, &row.name).await? {
                            // A session of an earlier version completed before a crash that came ahead of its
                            // journal: that item is ours, it gets this version.
                            Some(item) => self.drive.upload(plan.to_item(&item.id, None)).await?,
                            None => {
                                report.conflicts += 1;
                                self.send_conflict_copy(plan).await?
                            }
                        }
                    }
                    None => {
                        // The name was taken on OneDrive meanwhile: ours goes beside it (once: a copy an earlier
                        // attempt made is taken).
                        report.conflicts += 1;
                        self.send_conflict_copy(plan).await?
                    }
                };
                Ok(Some(item))
            }
            other => Ok(Some(other?)),
        }
    }

    /// Whether an upload of another inode than `ino` is in flight to the OneDrive item `item_id`.
    fn sending_to(&self, item_id: &str, ino: u64) -> bool {
        self.upload_targets
            .lock()
            .iter()
            .any(|(other, target)| *other != ino && target == item_id)
    }

    /// This version of a file over its existing item `remote`: sent, unless OneDrive already holds these bytes
    /// (our own attempt whose answer was lost). When OneDrive's version moved on from the baseline (not by our
    /// doing), the local version goes beside it as a conflict copy, recorded here: then `None`. While an upload of
    /// the file this one replaced (an editor's earlier save) is still in flight to the same item, OneDrive's newer
    /// version may be that one: the step waits (`Err`) and looks again once it is recorded.
    async fn send_over(
        &self,
        entry: &OutboxEntry,
        row: &ItemRow,
        plan: &UploadPlan,
        remote: DriveItem,
    ) -> Result<Result<Option<DriveItem>, Step>, Failure> {
        let ino = row.ino;
        let version = remote_version(&remote);
        // OneDrive already holding exactly these bytes is our own earlier attempt whose answer was lost (a crash
        // ahead of the journal, a reset): not a conflict; nothing to send unless the modification time still
        // differs.
        let ours = same_bytes(&remote, plan.our_hash());
        let same_time = remote.modified().map(|t| t.timestamp()) == plan.modified.map(|t| t.timestamp());
        // OneDrive holding an earlier version this replayer sent of the file (its answer lost, the file changed
        // again since) moved on only by our doing: not a conflict either.
        let echo = !ours && sent_earlier(&plan.sent_before, &remote);
        if ours && same_time {
            tracing::info!(
                ino,
                "OneDrive already holds this version of the file; not sending it again"
            );
            return Ok(Ok(Some(remote)));
        }
        // The baseline as it is now: the upload of the file this one replaced may have been recorded since the row
        // was read, and OneDrive's version is then that upload (the new baseline), not another device's change.
        let moved_on =
            remote_moved_on(row, &version) && self.store.get(ino)?.is_none_or(|now| remote_moved_on(&now, &version));
        if ours || echo || !moved_on {
            return Ok(Ok(Some(
                self.drive
                    .upload(plan.to_item(&remote.id, plan.resume_url.clone()))
                    .await?,
            )));
        }
        if self.sending_to(&remote.id, ino) {
            tracing::debug!(
                ino,
                "OneDrive's version moved on while an upload to the same item is in flight; looking again after it"
            );
            return Ok(Err(Step::Wait(Some(Duration::from_millis(200)))));
        }
        tracing::debug!(
            ino,
            base_ctag = row.base_ctag.as_deref().unwrap_or_default(),
            remote_ctag = version.ctag.as_deref().unwrap_or_default(),
            "OneDrive's version is not the one this change started from"
        );
        let copy = self.send_conflict_copy(plan).await?;
        tracing::warn!(
            ino,
            copy = copy.name.as_deref().unwrap_or_default(),
            "both sides changed a file: OneDrive's version keeps the name, the local one is a conflict copy"
        );
        self.sent.note();
        self.local
            .conflict_committed(ino, entry.seq, &remote_result(&copy), &remote_attrs(&remote))?;
        self.forget_sent(ino)?;
        self.quota_ok()?;
        Ok(Ok(None))
    }

    /// Records a finished upload (`result`) in the store through [`LocalEdits::upload_committed`]; a file deleted
    /// locally while its first upload ran has the new item taken back off OneDrive.
    async fn finish_upload(
        &self,
        entry: &OutboxEntry,
        row: &ItemRow,
        result: DriveItem,
        requested: Option<(u64, String)>,
    ) -> Result<Step, Failure> {
        let ino = row.ino;
        // A first upload created the item where the row was when it started; the row may have moved since.
        let requested = requested.or_else(|| {
            real_id(row)
                .is_none()
                .then(|| (row.parent_ino.unwrap_or_default(), row.name.clone()))
        });
        let committed = RemoteResult {
            requested,
            started_from: real_id(row),
            ..remote_result(&result)
        };
        crate::crash_points::crash_point("replay.upload_done");
        self.sent.note();
        let still_there = self.local.upload_committed(ino, entry.seq, &committed)?;
        self.store.delete_meta(&first_upload_key(entry.seq))?;
        self.forget_sent(ino)?;
        if !still_there && real_id(row).is_none() {
            // Deleted locally while its first upload ran: take the new item back off OneDrive.
            if let Err(e) = self.drive.delete(&result.id, None).await {
                tracing::warn!(ino, error = %e, "could not remove an upload of a file deleted meanwhile");
            }
        }
        self.quota_ok()?;
        tracing::info!(ino, size = row.size, "upload done");
        Ok(Step::Done)
    }

    /// Sends the local version as a conflict copy (a new item beside OneDrive's version) once: a copy an earlier
    /// attempt of this upload made (its answer lost; it holds a version in `sent_before`) is brought up to this
    /// version instead of a second copy being made.
    async fn send_conflict_copy(&self, plan: &UploadPlan) -> Result<DriveItem, Failure> {
        let (name, our_hash) = (&plan.conflict_copy_name, plan.our_hash());
        let earlier = self
            .own_earlier_upload(&plan.parent_id, name, our_hash, &plan.sent_before, false)
            .await?;
        Ok(match earlier {
            Some(item) if same_bytes(&item, our_hash) => item,
            Some(item) => self.drive.upload(plan.to_item(&item.id, None)).await?,
            None => {
                // A new item: never the file's own session (made for its item or its name).
                let copy = UploadRequest {
                    resume_url: None,
                    ..plan.new_here(name.clone(), ConflictBehavior::Rename)
                };
                self.drive.upload(copy).await?
            }
        })
    }

    fn quota_ok(&self) -> Result<(), Failure> {
        if self.store.meta(meta_keys::QUOTA_EXCEEDED)?.is_some() {
            self.store.delete_meta(meta_keys::QUOTA_EXCEEDED)?;
            self.local.set_quota_exceeded(false);
        }
        Ok(())
    }

    fn deletes_confirmed(&self) -> Result<bool, Failure> {
        let Some(until) = self.store.meta(meta_keys::DELETES_CONFIRMED_UNTIL)? else {
            return Ok(false);
        };
        let until = DateTime::parse_from_rfc3339(&until).map(|t| t.with_timezone(&Utc));
        Ok(until.is_ok_and(|t| t > Utc::now()))
    }

    async fn delete(&self, entry: &OutboxEntry, item_id: &str) -> Result<Step, Failure> {
        if self.local.held_open(entry.op.ino()) {
            // Unlinked while open: OneDrive keeps the item until the last close (the filesystem wakes us).
            return Ok(Step::Wait(None));
        }
        {
            let mut recent = self.recent_deletes.lock();
            while recent
                .front()
                .is_some_and(|t| t.elapsed() > self.config.big_delete_window)
            {
                recent.pop_front();
            }
            if recent.len() >= self.config.big_delete_limit {
                drop(recent);
                if !self.deletes_confirmed()? {
                    return Ok(Step::DeleteHeld);
                }
            }
        }
        match self.drive.delete(item_id, None).await {
            Ok(()) | Err(DriveError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        crate::crash_points::crash_point("replay.delete_sent");
        self.sent.note();
        self.recent_deletes.lock().push_back(Instant::now());
        self.store.write_durable(|t| {
            t.trash_delete_done(item_id)?;
            match t.complete(entry.seq) {
                Ok(()) | Err(StoreError::NoSuchOutboxEntry(_)) => Ok(()),
                Err(e) => Err(e),
            }
        })?;
        tracing::info!(ino = entry.op.ino(), "deleted on OneDrive (recycle bin)");
        Ok(Step::Done)
    }

    async fn move_item(&self, entry: &OutboxEntry) -> Result<Step, Failure> {
        let ino = entry.op.ino();
        let Some(row) = self.store.get(ino)? else {
            return self.complete(entry.seq).map(|_| Step::Done);
        };
        let Some(item_id) = real_id(&row) else {
            // Never uploaded: its upload or creation uses the current place.
            return self.complete(entry.seq).map(|_| Step::Done);
        };
        let OutboxOp::Move {
            item_id: journalled_id,
            new_parent_id,
            new_name,
            ..
        } = &entry.op
        else {
            unreachable!("move step of another op")
        };
        if is_real_id(journalled_id) && *journalled_id != item_id {
            // The file took over another item since (an editor's save over an existing file): the move was of
            // its former item, which has a delete of its own queued; moving the item it holds now would be wrong.
            tracing::debug!(ino, "a move of the file's former item is moot; skipped");
            return self.complete(entry.seq).map(|_| Step::Done);
        }
        // The journalled target, not the row's current place: a delta round that reported a remote edit of the
        // item before this move ran has put the row back under its old name (the next round fixes that).
        let journalled_parent = Some(new_parent_id.clone()).filter(|id| is_real_id(id));
        let parent_id = match journalled_parent {
            Some(id) => id,
            None => match self.parent_id(&row)? {
                Some(id) => id,
                None => return Ok(Step::Wait(None)),
            },
        };
        let request = MoveRequest {
            new_parent_id: Some(parent_id),
            new_name: Some(new_name.clone()),
            ..Default::default()
        };
        match self.drive.move_item(&item_id, &request).await {
            Ok(item) => {
                crate::crash_points::crash_point("replay.move_sent");
                self.sent.note();
                self.store.write_durable(|t| {
                    t.set_etag(ino, item.e_tag.as_deref())?;
                    match t.complete(entry.seq) {
                        Ok(()) | Err(StoreError::NoSuchOutboxEntry(_)) => Ok(()),
                        Err(e) => Err(e),
                    }
                })?;
                Ok(Step::Done)
            }
            Err(DriveError::NotFound(_)) => {
                tracing::warn!(ino, "moved here but gone on OneDrive; the next sync settles it");
                self.complete(entry.seq).map(|_| Step::Done)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn mkdir(&self, entry: &OutboxEntry) -> Result<Step, Failure> {
        let ino = entry.op.ino();
        let Some(row) = self.store.get(ino)? else {
            return self.complete(entry.seq).map(|_| Step::Done);
        };
        if real_id(&row).is_some() {
            return self.complete(entry.seq).map(|_| Step::Done);
        }
        let Some(parent_id) = self.parent_id(&row)? else {
            return Ok(Step::Wait(None));
        };
        let item = match self.drive.create_folder(&parent_id, &row.name).await {
            Ok(item) => item,
            Err(DriveError::Conflict(_)) => {
                // Created on OneDrive meanwhile (another device): use that folder.
                let key = name_key(&row.name);
                let existing =
                    self.drive.children(&parent_id).await?.into_iter().find(|c| {
                        c.folder.is_some() && c.name.as_deref().map(name_key).as_deref() == Some(key.as_str())
                    });
                match existing {
                    Some(item) if self.is_free_or_duplicate(&item)? => item,
                    _ => {
                        return Err(
                            DriveError::Conflict(format!("a folder named {:?} cannot be created", row.name)).into(),
                        )
                    }
                }
            }
            Err(e) => return Err(e.into()),
        };
        let attrs = remote_attrs(&item);
        crate::crash_points::crash_point("replay.mkdir_sent");
        self.sent.note();
        self.store.write_durable(|t| {
            drop_delta_duplicate(t, ino, &item.id)?;
            t.set_item_id(ino, &item.id)?;
            // OneDrive's creation time becomes the folder's remote baseline; the local mtime (moved by entries
            // created in it meanwhile) stays.
            t.set_remote_mtime(ino, attrs.mtime)?;
            t.update_remote(ino, &attrs)?;
            match t.complete(entry.seq) {
                Ok(()) | Err(StoreError::NoSuchOutboxEntry(_)) => Ok(()),
                Err(e) => Err(e),
            }
        })?;
        Ok(Step::Done)
    }
}

impl OutboxReplayer {
    /// Sends a folder's local mtime to its `fileSystemInfo` (`utimensat` on a folder).
    async fn set_times(&self, entry: &OutboxEntry) -> Result<Step, Failure> {
        let ino = entry.op.ino();
        let Some(row) = self.store.get(ino)?.filter(|r| r.is_dir()) else {
            return self.complete(entry.seq).map(|_| Step::Done);
        };
        let Some(item_id) = real_id(&row) else {
            // Not on OneDrive yet: its folder creation, earlier in the journal, goes first.
            return Ok(Step::Wait(None));
        };
        let request = MoveRequest {
            modified: Utc.timestamp_opt(row.mtime, 0).single(),
            ..Default::default()
        };
        match self.drive.move_item(&item_id, &request).await {
            Ok(item) => {
                self.sent.note();
                let remote = item.modified().map_or(row.mtime, |t| t.timestamp());
                self.store.write_durable(|t| {
                    t.set_etag(ino, item.e_tag.as_deref())?;
                    t.set_remote_mtime(ino, remote)?;
                    match t.complete(entry.seq) {
                        Ok(()) | Err(StoreError::NoSuchOutboxEntry(_)) => Ok(()),
                        Err(e) => Err(e),
                    }
                })?;
                tracing::debug!(ino, "folder time sent to OneDrive");
                Ok(Step::Done)
            }
            Err(DriveError::NotFound(_)) => {
                tracing::warn!(
                    ino,
                    "folder time set here but the folder is gone on OneDrive; the next sync settles it"
                );
                self.complete(entry.seq).map(|_| Step::Done)
            }
            Err(e) => Err(e.into()),
        }
    }
}

enum Failure {
    Drive(DriveError),
    Store(StoreError),
}

impl From<DriveError> for Failure {
    fn from(e: DriveError) -> Self {
        Failure::Drive(e)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

/// Starts replaying the outbox of a mounted gallery: runs an [`OutboxReplayer`] on `runtime`, woken by `wake` (the
/// filesystem notifies it when it journals a change), counting the changes it sends in `sent`. The mount journals what the last run left unjournalled
/// before (`GalleryFs::journal_leftovers`). Abort the returned task (or drop the runtime) to stop;
/// nothing is lost by stopping at any point.
pub fn spawn_replayer(
    runtime: &tokio::runtime::Handle,
    store: Arc<Store>,
    drive: Arc<dyn DriveApi>,
    local: Arc<dyn LocalEdits>,
    wake: Arc<tokio::sync::Notify>,
    sent: Arc<SentChanges>,
    config: ReplayConfig,
) -> (Arc<OutboxReplayer>, tokio::task::JoinHandle<()>) {
    let replayer = Arc::new(OutboxReplayer::new(store, drive, local, config).with_sent_changes(sent));
    let task = runtime.spawn(replayer.clone().run(wake));
    (replayer, task)
}

/// Lifts the big-delete guard for [`DELETE_CONFIRMATION`] (what `galleryfs trash confirm-deletes` does).
pub fn confirm_deletes(store: &Store) -> Result<(), StoreError> {
    let until = Utc::now() + chrono::Duration::from_std(DELETE_CONFIRMATION).unwrap_or_default();
    store.set_meta(meta_keys::DELETES_CONFIRMED_UNTIL, &until.to_rfc3339())
}

/// Drops every pending delete (what `galleryfs trash cancel-deletes` does): the items stay on OneDrive, their
/// trash records are forgotten, and the delta link is dropped so the next sync enumerates the gallery again and
/// lists them once more. Returns how many deletes were dropped.
pub fn cancel_deletes(store: &Store) -> Result<usize, StoreError> {
    let pending = store.pending()?;
    store.write_durable(|t| {
        let mut n = 0;
        for e in &pending {
            if let OutboxOp::Delete { item_id, .. } = &e.op {
                t.complete(e.seq)?;
                t.forget_trash(item_id)?;
                n += 1;
            }
        }
        if n > 0 {
            t.delete_meta(crate::store::meta_keys::DELTA_LINK)?;
            t.delete_meta(meta_keys::OUTBOX_MESSAGE)?;
        }
        Ok(n)
    })
}
