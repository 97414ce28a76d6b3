//! Live views: remote changes reach inotify watchers. The kernel's FUSE invalidations (`notify_inval_entry`,
//! `notify_delete`) raise no inotify event, so the [`ReplayPlan`] the core makes of each applied round is carried
//! out through the mount, by the invalidation thread, as the syscalls a local program would have made (`mknod`,
//! `mkdir`, `unlink`, `rmdir`, `rename`, an open for writing and its close); the kernel then raises the events a
//! local change raises. The syscalls are made relative to a descriptor of the mount's root, opened for each round
//! (one kept open would make the mount busy for `umount`).
//!
//! The adapter recognises the replaying thread's requests by the thread id in their header ([`Replayer::is_replayer`])
//! and answers them from the state already applied, without side effects: no row, upload or journal entry. Its
//! lookups answer the plan's view for the names that differ from the store at that step (a removed name still
//! leads to its item, an added one is still free); its creations answer the entry the store has; its removals and
//! renames succeed; its opens get [`REPLAY_FH`], whose flush and release do nothing.
//!
//! The replay runs after the round's transaction committed and outside any lock a FUSE request could wait on: the
//! invalidation thread only holds the view's mutex while reading or updating it, never across a syscall.

use crate::fs::{Entry, Ino, ReplayOp, ReplayPlan};
use fuser::{INodeNo, Notifier};
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// How the replaying thread reaches the mount.
#[derive(Clone, Debug)]
pub enum MountAccess {
    /// Through the mount at this path.
    Direct(PathBuf),
    /// The mount at this path is read-only, the filesystem under it read-write: through a private read-write clone
    /// of the mount, made for each round and gone when closed (`open_tree`, `mount_setattr`: root only).
    WritableClone(PathBuf),
}

impl MountAccess {
    /// A descriptor of the mount's root to replay through. Held only while replaying: one kept open would make the
    /// mount busy for `umount` (and a clone would keep the filesystem alive after it).
    pub(super) fn open(&self) -> std::io::Result<OwnedFd> {
        match self {
            MountAccess::Direct(path) => {
                let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
                Ok(nix::fcntl::open(path, flags, Mode::empty())?)
            }
            MountAccess::WritableClone(path) => {
                let path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
                // SAFETY: open_tree reads the NUL-terminated path and returns a new descriptor or -1.
                let fd = unsafe {
                    libc::syscall(
                        libc::SYS_open_tree,
                        libc::AT_FDCWD,
                        path.as_ptr(),
                        libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC,
                    )
                };
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // SAFETY: the descriptor was just returned to us and nothing else owns it.
                let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
                mount_setattr(
                    fd.as_raw_fd(),
                    c"",
                    libc::AT_EMPTY_PATH as u32,
                    0,
                    libc::MOUNT_ATTR_RDONLY,
                )?;
                Ok(fd)
            }
        }
    }
}

/// Makes the mount at `path` read-only: the mount only, its filesystem stays read-write (for
/// [`MountAccess::WritableClone`]).
pub(super) fn make_mount_read_only(path: &Path) -> std::io::Result<()> {
    let path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    mount_setattr(libc::AT_FDCWD, &path, 0, libc::MOUNT_ATTR_RDONLY, 0)
}

