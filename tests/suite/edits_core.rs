//! The write path at the core level (no kernel): staging, the journal in the outbox, renames that keep ids,
//! the editor's atomic save, guards on names and quota, debounce and durability across a restart.

use crate::edits_support;

use edits_support::Gallery;
use galleryfs::fs::{Caller, FsCore, OpenMode, SetAttr, SetTime, ROOT_INO};
use galleryfs::store::{ContentState, OutboxOp, Store};
use galleryfs::sync::local_edits::{LocalEdits, UploadHold};
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const C: Caller = Caller { uid: 0, gid: 0, pid: 0 };

fn ro() -> OpenMode {
    OpenMode {
        read: true,
        ..Default::default()
    }
}

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
    let OutboxOp::Upload {
        ino: i,
        staged_path,
        size,
        ..
    } = &ops[0]
    else {
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
    let r = g.fs.open(C, ino, ro()).await.unwrap();
    assert_eq!(&g.fs.read(ino, r.fh, 0, 100).await.unwrap()[..], b"01ab456789");
    g.fs.release(ino, r.fh).await.unwrap();
    assert_eq!(g.fs.upload_hold(ino), UploadHold::OpenForWriting);
    g.fs.flush(ino, o.fh).await.unwrap();
    g.fs.release(ino, o.fh).await.unwrap();
    let row = g.store.get(ino).unwrap().unwrap();
    assert_eq!(row.item_id, "X!1");
    assert!(row.is_dirty() && !row.local_only);
    assert_eq!(
        row.base_ctag.as_deref(),
        Some("c-X!1"),
        "the baseline stays what OneDrive last agreed"
    );
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
    g.fs.rename(
        C,
        album,
        OsStr::new("photo.jpg.tmp"),
        album,
        OsStr::new("photo.jpg"),
        false,
    )
    .await
    .unwrap();
    assert!(g.store.get(x).unwrap().is_none());
    let row = g.store.lookup(album, "photo.jpg").unwrap().unwrap();
    assert_eq!(row.ino, tmp);
    assert_eq!(
        row.item_id, "X!1",
        "the save keeps the OneDrive item (and its version history)"
    );
    assert_eq!(row.base_ctag.as_deref(), Some("c-X!1"));
    assert!(!row.local_only && row.is_dirty());
    let ops = g.ops();
    assert!(
        ops.iter()
            .all(|o| matches!(o, OutboxOp::Upload { ino, .. } if *ino == tmp)),
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
    assert!(
        matches!(&ops[0], OutboxOp::Mkdir { ino, name, .. } if *ino == sub && name == "Best"),
        "{ops:?}"
    );
    assert!(
        matches!(&ops[1], OutboxOp::Delete { item_id, .. } if item_id == "B!1"),
        "{ops:?}"
    );
    assert!(
        matches!(&ops[2], OutboxOp::Delete { item_id, .. } if item_id == "A!1"),
        "{ops:?}"
    );
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
    g.fs.rename(
        C,
        ROOT_INO,
        OsStr::new("Album"),
        ROOT_INO,
        OsStr::new("Album 2024"),
        false,
    )
    .await
    .unwrap();
    assert!(
        matches!(g.ops().last(), Some(OutboxOp::Move { item_id, new_name, .. }) if item_id == "D!1" && new_name == "Album 2024")
    );
}

#[tokio::test]
async fn names_onedrive_rejects_create_nothing() {
    let g = Gallery::new(Duration::from_secs(2));
    let mode = OpenMode {
        write: true,
        ..Default::default()
    };
    for (name, errno) in [
        ("a:b.jpg", libc::EINVAL),
        ("CON.txt", libc::EINVAL),
        ("trailing.", libc::EINVAL),
        ("desktop.ini", libc::EINVAL),
    ] {
        let e = g.fs.create(C, ROOT_INO, OsStr::new(name), mode).await.unwrap_err();
        assert_eq!(e.errno(), errno, "{name}");
        assert_eq!(
            g.fs.mkdir(C, ROOT_INO, OsStr::new(name)).await.unwrap_err().errno(),
            errno
        );
    }
    let long = "x".repeat(256);
    assert_eq!(
        g.fs.create(C, ROOT_INO, OsStr::new(&long), mode)
            .await
            .unwrap_err()
            .errno(),
        libc::ENAMETOOLONG
    );
    g.write_file(ROOT_INO, "ok.jpg", b"1").await;
    assert_eq!(
        g.fs.rename(
            C,
            ROOT_INO,
            OsStr::new("ok.jpg"),
            ROOT_INO,
            OsStr::new("bad|name"),
            false
        )
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
    let mode = OpenMode {
        write: true,
        ..Default::default()
    };
    assert_eq!(
        g.fs.create(C, ROOT_INO, OsStr::new("n.jpg"), mode)
            .await
            .unwrap_err()
            .errno(),
        libc::ENOSPC
    );
    assert_eq!(
        g.fs.mkdir(C, ROOT_INO, OsStr::new("d")).await.unwrap_err().errno(),
        libc::ENOSPC
    );
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
    g.fs.setattr(
        C,
        ino,
        SetAttr {
            size: Some(4),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(g.read_file(ino).await, b"0123");
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let (attr, _) =
        g.fs.setattr(
            C,
            ino,
            SetAttr {
                mtime: Some(SetTime::At(when)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(attr.mtime, when);
    assert_eq!(attr.size, 4);
    let ops = g.ops();
    assert!(
        matches!(
            ops.last(),
            Some(OutboxOp::Upload {
                size: 4,
                mtime: 1_600_000_000,
                ..
            })
        ),
        "{ops:?}"
    );
    let row = g.store.get(ino).unwrap().unwrap();
    assert_eq!((row.size, row.mtime), (4, 1_600_000_000));
}

/// rsync closes its temporary file and sets its times at once; the kernel sends the release asynchronously, so
/// the `utimensat` may run while the release journals the content. The times are journalled all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utimens_racing_the_release_of_the_last_writer_is_journalled() {
    let g = Gallery::new(Duration::from_secs(2));
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_622_548_800);
    for i in 0..300 {
        let mode = OpenMode {
            write: true,
            truncate: true,
            ..Default::default()
        };
        let name = format!(".a{i}.txt.XXXXXX");
        let (e, o) = g.fs.create(C, ROOT_INO, OsStr::new(&name), mode).await.unwrap();
        let ino = e.attr.ino;
        g.fs.write(ino, o.fh, 0, b"one\n").await.unwrap();
        g.fs.flush(ino, o.fh).await.unwrap();
        let fs = g.fs.clone();
        let release = tokio::spawn(async move { fs.release(ino, o.fh).await.unwrap() });
        let times = SetAttr {
            mtime: Some(SetTime::At(when)),
            ..Default::default()
        };
        // Start the change at varying points of the release.
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_micros(10 * (i % 30)) {
            std::hint::spin_loop();
        }
        g.fs.setattr(C, ino, times).await.unwrap();
        release.await.unwrap();
        let journalled = g.ops().into_iter().rev().find_map(|op| match op {
            OutboxOp::Upload { ino: i, mtime, .. } if i == ino => Some(mtime),
            _ => None,
        });
        assert_eq!(
            journalled,
            Some(1_622_548_800),
            "round {i}: the times set are journalled"
        );
    }
}

#[tokio::test]
async fn fsync_skips_the_write_back_delay() {
    let g = Gallery::new(Duration::from_secs(3600));
    let (e, o) =
        g.fs.create(
            C,
            ROOT_INO,
            OsStr::new("a.jpg"),
            OpenMode {
                write: true,
                ..Default::default()
            },
        )
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
    let (e, o) =
        g.fs.create(
            C,
            ROOT_INO,
            OsStr::new("new.jpg"),
            OpenMode {
                write: true,
                ..Default::default()
            },
        )
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
    assert!(
        matches!(&ops[0], OutboxOp::Upload { ino: i, size: 5, .. } if *i == e.attr.ino),
        "{ops:?}"
    );
    assert!(matches!(&ops[1], OutboxOp::Delete { ino: i, item_id } if *i == ino && item_id == "X!1"));
    assert_eq!(g.read_file(e.attr.ino).await, b"fresh");
}

// ---- replay to a mock OneDrive ----

use edits_support::{quick_config, read_whole, Synced};
use galleryfs::remote::drive_api::{DriveApi, DriveError};
use galleryfs::remote::mock_drive::{FailingDrive, MockDrive, MockOp};
use galleryfs::remote::models::Quota;
use galleryfs::remote::QuickXorHash;
use galleryfs::store::ContentState as State;
use galleryfs::sync::outbox_replay::{self, ReplayConfig};

async fn synced(write_back: Duration) -> Synced {
    let mock = Arc::new(MockDrive::new());
    Synced::new(mock.clone(), mock, write_back, quick_config()).await
}

#[tokio::test]
async fn replay_creates_edits_and_keeps_ids() {
    let s = synced(Duration::ZERO).await;
    let album_id = s.mock.add_folder(&s.gallery_id, "Album");
    let old_id = s.mock.add_file(&album_id, "photo.jpg", &b"old bytes"[..]);
    s.sync().await;
    let album = s.store.get_by_item_id(&album_id).unwrap().unwrap().ino;
    // A new file, with an mtime set afterwards (cp -p / touch -d).
    let new = s.write_file(album, "new.jpg", b"brand new").await;
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_650_000_000);
    s.fs.setattr(
        C,
        new,
        SetAttr {
            mtime: Some(SetTime::At(when)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // An editor's save over the existing photo.
    s.write_file(album, "photo.jpg.tmp", b"edited bytes").await;
    s.fs.rename(
        C,
        album,
        OsStr::new("photo.jpg.tmp"),
        album,
        OsStr::new("photo.jpg"),
        false,
    )
    .await
    .unwrap();
    let report = s.replayer.replay_once().await.unwrap();
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(
        s.store.pending().unwrap().is_empty(),
        "{:?}",
        s.store.pending().unwrap()
    );
    // Two uploads only: the superseded journal entry of new.jpg was coalesced.
    assert_eq!(s.mock.count(MockOp::Upload), 2);
    let remote_new = s.remote("Album/new.jpg").unwrap();
    assert_eq!(
        remote_new.quick_xor_hash(),
        Some(QuickXorHash::of(b"brand new").as_str())
    );
    assert_eq!(remote_new.modified().unwrap().timestamp(), 1_650_000_000);
    let row = s.store.get(new).unwrap().unwrap();
    assert_eq!(row.item_id, remote_new.id);
    assert!(!row.local_only && row.content_state == State::Cloud);
    assert_eq!(row.base_ctag, remote_new.c_tag, "the upload is the new baseline");
    assert!(!s.staging.join(new.to_string()).exists());
    let photo = s.remote("Album/photo.jpg").unwrap();
    assert_eq!(photo.id, old_id, "the atomic save kept the item id");
    assert_eq!(s.mock.content(&old_id).unwrap(), &b"edited bytes"[..]);
    assert!(s.remote("Album/photo.jpg.tmp").is_none());
    // Reading back after the upload comes from OneDrive.
    assert_eq!(read_whole(&s.fs, new).await, b"brand new");
}

#[tokio::test]
async fn replay_moves_deletes_and_folders_in_order() {
    let s = synced(Duration::ZERO).await;
    let a_id = s.mock.add_file(&s.gallery_id, "a.jpg", &b"a"[..]);
    let b_id = s.mock.add_file(&s.gallery_id, "b.jpg", &b"b"[..]);
    s.sync().await;
    let trip = s.fs.mkdir(C, ROOT_INO, OsStr::new("Trip")).await.unwrap().attr.ino;
    let day1 = s.fs.mkdir(C, trip, OsStr::new("Day 1")).await.unwrap().attr.ino;
    s.write_file(day1, "c.jpg", b"c").await;
    s.fs.rename(C, ROOT_INO, OsStr::new("a.jpg"), day1, OsStr::new("a-moved.jpg"), false)
        .await
        .unwrap();
    s.fs.unlink(C, ROOT_INO, OsStr::new("b.jpg")).await.unwrap();
    s.fs.rename(
        C,
        ROOT_INO,
        OsStr::new("Trip"),
        ROOT_INO,
        OsStr::new("Trip 2026"),
        false,
    )
    .await
    .unwrap();
    let report = s.replayer.replay_once().await.unwrap();
    assert_eq!((report.failed, report.waiting), (0, 0), "{report:?}");
    assert!(s.store.pending().unwrap().is_empty());
    assert_eq!(s.remote("Trip 2026/Day 1/a-moved.jpg").unwrap().id, a_id);
    assert_eq!(s.remote_content("Trip 2026/Day 1/c.jpg").unwrap(), &b"c"[..]);
    assert!(s.remote("b.jpg").is_none());
    assert!(
        s.mock.get(&b_id).unwrap().deleted.is_some(),
        "deleted to the recycle bin"
    );
    let trash = s.store.read(|t| t.trash_entry(&b_id)).unwrap().unwrap();
    assert!(trash.in_recycle_bin && trash.path == "/b.jpg");
    // The next delta round agrees with the store: nothing changes, nothing is duplicated.
    let before = s.store.item_count().unwrap();
    s.sync().await;
    assert_eq!(s.store.item_count().unwrap(), before);
}

/// A file edited here while OneDrive deleted it (the deletion not yet seen by a delta round): the local version
/// is created anew, once, and stays; the row takes the new item.
#[tokio::test]
async fn an_edit_of_a_file_deleted_on_onedrive_is_created_anew_once() {
    let s = synced(Duration::ZERO).await;
    let id = s.mock.add_file(&s.gallery_id, "IMG_2.jpg", &b"v1"[..]);
    s.sync().await;
    s.write_file(ROOT_INO, "IMG_2.jpg", b"local edit").await;
    s.mock.delete_item(&id);
    for _ in 0..4 {
        s.replayer.replay_once().await.unwrap();
    }
    assert!(
        s.store.pending().unwrap().is_empty(),
        "{:?}",
        s.store.pending().unwrap()
    );
    let remote = s.remote("IMG_2.jpg").expect("the local version is on OneDrive");
    assert_ne!(remote.id, id, "a new item");
    assert_eq!(s.remote_content("IMG_2.jpg").unwrap(), &b"local edit"[..]);
    let row = s.store.lookup(ROOT_INO, "IMG_2.jpg").unwrap().unwrap();
    assert_eq!(row.item_id, remote.id);
}

#[tokio::test]
async fn both_sides_changed_makes_a_conflict_copy_and_loses_nothing() {
    let s = synced(Duration::ZERO).await;
    let id = s.mock.add_file(&s.gallery_id, "IMG_1.jpg", &b"v1"[..]);
    s.sync().await;
    let ino = s.store.get_by_item_id(&id).unwrap().unwrap().ino;
    // A reader opened the old version before anything changed.
    let reader =
        s.fs.open(
            C,
            ino,
            OpenMode {
                read: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    s.write_file(ROOT_INO, "IMG_1.jpg", b"local edit").await;
    s.mock.edit_file(&id, &b"remote edit"[..]);
    s.sync().await; // the dirty row is protected; the baseline stays v1
    let report = s.replayer.replay_once().await.unwrap();
    assert_eq!(report.conflicts, 1, "{report:?}");
    let today = chrono::Local::now().date_naive().format("%Y-%m-%d").to_string();
    let copy_name = format!("IMG_1 (conflict {today} testhost).jpg");
    assert_eq!(
        s.mock.content(&id).unwrap(),
        &b"remote edit"[..],
        "OneDrive's version keeps the name"
    );
    assert_eq!(s.remote_content(&copy_name).unwrap(), &b"local edit"[..]);
    let original = s.store.lookup(ROOT_INO, "IMG_1.jpg").unwrap().unwrap();
    assert_eq!(original.item_id, id);
    let copy = s.store.lookup(ROOT_INO, &copy_name).unwrap().unwrap();
    assert_eq!(copy.ino, ino);
    assert_eq!(read_whole(&s.fs, original.ino).await, b"remote edit");
    assert_eq!(read_whole(&s.fs, copy.ino).await, b"local edit");
    s.fs.release(ino, reader.fh).await.unwrap();
    s.sync().await;
    assert_eq!(s.store.item_count().unwrap(), 2);
}

#[tokio::test]
async fn an_outage_keeps_everything_and_replays_in_order_afterwards() {
    let mock = Arc::new(MockDrive::new());
    let failing = Arc::new(FailingDrive::new(mock.clone()));
    let s = Synced::new(mock.clone(), failing.clone(), Duration::ZERO, quick_config()).await;
    let keep = s.mock.add_file(&s.gallery_id, "gone.jpg", &b"x"[..]);
    s.sync().await;
    failing.fail_fraction(1.0, DriveError::Offline("network unreachable".into()));
    let dir = s.fs.mkdir(C, ROOT_INO, OsStr::new("Offline")).await.unwrap().attr.ino;
    let f = s.write_file(dir, "made offline.jpg", b"offline bytes").await;
    s.fs.unlink(C, ROOT_INO, OsStr::new("gone.jpg")).await.unwrap();
    let report = s.replayer.replay_once().await.unwrap();
    assert!(report.offline && report.failed == 1, "{report:?}");
    assert_eq!(s.store.pending().unwrap().len(), 3);
    // Offline, the mount keeps working: the new file reads back and shows as dirty.
    assert_eq!(read_whole(&s.fs, f).await, b"offline bytes");
    assert_eq!(
        s.fs.getxattr(f, OsStr::new("user.galleryfs.state")).await.unwrap(),
        b"dirty"
    );
    failing.heal();
    tokio::time::sleep(Duration::from_millis(60)).await;
    let report = s.replayer.replay_once().await.unwrap();
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(s.store.pending().unwrap().is_empty());
    assert_eq!(
        s.remote_content("Offline/made offline.jpg").unwrap(),
        &b"offline bytes"[..]
    );
    assert!(s.mock.get(&keep).unwrap().deleted.is_some());
}

#[tokio::test]
async fn over_quota_keeps_the_file_dirty_until_space_returns() {
    let s = synced(Duration::ZERO).await;
    s.mock.set_quota(Quota {
        state: Some("exceeded".into()),
        ..Default::default()
    });
    let f = s.write_file(ROOT_INO, "big.jpg", b"payload").await;
    let report = s.replayer.replay_once().await.unwrap();
    assert!(report.quota_exceeded, "{report:?}");
    assert!(s.fs.quota_exceeded());
    assert!(s.store.get(f).unwrap().unwrap().is_dirty());
    assert_eq!(read_whole(&s.fs, f).await, b"payload");
    let mode = OpenMode {
        write: true,
        ..Default::default()
    };
    assert_eq!(
        s.fs.create(C, ROOT_INO, OsStr::new("more.jpg"), mode)
            .await
            .unwrap_err()
            .errno(),
        libc::ENOSPC
    );
    assert!(s
        .store
        .meta(outbox_replay::meta_keys::OUTBOX_MESSAGE)
        .unwrap()
        .is_some());
    // A pass that attempts nothing (the refused upload waits for its retry) keeps telling the user: it used to
    // clear the message, and `status` lost "OneDrive is full" (cli_mount caught it).
    let idle = s.replayer.replay_once().await.unwrap();
    assert!(!idle.quota_exceeded && idle.failed == 0, "{idle:?}");
    assert!(s
        .store
        .meta(outbox_replay::meta_keys::OUTBOX_MESSAGE)
        .unwrap()
        .is_some_and(|m| m.contains("OneDrive is full")));
    s.mock.set_quota(Quota {
        state: Some("normal".into()),
        ..Default::default()
    });
    s.store
        .write(|t| {
            for e in t.pending()? {
                t.fail(e.seq, "test: retry now", chrono::Utc::now())?;
            }
            Ok::<_, galleryfs::store::StoreError>(())
        })
        .unwrap();
    let report = s.replayer.replay_once().await.unwrap();
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(!s.fs.quota_exceeded());
    assert_eq!(s.remote_content("big.jpg").unwrap(), &b"payload"[..]);
    assert!(s
        .store
        .meta(outbox_replay::meta_keys::OUTBOX_MESSAGE)
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn many_deletes_are_held_until_confirmed() {
    let mock = Arc::new(MockDrive::new());
    let config = ReplayConfig {
        big_delete_limit: 3,
        ..quick_config()
    };
    let s = Synced::new(mock.clone(), mock, Duration::ZERO, config).await;
    let ids: Vec<String> = (0..5)
        .map(|i| s.mock.add_file(&s.gallery_id, &format!("p{i}.jpg"), vec![i as u8]))
        .collect();
    s.sync().await;
    for i in 0..5 {
        s.fs.unlink(C, ROOT_INO, OsStr::new(&format!("p{i}.jpg")))
            .await
            .unwrap();
    }
    let report = s.replayer.replay_once().await.unwrap();
    assert_eq!((report.done, report.deletes_held), (3, 2), "{report:?}");
    let live = ids
        .iter()
        .filter(|id| s.mock.get(id).unwrap().deleted.is_none())
        .count();
    assert_eq!(live, 2);
    let message = s.store.meta(outbox_replay::meta_keys::OUTBOX_MESSAGE).unwrap().unwrap();
    assert!(message.contains("galleryfs trash confirm-deletes"), "{message}");
    outbox_replay::confirm_deletes(&s.store).unwrap();
    let report = s.replayer.replay_once().await.unwrap();
    assert_eq!((report.done, report.deletes_held), (2, 0), "{report:?}");
    assert!(ids.iter().all(|id| s.mock.get(id).unwrap().deleted.is_some()));
    assert!(s
        .store
        .meta(outbox_replay::meta_keys::OUTBOX_MESSAGE)
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_burst_of_writes_is_one_upload_after_the_write_back_delay() {
    let s = synced(Duration::from_millis(300)).await;
    let f = s.write_file(ROOT_INO, "burst.jpg", b"1").await;
    s.write_file(ROOT_INO, "burst.jpg", b"12").await;
    s.write_file(ROOT_INO, "burst.jpg", b"123").await;
    let report = s.replayer.replay_once().await.unwrap();
    assert!(report.waiting >= 1 && report.next_wake.is_some(), "{report:?}");
    assert_eq!(s.mock.count(MockOp::Upload), 0);
    // The background task uploads once the delay has passed.
    let task = tokio::spawn(s.replayer.clone().run(s.fs.outbox_wake()));
    for _ in 0..100 {
        if s.store.pending().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    assert!(s.store.pending().unwrap().is_empty());
    assert_eq!(s.mock.count(MockOp::Upload), 1);
    assert_eq!(s.remote_content("burst.jpg").unwrap(), &b"123"[..]);
    assert_eq!(s.store.get(f).unwrap().unwrap().content_state, State::Cloud);
}

#[tokio::test]
async fn a_crash_after_the_upload_but_before_the_journal_completes_makes_no_duplicate() {
    let s = synced(Duration::ZERO).await;
    s.write_file(ROOT_INO, "once.jpg", b"only once").await;
    // The upload reached OneDrive, then the process died before completing the entry.
    s.mock.add_file(&s.gallery_id, "once.jpg", &b"only once"[..]);
    let report = s.replayer.replay_once().await.unwrap();
    assert_eq!((report.failed, report.conflicts), (0, 0), "{report:?}");
    let names: Vec<_> = s
        .drive
        .children(&s.gallery_id)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["once.jpg".to_string()]);
}

#[tokio::test]
async fn a_restart_replays_what_the_dead_process_journalled() {
    let mock = Arc::new(MockDrive::new());
    let s = Synced::new(mock.clone(), mock.clone(), Duration::ZERO, quick_config()).await;
    let id = s.mock.add_file(&s.gallery_id, "edit.jpg", &b"before"[..]);
    s.sync().await;
    let ino = s.store.get_by_item_id(&id).unwrap().unwrap().ino;
    let (e, o) =
        s.fs.create(
            C,
            ROOT_INO,
            OsStr::new("fresh.jpg"),
            OpenMode {
                write: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    s.fs.write(e.attr.ino, o.fh, 0, b"fresh bytes").await.unwrap();
    s.fs.fsync(e.attr.ino, o.fh, false).await.unwrap();
    s.write_file(ROOT_INO, "edit.jpg", b"after").await;
    // kill -9: the filesystem, the replayer and every handle vanish without a release.
    let Synced { dir, .. } = s;
    let s = Synced::open(dir, mock.clone(), mock, Duration::ZERO, quick_config()).await;
    assert_eq!(s.store.get(ino).unwrap().unwrap().content_state, State::Dirty);
    let report = s.replayer.replay_once().await.unwrap();
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(s.store.pending().unwrap().is_empty());
    assert_eq!(s.mock.content(&id).unwrap(), &b"after"[..]);
    assert_eq!(s.remote_content("fresh.jpg").unwrap(), &b"fresh bytes"[..]);
}

#[tokio::test]
async fn the_gallery_deleted_on_onedrive_keeps_every_pending_change() {
    let s = synced(Duration::ZERO).await;
    let f = s.write_file(ROOT_INO, "kept.jpg", b"precious").await;
    s.mock.delete_item(&s.gallery_id);
    let report = s.replayer.replay_once().await.unwrap();
    assert!(report.gallery_missing, "{report:?}");
    let message = s.store.meta(outbox_replay::meta_keys::OUTBOX_MESSAGE).unwrap().unwrap();
    assert!(message.contains("gallery folder"), "{message}");
    assert_eq!(s.store.pending().unwrap().len(), 1);
    assert!(s.store.get(f).unwrap().unwrap().is_dirty());
    assert_eq!(read_whole(&s.fs, f).await, b"precious");
    // The folder comes back (restored from the recycle bin): the change goes out.
    s.mock.restore(&s.gallery_id, None, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    s.store
        .write(|t| {
            for e in t.pending()? {
                t.fail(e.seq, "test: retry now", chrono::Utc::now())?;
            }
            Ok::<_, galleryfs::store::StoreError>(())
        })
        .unwrap();
    let report = s.replayer.replay_once().await.unwrap();
    assert!(!report.gallery_missing && report.failed == 0, "{report:?}");
    assert_eq!(s.remote_content("kept.jpg").unwrap(), &b"precious"[..]);
}

#[tokio::test]
async fn a_file_never_closed_before_a_crash_is_journalled_at_the_next_start() {
    let mock = Arc::new(MockDrive::new());
    let s = Synced::new(mock.clone(), mock.clone(), Duration::ZERO, quick_config()).await;
    let (e, o) =
        s.fs.create(
            C,
            ROOT_INO,
            OsStr::new("unclosed.jpg"),
            OpenMode {
                write: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    s.fs.write(e.attr.ino, o.fh, 0, b"written, never closed").await.unwrap();
    std::fs::write(s.staging.join("999999"), b"orphan").unwrap();
    assert!(s.store.pending().unwrap().is_empty());
    let Synced { dir, .. } = s;
    let s = Synced::open(dir, mock.clone(), mock, Duration::ZERO, quick_config()).await;
    assert_eq!(s.fs.journal_leftovers().unwrap(), 1);
    assert!(
        !s.staging.join("999999").exists(),
        "staged files nothing refers to are removed"
    );
    s.replayer.replay_once().await.unwrap();
    assert_eq!(s.remote_content("unclosed.jpg").unwrap(), &b"written, never closed"[..]);
}

#[tokio::test]
async fn an_upload_killed_midway_completes_after_the_restart() {
    let mock = Arc::new(MockDrive::new());
    let s = Synced::new(mock.clone(), mock.clone(), Duration::ZERO, quick_config()).await;
    let big: Vec<u8> = (0..(6u32 << 20)).map(|i| (i % 251) as u8).collect();
    s.write_file(ROOT_INO, "video.mp4", &big).await;
    // The replayer dies while its upload request is in flight (the task is cancelled at that await point).
    mock.set_latency(Duration::from_millis(300));
    let task = tokio::spawn(s.replayer.clone().run(s.fs.outbox_wake()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    task.abort();
    let _ = task.await;
    mock.set_latency(Duration::ZERO);
    assert!(s.remote("video.mp4").is_none());
    let Synced { dir, .. } = s;
    let s = Synced::open(dir, mock.clone(), mock, Duration::ZERO, quick_config()).await;
    assert_eq!(s.store.pending().unwrap().len(), 1, "the journal entry survived");
    let report = s.replayer.replay_once().await.unwrap();
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(
        s.remote("video.mp4").unwrap().quick_xor_hash(),
        Some(QuickXorHash::of(&big).as_str())
    );
}

#[tokio::test]
async fn a_file_unlinked_while_open_keeps_working_for_its_writer() {
    let g = Gallery::new(Duration::from_secs(2));
    let (e, o) = g.fs.create(C, ROOT_INO, OsStr::new("open.jpg"), rw()).await.unwrap();
    let ino = e.attr.ino;
    g.fs.write(ino, o.fh, 0, b"abc").await.unwrap();
    g.fs.unlink(C, ROOT_INO, OsStr::new("open.jpg")).await.unwrap();
    g.fs.write(ino, o.fh, 3, b"def").await.unwrap();
    assert_eq!(&g.fs.read(ino, o.fh, 0, 10).await.unwrap()[..], b"abcdef");
    g.fs.flush(ino, o.fh).await.unwrap();
    g.fs.release(ino, o.fh).await.unwrap();
    assert!(g.ops().is_empty(), "{:?}", g.ops());
    assert!(!g.staging.join(ino.to_string()).exists());
}

/// Under a kernel, an `open` that resolved a name just before the file was unlinked or replaced (the kernel
/// still holds the inode) reaches the old file, readable, until the kernel forgets the inode.
#[tokio::test]
async fn a_removed_file_stays_reachable_until_the_kernel_forgets_it() {
    let g = Gallery::new(Duration::from_secs(2));
    g.fs.kernel_attached();
    let old = g.write_file(ROOT_INO, "photo.jpg", b"old version").await;
    let gone = g.write_file(ROOT_INO, "gone.jpg", b"unlinked").await;
    let new = g.write_file(ROOT_INO, "photo.jpg.tmp", b"new version").await;
    g.fs.rename(
        C,
        ROOT_INO,
        OsStr::new("photo.jpg.tmp"),
        ROOT_INO,
        OsStr::new("photo.jpg"),
        false,
    )
    .await
    .unwrap();
    g.fs.unlink(C, ROOT_INO, OsStr::new("gone.jpg")).await.unwrap();
    for (ino, want) in [(old, &b"old version"[..]), (gone, &b"unlinked"[..])] {
        let o = g.fs.open(C, ino, ro()).await.unwrap();
        assert_eq!(&g.fs.read(ino, o.fh, 0, 100).await.unwrap()[..], want);
        g.fs.release(ino, o.fh).await.unwrap();
        assert_eq!(g.fs.getattr(ino).await.unwrap().0.nlink, 0, "removed: no link");
    }
    assert_eq!(g.read_file(new).await, b"new version");
    for ino in [old, gone] {
        g.fs.forget(ino, 1);
        assert!(g.store.get(ino).unwrap().is_none(), "forgotten: gone");
        assert!(g.fs.getattr(ino).await.is_err());
        assert!(!g.staging.join(ino.to_string()).exists());
    }
}

#[tokio::test]
async fn a_delta_round_between_upload_and_commit_leaves_one_row() {
    let s = synced(Duration::ZERO).await;
    let f = s.write_file(ROOT_INO, "raced.jpg", b"race").await;
    let d = s.fs.mkdir(C, ROOT_INO, OsStr::new("Raced")).await.unwrap().attr.ino;
    // The items reach OneDrive and a delta round lists them before the replayer commits (simulated by
    // creating them remotely first: the replayer then finds its own bytes / folder under the name).
    s.mock.add_file(&s.gallery_id, "raced.jpg", &b"race"[..]);
    s.mock.add_folder(&s.gallery_id, "Raced");
    let changes = s.sync().await;
    assert!(!changes.inserted.is_empty() || s.store.item_count().unwrap() >= 2);
    let report = s.replayer.replay_once().await.unwrap();
    assert_eq!((report.failed, report.conflicts), (0, 0), "{report:?}");
    s.sync().await;
    let names: Vec<String> = s
        .store
        .children(ROOT_INO)
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(s.store.get(f).unwrap().is_some() && s.store.get(d).unwrap().is_some());
}

#[tokio::test]
async fn a_save_renamed_over_a_file_after_its_own_upload_still_keeps_the_id() {
    let s = synced(Duration::ZERO).await;
    let photo_id = s.mock.add_file(&s.gallery_id, "photo.jpg", &b"original"[..]);
    s.sync().await;
    // The temporary file's first upload finishes before the rename (write_back=0): it is an item of its own...
    let tmp = s.write_file(ROOT_INO, "photo.jpg.tmp", b"first draft").await;
    s.replayer.replay_once().await.unwrap();
    let tmp_id = s.remote("photo.jpg.tmp").expect("the temporary file was uploaded").id;
    // ...then is written again (its upload queued) and renamed over the photo.
    s.write_file(ROOT_INO, "photo.jpg.tmp", b"final edit").await;
    s.fs.rename(
        C,
        ROOT_INO,
        OsStr::new("photo.jpg.tmp"),
        ROOT_INO,
        OsStr::new("photo.jpg"),
        false,
    )
    .await
    .unwrap();
    let row = s.store.get(tmp).unwrap().unwrap();
    assert_eq!(
        (row.item_id.as_str(), row.name.as_str()),
        (photo_id.as_str(), "photo.jpg")
    );
    // A delta round listed before the journal drains changes nothing local.
    s.sync().await;
    let report = s.replayer.replay_once().await.unwrap();
    assert_eq!((report.failed, report.conflicts), (0, 0), "{report:?}");
    assert!(
        s.store.pending().unwrap().is_empty(),
        "{:?}",
        s.store.pending().unwrap()
    );
    let photo = s.remote("photo.jpg").unwrap();
    assert_eq!(photo.id, photo_id, "the save kept the photo's id (its version history)");
    assert_eq!(s.mock.content(&photo_id).unwrap(), &b"final edit"[..]);
    assert!(
        s.remote("photo.jpg.tmp").is_none(),
        "the temporary item went to the recycle bin"
    );
    assert!(s.mock.get(&tmp_id).unwrap().deleted.is_some());
    s.sync().await;
    let names: Vec<String> = s
        .store
        .children(ROOT_INO)
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["photo.jpg"]);
}

#[tokio::test]
async fn an_upload_that_finishes_after_its_file_took_over_another_item_leaves_no_stray() {
    use galleryfs::store::RemoteAttrs;
    use galleryfs::sync::upload_commit::RemoteResult;
    let s = synced(Duration::ZERO).await;
    let photo_id = s.mock.add_file(&s.gallery_id, "photo.jpg", &b"original"[..]);
    s.sync().await;
    let tmp = s.write_file(ROOT_INO, "photo.jpg.tmp", b"draft").await;
    s.replayer.replay_once().await.unwrap();
    let tmp_id = s.remote("photo.jpg.tmp").unwrap().id;
    s.write_file(ROOT_INO, "photo.jpg.tmp", b"edit").await;
    let upload_seq = s.store.pending().unwrap()[0].seq;
    s.fs.rename(
        C,
        ROOT_INO,
        OsStr::new("photo.jpg.tmp"),
        ROOT_INO,
        OsStr::new("photo.jpg"),
        false,
    )
    .await
    .unwrap();
    // The upload that was running when the rename came answers now, for the temporary item.
    let finished = RemoteResult {
        item_id: tmp_id.clone(),
        name: "photo.jpg.tmp".into(),
        attrs: RemoteAttrs {
            ctag: Some("late".into()),
            size: 4,
            ..Default::default()
        },
        requested: None,
        started_from: None,
    };
    assert!(s.fs.upload_committed(tmp, upload_seq, &finished).unwrap());
    let row = s.store.get(tmp).unwrap().unwrap();
    assert_eq!(row.item_id, photo_id, "the late answer does not take the identity back");
    let ops = s.store.pending().unwrap();
    let deletes = ops
        .iter()
        .filter(|e| matches!(&e.op, OutboxOp::Delete { item_id, .. } if *item_id == tmp_id))
        .count();
    assert_eq!(deletes, 1, "one delete of the stray: {ops:?}");
    assert!(ops.iter().any(|e| matches!(e.op, OutboxOp::Upload { .. })), "{ops:?}");
    s.replayer.replay_once().await.unwrap();
    assert!(s.store.pending().unwrap().is_empty());
    assert_eq!(s.mock.content(&photo_id).unwrap(), &b"edit"[..]);
    assert!(s.mock.get(&tmp_id).unwrap().deleted.is_some());
}

#[tokio::test]
async fn a_relisting_before_the_journal_drains_does_not_undo_local_deletes_and_moves() {
    let s = synced(Duration::ZERO).await;
    let gone_id = s.mock.add_file(&s.gallery_id, "gone.jpg", &b"x"[..]);
    let moved_id = s.mock.add_file(&s.gallery_id, "before.jpg", &b"y"[..]);
    let album_id = s.mock.add_folder(&s.gallery_id, "Album");
    s.sync().await;
    let album = s.store.get_by_item_id(&album_id).unwrap().unwrap().ino;
    s.fs.unlink(C, ROOT_INO, OsStr::new("gone.jpg")).await.unwrap();
    s.fs.rename(
        C,
        ROOT_INO,
        OsStr::new("before.jpg"),
        album,
        OsStr::new("after.jpg"),
        false,
    )
    .await
    .unwrap();
    // A full re-list (the periodic one, or a resync) runs before the outbox sends anything.
    s.store.delete_meta("delta_link").unwrap();
    assert!(
        s.store.delta_link().unwrap().is_none(),
        "the key of the delta link changed"
    );
    s.sync().await;
    assert!(
        s.store.lookup(ROOT_INO, "gone.jpg").unwrap().is_none(),
        "a deleted file came back"
    );
    assert!(
        s.store.lookup(ROOT_INO, "before.jpg").unwrap().is_none(),
        "a move was undone"
    );
    let moved = s
        .store
        .lookup(album, "after.jpg")
        .unwrap()
        .expect("the moved file kept its place");
    assert_eq!(moved.item_id, moved_id);
    s.replayer.replay_once().await.unwrap();
    assert!(s.mock.get(&gone_id).unwrap().deleted.is_some());
    assert!(s.remote("Album/after.jpg").is_some());
    s.sync().await;
    assert_eq!(s.store.lookup(album, "after.jpg").unwrap().unwrap().ino, moved.ino);
}

#[tokio::test]
async fn a_file_unlinked_while_open_reads_whole_and_leaves_onedrive_at_the_last_close() {
    let s = synced(Duration::ZERO).await;
    let remote_bytes: Vec<u8> = (0..50_000u32).map(|i| (i % 247) as u8).collect();
    let photo_id = s.mock.add_file(&s.gallery_id, "photo.jpg", remote_bytes.clone());
    s.sync().await;
    let photo = s.store.lookup(ROOT_INO, "photo.jpg").unwrap().unwrap().ino;
    let read_only = OpenMode {
        read: true,
        ..Default::default()
    };
    let fh = s.fs.open(C, photo, read_only).await.unwrap().fh;
    assert_eq!(&s.fs.read(photo, fh, 0, 1000).await.unwrap()[..], &remote_bytes[..1000]);
    // A new file, open and never sent (a long write-back).
    let new = s.write_file(ROOT_INO, "new.jpg", b"never sent").await;
    let new_fh = s.fs.open(C, new, read_only).await.unwrap().fh;
    s.fs.unlink(C, ROOT_INO, OsStr::new("photo.jpg")).await.unwrap();
    s.fs.unlink(C, ROOT_INO, OsStr::new("new.jpg")).await.unwrap();
    assert!(matches!(
        s.fs.lookup(C, ROOT_INO, OsStr::new("photo.jpg")).await,
        Err(galleryfs::fs::FsError::NotFound)
    ));
    assert!(s.store.children(ROOT_INO).unwrap().is_empty(), "gone from the folder");
    // The open descriptors still stat and read (what was not read yet comes from OneDrive, which still has it).
    assert_eq!(s.fs.getattr(photo).await.unwrap().0.size, remote_bytes.len() as u64);
    s.replayer.replay_once().await.unwrap();
    assert!(
        s.mock.get(&photo_id).unwrap().deleted.is_none(),
        "the delete waits for the last close"
    );
    // A full re-list meanwhile neither brings it back nor drops it.
    s.store.delete_meta("delta_link").unwrap();
    s.sync().await;
    assert!(s.store.children(ROOT_INO).unwrap().is_empty());
    assert_eq!(
        &s.fs.read(photo, fh, 1000, 60_000).await.unwrap()[..],
        &remote_bytes[1000..]
    );
    assert_eq!(&s.fs.read(new, new_fh, 0, 100).await.unwrap()[..], b"never sent");
    s.fs.release(photo, fh).await.unwrap();
    s.fs.release(new, new_fh).await.unwrap();
    assert!(s.store.get(photo).unwrap().is_none() && s.store.get(new).unwrap().is_none());
    s.replayer.replay_once().await.unwrap();
    assert!(
        s.store.pending().unwrap().is_empty(),
        "{:?}",
        s.store.pending().unwrap()
    );
    assert!(
        s.mock.get(&photo_id).unwrap().deleted.is_some(),
        "deleted on OneDrive after the last close"
    );
    assert_eq!(s.mock.count(MockOp::Upload), 0, "the new file never reached OneDrive");
}

#[test]
fn files_unlinked_while_open_when_the_process_ended_are_removed_at_the_next_start() {
    let g = Gallery::new(Duration::from_secs(600));
    let ino = g.add_remote_file("X!1", ROOT_INO, "open.jpg", b"bytes");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let fh =
            g.fs.open(
                C,
                ino,
                OpenMode {
                    read: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .fh;
        g.fs.unlink(C, ROOT_INO, OsStr::new("open.jpg")).await.unwrap();
        let _ = fh; // never released: the process "ends" here
    });
    assert!(g.store.get(ino).unwrap().is_some(), "kept while open");
    let again = Gallery::over(g.dir, g.store.clone(), Duration::from_secs(600));
    again.fs.journal_leftovers().unwrap();
    assert!(again.store.get(ino).unwrap().is_none());
    assert!(
        again
            .ops()
            .iter()
            .any(|op| matches!(op, OutboxOp::Delete { item_id, .. } if item_id == "X!1")),
        "the delete stays journalled: {:?}",
        again.ops()
    );
}

/// An upload that reached OneDrive but whose answer was lost (a connection reset after the service acted), then
/// a further local change before the retry: OneDrive's newer version is our own, not a change made elsewhere, so
/// the retry replaces it (no conflict copy, the id kept).
#[tokio::test]
async fn an_edit_whose_answer_was_lost_is_not_taken_for_a_remote_edit() {
    let mock = Arc::new(MockDrive::new());
    let failing = Arc::new(FailingDrive::new(mock.clone()));
    let s = Synced::new(mock.clone(), failing.clone(), Duration::ZERO, quick_config()).await;
    let id = s.mock.add_file(&s.gallery_id, "IMG_1.jpg", &b"v0"[..]);
    s.sync().await;
    failing.only_ops(Some(&[MockOp::Upload]));
    failing.lose_next_answers(1, DriveError::Offline("connection reset".into()));
    s.write_file(ROOT_INO, "IMG_1.jpg", b"v1").await;
    let report = s.replayer.replay_once().await.unwrap();
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(s.remote_content("IMG_1.jpg").unwrap(), &b"v1"[..], "OneDrive acted");
    s.write_file(ROOT_INO, "IMG_1.jpg", b"v2").await;
    s.sync().await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    let report = s.replayer.replay_once().await.unwrap();
    assert_eq!((report.failed, report.conflicts), (0, 0), "{report:?}");
    assert!(s.store.pending().unwrap().is_empty());
    assert_eq!(s.remote_content("IMG_1.jpg").unwrap(), &b"v2"[..]);
    assert_eq!(s.remote("IMG_1.jpg").unwrap().id, id, "the item kept its id");
    let names: Vec<String> = s
        .drive
        .children(&s.gallery_id)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["IMG_1.jpg".to_string()], "no conflict copy");
}

/// The same for a new file: its first upload created the item but the answer was lost; the file changed again.
#[tokio::test]
async fn a_first_upload_whose_answer_was_lost_is_adopted_after_a_further_change() {
    let mock = Arc::new(MockDrive::new());
    let failing = Arc::new(FailingDrive::new(mock.clone()));
    let s = Synced::new(mock.clone(), failing.clone(), Duration::ZERO, quick_config()).await;
    s.sync().await;
    failing.only_ops(Some(&[MockOp::Upload]));
    failing.lose_next_answers(1, DriveError::Offline("connection reset".into()));
    let ino = s.write_file(ROOT_INO, "new.jpg", b"v1").await;
    let report = s.replayer.replay_once().await.unwrap();
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(s.remote_content("new.jpg").unwrap(), &b"v1"[..], "OneDrive acted");
    s.write_file(ROOT_INO, "new.jpg", b"v2").await;
    s.sync().await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    let report = s.replayer.replay_once().await.unwrap();
    assert_eq!((report.failed, report.conflicts), (0, 0), "{report:?}");
    assert!(s.store.pending().unwrap().is_empty());
    assert_eq!(s.remote_content("new.jpg").unwrap(), &b"v2"[..]);
    assert_eq!(
        s.store.get(ino).unwrap().unwrap().item_id,
        s.remote("new.jpg").unwrap().id,
        "the file holds the item its lost upload created"
    );
    assert_eq!(
        s.drive.children(&s.gallery_id).await.unwrap().len(),
        1,
        "no duplicate, no copy"
    );
}

/// A new file whose first upload reached OneDrive but whose answer was lost, deleted here before the retry (as
/// is, or after a rename): the item the lost upload created goes to the recycle bin too, never left behind.
#[tokio::test]
async fn a_file_deleted_after_its_first_upload_lost_its_answer_leaves_nothing_behind() {
    for rename_first in [false, true] {
        let mock = Arc::new(MockDrive::new());
        let failing = Arc::new(FailingDrive::new(mock.clone()));
        let s = Synced::new(mock.clone(), failing.clone(), Duration::ZERO, quick_config()).await;
        s.mock.add_file(&s.gallery_id, "keep.jpg", &b"kept"[..]);
        s.sync().await;
        failing.only_ops(Some(&[MockOp::Upload]));
        failing.lose_next_answers(1, DriveError::Offline("connection reset".into()));
        s.write_file(ROOT_INO, "new.jpg", b"v1").await;
        let report = s.replayer.replay_once().await.unwrap();
        assert_eq!(report.failed, 1, "{report:?}");
        let created = s.remote("new.jpg").expect("OneDrive acted").id;
        let mut name = "new.jpg";
        if rename_first {
            s.fs.rename(
                C,
                ROOT_INO,
                OsStr::new(name),
                ROOT_INO,
                OsStr::new("renamed.jpg"),
                false,
            )
            .await
            .unwrap();
            name = "renamed.jpg";
        }
        s.fs.unlink(C, ROOT_INO, OsStr::new(name)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        for _ in 0..3 {
            let report = s.replayer.replay_once().await.unwrap();
            assert_eq!(report.failed, 0, "{report:?}");
        }
        assert!(s.store.pending().unwrap().is_empty());
        assert!(
            s.mock.get(&created).unwrap().deleted.is_some(),
            "the lost upload's item is in the recycle bin (renamed first: {rename_first})"
        );
        let names: Vec<String> = s
            .drive
            .children(&s.gallery_id)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|c| c.name)
            .collect();
        assert_eq!(names, vec!["keep.jpg".to_string()]);
        s.sync().await;
        assert_eq!(s.store.children(ROOT_INO).unwrap().len(), 1);
    }
}
