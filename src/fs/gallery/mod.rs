//! [`GalleryFs`]: the gallery's filesystem semantics over the metadata store. Listing and `stat` come from the
//! store only; originals are read through [`Originals`] (on demand, pinned to the version seen at open);
//! every directory answers the hidden `.sh_thumbnails` repository from OneDrive's thumbnails; xattrs expose the
//! contract's `user.galleryfs.*` attributes. Remote changes applied by the sync engine come back here as kernel
//! cache invalidations.
//!
//! Names: OneDrive is case-insensitive and case-preserving, so lookups fold case (the store's name key) while
//! listings show names as OneDrive spells them.
//!
//! Edits: [`writes`] answers the write syscalls by staging content ([`staging`]) and journalling every change in
//! the store's durable outbox before replying; [`local_edits`] answers what the outbox replayer asks of the
//! filesystem (`sync::local_edits::LocalEdits`: write-back delay, files open for writing, upload results);
//! [`names`] refuses names OneDrive would reject.
//!
//! Cached originals and FUSE passthrough. A read-only open of a file with no local state whose original is
//! complete (verified) in the cache gets that cache file as its handle's file, which the FUSE layer may hand to
//! the kernel ([`FsCore::passthrough_file`]): the kernel then reads it without the daemon. The kernel fails every
//! later open of the inode that is not a passthrough open of the same file, so the write side keeps one file per
//! inode: a writer's open (or `O_TRUNC`) of a file that has open handles hands the complete cached original over
//! to staging instead of copying it (`writes::stage`: the cache forgets that version, the file keeps its inode
//! under its staging name), marks the row `Dirty` durably before the open returns, and flags the staged file
//! `may_change`. Every open of the inode from then on is offered that one file to join the passthrough opens
//! ([`FsCore::passthrough_join_file`]): writes through the kernel land in the staged file, which is exactly
//! today's write path (truncate, `O_TRUNC`, rename and unlink act on the staged file as for any edit). Because the
//! daemon does not see those writes, a `may_change` file takes its size and mtime from the staged file; a
//! close only syncs it to disk, and the last writer's release re-hashes it: still OneDrive's bytes (and no upload
//! journalled) → the row is clean again and the file goes back to the cache; else an upload is journalled, as is
//! every fsync or truncate. A restart finds the row `Dirty` with staged content and journals it
//! (`local_edits::journal_leftovers`), so a `kill -9` after a write through the kernel loses nothing (at worst an
//! unchanged file is uploaded once more), and the bytes become a cached original again only through
//! `keep_uploaded`, which checks them against OneDrive's hash. Nothing the kernel writes can thus be taken for
//! OneDrive's version. Limits: the hand-over needs staging and the cache on one filesystem (else the original
//! is copied up, and a writer's open next to a passthrough reader fails with `EIO`); and a new version (a remote
//! change) opened while passthrough opens of the old file last is refused by the kernel (`EIO`) rather than
//! served the old bytes. An open of the version other handles read is given their file (`open_version_file`),
//! so freeing or evicting it, or fetching it anew, while they are open leaves one file per inode.
//!
//! Reading: [`viewer_readahead`] fetches the next photos of a folder opened in order (a viewer's "next").
//!
//! Live views: [`live`] turns each applied round into the syscalls that replay it through the mount, so that
//! inotify watchers see remote changes as they would see local ones.
//!
//! Lock order. A lock is taken only while holding locks above it in this list, never one below; only the two
//! async mutexes are held across an `.await`.
//! 1. `namespace` (async): create, mkdir, unlink, rmdir, rename (`writes.rs`), held across their store
//!    transaction and, for `create`, the open that stages the new file (so it comes before 2).
//! 2. `stage_lock` (async): setting up a staged copy (`writes::stage`), held across the copy-up's download (the
//!    content store's own locks, `cache/disk_cache.rs`, come after it).
//! 3. `timeline.index`: held while the Timeline's index is rebuilt from one store read (`timeline.rs`).
//! 4. The store's connections (`store/mod.rs`): a write transaction or a read snapshot. Inside a write closure
//!    only the short mutexes of 5 and 6 are taken (`writes::move_entry`, `writes::remove_item`: `local`,
//!    `orphans`, `open_files`), never a `Store` method (the writer is not re-entrant).
//! 5. `local`, then `orphans` (`writes::writer_closed` holds both; it reads the store before taking `local`).
//! 6. Leaves, each taken alone: `handles`, `open_files`, `born_here`, `conflicted`, `viewer`'s map, and the
//!    `RwLock`s `quota`, `pins` and `invalidator` (a read guard of which is held while the kernel is told to drop
//!    an entry: a notification to the kernel, no lock of ours).
//!
//! Callers from below hold their own locks first: the sync engine runs its `on_changes` hooks
//! ([`GalleryFs::remote_changes_applied`]) under its hook list's read lock, and the outbox replayer calls
//! [`local_edits`] under its pass lock, reading `local` before its commit transaction, never inside it.

pub mod live;
pub mod local_edits;
pub mod names;
pub mod staging;
pub mod timeline;
pub mod viewer_readahead;
mod writes;

pub use staging::Staging;

use crate::fs::content::{OriginalReader, Originals, ThumbnailJpegs};
use crate::fs::core::{FsCore, FsResult, Invalidator, NoInvalidator};
use crate::fs::error::FsError;
use crate::fs::types::*;
use crate::fs::virtual_nodes::{VirtualInodes, VirtualNode};
use crate::store::{ContentState, ItemKind, ItemRow, Store, StoreError};
use crate::sync::capture_date;
use crate::sync::delta_apply::AppliedChanges;
use crate::thumbnails::{self, ThumbExtra, ThumbSize, SHARED_REPO_DIR};
use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub const XATTR_STATE: &str = "user.galleryfs.state";
pub const XATTR_ID: &str = "user.galleryfs.id";
/// The capture date of a photo or video (RFC 3339), the date the Timeline files it under.
pub const XATTR_TAKEN: &str = "user.galleryfs.taken";
pub const XATTR_HASH: &str = "user.galleryfs.quickxorhash";
pub const XATTR_PIN: &str = "user.galleryfs.pin";
/// Read-only: bytes of the original cached on this device (for `galleryfs status PATH` and pin progress).
pub const XATTR_CACHED_BYTES: &str = "user.galleryfs.cached_bytes";
/// The photo facet OneDrive reported (JSON: taken, camera_make, camera_model, width, height, location), for
/// `status PATH`; not listed.
pub const XATTR_PHOTO: &str = "user.galleryfs.photo";
/// Write-only: `1` frees the cached original ("free up space"), as `galleryfs free` does.
pub const XATTR_FREE: &str = "user.galleryfs.free";

