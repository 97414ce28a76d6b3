//! The metadata store and the delta applier together: stable inodes, case-insensitive lookup, paging, delta
//! rounds in any order, hostile input, local state protection, the block map, the outbox across restarts, and a
//! property test against a reference model of the remote tree.

use chrono::{TimeZone, Utc};
use galleryfs::remote::models::{DeletedFacet, DriveItem, FileFacet, FolderFacet, Hashes, ItemReference};
use galleryfs::store::{ContentState, ItemKind, NewItem, OutboxOp, Store, ROOT_INO};
use galleryfs::sync::delta_apply::{
    apply_delta_round, apply_delta_round_with_link, apply_listing_round, listing_round, replace_all, ConflictKind,
    RejectReason, RoundKind,
};
use std::collections::BTreeMap;

const G: &str = "G!1";

fn item(id: &str, parent: &str, name: &str) -> DriveItem {
    DriveItem {
        id: id.into(),
        name: Some(name.into()),
        e_tag: Some(format!("e-{id}-{name}")),
        parent_reference: Some(ItemReference {
            id: Some(parent.into()),
            ..Default::default()
        }),
        last_modified_date_time: Some(Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()),
        ..Default::default()
    }
}

fn folder(id: &str, parent: &str, name: &str) -> DriveItem {
    DriveItem {
        folder: Some(FolderFacet {
            child_count: Some(0),
            view: None,
        }),
        c_tag: Some(format!("cf-{id}")),
        ..item(id, parent, name)
    }
}

fn file(id: &str, parent: &str, name: &str, ctag: &str) -> DriveItem {
    DriveItem {
        file: Some(FileFacet {
            mime_type: Some("image/jpeg".into()),
            hashes: Some(Hashes {
                quick_xor_hash: Some(format!("h-{ctag}")),
                ..Default::default()
            }),
            processing_metadata: None,
        }),
        c_tag: Some(ctag.into()),
        size: Some(1000),
        ..item(id, parent, name)
    }
}

/// A Personal-style delete: no cTag, no size, name kept.
fn deleted(id: &str, parent: &str) -> DriveItem {
    DriveItem {
        deleted: Some(DeletedFacet { state: None }),
        ..item(id, parent, "gone")
    }
}

/// The store as `path -> (item id, is dir)`, walked from the root by `children`.
fn tree(store: &Store) -> BTreeMap<String, (String, bool)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(ROOT_INO, String::new())];
    while let Some((ino, path)) = stack.pop() {
        for child in store.children(ino).unwrap() {
            let p = format!("{path}/{}", child.name);
            out.insert(p.clone(), (child.item_id.clone(), child.is_dir()));
            if child.is_dir() {
                stack.push((child.ino, p));
            }
        }
    }
    out
}

fn paths(store: &Store) -> Vec<String> {
    tree(store).into_keys().collect()
}

fn ino(store: &Store, id: &str) -> u64 {
    store
        .get_by_item_id(id)
        .unwrap()
        .unwrap_or_else(|| panic!("{id} not in store"))
        .ino
}

/// Album with two photos and a sub-album with one.
fn seed(store: &Store) {
    replace_all(
        store,
        G,
        &[
            folder(G, "PICS", "Samsung Gallery"),
            folder("D1", G, "Camera"),
            file("F1", "D1", "IMG_1.jpg", "c1"),
            file("F2", "D1", "IMG_2.jpg", "c1"),
            folder("D2", "D1", "Burst"),
            file("F3", "D2", "IMG_3.jpg", "c1"),
            folder("D3", G, "Screenshots"),
        ],
    )
    .unwrap();
}

#[test]
fn inodes_are_stable_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.sqlite");
    let before;
    {
        let store = Store::open(&db).unwrap();
        seed(&store);
        store.set_delta_link("https://graph.example/delta?token=abc").unwrap();
        before = tree(&store)
            .into_values()
            .map(|(id, _)| (id.clone(), ino(&store, &id)))
            .collect::<BTreeMap<_, _>>();
        assert_eq!(store.item_count().unwrap(), 6);
        assert_eq!(store.media_count().unwrap(), 3);
        store.remove(ino(&store, "F2")).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the store holds secrets: owner-only");
    let store = Store::open(&db).unwrap();
    for (id, expected) in &before {
        if id != "F2" {
            assert_eq!(ino(&store, id), *expected, "{id} changed inode across reopen");
        }
    }
    assert_eq!(store.root().unwrap().item_id, G);
    assert_eq!(store.meta("gallery_item_id").unwrap().as_deref(), Some(G));
    assert_eq!(
        store.delta_link().unwrap().as_deref(),
        Some("https://graph.example/delta?token=abc")
    );
    apply_delta_round(&store, G, &[file("F9", "D1", "new.jpg", "c1")]).unwrap();
    let max_before = before.values().max().copied().unwrap();
    assert!(ino(&store, "F9") > max_before, "inodes are never reused");
}

#[test]
fn lookup_is_case_insensitive_and_keeps_case() {
    let store = Store::open_in_memory().unwrap();
    seed(&store);
    let d1 = ino(&store, "D1");
    let hit = store.lookup(d1, "img_1.JPG").unwrap().unwrap();
    assert_eq!(hit.name, "IMG_1.jpg");
    assert_eq!(store.lookup(ROOT_INO, "CAMERA").unwrap().unwrap().ino, d1);
    assert!(store.lookup(d1, "IMG_9.jpg").unwrap().is_none());
}

