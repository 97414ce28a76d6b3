//! The write path at the core level (no kernel): staging, the journal in the outbox, renames that keep ids,
//! the editor's atomic save, guards on names and quota, debounce and durability across a restart.

mod edits_support;

use edits_support::Gallery;
use galleryfs::fs::gallery::{LocalEdits, UploadHold};
use galleryfs::fs::{Caller, FsCore, OpenMode, SetAttr, SetTime, ROOT_INO};
use galleryfs::store::{ContentState, OutboxOp, Store};
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const C: Caller = Caller { uid: 0, gid: 0, pid: 0 };

fn rw() -> OpenMode {
    OpenMode {
        read: true,
        write: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_new_file_is_staged_journalled_and_read_back() {
    let g = Gallery::new(Duration::from_secs(2));
    let ino = g.write_file(ROOT_INO, "new.jpg", b"hello world").await;
    let row = g.store.get(ino).unwrap().unwrap();
    assert!(row.local_only && row.is_dirty());
    assert_eq!(row.size, 11);
    let ops = g.ops();
    assert_eq!(ops.len(), 1, "{ops:?}");
    let OutboxOp::Upload { ino: i, staged_path, size, .. } = &ops[0] else {
        panic!("{ops:?}")
    };
    assert_eq!((*i, *size), (ino, 11));
    assert_eq!(std::fs::read(staged_path).unwrap(), b"hello world");
    assert_eq!(g.read_file(ino).await, b"hello world");
    let (attr, _) = g.fs.getattr(ino).await.unwrap();
    assert_eq!(attr.size, 11);
    let state = g.fs.getxattr(ino, OsStr::new("user.galleryfs.state")).await.unwrap();
    assert_eq!(state, b"dirty");
}

#[tokio::test]
async fn a_temporary_file_deleted_before_upload_never_reaches_the_outbox() {
    let g = Gallery::new(Duration::from_secs(2));
    let ino = g.write_file(ROOT_INO, "scratch.tmp", b"temp").await;
    assert_eq!(g.ops().len(), 1);
    g.fs.unlink(C, ROOT_INO, OsStr::new("scratch.tmp")).await.unwrap();
    assert!(g.ops().is_empty(), "{:?}", g.ops());
    assert!(g.store.get(ino).unwrap().is_none());
    assert!(!g.staging.join(ino.to_string()).exists());
    let trash = g
        .store
        .read(|t| t.trash_since(chrono::Utc::now() - chrono::Duration::days(1)))
        .unwrap();
    assert!(trash.is_empty());
}

#[tokio::test]
async fn a_partial_overwrite_copies_the_original_up_and_keeps_the_id() {
    let g = Gallery::new(Duration::from_secs(2));
    let ino = g.add_remote_file("X!1", ROOT_INO, "photo.jpg", b"0123456789");
    let o = g.fs.open(C, ino, rw()).await.unwrap();
    assert_eq!(g.fs.write(ino, o.fh, 2, b"ab").await.unwrap(), 2);
    // Readers see their own writes at once, before any close.
    let r = g.fs.open(C, ino, OpenMode { read: true, ..Default::default() }).await.unwrap();
    assert_eq!(&g.fs.read(ino, r.fh, 0, 100).await.unwrap()[..], b"01ab456789");
    g.fs.release(ino, r.fh).await.unwrap();
    assert_eq!(g.fs.upload_hold(ino), UploadHold::OpenForWriting);
    g.fs.flush(ino, o.fh).await.unwrap();
    g.fs.release(ino, o.fh).await.unwrap();
    let row = g.store.get(ino).unwrap().unwrap();
    assert_eq!(row.item_id, "X!1");
    assert!(row.is_dirty() && !row.local_only);
    assert_eq!(row.base_ctag.as_deref(), Some("c-X!1"), "the baseline stays what OneDrive last agreed");
    assert_eq!(std::fs::read(g.staging.join(ino.to_string())).unwrap(), b"01ab456789");
    assert!(matches!(g.ops()[..], [OutboxOp::Upload { .. }]));
    // Inside the write-back delay the upload waits.
    assert!(matches!(g.fs.upload_hold(ino), UploadHold::Wait(_)));
}

#[tokio::test]
async fn opening_for_writing_without_writing_changes_nothing() {
    let g = Gallery::new(Duration::from_secs(2));
    let ino = g.add_remote_file("X!1", ROOT_INO, "photo.jpg", b"0123456789");
    let o = g.fs.open(C, ino, rw()).await.unwrap();
    g.fs.flush(ino, o.fh).await.unwrap();
    g.fs.release(ino, o.fh).await.unwrap();
    assert!(g.ops().is_empty());
    let row = g.store.get(ino).unwrap().unwrap();
    assert_eq!(row.content_state, ContentState::Cloud);
    assert!(!g.staging.join(ino.to_string()).exists());
}

#[tokio::test]
async fn an_editors_atomic_save_uploads_to_the_same_item() {
    let g = Gallery::new(Duration::from_secs(2));
    let album = g.add_remote_dir("D!1", ROOT_INO, "Album");
    let x = g.add_remote_file("X!1", album, "photo.jpg", b"old");
    let tmp = g.write_file(album, "photo.jpg.tmp", b"new content").await;
    g.fs.rename(C, album, OsStr::new("photo.jpg.tmp"), album, OsStr::new("photo.jpg"), false)
        .await
        .unwrap();
    assert!(g.store.get(x).unwrap().is_none());
    let row = g.store.lookup(album, "photo.jpg").unwrap().unwrap();
    assert_eq!(row.ino, tmp);
    assert_eq!(row.item_id, "X!1", "the save keeps the OneDrive item (and its version history)");
    assert_eq!(row.base_ctag.as_deref(), Some("c-X!1"));
    assert!(!row.local_only && row.is_dirty());
    let ops = g.ops();
    assert!(
        ops.iter().all(|o| matches!(o, OutboxOp::Upload { ino, .. } if *ino == tmp)),
        "no delete, no move: {ops:?}"
    );
    assert_eq!(g.read_file(tmp).await, b"new content");
}

#[tokio::test]
async fn deletes_renames_and_folders_are_journalled() {
    let g = Gallery::new(Duration::from_secs(2));
    let album = g.add_remote_dir("D!1", ROOT_INO, "Album");
    let a = g.add_remote_file("A!1", album, "a.jpg", b"aaa");
    g.add_remote_file("B!1", album, "b.jpg", b"bbb");
    // rmdir of a non-empty folder fails; unlink of a folder fails.
    assert_eq!(
        g.fs.rmdir(C, ROOT_INO, OsStr::new("Album")).await.unwrap_err().errno(),
        libc::ENOTEMPTY
    );
    assert_eq!(
        g.fs.unlink(C, ROOT_INO, OsStr::new("Album")).await.unwrap_err().errno(),
        libc::EISDIR
    );
    // mkdir, then move a.jpg into it under a new name: the item keeps its inode and id.
    let sub = g.fs.mkdir(C, album, OsStr::new("Best")).await.unwrap().attr.ino;
    g.fs.rename(C, album, OsStr::new("a.jpg"), sub, OsStr::new("A1.jpg"), false)
        .await
        .unwrap();
    let moved = g.store.lookup(sub, "a1.JPG").unwrap().unwrap();
    assert_eq!((moved.ino, moved.item_id.as_str()), (a, "A!1"));
    // rename over an existing remote file: the target goes to the recycle bin.
    g.fs.rename(C, sub, OsStr::new("A1.jpg"), album, OsStr::new("b.jpg"), false)
        .await
        .unwrap();
    g.fs.unlink(C, album, OsStr::new("b.jpg")).await.unwrap();
    let ops = g.ops();
    assert!(matches!(&ops[0], OutboxOp::Mkdir { ino, name, .. } if *ino == sub && name == "Best"), "{ops:?}");
    assert!(matches!(&ops[1], OutboxOp::Delete { item_id, .. } if item_id == "B!1"), "{ops:?}");
    assert!(matches!(&ops[2], OutboxOp::Delete { item_id, .. } if item_id == "A!1"), "{ops:?}");
    assert_eq!(ops.len(), 3, "moves of a deleted item are dropped: {ops:?}");
    let trash = g
        .store
        .read(|t| t.trash_since(chrono::Utc::now() - chrono::Duration::days(1)))
        .unwrap();
    let mut paths: Vec<_> = trash.iter().map(|t| t.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, vec!["/Album/b.jpg", "/Album/b.jpg"]);
    assert!(trash.iter().any(|t| t.item_id == "A!1") && trash.iter().any(|t| t.item_id == "B!1"));
    // The now-empty local folder is removed without reaching the network.
    g.fs.rmdir(C, album, OsStr::new("Best")).await.unwrap();
    assert!(!g.ops().iter().any(|o| matches!(o, OutboxOp::Mkdir { .. })));
    // A rename of a remote folder is a Move.
    g.fs.rename(C, ROOT_INO, OsStr::new("Album"), ROOT_INO, OsStr::new("Album 2024"), false)
        .await
        .unwrap();
    assert!(matches!(g.ops().last(), Some(OutboxOp::Move { item_id, new_name, .. }) if item_id == "D!1" && new_name == "Album 2024"));
}

#[tokio::test]
async fn names_onedrive_rejects_create_nothing() {
    let g = Gallery::new(Duration::from_secs(2));
    let mode = OpenMode { write: true, ..Default::default() };
    for (name, errno) in [
        ("a:b.jpg", libc::EINVAL),
        ("CON.txt", libc::EINVAL),
        ("trailing.", libc::EINVAL),
        ("desktop.ini", libc::EINVAL),
    ] {
        let e = g.fs.create(C, ROOT_INO, OsStr::new(name), mode).await.unwrap_err();
        assert_eq!(e.errno(), errno, "{name}");
        assert_eq!(g.fs.mkdir(C, ROOT_INO, OsStr::new(name)).await.unwrap_err().errno(), errno);
    }
    let long = "x".repeat(256);
    assert_eq!(
        g.fs.create(C, ROOT_INO, OsStr::new(&long), mode).await.unwrap_err().errno(),
        libc::ENAMETOOLONG
    );
    g.write_file(ROOT_INO, "ok.jpg", b"1").await;
    assert_eq!(
        g.fs.rename(C, ROOT_INO, OsStr::new("ok.jpg"), ROOT_INO, OsStr::new("bad|name"), false)
            .await
            .unwrap_err()
            .errno(),
        libc::EINVAL
    );
    assert_eq!(g.store.item_count().unwrap(), 1);
    assert_eq!(g.ops().len(), 1);
}

#[tokio::test]
async fn over_quota_refuses_writes_and_keeps_reads() {
    let g = Gallery::new(Duration::from_secs(2));
    let ino = g.add_remote_file("X!1", ROOT_INO, "photo.jpg", b"0123456789");
    let w = g.fs.open(C, ino, rw()).await.unwrap();
    g.fs.set_quota_exceeded(true);
    let mode = OpenMode { write: true, ..Default::default() };
    assert_eq!(
        g.fs.create(C, ROOT_INO, OsStr::new("n.jpg"), mode).await.unwrap_err().errno(),
        libc::ENOSPC
    );
    assert_eq!(g.fs.mkdir(C, ROOT_INO, OsStr::new("d")).await.unwrap_err().errno(), libc::ENOSPC);
    assert_eq!(g.fs.write(ino, w.fh, 0, b"x").await.unwrap_err().errno(), libc::ENOSPC);
    assert_eq!(g.read_file(ino).await, b"0123456789");
    g.fs.set_quota_exceeded(false);
    g.fs.write(ino, w.fh, 0, b"x").await.unwrap();
    g.fs.release(ino, w.fh).await.unwrap();
}

#[tokio::test]
async fn truncate_and_utimens_on_closed_files_are_journalled_at_once() {
    let g = Gallery::new(Duration::from_secs(2));
    let ino = g.add_remote_file("X!1", ROOT_INO, "photo.jpg", b"0123456789");
    g.fs.setattr(C, ino, SetAttr { size: Some(4), ..Default::default() }).await.unwrap();
    assert_eq!(g.read_file(ino).await, b"0123");
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let (attr, _) = g
        .fs
        .setattr(C, ino, SetAttr { mtime: Some(SetTime::At(when)), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(attr.mtime, when);
    assert_eq!(attr.size, 4);
    let ops = g.ops();
    assert!(matches!(ops.last(), Some(OutboxOp::Upload { size: 4, mtime: 1_600_000_000, .. })), "{ops:?}");
    let row = g.store.get(ino).unwrap().unwrap();
    assert_eq!((row.size, row.mtime), (4, 1_600_000_000));
}

#[tokio::test]
async fn fsync_skips_the_write_back_delay() {
    let g = Gallery::new(Duration::from_secs(3600));
    let (e, o) = g
        .fs
        .create(C, ROOT_INO, OsStr::new("a.jpg"), OpenMode { write: true, ..Default::default() })
        .await
        .unwrap();
    let ino = e.attr.ino;
    g.fs.write(ino, o.fh, 0, b"abc").await.unwrap();
    assert!(g.ops().is_empty(), "nothing is journalled before close or fsync");
    g.fs.fsync(ino, o.fh, false).await.unwrap();
    assert_eq!(g.ops().len(), 1);
    assert_eq!(g.fs.upload_hold(ino), UploadHold::Ready);
    g.fs.release(ino, o.fh).await.unwrap();
    let g2 = Gallery::new(Duration::from_secs(3600));
    let ino2 = g2.write_file(ROOT_INO, "b.jpg", b"b").await;
    assert!(matches!(g2.fs.upload_hold(ino2), UploadHold::Wait(d) if d > Duration::from_secs(3500)));
}

#[tokio::test]
async fn the_journal_and_staged_bytes_survive_a_restart() {
    let g = Gallery::new(Duration::from_secs(2));
    let ino = g.add_remote_file("X!1", ROOT_INO, "photo.jpg", b"0123456789");
    let (e, o) = g
        .fs
        .create(C, ROOT_INO, OsStr::new("new.jpg"), OpenMode { write: true, ..Default::default() })
        .await
        .unwrap();
    g.fs.write(e.attr.ino, o.fh, 0, b"fresh").await.unwrap();
    g.fs.flush(e.attr.ino, o.fh).await.unwrap();
    g.fs.unlink(C, ROOT_INO, OsStr::new("photo.jpg")).await.unwrap();
    // The process dies: no release, no clean shutdown.
    let Gallery { dir, .. } = g;
    let store = Arc::new(Store::open(dir.path().join("meta.db")).unwrap());
    let g = Gallery::over(dir, store, Duration::from_secs(2));
    let ops = g.ops();
    assert!(matches!(&ops[0], OutboxOp::Upload { ino: i, size: 5, .. } if *i == e.attr.ino), "{ops:?}");
    assert!(matches!(&ops[1], OutboxOp::Delete { ino: i, item_id } if *i == ino && item_id == "X!1"));
    assert_eq!(g.read_file(e.attr.ino).await, b"fresh");
}
