//! Plain values the filesystem core answers with (no fuser types): attributes, entries, directory entries,
//! open handles, statfs figures, and what a caller asked for.

use std::ffi::OsString;
use std::time::{Duration, SystemTime};

/// Inode number. The gallery folder is [`ROOT_INO`].
pub type Ino = u64;
pub const ROOT_INO: Ino = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    File,
    Directory,
}

/// `stat` of one inode.
#[derive(Clone, Debug, PartialEq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: FileKind,
    pub size: u64,
    /// Whole seconds (contract: `st_mtime` = `fileSystemInfo.lastModifiedDateTime` in whole seconds).
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    /// Permission bits (no file-type bits).
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Attr {
    /// 512-byte blocks, as `st_blocks` counts them.
    pub fn blocks(&self) -> u64 {
        self.size.div_ceil(512)
    }
}

/// The answer to `lookup`, `mkdir`, `create`: attributes plus how long the kernel may cache them.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub attr: Attr,
    pub attr_ttl: Duration,
    pub entry_ttl: Duration,
    pub generation: u64,
}

/// One directory entry. `offset` is the cookie that resumes the listing *after* this entry.
#[derive(Clone, Debug, PartialEq)]
pub struct DirEntry {
    pub ino: Ino,
    pub name: OsString,
    pub kind: FileKind,
    pub offset: u64,
    /// Present for readdirplus.
    pub entry: Option<Entry>,
}

/// An open file or directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Opened {
    pub fh: u64,
    /// Keep the kernel's page cache from a previous open (content unchanged).
    pub keep_cache: bool,
    /// Bypass the page cache (content size unknown or changing).
    pub direct_io: bool,
    /// The content is fetched from OneDrive as it is read (not all local yet). The FUSE layer then lets reads
    /// bypass the page cache where the kernel keeps shared `mmap` working beside that: a streaming reader's
    /// 1 MiB reads come as 1 MiB requests (not 128 KiB read-ahead pieces, each a round trip through the daemon),
    /// and a header scan fetches what it reads, no kernel read-ahead past it.
    pub fetched_on_read: bool,
}

/// How a file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OpenMode {
    pub read: bool,
    pub write: bool,
    pub truncate: bool,
    pub append: bool,
    pub exclusive: bool,
}

impl OpenMode {
    /// From `open(2)` flags.
    pub fn from_flags(flags: i32) -> Self {
        let acc = flags & libc::O_ACCMODE;
        Self {
            read: acc == libc::O_RDONLY || acc == libc::O_RDWR,
            write: acc == libc::O_WRONLY || acc == libc::O_RDWR,
            truncate: flags & libc::O_TRUNC != 0,
            append: flags & libc::O_APPEND != 0,
            exclusive: flags & libc::O_EXCL != 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetTime {
    Now,
    At(SystemTime),
}

/// `setattr`: only the fields the caller set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SetAttr {
    pub size: Option<u64>,
    pub mtime: Option<SetTime>,
    pub atime: Option<SetTime>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub fh: Option<u64>,
}

/// `statfs` figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Statfs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// Who is calling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// Whole seconds of a time (sub-second parts dropped), as the contract reports mtimes.
pub fn whole_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => SystemTime::UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

/// Remote changes already applied, to be replayed through the mount as the syscalls a local program would have
/// made, so that inotify watchers (file managers' open windows) see them: the kernel's cache invalidations raise
/// no inotify event. The replaying thread's requests are answered from the state already applied, except its
/// lookups of the names in [`ReplayPlan::view`], which answer the tree as it was before each step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReplayPlan {
    /// `(parent, name)` → what a lookup of it answers before the first step (`None`: no such entry), where that
    /// differs from the store.
    pub view: Vec<(Ino, OsString, Option<Entry>)>,
    pub steps: Vec<ReplayStep>,
}

/// One syscall (or two) of a [`ReplayPlan`], with paths relative to the mount's root.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayStep {
    pub op: ReplayOp,
    /// Names that answer from the store once the step has run.
    pub settled: Vec<(Ino, OsString)>,
    /// Names whose view answer changes once the step has run (their final state comes with a later step).
    pub view: Vec<(Ino, OsString, Option<Entry>)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ReplayOp {
    /// `mkdir` for a folder; `mknod` then an open for writing and its close for a file.
    Create { path: std::path::PathBuf, dir: bool },
    /// `unlink` or `rmdir`.
    Remove { path: std::path::PathBuf, dir: bool },
    Rename {
        from: std::path::PathBuf,
        to: std::path::PathBuf,
    },
    /// An open for writing and its close: the file has new content.
    Rewrite { path: std::path::PathBuf },
}

impl ReplayPlan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}
