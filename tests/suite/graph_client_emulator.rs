//! The real Graph client (`galleryfs::remote`) against the Graph emulator over real HTTP: every client operation,
//! paging boundaries, delta after each kind of remote change and the 410 resync, thumbnails as real JPEGs,
//! ranged and verified downloads, simple and session uploads (resume after a dropped connection, session gone,
//! cancel, conflict behaviours), 412 on stale eTags, recycle bin and restore, quota, throttling (Retry-After
//! honoured by concurrent requests, measured against the emulator's throttle windows) and token expiry and
//! revocation through `RefreshingTokenSource` against the emulator's token endpoint.
//!
//! Each test starts its own emulator on loopback ports; small galleries and short retry backoffs keep the file
//! fast. `docs/emulator-coverage.md` maps each endpoint and fault to the test covering it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common;

use bytes::Bytes;
use futures::StreamExt;
use galleryfs::emulator::faults::{FaultHost, FaultKind, FaultRule};
use galleryfs::emulator::media::Content;
use galleryfs::emulator::request_log::{emulator_clock_ms, LoggedRequest};
use galleryfs::emulator::{self, EmulatorConfig, EmulatorHandle};
use galleryfs::remote::auth::{
    sign_in_with_device_code, AuthError, RefreshingTokenSource, StaticToken, TokenSource, TokenStore,
};
use galleryfs::remote::download::ByteStream;
use galleryfs::remote::models::{ConflictBehavior, DriveItem, FileSystemInfo, ItemPatch, UploadSession};
use galleryfs::remote::upload::FRAGMENT_ALIGN;
use galleryfs::remote::{
    DeltaStart, DownloadUrl, Endpoints, FragmentOutcome, GraphClient, GraphError, QuickXorHash, RetryPolicy,
    ThumbnailRef, UploadEvent, UploadJob, UploadOptions, UploadTarget, UrlKind,
};

const GALLERY: &str = "/Pictures/Samsung Gallery";

/// Retries fast: these tests are about behaviour, not timing (the throttle tests set their own waits).
fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        default_throttle: Duration::from_millis(100),
        max_throttle_retries: 4,
        max_throttle_wait: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
    }
}

fn endpoints(h: &EmulatorHandle) -> Endpoints {
    Endpoints {
        graph_url: h.graph_url(),
        login_url: h.login_url(),
        ..Default::default()
    }
}

fn client_with(h: &EmulatorHandle, tokens: Arc<dyn TokenSource>, policy: RetryPolicy) -> GraphClient {
    GraphClient::new(endpoints(h), tokens, policy).expect("client")
}

struct Env {
    h: EmulatorHandle,
    c: GraphClient,
}

impl Env {
    async fn start(seed_gallery: usize) -> Env {
        let h = emulator::start(EmulatorConfig {
            seed_gallery,
            ..Default::default()
        })
        .await
        .expect("emulator starts");
        assert!(h.wait_for_hashes(Duration::from_secs(30)).await, "seed hashes");
        let c = client_with(&h, Arc::new(StaticToken(h.test_token())), fast_policy());
        Env { h, c }
    }

    /// Id of an item by path, from the emulator's own state (not through the client).
    fn id_of(&self, path: &str) -> String {
        self.h
            .state
            .state_dump()
            .into_iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("{path} not in the emulator state"))
            .id
    }

    fn add(&self, path: &str, bytes: &[u8]) -> String {
        self.h
            .state
            .add_file(path, Content::Bytes(Bytes::copy_from_slice(bytes)))
            .expect("add_file")
    }

    fn log_since(&self, seq: u64) -> Vec<LoggedRequest> {
        self.h.state.log.entries_since(seq)
    }

    fn seq(&self) -> u64 {
        self.h.state.log.next_seq()
    }

    /// Every file of the seeded gallery (from the emulator's state).
    fn seeded_files(&self) -> Vec<emulator::StateEntry> {
        self.h
            .state
            .state_dump()
            .into_iter()
            .filter(|e| e.kind == "file" && e.path.starts_with(GALLERY))
            .collect()
    }
}

fn data(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + salt as usize * 7 + i / 251) % 256) as u8)
        .collect()
}

async fn collect(mut s: ByteStream) -> Result<Vec<u8>, GraphError> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

fn names(items: &[DriveItem]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().filter_map(|i| i.name.clone()).collect();
    v.sort();
    v
}

fn fsi(at: &str) -> FileSystemInfo {
    FileSystemInfo {
        created_date_time: Some("2024-03-15T14:22:33Z".parse().unwrap()),
        last_modified_date_time: Some(at.parse().unwrap()),
        ..Default::default()
    }
}

// ---------------------------------------------------------------- drive, items, paths, special folders

/// The gallery is found in one request however many photos `Pictures` holds beside it (it used to list all of
/// `Pictures`: 1 + ⌈n/200⌉ requests), names compared case-insensitively as OneDrive does; a missing one is `None`.
#[tokio::test]
async fn the_gallery_is_located_in_one_request_beside_many_photos() {
    use galleryfs::remote::drive_api::DriveApi;
    use galleryfs::remote::graph_drive_api::GraphDrive;
    use galleryfs::sync::gallery_locator::{locate_gallery, GalleryLocation};
    let e = Env::start(2).await;
    for i in 0..450 {
        e.add(&format!("/Pictures/IMG_{i:04}.jpg"), b"x");
    }
    let drive = GraphDrive::new(client_with(
        &e.h,
        Arc::new(StaticToken(e.h.test_token())),
        fast_policy(),
    ));
    let before = e.seq();
    let found = locate_gallery(&drive, None).await.unwrap();
    assert_eq!(found.location, GalleryLocation::PhotosFolder);
    assert_eq!(found.item.id, e.id_of(GALLERY));
    let requests = e.log_since(before);
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(requests[0].path.contains("/special/photos:/"), "{requests:?}");

    let lower = drive.special_folder_child("photos", "samsung gallery").await.unwrap();
    assert_eq!(lower.map(|g| g.id), Some(e.id_of(GALLERY)));
    assert!(drive.special_folder_child("photos", "Nope").await.unwrap().is_none());
}

#[tokio::test]
async fn drive_quota_items_by_id_and_path_and_special_folder() {
    let e = Env::start(0).await;
    let drive = e.c.drive().await.unwrap();
    assert_eq!(drive.id, e.h.drive_id());
    assert_eq!(drive.drive_type.as_deref(), Some("personal"));
    let quota = drive.quota.expect("quota");
    let view = e.h.state.quota();
    assert_eq!(quota.total, Some(view.total));
    assert_eq!(quota.used, Some(view.used));
    assert_eq!(quota.state.as_deref(), Some("normal"));

    let photos = e.c.special_folder("photos").await.unwrap();
    assert_eq!(photos.name.as_deref(), Some("Pictures"));
    assert_eq!(photos.special_folder.and_then(|s| s.name).as_deref(), Some("photos"));
    assert_eq!(photos.id, e.id_of("/Pictures"));

    let root = e.c.item_by_path("/").await.unwrap();
    assert!(root.root.is_some(), "the drive root has the root facet");
    assert_eq!(e.c.item_by_path("").await.unwrap().id, root.id);

    // Names that need percent-encoding in a path segment, and unicode.
    let awkward = [
        "#1 100%.jpg",
        "with  two spaces.jpg",
        "Ünïcødé 写真 📷.jpg",
        "a+b&c=d;e,f'g(h)[i]{j}~$@.jpg",
        "question%3Fnot-decoded.jpg",
    ];
    for (i, name) in awkward.iter().enumerate() {
        let path = format!("{GALLERY}/Album/{name}");
        let bytes = data(100 + i, i as u8);
        let id = e.add(&path, &bytes);
        let by_path =
            e.c.item_by_path(&path)
                .await
                .unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(by_path.id, id, "{name} by path");
        assert_eq!(by_path.name.as_deref(), Some(*name));
        assert_eq!(by_path.size, Some(bytes.len() as i64));
        assert_eq!(by_path.quick_xor_hash(), Some(QuickXorHash::of(&bytes).as_str()));
        let by_id = e.c.item(&id).await.unwrap();
        assert_eq!(by_id.name.as_deref(), Some(*name));
        assert_eq!(by_id.e_tag, by_path.e_tag);
        // Path matching is case-insensitive (OAD concepts/case-sensitivity.md).
        let upper = e.c.item_by_path(&path.to_uppercase()).await.unwrap();
        assert_eq!(upper.id, id, "{name} upper-cased");
        let album = e.id_of(&format!("{GALLERY}/Album"));
        let child = e.c.child_by_name(&album, &name.to_lowercase()).await.unwrap();
        assert_eq!(child.map(|c| c.id), Some(id));
    }
    let album = e.id_of(&format!("{GALLERY}/Album"));
    assert_eq!(e.c.child_by_name(&album, "nope.jpg").await.unwrap().map(|c| c.id), None);
    let missing = e.c.item_by_path(&format!("{GALLERY}/nope.jpg")).await.unwrap_err();
    assert!(matches!(missing, GraphError::NotFound { .. }), "{missing:?}");
    assert_eq!(missing.error_code(), Some("itemNotFound"));
    let missing = e.c.item(&format!("{}!999999", e.h.drive_id())).await.unwrap_err();
    assert!(matches!(missing, GraphError::NotFound { .. }), "{missing:?}");

    // Gallery discovery the way the mount does it: photos special folder → child "Samsung Gallery".
    let gallery =
        e.c.child_by_name(&photos.id, "samsung gallery")
            .await
            .unwrap()
            .expect("gallery");
    assert_eq!(gallery.id, e.id_of(GALLERY));
    assert_eq!(gallery.parent_id(), Some(photos.id.as_str()));
}

// ---------------------------------------------------------------- children paging

