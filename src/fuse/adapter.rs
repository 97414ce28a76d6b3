//! [`FuseAdapter`]: the `fuser::Filesystem` implementation. Each callback moves its reply into a task on the
//! tokio runtime, awaits the [`FsCore`] operation, and maps the answer to the reply — or the error to its errno
//! (through [`FsError::errno`], the one mapping) with a log line. No filesystem logic lives here.
//!
//! FUSE passthrough (kernel ≥ 6.9, `FUSE_PASSTHROUGH`, and `CAP_SYS_ADMIN` for the backing-file ioctl): when the
//! core offers a file for an opened handle ([`FsCore::passthrough_file`]), the open is answered with a backing id
//! and the kernel reads (and, for a writer, writes) that file itself; reads never reach the daemon. The kernel
//! fails (with `EIO` to the application) an open whose I/O mode conflicts with the inode's other open files:
//! passthrough while page-cache opens exist, a different backing file while passthrough opens exist, and any
//! non-passthrough open while passthrough opens exist. [`IoModes`] tracks, per inode, the open files of each
//! mode: a handle is passed through only when no page-cache open of the inode exists and any other passthrough
//! open uses the same file. A handle the core offers only to join ([`FsCore::passthrough_join_file`]: a writer
//! or a reader of a file whose cached original became a local edit's staged content) is passed through only when
//! passthrough opens of that very file exist; it never starts passthrough. An open that cannot be passed through
//! while passthrough opens exist is answered normally with `FOPEN_DIRECT_IO` (the kernel may refuse it: the core
//! makes that case the exception, see `fs::gallery`'s note). When the kernel or the daemon's privileges do not
//! allow passthrough, every open is a normal one.
//!
//! A read the core can answer without waiting ([`FsCore::read_now`]) is answered on the fuser thread that received
//! it; the others go to the runtime. A file the core fetches on read ([`crate::fs::Opened::fetched_on_read`]) is
//! opened with `FOPEN_DIRECT_IO` when the kernel agreed to `FUSE_DIRECT_IO_ALLOW_MMAP` (Linux ≥ 6.6; shared
//! `mmap` then keeps working): its reads come in the reader's own sizes (1 MiB for `cp` and stdio, which size
//! their buffers by `st_blksize`), not as the page cache's 128 KiB read-ahead, each a round trip to the daemon.
//! Opens of cached files keep the page cache (or passthrough).
//!
//! Requests from the thread that replays remote changes for inotify watchers are answered without side effects
//! (see [`super::live`]).

use super::live::{Replayer, REPLAY_FH};
use crate::fs::{Attr, Caller, DirEntry, FileKind, FsCore, FsError, OpenMode, SetAttr, SetTime};
use fuser::{
    BackingId, BsdFileFlags, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::runtime::Handle;

/// `st_blksize`, the I/O size a program should use: the largest FUSE request (`max_write`, `max_readahead`).
/// `cp`, `rsync`'s receiver and stdio size their buffers by it, so a copy into the mount is written in 1 MiB
/// requests instead of 128 KiB ones (one round trip to the daemon per request).
const PREFERRED_IO_SIZE: u32 = 1 << 20;

pub struct FuseAdapter {
    core: Arc<dyn FsCore>,
    rt: Handle,
    /// Whether passthrough may be offered to the kernel.
    offer_passthrough: bool,
    /// Whether the kernel agreed to FUSE passthrough at init.
    passthrough: Arc<AtomicBool>,
    /// Whether the kernel agreed at init to shared `mmap` of files opened with `FOPEN_DIRECT_IO`: only then are
    /// files fetched on read opened so ([`Opened::fetched_on_read`](crate::fs::Opened)).
    direct_reads: Arc<AtomicBool>,
    io_modes: Arc<Mutex<IoModes>>,
    /// The thread replaying remote changes, whose requests change nothing.
    replayer: Arc<Replayer>,
}

/// How the kernel does I/O on one open file (see the module note).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IoMode {
    /// Through the inode's page cache (a normal open).
    Cached,
    /// `FOPEN_DIRECT_IO`: every read and write comes to the daemon.
    Direct,
    /// The kernel reads the backing file.
    Passthrough,
}

