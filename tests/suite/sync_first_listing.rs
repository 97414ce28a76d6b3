//! The first listing of an empty store (`SyncEngine::initial_sync`) by folders: a `token=latest` delta link first,
//! then `children()` listings, several folders at once. Against `MockDrive`: the store it fills is the one a delta
//! enumeration fills; it needs a few round trips where delta needs one per 200 items; a change made on OneDrive
//! during the listing shows after the next poll; without `token=latest` the engine enumerates by delta.

use async_trait::async_trait;
use bytes::Bytes;
use galleryfs::remote::drive_api::{DeltaPage, DeltaRequest, DriveApi, DriveError, MoveRequest, UploadRequest};
use galleryfs::remote::mock_drive::{FailingDrive, MockDrive, MockOp};
use galleryfs::remote::models::{Drive, DriveItem, ThumbnailSet};
use galleryfs::store::{ItemRow, Store, ROOT_INO};
use galleryfs::sync::engine::{InitialSync, SyncEngine, SyncSettings};
use galleryfs::sync::tree_listing::{list_tree, DEFAULT_FOLDERS_IN_FLIGHT};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `children` requests of the gallery locator (it lists the photos folder to find the gallery by name).
const LOCATOR_LISTINGS: u64 = 1;

fn settings() -> SyncSettings {
    let mut s = SyncSettings::new("test");
    s.poll_interval = Duration::from_millis(50);
    s
}

fn engine(drive: Arc<dyn DriveApi>) -> (Arc<Store>, SyncEngine) {
    let store = Arc::new(Store::open_in_memory().unwrap());
    let engine = SyncEngine::new(store.clone(), drive, settings());
    (store, engine)
}

/// `Pictures/Samsung Gallery` with the seeded `DCIM/Camera` and `DCIM/Screenshots` (`seeded` photos) and three
/// levels of albums (`Albums/Album a/Sub s`, `albums` files spread over them and the album folders).
fn gallery_drive(seeded: usize, albums: usize) -> (Arc<MockDrive>, String) {
    let drive = Arc::new(MockDrive::new());
    let pictures = drive.special_folder_id("photos").unwrap();
    let gallery = drive.add_folder(&pictures, "Samsung Gallery");
    drive.seed_gallery(&gallery, seeded);
    let top = drive.add_folder(&gallery, "Albums");
    let mut folders = Vec::new();
    for a in 0..3 {
        let album = drive.add_folder(&top, &format!("Album {a}"));
        folders.push(album.clone());
        for s in 0..3 {
            folders.push(drive.add_folder(&album, &format!("Sub {s}")));
        }
    }
    for i in 0..albums {
        drive.add_file(
            &folders[i % folders.len()],
            &format!("P{i:05}.jpg"),
            format!("album photo {i}"),
        );
    }
    drive.set_page_size(200);
    (drive, gallery)
}

/// Every row below the root (and the root) by path, with the inode numbers blanked (they depend on the order of
/// insertion).
fn snapshot(store: &Store) -> BTreeMap<String, ItemRow> {
    // A folder's mtime and ctime are local (they move when its entries change, as a local filesystem's do): compare
    // what OneDrive says of it.
    let blank = |mut row: ItemRow| {
        row.ino = 0;
        row.parent_ino = None;
        if row.is_dir() {
            row.mtime = row.remote_mtime.unwrap_or(row.mtime);
            row.ctime = None;
        }
        row
    };
    let mut out = BTreeMap::from([(String::new(), blank(store.root().unwrap()))]);
    let mut stack = vec![(ROOT_INO, String::new())];
    while let Some((ino, path)) = stack.pop() {
        for row in store.children(ino).unwrap() {
            let p = format!("{path}/{}", row.name);
            if row.is_dir() {
                stack.push((row.ino, p.clone()));
            }
            out.insert(p, blank(row));
        }
    }
    out
}

/// A drive on which `token=latest` is refused (an implementation without it).
/// The benchmark's reference: every folder below `gallery` paged directly, one request after the other; returns
/// how many items were listed.
async fn page_directly(drive: &dyn DriveApi, gallery: &str) -> usize {
    let mut listed = 0;
    let mut queue = vec![gallery.to_string()];
    while let Some(id) = queue.pop() {
        for child in drive.children(&id).await.unwrap() {
            listed += 1;
            if child.is_folder() {
                queue.push(child.id);
            }
        }
    }
    listed
}