/// How the mount presents files.
#[derive(Clone, Debug)]
pub struct GalleryConfig {
    pub uid: u32,
    pub gid: u32,
    pub file_perm: u16,
    pub dir_perm: u16,
    pub read_only: bool,
    /// Serve `.sh_thumbnails` (contract: unless `thumbnails=off`).
    pub thumbnails: bool,
    pub attr_ttl: Duration,
    pub entry_ttl: Duration,
    /// Where changed files are staged until uploaded (`<cache dir>/<account>/staging`). Without one the mount
    /// refuses writes with `EROFS`.
    pub staging_dir: Option<PathBuf>,
    /// Delay after the last close of a changed file before its upload starts (`write_back`, default 2 s).
    pub write_back: Duration,
    /// Serve `Timeline/YYYY/YYYY-MM/` at the root (contract: `timeline=on|off`, default on).
    pub timeline: bool,
}

impl Default for GalleryConfig {
    fn default() -> Self {
        Self {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            file_perm: 0o644,
            dir_perm: 0o755,
            read_only: false,
            thumbnails: true,
            attr_ttl: Duration::from_secs(1),
            entry_ttl: Duration::from_secs(1),
            staging_dir: None,
            write_back: Duration::from_secs(2),
            timeline: true,
        }
    }
}

/// What `statfs` reports: OneDrive's quota in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaFigures {
    pub total: u64,
    pub remaining: u64,
}

/// Something to do when a file is pinned or unpinned through the `user.galleryfs.pin` attribute.
pub trait PinRequests: Send + Sync {
    fn pin_changed(&self, ino: Ino, pinned: bool);
}

enum Handle {
    File {
        item: Box<ItemRow>,
        reader: tokio::sync::OnceCell<Box<dyn OriginalReader>>,
        /// The cached original, when it was complete at open: reads are `pread`s of it (and the kernel may read
        /// it itself through FUSE passthrough).
        complete: Option<Arc<std::fs::File>>,
        /// A read of this handle failed and the kernel's pages of the file were dropped (once per handle).
        failed: AtomicBool,
    },
    /// A file whose content lives in staging (changed locally, or opened for writing).
    Staged {
        file: Arc<std::fs::File>,
        writable: bool,
    },
    Bytes(Bytes),
}

pub struct GalleryFs {
    store: Arc<Store>,
    content: Arc<dyn Originals>,
    thumbs: Arc<dyn ThumbnailJpegs>,
    config: GalleryConfig,
    virtuals: VirtualInodes,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    next_fh: AtomicU64,
    quota: RwLock<Option<QuotaFigures>>,
    invalidator: RwLock<Arc<dyn Invalidator>>,
    pins: RwLock<Option<Arc<dyn PinRequests>>>,
    staging: Option<Staging>,
    /// Files whose content is staged, with their in-memory write state.
    local: Mutex<HashMap<Ino, writes::LocalFile>>,
    /// Serializes setting up staged copies (a copy-up fetches the whole original once).
    stage_lock: tokio::sync::Mutex<()>,
    quota_exceeded: AtomicBool,
    /// Woken when the outbox has new work (a journalled change, an fsync).
    outbox_wake: Arc<tokio::sync::Notify>,
    /// Dirty files OneDrive changed meanwhile (state `conflict` until their upload makes a conflict copy).
    conflicted: Mutex<std::collections::HashSet<Ino>>,
    /// Files created through this mount, with when: a recent one renamed over an existing file is an editor's
    /// save even when its own upload already finished (see `writes::BORN_HERE_WINDOW`).
    born_here: Mutex<HashMap<Ino, std::time::Instant>>,
    /// The last file opened per folder, for the read-ahead of a viewer's "next".
    viewer: viewer_readahead::ViewerTracker,
    /// The Timeline's index of media files by month.
    timeline: timeline::Timeline,
    /// Open file handles per inode (originals and staged files).
    open_files: Mutex<HashMap<Ino, u32>>,
    /// Files removed (unlink, rename over) while open — or, under a kernel, while it may still reach them: their
    /// rows stay, detached from any folder, so open descriptors keep reading them (POSIX) and an `open` that
    /// resolved the name just before the removal finds them, until the last close or the kernel's `forget` (see
    /// `writes::file_closed`, `writes::inode_forgotten`).
    orphans: Mutex<std::collections::HashSet<Ino>>,
    /// Set once a kernel serves this filesystem ([`FsCore::kernel_attached`]): it holds references to the
    /// inodes it looked up until it sends `forget`.
    kernel_refs: std::sync::atomic::AtomicBool,
    /// Serializes the operations that change names (create, mkdir, unlink, rmdir, rename): each reads the rows it
    /// changes (a rename's target, say) before its transaction, so two at once could act on a stale row.
    namespace: tokio::sync::Mutex<()>,
}

fn store_err(e: StoreError) -> FsError {
    match e {
        StoreError::NoSuchInode(_) => FsError::NotFound,
        StoreError::NameExists { .. } => FsError::Exists,
        StoreError::NotADirectory(_) => FsError::NotDir,
        other => FsError::io(format!("metadata store: {other}")),
    }
}

/// Up to `size` bytes of `b` at `offset` (none past its end).
fn slice_at(b: &Bytes, offset: u64, size: u32) -> Bytes {
    let start = (offset as usize).min(b.len());
    let end = (start + size as usize).min(b.len());
    b.slice(start..end)
}

