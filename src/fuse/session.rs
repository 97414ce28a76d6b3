//! Mounting: turns [`MountOptions`] into a `fuser::Config`, mounts a [`FsCore`] through the [`FuseAdapter`],
//! and unmounts. The kernel-cache invalidations the core asks for go through [`KernelInvalidator`], a channel
//! drained by a thread of its own — never from inside a FUSE callback, where the kernel may hold the locks the
//! notification needs. The same thread replays applied remote changes through the mount for inotify watchers
//! ([`super::live`]), after the invalidations sent before them.

use super::adapter::FuseAdapter;
use super::live::{MountAccess, Replayer};
use crate::fs::{FsCore, Ino, Invalidator, ReplayPlan};
use crate::mount_options::MountOptions;
use fuser::{BackgroundSession, Config, INodeNo, MountOption, Notifier, SessionACL};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use tokio::runtime::Handle;

/// The fuser configuration for these options.
pub fn fuser_config(opts: &MountOptions, fsname: &str) -> Config {
    let mut mo = vec![
        MountOption::FSName(opts.fsname.clone().unwrap_or_else(|| fsname.to_string())),
        // `subtype=` as a kernel option: fuser hands `MountOption::Subtype` only to fusermount3, so a mount made
        // by the mount(2) call itself (as root) would show as plain `fuse` in /proc/mounts. fusermount3 reads
        // the option the same way, so the type is `fuse.galleryfs` either way.
        MountOption::CUSTOM("subtype=galleryfs".into()),
        if opts.read_only {
            MountOption::RO
        } else {
            MountOption::RW
        },
        if opts.dev { MountOption::Dev } else { MountOption::NoDev },
        if opts.suid {
            MountOption::Suid
        } else {
            MountOption::NoSuid
        },
        if opts.exec {
            MountOption::Exec
        } else {
            MountOption::NoExec
        },
    ];
    if opts.noatime {
        mo.push(MountOption::NoAtime);
    }
    if opts.default_permissions {
        mo.push(MountOption::DefaultPermissions);
    }
    let mut config = Config::default();
    config.mount_options = mo;
    config.acl = if opts.allow_other {
        SessionACL::All
    } else if opts.allow_root {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(2);
    config
}

enum Invalidation {
    Entry(Ino, OsString),
    Inode(Ino),
    Replay(ReplayPlan),
}

/// Sends invalidations to the notifier thread; cheap and non-blocking for the caller.
pub struct KernelInvalidator {
    tx: parking_lot::Mutex<Option<mpsc::Sender<Invalidation>>>,
}

impl KernelInvalidator {
    /// Starts the thread; changes are replayed through `access`.
    fn start(notifier: Notifier, replayer: Arc<Replayer>, access: MountAccess) -> Arc<Self> {
        let (tx, rx) = mpsc::channel::<Invalidation>();
        std::thread::Builder::new()
            .name("galleryfs-invalidate".into())
            .spawn(move || {
                replayer.attach_current_thread();
                for inv in rx {
                    let res = match inv {
                        Invalidation::Entry(parent, name) => notifier.inval_entry(INodeNo(parent), &name),
                        Invalidation::Inode(ino) => notifier.inval_inode(INodeNo(ino), 0, 0),
                        Invalidation::Replay(plan) => {
                            match access.open() {
                                Ok(root) => replayer.run(&root, &notifier, plan),
                                Err(e) => tracing::debug!(error = %e, "cannot open the mount to replay remote changes"),
                            }
                            Ok(())
                        }
                    };
                    if let Err(e) = res {
                        // ENOENT: the kernel had nothing cached for it, which is fine.
                        if e.raw_os_error() != Some(libc::ENOENT) {
                            tracing::debug!(error = %e, "kernel cache invalidation failed");
                        }
                    }
                }
            })
            .expect("spawn invalidation thread");
        Arc::new(Self {
            tx: parking_lot::Mutex::new(Some(tx)),
        })
    }

    fn send(&self, inv: Invalidation) {
        if let Some(tx) = self.tx.lock().as_ref() {
            let _ = tx.send(inv);
        }
    }

    fn stop(&self) {
        self.tx.lock().take();
    }
}

impl Invalidator for KernelInvalidator {
    fn entry(&self, parent: Ino, name: &OsStr) {
        self.send(Invalidation::Entry(parent, name.to_owned()));
    }
    fn inode(&self, ino: Ino) {
        self.send(Invalidation::Inode(ino));
    }
    fn replay(&self, plan: ReplayPlan) {
        self.send(Invalidation::Replay(plan));
    }
}

/// The kernel's read-ahead for the mount, in KiB: the size of the read requests a sequential reader causes.
///
/// 128 KiB (the block layer's default), not more: the kernel's read-ahead grows with this limit, and every byte it
/// asks for of a cloud file must be downloaded. A metadata scan reading a photo's first ~40 KiB (`exiftool -fast`)
/// makes the kernel ask for 112 KiB at 128 KiB but 416 KiB at 1 MiB (10 % of a 4 MB photo). 1 MiB requests made
/// cached reads ~1.6× faster on read-write mounts (read-only mounts pass complete files through). Where the kernel
/// allows shared `mmap` of direct-I/O files (Linux ≥ 6.6), files fetched on read bypass the page cache and this
/// read-ahead altogether (`fuse/adapter.rs`); it then applies to cached files read through the daemon.
const READ_AHEAD_KB: u32 = 128;

/// Sets the mount's read-ahead (`/sys/class/bdi/MAJOR:MINOR/read_ahead_kb`) to [`READ_AHEAD_KB`] (the kernel
/// starts a FUSE mount at the block layer's default whatever `max_readahead` the filesystem asked for at init).
/// Writing the file needs root; otherwise the default stays (logged at debug level).
fn raise_readahead(mountpoint: &Path) {
    use std::os::unix::fs::MetadataExt;
    let dev = match std::fs::metadata(mountpoint) {
        Ok(m) => m.dev(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot stat the mount to raise its read-ahead");
            return;
        }
    };
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let path = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    match std::fs::write(&path, format!("{READ_AHEAD_KB}\n")) {
        Ok(()) => tracing::debug!(path, kb = READ_AHEAD_KB, "mount read-ahead set"),
        Err(e) => tracing::debug!(path, error = %e, "mount read-ahead left at the kernel's default"),
    }
}

/// A mounted filesystem served in the background.
pub struct MountedFs {
    session: Option<BackgroundSession>,
    invalidator: Arc<KernelInvalidator>,
    mountpoint: PathBuf,
}

/// Mounts `core` at `mountpoint`; returns once the kernel handshake is done.
pub fn mount(core: Arc<dyn FsCore>, rt: Handle, mountpoint: &Path, config: &Config) -> std::io::Result<MountedFs> {
    // FUSE passthrough on every mount: the kernel fails (EIO) every open of an inode that is open for passthrough
    // unless that open is passthrough of the same file too, so the core offers a writer of such a file that very
    // file (see the adapter's note and `fs::gallery`'s).
    let read_only = config.mount_options.contains(&MountOption::RO);
    // Replayed remote changes go through the mount, which a read-only filesystem refuses. As root, a read-only
    // mount is a read-write filesystem whose mount alone is read-only (applications see the same `EROFS`,
    // `ST_RDONLY` and `ro` in /proc/mounts; the core refuses writes as well), replayed through a private
    // read-write clone. Without the privilege it stays a read-only filesystem, and remote changes reach the mount
    // without inotify events.
    let ro_mount_only = read_only && nix::unistd::geteuid().is_root();
    let rw_config;
    let config = if ro_mount_only {
        let mut c = config.clone();
        for o in c.mount_options.iter_mut() {
            if *o == MountOption::RO {
                *o = MountOption::RW;
            }
        }
        rw_config = c;
        &rw_config
    } else {
        config
    };
    let replayer = Replayer::new();
    let adapter = FuseAdapter::new(core, rt)
        .with_passthrough(true)
        .with_replayer(replayer.clone());
    let session = fuser::Session::new(adapter, mountpoint, config)?;
    let notifier = session.notifier();
    let session = session.spawn()?;
    let access = if ro_mount_only {
        if let Err(e) = super::live::make_mount_read_only(mountpoint) {
            // Never leave a read-only mount writable.
            let _ = session.umount_and_join();
            return Err(e);
        }
        MountAccess::WritableClone(mountpoint.to_path_buf())
    } else {
        MountAccess::Direct(mountpoint.to_path_buf())
    };
    let invalidator = KernelInvalidator::start(notifier, replayer, access);
    raise_readahead(mountpoint);
    Ok(MountedFs {
        session: Some(session),
        invalidator,
        mountpoint: mountpoint.to_path_buf(),
    })
}

impl MountedFs {
    pub fn invalidator(&self) -> Arc<dyn Invalidator> {
        self.invalidator.clone()
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts and waits for the session to end.
    pub fn unmount(mut self) -> std::io::Result<()> {
        self.invalidator.stop();
        match self.session.take() {
            Some(s) => s.umount_and_join(),
            None => Ok(()),
        }
    }

    /// Waits until the filesystem is unmounted from outside (`umount`, `fusermount3 -u`).
    pub fn join(mut self) -> std::io::Result<()> {
        let res = match self.session.take() {
            Some(s) => s.join(),
            None => Ok(()),
        };
        self.invalidator.stop();
        res
    }
}

impl Drop for MountedFs {
    fn drop(&mut self) {
        self.invalidator.stop();
        if let Some(s) = self.session.take() {
            let _ = s.umount_and_join();
        }
    }
}