#[test]
fn children_page_through_a_large_folder() {
    let store = Store::open_in_memory().unwrap();
    let items: Vec<DriveItem> = (0..1500)
        .map(|i| file(&format!("F{i}"), G, &format!("IMG_{i:05}.jpg"), "c"))
        .collect();
    replace_all(&store, G, &items).unwrap();
    let all: Vec<String> = store.children(ROOT_INO).unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(all.len(), 1500);
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "children come sorted by name");
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.children_after(ROOT_INO, after.as_deref(), 128).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 128);
        after = Some(page.last().unwrap().name_key.clone());
        paged.extend(page.into_iter().map(|r| r.name));
    }
    assert_eq!(paged, all);
    let at: Vec<String> = store
        .children_at(ROOT_INO, 1000, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(at, all[1000..1010]);
    assert_eq!(store.child_count(ROOT_INO).unwrap(), 1500);
}

#[test]
fn a_mixed_round_applies_the_same_in_any_order() {
    let round = vec![
        file("F4", "D3", "Screenshot_1.png", "c1"), // create
        file("F1", "D1", "Renamed.jpg", "c1"),      // rename
        file("F2", "D3", "IMG_2.jpg", "c1"),        // move
        deleted("D2", "D1"),                        // deleted folder ...
        deleted("F3", "D2"),                        // ... with its child
        folder("D4", "D3", "New album"),            // create folder ...
        file("F5", "D4", "inside.jpg", "c1"),       // ... with a child
        folder("D1", G, "Camera"),                  // unchanged ancestor
    ];
    let expected = vec![
        "/Camera",
        "/Camera/Renamed.jpg",
        "/Screenshots",
        "/Screenshots/IMG_2.jpg",
        "/Screenshots/New album",
        "/Screenshots/New album/inside.jpg",
        "/Screenshots/Screenshot_1.png",
    ];
    let mut orders: Vec<Vec<DriveItem>> = vec![round.clone(), round.iter().rev().cloned().collect()];
    for k in 1..round.len() {
        let mut r = round.clone();
        r.rotate_left(k);
        orders.push(r);
    }
    for order in orders {
        let store = Store::open_in_memory().unwrap();
        seed(&store);
        let (f1, f2, d2, f3, d1, d3) = (
            ino(&store, "F1"),
            ino(&store, "F2"),
            ino(&store, "D2"),
            ino(&store, "F3"),
            ino(&store, "D1"),
            ino(&store, "D3"),
        );
        let changes = apply_delta_round(&store, G, &order).unwrap();
        assert_eq!(paths(&store), expected);
        assert_eq!(ino(&store, "F1"), f1, "rename keeps the inode");
        assert_eq!(ino(&store, "F2"), f2, "move keeps the inode");
        let mut removed = changes.removed.clone();
        removed.sort();
        assert_eq!(removed, vec![d2, f3]);
        assert!(changes.parents_changed.contains(&d1) && changes.parents_changed.contains(&d3));
        assert!(changes.stale_entries.contains(&(d1, "IMG_1.jpg".to_string())));
        assert_eq!(changes.inserted.len(), 3);
        assert_eq!(changes.needs_listing, vec![ino(&store, "D4")]);
        assert!(changes.content_changed.is_empty());
    }
}

#[test]
fn last_occurrence_wins() {
    let store = Store::open_in_memory().unwrap();
    seed(&store);
    apply_delta_round(
        &store,
        G,
        &[
            file("F1", "D1", "first.jpg", "c2"),
            deleted("F2", "D1"),
            file("F1", "D3", "final.jpg", "c3"),
            file("F2", "D1", "IMG_2.jpg", "c1"), // re-created after the delete? no: last says it exists
            file("F6", "D1", "temp.jpg", "c1"),
            deleted("F6", "D1"),
        ],
    )
    .unwrap();
    let f1 = store.get_by_item_id("F1").unwrap().unwrap();
    assert_eq!(f1.name, "final.jpg");
    assert_eq!(f1.ctag.as_deref(), Some("c3"));
    assert_eq!(f1.parent_ino, Some(ino(&store, "D3")));
    assert!(store.get_by_item_id("F2").unwrap().is_some());
    assert!(store.get_by_item_id("F6").unwrap().is_none());
}

#[test]
fn a_root_delta_is_filtered_to_the_gallery() {
    let store = Store::open_in_memory().unwrap();
    seed(&store);
    let changes = apply_delta_round(
        &store,
        G,
        &[
            folder("ROOT", "", "root"),
            folder("PICS", "ROOT", "Pictures"),
            folder(G, "PICS", "Samsung Gallery"),
            folder("DOCS", "ROOT", "Documents"),
            file("X1", "DOCS", "report.pdf", "c1"),
            file("X2", "UNKNOWN", "orphan.jpg", "c1"),
            file("F7", "D1", "IMG_7.jpg", "c1"),
        ],
    )
    .unwrap();
    assert!(store.get_by_item_id("X1").unwrap().is_none());
    assert!(store.get_by_item_id("DOCS").unwrap().is_none());
    assert!(store.get_by_item_id("X2").unwrap().is_none());
    assert!(store.lookup(ino(&store, "D1"), "IMG_7.jpg").unwrap().is_some());
    assert_eq!(changes.ignored, 5);
    assert_eq!(changes.inserted, vec![ino(&store, "F7")]);
}