fn read_file_at(file: &std::fs::File, offset: u64, size: u32) -> FsResult<Bytes> {
    pread_bytes(file, offset, size as usize).map_err(writes::staging_err)
}

/// Up to `len` bytes of `file` at `offset` (fewer at its end), read into a fresh buffer that is not zeroed first.
fn pread_bytes(file: &std::fs::File, offset: u64, len: usize) -> std::io::Result<Bytes> {
    use std::os::fd::AsRawFd;
    let mut buf = bytes::BytesMut::with_capacity(len);
    let mut done = 0usize;
    while done < len {
        // SAFETY: the destination is the buffer's spare capacity after the `done` bytes already read, `len - done`
        // bytes long; pread writes at most that many bytes there.
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                buf.as_mut_ptr().add(done).cast::<libc::c_void>(),
                len - done,
                (offset + done as u64) as libc::off_t,
            )
        };
        match n {
            0 => break,
            n if n > 0 => done += n as usize,
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    // SAFETY: pread initialised the first `done` bytes.
    unsafe { buf.set_len(done) };
    Ok(buf.freeze())
}

fn secs(t: i64) -> SystemTime {
    if t >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(t as u64)
    } else {
        SystemTime::UNIX_EPOCH
    }
}

/// The contract's `user.galleryfs.state` of an item.
/// The photo facet as `status PATH --json` shows it.
fn photo_json(f: &crate::store::MediaFacet) -> serde_json::Value {
    let taken = f
        .taken
        .and_then(|s| chrono::DateTime::<chrono::Utc>::from_timestamp(s, 0))
        .map(capture_date::rfc3339);
    let location = match (f.latitude, f.longitude) {
        (Some(latitude), Some(longitude)) => {
            serde_json::json!({"latitude": latitude, "longitude": longitude, "altitude": f.altitude})
        }
        _ => serde_json::Value::Null,
    };
    serde_json::json!({
        "taken": taken, "camera_make": f.camera_make, "camera_model": f.camera_model,
        "width": f.width, "height": f.height, "location": location,
    })
}

/// What creating, `mkdir` or renaming into the Timeline gets.
const TIMELINE_READ_ONLY: FsError = FsError::NotPermitted {
    what: "creating or renaming into the Timeline",
};

pub fn item_state(item: &ItemRow) -> &'static str {
    match item.content_state {
        ContentState::Dirty => "dirty",
        _ if item.pinned => "pinned",
        ContentState::Cached => "cached",
        ContentState::Cloud | ContentState::Partial => "cloud",
    }
}