fn without_latest(drive: Arc<MockDrive>, error: DriveError) -> Arc<FailingDrive<Arc<MockDrive>>> {
    let failing = FailingDrive::new(drive);
    failing.only_ops(Some(&[MockOp::DeltaLatest]));
    failing.fail_fraction(1.0, error);
    Arc::new(failing)
}

#[tokio::test]
async fn the_listing_by_folders_fills_the_store_as_a_delta_enumeration_does() {
    let (drive, gallery) = gallery_drive(2_000, 500);
    let (by_folders, e) = engine(drive.clone());
    assert_eq!(
        e.initial_sync().await.unwrap(),
        InitialSync::Enumerated {
            items: 2_000 + 3 + 1 + 12 + 500
        }
    );
    assert_eq!(drive.count(MockOp::DeltaLatest), 1);
    assert_eq!(drive.count(MockOp::DeltaFull) + drive.count(MockOp::DeltaPage), 0);
    // Every folder of the gallery once, and the locator's listing of the photos folder.
    assert_eq!(drive.count(MockOp::Children), 17 + LOCATOR_LISTINGS);
    assert_eq!(by_folders.root().unwrap().item_id, gallery);

    drive.reset_counts();
    let refused = without_latest(drive.clone(), DriveError::NotSupported("token=latest".into()));
    let (by_delta, e2) = engine(refused.clone());
    e2.initial_sync().await.unwrap();
    assert_eq!(drive.count(MockOp::DeltaLatest), 0, "refused before reaching the drive");
    assert_eq!(drive.count(MockOp::DeltaFull), 1, "the delta enumeration instead");
    assert!(drive.count(MockOp::DeltaPage) >= 12, "2,517 items in pages of 200");
    assert_eq!(drive.count(MockOp::Children), LOCATOR_LISTINGS);
    assert_eq!(snapshot(&by_folders), snapshot(&by_delta));
    assert_eq!(snapshot(&by_folders).len(), 2_516 + 1, "and the root");

    // The link taken before the listing is a working incremental link.
    let camera = drive.id_by_path("/Pictures/Samsung Gallery/DCIM/Camera").unwrap();
    drive.add_file(&camera, "new.jpg", "n");
    let outcome = e.poll_once().await.unwrap();
    assert_eq!(outcome.changes.inserted.len(), 1);
    assert!(!outcome.resynced);
    e2.poll_once().await.unwrap();
    assert_eq!(snapshot(&by_folders), snapshot(&by_delta));
}

#[tokio::test]
async fn a_plain_400_or_501_on_token_latest_falls_back_to_delta_too() {
    for status in [400, 501] {
        let (drive, _) = gallery_drive(300, 30);
        let refused = without_latest(
            drive.clone(),
            DriveError::Other {
                status: Some(status),
                message: "bad request".into(),
            },
        );
        let (store, e) = engine(refused);
        e.initial_sync().await.unwrap();
        assert_eq!(store.item_count().unwrap(), 300 + 3 + 1 + 12 + 30, "status {status}");
        assert_eq!(drive.count(MockOp::DeltaFull), 1);
        assert_eq!(drive.count(MockOp::Children), LOCATOR_LISTINGS);
    }
    // Any other failure is a failure of the listing, not a reason to enumerate by delta.
    let (drive, _) = gallery_drive(30, 0);
    let offline = without_latest(drive.clone(), DriveError::Offline("down".into()));
    let (store, e) = engine(offline);
    assert!(e.initial_sync().await.is_err());
    assert_eq!(store.item_count().unwrap(), 0);
    assert_eq!(drive.count(MockOp::DeltaFull), 0);
}

