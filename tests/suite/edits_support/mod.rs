//! Fixtures shared by the edits tests: a gallery over a real (file-backed) store with staging, and an in-memory
//! source of originals that tests can change.
#![allow(dead_code)]

use async_trait::async_trait;
use bytes::Bytes;
use galleryfs::fs::content::{NoThumbnails, OriginalReader, Originals};
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
impl OriginalReader for MemReader {
    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, FsError> {
        let start = (offset as usize).min(self.0.len());
        let end = (start + len as usize).min(self.0.len());
        Ok(self.0.slice(start..end))
    }
}

#[async_trait]
impl Originals for MemContent {
    async fn open_reader(&self, item: &ItemRow) -> Result<Box<dyn OriginalReader>, FsError> {
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
                // These harnesses compare the gallery's tree with a model of it: no virtual Timeline beside it.
                timeline: false,
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
        self.store
            .insert(&remote_item(id, parent, name, ItemKind::Dir, 0))
            .unwrap()
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
        let o = self
            .fs
            .open(
                c,
                ino,
                OpenMode {
                    read: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
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

use galleryfs::remote::drive_api::{DeltaRequest, DriveApi};
use galleryfs::remote::mock_drive::MockDrive;
use galleryfs::sync::delta_apply::{apply_delta_round_with_link, AppliedChanges, RoundKind};
use galleryfs::sync::local_edits::LocalEdits;
use galleryfs::sync::outbox_replay::{OutboxReplayer, ReplayConfig};

/// Originals read from a drive (what the content cache does, without caching and without pinning: each read asks
/// for the item's current content version first, so a handle reads whatever OneDrive holds now).
pub struct DriveContent(pub Arc<dyn DriveApi>);

struct DriveReader {
    drive: Arc<dyn DriveApi>,
    id: String,
}

#[async_trait]
impl OriginalReader for DriveReader {
    async fn read(&self, offset: u64, len: u32) -> Result<Bytes, FsError> {
        use futures::TryStreamExt;
        let io = |e: galleryfs::remote::drive_api::DriveError| FsError::io(e.to_string());
        let ctag = self.drive.item(&self.id).await.map_err(io)?.c_tag.unwrap_or_default();
        let end = offset + len as u64;
        let body = match self.drive.download(&self.id, &ctag, offset, end).await {
            Ok(body) => body,
            // At or past the end of the content: nothing to read.
            Err(galleryfs::remote::drive_api::DriveError::Other { status: Some(416), .. }) => return Ok(Bytes::new()),
            Err(e) => return Err(io(e)),
        };
        let chunks: Vec<Bytes> = body.try_collect().await.map_err(io)?;
        Ok(chunks.concat().into())
    }
}

#[async_trait]
impl Originals for DriveContent {
    async fn open_reader(&self, item: &ItemRow) -> Result<Box<dyn OriginalReader>, FsError> {
        Ok(Box::new(DriveReader {
            drive: self.0.clone(),
            id: item.item_id.clone(),
        }))
    }
}

/// A gallery mounted (at the core level) over a mock OneDrive, with its replayer.
pub struct Synced {
    pub fs: Arc<GalleryFs>,
    pub store: Arc<Store>,
    pub mock: Arc<MockDrive>,
    pub drive: Arc<dyn DriveApi>,
    pub gallery_id: String,
    pub replayer: Arc<OutboxReplayer>,
    pub staging: PathBuf,
    pub dir: tempfile::TempDir,
}

pub fn quick_config() -> ReplayConfig {
    ReplayConfig {
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        ..ReplayConfig::default()
    }
}

impl Synced {
    /// `drive` is what the replayer talks to (the mock itself, or a failing wrapper around it).
    pub async fn new(
        mock: Arc<MockDrive>,
        drive: Arc<dyn DriveApi>,
        write_back: Duration,
        config: ReplayConfig,
    ) -> Synced {
        let dir = tempfile::tempdir().unwrap();
        Self::open(dir, mock, drive, write_back, config).await
    }

    pub async fn open(
        dir: tempfile::TempDir,
        mock: Arc<MockDrive>,
        drive: Arc<dyn DriveApi>,
        write_back: Duration,
        config: ReplayConfig,
    ) -> Synced {
        let gallery_id = mock.mkdir_p("/Pictures/Samsung Gallery");
        let store = Arc::new(Store::open(dir.path().join("meta.db")).unwrap());
        store.set_root_item(&gallery_id).unwrap();
        let staging = dir.path().join("staging");
        let fs = Arc::new(GalleryFs::new(
            store.clone(),
            Arc::new(DriveContent(mock.clone())),
            Arc::new(NoThumbnails),
            GalleryConfig {
                staging_dir: Some(staging.clone()),
                write_back,
                thumbnails: false,
                // These harnesses compare the gallery's tree with a model of it: no virtual Timeline beside it.
                timeline: false,
                ..GalleryConfig::default()
            },
        ));
        let local: Arc<dyn LocalEdits> = fs.clone();
        let replayer = Arc::new(OutboxReplayer::new(store.clone(), drive.clone(), local, config).with_host("testhost"));
        let s = Synced {
            fs,
            store,
            mock,
            drive,
            gallery_id,
            replayer,
            staging,
            dir,
        };
        s.sync().await;
        s
    }

    /// One delta round from the mock into the store (full the first time).
    pub async fn sync(&self) -> AppliedChanges {
        let (req, kind) = match self.store.delta_link().unwrap() {
            Some(link) => (DeltaRequest::Link(link), RoundKind::Incremental),
            None => (
                DeltaRequest::Full {
                    folder_id: Some(self.gallery_id.clone()),
                },
                RoundKind::Full,
            ),
        };
        let round = self.mock.delta(req).await.unwrap();
        let changes =
            apply_delta_round_with_link(&self.store, &self.gallery_id, &round.items, kind, &round.delta_link).unwrap();
        self.fs.remote_changes_applied(&changes);
        changes
    }

    /// The mock's item at `path` below the gallery.
    pub fn remote(&self, path: &str) -> Option<galleryfs::remote::models::DriveItem> {
        let id = self
            .mock
            .id_by_path(&format!("/Pictures/Samsung Gallery/{}", path.trim_start_matches('/')))?;
        self.mock.get(&id).filter(|i| i.deleted.is_none())
    }

    pub fn remote_content(&self, path: &str) -> Option<Bytes> {
        self.remote(path).and_then(|i| self.mock.content(&i.id))
    }

    /// Writes a whole file through the filesystem (create or O_TRUNC, write, flush, release).
    pub async fn write_file(&self, parent: u64, name: &str, bytes: &[u8]) -> u64 {
        write_whole(&self.fs, parent, name, bytes).await
    }
}

pub async fn write_whole(fs: &GalleryFs, parent: u64, name: &str, bytes: &[u8]) -> u64 {
    let c = Caller::default();
    let mode = OpenMode {
        write: true,
        truncate: true,
        ..Default::default()
    };
    let (ino, fh) = match fs.lookup(c, parent, OsStr::new(name)).await {
        Ok(e) => (e.attr.ino, fs.open(c, e.attr.ino, mode).await.unwrap().fh),
        Err(_) => {
            let (e, o) = fs.create(c, parent, OsStr::new(name), mode).await.unwrap();
            (e.attr.ino, o.fh)
        }
    };
    for (i, chunk) in bytes.chunks(65536).enumerate() {
        fs.write(ino, fh, (i * 65536) as u64, chunk).await.unwrap();
    }
    fs.flush(ino, fh).await.unwrap();
    fs.release(ino, fh).await.unwrap();
    ino
}

pub async fn read_whole(fs: &GalleryFs, ino: u64) -> Vec<u8> {
    let c = Caller::default();
    let o = fs
        .open(
            c,
            ino,
            OpenMode {
                read: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    loop {
        let chunk = fs.read(ino, o.fh, out.len() as u64, 1 << 20).await.unwrap();
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    fs.release(ino, o.fh).await.unwrap();
    out
}