#[derive(Default)]
struct InodeIo {
    cached: usize,
    passthrough: usize,
    /// The backing file of the passthrough opens: its id and (device, inode) to recognise the same file.
    backing: Option<(BackingId, (u64, u64))>,
}

/// Open files per inode and mode, and each handle's mode (to undo at release).
#[derive(Default)]
struct IoModes {
    inodes: HashMap<u64, InodeIo>,
    handles: HashMap<u64, (u64, IoMode)>,
    /// The backing-file ioctl failed once (no privilege): not tried again.
    backing_refused: bool,
    /// Logged once per session.
    passthrough_used: bool,
}

impl IoModes {
    fn opened(&mut self, ino: u64, fh: u64, mode: IoMode) {
        let io = self.inodes.entry(ino).or_default();
        match mode {
            IoMode::Cached => io.cached += 1,
            IoMode::Passthrough => io.passthrough += 1,
            IoMode::Direct => {}
        }
        self.handles.insert(fh, (ino, mode));
    }

    fn released(&mut self, fh: u64) {
        let Some((ino, mode)) = self.handles.remove(&fh) else {
            return;
        };
        let Some(io) = self.inodes.get_mut(&ino) else {
            return;
        };
        match mode {
            IoMode::Cached => io.cached = io.cached.saturating_sub(1),
            IoMode::Passthrough => {
                io.passthrough = io.passthrough.saturating_sub(1);
                if io.passthrough == 0 {
                    // Closes the backing id; the kernel keeps the file while its opens last.
                    io.backing = None;
                }
            }
            IoMode::Direct => {}
        }
        if io.cached == 0 && io.passthrough == 0 {
            self.inodes.remove(&ino);
        }
    }
}

/// What the core offered the kernel to read for an opened handle.
enum Offer {
    None,
    /// May start passthrough of the inode or join its passthrough opens ([`FsCore::passthrough_file`]).
    Start(Arc<std::fs::File>),
    /// May only join passthrough opens that read this very file ([`FsCore::passthrough_join_file`]).
    Join(Arc<std::fs::File>),
}

impl Offer {
    fn of(core: &dyn FsCore, ino: u64, fh: u64) -> Offer {
        if let Some(f) = core.passthrough_file(ino, fh) {
            return Offer::Start(f);
        }
        match core.passthrough_join_file(ino, fh) {
            Some(f) => Offer::Join(f),
            None => Offer::None,
        }
    }
}

/// Answers a successful open: through passthrough when a file is offered and allowed, else normally (with
/// `FOPEN_DIRECT_IO` when passthrough opens of the inode exist).
fn reply_open(modes: &Mutex<IoModes>, reply: ReplyOpen, ino: u64, o: &crate::fs::Opened, offer: Offer) {
    let mut modes = modes.lock();
    let mut flags = fopen_flags(o);
    let (file, join_only) = match offer {
        Offer::Start(f) => (Some(f), false),
        Offer::Join(f) => (Some(f), true),
        Offer::None => (None, false),
    };
    let offered = file
        .filter(|_| !o.direct_io)
        .and_then(|f| f.metadata().ok().map(|m| ((m.dev(), m.ino()), f)));
    if let Some((id, file)) = offered {
        let refused = modes.backing_refused;
        let io = modes.inodes.entry(ino).or_default();
        let same_file = match &io.backing {
            Some((_, existing)) => *existing == id,
            None => !join_only,
        };
        if io.cached == 0 && same_file && !refused {
            if io.backing.is_none() {
                match reply.open_backing(&*file) {
                    Ok(backing) => {
                        io.backing = Some((backing, id));
                        if !modes.passthrough_used {
                            modes.passthrough_used = true;
                            tracing::info!("cached originals are read by the kernel (FUSE passthrough)");
                        }
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "FUSE passthrough refused (needs CAP_SYS_ADMIN); cached files are read through the daemon");
                        modes.backing_refused = true;
                    }
                }
            }
            let io = modes.inodes.entry(ino).or_default();
            if let Some((backing, _)) = &io.backing {
                flags.remove(FopenFlags::FOPEN_KEEP_CACHE);
                reply.opened_passthrough(FileHandle(o.fh), flags, backing);
                modes.opened(ino, o.fh, IoMode::Passthrough);
                return;
            }
        }
    }
    let passthrough_open = modes.inodes.get(&ino).is_some_and(|io| io.passthrough > 0);
    let mode = if o.direct_io {
        IoMode::Direct
    } else if passthrough_open {
        flags.remove(FopenFlags::FOPEN_KEEP_CACHE);
        flags |= FopenFlags::FOPEN_DIRECT_IO;
        IoMode::Direct
    } else {
        IoMode::Cached
    };
    modes.opened(ino, o.fh, mode);
    reply.opened(FileHandle(o.fh), flags);
}