#[tokio::test]
async fn with_20_ms_latency_10000_items_take_a_few_round_trips_instead_of_one_per_200_items() {
    let (drive, gallery) = gallery_drive(10_000, 0);
    drive.set_children_page_size(1_000);
    drive.set_latency(Duration::from_millis(20));

    // The reference (the benchmark's): paging every folder directly, one request after the other.
    let started = Instant::now();
    let direct = page_directly(drive.as_ref(), &gallery).await;
    let reference = started.elapsed();
    let reference_requests = drive.count(MockOp::Children);
    assert_eq!(
        reference_requests,
        1 + 1 + 9 + 1 + 1 + 3 + 9,
        "Camera's 9,000 photos in 9 pages"
    );
    assert_eq!(direct, 10_000 + 3 + 1 + 12);

    drive.reset_counts();
    let (store, e) = engine(drive.clone());
    let started = Instant::now();
    e.initial_sync().await.unwrap();
    let by_folders = started.elapsed();
    let listing_requests =
        drive.count(MockOp::DeltaLatest) + drive.count(MockOp::Children) - LOCATOR_LISTINGS + drive.count(MockOp::Item);
    assert_eq!(drive.count(MockOp::DeltaLatest), 1);
    assert_eq!(drive.delta_requests(), 1, "no delta page");
    assert_eq!(
        drive.count(MockOp::Children),
        reference_requests + LOCATOR_LISTINGS,
        "the same pages as the reference"
    );
    assert_eq!(store.item_count().unwrap() as usize, direct);

    // The listing alone (no sign-in, gallery lookup or store writes): the deepest chain of pages, not their sum.
    let started = Instant::now();
    let listing = list_tree(drive.as_ref(), &gallery, DEFAULT_FOLDERS_IN_FLIGHT, |_| {})
        .await
        .unwrap();
    let listing_alone = started.elapsed();
    assert_eq!(listing.items.len(), direct + 1);
    drive.reset_counts();
    let refused = without_latest(drive.clone(), DriveError::NotSupported("token=latest".into()));
    let (store2, e2) = engine(refused);
    let started = Instant::now();
    e2.initial_sync().await.unwrap();
    let by_delta = started.elapsed();
    assert!(
        drive.delta_requests() >= 50,
        "10,016 items in pages of 200: {}",
        drive.delta_requests()
    );
    assert_eq!(snapshot(&store), snapshot(&store2));
    println!(
        "10,016 items at 20 ms: direct paging {reference:?} ({reference_requests} requests); \
         initial_sync by folders {by_folders:?} ({listing_requests} listing requests; list_tree alone \
         {listing_alone:?}); \
         initial_sync by delta {by_delta:?} ({} delta requests)",
        drive.delta_requests()
    );
}

/// A drive that runs `before_children` once, on the first `children` call of `folder`, before the listing.
struct Hooked {
    inner: Arc<MockDrive>,
    folder: String,
    fired: AtomicBool,
    before_children: Box<dyn Fn(&MockDrive) + Send + Sync>,
}

#[async_trait]
impl DriveApi for Hooked {
    async fn drive(&self) -> Result<Drive, DriveError> {
        self.inner.drive().await
    }
    async fn item(&self, id: &str) -> Result<DriveItem, DriveError> {
        self.inner.item(id).await
    }
    async fn item_by_path(&self, path: &str) -> Result<DriveItem, DriveError> {
        self.inner.item_by_path(path).await
    }
    async fn special_folder(&self, name: &str) -> Result<DriveItem, DriveError> {
        self.inner.special_folder(name).await
    }
    async fn children(&self, id: &str) -> Result<Vec<DriveItem>, DriveError> {
        if id == self.folder && !self.fired.swap(true, Ordering::SeqCst) {
            (self.before_children)(&self.inner);
        }
        self.inner.children(id).await
    }
    async fn delta_page(&self, request: &DeltaRequest) -> Result<DeltaPage, DriveError> {
        self.inner.delta_page(request).await
    }
    async fn thumbnails(&self, id: &str) -> Result<Vec<ThumbnailSet>, DriveError> {
        self.inner.thumbnails(id).await
    }
    async fn download_thumbnail(&self, url: &str) -> Result<Bytes, DriveError> {
        self.inner.download_thumbnail(url).await
    }
    async fn download(
        &self,
        id: &str,
        ctag: &str,
        start: u64,
        end: u64,
    ) -> Result<galleryfs::remote::drive_api::DownloadStream, DriveError> {
        self.inner.download(id, ctag, start, end).await
    }
    async fn create_folder(&self, parent_id: &str, name: &str) -> Result<DriveItem, DriveError> {
        self.inner.create_folder(parent_id, name).await
    }
    async fn delete(&self, id: &str, if_match: Option<&str>) -> Result<(), DriveError> {
        self.inner.delete(id, if_match).await
    }
    async fn move_item(&self, id: &str, request: &MoveRequest) -> Result<DriveItem, DriveError> {
        self.inner.move_item(id, request).await
    }
    async fn upload(&self, request: UploadRequest) -> Result<DriveItem, DriveError> {
        self.inner.upload(request).await
    }
    async fn restore(&self, id: &str, parent_id: Option<&str>, name: Option<&str>) -> Result<DriveItem, DriveError> {
        self.inner.restore(id, parent_id, name).await
    }
}