fn mount_setattr(dirfd: i32, path: &std::ffi::CStr, flags: u32, set: u64, clear: u64) -> std::io::Result<()> {
    let attr = libc::mount_attr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads the NUL-terminated path and `size_of::<mount_attr>()` bytes of `attr`.
    let res = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if res < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The file handle of the replaying thread's opens.
pub const REPLAY_FH: u64 = u64::MAX;

/// What the adapter and the replaying thread share.
#[derive(Default)]
pub struct Replayer {
    /// The replaying thread's id (0 until it runs).
    tid: AtomicU32,
    /// The current step's view: `(parent, name)` → entry, or `None` for "no such entry".
    view: Mutex<HashMap<(Ino, OsString), Option<Entry>>>,
}

impl Replayer {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Whether a request with this header pid (a thread id) comes from the replaying thread.
    pub fn is_replayer(&self, pid: u32) -> bool {
        pid != 0 && pid == self.tid.load(Ordering::Relaxed)
    }

    /// The view's answer to a lookup by the replaying thread, when the view has one.
    pub fn lookup(&self, parent: Ino, name: &std::ffi::OsStr) -> Option<Option<Entry>> {
        self.view.lock().get(&(parent, name.to_owned())).cloned()
    }

    /// Called once on the thread that replays.
    pub(super) fn attach_current_thread(&self) {
        self.tid.store(nix::unistd::gettid().as_raw() as u32, Ordering::Relaxed);
    }

    /// Carries out `plan` through the mount whose root is `root`.
    pub(super) fn run(&self, root: &OwnedFd, notifier: &Notifier, plan: ReplayPlan) {
        let started = std::time::Instant::now();
        let inval = |parent: Ino, name: &OsString| {
            if let Err(e) = notifier.inval_entry(INodeNo(parent), name) {
                if e.raw_os_error() != Some(libc::ENOENT) {
                    tracing::debug!(error = %e, "kernel entry invalidation failed");
                }
            }
        };
        {
            let mut view = self.view.lock();
            view.clear();
            for (parent, name, entry) in &plan.view {
                view.insert((*parent, name.clone()), entry.clone());
            }
        }
        // The kernel must ask for these names: it may have cached what the store says now.
        for (parent, name, _) in &plan.view {
            inval(*parent, name);
        }
        let mut failed = 0usize;
        for step in &plan.steps {
            // A lookup since the previous step may have cached the store's answer again.
            for (parent, name) in &step.settled {
                inval(*parent, name);
            }
            for (parent, name, _) in &step.view {
                inval(*parent, name);
            }
            if let Err(e) = replay_op(root, &step.op) {
                failed += 1;
                tracing::debug!(op = ?step.op, error = %e, "remote change not replayed for inotify watchers");
            }
            let mut view = self.view.lock();
            for key in &step.settled {
                view.remove(key);
            }
            for (parent, name, entry) in &step.view {
                view.insert((*parent, name.clone()), entry.clone());
            }
        }
        let left: Vec<(Ino, OsString)> = self.view.lock().drain().map(|(k, _)| k).collect();
        if failed > 0 {
            // Whatever the kernel holds for these names now comes from the store at the next lookup.
            for (parent, name, _) in &plan.view {
                inval(*parent, name);
            }
        } else {
            for (parent, name) in &left {
                inval(*parent, name);
            }
        }
        tracing::debug!(
            steps = plan.steps.len(),
            failed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "remote changes replayed for inotify watchers"
        );
    }
}

fn replay_op(root: &OwnedFd, op: &ReplayOp) -> nix::Result<()> {
    match op {
        ReplayOp::Create { path, dir: true } => {
            nix::sys::stat::mkdirat(root, path.as_path(), Mode::from_bits_truncate(0o755))
        }
        ReplayOp::Create { path, dir: false } => {
            nix::sys::stat::mknodat(root, path.as_path(), SFlag::S_IFREG, Mode::from_bits_truncate(0o644), 0)?;
            rewrite(root, path)
        }
        ReplayOp::Remove { path, dir } => {
            let flag = if *dir {
                nix::unistd::UnlinkatFlags::RemoveDir
            } else {
                nix::unistd::UnlinkatFlags::NoRemoveDir
            };
            nix::unistd::unlinkat(root, path.as_path(), flag)
        }
        ReplayOp::Rename { from, to } => nix::fcntl::renameat(root, from.as_path(), root, to.as_path()),
        ReplayOp::Rewrite { path } => rewrite(root, path),
    }
}

/// An open for writing and its close (IN_OPEN, IN_CLOSE_WRITE).
fn rewrite(root: &OwnedFd, path: &Path) -> nix::Result<()> {
    let fd = nix::fcntl::openat(
        root,
        path,
        OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )?;
    drop(fd);
    Ok(())
}