#[test]
fn moving_out_removes_and_moving_in_asks_for_a_listing() {
    let store = Store::open_in_memory().unwrap();
    seed(&store);
    let d1 = ino(&store, "D1");
    let f3 = ino(&store, "F3");
    let changes = apply_delta_round(
        &store,
        G,
        &[
            folder("D2", "ELSEWHERE", "Burst"),         // moved out with its child
            folder("DX", G, "Imported"),                // moved in (children not repeated)
            file("F1", "ELSEWHERE", "IMG_1.jpg", "c1"), // moved out
        ],
    )
    .unwrap();
    assert_eq!(changes.needs_listing, vec![ino(&store, "DX")]);
    // Their new parent may lie below the folder moved in: they wait for its listing.
    let mut unplaced: Vec<&str> = changes.unplaced.iter().map(|i| i.id.as_str()).collect();
    unplaced.sort();
    assert_eq!(unplaced, vec!["D2", "F1"]);
    assert!(store.get(f3).unwrap().is_some());
    // The listing of the moved-in folder then arrives with them: they are not below it, so they go.
    let listed = apply_listing_round(
        &store,
        G,
        &listing_round(vec![file("FX", "DX", "old.jpg", "c1")], &changes.unplaced),
    )
    .unwrap();
    assert!(
        store.get(f3).unwrap().is_none(),
        "children of a folder moved out go too"
    );
    assert_eq!(
        paths(&store),
        vec![
            "/Camera",
            "/Camera/IMG_2.jpg",
            "/Imported",
            "/Imported/old.jpg",
            "/Screenshots"
        ]
    );
    assert!(listed.parents_changed.contains(&d1));
    // Without folders to list, an item moved to an unknown parent goes at once.
    let changes = apply_delta_round(&store, G, &[file("F2", "ELSEWHERE", "IMG_2.jpg", "c1")]).unwrap();
    assert!(changes.unplaced.is_empty());
    assert_eq!(
        paths(&store),
        vec!["/Camera", "/Imported", "/Imported/old.jpg", "/Screenshots"]
    );
}

/// An album moved into a folder that itself sits in a folder moved into the gallery in the same round: delta
/// names the album and the outer folder, not the unchanged folder between them. The album keeps its inode.
#[test]
fn an_album_moved_below_a_folder_moved_in_keeps_its_inode() {
    let store = Store::open_in_memory().unwrap();
    seed(&store);
    let album = ino(&store, "D2");
    let burst_photo = ino(&store, "F3");
    let changes = apply_delta_round(&store, G, &[folder("OUT", G, "Trips"), folder("D2", "MID", "Burst")]).unwrap();
    assert_eq!(changes.needs_listing, vec![ino(&store, "OUT")]);
    apply_listing_round(
        &store,
        G,
        &listing_round(
            vec![folder("MID", "OUT", "2019"), folder("D2", "MID", "Burst")],
            &changes.unplaced,
        ),
    )
    .unwrap();
    assert_eq!(ino(&store, "D2"), album, "the album kept its inode");
    assert_eq!(ino(&store, "F3"), burst_photo, "its photo kept its inode");
    assert!(
        paths(&store).contains(&"/Trips/2019/Burst".to_string()),
        "{:?}",
        paths(&store)
    );
}

#[test]
fn hostile_names_are_rejected_or_suffixed() {
    let store = Store::open_in_memory().unwrap();
    seed(&store);
    let long = "x".repeat(256);
    let changes = apply_delta_round(
        &store,
        G,
        &[
            file("H1", "D1", "../../etc/passwd", "c"),
            file("H2", "D1", "..", "c"),
            file("H3", "D1", "", "c"),
            file("H4", "D1", "a\0b", "c"),
            file("H5", "D1", &long, "c"),
            folder("H6", "D1", "."),
            file("H7", "H6", "child.jpg", "c"),
            file("H8", "D1", "img_1.JPG", "c"),     // case clash with F1's IMG_1.jpg
            file("F2", "D1", "bad/name.jpg", "c1"), // existing item renamed to a hostile name
        ],
    )
    .unwrap();
    let reasons: BTreeMap<String, RejectReason> =
        changes.rejected.iter().map(|r| (r.item_id.clone(), r.reason)).collect();
    assert_eq!(reasons["H1"], RejectReason::ContainsSlash);
    assert_eq!(reasons["H2"], RejectReason::DotName);
    assert_eq!(reasons["H3"], RejectReason::EmptyName);
    assert_eq!(reasons["H4"], RejectReason::ContainsNul);
    assert_eq!(reasons["H5"], RejectReason::NameTooLong);
    assert_eq!(reasons["H6"], RejectReason::DotName);
    assert_eq!(reasons["H7"], RejectReason::ParentRejected);
    assert_eq!(reasons["F2"], RejectReason::ContainsSlash);
    assert_eq!(changes.rejected.len(), 8);
    for id in ["H1", "H2", "H3", "H4", "H5", "H6", "H7", "F2"] {
        assert!(
            store.get_by_item_id(id).unwrap().is_none(),
            "{id} must not be in the store"
        );
    }
    let d1 = ino(&store, "D1");
    let names: Vec<String> = store.children(d1).unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, vec!["Burst", "img_1 (2).JPG", "IMG_1.jpg"]);
    assert_eq!(changes.renamed_for_clash, vec![ino(&store, "H8")]);
    // Every row is still reachable from the root: nothing escaped the tree.
    assert_eq!(tree(&store).len() as u64, store.item_count().unwrap());
}