#[tokio::test]
async fn children_paging_at_0_1_200_201_and_1001_items() {
    let e = Env::start(0).await;
    let counts = [0usize, 1, 200, 201, 1001];
    for n in counts {
        let folder = format!("/Paging/n{n}");
        e.h.state.add_folder(&folder).unwrap();
        for i in 0..n {
            e.add(&format!("{folder}/IMG_{i:05}.jpg"), &[i as u8]);
        }
    }
    for n in counts {
        let id = e.id_of(&format!("/Paging/n{n}"));
        let seq = e.seq();
        let kids = e.c.children(&id).await.unwrap();
        assert_eq!(kids.len(), n, "children of n{n}");
        let mut ids: Vec<&str> = kids.iter().map(|k| k.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "no item twice in n{n}");
        let want: Vec<String> = (0..n).map(|i| format!("IMG_{i:05}.jpg")).collect();
        assert_eq!(names(&kids), want);
        // The client asks $top=1000 (the documented maximum) and follows nextLink verbatim.
        let pages = e
            .log_since(seq)
            .iter()
            .filter(|r| r.host == "api" && r.path.contains("/children"))
            .count();
        assert_eq!(pages, if n > 1000 { 2 } else { 1 }, "pages for n{n}");

        // With $expand=thumbnails the service picks the page size (at most 100, graph-api.md §4).
        let seq = e.seq();
        let with_thumbs = e.c.children_with_thumbnails(&id, "medium").await.unwrap();
        assert_eq!(names(&with_thumbs), want);
        let pages = e
            .log_since(seq)
            .iter()
            .filter(|r| r.host == "api" && r.path.contains("/children"))
            .count();
        assert_eq!(pages, n.div_ceil(100).max(1), "expand pages for n{n}");
    }
}

// ---------------------------------------------------------------- delta

#[tokio::test]
async fn delta_full_latest_and_incremental_after_each_kind_of_remote_change() {
    let e = Env::start(4).await;
    let full = e.c.delta(DeltaStart::Full { folder_id: None }).await.unwrap();
    let live: Vec<String> = e.h.state.state_dump().into_iter().map(|s| s.id).collect();
    for id in &live {
        assert!(full.items.iter().any(|i| &i.id == id), "{id} missing from full delta");
    }
    assert!(full.items.iter().all(|i| !i.is_deleted()));
    assert!(!full.delta_link.is_empty());

    let latest = e.c.delta(DeltaStart::Latest { folder_id: None }).await.unwrap();
    assert!(latest.items.is_empty(), "token=latest returns no items");

    // Nothing changed: empty round from either link.
    let quiet = e.c.delta(DeltaStart::Link(full.delta_link.clone())).await.unwrap();
    assert!(
        quiet.items.iter().all(|i| i.is_folder()),
        "no file changes: {:?}",
        names(&quiet.items)
    );

    // add
    let added = e.add(&format!("{GALLERY}/DCIM/Camera/new.jpg"), b"new photo");
    let r = e.c.delta(DeltaStart::Link(latest.delta_link.clone())).await.unwrap();
    let got = r.items.iter().find(|i| i.id == added).expect("added item in delta");
    assert_eq!(got.name.as_deref(), Some("new.jpg"));
    assert_eq!(got.size, Some(9));
    assert!(
        got.parent_reference.as_ref().and_then(|p| p.path.as_ref()).is_none(),
        "no path in delta"
    );
    let link = r.delta_link;

    // edit: new content, new cTag and hash
    let before = e.c.item(&added).await.unwrap();
    e.h.state
        .edit_file(&added, Content::Bytes(Bytes::from_static(b"edited photo!")))
        .unwrap();
    let r = e.c.delta(DeltaStart::Link(link)).await.unwrap();
    let got = r.items.iter().find(|i| i.id == added).expect("edited item in delta");
    assert_eq!(got.size, Some(13));
    assert_ne!(got.c_tag, before.c_tag, "content edit changes cTag");
    assert_eq!(got.quick_xor_hash(), Some(QuickXorHash::of(b"edited photo!").as_str()));
    let link = r.delta_link;

    // rename: same id, same cTag (metadata only), new eTag
    let before = e.c.item(&added).await.unwrap();
    e.h.state.rename_item(&added, "renamed.jpg").unwrap();
    let r = e.c.delta(DeltaStart::Link(link)).await.unwrap();
    let got = r.items.iter().find(|i| i.id == added).expect("renamed item in delta");
    assert_eq!(got.name.as_deref(), Some("renamed.jpg"));
    assert_eq!(got.c_tag, before.c_tag, "rename keeps cTag");
    assert_ne!(got.e_tag, before.e_tag, "rename changes eTag");
    let link = r.delta_link;

    // move to another folder
    let album = e.h.state.add_folder(&format!("{GALLERY}/Album")).unwrap();
    e.h.state.move_item(&added, &album, None).unwrap();
    let r = e.c.delta(DeltaStart::Link(link)).await.unwrap();
    let got = r.items.iter().find(|i| i.id == added).expect("moved item in delta");
    assert_eq!(got.parent_id(), Some(album.as_str()));
    assert!(r.items.iter().any(|i| i.id == album), "the new folder is in the round");
    let link = r.delta_link;

    // several changes to one item in one round: it appears once, in its last state (dedup, last wins)
    e.h.state.rename_item(&added, "r1.jpg").unwrap();
    e.h.state
        .edit_file(&added, Content::Bytes(Bytes::from_static(b"v3")))
        .unwrap();
    e.h.state.rename_item(&added, "r2.jpg").unwrap();
    let r = e.c.delta(DeltaStart::Link(link)).await.unwrap();
    let mine: Vec<&DriveItem> = r.items.iter().filter(|i| i.id == added).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].name.as_deref(), Some("r2.jpg"));
    assert_eq!(mine[0].size, Some(2));
    let link = r.delta_link;

    // delete: the item comes back with the deleted facet
    e.h.state.delete_item(&added).unwrap();
    let r = e.c.delta(DeltaStart::Link(link)).await.unwrap();
    let got = r.items.iter().find(|i| i.id == added).expect("deleted item in delta");
    assert!(got.is_deleted(), "{got:?}");
    let link = r.delta_link;

    // restore: back, not deleted
    e.h.state.restore_item(&added).unwrap();
    let r = e.c.delta(DeltaStart::Link(link)).await.unwrap();
    let got = r.items.iter().find(|i| i.id == added).expect("restored item in delta");
    assert!(!got.is_deleted());
    assert_eq!(got.name.as_deref(), Some("r2.jpg"));
}

#[tokio::test]
async fn delta_pages_and_folder_scope() {
    let e = Env::start(0).await;
    for i in 0..450 {
        e.add(&format!("{GALLERY}/DCIM/Camera/P{i:04}.jpg"), &[i as u8, 1]);
    }
    e.add("/Documents/outside.txt", b"not in the gallery");
    let seq = e.seq();
    let full = e.c.delta(DeltaStart::Full { folder_id: None }).await.unwrap();
    assert!(
        full.pages >= 3,
        "450+ items come in pages of at most 200: {}",
        full.pages
    );
    let delta_requests = e.log_since(seq).iter().filter(|r| r.path.contains("delta")).count();
    assert_eq!(delta_requests, full.pages);
    assert_eq!(full.items.iter().filter(|i| i.is_file()).count(), 451);

    let gallery = e.id_of(GALLERY);
    let scoped =
        e.c.delta(DeltaStart::Full {
            folder_id: Some(gallery.clone()),
        })
        .await
        .unwrap();
    let files: Vec<&DriveItem> = scoped.items.iter().filter(|i| i.is_file()).collect();
    assert_eq!(files.len(), 450, "folder-scoped delta has only the gallery's files");
    assert!(scoped.items.iter().all(|i| i.name.as_deref() != Some("outside.txt")));

    // Folder-scoped incremental: a change outside the folder is not reported, one inside is.
    let latest =
        e.c.delta(DeltaStart::Latest {
            folder_id: Some(gallery.clone()),
        })
        .await
        .unwrap();
    e.add("/Documents/outside2.txt", b"x");
    let inside = e.add(&format!("{GALLERY}/inside.jpg"), b"y");
    let r = e.c.delta(DeltaStart::Link(latest.delta_link)).await.unwrap();
    assert!(r.items.iter().any(|i| i.id == inside));
    assert!(r.items.iter().all(|i| i.name.as_deref() != Some("outside2.txt")));
}

#[tokio::test]
async fn delta_410_resync_follows_the_location() {
    let e = Env::start(3).await;
    let full = e.c.delta(DeltaStart::Full { folder_id: None }).await.unwrap();
    e.add(&format!("{GALLERY}/after.jpg"), b"after");
    e.h.state.invalidate_delta_tokens();
    let err = e.c.delta(DeltaStart::Link(full.delta_link.clone())).await.unwrap_err();
    let GraphError::ResyncRequired { location, .. } = &err else {
        panic!("expected ResyncRequired, got {err:?}");
    };
    assert_eq!(err.status(), Some(410));
    assert!(
        err.has_code("resyncRequired") || err.error_code().is_some_and(|c| c.starts_with("resync")),
        "{err:?}"
    );
    let location = location.clone().expect("410 carries a Location");
    assert!(
        location.starts_with(&e.h.graph_url()),
        "Location is a Graph URL: {location}"
    );

    let seq = e.seq();
    let again = e.c.delta_resync(Some(&location)).await.unwrap();
    let first = e.log_since(seq).into_iter().find(|r| r.path.contains("delta")).unwrap();
    assert_eq!(first.status, 200, "the Location restarts enumeration");
    let live: Vec<String> = e.h.state.state_dump().into_iter().map(|s| s.id).collect();
    for id in &live {
        assert!(again.items.iter().any(|i| &i.id == id), "{id} missing after resync");
    }
    // The new deltaLink works.
    let quiet = e.c.delta(DeltaStart::Link(again.delta_link)).await.unwrap();
    assert!(quiet.items.iter().all(|i| !i.is_file()));
}

// ---------------------------------------------------------------- thumbnails

