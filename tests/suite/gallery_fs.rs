//! The gallery core over a real store: at the core level (no kernel) and through a real FUSE mount with real tools
//! (`ls`, `stat`, `cat`, `getfattr`/`setfattr`, `df`). Content and thumbnails come from in-memory fakes here; the
//! sync engine and the content cache are tested on their own.

use crate::common;

use async_trait::async_trait;
use bytes::Bytes;
use galleryfs::fs::content::{OriginalReader, Originals, ThumbnailJpegs};
use galleryfs::fs::gallery::{GalleryConfig, GalleryFs, QuotaFigures};
use galleryfs::fs::{Caller, FsCore, FsError, OpenMode, ROOT_INO};
use galleryfs::store::{ContentState, ItemKind, ItemRow, NewItem, Store};
use galleryfs::thumbnails::{self, ThumbSize};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::Arc;

struct MemContent(HashMap<String, Bytes>);

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
            .get(&item.item_id)
            .cloned()
            .ok_or_else(|| FsError::io("offline"))?;
        Ok(Box::new(MemReader(b)))
    }
}

struct MemThumbs(HashMap<String, Vec<u8>>);

impl ThumbnailJpegs for MemThumbs {
    fn thumbnail(&self, item_id: &str, _size: ThumbSize) -> Option<Vec<u8>> {
        self.0.get(item_id).cloned()
    }
}

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

fn item(id: &str, parent: u64, name: &str, kind: ItemKind, size: u64, mtime: i64) -> NewItem {
    NewItem {
        item_id: id.into(),
        parent_ino: parent,
        name: name.into(),
        kind,
        size,
        etag: Some(format!("e-{id}")),
        ctag: Some(format!("c-{id}")),
        quick_xor_hash: (kind == ItemKind::File).then(|| format!("hash-{id}")),
        mtime,
        mime_type: (kind == ItemKind::File).then(|| "image/jpeg".to_string()),
        is_media: kind == ItemKind::File,
        content_state: ContentState::Cloud,
        local_only: false,
    }
}

struct Fixture {
    fs: Arc<GalleryFs>,
    photo_ino: u64,
    camera_ino: u64,
    photo_bytes: Bytes,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path().join("meta.db")).unwrap());
    store.set_root_item("ROOT!1").unwrap();
    let dcim = store
        .insert(&item("A!2", ROOT_INO, "DCIM", ItemKind::Dir, 0, 1_700_000_000))
        .unwrap();
    let camera = store
        .insert(&item("A!3", dcim, "Camera", ItemKind::Dir, 0, 1_700_000_000))
        .unwrap();
    let photo_bytes = Bytes::from(jpeg(64, 48));
    let photo = store
        .insert(&item(
            "A!4",
            camera,
            "20240315_142233.jpg",
            ItemKind::File,
            photo_bytes.len() as u64,
            1_710_512_553,
        ))
        .unwrap();
    store
        .insert(&item(
            "A!5",
            camera,
            "20240316_101502.mp4",
            ItemKind::File,
            123_456_789,
            1_710_584_102,
        ))
        .unwrap();
    let content = MemContent(HashMap::from([("A!4".to_string(), photo_bytes.clone())]));
    let thumbs = MemThumbs(HashMap::from([("A!4".to_string(), jpeg(176, 132))]));
    let fs = Arc::new(GalleryFs::new(
        store,
        Arc::new(content),
        Arc::new(thumbs),
        GalleryConfig::default(),
    ));
    fs.set_quota(Some(QuotaFigures {
        total: 5 << 30,
        remaining: 2 << 30,
    }));
    Fixture {
        fs,
        photo_ino: photo,
        camera_ino: camera,
        photo_bytes,
        _dir: dir,
    }
}

#[tokio::test]
async fn core_lookup_folds_case_and_listing_preserves_it() {
    let f = fixture();
    let c = Caller::default();
    let dcim = f.fs.lookup(c, ROOT_INO, OsStr::new("dcim")).await.unwrap();
    let camera = f.fs.lookup(c, dcim.attr.ino, OsStr::new("CAMERA")).await.unwrap();
    assert_eq!(camera.attr.ino, f.camera_ino);
    let names: Vec<_> =
        f.fs.readdir(f.camera_ino, 0, 0, 100, true)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
    assert_eq!(names, vec![".", "..", "20240315_142233.jpg", "20240316_101502.mp4"]);
    // `.sh_thumbnails` is reachable but never listed.
    assert!(!names.iter().any(|n| n == ".sh_thumbnails"));
    let repo =
        f.fs.lookup(c, f.camera_ino, OsStr::new(".sh_thumbnails"))
            .await
            .unwrap();
    assert_eq!(repo.attr.kind, galleryfs::fs::FileKind::Directory);
    let err =
        f.fs.lookup(c, f.camera_ino, OsStr::new(&"x".repeat(256)))
            .await
            .unwrap_err();
    assert_eq!(err.errno(), libc::ENAMETOOLONG);
}