#[test]
fn a_swap_of_names_in_one_round_works() {
    let store = Store::open_in_memory().unwrap();
    seed(&store);
    let (f1, f2) = (ino(&store, "F1"), ino(&store, "F2"));
    apply_delta_round(
        &store,
        G,
        &[file("F1", "D1", "IMG_2.jpg", "c1"), file("F2", "D1", "IMG_1.jpg", "c1")],
    )
    .unwrap();
    let d1 = ino(&store, "D1");
    assert_eq!(store.lookup(d1, "IMG_1.jpg").unwrap().unwrap().ino, f2);
    assert_eq!(store.lookup(d1, "IMG_2.jpg").unwrap().unwrap().ino, f1);
    // A delete and a re-create under the same name in one round.
    apply_delta_round(&store, G, &[file("F8", "D1", "IMG_1.jpg", "c1"), deleted("F2", "D1")]).unwrap();
    assert_eq!(store.lookup(d1, "IMG_1.jpg").unwrap().unwrap().item_id, "F8");
}

#[test]
fn local_state_is_never_overwritten() {
    let store = Store::open_in_memory().unwrap();
    seed(&store);
    let (f1, f2, f3, d2) = (
        ino(&store, "F1"),
        ino(&store, "F2"),
        ino(&store, "F3"),
        ino(&store, "D2"),
    );
    // F1 and F3 edited locally; a new local-only file in Burst.
    store.set_content_state(f1, ContentState::Dirty).unwrap();
    store.update_local_content(f1, 42, 1_700_000_000).unwrap();
    store.set_content_state(f3, ContentState::Dirty).unwrap();
    let local = store
        .insert(&NewItem::local(d2, "local.jpg", ItemKind::File, 1_700_000_000))
        .unwrap();
    // F2 cached: its content changes remotely.
    store.mark_present(f2, "c1", 0, 1000).unwrap();
    let changes = apply_delta_round(
        &store,
        G,
        &[
            file("F1", "D1", "IMG_1 renamed.jpg", "c2"),
            file("F2", "D1", "IMG_2.jpg", "c2"),
            deleted("D2", "D1"),
            deleted("F3", "D2"),
        ],
    )
    .unwrap();
    let row = store.get(f1).unwrap().unwrap();
    assert_eq!(row.name, "IMG_1 renamed.jpg", "metadata changes still apply");
    assert_eq!(
        (row.size, row.mtime),
        (42, 1_700_000_000),
        "local content attributes kept"
    );
    assert_eq!(row.ctag.as_deref(), Some("c1"));
    assert_eq!(
        row.base_ctag.as_deref(),
        Some("c1"),
        "the baseline stays at the last agreed version"
    );
    assert!(row.is_dirty());
    assert!(changes
        .conflicts
        .iter()
        .any(|c| c.ino == f1 && c.kind == ConflictKind::RemoteContentChanged));
    // F2 was not dirty: its cache is invalidated.
    assert_eq!(changes.content_changed, vec![f2]);
    assert_eq!(store.present_bytes(f2).unwrap(), 0);
    assert_eq!(store.get(f2).unwrap().unwrap().content_state, ContentState::Cloud);
    // The deleted folder stays with just the local rows.
    assert!(store.get(d2).unwrap().is_some());
    assert!(store.get(f3).unwrap().is_some());
    assert!(store.get(local).unwrap().is_some());
    assert!(changes
        .conflicts
        .iter()
        .any(|c| c.ino == f3 && c.kind == ConflictKind::RemoteRemoved));
    assert!(changes
        .conflicts
        .iter()
        .any(|c| c.ino == local && c.kind == ConflictKind::RemoteRemoved));
    assert!(store.get(d2).unwrap().unwrap().remote_removed && store.get(f3).unwrap().unwrap().remote_removed);
    assert!(
        !store.get(local).unwrap().unwrap().remote_removed,
        "local-only rows were never remote"
    );
    // Restored on OneDrive (same id): its listing is needed again.
    let back = apply_delta_round(&store, G, &[folder("D2", "D1", "Burst")]).unwrap();
    assert_eq!(back.needs_listing, vec![d2]);
    assert!(!store.get(d2).unwrap().unwrap().remote_removed);
    apply_delta_round(&store, G, &[deleted("D2", "D1")]).unwrap();
    // A full resync keeps them too.
    replace_all(&store, G, &[folder("D1", G, "Camera")]).unwrap();
    assert!(
        store.get(local).unwrap().is_some() && store.get(f3).unwrap().is_some() && store.get(f1).unwrap().is_some()
    );
    assert!(store.get(f2).unwrap().is_none());
    assert!(
        store.get_by_item_id("D3").unwrap().is_none(),
        "unseen rows are removed by a full resync"
    );
}