#[tokio::test]
async fn thumbnails_list_custom_and_content_are_real_jpegs() {
    let e = Env::start(4).await;
    let photo = e
        .seeded_files()
        .into_iter()
        .find(|f| f.path.to_lowercase().ends_with(".jpg"))
        .expect("a seeded photo");
    let sets = e.c.thumbnails(&photo.id).await.unwrap();
    assert_eq!(sets.len(), 1);
    let set = &sets[0];
    assert_eq!(set.id, "0");
    let mut longest = Vec::new();
    for (label, t) in [("small", &set.small), ("medium", &set.medium), ("large", &set.large)] {
        let t = t.as_ref().unwrap_or_else(|| panic!("{label} missing"));
        let url = t.url.as_deref().expect("thumbnail url");
        assert!(
            url.starts_with(&e.h.content_url()),
            "{label} served by the content host"
        );
        let seq = e.seq();
        let bytes = e.c.thumbnail_content(ThumbnailRef::Url(url)).await.unwrap();
        assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF], "{label} is a JPEG");
        let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).expect("decodes");
        assert_eq!(Some(img.width() as i64), t.width, "{label} width as listed");
        assert_eq!(Some(img.height() as i64), t.height, "{label} height as listed");
        longest.push(img.width().max(img.height()));
        let log = e.log_since(seq);
        assert!(
            log.iter().all(|r| !r.had_authorization),
            "no bearer token to the thumbnail host"
        );
    }
    assert!(
        longest[0] < longest[1] && longest[1] < longest[2],
        "small < medium < large: {longest:?}"
    );
    assert!(
        longest[0] <= 96 && longest[1] <= 176 && longest[2] <= 800,
        "{longest:?}"
    );

    // Item + set + size: /thumbnails/0/medium/content → 302 → bytes.
    let via_set =
        e.c.thumbnail_content(ThumbnailRef::Set {
            item_id: &photo.id,
            set_id: "0",
            size: "medium",
        })
        .await
        .unwrap();
    let img = image::load_from_memory(&via_set).unwrap();
    assert_eq!(img.width().max(img.height()), longest[1]);

    // Custom sizes: fit inside the box, or fill and crop.
    let custom =
        e.c.thumbnail_custom(&photo.id, "c300x400")
            .await
            .unwrap()
            .expect("custom");
    let bytes =
        e.c.thumbnail_content(ThumbnailRef::Url(custom.url.as_deref().unwrap()))
            .await
            .unwrap();
    let img = image::load_from_memory(&bytes).unwrap();
    assert!(
        img.width() <= 300 && img.height() <= 400,
        "{}x{}",
        img.width(),
        img.height()
    );
    assert!(img.width() == 300 || img.height() == 400, "fills one side of the box");
    assert_eq!(Some(img.width() as i64), custom.width);
    let crop =
        e.c.thumbnail_custom(&photo.id, "c120x120_Crop")
            .await
            .unwrap()
            .expect("crop");
    let bytes =
        e.c.thumbnail_content(ThumbnailRef::Url(crop.url.as_deref().unwrap()))
            .await
            .unwrap();
    let img = image::load_from_memory(&bytes).unwrap();
    assert_eq!((img.width(), img.height()), (120, 120));

    // Listing with $expand=thumbnails carries the same sets.
    let album = e.c.item(&photo.id).await.unwrap().parent_id().unwrap().to_string();
    let kids =
        e.c.children_with_thumbnails(&album, "small,medium,large")
            .await
            .unwrap();
    let me = kids.iter().find(|k| k.id == photo.id).unwrap();
    let listed = me.thumbnails.as_ref().expect("expanded thumbnails");
    assert_eq!(
        listed[0].medium.as_ref().and_then(|m| m.width),
        set.medium.as_ref().and_then(|m| m.width)
    );

    // No thumbnail yet → an empty list (not an error), and no custom thumbnail.
    e.h.state.set_thumbnails_missing(&photo.id, true).unwrap();
    assert!(e.c.thumbnails(&photo.id).await.unwrap().is_empty());
    assert!(e.c.thumbnail_custom(&photo.id, "c64x64").await.unwrap().is_none());
}

#[tokio::test]
async fn thumbnails_of_a_real_sample_photo() {
    let Some(bytes) = common::sample("nokia_8.3_5g.jpg") else {
        return;
    };
    let e = Env::start(0).await;
    let source = image::load_from_memory(&bytes).expect("sample decodes");
    let id = e.add(&format!("{GALLERY}/DCIM/Camera/nokia.jpg"), &bytes);
    let item = e.c.item(&id).await.unwrap();
    assert_eq!(item.size, Some(bytes.len() as i64));
    assert_eq!(item.quick_xor_hash(), Some(QuickXorHash::of(&bytes).as_str()));
    let sets = e.c.thumbnails(&id).await.unwrap();
    let large = sets[0].large.as_ref().unwrap();
    let got =
        e.c.thumbnail_content(ThumbnailRef::Url(large.url.as_deref().unwrap()))
            .await
            .unwrap();
    let img = image::load_from_memory(&got).unwrap();
    // Aspect ratio kept within rounding (the thumbnail is of this photo, not a placeholder).
    let want = source.width() as f64 / source.height() as f64;
    let have = img.width() as f64 / img.height() as f64;
    assert!((want - have).abs() < 0.02, "aspect {want} vs {have}");
}

// ---------------------------------------------------------------- downloads

#[tokio::test]
async fn download_redirect_ranges_416_and_hash_verified_whole_download() {
    let e = Env::start(0).await;
    let bytes = data(700_000, 3);
    let id = e.add(&format!("{GALLERY}/DCIM/Camera/big.jpg"), &bytes);
    let item = e.c.item(&id).await.unwrap();

    let seq = e.seq();
    let url = e.c.download_url(&id).await.unwrap();
    assert_eq!(
        url.kind(),
        UrlKind::PreAuthenticated,
        "/content answers 302 to a pre-authenticated URL"
    );
    assert!(url.as_secret_str().starts_with(&e.h.content_url()));
    let content_call = &e.log_since(seq)[0];
    assert_eq!((content_call.host.as_str(), content_call.status), ("api", 302));

    let seq = e.seq();
    let got = collect(e.c.get_range(&url, 1000, 5000).await.unwrap()).await.unwrap();
    assert_eq!(got, &bytes[1000..6000]);
    let ranged = &e.log_since(seq)[0];
    assert_eq!(ranged.host, "content");
    assert_eq!(ranged.status, 206);
    assert_eq!(ranged.range.as_deref(), Some("bytes=1000-5999"));
    assert!(!ranged.had_authorization, "no bearer token to the download host");

    // A range running past the end is cut at the end; one starting past it is 416.
    let tail = collect(e.c.get_range(&url, 699_990, 100).await.unwrap()).await.unwrap();
    assert_eq!(tail, &bytes[699_990..]);
    let err = e.c.get_range(&url, 700_000, 10).await.err().expect("416");
    assert!(matches!(err, GraphError::RangeNotSatisfiable { .. }), "{err:?}");
    assert_eq!(err.status(), Some(416));

    // Whole download, verified against quickXorHash.
    let mut whole = Vec::new();
    assert_eq!(e.c.download_item(&item, &mut whole).await.unwrap(), bytes.len() as u64);
    assert_eq!(whole, bytes);

    // An empty file downloads as zero bytes (no Range on a whole download) and verifies.
    let empty_id = e.add(&format!("{GALLERY}/DCIM/Camera/empty.jpg"), b"");
    let empty = e.c.item(&empty_id).await.unwrap();
    let mut nothing = Vec::new();
    assert_eq!(e.c.download_item(&empty, &mut nothing).await.unwrap(), 0);

    // A body cut short is an error, never a silently short file.
    e.h.state.faults.add_rule(
        FaultRule::new(FaultKind::Truncate { after_bytes: 4096 })
            .host(FaultHost::Content)
            .path_contains("/download/")
            .count(4),
    );
    let mut short = Vec::new();
    let err = e.c.download_item(&item, &mut short).await.unwrap_err();
    assert!(
        matches!(err, GraphError::Truncated { .. } | GraphError::Network(_)),
        "{err:?}"
    );
    e.h.state.faults.clear_rules();

    // A file whose listed hash does not match its bytes is refused (HashMismatch).
    let mut lying = item.clone();
    lying.file.as_mut().unwrap().hashes.as_mut().unwrap().quick_xor_hash = Some(QuickXorHash::of(b"other"));
    let mut sink = Vec::new();
    let err = e.c.download_item(&lying, &mut sink).await.unwrap_err();
    assert!(matches!(err, GraphError::HashMismatch { .. }), "{err:?}");
}

#[tokio::test]
async fn expired_download_url_is_replaced_once() {
    let e = Env::start(0).await;
    let bytes = data(50_000, 9);
    let id = e.add(&format!("{GALLERY}/a.jpg"), &bytes);
    let mut slot: Option<DownloadUrl> = None;
    let first = collect(e.c.item_range(&id, &mut slot, 0, 100).await.unwrap())
        .await
        .unwrap();
    assert_eq!(first, &bytes[..100]);
    let old = slot.clone().expect("url kept");

    e.h.state.expire_download_urls();
    let seq = e.seq();
    let again = collect(e.c.item_range(&id, &mut slot, 100, 100).await.unwrap())
        .await
        .unwrap();
    assert_eq!(again, &bytes[100..200]);
    assert_ne!(slot.as_ref(), Some(&old), "a fresh URL replaced the stale one");
    let log = e.log_since(seq);
    let statuses: Vec<(String, u16)> = log.iter().map(|r| (r.host.clone(), r.status)).collect();
    assert!(
        (400..=499).contains(&log[0].status) && log[0].host == "content",
        "stale URL refused first: {statuses:?}"
    );
    assert_eq!(
        log.iter().filter(|r| r.path.ends_with("/content")).count(),
        1,
        "{statuses:?}"
    );

    // The listed @microsoft.graph.downloadUrl of old metadata also goes stale; download_item fetches anew.
    let item = e.c.item(&id).await.unwrap();
    assert!(item.download_url.is_some(), "item metadata carries a download URL");
    e.h.state.expire_download_urls();
    let mut whole = Vec::new();
    e.c.download_item(&item, &mut whole).await.unwrap();
    assert_eq!(whole, bytes);
}

