//! The fuzz harness shared by `cargo fuzz` (the `fuzz/` crate) and the proptest/`#[ignore]` driver in
//! `tests/suite/hostile_input.rs`: one function per target, each taking raw bytes and panicking on a broken
//! invariant (a panic inside galleryfs is a finding too). Nothing here may depend on anything but galleryfs,
//! serde_json and std, so both crates can include it with `#[path]`.
//!
//! Targets:
//! - [`driveitem_json`]: any bytes → `DriveItem` / `Page<DriveItem>` parsing; what parses must re-serialize and
//!   parse back equal, and the accessors must not panic.
//! - [`delta_round`]: a JSON script of delta rounds (and local changes) applied to an in-memory store; after
//!   every step the store is checked by [`StoreChecker`].
//! - [`error_body`]: any bytes as a Graph error body (with any status and headers) → `GraphError`.
//! - [`content_range`]: any text as `Content-Range`, `Retry-After` and `nextExpectedRanges`; the parsed values
//!   must be consistent and a `Retry-After` must never crash the throttle gate.
//! - [`thumbnail_decode`]: any bytes as a server thumbnail → `render_png` must return (quickly) without panic,
//!   and what it returns must be a PNG within the size's bounds.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use galleryfs::remote::error::{parse_retry_after, GraphError};
use galleryfs::remote::models::{DriveItem, ErrorResponse, Page, UploadSession};
use galleryfs::store::{name_key, ContentState, ItemKind, ItemRow, NewItem, Store, ROOT_INO};
use galleryfs::sync::delta_apply::{
    apply_delta_round, apply_listing_round, check_name, listing_round, replace_all, AppliedChanges, RejectReason,
    NAME_MAX,
};
use galleryfs::thumbnails::{render_png, ThumbExtra, ThumbSize};

/// The OneDrive id of the gallery folder in every `delta_round` script.
pub const GALLERY_ID: &str = "G";

// ---------------------------------------------------------------------------------------------------------------
// driveitem_json

pub fn driveitem_json(data: &[u8]) {
    if let Ok(item) = serde_json::from_slice::<DriveItem>(data) {
        touch_item(&item);
        let again = serde_json::to_vec(&item).expect("a parsed DriveItem serializes");
        let back: DriveItem = serde_json::from_slice(&again).expect("a serialized DriveItem parses");
        assert_eq!(
            normalize(&back),
            normalize(&item),
            "DriveItem JSON round trip changed it"
        );
    }
    if let Ok(page) = serde_json::from_slice::<Page<DriveItem>>(data) {
        for item in &page.value {
            touch_item(item);
        }
        let again = serde_json::to_vec(&page).expect("a parsed page serializes");
        let back: Page<DriveItem> = serde_json::from_slice(&again).expect("a serialized page parses");
        assert_eq!(back.value.len(), page.value.len());
        assert_eq!(back.next_link, page.next_link);
        assert_eq!(back.delta_link, page.delta_link);
    }
    if let Ok(session) = serde_json::from_slice::<UploadSession>(data) {
        if let Some(offset) = session.next_expected_offset() {
            assert!(session.next_expected_ranges.iter().any(|r| r
                .split('-')
                .next()
                .and_then(|s| s.trim().parse::<u64>().ok())
                == Some(offset)));
        }
    }
}

/// NaN never equals itself: compare floats through their JSON form.
fn normalize(item: &DriveItem) -> String {
    serde_json::to_string(item).unwrap_or_default()
}