#[test]
fn delta_link_commits_with_the_round() {
    let store = Store::open_in_memory().unwrap();
    seed(&store);
    apply_delta_round_with_link(
        &store,
        G,
        &[file("F9", "D1", "x.jpg", "c")],
        RoundKind::Incremental,
        "https://graph.example/delta?token=2",
    )
    .unwrap();
    assert_eq!(
        store.delta_link().unwrap().as_deref(),
        Some("https://graph.example/delta?token=2")
    );
    assert!(store.meta("last_sync").unwrap().is_some());
    assert!(store.get_by_item_id("F9").unwrap().is_some());
}

#[test]
fn the_gallery_item_updates_the_root_and_its_deletion_is_only_reported() {
    let store = Store::open_in_memory().unwrap();
    seed(&store);
    let mut g = folder(G, "PICS", "Samsung Gallery");
    g.e_tag = Some("new-etag".into());
    let changes = apply_delta_round(&store, G, &[g]).unwrap();
    assert!(changes.root_updated);
    assert_eq!(store.root().unwrap().etag.as_deref(), Some("new-etag"));
    let changes = apply_delta_round(&store, G, &[deleted(G, "PICS")]).unwrap();
    assert!(changes.gallery_deleted);
    assert_eq!(store.item_count().unwrap(), 6);
}

#[test]
fn outbox_order_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.sqlite");
    let ops = [
        OutboxOp::Mkdir {
            ino: 10,
            parent: 1,
            name: "new".into(),
        },
        OutboxOp::Upload {
            ino: 11,
            staged_path: dir.path().join("staged-11"),
            size: 5,
            mtime: 9,
        },
        OutboxOp::Move {
            ino: 12,
            item_id: "A!2".into(),
            new_parent_id: "A!3".into(),
            new_name: "b.jpg".into(),
        },
        OutboxOp::Delete {
            ino: 13,
            item_id: "A!4".into(),
        },
    ];
    let seqs: Vec<i64>;
    {
        let store = Store::open(&db).unwrap();
        seqs = ops.iter().map(|op| store.enqueue(op).unwrap()).collect();
        store
            .set_upload_session(seqs[1], "https://up.example/s?tempauth=x", None)
            .unwrap();
        store.complete(seqs[0]).unwrap();
    }
    let store = Store::open(&db).unwrap();
    let pending = store.pending().unwrap();
    assert_eq!(pending.iter().map(|e| e.op.clone()).collect::<Vec<_>>(), ops[1..]);
    assert_eq!(pending.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs[1..]);
    assert_eq!(
        pending[0].upload_url.as_deref(),
        Some("https://up.example/s?tempauth=x")
    );
    let next = store
        .enqueue(&OutboxOp::Delete {
            ino: 14,
            item_id: "A!5".into(),
        })
        .unwrap();
    assert!(
        next > *seqs.last().unwrap(),
        "sequence numbers keep increasing after a restart"
    );
    let counts = store.outbox_counts().unwrap();
    assert_eq!(
        (counts.pending, counts.uploads, counts.moves, counts.deletes),
        (4, 1, 1, 2)
    );
}

#[test]
fn readers_do_not_wait_for_a_write_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(Store::open(dir.path().join("s.sqlite")).unwrap());
    seed(&store);
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let writer_store = store.clone();
    let writer = std::thread::spawn(move || {
        writer_store
            .write(|tx| {
                tx.insert(&NewItem::local(ROOT_INO, "during.jpg", ItemKind::File, 0))?;
                started_tx.send(()).unwrap();
                done_rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
                Ok::<_, galleryfs::store::StoreError>(())
            })
            .unwrap();
    });
    started_rx.recv().unwrap();
    // The write transaction is open: a read must answer now, from the last committed state.
    let t0 = std::time::Instant::now();
    assert!(store.lookup(ROOT_INO, "during.jpg").unwrap().is_none());
    assert_eq!(store.item_count().unwrap(), 6);
    assert!(t0.elapsed() < std::time::Duration::from_secs(2));
    done_tx.send(()).unwrap();
    writer.join().unwrap();
    assert!(store.lookup(ROOT_INO, "during.jpg").unwrap().is_some());
}

// ---------------------------------------------------------------------------------------------------------------
// Property test: random remote operations on a reference model of the drive, delivered as shuffled delta rounds
// with stale duplicates, must leave the store equal to the model's gallery subtree after every round.
// ---------------------------------------------------------------------------------------------------------------

mod model {
    use super::*;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeSet;

    pub const NAMES: &[&str] = &[
        "a", "A", "b.jpg", "B.JPG", "Ç.png", "ç.png", "album", "Album", "x y.jpg",
    ];

    #[derive(Clone, Debug)]
    pub struct Node {
        pub parent: String,
        pub name: String,
        pub dir: bool,
        pub version: u32,
    }

    #[derive(Clone, Debug)]
    pub enum Op {
        Create { parent: usize, name: usize, dir: bool },
        Rename { item: usize, name: usize },
        Move { item: usize, parent: usize },
        Delete { item: usize, report_children: bool },
        Edit { item: usize },
        Repeat { item: usize },
        EndRound { seed: u64 },
        FullResync { seed: u64 },
    }

