//! The sync engine against the in-memory `MockDrive` (and `FailingDrive`): finding the gallery, the first listing
//! and a restart from the store, remote changes through delta, resync, offline and sign-in trouble, the gallery
//! deleted, and the thumbnail pipeline (timing, personal-cache PNGs, items without thumbnails).

use galleryfs::remote::drive_api::{DriveApi, DriveError};
use galleryfs::remote::mock_drive::{FailingDrive, MockDrive, MockOp};
use galleryfs::store::{ItemRow, Store, ThumbSize, ThumbState, ROOT_INO};
use galleryfs::sync::engine::{InitialSync, SyncEngine, SyncSettings};
use galleryfs::sync::gallery_locator::{locate_gallery, GalleryLocation, LocateError};
use galleryfs::sync::status::{GalleryState, SyncStatus};
use galleryfs::sync::thumbnail_fetcher::{
    relative_path, thumbnail_file, ListedThumbnailSets, ThumbnailFetcher, ThumbnailSettings,
};
use galleryfs::thumbnails::{self, file_uri, read_text, PersonalCache};
use parking_lot::Mutex;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A drive with `Pictures/Samsung Gallery` holding `n` seeded photos.
fn gallery_drive(n: usize) -> (Arc<MockDrive>, String, Vec<String>) {
    let drive = Arc::new(MockDrive::new());
    let pictures = drive.special_folder_id("photos").unwrap();
    let gallery = drive.add_folder(&pictures, "Samsung Gallery");
    let files = drive.seed_gallery(&gallery, n);
    (drive, gallery, files)
}

fn settings() -> SyncSettings {
    let mut s = SyncSettings::new("test");
    s.poll_interval = Duration::from_millis(50);
    s.min_backoff = Duration::from_millis(10);
    s.max_backoff = Duration::from_millis(100);
    s
}

fn make_engine(store: &Arc<Store>, drive: Arc<dyn DriveApi>) -> SyncEngine {
    SyncEngine::new(store.clone(), drive, settings())
}

/// The row at `path` below the gallery root.
fn at(store: &Store, path: &str) -> Option<ItemRow> {
    let mut ino = ROOT_INO;
    let mut row = None;
    for segment in path.split('/') {
        let r = store.lookup(ino, segment).unwrap()?;
        ino = r.ino;
        row = Some(r);
    }
    row
}

// ---- locator ----

#[tokio::test]
async fn locator_finds_the_gallery_in_a_localized_photos_folder_by_special_name() {
    let drive = MockDrive::with_photos_folder_name("Imagens");
    let imagens = drive.special_folder_id("photos").unwrap();
    let gallery = drive.add_folder(&imagens, "SAMSUNG gallery");
    // A decoy: an ordinary folder called Pictures at the root, with its own Samsung Gallery.
    drive.mkdir_p("/Pictures/Samsung Gallery");
    let found = locate_gallery(&drive, None).await.unwrap();
    assert_eq!(found.item.id, gallery);
    assert_eq!(found.location, GalleryLocation::PhotosFolder);
}