fn touch_item(item: &DriveItem) {
    let _ = (item.is_file(), item.is_folder(), item.is_deleted(), item.is_media());
    let _ = (item.quick_xor_hash(), item.parent_id(), item.modified());
    if let Some(name) = item.name.as_deref() {
        if check_name(name).is_ok() {
            assert!(!name.is_empty() && name.len() <= NAME_MAX && !name.contains(['/', '\0']));
            assert!(name != "." && name != "..");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// error_body

pub fn error_body(data: &[u8]) {
    use reqwest::header::{HeaderMap, HeaderValue, CONTENT_RANGE, LOCATION};
    use reqwest::StatusCode;
    let (head, body) = data.split_at(data.len().min(2));
    let status = 400 + u16::from(head.first().copied().unwrap_or(0)) % 200;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut headers = HeaderMap::new();
    let text = String::from_utf8_lossy(body);
    if head.get(1).is_some_and(|b| b & 1 == 1) {
        if let Ok(v) = HeaderValue::from_str(text.lines().next().unwrap_or_default()) {
            headers.insert(CONTENT_RANGE, v.clone());
            headers.insert(LOCATION, v);
        }
    }
    let err = GraphError::from_response(status, &headers, body);
    let _ = (
        err.to_string(),
        err.is_retryable(),
        err.is_read_only(),
        err.is_stale_url(),
        err.error_code(),
    );
    assert_eq!(err.status(), Some(status.as_u16()), "{err:?}");
    // `InvalidName` keeps only the name code it matched, by design.
    if let (Ok(parsed), false) = (
        serde_json::from_slice::<ErrorResponse>(body),
        matches!(err, GraphError::InvalidName { .. }),
    ) {
        let codes = parsed.error.codes();
        if let Some(first) = codes.iter().find(|c| !c.is_empty()) {
            assert!(err.has_code(first), "code {first:?} lost: {err:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// content_range

pub fn content_range(data: &[u8]) {
    use galleryfs::remote::download::parse_content_range;
    use galleryfs::remote::http::ThrottleGate;
    let text = String::from_utf8_lossy(data);
    if let Some((a, b, total)) = parse_content_range(&text) {
        // Every field came from digits in the text.
        assert!(
            text.contains(&a.to_string()) && text.contains(&b.to_string()),
            "{text:?}"
        );
        if let Some(t) = total {
            assert!(text.contains(&t.to_string()));
        }
    }
    let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).expect("a fixed time");
    if let Some(wait) = parse_retry_after(&text, now) {
        let gate = ThrottleGate::default();
        gate.pause_for(wait); // must not panic for any wait a server can ask for
        assert!(gate.remaining() <= wait);
        let _ = gate.throttled_until();
    }
    let session = UploadSession {
        next_expected_ranges: text.split(',').map(str::to_string).collect(),
        ..Default::default()
    };
    let _ = session.next_expected_offset();
}

// ---------------------------------------------------------------------------------------------------------------
// thumbnail_decode

/// Longest time one hostile thumbnail may take (debug build, shared machine).
pub const THUMBNAIL_DEADLINE: Duration = Duration::from_secs(20);

pub fn thumbnail_decode(data: &[u8]) {
    let size = if data.first().is_some_and(|b| b & 1 == 1) {
        ThumbSize::Large
    } else {
        ThumbSize::Normal
    };
    let extra = ThumbExtra {
        orientation: data.get(1).map(|b| u16::from(*b % 10)),
        ..Default::default()
    };
    let started = Instant::now();
    let out = render_png(data, size, "file:///g/IMG_1.jpg", 1_700_000_000, &extra);
    let took = started.elapsed();
    assert!(took < THUMBNAIL_DEADLINE, "rendering took {took:?}");
    if let Ok(png) = out {
        let decoder = png::Decoder::new(std::io::Cursor::new(&png));
        let reader = decoder.read_info().expect("render_png output is a PNG");
        let info = reader.info();
        assert!(info.width >= 1 && info.height >= 1);
        assert!(
            info.width.max(info.height) <= size.pixels(),
            "{}x{}",
            info.width,
            info.height
        );
        let _ = galleryfs::thumbnails::relabel_png(&png, "file:///g/other.jpg", 1).expect("relabel our own PNG");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// delta_round

/// Applies a script to a fresh in-memory store, checking the store after every step. The script is a JSON array
/// of steps; a step is
/// - `{"full": false|true, "value": [driveItem...]}`: a delta round (incremental) or a full enumeration; a round
///   whose `value` does not parse as driveItems is skipped, as the client would refuse the page;
/// - `{"dirty": "<item id>"}`: the user edits that item (content becomes dirty);
/// - `{"local": {"parent": "<item id>", "name": "...", "dir": bool}}`: the user creates an item locally.
///
/// Anything else (or bytes that are not such JSON) is ignored.
pub fn delta_round(data: &[u8]) {
    let Ok(serde_json::Value::Array(steps)) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let store = Store::open_in_memory().expect("in-memory store");
    let mut checker = StoreChecker::default();
    checker.check(&store).expect("fresh store");
    for (index, step) in steps.iter().take(64).enumerate() {
        if let Some(value) = step.get("value") {
            let Ok(items) = serde_json::from_value::<Vec<DriveItem>>(value.clone()) else {
                continue;
            };
            let full = step.get("full").and_then(|f| f.as_bool()).unwrap_or(false);
            let outcome = if full {
                replace_all(&store, GALLERY_ID, &items)
            } else {
                apply_delta_round(&store, GALLERY_ID, &items)
            };
            match outcome {
                Ok(changes) => {
                    if let Err(e) = check_round(&store, &items, &changes, full) {
                        panic!("step {index}: round applied wrongly: {e}\nround: {value}");
                    }
                    if !changes.unplaced.is_empty() {
                        // The listing of the round's new folders, found empty: the items waiting for it go.
                        let listing = listing_round(Vec::new(), &changes.unplaced);
                        if let Err(e) = apply_listing_round(&store, GALLERY_ID, &listing) {
                            panic!("step {index}: the listing round failed (sync would be stuck): {e}");
                        }
                        for item in &changes.unplaced {
                            let row = store.get_by_item_id(&item.id).expect("read");
                            if let Some(row) = row.filter(|r| !r.remote_removed && !r.local_only) {
                                if !protected_below(&store, row.ino).expect("read") {
                                    panic!("step {index}: {:?} kept after its listing found nothing", item.id);
                                }
                            }
                        }
                    }
                }
                Err(e) => panic!("step {index}: a delta round failed (sync would be stuck): {e}\nround: {value}"),
            }
        } else if let Some(id) = step.get("dirty").and_then(|v| v.as_str()) {
            if let Some(row) = store.get_by_item_id(id).expect("read") {
                if row.kind == ItemKind::File {
                    store
                        .set_content_state(row.ino, ContentState::Dirty)
                        .expect("mark dirty");
                    store
                        .update_local_content(row.ino, row.size + 1, row.mtime + 1)
                        .expect("edit");
                }
            }
        } else if let Some(local) = step.get("local") {
            let parent = local.get("parent").and_then(|v| v.as_str()).unwrap_or(GALLERY_ID);
            let name = local.get("name").and_then(|v| v.as_str()).unwrap_or("new.jpg");
            let dir = local.get("dir").and_then(|v| v.as_bool()).unwrap_or(false);
            let parent_row = if parent == GALLERY_ID {
                Some(store.root().expect("root"))
            } else {
                store.get_by_item_id(parent).expect("read")
            };
            let Some(parent_row) = parent_row.filter(|p| p.is_dir()) else {
                continue;
            };
            if check_name(name).is_err() || store.lookup(parent_row.ino, name).expect("read").is_some() {
                continue; // the mount refuses such names before they reach the store
            }
            let kind = if dir { ItemKind::Dir } else { ItemKind::File };
            store
                .insert(&NewItem::local(parent_row.ino, name, kind, 1_700_000_000))
                .expect("local create");
        }
        if let Err(e) = checker.check(&store) {
            panic!("step {index}: store invariant broken: {e}\nstep: {step}");
        }
    }
}

/// Checks what a successful round promised, against the round itself.
fn check_round(store: &Store, items: &[DriveItem], changes: &AppliedChanges, full: bool) -> Result<(), String> {
    let mut last: HashMap<&str, &DriveItem> = HashMap::new();
    for item in items {
        last.insert(item.id.as_str(), item);
    }
    // A reserved id (`local:…`) may name a genuine local row, which the round must leave alone.
    let rejected: HashSet<&str> = changes
        .rejected
        .iter()
        .filter(|r| r.reason != RejectReason::ReservedId)
        .map(|r| r.item_id.as_str())
        .collect();
    let reserved: HashSet<&str> = changes
        .rejected
        .iter()
        .filter(|r| r.reason == RejectReason::ReservedId)
        .map(|r| r.item_id.as_str())
        .collect();
    // Items waiting for the listing of the round's new folders keep their rows until it.
    let unplaced: HashSet<&str> = changes.unplaced.iter().map(|i| i.id.as_str()).collect();
    for (id, item) in &last {
        if *id == GALLERY_ID || reserved.contains(id) || unplaced.contains(id) {
            continue;
        }
        let row = store.get_by_item_id(id).map_err(|e| e.to_string())?;
        if rejected.contains(id) {
            // Removed, unless it (or something below it) holds local changes: then kept and flagged.
            if let Some(row) = row {
                if !protected_below(store, row.ino)? || !(row.remote_removed || row.local_only) {
                    return Err(format!("rejected item {id:?} is still in the store as {row:?}"));
                }
            }
            continue;
        }
        let direct_child = item.parent_id() == Some(GALLERY_ID);
        let valid = item.name.as_deref().is_some_and(|n| check_name(n).is_ok());
        let kind_ok = item.is_file() || item.is_folder();
        if item.is_deleted() {
            if let Some(row) = row {
                if !protected_below(store, row.ino)? {
                    return Err(format!(
                        "deleted item {id:?} is still in the store and holds no local change"
                    ));
                }
                if !row.remote_removed && !row.local_only {
                    return Err(format!("deleted item {id:?} kept without remote_removed"));
                }
            }
            continue;
        }
        if direct_child && valid && kind_ok {
            let Some(row) = row else {
                return Err(format!("item {id:?} in the gallery root is missing"));
            };
            if row.parent_ino != Some(ROOT_INO) {
                return Err(format!("item {id:?} is under {:?}, not the root", row.parent_ino));
            }
            let name = item.name.as_deref().unwrap_or_default();
            if row.name != name && !changes.renamed_for_clash.contains(&row.ino) {
                return Err(format!(
                    "item {id:?} shown as {:?}, not {name:?}, and not reported",
                    row.name
                ));
            }
            let wanted_kind = if item.is_folder() {
                ItemKind::Dir
            } else {
                ItemKind::File
            };
            if row.kind != wanted_kind {
                return Err(format!("item {id:?} stored as {:?}", row.kind));
            }
            if row.kind == ItemKind::File && !row.is_dirty() {
                let size = item.size.unwrap_or(0).max(0) as u64;
                if row.size != size {
                    return Err(format!("item {id:?} size {} instead of {size}", row.size));
                }
            }
        } else if let Some(row) = row.filter(|r| !r.remote_removed && !r.local_only) {
            // Anywhere else in the gallery: where the round says, under its name (or a reported clash name).
            let parent_ino = match item.parent_id() {
                Some(GALLERY_ID) => Some(ROOT_INO),
                Some(pid) => store.get_by_item_id(pid).map_err(|e| e.to_string())?.map(|r| r.ino),
                None => None,
            };
            if parent_ino.is_none() || row.parent_ino != parent_ino {
                return Err(format!(
                    "item {id:?} is under {:?}, the round says {:?}",
                    row.parent_ino,
                    item.parent_id()
                ));
            }
            let name = item.name.as_deref().unwrap_or_default();
            if row.name != name && !changes.renamed_for_clash.contains(&row.ino) {
                return Err(format!(
                    "item {id:?} shown as {:?}, not {name:?}, and not reported",
                    row.name
                ));
            }
        }
    }
    if full {
        // A full enumeration leaves nothing it did not mention, except rows kept for local changes.
        let rows = store.read(|t| t.all_item_ids()).map_err(|e| e.to_string())?;
        for (ino, item_id) in rows {
            let mentioned = last.get(item_id.as_str()).is_some_and(|i| !i.is_deleted());
            if !mentioned && !protected_below(store, ino)? {
                return Err(format!("full round left unmentioned item {item_id:?} (inode {ino})"));
            }
        }
    }
    Ok(())
}

fn protected_below(store: &Store, ino: u64) -> Result<bool, String> {
    store
        .read(|t| {
            for i in t.subtree(ino)? {
                if let Some(r) = t.get(i)? {
                    if r.is_dirty() || r.local_only {
                        return Ok(true);
                    }
                }
            }
            Ok::<_, galleryfs::store::StoreError>(false)
        })
        .map_err(|e| e.to_string())
}

/// Store invariants that must hold after anything a server sends. Keeps the inodes seen so far, to check that a
/// removed inode never comes back and new ones are always above every earlier one.
#[derive(Debug, Default)]
pub struct StoreChecker {
    seen: HashSet<u64>,
    max_seen: u64,
    /// Item id of each inode seen (a local item's id changes only from `local:` to a real one).
    ids: HashMap<u64, String>,
}

impl StoreChecker {
    pub fn check(&mut self, store: &Store) -> Result<(), String> {
        let rows: Vec<ItemRow> = store
            .read(|t| {
                let mut rows = vec![t.root()?];
                for (ino, _) in t.all_item_ids()? {
                    rows.push(t.get(ino)?.ok_or(galleryfs::store::StoreError::NoSuchInode(ino))?);
                }
                Ok::<_, galleryfs::store::StoreError>(rows)
            })
            .map_err(|e| format!("reading the store: {e}"))?;
        let by_ino: BTreeMap<u64, &ItemRow> = rows.iter().map(|r| (r.ino, r)).collect();
        if by_ino.len() != rows.len() {
            return Err("duplicate inode".into());
        }
        let mut siblings: HashSet<(u64, String)> = HashSet::new();
        let mut item_ids: HashSet<&str> = HashSet::new();
        for row in &rows {
            if !item_ids.insert(row.item_id.as_str()) {
                return Err(format!("item id {:?} twice", row.item_id));
            }
            if row.ino == ROOT_INO {
                if row.parent_ino.is_some() || !row.is_dir() {
                    return Err(format!("bad root row {row:?}"));
                }
                continue;
            }
            check_stored_name(&row.name).map_err(|e| format!("inode {}: {e}", row.ino))?;
            if row.name_key != name_key(&row.name) {
                return Err(format!(
                    "inode {}: name_key {:?} for {:?}",
                    row.ino, row.name_key, row.name
                ));
            }
            let Some(parent) = row.parent_ino else {
                return Err(format!("inode {} ({:?}) is detached (orphan)", row.ino, row.name));
            };
            let Some(parent_row) = by_ino.get(&parent) else {
                return Err(format!("inode {} has a missing parent {parent}", row.ino));
            };
            if !parent_row.is_dir() {
                return Err(format!("inode {} lives in a file (inode {parent})", row.ino));
            }
            if !siblings.insert((parent, fold(&row.name))) {
                return Err(format!(
                    "two entries named {:?} (case-folded) in inode {parent}",
                    row.name
                ));
            }
            // Reachable from the root without a cycle.
            let mut current = parent;
            let mut steps = 0;
            while current != ROOT_INO {
                steps += 1;
                if steps > rows.len() {
                    return Err(format!("inode {} is on a parent cycle", row.ino));
                }
                current = by_ino
                    .get(&current)
                    .and_then(|r| r.parent_ino)
                    .ok_or_else(|| format!("inode {} does not reach the root", row.ino))?;
            }
            if row.is_dir() && row.size != 0 {
                return Err(format!("folder inode {} has size {}", row.ino, row.size));
            }
            if row.size > i64::MAX as u64 {
                return Err(format!("inode {} has size {}", row.ino, row.size));
            }
            // Every time a DateTime<Utc> can hold, as seconds.
            if !(-8_334_632_851_200..=8_210_298_412_799).contains(&row.mtime) {
                return Err(format!("inode {} has mtime {}", row.ino, row.mtime));
            }
            if row.local_only != row.item_id.starts_with("local:") {
                return Err(format!(
                    "inode {} local_only {} with id {:?}",
                    row.ino, row.local_only, row.item_id
                ));
            }
        }
        let mut max_now = 0;
        for row in &rows {
            if !self.seen.contains(&row.ino) {
                if row.ino <= self.max_seen {
                    return Err(format!(
                        "inode {} reused (or handed out below {})",
                        row.ino, self.max_seen
                    ));
                }
            } else if let Some(old) = self.ids.get(&row.ino).filter(|_| row.ino != ROOT_INO) {
                if *old != row.item_id && !old.starts_with("local:") {
                    return Err(format!(
                        "inode {} changed from item {old:?} to {:?}",
                        row.ino, row.item_id
                    ));
                }
            }
            max_now = max_now.max(row.ino);
        }
        for row in &rows {
            self.seen.insert(row.ino);
            self.ids.insert(row.ino, row.item_id.clone());
        }
        self.max_seen = self.max_seen.max(max_now);
        Ok(())
    }
}

/// The folding used for the sibling-clash invariant (the store's case-insensitive key).
fn fold(name: &str) -> String {
    name_key(name)
}

fn check_stored_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("name {name:?}"));
    }
    if name.contains('/') || name.contains('\0') {
        return Err(format!("name {name:?} has / or NUL"));
    }
    if name.len() > NAME_MAX {
        return Err(format!("name of {} bytes", name.len()));
    }
    Ok(())
}