#[tokio::test]
async fn core_reads_through_content_access_and_reports_xattrs() {
    let f = fixture();
    let c = Caller::default();
    let opened =
        f.fs.open(
            c,
            f.photo_ino,
            OpenMode {
                read: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let data = f.fs.read(f.photo_ino, opened.fh, 0, 1 << 20).await.unwrap();
    assert_eq!(data, f.photo_bytes);
    assert_eq!(
        f.fs.read(f.photo_ino, opened.fh, 10, 5).await.unwrap(),
        f.photo_bytes.slice(10..15)
    );
    assert_eq!(
        f.fs.getxattr(f.photo_ino, OsStr::new("user.galleryfs.state"))
            .await
            .unwrap(),
        b"cloud"
    );
    assert_eq!(
        f.fs.getxattr(f.photo_ino, OsStr::new("user.galleryfs.id"))
            .await
            .unwrap(),
        b"A!4"
    );
    f.fs.setxattr(f.photo_ino, OsStr::new("user.galleryfs.pin"), b"1")
        .await
        .unwrap();
    assert_eq!(
        f.fs.getxattr(f.photo_ino, OsStr::new("user.galleryfs.state"))
            .await
            .unwrap(),
        b"pinned"
    );
    // Writing is refused in this read-only core, with EROFS.
    let err =
        f.fs.open(
            c,
            f.photo_ino,
            OpenMode {
                write: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.errno(), libc::EROFS);
    // A video that cannot be fetched reads as EIO.
    let video =
        f.fs.lookup(c, f.camera_ino, OsStr::new("20240316_101502.mp4"))
            .await
            .unwrap();
    let o =
        f.fs.open(
            c,
            video.attr.ino,
            OpenMode {
                read: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        f.fs.read(video.attr.ino, o.fh, 0, 10).await.unwrap_err().errno(),
        libc::EIO
    );
}

#[test]
fn through_a_real_mount_with_real_tools() {
    require_fuse!();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let f = fixture();
    let mnt = tempfile::tempdir().unwrap();
    let m = std::fs::canonicalize(mnt.path()).unwrap().display().to_string();
    let config = galleryfs::fuse::fuser_config(&galleryfs::mount_options::MountOptions::default(), "galleryfs:test");
    let mounted = galleryfs::fuse::mount(f.fs.clone(), rt.handle().clone(), mnt.path(), &config).expect("mount");
    f.fs.set_invalidator(mounted.invalidator());

    let ls = common::sh_ok(&format!("ls -la '{m}/DCIM/Camera'"));
    assert!(ls.contains("20240315_142233.jpg") && ls.contains("123456789"), "{ls}");
    assert!(!ls.contains(".sh_thumbnails"), "{ls}");
    assert_eq!(
        common::sh_ok(&format!("stat -c '%s %Y %X' '{m}/dcim/camera/20240316_101502.MP4'")).trim(),
        "123456789 1710584102 1710584102"
    );
    let copied = common::sh_ok(&format!("cat '{m}/DCIM/Camera/20240315_142233.jpg' | md5sum"));
    assert_eq!(
        copied.split_whitespace().next().unwrap(),
        thumbnails::uri::md5_hex(&f.photo_bytes)
    );
    // The unfetchable video fails with EIO, not with wrong bytes.
    assert!(
        common::sh_err(&format!("cat '{m}/DCIM/Camera/20240316_101502.mp4' > /dev/null"))
            .contains("Input/output error")
    );
    // The shared thumbnail repository answers by path.
    let md5 = thumbnails::md5_of_name(OsStr::new("20240315_142233.jpg"));
    let png = std::fs::read(format!("{m}/DCIM/Camera/.sh_thumbnails/normal/{md5}.png")).unwrap();
    assert_eq!(
        thumbnails::render::read_text(&png, "Thumb::URI").as_deref(),
        Some("./20240315_142233.jpg")
    );
    assert_eq!(
        thumbnails::render::read_text(&png, "Thumb::MTime").as_deref(),
        Some("1710512553")
    );
    let listed = common::sh_ok(&format!("ls '{m}/DCIM/Camera/.sh_thumbnails/large'"));
    assert_eq!(listed.trim(), format!("{md5}.png"));
    // df shows OneDrive's quota: 5 GiB total, 2 GiB free.
    let df = common::sh_ok(&format!("df -B1 --output=size,avail '{m}' | tail -1"));
    assert_eq!(
        df.split_whitespace().collect::<Vec<_>>(),
        vec![(5u64 << 30).to_string(), (2u64 << 30).to_string()]
    );
    if common::sh("command -v getfattr").status.success() {
        let state = common::sh_ok(&format!(
            "getfattr --only-values -n user.galleryfs.state '{m}/DCIM/Camera/20240315_142233.jpg'"
        ));
        assert_eq!(state, "cloud");
        common::sh_ok(&format!(
            "setfattr -n user.galleryfs.pin -v 1 '{m}/DCIM/Camera/20240315_142233.jpg'"
        ));
        let state = common::sh_ok(&format!(
            "getfattr --only-values -n user.galleryfs.state '{m}/DCIM/Camera/20240315_142233.jpg'"
        ));
        assert_eq!(state, "pinned");
        let id = common::sh_ok(&format!(
            "getfattr --only-values -n user.galleryfs.id '{m}/DCIM/Camera'"
        ));
        assert_eq!(id, "A!3");
    } else {
        common::skip("part: getfattr/setfattr not installed (apt-get install attr)");
    }
    // chmod and chown succeed without effect.
    common::sh_ok(&format!("chmod 600 '{m}/DCIM/Camera/20240315_142233.jpg'"));
    assert_eq!(
        common::sh_ok(&format!("stat -c %a '{m}/DCIM/Camera/20240315_142233.jpg'")).trim(),
        "644"
    );
    mounted.unmount().unwrap();
}