#[tokio::test]
async fn ranged_download_resumes_after_a_dropped_connection() {
    let e = Env::start(0).await;
    let bytes = data(400_000, 5);
    let id = e.add(&format!("{GALLERY}/v.mp4"), &bytes);
    let url = e.c.download_url(&id).await.unwrap();
    e.h.state.faults.add_rule(
        FaultRule::new(FaultKind::Reset { after_bytes: 65_536 })
            .host(FaultHost::Content)
            .path_contains("/download/")
            .count(1),
    );
    let seq = e.seq();
    let got = collect(e.c.get_range(&url, 10, 300_000).await.unwrap()).await.unwrap();
    assert_eq!(got.len(), 300_000);
    assert!(got == bytes[10..300_010], "resumed bytes are the right bytes");
    assert_eq!(e.h.state.faults.counts().get("reset"), Some(&1));
    let ranges: Vec<String> = e
        .log_since(seq)
        .iter()
        .filter(|r| r.host == "content")
        .filter_map(|r| r.range.clone())
        .collect();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(ranges[0], "bytes=10-300009");
    let resumed_at: u64 = ranges[1]
        .trim_start_matches("bytes=")
        .split('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        resumed_at > 10 && resumed_at <= 10 + 65_536,
        "resumed from the next missing byte: {ranges:?}"
    );
}

// ---------------------------------------------------------------- uploads

fn opts() -> UploadOptions {
    UploadOptions {
        fragment_size: 4 * FRAGMENT_ALIGN,
        ..Default::default()
    }
}

fn new_child(parent: &str, name: &str, conflict: ConflictBehavior) -> UploadJob {
    UploadJob {
        target: UploadTarget::NewChild {
            parent_id: parent.into(),
            name: name.into(),
        },
        file_system_info: Some(fsi("2024-03-15T14:22:33Z")),
        conflict,
        if_match: None,
        resume_from: None,
    }
}

#[tokio::test]
async fn simple_upload_and_session_upload_keep_file_system_info() {
    let e = Env::start(0).await;
    e.h.state.set_strict_simple_upload(true);
    let gallery = e.h.state.add_folder(GALLERY).unwrap();

    // ≤ 4 MiB: one simple PUT (accepted even in strict mode), then fileSystemInfo by PATCH.
    let small = Bytes::from(data(4 * 1024 * 1024, 1));
    let seq = e.seq();
    let item =
        e.c.upload_file(
            &small,
            &new_child(&gallery, "small.jpg", ConflictBehavior::Fail),
            &opts(),
            &mut |_| {},
        )
        .await
        .unwrap();
    let log = e.log_since(seq);
    assert!(log
        .iter()
        .any(|r| r.method == "PUT" && r.path.contains("small.jpg:/content") && r.status == 201));
    assert!(!log.iter().any(|r| r.path.contains("createUploadSession")));
    assert_eq!(item.size, Some(small.len() as i64));
    let mtime = item.file_system_info.as_ref().and_then(|f| f.last_modified_date_time);
    assert_eq!(
        mtime,
        Some("2024-03-15T14:22:33Z".parse().unwrap()),
        "fileSystemInfo kept"
    );

    // > 4 MiB: an upload session, fragments without Authorization, fileSystemInfo in the session item.
    let big = Bytes::from(data(5 * 1024 * 1024 + 123, 2));
    let seq = e.seq();
    let mut progress = Vec::new();
    let mut started = 0;
    let item =
        e.c.upload_file(
            &big,
            &new_child(&gallery, "big video.mp4", ConflictBehavior::Fail),
            &opts(),
            &mut |ev| match ev {
                UploadEvent::SessionStarted(_) => started += 1,
                UploadEvent::Progress { sent, .. } => progress.push(sent),
            },
        )
        .await
        .unwrap();
    assert_eq!(started, 1);
    assert_eq!(progress.last(), Some(&(big.len() as u64)));
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert_eq!(item.size, Some(big.len() as i64));
    assert_eq!(item.quick_xor_hash(), Some(QuickXorHash::of(&big).as_str()));
    let mtime = item.file_system_info.as_ref().and_then(|f| f.last_modified_date_time);
    assert_eq!(mtime, Some("2024-03-15T14:22:33Z".parse().unwrap()));
    let log = e.log_since(seq);
    assert!(log
        .iter()
        .any(|r| r.path.contains("createUploadSession") && r.had_authorization));
    let fragments: Vec<&LoggedRequest> = log
        .iter()
        .filter(|r| r.host == "content" && r.method == "PUT")
        .collect();
    assert_eq!(
        fragments.len(),
        (big.len() as u64).div_ceil(4 * FRAGMENT_ALIGN) as usize
    );
    assert!(
        fragments.iter().all(|r| !r.had_authorization),
        "no bearer token on fragments"
    );
    assert!(
        !log.iter().any(|r| r.method == "PATCH"),
        "no extra PATCH after a session"
    );
    let state = e.h.state.state_dump();
    let entry = state.iter().find(|s| s.id == item.id).unwrap();
    assert_eq!(entry.path, format!("{GALLERY}/big video.mp4"));
    assert_eq!(entry.quick_xor_hash.as_deref(), Some(QuickXorHash::of(&big).as_str()));

    // The bytes read back equal what was sent.
    let mut back = Vec::new();
    e.c.download_item(&e.c.item(&item.id).await.unwrap(), &mut back)
        .await
        .unwrap();
    assert!(back == big[..]);

    // Empty file: simple PUT (sessions cannot carry 0 bytes).
    let empty =
        e.c.upload_file(
            &Bytes::new(),
            &new_child(&gallery, "empty.txt", ConflictBehavior::Fail),
            &opts(),
            &mut |_| {},
        )
        .await
        .unwrap();
    assert_eq!(empty.size, Some(0));

    // Strict mode really refuses a simple PUT above 4 MiB (so the client's choice above mattered).
    let err =
        e.c.upload_small(
            &gallery,
            "too big.jpg",
            Bytes::from(data(4 * 1024 * 1024 + 1, 3)),
            ConflictBehavior::Fail,
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(413), "{err:?}");
}

#[tokio::test]
async fn upload_resumes_after_a_connection_reset_mid_fragment() {
    let e = Env::start(0).await;
    let gallery = e.h.state.add_folder(GALLERY).unwrap();
    let big = Bytes::from(data(6 * 1024 * 1024 + 77, 4));
    let faults = e.h.state.faults.clone();
    let mut armed = false;
    let seq = e.seq();
    let item =
        e.c.upload_file(
            &big,
            &new_child(&gallery, "reset.mp4", ConflictBehavior::Fail),
            &opts(),
            &mut |ev| {
                // After the second fragment was taken, the answer to the third is cut off mid-body.
                if let UploadEvent::Progress { sent, .. } = ev {
                    if sent == 2 * 4 * FRAGMENT_ALIGN && !armed {
                        armed = true;
                        faults.add_rule(
                            FaultRule::new(FaultKind::Reset { after_bytes: 10 })
                                .host(FaultHost::Content)
                                .method("PUT")
                                .count(1),
                        );
                    }
                }
            },
        )
        .await
        .unwrap();
    assert!(armed);
    assert_eq!(e.h.state.faults.counts().get("reset"), Some(&1), "the fault fired");
    assert_eq!(item.quick_xor_hash(), Some(QuickXorHash::of(&big).as_str()));
    assert_eq!(item.size, Some(big.len() as i64));
    let log = e.log_since(seq);
    let puts: Vec<(u16, Option<String>)> = log
        .iter()
        .filter(|r| r.host == "content" && r.method == "PUT")
        .map(|r| (r.status, r.range.clone()))
        .collect();
    let third = format!("bytes {}-{}/{}", 8 * FRAGMENT_ALIGN, 12 * FRAGMENT_ALIGN - 1, big.len());
    assert!(
        puts.iter()
            .filter(|(_, r)| r.as_deref() == Some(third.as_str()))
            .count()
            >= 2,
        "the third fragment was sent again or the session was asked: {puts:?}"
    );
    // The third fragment was taken but its answer lost; re-sent it is 416 (already received), the session status
    // says where to go on, and the upload continues with the fourth.
    let content: Vec<(String, u16)> = log
        .iter()
        .filter(|r| r.host == "content")
        .map(|r| (r.method.clone(), r.status))
        .collect();
    let want: Vec<(String, u16)> = [
        ("PUT", 202),
        ("PUT", 202),
        ("PUT", 202),
        ("PUT", 416),
        ("GET", 200),
        ("PUT", 202),
        ("PUT", 201),
    ]
    .iter()
    .map(|(m, s)| (m.to_string(), *s))
    .collect();
    assert_eq!(content, want);
    // Every fragment after the resume is new ground: the session ended complete with the right bytes.
    let entry = e.h.state.state_dump().into_iter().find(|s| s.id == item.id).unwrap();
    assert_eq!(entry.size, big.len() as u64);
}

#[tokio::test]
async fn upload_completion_lost_to_a_reset_is_recovered() {
    let e = Env::start(0).await;
    let gallery = e.h.state.add_folder(GALLERY).unwrap();
    let big = Bytes::from(data(5 * 1024 * 1024 + 5, 6));
    let faults = e.h.state.faults.clone();
    let last_start = (big.len() as u64 / (4 * FRAGMENT_ALIGN)) * 4 * FRAGMENT_ALIGN;
    let mut armed = false;
    let item =
        e.c.upload_file(
            &big,
            &new_child(&gallery, "last.mp4", ConflictBehavior::Fail),
            &opts(),
            &mut |ev| {
                if let UploadEvent::Progress { sent, .. } = ev {
                    if sent == last_start && !armed {
                        armed = true;
                        faults.add_rule(
                            FaultRule::new(FaultKind::Reset { after_bytes: 10 })
                                .host(FaultHost::Content)
                                .method("PUT")
                                .count(1),
                        );
                    }
                }
            },
        )
        .await
        .expect("the item the session made is found and verified");
    assert!(armed);
    assert_eq!(e.h.state.faults.counts().get("reset"), Some(&1));
    assert_eq!(item.quick_xor_hash(), Some(QuickXorHash::of(&big).as_str()));
    let files: Vec<_> =
        e.h.state
            .state_dump()
            .into_iter()
            .filter(|s| s.path.starts_with(&format!("{GALLERY}/last")))
            .collect();
    assert_eq!(files.len(), 1, "one file, not a renamed duplicate: {files:?}");
}

