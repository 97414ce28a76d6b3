//! Fixtures shared by the edits tests: a gallery over a real (file-backed) store with staging, and an in-memory
//! source of originals that tests can change.
#![allow(dead_code)]

use async_trait::async_trait;
use bytes::Bytes;
use galleryfs::fs::content::{ContentAccess, ContentRead, NoThumbnails};
use galleryfs::fs::gallery::{GalleryConfig, GalleryFs};
use galleryfs::fs::{Caller, FsCore, FsError, OpenMode, ROOT_INO};
use galleryfs::store::{ContentState, ItemKind, ItemRow, NewItem, OutboxOp, Store};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Originals by item id.
#[derive(Default)]
pub struct MemContent(pub Mutex<HashMap<String, Bytes>>);

struct MemReader(Bytes);

#[async_trait]
impl ContentRead for MemReader {
    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, FsError> {
        let start = (offset as usize).min(self.0.len());
        let end = (start + len as usize).min(self.0.len());
        Ok(self.0.slice(start..end))
    }
}

#[async_trait]
impl ContentAccess for MemContent {
    async fn open_reader(&self, item: &ItemRow) -> Result<Box<dyn ContentRead>, FsError> {
        let b = self
            .0
            .lock()
            .get(&item.item_id)
            .cloned()
            .ok_or_else(|| FsError::io("offline"))?;
        Ok(Box::new(MemReader(b)))
    }
}

pub fn remote_item(id: &str, parent: u64, name: &str, kind: ItemKind, size: u64) -> NewItem {
    NewItem {
        item_id: id.into(),
        parent_ino: parent,
        name: name.into(),
        kind,
        size,
        etag: Some(format!("e-{id}")),
        ctag: Some(format!("c-{id}")),
        quick_xor_hash: (kind == ItemKind::File).then(|| format!("h-{id}")),
        mtime: 1_700_000_000,
        mime_type: None,
        is_media: kind == ItemKind::File,
        content_state: ContentState::Cloud,
        local_only: false,
    }
}

pub struct Gallery {
    pub fs: Arc<GalleryFs>,
    pub store: Arc<Store>,
    pub content: Arc<MemContent>,
    pub staging: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Gallery {
    /// An empty gallery (root id `ROOT!1`) with staging and the given write-back delay.
    pub fn new(write_back: Duration) -> Gallery {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path().join("meta.db")).unwrap());
        store.set_root_item("ROOT!1").unwrap();
        Self::over(dir, store, write_back)
    }

    pub fn over(dir: tempfile::TempDir, store: Arc<Store>, write_back: Duration) -> Gallery {
        let staging = dir.path().join("staging");
        let content = Arc::new(MemContent::default());
        let fs = Arc::new(GalleryFs::new(
            store.clone(),
            content.clone(),
            Arc::new(NoThumbnails),
            GalleryConfig {
                staging_dir: Some(staging.clone()),
                write_back,
                thumbnails: false,
                ..GalleryConfig::default()
            },
        ));
        Gallery {
            fs,
            store,
            content,
            staging,
            dir,
        }
    }

    /// Adds a remote file with content.
    pub fn add_remote_file(&self, id: &str, parent: u64, name: &str, bytes: &[u8]) -> u64 {
        self.content.0.lock().insert(id.into(), Bytes::copy_from_slice(bytes));
        self.store
            .insert(&remote_item(id, parent, name, ItemKind::File, bytes.len() as u64))
            .unwrap()
    }

    pub fn add_remote_dir(&self, id: &str, parent: u64, name: &str) -> u64 {
        self.store.insert(&remote_item(id, parent, name, ItemKind::Dir, 0)).unwrap()
    }

    pub fn ops(&self) -> Vec<OutboxOp> {
        self.store.pending().unwrap().into_iter().map(|e| e.op).collect()
    }

    /// Writes a whole file the way `cp` does: create (or open with O_TRUNC), write, flush, release.
    pub async fn write_file(&self, parent: u64, name: &str, bytes: &[u8]) -> u64 {
        let c = Caller::default();
        let mode = OpenMode {
            write: true,
            truncate: true,
            ..Default::default()
        };
        let (ino, fh) = match self.fs.lookup(c, parent, OsStr::new(name)).await {
            Ok(e) => (e.attr.ino, self.fs.open(c, e.attr.ino, mode).await.unwrap().fh),
            Err(_) => {
                let (e, o) = self.fs.create(c, parent, OsStr::new(name), mode).await.unwrap();
                (e.attr.ino, o.fh)
            }
        };
        for (i, chunk) in bytes.chunks(65536).enumerate() {
            self.fs.write(ino, fh, (i * 65536) as u64, chunk).await.unwrap();
        }
        self.fs.flush(ino, fh).await.unwrap();
        self.fs.release(ino, fh).await.unwrap();
        ino
    }

    /// Reads a whole file through the filesystem.
    pub async fn read_file(&self, ino: u64) -> Vec<u8> {
        let c = Caller::default();
        let o = self.fs.open(c, ino, OpenMode { read: true, ..Default::default() }).await.unwrap();
        let mut out = Vec::new();
        loop {
            let chunk = self.fs.read(ino, o.fh, out.len() as u64, 1 << 20).await.unwrap();
            if chunk.is_empty() {
                break;
            }
            out.extend_from_slice(&chunk);
        }
        self.fs.release(ino, o.fh).await.unwrap();
        out
    }

    pub fn root(&self) -> u64 {
        ROOT_INO
    }
}