    /// The whole drive: `ROOT` > `PICS` > `G` (the gallery), and `ROOT` > `OUT` (elsewhere).
    pub struct Remote {
        pub nodes: BTreeMap<String, Node>,
        next: u32,
        /// This round's emitted states, in the order they happened.
        log: Vec<DriveItem>,
        changed: BTreeSet<String>,
        repeats: Vec<String>,
    }

    impl Remote {
        pub fn new() -> Self {
            let mut nodes = BTreeMap::new();
            let dir = |parent: &str, name: &str| Node {
                parent: parent.into(),
                name: name.into(),
                dir: true,
                version: 0,
            };
            nodes.insert("PICS".to_string(), dir("ROOT", "Pictures"));
            nodes.insert(G.to_string(), dir("PICS", "Samsung Gallery"));
            nodes.insert("OUT".to_string(), dir("ROOT", "Elsewhere"));
            Remote {
                nodes,
                next: 0,
                log: Vec::new(),
                changed: BTreeSet::new(),
                repeats: Vec::new(),
            }
        }

        fn fixed(id: &str) -> bool {
            matches!(id, "PICS" | "OUT") || id == G
        }

        fn folders(&self) -> Vec<String> {
            self.nodes
                .iter()
                .filter(|(id, n)| n.dir && id.as_str() != "PICS")
                .map(|(id, _)| id.clone())
                .collect()
        }

        fn movable(&self) -> Vec<String> {
            self.nodes.keys().filter(|id| !Self::fixed(id)).cloned().collect()
        }

        fn name_free(&self, parent: &str, name: &str, except: &str) -> bool {
            let key = name.to_lowercase();
            !self
                .nodes
                .iter()
                .any(|(id, n)| n.parent == parent && n.name.to_lowercase() == key && id != except)
        }

        pub fn is_within(&self, id: &str, ancestor: &str) -> bool {
            let mut current = Some(id.to_string());
            while let Some(c) = current {
                if c == ancestor {
                    return true;
                }
                current = self.nodes.get(&c).map(|n| n.parent.clone());
            }
            false
        }

        pub fn snapshot(&self, id: &str) -> DriveItem {
            let n = &self.nodes[id];
            if n.dir {
                folder(id, &n.parent, &n.name)
            } else {
                file(id, &n.parent, &n.name, &format!("c{}", n.version))
            }
        }

        fn touched(&mut self, id: &str) {
            self.log.push(self.snapshot(id));
            self.changed.insert(id.to_string());
        }

        fn descendants(&self, id: &str) -> Vec<String> {
            self.nodes
                .keys()
                .filter(|d| d.as_str() != id && self.is_within(d, id))
                .cloned()
                .collect()
        }

        /// Applies one operation to the model; returns a round to deliver when the op ends one.
        pub fn apply(&mut self, op: &Op) -> Option<(Vec<DriveItem>, RoundKind)> {
            let pick = |v: &Vec<String>, i: usize| (!v.is_empty()).then(|| v[i % v.len()].clone());
            match *op {
                Op::Create { parent, name, dir } => {
                    let parent = pick(&self.folders(), parent)?;
                    let name = NAMES[name % NAMES.len()];
                    if self.name_free(&parent, name, "") {
                        self.next += 1;
                        let id = format!("I{}", self.next);
                        self.nodes.insert(
                            id.clone(),
                            Node {
                                parent,
                                name: name.into(),
                                dir,
                                version: 1,
                            },
                        );
                        self.touched(&id);
                    }
                }
                Op::Rename { item, name } => {
                    let id = pick(&self.movable(), item)?;
                    let name = NAMES[name % NAMES.len()];
                    let parent = self.nodes[&id].parent.clone();
                    if self.name_free(&parent, name, &id) {
                        self.nodes.get_mut(&id).unwrap().name = name.into();
                        self.touched(&id);
                    }
                }
                Op::Move { item, parent } => {
                    let id = pick(&self.movable(), item)?;
                    let parent = pick(&self.folders(), parent)?;
                    let name = self.nodes[&id].name.clone();
                    if !self.is_within(&parent, &id) && self.name_free(&parent, &name, &id) {
                        self.nodes.get_mut(&id).unwrap().parent = parent;
                        self.touched(&id);
                    }
                }
                Op::Delete { item, report_children } => {
                    let id = pick(&self.movable(), item)?;
                    let mut gone = self.descendants(&id);
                    gone.push(id.clone());
                    for d in gone {
                        let parent = self.nodes[&d].parent.clone();
                        self.nodes.remove(&d);
                        // Descendants the client already knows in place may go unreported (their folder's
                        // delete covers them); anything changed this round is reported with its latest state.
                        if d == id || report_children || self.changed.contains(&d) {
                            self.log.push(deleted(&d, &parent));
                            self.changed.insert(d);
                        }
                    }
                }
                Op::Edit { item } => {
                    let id = pick(&self.movable(), item)?;
                    if !self.nodes[&id].dir {
                        self.nodes.get_mut(&id).unwrap().version += 1;
                        self.touched(&id);
                    }
                }
                Op::Repeat { item } => {
                    let id = pick(&self.nodes.keys().cloned().collect(), item)?;
                    self.repeats.push(id);
                }
                Op::EndRound { seed } => return Some((self.end_round(seed), RoundKind::Incremental)),
                Op::FullResync { seed } => {
                    self.end_round(seed);
                    let mut all: Vec<DriveItem> = self.nodes.keys().map(|id| self.snapshot(id)).collect();
                    all.shuffle(&mut StdRng::seed_from_u64(seed));
                    return Some((all, RoundKind::Full));
                }
            }
            None
        }