impl FuseAdapter {
    pub fn new(core: Arc<dyn FsCore>, rt: Handle) -> Self {
        Self {
            core,
            rt,
            offer_passthrough: false,
            passthrough: Arc::new(AtomicBool::new(false)),
            direct_reads: Arc::new(AtomicBool::new(false)),
            io_modes: Arc::new(Mutex::new(IoModes::default())),
            replayer: Replayer::new(),
        }
    }

    /// Answers the requests of `replayer`'s thread from the state already applied.
    pub fn with_replayer(mut self, replayer: Arc<Replayer>) -> Self {
        self.replayer = replayer;
        self
    }

    fn replaying(&self, req: &Request) -> bool {
        self.replayer.is_replayer(req.pid())
    }

    /// A replayed creation: the entry the store already has.
    fn replayed_entry(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let (core, c, name) = (self.core.clone(), caller(req), name.to_owned());
        self.spawn(async move {
            match core.lookup(c, parent.0, &name).await {
                Ok(e) => {
                    reply.entry_with_ttls(&e.attr_ttl, &e.entry_ttl, &file_attr(&e.attr), Generation(e.generation))
                }
                Err(e) => reply.error(errno(&e, "replayed create", parent.0)),
            }
        });
    }

    /// Offers FUSE passthrough to the kernel for files the core can pass through. An inode open for passthrough
    /// fails every other kind of open with `EIO`: the core must offer writers of such an inode the same file
    /// ([`FsCore::passthrough_join_file`]).
    pub fn with_passthrough(mut self, offer: bool) -> Self {
        self.offer_passthrough = offer;
        self
    }

    /// Runs `op` on the runtime; the reply is answered from the task.
    fn spawn<F>(&self, f: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.rt.spawn(f);
    }
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

fn errno(e: &FsError, op: &str, ino: u64) -> Errno {
    e.log(op, ino);
    Errno::from_i32(e.errno())
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Directory => FileType::Directory,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks(),
        // atime is not kept: st_atime = st_mtime (contract).
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.mtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: PREFERRED_IO_SIZE,
        flags: 0,
    }
}

fn set_time(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(t) => SetTime::At(t),
    }
}

fn fopen_flags(o: &crate::fs::Opened) -> FopenFlags {
    let mut f = FopenFlags::empty();
    if o.keep_cache {
        f |= FopenFlags::FOPEN_KEEP_CACHE;
    }
    if o.direct_io {
        f |= FopenFlags::FOPEN_DIRECT_IO;
    }
    f
}