impl GalleryFs {
    pub fn new(
        store: Arc<Store>,
        content: Arc<dyn Originals>,
        thumbs: Arc<dyn ThumbnailJpegs>,
        config: GalleryConfig,
    ) -> Self {
        let staging = match (&config.staging_dir, config.read_only) {
            (Some(dir), false) => match Staging::open(dir) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(dir = %dir.display(), error = %e, "cannot use the staging directory: writes are refused");
                    None
                }
            },
            _ => None,
        };
        Self {
            store,
            content,
            thumbs,
            config,
            virtuals: VirtualInodes::default(),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            quota: RwLock::new(None),
            invalidator: RwLock::new(Arc::new(NoInvalidator)),
            pins: RwLock::new(None),
            staging,
            local: Mutex::new(HashMap::new()),
            stage_lock: tokio::sync::Mutex::new(()),
            quota_exceeded: AtomicBool::new(false),
            outbox_wake: Arc::new(tokio::sync::Notify::new()),
            conflicted: Mutex::new(std::collections::HashSet::new()),
            born_here: Mutex::new(HashMap::new()),
            viewer: Default::default(),
            timeline: Default::default(),
            open_files: Mutex::new(HashMap::new()),
            orphans: Mutex::new(std::collections::HashSet::new()),
            kernel_refs: std::sync::atomic::AtomicBool::new(false),
            namespace: tokio::sync::Mutex::new(()),
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Connects the kernel-cache invalidator once mounted.
    pub fn set_invalidator(&self, inv: Arc<dyn Invalidator>) {
        *self.invalidator.write() = inv;
    }

    pub fn set_pin_requests(&self, pins: Arc<dyn PinRequests>) {
        *self.pins.write() = Some(pins);
    }

    pub fn set_quota(&self, quota: Option<QuotaFigures>) {
        *self.quota.write() = quota;
    }

    /// Tells the kernel to forget what a delta round changed (names, attributes, cached pages), then has the round
    /// replayed through the mount for inotify watchers ([`live`]).
    pub fn remote_changes_applied(&self, changes: &AppliedChanges) {
        self.timeline_changed();
        self.conflicted.lock().extend(
            changes
                .conflicts
                .iter()
                .filter(|c| c.kind == crate::sync::delta_apply::ConflictKind::RemoteContentChanged)
                .map(|c| c.ino),
        );
        let inv = self.invalidator.read().clone();
        for (parent, name) in &changes.stale_entries {
            inv.entry(*parent, OsStr::new(name));
        }
        for ino in changes
            .updated
            .iter()
            .chain(&changes.content_changed)
            .chain(&changes.removed)
        {
            inv.inode(*ino);
        }
        for parent in &changes.parents_changed {
            inv.inode(*parent);
        }
        if changes.root_updated {
            inv.inode(ROOT_INO);
        }
        if self.kernel_refs.load(Ordering::Relaxed) {
            let plan = self.replay_plan(changes);
            if !plan.is_empty() {
                inv.replay(plan);
            }
        }
    }

    fn item(&self, ino: Ino) -> FsResult<ItemRow> {
        self.store.get(ino).map_err(store_err)?.ok_or(FsError::NotFound)
    }

    fn attr_of(&self, item: &ItemRow) -> Attr {
        let dir = item.kind == ItemKind::Dir;
        let local = self
            .local
            .lock()
            .get(&item.ino)
            .map(|l| (l.size, l.mtime, l.may_change));
        let (size, mtime) = match local {
            Some((size, mtime, false)) => (size, mtime),
            Some((size, mtime, true)) => self.may_change_attrs(item.ino).unwrap_or((size, mtime)),
            None => (item.size, item.mtime),
        };
        let ctime = item.ctime.map_or(mtime, |c| c.max(mtime));
        Attr {
            ino: item.ino,
            kind: if dir { FileKind::Directory } else { FileKind::File },
            size: if dir { 0 } else { size },
            mtime: secs(mtime),
            ctime: secs(ctime),
            perm: if dir {
                self.config.dir_perm
            } else {
                self.config.file_perm
            },
            // A folder is linked from its parent, from its own `.` and from each subfolder's `..`; a file removed
            // while open (detached) has no links left, as fstat on it shows.
            nlink: if dir {
                2 + self.subfolders(item.ino)
            } else if item.parent_ino.is_none() && item.ino != ROOT_INO {
                0
            } else if self.in_timeline(item) {
                // Its album entry and its Timeline entry.
                2
            } else {
                1
            },
            uid: self.config.uid,
            gid: self.config.gid,
        }
    }

    /// Subfolders of folder `ino`, for its link count.
    fn subfolders(&self, ino: Ino) -> u32 {
        match self.store.subfolder_count(ino) {
            Ok(n) => u32::try_from(n).unwrap_or(u32::MAX - 2),
            Err(e) => {
                tracing::warn!(ino, error = %e, "cannot count subfolders; st_nlink shows 2");
                0
            }
        }
    }

    fn entry_of(&self, attr: Attr) -> Entry {
        Entry {
            attr,
            attr_ttl: self.config.attr_ttl,
            entry_ttl: self.config.entry_ttl,
            generation: 0,
        }
    }

    fn virtual_attr(&self, ino: Ino, node: VirtualNode, size: u64, mtime: i64) -> Attr {
        Attr {
            ino,
            kind: if node.is_dir() {
                FileKind::Directory
            } else {
                FileKind::File
            },
            size,
            mtime: secs(mtime),
            ctime: secs(mtime),
            perm: if node.is_dir() { 0o555 } else { 0o444 },
            nlink: if node.is_dir() { 2 } else { 1 },
            uid: self.config.uid,
            gid: self.config.gid,
        }
    }

    /// The PNG served for `file`'s thumbnail at `size` in the shared repository, if OneDrive has one.
    fn shared_png(&self, file: &ItemRow, size: ThumbSize) -> Option<Vec<u8>> {
        let jpeg = self.thumbs.thumbnail(&file.item_id, size)?;
        let extra = ThumbExtra {
            original_size: Some(file.size),
            mimetype: file.mime_type.clone(),
            ..Default::default()
        };
        match thumbnails::shared_repo::render_shared_png(&jpeg, size, OsStr::new(&file.name), file.mtime, &extra) {
            Ok(png) => Some(png),
            Err(e) => {
                tracing::warn!(ino = file.ino, error = %e, "cannot render a thumbnail for the shared repository");
                None
            }
        }
    }

    /// The files of a folder that `.sh_thumbnails` answers for, under the names the folder shows (an album or a
    /// Timeline month).
    fn thumb_dir_files(&self, dir: Ino) -> FsResult<Vec<(String, ItemRow)>> {
        if self.is_timeline_dir(dir) {
            return self.timeline_month_files(dir);
        }
        Ok(self
            .store
            .children(dir)
            .map_err(store_err)?
            .into_iter()
            .filter(|c| c.kind == ItemKind::File)
            .map(|c| (c.name.clone(), c))
            .collect())
    }

    fn thumb_dir_mtime(&self, dir: Ino) -> FsResult<i64> {
        match self.virtuals.node(dir) {
            Some(node) => Ok(self
                .timeline_attr(dir, node)?
                .mtime
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)),
            None => Ok(self.item(dir)?.mtime),
        }
    }

    fn virtual_lookup(&self, parent: VirtualNode, name: &OsStr) -> FsResult<Entry> {
        match parent {
            VirtualNode::Timeline | VirtualNode::TimelineYear { .. } | VirtualNode::TimelineMonth { .. } => {
                self.timeline_lookup(parent, name)
            }
            VirtualNode::Repo { dir } => {
                let size = name
                    .to_str()
                    .and_then(ThumbSize::from_dir_name)
                    .filter(|s| ThumbSize::SEEDED.contains(s));
                let size = size.ok_or(FsError::NotFound)?;
                let node = VirtualNode::SizeDir { dir, size };
                let ino = self.virtuals.ino_of(node);
                let mtime = self.thumb_dir_mtime(dir)?;
                Ok(self.entry_of(self.virtual_attr(ino, node, 0, mtime)))
            }
            VirtualNode::SizeDir { dir, size } => {
                let md5 = thumbnails::shared_repo::parse_thumbnail_file_name(name).ok_or(FsError::NotFound)?;
                let files = self.thumb_dir_files(dir)?;
                let found = thumbnails::find_name_for_md5(files.iter().map(|(n, _)| OsStr::new(n.as_str())), &md5)
                    .ok_or(FsError::NotFound)?;
                let (_, file) = files
                    .iter()
                    .find(|(n, _)| OsStr::new(n) == found)
                    .ok_or(FsError::NotFound)?;
                let png = self.shared_png(file, size).ok_or(FsError::NotFound)?;
                let node = VirtualNode::Thumb {
                    dir,
                    size,
                    file: file.ino,
                };
                let ino = self.virtuals.ino_of(node);
                Ok(self.entry_of(self.virtual_attr(ino, node, png.len() as u64, file.mtime)))
            }
            VirtualNode::Thumb { .. } => Err(FsError::NotDir),
        }
    }

    fn virtual_getattr(&self, ino: Ino, node: VirtualNode) -> FsResult<Attr> {
        match node {
            VirtualNode::Timeline | VirtualNode::TimelineYear { .. } | VirtualNode::TimelineMonth { .. } => {
                self.timeline_attr(ino, node)
            }
            VirtualNode::Repo { dir } | VirtualNode::SizeDir { dir, .. } => {
                Ok(self.virtual_attr(ino, node, 0, self.thumb_dir_mtime(dir)?))
            }
            VirtualNode::Thumb { size, file, .. } => {
                let item = self.item(file)?;
                let png = self.shared_png(&item, size).ok_or(FsError::NotFound)?;
                Ok(self.virtual_attr(ino, node, png.len() as u64, item.mtime))
            }
        }
    }

    fn virtual_readdir(&self, ino: Ino, node: VirtualNode, offset: u64, max: usize) -> FsResult<Vec<DirEntry>> {
        let mut names: Vec<(Ino, OsString, FileKind)> = vec![
            (ino, ".".into(), FileKind::Directory),
            (ino, "..".into(), FileKind::Directory),
        ];
        match node {
            VirtualNode::Repo { dir } => {
                for size in ThumbSize::SEEDED {
                    let n = VirtualNode::SizeDir { dir, size };
                    names.push((self.virtuals.ino_of(n), size.dir_name().into(), FileKind::Directory));
                }
            }
            VirtualNode::SizeDir { dir, size } => {
                for (shown, child) in self.thumb_dir_files(dir)? {
                    if child.is_media && self.thumbs.thumbnail(&child.item_id, size).is_some() {
                        let n = VirtualNode::Thumb {
                            dir,
                            size,
                            file: child.ino,
                        };
                        let name = format!("{}.png", thumbnails::md5_of_name(OsStr::new(&shown)));
                        names.push((self.virtuals.ino_of(n), name.into(), FileKind::File));
                    }
                }
            }
            VirtualNode::Thumb { .. } => return Err(FsError::NotDir),
            VirtualNode::Timeline | VirtualNode::TimelineYear { .. } | VirtualNode::TimelineMonth { .. } => {
                unreachable!("the Timeline lists its own folders")
            }
        }
        Ok(names
            .into_iter()
            .enumerate()
            .skip(offset as usize)
            .take(max)
            .map(|(i, (ino, name, kind))| DirEntry {
                ino,
                name,
                kind,
                offset: i as u64 + 1,
                entry: None,
            })
            .collect())
    }

    /// A read of a cloud file through the content cache. A failed read drops every page the kernel holds of the
    /// file, read-ahead included: pages answered before a download failed its check (or was cut short, or was
    /// overtaken by a new version) must not be served from the kernel's cache afterwards. Once per handle: the
    /// kernel retries reads whose pages were dropped under them, so dropping them at every failure would feed a
    /// burst of failing reads (and later opens of an unverified version drop the pages anyway).
    async fn read_through_cache(
        &self,
        item: &ItemRow,
        reader: &tokio::sync::OnceCell<Box<dyn OriginalReader>>,
        failed: &AtomicBool,
        offset: u64,
        size: u32,
    ) -> FsResult<Bytes> {
        let reader = reader.get_or_try_init(|| self.content.open_reader(item)).await?;
        let read = reader.read(offset, size).await;
        self.note_read_failure(item, failed, &read);
        read
    }

    /// After a handle's first failed read of an original, the kernel's cached pages of the file go (they may
    /// hold bytes of a version that failed its check).
    fn note_read_failure(&self, item: &ItemRow, failed: &AtomicBool, read: &FsResult<Bytes>) {
        if read.is_err() && !failed.swap(true, Ordering::SeqCst) {
            self.invalidator.read().inode(item.ino);
        }
    }

    /// The complete original an open handle of `item`'s current version already reads (verified when it was
    /// opened; unchanged since, as a file written through the kernel is staged and its row `Dirty` until its
    /// upload gives it a new version).
    fn open_version_file(&self, item: &ItemRow) -> Option<Arc<std::fs::File>> {
        if item.size == 0 || item.is_dirty() || item.ctag.is_none() {
            return None;
        }
        self.handles.lock().values().find_map(|h| match &**h {
            Handle::File {
                item: open,
                complete: Some(file),
                ..
            } if open.ino == item.ino && open.ctag == item.ctag && open.size == item.size => Some(file.clone()),
            _ => None,
        })
    }

    fn add_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles.lock().insert(fh, Arc::new(h));
        fh
    }

    fn check_name(name: &OsStr) -> FsResult<()> {
        if name.len() > 255 {
            return Err(FsError::NameTooLong);
        }
        Ok(())
    }
}