#[tokio::test]
async fn changes_made_on_onedrive_during_the_listing_show_after_the_next_poll() {
    let (drive, gallery) = gallery_drive(100, 20);
    let path = |p: &str| drive.id_by_path(&format!("/Pictures/Samsung Gallery/{p}")).unwrap();
    // While DCIM is being listed: the gallery itself has been listed, Camera and Screenshots not yet.
    let dcim = path("DCIM");
    let moved = path("DCIM/Camera/IMG_00000.jpg");
    let renamed = path("DCIM/Screenshots/Screenshot_00009.png");
    let deleted = drive.add_file(&gallery, "deleted during the listing.jpg", "d");
    let (g, m, r, d) = (gallery.clone(), moved.clone(), renamed.clone(), deleted.clone());
    let hooked = Arc::new(Hooked {
        inner: drive.clone(),
        folder: dcim,
        fired: AtomicBool::new(false),
        before_children: Box::new(move |mock| {
            mock.move_to(&m, &g); // out of a folder not listed yet, into one listed already
            mock.add_file(&g, "added during the listing.jpg", "a");
            mock.rename(&r, "renamed during the listing.png");
            mock.delete_item(&d); // in a folder listed already
        }),
    });
    let (store, e) = engine(hooked.clone());
    e.initial_sync().await.unwrap();
    assert!(hooked.fired.load(Ordering::SeqCst));
    // What the listing could not see (this is why the link is taken first).
    assert!(
        store.get_by_item_id(&moved).unwrap().is_none(),
        "moved between listings"
    );
    assert!(store
        .lookup(ROOT_INO, "added during the listing.jpg")
        .unwrap()
        .is_none());
    assert!(store.get_by_item_id(&deleted).unwrap().is_some());
    // Listed after the rename: already right.
    assert_eq!(
        store.get_by_item_id(&renamed).unwrap().unwrap().name,
        "renamed during the listing.png"
    );

    let outcome = e.poll_once().await.unwrap();
    assert!(!outcome.resynced);
    let row = store.get_by_item_id(&moved).unwrap().unwrap();
    assert_eq!((row.parent_ino, row.name.as_str()), (Some(ROOT_INO), "IMG_00000.jpg"));
    assert!(store
        .lookup(ROOT_INO, "added during the listing.jpg")
        .unwrap()
        .is_some());
    assert!(store.get_by_item_id(&deleted).unwrap().is_none());
    assert_eq!(
        store.get_by_item_id(&renamed).unwrap().unwrap().name,
        "renamed during the listing.png",
        "re-reported, applied again harmlessly"
    );
    // The same store as a delta enumeration of the drive as it is now.
    let refused = without_latest(drive.clone(), DriveError::NotSupported("token=latest".into()));
    let (fresh, e2) = engine(refused);
    e2.initial_sync().await.unwrap();
    assert_eq!(snapshot(&store), snapshot(&fresh));
}