        /// The round: intermediate states shuffled, then each changed item's final state inserted somewhere after
        /// its last earlier occurrence (so the last occurrence is the final state), plus unchanged repeats.
        fn end_round(&mut self, seed: u64) -> Vec<DriveItem> {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut round = std::mem::take(&mut self.log);
            round.shuffle(&mut rng);
            let mut finals: Vec<DriveItem> = Vec::new();
            for id in std::mem::take(&mut self.changed) {
                if self.nodes.contains_key(&id) {
                    finals.push(self.snapshot(&id));
                } else if let Some(last) = round.iter().rev().find(|i| i.id == id && i.is_deleted()).cloned() {
                    finals.push(last);
                }
            }
            for id in std::mem::take(&mut self.repeats) {
                if self.nodes.contains_key(&id) {
                    finals.push(self.snapshot(&id));
                }
            }
            finals.shuffle(&mut rng);
            for f in finals {
                let after = round.iter().rposition(|i| i.id == f.id).map_or(0, |p| p + 1);
                let at = rng.random_range(after..=round.len());
                round.insert(at, f);
            }
            round
        }

        /// The gallery subtree as `path -> (id, is dir)`.
        pub fn gallery_tree(&self) -> BTreeMap<String, (String, bool)> {
            let mut out = BTreeMap::new();
            for id in self.nodes.keys() {
                if id == G || !self.is_within(id, G) {
                    continue;
                }
                let mut parts = Vec::new();
                let mut current = id.clone();
                while current != G {
                    let n = &self.nodes[&current];
                    parts.push(n.name.clone());
                    current = n.parent.clone();
                }
                parts.reverse();
                out.insert(format!("/{}", parts.join("/")), (id.clone(), self.nodes[id].dir));
            }
            out
        }

        /// What listing a folder (recursively) returns now.
        pub fn listing(&self, id: &str) -> Vec<DriveItem> {
            self.descendants(id).iter().map(|d| self.snapshot(d)).collect()
        }
    }
}

use proptest::prelude::*;