#[tokio::test]
async fn upload_session_gone_then_restart_and_cancel() {
    let e = Env::start(0).await;
    let gallery = e.h.state.add_folder(GALLERY).unwrap();
    let big = Bytes::from(data(5 * 1024 * 1024, 8));
    let state = e.h.state.clone();
    let mut saved: Option<UploadSession> = None;
    let mut dropped = false;
    let job = new_child(&gallery, "gone.mp4", ConflictBehavior::Fail);
    let err =
        e.c.upload_file(&big, &job, &opts(), &mut |ev| match ev {
            UploadEvent::SessionStarted(s) => saved = Some(s.clone()),
            UploadEvent::Progress { sent, .. } if sent > 0 && !dropped => {
                dropped = true;
                state.drop_upload_sessions();
            }
            _ => {}
        })
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::UploadSessionGone), "{err:?}");
    let saved = saved.expect("session journalled");

    // Resuming a session that is gone starts a new one from byte 0, and completes.
    let seq = e.seq();
    let resumed_job = UploadJob {
        resume_from: Some(saved.clone()),
        ..job.clone()
    };
    let item = e.c.upload_file(&big, &resumed_job, &opts(), &mut |_| {}).await.unwrap();
    assert_eq!(item.quick_xor_hash(), Some(QuickXorHash::of(&big).as_str()));
    let log = e.log_since(seq);
    assert_eq!(log[0].method, "GET", "asked the saved session first");
    assert_eq!(log[0].status, 404);
    assert_eq!(log.iter().filter(|r| r.path.contains("createUploadSession")).count(), 1);

    // A live session can be resumed where it stopped.
    let target = UploadTarget::NewChild {
        parent_id: gallery.clone(),
        name: "resume.mp4".into(),
    };
    let s =
        e.c.create_upload_session(&target, big.len() as u64, None, ConflictBehavior::Fail)
            .await
            .unwrap();
    let url = s.upload_url.clone().unwrap();
    let first =
        e.c.upload_fragment(&url, 0, big.len() as u64, big.slice(..FRAGMENT_ALIGN as usize))
            .await
            .unwrap();
    let FragmentOutcome::Accepted(status) = first else {
        panic!("first fragment completes nothing")
    };
    assert_eq!(status.next_expected_offset(), Some(FRAGMENT_ALIGN));
    // Sending received bytes again is 416.
    let err =
        e.c.upload_fragment(&url, 0, big.len() as u64, big.slice(..FRAGMENT_ALIGN as usize))
            .await
            .unwrap_err();
    assert!(matches!(err, GraphError::RangeNotSatisfiable { .. }), "{err:?}");
    let seq = e.seq();
    let job2 = UploadJob {
        target: target.clone(),
        resume_from: Some(s.clone()),
        ..new_child(&gallery, "resume.mp4", ConflictBehavior::Fail)
    };
    let item = e.c.upload_file(&big, &job2, &opts(), &mut |_| {}).await.unwrap();
    assert_eq!(item.quick_xor_hash(), Some(QuickXorHash::of(&big).as_str()));
    let first_put = e
        .log_since(seq)
        .into_iter()
        .find(|r| r.method == "PUT")
        .and_then(|r| r.range)
        .unwrap();
    assert!(
        first_put.starts_with(&format!("bytes {FRAGMENT_ALIGN}-")),
        "{first_put}"
    );

    // Cancel: DELETE → the session is gone; cancelling again is fine.
    let s =
        e.c.create_upload_session(
            &UploadTarget::NewChild {
                parent_id: gallery.clone(),
                name: "cancel.mp4".into(),
            },
            1_000_000,
            None,
            ConflictBehavior::Fail,
        )
        .await
        .unwrap();
    let url = s.upload_url.unwrap();
    assert!(e.c.upload_status(&url).await.unwrap().next_expected_offset() == Some(0));
    e.c.cancel_upload(&url).await.unwrap();
    let err = e.c.upload_status(&url).await.unwrap_err();
    assert!(matches!(err, GraphError::UploadSessionGone), "{err:?}");
    e.c.cancel_upload(&url).await.unwrap();
    assert!(e.c.child_by_name(&gallery, "cancel.mp4").await.unwrap().is_none());
}

#[tokio::test]
async fn conflict_behaviour_fail_rename_replace() {
    let e = Env::start(0).await;
    let gallery = e.h.state.add_folder(GALLERY).unwrap();
    let first =
        e.c.upload_small(&gallery, "dup.jpg", Bytes::from_static(b"one"), ConflictBehavior::Fail)
            .await
            .unwrap();

    // fail: 409 nameAlreadyExists, also for a case-only difference
    for name in ["dup.jpg", "DUP.JPG"] {
        let err =
            e.c.upload_small(&gallery, name, Bytes::from_static(b"two"), ConflictBehavior::Fail)
                .await
                .unwrap_err();
        assert!(matches!(err, GraphError::Conflict { .. }), "{err:?}");
        assert_eq!(err.error_code(), Some("nameAlreadyExists"));
    }
    let err =
        e.c.create_upload_session(
            &UploadTarget::NewChild {
                parent_id: gallery.clone(),
                name: "dup.jpg".into(),
            },
            5_000_000,
            None,
            ConflictBehavior::Fail,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::Conflict { .. }), "session with fail: {err:?}");

    // rename: a new item beside the old one
    let renamed =
        e.c.upload_small(
            &gallery,
            "dup.jpg",
            Bytes::from_static(b"three"),
            ConflictBehavior::Rename,
        )
        .await
        .unwrap();
    assert_ne!(renamed.id, first.id);
    let new_name = renamed.name.clone().unwrap();
    assert_ne!(new_name.to_lowercase(), "dup.jpg");
    assert!(new_name.starts_with("dup") && new_name.ends_with(".jpg"), "{new_name}");

    // replace: same item, new content
    let replaced =
        e.c.upload_small(
            &gallery,
            "dup.jpg",
            Bytes::from_static(b"four!"),
            ConflictBehavior::Replace,
        )
        .await
        .unwrap();
    assert_eq!(replaced.id, first.id);
    assert_eq!(replaced.size, Some(5));
    assert_ne!(replaced.c_tag, first.c_tag);

    // replace through a session
    let big = Bytes::from(data(5 * 1024 * 1024, 11));
    let item =
        e.c.upload_file(
            &big,
            &new_child(&gallery, "dup.jpg", ConflictBehavior::Replace),
            &opts(),
            &mut |_| {},
        )
        .await
        .unwrap();
    assert_eq!(item.id, first.id);
    assert_eq!(item.size, Some(big.len() as i64));

    // create folder: fail / rename
    e.c.create_folder(&gallery, "Album", ConflictBehavior::Fail)
        .await
        .unwrap();
    let err =
        e.c.create_folder(&gallery, "album", ConflictBehavior::Fail)
            .await
            .unwrap_err();
    assert_eq!(err.error_code(), Some("nameAlreadyExists"), "{err:?}");
    let other =
        e.c.create_folder(&gallery, "Album", ConflictBehavior::Rename)
            .await
            .unwrap();
    assert_ne!(other.name.as_deref(), Some("Album"));
    assert!(other.is_folder());
    assert_eq!(names(&e.c.children(&gallery).await.unwrap()).len(), 4);
}

// ---------------------------------------------------------------- preconditions, recycle bin, folders, moves

#[tokio::test]
async fn stale_etag_gives_412_on_patch_delete_and_put() {
    let e = Env::start(0).await;
    let gallery = e.h.state.add_folder(GALLERY).unwrap();
    let id = e.add(&format!("{GALLERY}/x.jpg"), b"first");
    let old = e.c.item(&id).await.unwrap();
    let stale = old.e_tag.clone().unwrap();
    e.h.state
        .edit_file(&id, Content::Bytes(Bytes::from_static(b"changed elsewhere")))
        .unwrap();
    let current = e.c.item(&id).await.unwrap();
    assert_ne!(current.e_tag.as_deref(), Some(stale.as_str()));

    let rename = ItemPatch {
        name: Some("y.jpg".into()),
        ..Default::default()
    };
    let err = e.c.update(&id, &rename, Some(&stale)).await.unwrap_err();
    assert!(matches!(err, GraphError::PreconditionFailed { .. }), "PATCH: {err:?}");
    assert_eq!(err.status(), Some(412));
    let err = e.c.delete(&id, Some(&stale)).await.unwrap_err();
    assert!(matches!(err, GraphError::PreconditionFailed { .. }), "DELETE: {err:?}");
    let err =
        e.c.replace_small(&id, Bytes::from_static(b"mine"), Some(&stale))
            .await
            .unwrap_err();
    assert!(matches!(err, GraphError::PreconditionFailed { .. }), "PUT: {err:?}");
    // A session replacing the item with a stale tag is refused before any byte is sent.
    let big = Bytes::from(data(5 * 1024 * 1024, 12));
    let job = UploadJob {
        target: UploadTarget::Existing { item_id: id.clone() },
        if_match: Some(stale.clone()),
        ..new_child(&gallery, "unused", ConflictBehavior::Replace)
    };
    let seq = e.seq();
    let err = e.c.upload_file(&big, &job, &opts(), &mut |_| {}).await.unwrap_err();
    assert!(matches!(err, GraphError::PreconditionFailed { .. }), "session: {err:?}");
    assert!(e.log_since(seq).iter().all(|r| r.host != "content"), "no fragment sent");
    // Nothing changed on the server.
    let after = e.c.item(&id).await.unwrap();
    assert_eq!(after.name.as_deref(), Some("x.jpg"));
    assert_eq!(after.size, Some(17));

    // With the current tags everything goes through (eTag or cTag for content).
    let put =
        e.c.replace_small(&id, Bytes::from_static(b"mine"), current.c_tag.as_deref())
            .await
            .unwrap();
    assert_eq!(put.size, Some(4));
    let renamed = e.c.update(&id, &rename, put.e_tag.as_deref()).await.unwrap();
    assert_eq!(renamed.name.as_deref(), Some("y.jpg"));
    // A session replacing the item with its current tag keeps the id and records the new mtime.
    let job = UploadJob {
        target: UploadTarget::Existing { item_id: id.clone() },
        if_match: renamed.e_tag.clone(),
        file_system_info: Some(fsi("2025-05-05T05:05:05Z")),
        ..new_child(&gallery, "unused", ConflictBehavior::Replace)
    };
    let replaced = e.c.upload_file(&big, &job, &opts(), &mut |_| {}).await.unwrap();
    assert_eq!(replaced.id, id);
    assert_eq!(replaced.name.as_deref(), Some("y.jpg"));
    assert_eq!(replaced.size, Some(big.len() as i64));
    assert_eq!(
        replaced.file_system_info.and_then(|f| f.last_modified_date_time),
        Some("2025-05-05T05:05:05Z".parse().unwrap())
    );
    e.c.delete(&id, replaced.e_tag.as_deref()).await.unwrap();
    assert!(matches!(e.c.item(&id).await.unwrap_err(), GraphError::NotFound { .. }));
}

