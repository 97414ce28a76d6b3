//! The gallery's side of the outbox replay: [`GalleryFs`] implements the sync engine's [`LocalEdits`] from its
//! open-file state (the `local` map: writers, last close, changes since the last journalled upload). An upload
//! may start after the write-back delay and the last writer's close (or an fsync); a finished upload is recorded
//! by the store transaction in `sync/upload_commit.rs`, told whether the file changed meanwhile (then it stays
//! dirty and keeps its staged copy), and the kernel forgets the names and attributes it changed. Also
//! [`GalleryFs::journal_leftovers`]: what the last run left unjournalled, after a restart.

use super::GalleryFs;
use crate::fs::types::Ino;
use crate::store::{RemoteAttrs, StoreError};
use crate::sync::local_edits::{LocalEdits, UploadHold};
use crate::sync::upload_commit::{commit_conflict, commit_upload, RemoteResult};
use std::ffi::OsStr;
use std::path::PathBuf;

impl GalleryFs {
    /// Whether `ino` changed since its last journalled upload or is open for writing.
    fn busy(&self, ino: Ino) -> bool {
        self.local.lock().get(&ino).is_some_and(|e| e.modified || e.writers > 0)
    }

    fn after_commit(&self, ino: Ino, still_there: bool) {
        self.conflicted.lock().remove(&ino);
        if !still_there {
            return;
        }
        let clean = match self.store.get(ino) {
            Ok(Some(row)) if !row.is_dirty() => Some(row),
            _ => None,
        };
        if let Some(row) = clean {
            let mut local = self.local.lock();
            if local.get(&ino).is_none_or(|e| !e.modified && e.writers == 0) {
                local.remove(&ino);
                drop(local);
                if let Some(s) = &self.staging {
                    // What was just uploaded is OneDrive's current version: keep it as the cached original.
                    let staged = s.path(ino);
                    if !(staged.exists() && self.content.keep_uploaded(&row, &staged)) {
                        s.remove(ino);
                    }
                }
            }
        }
        self.invalidator.read().inode(ino);
    }
}

impl GalleryFs {
    /// After a restart: journals an upload for every changed file whose change never reached the journal (the
    /// process died between its first write and its close), and removes staged files nothing refers to. Call
    /// once before serving. Returns how many uploads were journalled.
    pub fn journal_leftovers(&self) -> Result<usize, StoreError> {
        // Files removed while open when the last process ended: their last close never came.
        let orphans = self.store.write_durable(|t| {
            let detached = t.detached_items()?;
            for ino in &detached {
                t.drop_ops(*ino, &["upload", "move", "mkdir"])?;
                t.remove(*ino)?;
            }
            Ok::<_, StoreError>(detached.len())
        })?;
        if orphans > 0 {
            tracing::info!(
                orphans,
                "removed files that were unlinked while open when galleryfs last stopped"
            );
        }
        let Some(staging) = &self.staging else {
            return Ok(0);
        };
        let dirty = self.store.read(|t| t.dirty_items())?;
        let mut journalled = 0;
        for row in &dirty {
            if self.store.read(|t| t.has_op(row.ino, "upload"))? {
                continue;
            }
            let size = match staging.len(row.ino) {
                Ok(Some(n)) => n,
                Ok(None) => {
                    if let Err(e) = staging.create_empty(row.ino) {
                        tracing::warn!(ino = row.ino, error = %e, "cannot recreate a staged file");
                        continue;
                    }
                    0
                }
                Err(e) => {
                    tracing::warn!(ino = row.ino, error = %e, "cannot read a staged file");
                    continue;
                }
            };
            let _ = staging.sync(row.ino);
            self.store.write_durable(|t| {
                t.update_local_content(row.ino, size, row.mtime)?;
                t.enqueue(&crate::store::OutboxOp::Upload {
                    ino: row.ino,
                    staged_path: staging.path(row.ino),
                    size,
                    mtime: row.mtime,
                })
            })?;
            journalled += 1;
        }
        let keep: std::collections::HashSet<u64> = dirty.iter().map(|r| r.ino).collect();
        for ino in staging.staged_inodes().unwrap_or_default() {
            if !keep.contains(&ino) {
                staging.remove(ino);
            }
        }
        if journalled > 0 {
            tracing::info!(
                journalled,
                "changes interrupted by the last shutdown are journalled for upload"
            );
            self.outbox_wake.notify_one();
        }
        Ok(journalled)
    }
}

impl LocalEdits for GalleryFs {
    fn upload_hold(&self, ino: u64) -> UploadHold {
        let local = self.local.lock();
        let Some(e) = local.get(&ino) else {
            return UploadHold::Ready;
        };
        if e.forced {
            return UploadHold::Ready;
        }
        if e.writers > 0 {
            return UploadHold::OpenForWriting;
        }
        match e.last_close {
            Some(t) if t.elapsed() < self.config.write_back => UploadHold::Wait(self.config.write_back - t.elapsed()),
            _ => UploadHold::Ready,
        }
    }

    fn staged_path(&self, ino: u64) -> Option<PathBuf> {
        self.staging.as_ref().map(|s| s.path(ino))
    }

    fn upload_committed(&self, ino: u64, seq: i64, result: &RemoteResult) -> Result<bool, StoreError> {
        let before = self.store.get(ino)?;
        let busy = self.busy(ino);
        let there = self.store.write_durable(|t| commit_upload(t, ino, seq, result, busy))?;
        if let Some(before) = before {
            if before.name != result.name {
                if let Some(parent) = before.parent_ino {
                    self.invalidate(parent, &[&before.name, &result.name], &[]);
                }
            }
        }
        self.after_commit(ino, there);
        Ok(there)
    }

    fn conflict_committed(
        &self,
        ino: u64,
        seq: i64,
        copy: &RemoteResult,
        original: &RemoteAttrs,
    ) -> Result<bool, StoreError> {
        let before = self.store.get(ino)?;
        let busy = self.busy(ino);
        let there = self
            .store
            .write_durable(|t| commit_conflict(t, ino, seq, copy, original, busy))?;
        if let (Some(before), Ok(Some(after))) = (before, self.store.get(ino)) {
            if let Some(parent) = before.parent_ino {
                self.invalidate(parent, &[&before.name, &after.name], &[parent]);
            }
        }
        self.after_commit(ino, there);
        Ok(there)
    }

    fn set_quota_exceeded(&self, exceeded: bool) {
        GalleryFs::set_quota_exceeded(self, exceeded);
    }

    fn held_open(&self, ino: u64) -> bool {
        self.is_open(ino)
    }

    fn invalidate(&self, parent: Ino, names: &[&str], inos: &[Ino]) {
        let inv = self.invalidator.read().clone();
        for name in names {
            inv.entry(parent, OsStr::new(name));
        }
        for ino in inos {
            inv.inode(*ino);
        }
    }
}