#[async_trait]
impl FsCore for GalleryFs {
    fn kernel_attached(&self) {
        self.kernel_refs.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn forget(&self, ino: Ino, _nlookup: u64) {
        // The kernel sends one forget when it drops an inode for good (with every lookup it counted).
        self.inode_forgotten(ino);
    }

    async fn lookup(&self, _caller: Caller, parent: Ino, name: &OsStr) -> FsResult<Entry> {
        Self::check_name(name)?;
        if let Some(node) = self.virtuals.node(parent) {
            return self.virtual_lookup(node, name);
        }
        if self.config.thumbnails && name == SHARED_REPO_DIR {
            let dir = self.item(parent)?;
            if dir.kind != ItemKind::Dir {
                return Err(FsError::NotDir);
            }
            let node = VirtualNode::Repo { dir: parent };
            let ino = self.virtuals.ino_of(node);
            return Ok(self.entry_of(self.virtual_attr(ino, node, 0, dir.mtime)));
        }
        let name = name.to_str().ok_or(FsError::NotFound)?;
        let item = self.store.lookup(parent, name).map_err(store_err)?;
        match item {
            Some(item) => Ok(self.entry_of(self.attr_of(&item))),
            None if parent == ROOT_INO && self.timeline_on() && name == timeline::TIMELINE_DIR => {
                let ino = self.timeline_root_ino();
                Ok(self.entry_of(self.timeline_attr(ino, VirtualNode::Timeline)?))
            }
            None => Err(FsError::NotFound),
        }
    }

    async fn getattr(&self, ino: Ino) -> FsResult<(Attr, Duration)> {
        if let Some(node) = self.virtuals.node(ino) {
            return Ok((self.virtual_getattr(ino, node)?, self.config.attr_ttl));
        }
        match self.item(ino) {
            Ok(item) => Ok((self.attr_of(&item), self.config.attr_ttl)),
            // Unlinked while a writer still has it open: fstat goes on working (POSIX).
            Err(FsError::NotFound) => {
                let open = self.local.lock().get(&ino).map(|l| (l.size, l.mtime));
                let (size, mtime) = open.ok_or(FsError::NotFound)?;
                let attr = Attr {
                    ino,
                    kind: FileKind::File,
                    size,
                    mtime: secs(mtime),
                    ctime: secs(mtime),
                    perm: self.config.file_perm,
                    nlink: 0,
                    uid: self.config.uid,
                    gid: self.config.gid,
                };
                Ok((attr, Duration::ZERO))
            }
            Err(e) => Err(e),
        }
    }

    async fn setattr(&self, _caller: Caller, ino: Ino, set: SetAttr) -> FsResult<(Attr, Duration)> {
        if (set.size.is_some() || set.mtime.is_some()) && !VirtualInodes::is_virtual(ino) {
            self.set_content_attrs(ino, &set).await?;
        }
        // chmod/chown succeed without effect (contract): modes come from umask, owner from uid/gid.
        self.getattr(ino).await
    }

    async fn readdir(&self, ino: Ino, _fh: u64, offset: u64, max: usize, plus: bool) -> FsResult<Vec<DirEntry>> {
        if let Some(node) = self.virtuals.node(ino) {
            if self.is_timeline_dir(ino) {
                return self.timeline_readdir(ino, node, offset, max, plus);
            }
            return self.virtual_readdir(ino, node, offset, max);
        }
        let dir = self.item(ino)?;
        if dir.kind != ItemKind::Dir {
            return Err(FsError::NotDir);
        }
        let mut out = Vec::new();
        if offset == 0 {
            out.push(DirEntry {
                ino,
                name: ".".into(),
                kind: FileKind::Directory,
                offset: 1,
                entry: None,
            });
        }
        if offset <= 1 {
            let parent = dir.parent_ino.unwrap_or(ino);
            out.push(DirEntry {
                ino: parent,
                name: "..".into(),
                kind: FileKind::Directory,
                offset: 2,
                entry: None,
            });
        }
        let start = offset.saturating_sub(2);
        let want = max.saturating_sub(out.len());
        let children = self.store.children_at(ino, start, want).map_err(store_err)?;
        let listed = children.len() as u64;
        for (i, child) in children.into_iter().enumerate() {
            let attr = self.attr_of(&child);
            out.push(DirEntry {
                ino: child.ino,
                kind: attr.kind,
                name: OsString::from(child.name),
                offset: start + i as u64 + 3,
                entry: plus.then(|| self.entry_of(attr)),
            });
        }
        // The Timeline comes after the root's own entries (unless an item of the gallery has its name).
        if ino == ROOT_INO && self.timeline_on() && out.len() < max {
            let total = self.store.child_count(ROOT_INO).map_err(store_err)?;
            let taken = self
                .store
                .lookup(ROOT_INO, timeline::TIMELINE_DIR)
                .map_err(store_err)?
                .is_some();
            if start + listed == total && !taken {
                let tl = self.timeline_root_ino();
                let attr = self.timeline_attr(tl, VirtualNode::Timeline)?;
                out.push(DirEntry {
                    ino: tl,
                    kind: FileKind::Directory,
                    name: timeline::TIMELINE_DIR.into(),
                    offset: total + 3,
                    entry: plus.then(|| self.entry_of(attr)),
                });
            }
        }
        Ok(out)
    }

    async fn open(&self, _caller: Caller, ino: Ino, mode: OpenMode) -> FsResult<Opened> {
        if let Some(node) = self.virtuals.node(ino) {
            let VirtualNode::Thumb { size, file, .. } = node else {
                return Err(FsError::IsDir);
            };
            if mode.write {
                return Err(FsError::NotPermitted {
                    what: "changes to the thumbnail repository",
                });
            }
            let png = self.shared_png(&self.item(file)?, size).ok_or(FsError::NotFound)?;
            return Ok(Opened {
                fh: self.add_handle(Handle::Bytes(Bytes::from(png))),
                keep_cache: false,
                direct_io: false,
                fetched_on_read: false,
            });
        }
        let item = self.item(ino)?;
        if item.kind == ItemKind::Dir {
            return Err(FsError::IsDir);
        }
        if mode.write || mode.truncate || item.is_dirty() || self.local.lock().contains_key(&ino) {
            return self.open_staged(item, mode).await;
        }
        self.viewer_opened(&item);
        // The file other handles of this very version read (perhaps through FUSE passthrough, whose later opens must
        // use the same file), even when the cache has since evicted or re-fetched it; else the cache's file.
        let complete = match self.open_version_file(&item) {
            Some(file) => Some(file),
            None => match item.content_state {
                ContentState::Cached if item.size > 0 => self.content.open_complete(&item).await.map(Arc::new),
                _ => None,
            },
        };
        // The kernel may keep pages of a verified version (remote changes invalidate them explicitly). Pages of a
        // version not yet verified are dropped at open: bytes read before a failed check must not outlive it.
        let verified = complete.is_some();
        let fh = self.add_handle(Handle::File {
            item: Box::new(item),
            reader: tokio::sync::OnceCell::new(),
            complete,
            failed: AtomicBool::new(false),
        });
        self.file_opened(ino);
        Ok(Opened {
            fh,
            keep_cache: verified,
            direct_io: false,
            fetched_on_read: !verified,
        })
    }

    async fn read(&self, _ino: Ino, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        let handle = self.handles.lock().get(&fh).cloned().ok_or(FsError::BadHandle)?;
        match &*handle {
            Handle::Bytes(b) => Ok(slice_at(b, offset, size)),
            Handle::Staged { file, .. } => read_file_at(file, offset, size),
            Handle::File { item, .. } if self.local.lock().contains_key(&item.ino) => {
                // Changed here since this handle opened: readers see the writes at once.
                let file = self.staging()?.open_file(item.ino).map_err(writes::staging_err)?;
                read_file_at(&file, offset, size)
            }
            Handle::File {
                item,
                complete: Some(file),
                reader,
                failed,
            } => {
                if offset >= item.size {
                    return Ok(Bytes::new());
                }
                let len = (size as u64).min(item.size - offset) as usize;
                let bytes = pread_bytes(file, offset, len)
                    .map_err(|e| FsError::io(format!("reading the cached original of {}: {e}", item.name)))?;
                if bytes.len() == len {
                    return Ok(bytes);
                }
                // The cache file was cut short under us (by hand): read through the cache, which refetches.
                tracing::warn!(
                    ino = item.ino,
                    offset,
                    "cached original shorter than expected; refetching"
                );
                self.read_through_cache(item, reader, failed, offset, size).await
            }
            Handle::File {
                item, reader, failed, ..
            } => {
                if offset >= item.size {
                    return Ok(Bytes::new());
                }
                self.read_through_cache(item, reader, failed, offset, size).await
            }
        }
    }

    fn read_now(&self, _ino: Ino, fh: u64, offset: u64, size: u32) -> Option<FsResult<Bytes>> {
        let handle = self.handles.lock().get(&fh).cloned()?;
        match &*handle {
            Handle::Bytes(b) => Some(Ok(slice_at(b, offset, size))),
            Handle::Staged { file, .. } => Some(read_file_at(file, offset, size)),
            // Changed here since the handle opened: the staged file is opened by the long way.
            Handle::File { item, .. } if self.local.lock().contains_key(&item.ino) => None,
            Handle::File {
                item,
                complete: Some(file),
                ..
            } => {
                if offset >= item.size {
                    return Some(Ok(Bytes::new()));
                }
                let len = (size as u64).min(item.size - offset) as usize;
                // A cache file cut short is refetched by the long way.
                pread_bytes(file, offset, len).ok().filter(|b| b.len() == len).map(Ok)
            }
            Handle::File {
                item, reader, failed, ..
            } => {
                if offset >= item.size {
                    return Some(Ok(Bytes::new()));
                }
                let read = reader.get()?.read_now(offset, size)?;
                self.note_read_failure(item, failed, &read);
                Some(read)
            }
        }
    }

    fn passthrough_file(&self, ino: Ino, fh: u64) -> Option<Arc<std::fs::File>> {
        let handle = self.handles.lock().get(&fh).cloned()?;
        match &*handle {
            Handle::File { complete, .. } if !self.local.lock().contains_key(&ino) => complete.clone(),
            _ => None,
        }
    }

    fn passthrough_join_file(&self, ino: Ino, fh: u64) -> Option<Arc<std::fs::File>> {
        let handle = self.handles.lock().get(&fh).cloned()?;
        match &*handle {
            // Opened before its cached original became the staged content: the same file.
            Handle::File { complete, .. } => complete.clone(),
            Handle::Staged { file, writable: false } => Some(file.clone()),
            // A writer through the kernel only where its writes are looked for (`LocalFile::may_change`).
            Handle::Staged { file, writable: true } if self.local.lock().get(&ino).is_some_and(|e| e.may_change) => {
                Some(file.clone())
            }
            _ => None,
        }
    }

    async fn release(&self, ino: Ino, fh: u64) -> FsResult<()> {
        let handle = self.handles.lock().remove(&fh);
        if let Some(handle) = handle {
            let written = if let Handle::Staged { writable: true, .. } = &*handle {
                self.writer_closed(ino).await
            } else {
                Ok(())
            };
            if !matches!(&*handle, Handle::Bytes(_)) {
                self.file_closed(ino);
            }
            written?;
        }
        Ok(())
    }

    async fn flush(&self, ino: Ino, fh: u64) -> FsResult<()> {
        let handle = self.handles.lock().get(&fh).cloned();
        if let Some(Handle::File { reader, .. }) = handle.as_deref() {
            if let Some(reader) = reader.get() {
                reader.settle().await;
            }
        }
        self.flush_handle(ino, fh).await
    }

    async fn write(&self, ino: Ino, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        self.write_at(ino, fh, offset, data).await
    }

    async fn fsync(&self, ino: Ino, fh: u64, datasync: bool) -> FsResult<()> {
        self.sync_file(ino, fh, datasync).await
    }

    async fn create(&self, caller: Caller, parent: Ino, name: &OsStr, mode: OpenMode) -> FsResult<(Entry, Opened)> {
        if self.is_timeline_dir(parent) {
            return Err(TIMELINE_READ_ONLY);
        }
        let created = self.create_file(caller, parent, name, mode).await;
        self.timeline.mark_stale();
        created
    }

    async fn mkdir(&self, caller: Caller, parent: Ino, name: &OsStr) -> FsResult<Entry> {
        if self.is_timeline_dir(parent) {
            return Err(TIMELINE_READ_ONLY);
        }
        self.make_dir(caller, parent, name).await
    }

    async fn unlink(&self, caller: Caller, parent: Ino, name: &OsStr) -> FsResult<()> {
        let removed = if self.is_timeline_dir(parent) {
            // The album's file: deleted as there (to the recycle bin); the kernel forgets its album entry.
            let (album, album_name) = self.timeline_target(parent, name)?;
            let removed = self.remove_file(caller, album, &album_name).await;
            if removed.is_ok() {
                self.invalidator.read().entry(album, &album_name);
            }
            removed
        } else {
            self.remove_file(caller, parent, name).await
        };
        self.timeline.mark_stale();
        removed
    }

    async fn rmdir(&self, caller: Caller, parent: Ino, name: &OsStr) -> FsResult<()> {
        if self.is_timeline_dir(parent) || (parent == ROOT_INO && self.timeline_lookup_root(name)) {
            return Err(TIMELINE_READ_ONLY);
        }
        self.remove_dir(caller, parent, name).await
    }

    async fn rename(
        &self,
        caller: Caller,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        noreplace: bool,
    ) -> FsResult<()> {
        if self.is_timeline_dir(new_parent) || (parent == ROOT_INO && self.timeline_lookup_root(name)) {
            return Err(TIMELINE_READ_ONLY);
        }
        let moved = if self.is_timeline_dir(parent) {
            // Out of the Timeline into an album: the album's file moves (it stays in the Timeline).
            let (album, album_name) = self.timeline_target(parent, name)?;
            let moved = self
                .move_entry(caller, album, &album_name, new_parent, new_name, noreplace)
                .await;
            if moved.is_ok() {
                self.invalidator.read().entry(album, &album_name);
            }
            moved
        } else {
            self.move_entry(caller, parent, name, new_parent, new_name, noreplace)
                .await
        };
        self.timeline.mark_stale();
        moved
    }

    async fn statfs(&self) -> FsResult<Statfs> {
        const BSIZE: u64 = 4096;
        let q = (*self.quota.read()).unwrap_or_default();
        // OneDrive has no inode limit: report a total of 2^32 - 1 of which the items in the store are used, so
        // `df -i` adds up (used = files - ffree).
        let used = self.store.item_count().map_err(store_err)?;
        let files = u64::from(u32::MAX).max(used);
        Ok(Statfs {
            blocks: q.total / BSIZE,
            bfree: q.remaining / BSIZE,
            bavail: q.remaining / BSIZE,
            files,
            ffree: files - used,
            bsize: BSIZE as u32,
            namelen: 255,
            frsize: BSIZE as u32,
        })
    }

    async fn getxattr(&self, ino: Ino, name: &OsStr) -> FsResult<Vec<u8>> {
        // `ls -l` asks every file for security.* and system.* attributes: answer those without a store query.
        if VirtualInodes::is_virtual(ino) || !name.as_bytes().starts_with(b"user.galleryfs.") {
            return Err(FsError::NoAttribute);
        }
        let item = self.item(ino)?;
        let value = match name.as_bytes() {
            n if n == XATTR_STATE.as_bytes() && item.kind == ItemKind::File => {
                let conflicted = item.is_dirty() && self.conflicted.lock().contains(&ino);
                if conflicted { "conflict" } else { item_state(&item) }.to_string()
            }
            n if n == XATTR_ID.as_bytes() => item.item_id.clone(),
            n if n == XATTR_HASH.as_bytes() => item.quick_xor_hash.clone().ok_or(FsError::NoAttribute)?,
            n if n == XATTR_PIN.as_bytes() => if item.pinned { "1" } else { "0" }.to_string(),
            n if n == XATTR_TAKEN.as_bytes() && item.kind == ItemKind::File && item.is_media => {
                let facet = self.store.read(|t| t.media(ino)).map_err(store_err)?;
                capture_date::rfc3339(capture_date::capture_date(&item.name, facet.as_ref(), item.mtime))
            }
            n if n == XATTR_PHOTO.as_bytes() && item.kind == ItemKind::File && item.is_media => {
                let facet = self
                    .store
                    .read(|t| t.media(ino))
                    .map_err(store_err)?
                    .unwrap_or_default();
                photo_json(&facet).to_string()
            }
            n if n == XATTR_CACHED_BYTES.as_bytes() && item.kind == ItemKind::File => {
                let bytes = match item.content_state {
                    ContentState::Cached | ContentState::Dirty => item.size,
                    _ => self.store.present_bytes(ino).map_err(store_err)?.min(item.size),
                };
                bytes.to_string()
            }
            _ => return Err(FsError::NoAttribute),
        };
        Ok(value.into_bytes())
    }

    async fn listxattr(&self, ino: Ino) -> FsResult<Vec<OsString>> {
        if VirtualInodes::is_virtual(ino) {
            return Ok(Vec::new());
        }
        let item = self.item(ino)?;
        let mut names = Vec::new();
        if item.kind == ItemKind::File {
            names.push(XATTR_STATE.into());
        }
        names.push(XATTR_ID.into());
        if item.quick_xor_hash.is_some() {
            names.push(XATTR_HASH.into());
        }
        if item.kind == ItemKind::File && item.is_media {
            names.push(XATTR_TAKEN.into());
        }
        Ok(names)
    }

    async fn setxattr(&self, ino: Ino, name: &OsStr, value: &[u8]) -> FsResult<()> {
        if name.as_bytes() == XATTR_FREE.as_bytes() {
            if value.trim_ascii() != b"1" {
                return Err(FsError::InvalidArgument("user.galleryfs.free takes 1".into()));
            }
            let item = self.item(ino)?;
            if item.kind == ItemKind::Dir || item.content_state == ContentState::Dirty {
                // A folder is freed file by file (the CLI walks it); a dirty file's bytes exist nowhere else.
                return Err(FsError::NotPermitted {
                    what: "freeing a folder or a file not yet uploaded",
                });
            }
            if item.pinned {
                self.store.set_pinned(ino, false).map_err(store_err)?;
            }
            self.content.evict(&item).await?;
            self.invalidator.read().inode(ino);
            return Ok(());
        }
        if name.as_bytes() != XATTR_PIN.as_bytes() {
            if name.as_bytes().starts_with(b"user.galleryfs.") {
                return Err(FsError::NotPermitted {
                    what: "changes to galleryfs' read-only attributes",
                });
            }
            return Err(FsError::Unsupported(
                "extended attributes other than user.galleryfs.pin",
            ));
        }
        let pinned = match value.trim_ascii() {
            b"1" => true,
            b"0" => false,
            _ => return Err(FsError::InvalidArgument("user.galleryfs.pin takes 1 or 0".into())),
        };
        let item = self.item(ino)?;
        self.store.set_pinned(item.ino, pinned).map_err(store_err)?;
        // A pinned folder has nothing to download itself (`galleryfs pin` pins the files below it one by one).
        if item.kind == ItemKind::File {
            if let Some(p) = self.pins.read().clone() {
                p.pin_changed(ino, pinned);
            }
        }
        Ok(())
    }
}