/// Answers an xattr request: the size when `size` is 0, the data when it fits, ERANGE otherwise.
fn reply_xattr(reply: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

impl fuser::Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // 1 MiB requests: fuser sizes max_pages from the larger of these two (256 pages of 4 KiB).
        let _ = config.set_max_readahead(PREFERRED_IO_SIZE);
        let _ = config.set_max_background(64);
        let _ = config.set_max_write(PREFERRED_IO_SIZE);
        let direct_reads = config.add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP).is_ok();
        self.direct_reads.store(direct_reads, Ordering::Relaxed);
        let passthrough = self.offer_passthrough
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok();
        self.core.kernel_attached();
        tracing::debug!(passthrough, direct_reads, "FUSE session initialised");
        self.passthrough.store(passthrough, Ordering::Relaxed);
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if self.replaying(req) {
            match self.replayer.lookup(parent.0, name) {
                Some(Some(e)) => {
                    return reply.entry_with_ttls(
                        &e.attr_ttl,
                        &e.entry_ttl,
                        &file_attr(&e.attr),
                        Generation(e.generation),
                    )
                }
                Some(None) => return reply.error(Errno::ENOENT),
                None => {}
            }
        }
        let (core, c, name) = (self.core.clone(), caller(req), name.to_owned());
        self.spawn(async move {
            match core.lookup(c, parent.0, &name).await {
                Ok(e) => {
                    reply.entry_with_ttls(&e.attr_ttl, &e.entry_ttl, &file_attr(&e.attr), Generation(e.generation))
                }
                Err(e) => reply.error(errno(&e, "lookup", parent.0)),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.core.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let core = self.core.clone();
        self.spawn(async move {
            match core.getattr(ino.0).await {
                Ok((a, ttl)) => reply.attr(&ttl, &file_attr(&a)),
                Err(e) => reply.error(errno(&e, "getattr", ino.0)),
            }
        });
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let (core, c) = (self.core.clone(), caller(req));
        let set = SetAttr {
            size,
            mtime: mtime.map(set_time),
            atime: atime.map(set_time),
            mode,
            uid,
            gid,
            fh: fh.map(|f| f.0),
        };
        self.spawn(async move {
            match core.setattr(c, ino.0, set).await {
                Ok((a, ttl)) => reply.attr(&ttl, &file_attr(&a)),
                Err(e) => reply.error(errno(&e, "setattr", ino.0)),
            }
        });
    }

    fn readlink(&self, _req: &Request, _ino: INodeNo, reply: ReplyData) {
        reply.error(Errno::EINVAL);
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if self.replaying(req) {
            return self.replayed_entry(req, parent, name, reply);
        }
        if mode & libc::S_IFMT != libc::S_IFREG {
            let e = FsError::NotPermitted {
                what: "device nodes, fifos or sockets",
            };
            reply.error(errno(&e, "mknod", parent.0));
            return;
        }
        // A regular file made by mknod: create it and close it at once.
        let (core, c, name) = (self.core.clone(), caller(req), name.to_owned());
        self.spawn(async move {
            let mode = OpenMode {
                write: true,
                exclusive: true,
                ..Default::default()
            };
            match core.create(c, parent.0, &name, mode).await {
                Ok((entry, opened)) => {
                    let _ = core.release(entry.attr.ino, opened.fh).await;
                    reply.entry_with_ttls(
                        &entry.attr_ttl,
                        &entry.entry_ttl,
                        &file_attr(&entry.attr),
                        Generation(entry.generation),
                    )
                }
                Err(e) => reply.error(errno(&e, "mknod", parent.0)),
            }
        });
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, _mode: u32, _umask: u32, reply: ReplyEntry) {
        if self.replaying(req) {
            return self.replayed_entry(req, parent, name, reply);
        }
        let (core, c, name) = (self.core.clone(), caller(req), name.to_owned());
        self.spawn(async move {
            match core.mkdir(c, parent.0, &name).await {
                Ok(e) => {
                    reply.entry_with_ttls(&e.attr_ttl, &e.entry_ttl, &file_attr(&e.attr), Generation(e.generation))
                }
                Err(e) => reply.error(errno(&e, "mkdir", parent.0)),
            }
        });
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if self.replaying(req) {
            return reply.ok();
        }
        let (core, c, name) = (self.core.clone(), caller(req), name.to_owned());
        self.spawn(async move {
            match core.unlink(c, parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e, "unlink", parent.0)),
            }
        });
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if self.replaying(req) {
            return reply.ok();
        }
        let (core, c, name) = (self.core.clone(), caller(req), name.to_owned());
        self.spawn(async move {
            match core.rmdir(c, parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e, "rmdir", parent.0)),
            }
        });
    }

    fn symlink(&self, _req: &Request, parent: INodeNo, _link_name: &OsStr, _target: &Path, reply: ReplyEntry) {
        reply.error(errno(
            &FsError::NotPermitted { what: "symbolic links" },
            "symlink",
            parent.0,
        ));
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if self.replaying(req) {
            return reply.ok();
        }
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            reply.error(Errno::EINVAL);
            return;
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let (core, c, name, newname) = (self.core.clone(), caller(req), name.to_owned(), newname.to_owned());
        self.spawn(async move {
            match core.rename(c, parent.0, &name, newparent.0, &newname, noreplace).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e, "rename", parent.0)),
            }
        });
    }

    fn link(&self, _req: &Request, ino: INodeNo, _newparent: INodeNo, _newname: &OsStr, reply: ReplyEntry) {
        reply.error(errno(&FsError::NotPermitted { what: "hard links" }, "link", ino.0));
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if self.replaying(req) {
            return reply.opened(FileHandle(REPLAY_FH), FopenFlags::empty());
        }
        let (core, c) = (self.core.clone(), caller(req));
        let (passthrough, modes) = (self.passthrough.load(Ordering::Relaxed), self.io_modes.clone());
        let direct_reads = self.direct_reads.load(Ordering::Relaxed);
        self.spawn(async move {
            match core.open(c, ino.0, OpenMode::from_flags(flags.0)).await {
                Ok(mut o) => {
                    o.direct_io |= o.fetched_on_read && direct_reads;
                    let offer = if passthrough {
                        Offer::of(&*core, ino.0, o.fh)
                    } else {
                        Offer::None
                    };
                    reply_open(&modes, reply, ino.0, &o, offer);
                }
                Err(e) => reply.error(errno(&e, "open", ino.0)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // Bytes at hand are answered on this thread: no hand-over to a runtime worker and back per request.
        if let Some(read) = self.core.read_now(ino.0, fh.0, offset, size) {
            return match read {
                Ok(b) => reply.data(&b),
                Err(e) => reply.error(errno(&e, "read", ino.0)),
            };
        }
        let core = self.core.clone();
        self.spawn(async move {
            match core.read(ino.0, fh.0, offset, size).await {
                Ok(b) => reply.data(&b),
                Err(e) => reply.error(errno(&e, "read", ino.0)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let (core, data) = (self.core.clone(), data.to_vec());
        self.spawn(async move {
            match core.write(ino.0, fh.0, offset, &data).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno(&e, "write", ino.0)),
            }
        });
    }

    fn flush(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        if fh.0 == REPLAY_FH {
            return reply.ok();
        }
        let core = self.core.clone();
        self.spawn(async move {
            match core.flush(ino.0, fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e, "flush", ino.0)),
            }
        });
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if fh.0 == REPLAY_FH {
            return reply.ok();
        }
        let core = self.core.clone();
        self.io_modes.lock().released(fh.0);
        self.spawn(async move {
            match core.release(ino.0, fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e, "release", ino.0)),
            }
        });
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        let core = self.core.clone();
        self.spawn(async move {
            match core.fsync(ino.0, fh.0, datasync).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e, "fsync", ino.0)),
            }
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let core = self.core.clone();
        self.spawn(async move {
            match core.opendir(ino.0).await {
                Ok(o) => reply.opened(FileHandle(o.fh), fopen_flags(&o)),
                Err(e) => reply.error(errno(&e, "opendir", ino.0)),
            }
        });
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let core = self.core.clone();
        self.spawn(async move {
            match core.readdir(ino.0, fh.0, offset, 256, false).await {
                Ok(entries) => {
                    for DirEntry {
                        ino,
                        name,
                        kind,
                        offset,
                        ..
                    } in entries
                    {
                        if reply.add(INodeNo(ino), offset, file_type(kind), &name) {
                            break;
                        }
                    }
                    reply.ok()
                }
                Err(e) => reply.error(errno(&e, "readdir", ino.0)),
            }
        });
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let core = self.core.clone();
        self.spawn(async move {
            match core.readdir(ino.0, fh.0, offset, 128, true).await {
                Ok(entries) => {
                    for d in entries {
                        let full = match &d.entry {
                            Some(e) => reply.add(
                                INodeNo(d.ino),
                                d.offset,
                                &d.name,
                                &e.entry_ttl,
                                &file_attr(&e.attr),
                                Generation(e.generation),
                            ),
                            // `.`/`..`: the kernel links no inode for these names, so any attributes do.
                            None => {
                                let attr = Attr {
                                    ino: d.ino,
                                    kind: d.kind,
                                    size: 0,
                                    mtime: SystemTime::UNIX_EPOCH,
                                    ctime: SystemTime::UNIX_EPOCH,
                                    perm: 0o755,
                                    nlink: 2,
                                    uid: 0,
                                    gid: 0,
                                };
                                reply.add(
                                    INodeNo(d.ino),
                                    d.offset,
                                    &d.name,
                                    &Duration::ZERO,
                                    &file_attr(&attr),
                                    Generation(0),
                                )
                            }
                        };
                        if full {
                            break;
                        }
                    }
                    reply.ok()
                }
                Err(e) => reply.error(errno(&e, "readdirplus", ino.0)),
            }
        });
    }

    fn releasedir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        let core = self.core.clone();
        self.spawn(async move {
            match core.releasedir(ino.0, fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e, "releasedir", ino.0)),
            }
        });
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let core = self.core.clone();
        self.spawn(async move {
            match core.statfs().await {
                Ok(s) => reply.statfs(
                    s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
                ),
                Err(e) => reply.error(errno(&e, "statfs", 1)),
            }
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let (core, name, value) = (self.core.clone(), name.to_owned(), value.to_vec());
        self.spawn(async move {
            match core.setxattr(ino.0, &name, &value).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e, "setxattr", ino.0)),
            }
        });
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let (core, name) = (self.core.clone(), name.to_owned());
        self.spawn(async move {
            match core.getxattr(ino.0, &name).await {
                Ok(v) => reply_xattr(reply, size, &v),
                Err(e) => reply.error(errno(&e, "getxattr", ino.0)),
            }
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let core = self.core.clone();
        self.spawn(async move {
            match core.listxattr(ino.0).await {
                Ok(names) => {
                    let mut buf = Vec::new();
                    for n in names {
                        buf.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(n.as_os_str()));
                        buf.push(0);
                    }
                    reply_xattr(reply, size, &buf)
                }
                Err(e) => reply.error(errno(&e, "listxattr", ino.0)),
            }
        });
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (core, name) = (self.core.clone(), name.to_owned());
        self.spawn(async move {
            match core.removexattr(ino.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e, "removexattr", ino.0)),
            }
        });
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (core, c, name) = (self.core.clone(), caller(req), name.to_owned());
        let modes = self.io_modes.clone();
        self.spawn(async move {
            match core.create(c, parent.0, &name, OpenMode::from_flags(flags)).await {
                Ok((e, o)) => {
                    let mode = if o.direct_io { IoMode::Direct } else { IoMode::Cached };
                    modes.lock().opened(e.attr.ino, o.fh, mode);
                    reply.created(
                        &e.entry_ttl,
                        &file_attr(&e.attr),
                        Generation(e.generation),
                        FileHandle(o.fh),
                        fopen_flags(&o),
                    )
                }
                Err(e) => reply.error(errno(&e, "create", parent.0)),
            }
        });
    }
}