#[tokio::test]
async fn delete_to_recycle_bin_and_restore() {
    let e = Env::start(0).await;
    let album = e.h.state.add_folder(&format!("{GALLERY}/Album")).unwrap();
    let id = e.add(&format!("{GALLERY}/Album/keep.jpg"), b"precious");
    let before = e.c.item(&id).await.unwrap();
    e.c.delete(&id, None).await.unwrap();
    let err = e.c.item(&id).await.unwrap_err();
    assert!(matches!(err, GraphError::NotFound { .. }), "{err:?}");
    assert!(e.c.children(&album).await.unwrap().is_empty());
    let bin = e.h.state.recycle_bin_dump();
    let entry = bin.iter().find(|b| b.id == id).expect("in the recycle bin");
    assert_eq!(entry.name, "keep.jpg");
    assert_eq!(entry.original_parent_id, album);
    // Deleting again: 404.
    let err = e.c.delete(&id, None).await.unwrap_err();
    assert!(matches!(err, GraphError::NotFound { .. }), "{err:?}");

    let restored = e.c.restore(&id, None, None).await.unwrap();
    assert_eq!(restored.id, id, "restore keeps the id");
    assert_eq!(restored.name.as_deref(), Some("keep.jpg"));
    assert_eq!(restored.parent_id(), Some(album.as_str()));
    assert_eq!(restored.c_tag, before.c_tag, "same content");
    assert!(e.h.state.recycle_bin_dump().iter().all(|b| b.id != id));
    let mut back = Vec::new();
    e.c.download_item(&e.c.item(&id).await.unwrap(), &mut back)
        .await
        .unwrap();
    assert_eq!(back, b"precious");

    // Restore elsewhere under a new name.
    let other = e.h.state.add_folder(&format!("{GALLERY}/Other")).unwrap();
    e.c.delete(&id, None).await.unwrap();
    let moved = e.c.restore(&id, Some(&other), Some("kept.jpg")).await.unwrap();
    assert_eq!(moved.parent_id(), Some(other.as_str()));
    assert_eq!(moved.name.as_deref(), Some("kept.jpg"));
    // Restoring a live item is refused.
    assert!(e.c.restore(&id, None, None).await.is_err());
}

#[tokio::test]
async fn create_folder_rename_and_move_keep_id_and_ctag() {
    let e = Env::start(0).await;
    let gallery = e.h.state.add_folder(GALLERY).unwrap();
    let album =
        e.c.create_folder(&gallery, "Holidays 2024 #1", ConflictBehavior::Fail)
            .await
            .unwrap();
    assert!(album.is_folder());
    assert_eq!(album.parent_id(), Some(gallery.as_str()));
    assert_eq!(e.id_of(&format!("{GALLERY}/Holidays 2024 #1")), album.id);

    let id = e.add(&format!("{GALLERY}/beach.jpg"), b"sand");
    let before = e.c.item(&id).await.unwrap();
    let renamed =
        e.c.update(
            &id,
            &ItemPatch {
                name: Some("Beach été.jpg".into()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(renamed.id, id);
    assert_eq!(renamed.c_tag, before.c_tag, "rename keeps cTag");
    assert_ne!(renamed.e_tag, before.e_tag, "rename changes eTag");

    let moved =
        e.c.update(
            &id,
            &ItemPatch {
                parent_id: Some(album.id.clone()),
                ..Default::default()
            },
            renamed.e_tag.as_deref(),
        )
        .await
        .unwrap();
    assert_eq!(moved.id, id);
    assert_eq!(moved.c_tag, before.c_tag, "move keeps cTag");
    assert_eq!(moved.parent_id(), Some(album.id.as_str()));
    assert_eq!(
        e.c.item_by_path(&format!("{GALLERY}/Holidays 2024 #1/Beach été.jpg"))
            .await
            .unwrap()
            .id,
        id
    );

    // Setting fileSystemInfo alone: mtime kept, cTag unchanged.
    let touched =
        e.c.update(
            &id,
            &ItemPatch {
                file_system_info: Some(fsi("2020-01-02T03:04:05Z")),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        touched.file_system_info.and_then(|f| f.last_modified_date_time),
        Some("2020-01-02T03:04:05Z".parse().unwrap())
    );
    assert_eq!(touched.c_tag, before.c_tag);

    // Moving onto a taken name: 409; renaming to an invalid name: 400 InvalidName.
    e.add(&format!("{GALLERY}/Beach été.jpg"), b"other");
    let err =
        e.c.update(
            &id,
            &ItemPatch {
                parent_id: Some(gallery.clone()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::Conflict { .. }), "{err:?}");
    let err =
        e.c.update(
            &id,
            &ItemPatch {
                name: Some("bad:name?.jpg".into()),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::InvalidName { .. }), "{err:?}");
    assert_eq!(err.status(), Some(400), "{err:?}");

    // Names OneDrive rejects come back as InvalidName whatever the operation (CONTRACT: EINVAL/ENAMETOOLONG).
    let long = format!("{}.jpg", "x".repeat(252));
    for name in [
        "trailing.",
        " leading.jpg",
        "CON.jpg",
        "a|b.jpg",
        "~$lock.jpg",
        long.as_str(),
    ] {
        let err =
            e.c.upload_small(&gallery, name, Bytes::from_static(b"x"), ConflictBehavior::Fail)
                .await
                .unwrap_err();
        assert!(
            matches!(err, GraphError::InvalidName { .. }),
            "upload {name:?}: {err:?}"
        );
        let err =
            e.c.create_folder(&gallery, name, ConflictBehavior::Fail)
                .await
                .unwrap_err();
        assert!(
            matches!(err, GraphError::InvalidName { .. }),
            "folder {name:?}: {err:?}"
        );
    }
    let err =
        e.c.upload_small(&gallery, &long, Bytes::from_static(b"x"), ConflictBehavior::Fail)
            .await
            .unwrap_err();
    assert_eq!(err.error_code(), Some("pathIsTooLong"), "{err:?}");
}

#[tokio::test]
async fn quota_exceeded_gives_507_quota_exceeded() {
    let e = Env::start(0).await;
    let gallery = e.h.state.add_folder(GALLERY).unwrap();
    e.h.state.set_quota(Some(1_000_000), Some(999_000));
    let q = e.c.drive().await.unwrap().quota.unwrap();
    assert_eq!(q.remaining, Some(1000));
    assert_eq!(q.state.as_deref(), Some("critical"), "<1% left");

    let err =
        e.c.upload_small(&gallery, "big.jpg", Bytes::from(data(5000, 1)), ConflictBehavior::Fail)
            .await
            .unwrap_err();
    assert!(matches!(err, GraphError::QuotaExceeded { .. }), "{err:?}");
    assert_eq!(err.status(), Some(507));
    assert_eq!(err.error_code(), Some("quotaLimitReached"));
    // A session announcing a fileSize over quota is refused up front.
    let err =
        e.c.create_upload_session(
            &UploadTarget::NewChild {
                parent_id: gallery.clone(),
                name: "huge.mp4".into(),
            },
            50_000_000,
            None,
            ConflictBehavior::Fail,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::QuotaExceeded { .. }), "{err:?}");
    // Small writes still fit.
    e.c.upload_small(&gallery, "tiny.jpg", Bytes::from_static(b"ok"), ConflictBehavior::Fail)
        .await
        .unwrap();

    e.h.state.set_quota(None, Some(1_200_000));
    let q = e.c.drive().await.unwrap().quota.unwrap();
    assert_eq!(q.state.as_deref(), Some("exceeded"));
    assert!(q.is_exceeded());
    assert!(q.remaining.unwrap() < 0, "remaining can be negative");
    let err =
        e.c.upload_small(
            &gallery,
            "one more.jpg",
            Bytes::from_static(b"x"),
            ConflictBehavior::Fail,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::QuotaExceeded { .. }), "{err:?}");
    // Reads keep working.
    e.c.children(&gallery).await.unwrap();
}

// ---------------------------------------------------------------- throttling and retries

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_on_one_request_pauses_a_concurrent_request_too() {
    let e = Env::start(0).await;
    let id = e.add(&format!("{GALLERY}/a.jpg"), b"a");
    let c = e.c.clone();
    e.h.state.faults.add_rule(
        FaultRule::new(FaultKind::Status {
            status: 429,
            retry_after_secs: Some(2),
        })
        .host(FaultHost::Api)
        .path_contains("/items/")
        .count(1),
    );
    let seq = e.seq();
    let t0 = Instant::now();
    let ca = c.clone();
    let a = tokio::spawn(async move {
        let r = ca.item(&id).await;
        (r, t0.elapsed())
    });
    // Wait until the client has seen the 429 and closed its gate, then start an unrelated request.
    while c.throttled_until().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(5), "the 429 never arrived");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let b_start_ms = emulator_clock_ms();
    let tb = Instant::now();
    let b = c.drive().await;
    let b_elapsed = tb.elapsed();
    let (a_result, a_elapsed) = a.await.unwrap();
    a_result.expect("the throttled request succeeds after the pause");
    b.expect("the concurrent request succeeds after the pause");

    let windows = e.h.state.faults.throttle_windows();
    assert_eq!(windows.len(), 1, "{windows:?}");
    let w = &windows[0];
    assert_eq!(w.end_ms - w.start_ms, 2000);
    assert!(
        a_elapsed >= Duration::from_millis(2000),
        "throttled request paused {a_elapsed:?}"
    );
    assert!(
        a_elapsed < Duration::from_millis(5000),
        "but not much longer: {a_elapsed:?}"
    );
    let b_must_wait = Duration::from_millis(w.end_ms.saturating_sub(b_start_ms));
    assert!(
        b_must_wait >= Duration::from_millis(1000),
        "B started inside the window"
    );
    assert!(
        b_elapsed + Duration::from_millis(5) >= b_must_wait,
        "concurrent request paused {b_elapsed:?}, needed {b_must_wait:?}"
    );
    assert!(b_elapsed < Duration::from_millis(5000), "{b_elapsed:?}");

    // The emulator saw nothing from this client inside the window.
    let log = e.log_since(seq);
    let inside: Vec<&LoggedRequest> = log
        .iter()
        .filter(|r| r.host == "api" && r.status != 429 && r.at_ms >= w.start_ms && r.at_ms < w.end_ms)
        .collect();
    assert!(inside.is_empty(), "requests inside the throttle window: {inside:?}");
    assert_eq!(e.h.state.faults.report().requests_during_throttle, 0);
    let after: Vec<&LoggedRequest> = log.iter().filter(|r| r.status == 200).collect();
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|r| r.at_ms >= w.end_ms), "{after:?}");
    assert!(c.throttled_until().is_none(), "the gate opened again");
}