fn op_strategy() -> impl Strategy<Value = model::Op> {
    use model::Op;
    prop_oneof![
        4 => (0..64usize, 0..64usize, any::<bool>()).prop_map(|(parent, name, dir)| Op::Create { parent, name, dir }),
        2 => (0..64usize, 0..64usize).prop_map(|(item, name)| Op::Rename { item, name }),
        3 => (0..64usize, 0..64usize).prop_map(|(item, parent)| Op::Move { item, parent }),
        2 => (0..64usize, any::<bool>()).prop_map(|(item, report_children)| Op::Delete { item, report_children }),
        2 => (0..64usize).prop_map(|item| Op::Edit { item }),
        1 => (0..64usize).prop_map(|item| Op::Repeat { item }),
        2 => any::<u64>().prop_map(|seed| Op::EndRound { seed }),
        1 => any::<u64>().prop_map(|seed| Op::FullResync { seed }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn store_follows_the_remote_tree(ops in proptest::collection::vec(op_strategy(), 1..60)) {
        let store = Store::open_in_memory().unwrap();
        let mut remote = model::Remote::new();
        let mut inodes: BTreeMap<String, u64> = BTreeMap::new();
        let mut ops = ops;
        ops.push(model::Op::EndRound { seed: 7 });
        for op in &ops {
            let Some((round, kind)) = remote.apply(op) else { continue };
            let mut changes = match kind {
                RoundKind::Incremental => apply_delta_round(&store, G, &round).unwrap(),
                RoundKind::Full => replace_all(&store, G, &round).unwrap(),
                RoundKind::Listing => unreachable!("the model's rounds are incremental or full"),
            };
            // What the sync engine does with folders moved into the gallery: list them, as further rounds.
            let mut guard = 0;
            while !changes.needs_listing.is_empty() {
                guard += 1;
                prop_assert!(guard < 50, "listing never converges");
                let mut listing = Vec::new();
                for ino in &changes.needs_listing {
                    let row = store.get(*ino).unwrap().unwrap();
                    listing.extend(remote.listing(&row.item_id));
                }
                changes = apply_listing_round(&store, G, &listing_round(listing, &changes.unplaced)).unwrap();
            }
            let have = tree(&store);
            prop_assert_eq!(&have, &remote.gallery_tree());
            prop_assert_eq!(have.len() as u64, store.item_count().unwrap(), "rows not reachable from the root");
            // Items that stayed in the gallery kept their inode.
            let now: BTreeMap<String, u64> = have.values().map(|(id, _)| (id.clone(), ino(&store, id))).collect();
            for (id, ino_now) in &now {
                if let Some(before) = inodes.get(id) {
                    prop_assert_eq!(before, ino_now, "inode of {} changed", id);
                }
            }
            // Content versions follow the model.
            for (id, _) in have.values().filter(|(_, dir)| !dir) {
                let row = store.get_by_item_id(id).unwrap().unwrap();
                prop_assert_eq!(row.ctag, remote.snapshot(id).c_tag);
            }
            inodes = now;
        }
    }

    /// The same remote churn while the user edits files and creates new ones locally: local state is never lost,
    /// the tree stays whole, and every remote gallery item is shown under its remote parent.
    #[test]
    fn local_state_survives_remote_churn(
        ops in proptest::collection::vec((op_strategy(), 0..8u8, 0..64usize), 1..50)
    ) {
        let store = Store::open_in_memory().unwrap();
        let mut remote = model::Remote::new();
        let mut protected: BTreeMap<u64, u64> = BTreeMap::new(); // ino -> local size
        let mut locals = 0;
        for (op, local_action, pick) in &ops {
            // Sometimes act locally first: dirty an existing file, or create a local-only file.
            let files: Vec<_> = tree(&store).into_values().filter(|(_, dir)| !dir).map(|(id, _)| id).collect();
            let dirs: Vec<u64> = std::iter::once(ROOT_INO)
                .chain(tree(&store).into_values().filter(|(_, dir)| *dir).map(|(id, _)| ino(&store, &id)))
                .collect();
            match local_action {
                0 if !files.is_empty() => {
                    let f = ino(&store, &files[pick % files.len()]);
                    store.set_content_state(f, ContentState::Dirty).unwrap();
                    store.update_local_content(f, 4242 + f, 1).unwrap();
                    protected.insert(f, 4242 + f);
                }
                1 => {
                    locals += 1;
                    let parent = dirs[pick % dirs.len()];
                    let name = format!("local-{locals}.jpg");
                    let f = store.insert(&NewItem::local(parent, &name, ItemKind::File, 1)).unwrap();
                    protected.insert(f, 0);
                }
                _ => {}
            }
            let Some((round, kind)) = remote.apply(op) else { continue };
            let mut changes = match kind {
                RoundKind::Incremental => apply_delta_round(&store, G, &round).unwrap(),
                RoundKind::Full => replace_all(&store, G, &round).unwrap(),
                RoundKind::Listing => unreachable!("the model's rounds are incremental or full"),
            };
            while !changes.needs_listing.is_empty() {
                let mut listing = Vec::new();
                for ino in &changes.needs_listing {
                    listing.extend(remote.listing(&store.get(*ino).unwrap().unwrap().item_id));
                }
                changes = apply_listing_round(&store, G, &listing_round(listing, &changes.unplaced)).unwrap();
            }
            for (ino, size) in &protected {
                let row = store.get(*ino).unwrap();
                prop_assert!(row.is_some(), "local item {} was removed", ino);
                prop_assert_eq!(row.unwrap().size, *size, "local size of {} overwritten", ino);
            }
            prop_assert_eq!(tree(&store).len() as u64, store.item_count().unwrap(), "rows not reachable from the root");
            for (id, node) in remote.nodes.iter().filter(|(id, _)| id.as_str() != G && remote.is_within(id, G)) {
                let row = store.get_by_item_id(id).unwrap();
                prop_assert!(row.is_some(), "remote item {} missing", id);
                let row = row.unwrap();
                let parent = store.get(row.parent_ino.unwrap()).unwrap().unwrap();
                prop_assert_eq!(&parent.item_id, &node.parent, "{} under the wrong folder", id);
                let stem = node.name.rsplit_once('.').map_or(node.name.as_str(), |(s, _)| s);
                prop_assert!(
                    row.name == node.name || row.name.starts_with(&format!("{stem} (")),
                    "{} shown as {:?}, remote name {:?}", id, row.name, node.name
                );
            }
        }
    }
}

#[test]
fn a_large_first_enumeration_is_applied_in_reasonable_time() {
    let mut items = vec![folder(G, "PICS", "Samsung Gallery")];
    for a in 0..20 {
        items.push(folder(&format!("D{a}"), G, &format!("Album {a}")));
        for i in 0..1000 {
            items.push(file(
                &format!("F{a}-{i}"),
                &format!("D{a}"),
                &format!("IMG_{i}.jpg"),
                "c1",
            ));
        }
    }
    items.reverse(); // children before parents: the worst order
    let store = Store::open_in_memory().unwrap();
    let t0 = std::time::Instant::now();
    let changes = replace_all(&store, G, &items).unwrap();
    let elapsed = t0.elapsed();
    assert_eq!(changes.inserted.len(), 20_020);
    assert_eq!(store.item_count().unwrap(), 20_020);
    // Generous bound for an unoptimised build on a shared machine; the point is "not quadratic".
    assert!(elapsed < std::time::Duration::from_secs(60), "took {elapsed:?}");
    eprintln!("20k-item enumeration applied in {elapsed:?}");
}

#[test]
fn business_style_deletes_and_kind_changes() {
    let store = Store::open_in_memory().unwrap();
    seed(&store);
    let f1 = ino(&store, "F1");
    // Business deletes carry no name; an id that turns from file into folder gets a fresh row.
    let mut nameless = deleted("F2", "D1");
    nameless.name = None;
    let changes = apply_delta_round(&store, G, &[nameless, folder("F1", "D1", "IMG_1.jpg")]).unwrap();
    assert!(store.get_by_item_id("F2").unwrap().is_none());
    let row = store.get_by_item_id("F1").unwrap().unwrap();
    assert!(row.is_dir());
    assert_ne!(row.ino, f1);
    assert!(changes.removed.contains(&f1) && changes.inserted.contains(&row.ino));
}
