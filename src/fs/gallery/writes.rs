//! The write side of [`GalleryFs`]: create, write, truncate, mkdir, unlink, rmdir, rename. (Being built by the
//! edits issue; until then the gallery is read-only and these answer `EROFS`.)

use super::GalleryFs;
use crate::fs::core::FsResult;
use crate::fs::error::FsError;
use crate::fs::types::*;
use std::ffi::OsStr;

impl GalleryFs {
    pub(super) async fn write_at(&self, _ino: Ino, _fh: u64, _offset: u64, _data: &[u8]) -> FsResult<u32> {
        Err(FsError::ReadOnly)
    }

    pub(super) async fn sync_file(&self, _ino: Ino, _fh: u64, _datasync: bool) -> FsResult<()> {
        Ok(())
    }

    pub(super) async fn create_file(
        &self,
        _caller: Caller,
        _parent: Ino,
        _name: &OsStr,
        _mode: OpenMode,
    ) -> FsResult<(Entry, Opened)> {
        Err(FsError::ReadOnly)
    }

    pub(super) async fn make_dir(&self, _caller: Caller, _parent: Ino, _name: &OsStr) -> FsResult<Entry> {
        Err(FsError::ReadOnly)
    }

    pub(super) async fn remove_file(&self, _caller: Caller, _parent: Ino, _name: &OsStr) -> FsResult<()> {
        Err(FsError::ReadOnly)
    }

    pub(super) async fn remove_dir(&self, _caller: Caller, _parent: Ino, _name: &OsStr) -> FsResult<()> {
        Err(FsError::ReadOnly)
    }

    pub(super) async fn move_entry(
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
}