#[tokio::test]
async fn service_unavailable_then_success_and_server_errors_are_retried() {
    let e = Env::start(0).await;
    // 503 with Retry-After 1: one pause of at least a second, then success.
    e.h.state.faults.add_rule(
        FaultRule::new(FaultKind::Status {
            status: 503,
            retry_after_secs: Some(1),
        })
        .host(FaultHost::Api)
        .count(1),
    );
    let seq = e.seq();
    let t = Instant::now();
    e.c.drive().await.expect("success after the 503");
    assert!(t.elapsed() >= Duration::from_millis(1000), "{:?}", t.elapsed());
    let statuses: Vec<u16> = e.log_since(seq).iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![503, 200]);

    // 500 and 502 (no Retry-After): retried with backoff.
    for status in [500, 502] {
        e.h.state.faults.add_rule(
            FaultRule::new(FaultKind::Status {
                status,
                retry_after_secs: None,
            })
            .host(FaultHost::Api)
            .count(1),
        );
    }
    let seq = e.seq();
    e.c.drive().await.expect("success after server errors");
    let statuses: Vec<u16> = e.log_since(seq).iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![500, 502, 200]);

    // 509 (bandwidth limit) without Retry-After: treated as throttling with the policy's default pause.
    e.h.state.faults.add_rule(
        FaultRule::new(FaultKind::Status {
            status: 509,
            retry_after_secs: None,
        })
        .host(FaultHost::Api)
        .count(1),
    );
    let seq = e.seq();
    let t = Instant::now();
    e.c.drive().await.expect("success after the 509");
    assert!(
        t.elapsed() >= Duration::from_millis(100),
        "default throttle pause: {:?}",
        t.elapsed()
    );
    let statuses: Vec<u16> = e.log_since(seq).iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![509, 200]);

    // A 429 from the download host closes the gate for Graph requests too (pause *all* requests).
    let id = e.add(&format!("{GALLERY}/t.jpg"), b"throttled download");
    let url = e.c.download_url(&id).await.unwrap();
    e.h.state.faults.add_rule(
        FaultRule::new(FaultKind::Status {
            status: 429,
            retry_after_secs: Some(1),
        })
        .host(FaultHost::Content)
        .count(1),
    );
    let c = e.c.clone();
    let download = tokio::spawn(async move { collect(c.get_range(&url, 0, 5).await?).await });
    while e.c.throttled_until().is_none() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let t = Instant::now();
    e.c.drive().await.unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(700),
        "Graph call waited: {:?}",
        t.elapsed()
    );
    assert_eq!(download.await.unwrap().unwrap(), b"throt");

    // More server errors than the policy allows: the error surfaces, typed.
    e.h.state.faults.add_rule(
        FaultRule::new(FaultKind::Status {
            status: 500,
            retry_after_secs: None,
        })
        .host(FaultHost::Api)
        .count(10),
    );
    let err = e.c.drive().await.unwrap_err();
    assert_eq!(err.status(), Some(500), "{err:?}");
    assert!(err.is_retryable());
    e.h.state.faults.clear_rules();

    // A Retry-After longer than the policy accepts fails at once with Throttled and closes the gate.
    e.h.state.faults.add_rule(
        FaultRule::new(FaultKind::Status {
            status: 429,
            retry_after_secs: Some(60),
        })
        .host(FaultHost::Api)
        .count(1),
    );
    let t = Instant::now();
    let err = e.c.drive().await.unwrap_err();
    assert!(matches!(err, GraphError::Throttled { until: Some(_) }), "{err:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
    let until = e.c.throttled_until().expect("gate closed");
    let ahead = (until - chrono::Utc::now()).num_seconds();
    assert!((55..=60).contains(&ahead), "{ahead}");
    let err = e.c.drive().await.unwrap_err();
    assert!(
        matches!(err, GraphError::Throttled { .. }),
        "later requests fail fast: {err:?}"
    );
}

// ---------------------------------------------------------------- tokens through the identity platform

struct SignedIn {
    _dir: tempfile::TempDir,
    store: TokenStore,
    source: Arc<RefreshingTokenSource>,
}

/// Device-code sign-in against the emulator's identity endpoints, the code approved by "the user".
async fn sign_in(e: &Env) -> SignedIn {
    let identity = e.h.state.identity.clone();
    identity.set_poll_interval(1);
    let ep = endpoints(&e.h);
    let http = galleryfs::remote::auth::http_client().unwrap();
    let approver = identity.clone();
    let tokens = sign_in_with_device_code(&ep, &http, move |prompt| {
        assert!(approver.approve_user_code(&prompt.user_code), "code pending");
    })
    .await
    .expect("device-code sign-in");
    assert!(tokens.refresh_token.is_some(), "offline_access gives a refresh token");
    let dir = tempfile::tempdir().unwrap();
    let store = TokenStore::new(dir.path().join("tokens.json"));
    store.save(&tokens).unwrap();
    let source = Arc::new(RefreshingTokenSource::new("work", &ep, store.clone(), http).unwrap());
    SignedIn {
        _dir: dir,
        store,
        source,
    }
}

fn token_posts(log: &[LoggedRequest]) -> usize {
    log.iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/oauth2/v2.0/token"))
        .count()
}

#[tokio::test]
async fn access_token_expiry_mid_run_means_one_refresh_then_success() {
    let e = Env::start(2).await;
    let s = sign_in(&e).await;
    let c = client_with(&e.h, s.source.clone(), fast_policy());
    c.drive().await.unwrap();
    let first = s.store.load().unwrap().unwrap();

    e.h.state.identity.expire_access_tokens();
    let seq = e.seq();
    let gallery = c.item_by_path(GALLERY).await.expect("works after a refresh");
    assert!(gallery.is_folder());
    let log = e.log_since(seq);
    let seen: Vec<(String, u16)> = log.iter().map(|r| (r.method.clone(), r.status)).collect();
    assert_eq!(token_posts(&log), 1, "{seen:?}");
    assert_eq!(log[0].status, 401, "the expired token was refused: {seen:?}");
    assert_eq!(log.last().unwrap().status, 200);
    let second = s.store.load().unwrap().unwrap();
    assert_ne!(second.access_token, first.access_token, "the new token was persisted");
    assert!(second.refresh_token.is_some());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.store.path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // Many requests in flight when the token expires: still one refresh.
    e.h.state.identity.expire_access_tokens();
    let seq = e.seq();
    let results = futures::future::join_all((0..6).map(|_| c.children(&gallery.id))).await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(token_posts(&e.log_since(seq)), 1, "concurrent 401s share one refresh");
}

#[tokio::test]
async fn revoked_refresh_token_says_sign_in_again() {
    let e = Env::start(0).await;
    let s = sign_in(&e).await;
    let c = client_with(&e.h, s.source.clone(), fast_policy());
    c.drive().await.unwrap();
    e.h.state.identity.revoke_refresh_tokens();
    e.h.state.identity.expire_access_tokens();
    let err = c.drive().await.unwrap_err();
    let GraphError::Auth(auth) = &err else {
        panic!("expected an auth error, got {err:?}");
    };
    assert!(matches!(auth, AuthError::SignInAgain { .. }), "{auth:?}");
    assert_eq!(
        auth.to_string(),
        "sign in again: galleryfs login --account work (the identity platform refused the saved sign-in: \
         invalid_grant AADSTS50173)"
    );
    assert!(!auth.is_transient());
    // The tokens on file are kept (the user may fix things elsewhere); no retry loop hammered the endpoint.
    assert!(s.store.load().unwrap().is_some());
    assert!(token_posts(&e.h.state.log.entries()) <= 3);
}

