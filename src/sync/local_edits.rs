//! [`LocalEdits`]: what the outbox replayer asks of the local write state and tells it, declared here and
//! implemented above (the mounted gallery, `fs/gallery/local_edits.rs`); [`StoreOnlyEdits`] answers it without a
//! mount. [`UploadHold`] says whether an upload may start.

use super::upload_commit::{commit_conflict, commit_upload, RemoteResult};
use crate::store::{RemoteAttrs, Store, StoreError};
use std::path::PathBuf;
use std::time::Duration;

type Ino = u64;

/// Whether the upload of a file may start now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadHold {
    Ready,
    /// Inside the write-back delay after the last close: ask again after this long.
    Wait(Duration),
    /// Open for writing (and no fsync asked for it): ask again after the last close.
    OpenForWriting,
}

/// What the outbox replayer asks of the local write state (the mounted filesystem) and tells it.
pub trait LocalEdits: Send + Sync {
    fn upload_hold(&self, ino: u64) -> UploadHold;
    /// Where the staged content of `ino` is.
    fn staged_path(&self, ino: u64) -> Option<PathBuf>;
    /// Upload `seq` of `ino` succeeded as `result`: records the id, name and remote attributes (the new
    /// baseline) and completes `seq`; unless the file changed meanwhile, its staged copy is dropped and it is no
    /// longer dirty. Returns whether the row still existed.
    fn upload_committed(&self, ino: u64, seq: i64, result: &RemoteResult) -> Result<bool, StoreError>;
    /// The local version of `ino` was uploaded as a conflict copy `copy` because OneDrive's version (`original`,
    /// keeping the item id and name) changed since the baseline: the row becomes the conflict copy and the
    /// original comes back as its own row.
    fn conflict_committed(
        &self,
        ino: u64,
        seq: i64,
        copy: &RemoteResult,
        original: &RemoteAttrs,
    ) -> Result<bool, StoreError>;
    fn set_quota_exceeded(&self, exceeded: bool);
    /// Whether `ino` is open (a file removed while open keeps its OneDrive item until the last close, so the
    /// open descriptors can still read what is not cached).
    fn held_open(&self, _ino: u64) -> bool {
        false
    }
    /// The store changed behind the kernel's back (names, ids): forget the cached entries and attributes.
    fn invalidate(&self, parent: Ino, names: &[&str], inos: &[Ino]);
}

/// [`LocalEdits`] without a mount: nothing is open, nothing waits, staged files are in `staging_dir`.
pub struct StoreOnlyEdits {
    pub store: std::sync::Arc<Store>,
    pub staging_dir: PathBuf,
}

impl LocalEdits for StoreOnlyEdits {
    fn upload_hold(&self, _ino: u64) -> UploadHold {
        UploadHold::Ready
    }
    fn staged_path(&self, ino: u64) -> Option<PathBuf> {
        Some(self.staging_dir.join(ino.to_string()))
    }
    fn upload_committed(&self, ino: u64, seq: i64, result: &RemoteResult) -> Result<bool, StoreError> {
        let there = self
            .store
            .write_durable(|t| commit_upload(t, ino, seq, result, false))?;
        if there && matches!(self.store.get(ino), Ok(Some(r)) if !r.is_dirty()) {
            let _ = std::fs::remove_file(self.staging_dir.join(ino.to_string()));
        }
        Ok(there)
    }
    fn conflict_committed(
        &self,
        ino: u64,
        seq: i64,
        copy: &RemoteResult,
        original: &RemoteAttrs,
    ) -> Result<bool, StoreError> {
        let there = self
            .store
            .write_durable(|t| commit_conflict(t, ino, seq, copy, original, false))?;
        if there {
            let _ = std::fs::remove_file(self.staging_dir.join(ino.to_string()));
        }
        Ok(there)
    }
    fn set_quota_exceeded(&self, _exceeded: bool) {}
    fn invalidate(&self, _parent: Ino, _names: &[&str], _inos: &[Ino]) {}
}