/// Through HTTP: the emulator at 20 ms a request, the real Graph client (`children` with `$top=1000`, 200-item
/// delta pages). The benchmark's layout: 10,000 photos in one folder, a few more beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_emulator_at_20_ms_10000_items_list_in_about_the_pages_of_the_largest_folder() {
    use galleryfs::emulator::{self, media::Content, EmulatorConfig};
    use galleryfs::remote::auth::StaticToken;
    use galleryfs::remote::graph_drive_api::GraphDrive;
    use galleryfs::remote::{Endpoints, GraphClient, RetryPolicy};

    const GALLERY: &str = "/Pictures/Samsung Gallery";
    let h = emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator starts");
    for i in 0..10_000u32 {
        h.state
            .add_file(
                &format!("{GALLERY}/Camera/IMG_{i:05}.jpg"),
                Content::Bytes(Bytes::from(i.to_le_bytes().to_vec())),
            )
            .unwrap();
    }
    for i in 0..20u32 {
        h.state
            .add_file(
                &format!("{GALLERY}/Photos/P_{i:02}.jpg"),
                Content::Bytes(Bytes::from(vec![i as u8; 8])),
            )
            .unwrap();
    }
    let endpoints = Endpoints {
        graph_url: h.graph_url(),
        login_url: h.login_url(),
        ..Default::default()
    };
    let client = || {
        GraphClient::new(
            endpoints.clone(),
            Arc::new(StaticToken(h.test_token())),
            RetryPolicy::default(),
        )
        .unwrap()
    };
    let graph = Arc::new(GraphDrive::new(client()));
    h.state.faults.set_global_latency(20);
    let requests_since = |seq: u64, what: &str| {
        h.state
            .log
            .entries_since(seq)
            .iter()
            .filter(|r| r.path.contains(what))
            .count()
    };

    // The reference: every folder paged directly, one page after the other.
    let gallery = graph.item_by_path(GALLERY).await.unwrap().id;
    let seq = h.state.log.next_seq();
    let started = Instant::now();
    let direct = page_directly(graph.as_ref(), &gallery).await;
    let reference = started.elapsed();
    let reference_pages = requests_since(seq, "/children");
    assert_eq!(direct, 10_000 + 20 + 2);
    assert_eq!(reference_pages, 1 + 10 + 1);

    // The listing alone (no gallery lookup, no store writes).
    let started = Instant::now();
    let listing = list_tree(graph.as_ref(), &gallery, DEFAULT_FOLDERS_IN_FLIGHT, |_| {})
        .await
        .unwrap();
    let listing_alone = started.elapsed();
    assert_eq!(listing.items.len(), direct + 1);
    // Children listings carry the parent's path, and no download URL (not selected: none is minted per file);
    // the listing keeps neither (delta's shape, and no secrets held until the round is applied).
    let raw = graph.children(&gallery).await.unwrap();
    let raw_file = graph
        .children(&raw.iter().find(|i| i.is_folder()).unwrap().id)
        .await
        .unwrap();
    assert!(!raw_file.is_empty() && raw_file.iter().all(|i| i.download_url.is_none()));
    assert!(raw
        .iter()
        .any(|i| i.parent_reference.as_ref().is_some_and(|r| r.path.is_some())));
    assert!(listing.items.iter().all(|i| i.download_url.is_none()));
    assert!(listing.items[1..].iter().all(|i| i
        .parent_reference
        .as_ref()
        .is_some_and(|r| r.path.is_none() && r.id.is_some())));

    let seq = h.state.log.next_seq();
    let (store, e) = engine(graph.clone());
    let started = Instant::now();
    e.initial_sync().await.unwrap();
    let by_folders = started.elapsed();
    assert_eq!(store.item_count().unwrap() as usize, direct);
    let delta = requests_since(seq, "/delta");
    assert_eq!(delta, 1, "one token=latest request, no delta page");
    let pages = requests_since(seq, "/children");
    assert_eq!(
        pages, reference_pages,
        "the reference's pages (the locator asks for the gallery by path, listing nothing)"
    );

    let seq = h.state.log.next_seq();
    let refused = without_latest_graph(graph.clone());
    let (store2, e2) = engine(refused);
    let started = Instant::now();
    e2.initial_sync().await.unwrap();
    let by_delta = started.elapsed();
    let delta_pages = requests_since(seq, "/delta");
    assert!(delta_pages >= 50, "10,023 items in pages of 200: {delta_pages}");
    assert_eq!(snapshot(&store), snapshot(&store2));
    println!(
        "emulator, 20 ms, 10,022 items: direct paging {reference:?} ({reference_pages} pages); list_tree alone \
         {listing_alone:?}; initial_sync by folders {by_folders:?} ({pages} children pages, 1 token=latest); by \
         delta {by_delta:?} ({delta_pages} delta pages)"
    );
}

fn without_latest_graph<D: DriveApi + 'static>(drive: D) -> Arc<FailingDrive<D>> {
    let failing = FailingDrive::new(drive);
    failing.only_ops(Some(&[MockOp::DeltaLatest]));
    failing.fail_fraction(1.0, DriveError::NotSupported("token=latest".into()));
    Arc::new(failing)
}