#[tokio::test]
async fn hung_requests_time_out_and_latency_is_waited_out() {
    let e = Env::start(0).await;
    let id = e.add(&format!("{GALLERY}/h.jpg"), &data(10_000, 1));
    let policy = RetryPolicy {
        max_attempts: 2,
        request_timeout: Duration::from_millis(400),
        idle_timeout: Duration::from_millis(400),
        ..fast_policy()
    };
    let c = client_with(&e.h, Arc::new(StaticToken(e.h.test_token())), policy);
    let url = c.download_url(&id).await.unwrap();

    // A metadata call that never gets an answer: the whole-request timeout, retried once, then a typed error.
    let rule =
        e.h.state
            .faults
            .add_rule(FaultRule::new(FaultKind::Hang).host(FaultHost::Api));
    let t = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(10), c.drive())
        .await
        .expect("the client gives up by itself")
        .unwrap_err();
    assert!(matches!(err, GraphError::Network(_)), "{err:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "two attempts of 400 ms: {:?}",
        t.elapsed()
    );
    e.h.state.faults.remove_rule(rule);

    // A download host that never answers: the idle timeout ends it too.
    let rule =
        e.h.state
            .faults
            .add_rule(FaultRule::new(FaultKind::Hang).host(FaultHost::Content));
    let err = tokio::time::timeout(Duration::from_secs(10), async {
        collect(c.get_range(&url, 0, 100).await?).await
    })
    .await
    .expect("the download gives up by itself")
    .unwrap_err();
    assert!(matches!(err, GraphError::Network(_)), "{err:?}");
    e.h.state.faults.remove_rule(rule);
    assert_eq!(e.h.state.faults.counts().get("hang"), Some(&4));

    // Latency below the timeouts is simply waited out.
    e.h.state.faults.add_rule(
        FaultRule::new(FaultKind::Latency { ms: 250 })
            .host(FaultHost::Api)
            .count(1),
    );
    let t = Instant::now();
    c.drive().await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn listing_delta_and_download_survive_random_server_errors() {
    let e = Env::start(0).await;
    for i in 0..201 {
        e.add(&format!("{GALLERY}/DCIM/Camera/C{i:03}.jpg"), &[i as u8; 3]);
    }
    let bytes = data(300_000, 7);
    let id = e.add(&format!("{GALLERY}/DCIM/Camera/movie.mp4"), &bytes);
    let camera = e.id_of(&format!("{GALLERY}/DCIM/Camera"));
    e.h.state.faults.set_seed(7);
    for (status, host) in [(500, FaultHost::Api), (503, FaultHost::Api), (502, FaultHost::Content)] {
        e.h.state.faults.add_rule(
            FaultRule::new(FaultKind::Status {
                status,
                retry_after_secs: Some(0),
            })
            .host(host)
            .probability(0.2),
        );
    }
    let kids =
        e.c.children_with_thumbnails(&camera, "medium")
            .await
            .expect("listing completes");
    assert_eq!(kids.len(), 202);
    let round =
        e.c.delta(DeltaStart::Full { folder_id: None })
            .await
            .expect("delta completes");
    assert_eq!(round.items.iter().filter(|i| i.is_file()).count(), 202);
    let item = e.c.item(&id).await.expect("item");
    let mut whole = Vec::new();
    e.c.download_item(&item, &mut whole).await.expect("download completes");
    assert!(whole == bytes);
    let counts = e.h.state.faults.counts();
    assert!(counts.values().sum::<u64>() >= 2, "faults were injected: {counts:?}");
}

// ---------------------------------------------------------------- ranged downloads pinned to a cTag (DriveApi)

#[tokio::test]
async fn drive_downloads_are_pinned_to_the_ctag_seen_at_open() {
    use galleryfs::remote::drive_api::{DriveApi, DriveError};
    use galleryfs::remote::graph_drive_api::GraphDrive;

    async fn read(drive: &GraphDrive, id: &str, ctag: &str, start: u64, end: u64) -> Result<Vec<u8>, DriveError> {
        let mut s = drive.download(id, ctag, start, end).await?;
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    let e = Env::start(0).await;
    let v1 = data(200_000, 1);
    let id = e.add(&format!("{GALLERY}/pinned.jpg"), &v1);
    let ctag1 = e.c.item(&id).await.unwrap().c_tag.unwrap();
    let drive = GraphDrive::new(e.c.clone());

    assert_eq!(read(&drive, &id, &ctag1, 0, 1000).await.unwrap(), &v1[..1000]);
    // Past the end: stops at the end; wholly past it: 416.
    assert_eq!(
        read(&drive, &id, &ctag1, 199_000, 250_000).await.unwrap(),
        &v1[199_000..]
    );
    let err = read(&drive, &id, &ctag1, 300_000, 300_010).await.unwrap_err();
    assert!(matches!(err, DriveError::Other { status: Some(416), .. }), "{err:?}");

    // Edited elsewhere: a read pinned to the old version still gets old bytes while its URL lives...
    let v2 = data(150_000, 2);
    e.h.state
        .edit_file(&id, Content::Bytes(Bytes::from(v2.clone())))
        .unwrap();
    assert_eq!(read(&drive, &id, &ctag1, 1000, 2000).await.unwrap(), &v1[1000..2000]);
    // ...and once it expires, the drive notices the version changed instead of mixing versions.
    e.h.state.expire_download_urls();
    let err = read(&drive, &id, &ctag1, 2000, 3000).await.unwrap_err();
    assert!(matches!(err, DriveError::PreconditionFailed(_)), "{err:?}");
    let ctag2 = e.c.item(&id).await.unwrap().c_tag.unwrap();
    assert_ne!(ctag1, ctag2);
    assert_eq!(read(&drive, &id, &ctag2, 0, 150_000).await.unwrap(), v2);

    // Offline (connection refused, server errors after retries) is retryable, not a failure of the file.
    e.h.state.faults.add_rule(
        FaultRule::new(FaultKind::Status {
            status: 503,
            retry_after_secs: Some(0),
        })
        .host(FaultHost::Api)
        .count(20),
    );
    e.h.state.expire_download_urls();
    let err = read(&drive, &id, &ctag2, 0, 10).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn identity_platform_busy_during_refresh_is_transient_and_keeps_the_tokens() {
    let e = Env::start(0).await;
    let s = sign_in(&e).await;
    let c = client_with(&e.h, s.source.clone(), fast_policy());
    c.drive().await.unwrap();
    let before = s.store.load().unwrap().unwrap();
    e.h.state.identity.expire_access_tokens();
    e.h.state.faults.add_rule(
        FaultRule::new(FaultKind::Status {
            status: 503,
            retry_after_secs: None,
        })
        .path_contains("/oauth2/v2.0/token")
        .count(1),
    );
    let err = c.drive().await.unwrap_err();
    let GraphError::Auth(auth) = &err else {
        panic!("expected an auth error, got {err:?}");
    };
    assert!(
        auth.is_transient(),
        "temporarily_unavailable is not a sign-in problem: {auth:?}"
    );
    assert_eq!(s.store.load().unwrap().unwrap(), before, "tokens kept as they were");
    // Next try: the identity platform answers again, one refresh, success.
    c.drive().await.expect("works once the identity platform is back");
    assert_ne!(s.store.load().unwrap().unwrap().access_token, before.access_token);
}

// ---------------------------------------------------------------- the driveItem model

/// `a` and `b` are the same JSON, with date-times compared as instants (`.000Z` vs `Z`).
fn same_json(path: &str, a: &serde_json::Value, b: &serde_json::Value, diffs: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                if k == "@microsoft.graph.downloadUrl" {
                    // A fresh URL per request; the parsed model must still carry one.
                    if !y.get(k).is_some_and(Value::is_string) {
                        diffs.push(format!("{path}.{k} dropped"));
                    }
                    continue;
                }
                same_json(&format!("{path}.{k}"), v, y.get(k).unwrap_or(&Value::Null), diffs);
            }
        }
        (Value::String(x), Value::String(y)) if x != y => {
            let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
            if t(x).is_none() || t(x) != t(y) {
                diffs.push(format!("{path}: sent {x:?}, understood {y:?}"));
            }
        }
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => {}
        _ if a != b => diffs.push(format!("{path}: sent {a}, understood {b}")),
        _ => {}
    }
}

#[tokio::test]
async fn every_field_the_emulator_sends_is_understood_by_the_client() {
    let e = Env::start(8).await;
    let mut checked = 0;
    let mut diffs = Vec::new();
    for entry in e.h.state.state_dump() {
        let sent = e.h.state.item_json(&entry.id).unwrap();
        let understood = serde_json::to_value(e.c.item(&entry.id).await.unwrap()).unwrap();
        same_json(&entry.path, &sent, &understood, &mut diffs);
        checked += 1;
    }
    assert!(checked >= 12, "root, folders and 8 files: {checked}");
    assert!(
        diffs.is_empty(),
        "fields lost or changed in parsing:\n{}",
        diffs.join("\n")
    );
    // The seed has photos and at least one video with their facets.
    let files = e.seeded_files();
    let mut photos = 0;
    let mut videos = 0;
    for f in &files {
        let item = e.c.item(&f.id).await.unwrap();
        if let Some(p) = &item.photo {
            assert!(p.taken_date_time.is_some(), "{}", f.path);
            photos += 1;
        }
        if let Some(v) = &item.video {
            assert!(v.duration.unwrap_or(0) > 0 && v.width.is_some(), "{}", f.path);
            videos += 1;
        }
        assert!(item.is_media(), "{}", f.path);
    }
    assert!(photos > 0 && videos > 0, "photos {photos}, videos {videos}");

    // Delta items (including a deleted one) and children with expanded thumbnails, as sent on the wire.
    let victim = &files[0];
    let latest = e.c.delta(DeltaStart::Latest { folder_id: None }).await.unwrap();
    e.h.state.delete_item(&victim.id).unwrap();
    let http = reqwest::Client::new();
    let token = e.h.test_token();
    let camera = e.id_of(&format!("{GALLERY}/DCIM/Camera"));
    let mut pages = 0;
    let mut saw_deleted = false;
    for url in [
        latest.delta_link.clone(),
        format!("{}/me/drive/root/delta", e.h.graph_url()),
        format!(
            "{}/me/drive/items/{camera}/children?$expand=thumbnails",
            e.h.graph_url()
        ),
    ] {
        let page: serde_json::Value = http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for raw in page["value"].as_array().unwrap() {
            let item: DriveItem = serde_json::from_value(raw.clone()).unwrap();
            saw_deleted |= item.id == victim.id && item.is_deleted();
            same_json(&url, raw, &serde_json::to_value(&item).unwrap(), &mut diffs);
        }
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert!(saw_deleted, "the incremental round carried the deletion");
    assert!(
        diffs.is_empty(),
        "fields lost or changed in parsing:\n{}",
        diffs.join("\n")
    );
}