#[tokio::test]
async fn locator_falls_back_to_the_root_and_honours_a_configured_folder() {
    let drive = MockDrive::new();
    let at_root = drive.mkdir_p("/Samsung Gallery");
    let found = locate_gallery(&drive, None).await.unwrap();
    assert_eq!((found.item.id, found.location), (at_root, GalleryLocation::DriveRoot));

    let album = drive.mkdir_p("/Backup/Phone Album");
    for folder in ["Backup/Phone Album", "/backup/phone album/"] {
        let found = locate_gallery(&drive, Some(folder)).await.unwrap();
        assert_eq!(found.item.id, album, "{folder}");
        assert!(matches!(found.location, GalleryLocation::Configured(_)));
    }
    match locate_gallery(&drive, Some("/Nope")).await {
        Err(LocateError::ConfiguredNotFound(p)) => assert_eq!(p, "/Nope"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn locator_says_where_it_looked_when_there_is_no_gallery() {
    let drive = MockDrive::new();
    drive.mkdir_p("/Pictures/Camera Roll");
    let err = locate_gallery(&drive, None).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "no Samsung Gallery folder found in Pictures or at the root of OneDrive; pass --folder PATH"
    );
    // Without any photos special folder at all, the same.
    let bare = MockDrive::empty();
    assert!(matches!(locate_gallery(&bare, None).await, Err(LocateError::NotFound)));
}

// ---- listing ----

#[tokio::test]
async fn first_listing_of_1000_items_is_progressive_and_a_restart_lists_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.sqlite");
    let (drive, gallery, _) = gallery_drive(1000);
    drive.set_page_size(200);
    {
        let store = Arc::new(Store::open(&db).unwrap());
        let engine = make_engine(&store, drive.clone());
        let progress = Arc::new(Mutex::new(Vec::new()));
        let p = progress.clone();
        engine.on_progress(Arc::new(move |n| p.lock().push(n)));
        let outcome = engine.initial_sync().await.unwrap();
        assert_eq!(outcome, InitialSync::Enumerated { items: 1003 });
        let seen = progress.lock().clone();
        assert!(
            seen.len() >= 5,
            "one progress report per folder listed, one at the end: {seen:?}"
        );
        assert!(seen[0] < 1003 && seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        assert_eq!(*seen.last().unwrap(), 1003);
        // A `token=latest` link, then the four folders listed with `children()` (and the locator's listing of
        // the photos folder): no delta enumeration.
        assert_eq!(drive.count(MockOp::DeltaLatest), 1);
        assert_eq!(drive.count(MockOp::DeltaFull), 0);
        assert_eq!(drive.count(MockOp::Children), 4 + 1);
        assert_eq!(store.root().unwrap().item_id, gallery);
        assert_eq!(
            store.children(at(&store, "DCIM/Camera").unwrap().ino).unwrap().len(),
            900
        );
        assert!(store.delta_link().unwrap().is_some());
    }
    // Restart: the store lists at once, without a single request.
    drive.reset_counts();
    let store = Arc::new(Store::open(&db).unwrap());
    let engine = make_engine(&store, drive.clone());
    assert_eq!(engine.initial_sync().await.unwrap(), InitialSync::FromStore);
    assert_eq!(drive.total_requests(), 0);
    assert_eq!(store.item_count().unwrap(), 1003);
    // Catching up is incremental: no new enumeration.
    let camera = drive.id_by_path("/Pictures/Samsung Gallery/DCIM/Camera").unwrap();
    drive.add_file(&camera, "new.jpg", "new");
    let outcome = engine.catch_up().await.unwrap();
    assert_eq!(outcome.changes.inserted.len(), 1);
    assert!(at(&store, "DCIM/Camera/new.jpg").is_some());
    assert_eq!(drive.count(MockOp::DeltaFull), 0);
    assert!(drive.count(MockOp::DeltaPage) >= 1);
}

#[tokio::test]
async fn remote_add_edit_rename_move_delete_reach_the_store() {
    let (drive, gallery, files) = gallery_drive(20);
    let store = Arc::new(Store::open_in_memory().unwrap());
    let engine = make_engine(&store, drive.clone());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    engine.on_changes(Arc::new(move |c| s.lock().push(c.clone())));
    engine.initial_sync().await.unwrap();
    let camera = drive.id_by_path("/Pictures/Samsung Gallery/DCIM/Camera").unwrap();
    let ino_of = |id: &str| store.get_by_item_id(id).unwrap().unwrap().ino;

    // add
    let added = drive.add_file(&gallery, "added.jpg", "hello");
    let c = engine.poll_once().await.unwrap().changes;
    assert_eq!(c.inserted, vec![ino_of(&added)]);
    assert!(c.parents_changed.contains(&ROOT_INO));
    assert_eq!(at(&store, "added.jpg").unwrap().size, 5);

    // edit
    let before = store.get_by_item_id(&files[0]).unwrap().unwrap();
    drive.edit_file(&files[0], "changed content");
    let c = engine.poll_once().await.unwrap().changes;
    assert_eq!(c.content_changed, vec![before.ino]);
    let after = store.get_by_item_id(&files[0]).unwrap().unwrap();
    assert_ne!(after.ctag, before.ctag);
    assert_eq!(after.size, 15);
    assert_eq!(
        after.quick_xor_hash,
        drive.get(&files[0]).unwrap().quick_xor_hash().map(String::from)
    );

    // rename
    drive.rename(&files[1], "renamed.jpg");
    let c = engine.poll_once().await.unwrap().changes;
    assert_eq!(c.updated, vec![ino_of(&files[1])]);
    assert!(c.stale_entries.iter().any(|(_, n)| n == "IMG_00001.jpg"));
    assert!(at(&store, "DCIM/Camera/renamed.jpg").is_some());
    assert!(at(&store, "DCIM/Camera/IMG_00001.jpg").is_none());

    // move
    drive.move_to(&files[2], &gallery);
    let c = engine.poll_once().await.unwrap().changes;
    assert_eq!(c.updated, vec![ino_of(&files[2])]);
    assert!(
        c.parents_changed.contains(&ROOT_INO) && c.parents_changed.contains(&at(&store, "DCIM/Camera").unwrap().ino)
    );
    assert!(at(&store, "IMG_00002.jpg").is_some());

    // delete (a file, then a folder with its content)
    let gone = ino_of(&files[3]);
    drive.delete_item(&files[3]);
    let c = engine.poll_once().await.unwrap().changes;
    assert_eq!(c.removed, vec![gone]);
    assert!(store.get(gone).unwrap().is_none());
    let shots = drive.id_by_path("/Pictures/Samsung Gallery/DCIM/Screenshots").unwrap();
    drive.delete_item(&shots);
    let c = engine.poll_once().await.unwrap().changes;
    assert_eq!(c.removed.len(), 3, "the folder and its two screenshots");
    assert!(at(&store, "DCIM/Screenshots").is_none());

    // a folder moved in from outside the gallery is listed
    let outside = drive.mkdir_p("/Documents/Trip");
    drive.add_file(&outside, "t1.jpg", "1");
    let sub = drive.add_folder(&outside, "Day 2");
    drive.add_file(&sub, "t2.jpg", "2");
    engine.poll_once().await.unwrap();
    drive.move_to(&outside, &camera);
    let outcome = engine.poll_once().await.unwrap();
    assert_eq!(outcome.listed_folders, 1);
    assert!(at(&store, "DCIM/Camera/Trip/t1.jpg").is_some());
    assert!(at(&store, "DCIM/Camera/Trip/Day 2/t2.jpg").is_some());

    // an album moved below a folder that itself moves in during the same round keeps its inodes (delta names the
    // album and the outer folder, not the unchanged folder between them)
    let outer = drive.mkdir_p("/Documents/Archive");
    let middle = drive.add_folder(&outer, "2019");
    engine.poll_once().await.unwrap();
    let trip_ino = ino_of(&outside);
    let t1_ino = at(&store, "DCIM/Camera/Trip/t1.jpg").unwrap().ino;
    drive.move_to(&outside, &middle);
    drive.move_to(&outer, &gallery);
    let outcome = engine.poll_once().await.unwrap();
    assert!(outcome.listed_folders >= 1);
    assert!(at(&store, "DCIM/Camera/Trip").is_none());
    assert_eq!(at(&store, "Archive/2019/Trip").map(|r| r.ino), Some(trip_ino));
    assert_eq!(at(&store, "Archive/2019/Trip/t1.jpg").map(|r| r.ino), Some(t1_ino));
    assert!(
        outcome.changes.removed.is_empty(),
        "nothing removed: {:?}",
        outcome.changes.removed
    );

    // nothing changed: nothing reported
    assert!(engine.poll_once().await.unwrap().changes.is_empty());
    assert!(seen.lock().len() >= 7, "the hook ran after each applied round");
}

/// A folder moved into the gallery whose listing fails (offline just after the round was applied, or a crash
/// there) is listed by the next poll: the round's delta link moved on, the listing is kept in the store.
#[tokio::test]
async fn a_folder_moved_in_is_listed_even_when_its_listing_failed_first() {
    let (mock, gallery, _) = gallery_drive(3);
    let drive = Arc::new(FailingDrive::new(mock.clone()));
    let store = Arc::new(Store::open_in_memory().unwrap());
    let engine = make_engine(&store, drive.clone());
    engine.initial_sync().await.unwrap();
    let outside = mock.mkdir_p("/Documents/Trip");
    mock.add_file(&outside, "t1.jpg", "1");
    let day2 = mock.add_folder(&outside, "Day 2");
    mock.add_file(&day2, "t2.jpg", "2");
    engine.poll_once().await.unwrap();
    mock.move_to(&outside, &gallery);
    drive.only_ops(Some(&[MockOp::Children]));
    drive.fail_next(1, DriveError::Offline("connection reset".into()));
    assert!(engine.poll_once().await.is_err(), "the listing failed");
    assert!(at(&store, "Trip").is_some(), "the round was applied");
    assert!(at(&store, "Trip/t1.jpg").is_none());
    drive.heal();
    // A restart in between changes nothing: what is pending is in the store.
    let engine = make_engine(&store, drive.clone());
    let outcome = engine.poll_once().await.unwrap();
    assert_eq!(outcome.listed_folders, 1);
    assert!(at(&store, "Trip/t1.jpg").is_some());
    assert!(at(&store, "Trip/Day 2/t2.jpg").is_some());
    assert!(engine.poll_once().await.unwrap().changes.is_empty(), "listed once");
}

#[tokio::test]
async fn duplicate_entries_in_a_round_resolve_to_the_last_state() {
    let (drive, _, files) = gallery_drive(5);
    let store = Arc::new(Store::open_in_memory().unwrap());
    let engine = make_engine(&store, drive.clone());
    engine.initial_sync().await.unwrap();
    drive.set_duplicate_entries(true);
    drive.rename(&files[0], "first.jpg");
    drive.rename(&files[0], "second.jpg");
    drive.edit_file(&files[1], "v2");
    drive.edit_file(&files[1], "version 3");
    engine.poll_once().await.unwrap();
    assert_eq!(store.get_by_item_id(&files[0]).unwrap().unwrap().name, "second.jpg");
    assert_eq!(store.get_by_item_id(&files[1]).unwrap().unwrap().size, 9);
}

#[tokio::test]
async fn a_410_resync_re_enumerates_and_drops_what_is_gone() {
    let (drive, gallery, files) = gallery_drive(50);
    let store = Arc::new(Store::open_in_memory().unwrap());
    let engine = make_engine(&store, drive.clone());
    engine.initial_sync().await.unwrap();
    drive.delete_item(&files[0]);
    drive.add_file(&gallery, "after.jpg", "x");
    drive.expire_delta_tokens();
    let outcome = engine.poll_once().await.unwrap();
    assert!(outcome.resynced);
    assert!(store.get_by_item_id(&files[0]).unwrap().is_none());
    assert!(at(&store, "after.jpg").is_some());
    assert_eq!(store.item_count().unwrap(), 3 + 50);
    // The stored link is fresh: the next poll is incremental again.
    let full_before = drive.count(MockOp::DeltaFull);
    assert!(!engine.poll_once().await.unwrap().resynced);
    assert_eq!(drive.count(MockOp::DeltaFull), full_before);
}

#[tokio::test]
async fn renaming_an_ancestor_of_the_gallery_does_not_break_the_mount() {
    let (drive, gallery, _) = gallery_drive(10);
    let pictures = drive.special_folder_id("photos").unwrap();
    let store = Arc::new(Store::open_in_memory().unwrap());
    let mut s = settings();
    s.folder = Some("/Pictures/Samsung Gallery".into());
    let engine = Arc::new(SyncEngine::new(store.clone(), drive.clone(), s.clone()));
    engine.initial_sync().await.unwrap();
    drive.rename(&pictures, "Bilder");
    drive.add_file(&gallery, "later.jpg", "x");
    engine.poll_once().await.unwrap();
    assert!(at(&store, "later.jpg").is_some());
    assert_eq!(engine.status().snapshot().gallery, GalleryState::Ok);
    // A new mount with the old configured path: not found by name, followed by id.
    let again = SyncEngine::new(store.clone(), drive.clone(), s);
    assert_eq!(again.initial_sync().await.unwrap(), InitialSync::FromStore);
    drive.add_file(&gallery, "even later.jpg", "y");
    again.catch_up().await.unwrap();
    assert!(at(&store, "even later.jpg").is_some());
    assert_eq!(again.gallery_id().unwrap(), gallery);
}

#[tokio::test]
async fn without_folder_delta_the_root_delta_is_filtered_to_the_gallery() {
    let (drive, gallery, _) = gallery_drive(30);
    drive.set_folder_delta_supported(false);
    drive.add_file(&drive.root_id(), "outside.txt", "o");
    let store = Arc::new(Store::open_in_memory().unwrap());
    let engine = make_engine(&store, drive.clone());
    assert_eq!(
        engine.initial_sync().await.unwrap(),
        InitialSync::Enumerated { items: 33 }
    );
    drive.add_file(&gallery, "in.jpg", "i");
    drive.add_file(&drive.root_id(), "out2.txt", "o");
    let c = engine.poll_once().await.unwrap().changes;
    assert_eq!(c.inserted.len(), 1);
    assert!(at(&store, "in.jpg").is_some());
    assert_eq!(store.item_count().unwrap(), 34);
}

// ---- failures ----

#[tokio::test]
async fn offline_keeps_the_store_and_recovers() {
    let (mock, gallery, _) = gallery_drive(10);
    let drive = Arc::new(FailingDrive::new(mock.clone()));
    let store = Arc::new(Store::open_in_memory().unwrap());
    let engine = Arc::new(make_engine(&store, drive.clone()));
    engine.initial_sync().await.unwrap();
    let before = store.item_count().unwrap();

    drive.fail_next(3, DriveError::Offline("connection refused".into()));
    mock.add_file(&gallery, "while offline.jpg", "x");
    assert!(matches!(
        engine.poll_once().await,
        Err(galleryfs::sync::engine::SyncError::Drive(DriveError::Offline(_)))
    ));
    assert!(!engine.status().snapshot().online);
    assert_eq!(store.item_count().unwrap(), before, "the store keeps serving");

    // The run loop retries with backoff and gets through once the network is back.
    let runner = tokio::spawn(engine.clone().run());
    let deadline = Instant::now() + Duration::from_secs(10);
    while at(&store, "while offline.jpg").is_none() {
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(drive.injected() >= 3);
    let status = engine.status().snapshot();
    assert!(status.online);
    assert!(status.last_sync.is_some() && status.next_sync.is_some());
    // Woken early: a change shows without waiting for the interval.
    mock.add_file(&gallery, "nudged.jpg", "n");
    engine.wake();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(at(&store, "nudged.jpg").is_some());
    engine.stop();
    tokio::time::timeout(Duration::from_secs(5), runner)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn unauthorized_asks_to_sign_in_again_and_keeps_serving() {
    let (mock, _, _) = gallery_drive(5);
    let drive = Arc::new(FailingDrive::new(mock.clone()));
    let store = Arc::new(Store::open_in_memory().unwrap());
    let engine = make_engine(&store, drive.clone());
    engine.initial_sync().await.unwrap();
    drive.fail_next(
        1,
        DriveError::Unauthorized {
            message: "invalid_grant".into(),
        },
    );
    assert!(engine.poll_once().await.is_err());
    let status = engine.status().snapshot();
    assert!(!status.signed_in);
    assert_eq!(
        status.message.as_deref(),
        Some("sign in again: galleryfs login --account test")
    );
    assert_eq!(store.item_count().unwrap(), 8);
    engine.poll_once().await.unwrap();
    let status = engine.status().snapshot();
    assert!(status.signed_in && status.message.is_none());
}

#[tokio::test]
async fn gallery_deleted_remotely_marks_it_missing_and_keeps_everything() {
    for folder_delta in [true, false] {
        let (drive, gallery, _) = gallery_drive(10);
        drive.set_folder_delta_supported(folder_delta);
        let store = Arc::new(Store::open_in_memory().unwrap());
        let engine = make_engine(&store, drive.clone());
        engine.initial_sync().await.unwrap();
        let before: Vec<ItemRow> = store.children(at(&store, "DCIM/Camera").unwrap().ino).unwrap();
        drive.delete_item(&gallery);
        let outcome = engine.poll_once().await.unwrap();
        assert!(outcome.gallery_missing, "folder delta {folder_delta}");
        assert_eq!(engine.status().snapshot().gallery, GalleryState::Missing);
        assert_eq!(store.item_count().unwrap(), 13);
        assert_eq!(store.children(at(&store, "DCIM/Camera").unwrap().ino).unwrap(), before);
        // Still missing on the next poll, still nothing lost.
        assert!(engine.poll_once().await.unwrap().gallery_missing);
        assert_eq!(store.item_count().unwrap(), 13);
        // Restored from the recycle bin: back to normal, with what changed meanwhile.
        drive.restore(&gallery, None, None).await.unwrap();
        drive.add_file(&gallery, "after restore.jpg", "r");
        let outcome = engine.poll_once().await.unwrap();
        assert!(!outcome.gallery_missing, "folder delta {folder_delta}");
        assert_eq!(engine.status().snapshot().gallery, GalleryState::Ok);
        assert!(at(&store, "after restore.jpg").is_some());
        assert_eq!(store.item_count().unwrap(), 14);
    }
}

// ---- thumbnails ----

fn make_fetcher(store: &Arc<Store>, drive: Arc<dyn DriveApi>, dir: &Path, status: Arc<SyncStatus>) -> ThumbnailFetcher {
    let mut s = ThumbnailSettings::new(dir.join("thumbnails"));
    s.mountpoint = Some("/mnt/My Gallery".into());
    s.personal_cache = Some(PersonalCache::new(dir.join("xdg-cache")));
    s.retry_base = Duration::ZERO;
    ThumbnailFetcher::new(store.clone(), drive, s, status)
}

fn process_cpu_time() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_thumbnails_of_1000_items_are_ready_within_60_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let (drive, _, files) = gallery_drive(1000);
    drive.set_latency(Duration::from_millis(20));
    let store = Arc::new(Store::open(dir.path().join("store.sqlite")).unwrap());
    let engine = make_engine(&store, drive.clone());
    engine.initial_sync().await.unwrap();
    let listed = Instant::now();
    let cpu_before = process_cpu_time();
    let fetcher = make_fetcher(&store, drive.clone(), dir.path(), engine.status());
    let summary = fetcher.run_until_idle().await.unwrap();
    let elapsed = listed.elapsed();
    println!(
        "thumbnails for 1000 items (2 sizes, 20 ms per request): {elapsed:?} wall, {:?} CPU",
        process_cpu_time() - cpu_before
    );
    assert!(elapsed < Duration::from_secs(60), "took {elapsed:?}");
    assert_eq!(summary.ready, 2000);
    for size in [ThumbSize::Normal, ThumbSize::Large] {
        let counts = store.thumbnail_counts(size).unwrap();
        assert_eq!((counts.ready, counts.total), (1000, 1000));
    }
    let progress = engine.status().snapshot().thumbnails;
    assert_eq!((progress.ready, progress.total), (1000, 1000));
    assert_eq!(drive.count(MockOp::DownloadContent), 0, "never an original");
    assert_eq!(
        drive.count(MockOp::Thumbnails),
        2000,
        "one listing and one custom size per item"
    );

    // The personal cache holds labelled PNGs of the right size; the raw JPEGs are kept per item.
    let cache = PersonalCache::new(dir.path().join("xdg-cache"));
    for id in [&files[0], &files[9], &files[999]] {
        let row = store.get_by_item_id(id).unwrap().unwrap();
        let rel = relative_path(&store, &row).unwrap().unwrap();
        let uri = file_uri(&Path::new("/mnt/My Gallery").join(&rel));
        assert!(uri.starts_with("file:///mnt/My%20Gallery/DCIM/"), "{uri}");
        for (size, max) in [
            (thumbnails::ThumbSize::Normal, 128),
            (thumbnails::ThumbSize::Large, 256),
        ] {
            let png = std::fs::read(cache.path_for(&uri, size)).unwrap();
            assert_eq!(read_text(&png, "Thumb::URI").as_deref(), Some(uri.as_str()));
            assert_eq!(read_text(&png, "Thumb::MTime"), Some(row.mtime.to_string()));
            let img = image::load_from_memory(&png).unwrap();
            assert_eq!(img.width().max(img.height()), max);
            assert!(cache.is_current(&uri, size, row.mtime));
        }
        assert!(thumbnail_file(&dir.path().join("thumbnails"), id, ThumbSize::Large).is_file());
    }
}

#[tokio::test]
async fn thumbnails_listed_with_the_first_listing_need_no_request_per_item() {
    let dir = tempfile::tempdir().unwrap();
    let (drive, gallery, files) = gallery_drive(40);
    // Two items OneDrive has no thumbnail for (yet): the listing says so with an empty list; asked per item.
    for id in &files[..2] {
        drive.set_thumbnails_available(id, false);
    }
    drive.add_file(&gallery, "notes.txt", "not media");
    let store = Arc::new(Store::open_in_memory().unwrap());
    let engine = make_engine(&store, drive.clone());
    let listed = Arc::new(ListedThumbnailSets::default());
    engine.set_listed_thumbnails(listed.clone());
    engine.initial_sync().await.unwrap();
    assert_eq!(listed.len(), 38, "the URLs of every item OneDrive has thumbnails for");
    let fetcher = make_fetcher(&store, drive.clone(), dir.path(), engine.status()).with_listed(listed.clone());
    let summary = fetcher.run_until_idle().await.unwrap();
    assert_eq!((summary.ready, summary.missing), (76, 4));
    assert_eq!(
        drive.count(MockOp::Thumbnails),
        2,
        "only the items listed without thumbnails were asked"
    );
    assert_eq!(
        drive.count(MockOp::DownloadThumbnail),
        76,
        "one download per item and size"
    );
    assert!(listed.is_empty(), "every listed URL was used");
    let cache = PersonalCache::new(dir.path().join("xdg-cache"));
    let row = store.get_by_item_id(&files[7]).unwrap().unwrap();
    let uri = file_uri(&Path::new("/mnt/My Gallery").join(relative_path(&store, &row).unwrap().unwrap()));
    for (size, max) in [
        (thumbnails::ThumbSize::Normal, 128),
        (thumbnails::ThumbSize::Large, 256),
    ] {
        let png = std::fs::read(cache.path_for(&uri, size)).unwrap();
        assert_eq!(read_text(&png, "Thumb::URI").as_deref(), Some(uri.as_str()));
        let img = image::load_from_memory(&png).unwrap();
        assert_eq!(img.width().max(img.height()), max, "fetched at the size: no scaling");
    }
}

#[tokio::test]
async fn items_without_thumbnails_get_missing_and_a_fail_marker_never_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let (drive, gallery, files) = gallery_drive(6);
    drive.add_file(&gallery, "notes.txt", "not media");
    for id in &files[..2] {
        drive.set_thumbnails_available(id, false);
    }
    let store = Arc::new(Store::open_in_memory().unwrap());
    let engine = make_engine(&store, drive.clone());
    engine.initial_sync().await.unwrap();
    let fetcher = make_fetcher(&store, drive.clone(), dir.path(), engine.status());
    let summary = fetcher.run_until_idle().await.unwrap();
    assert_eq!((summary.ready, summary.missing), (8, 4));
    let cache = PersonalCache::new(dir.path().join("xdg-cache"));
    for id in &files[..2] {
        let row = store.get_by_item_id(id).unwrap().unwrap();
        assert_eq!(
            store.thumbnail(id, ThumbSize::Normal).unwrap().unwrap().state,
            ThumbState::Missing
        );
        assert_eq!(
            store.thumbnail(id, ThumbSize::Large).unwrap().unwrap().state,
            ThumbState::Missing
        );
        let uri = file_uri(&Path::new("/mnt/My Gallery").join(relative_path(&store, &row).unwrap().unwrap()));
        assert!(cache.has_fail_marker(&uri, row.mtime));
        assert!(!cache.path_for(&uri, thumbnails::ThumbSize::Normal).exists());
    }
    assert_eq!(drive.count(MockOp::DownloadContent), 0);
    assert_eq!(
        drive.count(MockOp::DownloadThumbnail),
        4 * 2,
        "only items that have thumbnails"
    );
    let progress = engine.status().snapshot().thumbnails;
    assert_eq!((progress.ready, progress.total), (4, 4));
    // Nothing pending any more: a second pass does no request.
    drive.reset_counts();
    assert_eq!(fetcher.run_until_idle().await.unwrap().items, 0);
    assert_eq!(drive.total_requests(), 0);
    // New content makes the item pending again, and it is fetched.
    drive.set_thumbnails_available(&files[0], true);
    drive.edit_file(&files[0], "new pixels");
    engine.poll_once().await.unwrap();
    assert_eq!(fetcher.run_until_idle().await.unwrap().ready, 2);
}

#[tokio::test]
async fn failed_thumbnail_downloads_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (mock, _, files) = gallery_drive(3);
    let drive = Arc::new(FailingDrive::new(mock.clone()));
    let store = Arc::new(Store::open_in_memory().unwrap());
    let engine = make_engine(&store, drive.clone());
    engine.initial_sync().await.unwrap();
    drive.only_ops(Some(&[MockOp::DownloadThumbnail]));
    drive.fail_next(
        2,
        DriveError::Other {
            status: Some(404),
            message: "gone".into(),
        },
    );
    let fetcher = make_fetcher(&store, drive.clone(), dir.path(), engine.status());
    let summary = fetcher.run_until_idle().await.unwrap();
    assert!(summary.failed >= 2, "{summary:?}");
    assert_eq!(drive.injected(), 2);
    for id in &files {
        for size in [ThumbSize::Normal, ThumbSize::Large] {
            let t = store.thumbnail(id, size).unwrap().unwrap();
            assert_eq!((t.state, t.attempts), (ThumbState::Ready, 0), "{id} {size:?}");
        }
    }
    // Offline: deferred without counting against the items.
    let (mock2, gallery2, _) = gallery_drive(0);
    let drive2 = Arc::new(FailingDrive::new(mock2.clone()));
    let store2 = Arc::new(Store::open_in_memory().unwrap());
    let engine2 = make_engine(&store2, drive2.clone());
    mock2.add_file(&gallery2, "a.jpg", "a");
    engine2.initial_sync().await.unwrap();
    drive2.only_ops(Some(&[MockOp::Thumbnails]));
    drive2.fail_next(1, DriveError::Offline("down".into()));
    let fetcher2 = make_fetcher(&store2, drive2.clone(), dir.path(), engine2.status());
    let s = fetcher2.fetch_pending().await.unwrap();
    assert_eq!(s.deferred, 1);
    assert!(store2
        .thumbnail(
            &mock2.id_by_path("/Pictures/Samsung Gallery/a.jpg").unwrap(),
            ThumbSize::Normal
        )
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn the_engine_wakes_the_background_fetcher_after_a_round() {
    let dir = tempfile::tempdir().unwrap();
    let (drive, gallery, _) = gallery_drive(0);
    let store = Arc::new(Store::open_in_memory().unwrap());
    let engine = make_engine(&store, drive.clone());
    engine.initial_sync().await.unwrap();
    let fetcher = Arc::new(make_fetcher(&store, drive.clone(), dir.path(), engine.status()));
    engine.set_thumbnail_waker(fetcher.waker());
    let running = tokio::spawn(fetcher.clone().run());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let id = drive.add_file(&gallery, "fresh.jpg", "f");
    engine.poll_once().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.thumbnail(&id, ThumbSize::Large).unwrap().map(|t| t.state) != Some(ThumbState::Ready) {
        assert!(Instant::now() < deadline, "the fetcher was not woken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(engine.status().snapshot().thumbnails.ready, 1);
    fetcher.stop();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn remote_renames_and_moves_relabel_personal_cache_thumbnails_without_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (drive, _, files) = gallery_drive(3);
    let store = Arc::new(Store::open_in_memory().unwrap());
    let engine = make_engine(&store, drive.clone());
    engine.initial_sync().await.unwrap();
    let fetcher = Arc::new(make_fetcher(&store, drive.clone(), dir.path(), engine.status()));
    engine.on_changes(fetcher.changes_hook());
    fetcher.run_until_idle().await.unwrap();
    let dcim = drive.id_by_path("/Pictures/Samsung Gallery/DCIM").unwrap();
    drive.rename(&files[0], "renamed.jpg");
    drive.rename(&dcim, "Phone");
    engine.poll_once().await.unwrap();
    drive.reset_counts();
    assert_eq!(fetcher.reseed_moved().await.unwrap(), 3 * 2, "three files, two sizes");
    assert_eq!(drive.total_requests(), 0);
    let cache = PersonalCache::new(dir.path().join("xdg-cache"));
    let row = store.get_by_item_id(&files[0]).unwrap().unwrap();
    let uri = file_uri(Path::new("/mnt/My Gallery/Phone/Camera/renamed.jpg"));
    assert!(cache.is_current(&uri, thumbnails::ThumbSize::Normal, row.mtime));
    assert!(cache.is_current(&uri, thumbnails::ThumbSize::Large, row.mtime));
}

#[tokio::test]
async fn a_fresh_upload_without_thumbnails_yet_is_retried_not_marked_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (drive, gallery, _) = gallery_drive(0);
    let fresh = drive.add_file(&gallery, "just taken.jpg", "new"); // mtime: now
    drive.set_thumbnails_available(&fresh, false);
    let store = Arc::new(Store::open_in_memory().unwrap());
    let engine = make_engine(&store, drive.clone());
    engine.initial_sync().await.unwrap();
    let fetcher = make_fetcher(&store, drive.clone(), dir.path(), engine.status());
    let first = fetcher.fetch_pending().await.unwrap();
    assert_eq!((first.missing, first.failed), (0, 2));
    assert_eq!(
        store.thumbnail(&fresh, ThumbSize::Normal).unwrap().unwrap().state,
        ThumbState::Failed
    );
    // OneDrive has made them now: the retry gets them.
    drive.set_thumbnails_available(&fresh, true);
    assert_eq!(fetcher.fetch_pending().await.unwrap().ready, 2);
}

#[tokio::test]
async fn throttling_is_reported_with_its_end() {
    let (mock, _, _) = gallery_drive(2);
    let drive = Arc::new(FailingDrive::new(mock.clone()));
    let store = Arc::new(Store::open_in_memory().unwrap());
    let engine = make_engine(&store, drive.clone());
    engine.initial_sync().await.unwrap();
    let until = chrono::Utc::now() + chrono::Duration::seconds(120);
    drive.fail_next(1, DriveError::Throttled { until: Some(until) });
    assert!(engine.poll_once().await.is_err());
    assert_eq!(engine.status().snapshot().throttled_until, Some(until));
    engine.poll_once().await.unwrap();
    assert_eq!(engine.status().snapshot().throttled_until, None);
}

#[tokio::test]
async fn pointing_the_mount_at_another_folder_replaces_the_listing() {
    let drive = Arc::new(MockDrive::new());
    let first = drive.mkdir_p("/Pictures/Samsung Gallery");
    drive.add_file(&first, "old.jpg", "o");
    let other = drive.mkdir_p("/Backup/Album");
    drive.add_file(&other, "new.jpg", "n");
    let store = Arc::new(Store::open_in_memory().unwrap());
    make_engine(&store, drive.clone()).initial_sync().await.unwrap();
    assert!(at(&store, "old.jpg").is_some());
    let mut s = settings();
    s.folder = Some("Backup/Album".into());
    let engine = SyncEngine::new(store.clone(), drive.clone(), s);
    // Another `folder=` than the store's is looked up and listed before the mount serves.
    assert!(matches!(
        engine.initial_sync().await.unwrap(),
        InitialSync::Enumerated { .. }
    ));
    assert!(at(&store, "old.jpg").is_none());
    assert!(at(&store, "new.jpg").is_some());
    assert_eq!(store.root().unwrap().item_id, other);
}
