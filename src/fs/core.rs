//! [`FsCore`]: the operations a galleryfs filesystem answers, as async Rust returning plain values. The FUSE
//! adapter (`crate::fuse`) calls these; tests call them directly without a kernel.
//!
//! Defaults refuse what OneDrive cannot store (hard links, symlinks, device nodes, fifos → `EPERM`) and what a
//! core does not support.

use super::error::FsError;
use super::types::*;
use async_trait::async_trait;
use bytes::Bytes;
use std::ffi::{OsStr, OsString};

pub type FsResult<T> = Result<T, FsError>;

/// Kernel-cache invalidation requested by the core when something changes behind the kernel's back (a remote
/// change landed). Implemented by the FUSE layer with a notifier thread; calls must not block.
pub trait Invalidator: Send + Sync {
    /// Forget the dentry `name` in `parent`.
    fn entry(&self, parent: Ino, name: &OsStr);
    /// Forget cached attributes and data of `ino`.
    fn inode(&self, ino: Ino);
    /// Replay applied remote changes through the mount for inotify watchers, after the invalidations sent so far.
    fn replay(&self, _plan: ReplayPlan) {}
}

/// An invalidator that does nothing (no kernel attached).
pub struct NoInvalidator;
impl Invalidator for NoInvalidator {
    fn entry(&self, _parent: Ino, _name: &OsStr) {}
    fn inode(&self, _ino: Ino) {}
}

#[async_trait]
pub trait FsCore: Send + Sync + 'static {
    async fn lookup(&self, caller: Caller, parent: Ino, name: &OsStr) -> FsResult<Entry>;
    /// The kernel dropped `nlookup` references to `ino`.
    fn forget(&self, _ino: Ino, _nlookup: u64) {}
    /// A kernel now serves this filesystem (called by the FUSE adapter at `init`): from here on the kernel holds
    /// references to the inodes it looked up, released by [`FsCore::forget`].
    fn kernel_attached(&self) {}
    async fn getattr(&self, ino: Ino) -> FsResult<(Attr, std::time::Duration)>;
    async fn setattr(&self, caller: Caller, ino: Ino, set: SetAttr) -> FsResult<(Attr, std::time::Duration)>;

    async fn opendir(&self, _ino: Ino) -> FsResult<Opened> {
        Ok(Opened::default())
    }
    /// Up to `max` entries after cookie `offset` (0 = from the start), including `.` and `..`.
    /// With `plus`, each entry carries its [`Entry`] (and counts as a lookup).
    async fn readdir(&self, ino: Ino, fh: u64, offset: u64, max: usize, plus: bool) -> FsResult<Vec<DirEntry>>;
    async fn releasedir(&self, _ino: Ino, _fh: u64) -> FsResult<()> {
        Ok(())
    }

    async fn open(&self, caller: Caller, ino: Ino, mode: OpenMode) -> FsResult<Opened>;
    async fn read(&self, ino: Ino, fh: u64, offset: u64, size: u32) -> FsResult<Bytes>;
    /// [`FsCore::read`] answered on the caller's thread, when that needs no waiting (bytes in memory or in a
    /// local file, nothing to fetch, no lock another task holds). The FUSE adapter asks this first, on the
    /// thread that received the request, and sends the read to [`FsCore::read`] on `None`.
    fn read_now(&self, _ino: Ino, _fh: u64, _offset: u64, _size: u32) -> Option<FsResult<Bytes>> {
        None
    }
    async fn write(&self, _ino: Ino, _fh: u64, _offset: u64, _data: &[u8]) -> FsResult<u32> {
        Err(FsError::ReadOnly)
    }
    async fn flush(&self, _ino: Ino, _fh: u64) -> FsResult<()> {
        Ok(())
    }
    async fn fsync(&self, _ino: Ino, _fh: u64, _datasync: bool) -> FsResult<()> {
        Ok(())
    }
    async fn release(&self, ino: Ino, fh: u64) -> FsResult<()>;
    /// A file whose bytes are exactly what reads of the open handle `fh` return, for the kernel to read directly
    /// (FUSE passthrough); `None` when reads must come to [`FsCore::read`]. Asked right after a successful `open`.
    fn passthrough_file(&self, _ino: Ino, _fh: u64) -> Option<std::sync::Arc<std::fs::File>> {
        None
    }
    /// A file the open handle `fh` may share with passthrough opens of `ino` that already exist (the FUSE layer
    /// uses it only when it is the very file those opens read): their bytes and the handle's are the same file's,
    /// and writes through the kernel are the core's to notice (see `fs::gallery`'s note). Never starts
    /// passthrough. Asked right after a successful `open` or `create` when [`FsCore::passthrough_file`] offered
    /// nothing.
    fn passthrough_join_file(&self, _ino: Ino, _fh: u64) -> Option<std::sync::Arc<std::fs::File>> {
        None
    }

    async fn create(&self, _caller: Caller, _parent: Ino, _name: &OsStr, _mode: OpenMode) -> FsResult<(Entry, Opened)> {
        Err(FsError::ReadOnly)
    }
    async fn mkdir(&self, _caller: Caller, _parent: Ino, _name: &OsStr) -> FsResult<Entry> {
        Err(FsError::ReadOnly)
    }
    async fn unlink(&self, _caller: Caller, _parent: Ino, _name: &OsStr) -> FsResult<()> {
        Err(FsError::ReadOnly)
    }
    async fn rmdir(&self, _caller: Caller, _parent: Ino, _name: &OsStr) -> FsResult<()> {
        Err(FsError::ReadOnly)
    }
    /// `noreplace`: RENAME_NOREPLACE (fail with EEXIST when the target exists).
    async fn rename(
        &self,
        _caller: Caller,
        _parent: Ino,
        _name: &OsStr,
        _new_parent: Ino,
        _new_name: &OsStr,
        _noreplace: bool,
    ) -> FsResult<()> {
        Err(FsError::ReadOnly)
    }

    async fn statfs(&self) -> FsResult<Statfs>;

    async fn getxattr(&self, _ino: Ino, _name: &OsStr) -> FsResult<Vec<u8>> {
        Err(FsError::NoAttribute)
    }
    async fn listxattr(&self, _ino: Ino) -> FsResult<Vec<OsString>> {
        Ok(Vec::new())
    }
    async fn setxattr(&self, _ino: Ino, _name: &OsStr, _value: &[u8]) -> FsResult<()> {
        Err(FsError::Unsupported("setxattr"))
    }
    async fn removexattr(&self, _ino: Ino, _name: &OsStr) -> FsResult<()> {
        Err(FsError::Unsupported("removexattr"))
    }
}
