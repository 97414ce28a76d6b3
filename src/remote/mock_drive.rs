//! Test doubles for [`DriveApi`]: [`MockDrive`], an in-memory OneDrive, and [`FailingDrive`], a wrapper that
//! fails chosen calls (the approach of mountpoint-s3's mock and failure clients).
//!
//! `MockDrive` keeps a tree of folders and files with ids (`MOCK!<n>`), eTag/cTag versions, the quickXorHash of
//! the content, a `photos` special folder (display name chosen by the test: it is localized on OneDrive), and a
//! change journal that gives real delta semantics: full enumeration (folder-scoped or from the root, parents
//! before children, paged), incremental rounds since a delta link (the changed items with their ancestor chain,
//! deletes as `deleted` tombstones, items moved out of a folder scope as deletes), the same item repeated with
//! older states first when asked (the last occurrence wins), and `410` resync on demand. Thumbnails are tiny real
//! JPEGs (made with `image`) at OneDrive's named sizes; an item can have none. Every request is counted per
//! [`MockOp`], and an optional per-request latency simulates the network.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::time::Duration;

use super::drive_api::{
    ConflictBehavior, DeltaPage, DeltaRequest, DriveApi, DriveError, MoveRequest, UploadRequest, UploadSource,
    UploadTarget,
};
use super::models::{
    DeletedFacet, Drive, DriveItem, FileFacet, FileSystemInfo, FolderFacet, Hashes, ImageFacet, ItemReference, Quota,
    SpecialFolder, Thumbnail, ThumbnailSet,
};
use super::QuickXorHash;

/// The requests a [`MockDrive`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MockOp {
    Drive,
    Item,
    ItemByPath,
    SpecialFolder,
    Children,
    /// The first page of a full enumeration.
    DeltaFull,
    /// Any other delta page (next pages, incremental rounds).
    DeltaPage,
    Thumbnails,
    DownloadThumbnail,
    /// A read of an original's content.
    DownloadContent,
    CreateFolder,
    Delete,
    Move,
    Upload,
    Restore,
}

/// OneDrive's named thumbnail sizes: longest edge in pixels (landscape 4:3 sources).
const THUMB_SIZES: [(&str, u32); 3] = [("small", 96), ("medium", 176), ("large", 800)];

#[derive(Clone, Debug)]
struct Node {
    id: String,
    name: String,
    parent: Option<String>,
    folder: bool,
    content: Bytes,
    etag_v: u64,
    ctag_v: u64,
    mtime: DateTime<Utc>,
    thumbnails: bool,
    deleted: bool,
    special: Option<String>,
}

#[derive(Clone, Debug)]
struct JournalEntry {
    seq: u64,
    id: String,
    /// The item as it was right after this change.
    snapshot: DriveItem,
    /// Every folder the item was below before or after the change (for folder-scoped delta).
    scopes: HashSet<String>,
}

/// A delta round being paged through.
#[derive(Debug)]
struct Cursor {
    items: Vec<DriveItem>,
    scope: String,
    /// The journal position the round ends at (its delta link's token).
    token: u64,
}

#[derive(Debug)]
struct State {
    drive_id: String,
    root_id: String,
    next_id: u64,
    nodes: HashMap<String, Node>,
    specials: HashMap<String, String>,
    seq: u64,
    journal: Vec<JournalEntry>,
    /// Delta tokens below this are refused with 410.
    min_valid_token: u64,
    cursors: HashMap<u64, Cursor>,
    next_cursor: u64,
    page_size: usize,
    duplicates: bool,
    folder_delta_supported: bool,
    latency: Duration,
    counts: HashMap<MockOp, u64>,
    quota: Quota,
}

/// An in-memory OneDrive. Cheap to share behind an `Arc`.
pub struct MockDrive {
    state: Mutex<State>,
}

impl Default for MockDrive {
    fn default() -> Self {
        MockDrive::new()
    }
}

impl MockDrive {
    /// A drive with a root and the `photos` special folder named `Pictures`.
    pub fn new() -> MockDrive {
        MockDrive::with_photos_folder_name("Pictures")
    }

    /// A drive whose `photos` special folder has the given (localized) display name, e.g. `Imagens`.
    pub fn with_photos_folder_name(name: &str) -> MockDrive {
        let drive = MockDrive::empty();
        let id = drive.add_folder(&drive.root_id(), name);
        let mut s = drive.state.lock();
        s.nodes.get_mut(&id).expect("just added").special = Some("photos".into());
        s.specials.insert("photos".into(), id);
        drop(s);
        drive
    }

    /// A drive with only a root folder (no special folders).
    pub fn empty() -> MockDrive {
        let root_id = "MOCK!101".to_string();
        let mut nodes = HashMap::new();
        nodes.insert(
            root_id.clone(),
            Node {
                id: root_id.clone(),
                name: "root".into(),
                parent: None,
                folder: true,
                content: Bytes::new(),
                etag_v: 1,
                ctag_v: 1,
                mtime: base_time(),
                thumbnails: false,
                deleted: false,
                special: None,
            },
        );
        MockDrive {
            state: Mutex::new(State {
                drive_id: "0123456789abcdef".into(),
                root_id,
                next_id: 102,
                nodes,
                specials: HashMap::new(),
                seq: 0,
                journal: Vec::new(),
                min_valid_token: 0,
                cursors: HashMap::new(),
                next_cursor: 1,
                page_size: 200,
                duplicates: false,
                folder_delta_supported: true,
                latency: Duration::ZERO,
                counts: HashMap::new(),
                quota: Quota {
                    total: Some(5 * 1024 * 1024 * 1024),
                    used: Some(0),
                    remaining: Some(5 * 1024 * 1024 * 1024),
                    deleted: Some(0),
                    state: Some("normal".into()),
                },
            }),
        }
    }

    // ---- configuration ----

    /// Sleep this long in every request.
    pub fn set_latency(&self, latency: Duration) {
        self.state.lock().latency = latency;
    }
    /// Items per delta page.
    pub fn set_page_size(&self, n: usize) {
        self.state.lock().page_size = n.max(1);
    }
    /// Incremental rounds repeat changed items with their older states first (the last occurrence wins).
    pub fn set_duplicate_entries(&self, on: bool) {
        self.state.lock().duplicates = on;
    }
    /// When off, folder-scoped delta fails with `notSupported` (as on OneDrive for Business).
    pub fn set_folder_delta_supported(&self, on: bool) {
        self.state.lock().folder_delta_supported = on;
    }
    /// Every delta link issued so far answers `410 Gone` from now on (a full resync is needed).
    pub fn expire_delta_tokens(&self) {
        let mut s = self.state.lock();
        s.seq += 1;
        s.min_valid_token = s.seq;
    }
    pub fn set_quota(&self, quota: Quota) {
        self.state.lock().quota = quota;
    }

    // ---- counters ----

    pub fn count(&self, op: MockOp) -> u64 {
        self.state.lock().counts.get(&op).copied().unwrap_or(0)
    }
    /// Every delta request (full first pages and the rest).
    pub fn delta_requests(&self) -> u64 {
        self.count(MockOp::DeltaFull) + self.count(MockOp::DeltaPage)
    }
    pub fn total_requests(&self) -> u64 {
        self.state.lock().counts.values().sum()
    }
    pub fn reset_counts(&self) {
        self.state.lock().counts.clear();
    }

    // ---- looking at the drive ----

    pub fn root_id(&self) -> String {
        self.state.lock().root_id.clone()
    }
    pub fn special_folder_id(&self, name: &str) -> Option<String> {
        self.state.lock().specials.get(name).cloned()
    }
    /// The id of the live item at `path` (case-insensitive), if any.
    pub fn id_by_path(&self, path: &str) -> Option<String> {
        self.state.lock().resolve_path(path)
    }
    /// The item as the service would return it (deleted items too).
    pub fn get(&self, id: &str) -> Option<DriveItem> {
        let s = self.state.lock();
        s.nodes.get(id).map(|n| s.to_item(n))
    }
    pub fn content(&self, id: &str) -> Option<Bytes> {
        self.state.lock().nodes.get(id).map(|n| n.content.clone())
    }

    // ---- remote changes (as if made by another device) ----

    pub fn add_folder(&self, parent_id: &str, name: &str) -> String {
        self.state.lock().create(parent_id, name, true, Bytes::new(), None)
    }

    /// Adds a file; `.jpg`/`.png`/`.heic`/`.mp4`/`.mov` files are media with thumbnails available.
    pub fn add_file(&self, parent_id: &str, name: &str, content: impl Into<Bytes>) -> String {
        self.state.lock().create(parent_id, name, false, content.into(), None)
    }

    /// Creates the folders of `path` below the root as needed; returns the last one's id.
    pub fn mkdir_p(&self, path: &str) -> String {
        let mut current = self.root_id();
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            let existing = self.state.lock().child_by_name(&current, segment);
            current = match existing {
                Some(id) => id,
                None => self.add_folder(&current, segment),
            };
        }
        current
    }

    /// A gallery of `n` photos: `{parent}/DCIM/Camera/IMG_00000.jpg`…, a tenth of them under
    /// `{parent}/DCIM/Screenshots/`; small distinct contents, mtimes one minute apart. Returns the file ids.
    pub fn seed_gallery(&self, gallery_id: &str, n: usize) -> Vec<String> {
        let dcim = self.add_folder(gallery_id, "DCIM");
        let camera = self.add_folder(&dcim, "Camera");
        let shots = self.add_folder(&dcim, "Screenshots");
        let mut s = self.state.lock();
        (0..n)
            .map(|i| {
                let (parent, name) = if i % 10 == 9 {
                    (&shots, format!("Screenshot_{i:05}.png"))
                } else {
                    (&camera, format!("IMG_{i:05}.jpg"))
                };
                let mtime = base_time() + chrono::Duration::minutes(i as i64);
                s.create(parent, &name, false, Bytes::from(format!("photo {i}")), Some(mtime))
            })
            .collect()
    }

    /// New content for a file (new cTag and eTag, mtime now).
    pub fn edit_file(&self, id: &str, content: impl Into<Bytes>) {
        let content = content.into();
        self.state.lock().change(id, |n| {
            n.content = content;
            n.ctag_v += 1;
            n.etag_v += 1;
            n.mtime = Utc::now();
        });
    }

    pub fn rename(&self, id: &str, name: &str) {
        let name = name.to_string();
        self.state.lock().change(id, |n| {
            n.name = name;
            n.etag_v += 1;
        });
    }

    pub fn move_to(&self, id: &str, new_parent_id: &str) {
        let parent = new_parent_id.to_string();
        self.state.lock().change(id, |n| {
            n.parent = Some(parent);
            n.etag_v += 1;
        });
    }

    /// Deletes an item and its subtree (each reported as deleted by delta).
    pub fn delete_item(&self, id: &str) {
        self.state.lock().delete_tree(id);
    }

    /// Whether OneDrive has thumbnails for a file.
    pub fn set_thumbnails_available(&self, id: &str, available: bool) {
        if let Some(n) = self.state.lock().nodes.get_mut(id) {
            n.thumbnails = available;
        }
    }

    async fn enter(&self, op: MockOp) {
        let latency = {
            let mut s = self.state.lock();
            *s.counts.entry(op).or_insert(0) += 1;
            s.latency
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }
}

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 15, 14, 22, 33)
        .single()
        .expect("valid time")
}

fn mime_for(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "heic" => "image/heic",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "txt" => "text/plain",
        _ => return None,
    })
}

fn not_found(what: &str) -> DriveError {
    DriveError::NotFound(what.to_string())
}

impl State {
    fn live(&self, id: &str) -> Option<&Node> {
        self.nodes.get(id).filter(|n| !n.deleted)
    }

    fn child_by_name(&self, parent: &str, name: &str) -> Option<String> {
        let key = name.to_lowercase();
        self.nodes
            .values()
            .find(|n| !n.deleted && n.parent.as_deref() == Some(parent) && n.name.to_lowercase() == key)
            .map(|n| n.id.clone())
    }

    fn children_of(&self, parent: &str) -> Vec<&Node> {
        let mut v: Vec<&Node> = self
            .nodes
            .values()
            .filter(|n| !n.deleted && n.parent.as_deref() == Some(parent))
            .collect();
        v.sort_by(|a, b| a.name.to_lowercase().cmp(&b.name.to_lowercase()));
        v
    }

    fn resolve_path(&self, path: &str) -> Option<String> {
        let mut current = self.root_id.clone();
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            current = self.child_by_name(&current, segment)?;
        }
        Some(current)
    }

    /// Ids of the folders above `id`, nearest first.
    fn ancestors(&self, id: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut current = self.nodes.get(id).and_then(|n| n.parent.clone());
        while let Some(p) = current {
            if out.len() > 10_000 {
                break;
            }
            current = self.nodes.get(&p).and_then(|n| n.parent.clone());
            out.push(p);
        }
        out
    }

    fn is_within(&self, id: &str, scope: &str) -> bool {
        id == scope || self.ancestors(id).iter().any(|a| a == scope)
    }

    fn to_item(&self, n: &Node) -> DriveItem {
        let parent_reference = n.parent.as_ref().map(|p| ItemReference {
            drive_id: Some(self.drive_id.clone()),
            drive_type: Some("personal".into()),
            id: Some(p.clone()),
            ..Default::default()
        });
        if n.deleted {
            return DriveItem {
                id: n.id.clone(),
                name: Some(n.name.clone()),
                parent_reference,
                deleted: Some(DeletedFacet::default()),
                file: (!n.folder).then(FileFacet::default),
                folder: n.folder.then(FolderFacet::default),
                ..Default::default()
            };
        }
        let mime = mime_for(&n.name);
        let is_image = mime.is_some_and(|m| m.starts_with("image/"));
        DriveItem {
            id: n.id.clone(),
            name: Some(n.name.clone()),
            e_tag: Some(format!("\"{{{}}},{}\"", n.id, n.etag_v)),
            c_tag: Some(format!("\"c:{{{}}},{}\"", n.id, n.ctag_v)),
            size: Some(n.content.len() as i64),
            created_date_time: Some(base_time()),
            last_modified_date_time: Some(n.mtime),
            parent_reference,
            file: (!n.folder).then(|| FileFacet {
                mime_type: Some(mime.unwrap_or("application/octet-stream").into()),
                hashes: Some(Hashes {
                    quick_xor_hash: Some(QuickXorHash::of(&n.content)),
                    ..Default::default()
                }),
                processing_metadata: None,
            }),
            folder: n.folder.then(|| FolderFacet {
                child_count: Some(self.children_of(&n.id).len() as i64),
                view: None,
            }),
            image: (!n.folder && is_image).then(|| ImageFacet {
                width: Some(4000),
                height: Some(3000),
            }),
            file_system_info: Some(FileSystemInfo {
                created_date_time: Some(base_time()),
                last_modified_date_time: Some(n.mtime),
                last_accessed_date_time: None,
            }),
            root: (n.id == self.root_id).then(|| serde_json::json!({})),
            special_folder: n.special.as_ref().map(|s| SpecialFolder { name: Some(s.clone()) }),
            ..Default::default()
        }
    }

    fn journal(&mut self, id: &str, before: HashSet<String>) {
        self.seq += 1;
        let Some(node) = self.nodes.get(id) else { return };
        let snapshot = self.to_item(node);
        let mut scopes = before;
        scopes.extend(self.ancestors(id));
        self.journal.push(JournalEntry {
            seq: self.seq,
            id: id.to_string(),
            snapshot,
            scopes,
        });
    }

    fn create(
        &mut self,
        parent: &str,
        name: &str,
        folder: bool,
        content: Bytes,
        mtime: Option<DateTime<Utc>>,
    ) -> String {
        let id = format!("MOCK!{}", self.next_id);
        self.next_id += 1;
        let media = !folder && mime_for(name).is_some_and(|m| m.starts_with("image/") || m.starts_with("video/"));
        self.nodes.insert(
            id.clone(),
            Node {
                id: id.clone(),
                name: name.to_string(),
                parent: Some(parent.to_string()),
                folder,
                content,
                etag_v: 1,
                ctag_v: 1,
                mtime: mtime.unwrap_or_else(Utc::now),
                thumbnails: media,
                deleted: false,
                special: None,
            },
        );
        self.journal(&id, HashSet::new());
        id
    }

    fn change(&mut self, id: &str, f: impl FnOnce(&mut Node)) {
        let before: HashSet<String> = self.ancestors(id).into_iter().collect();
        let Some(node) = self.nodes.get_mut(id) else { return };
        f(node);
        self.journal(id, before);
    }

    fn delete_tree(&mut self, id: &str) {
        let mut order = vec![id.to_string()];
        let mut i = 0;
        while i < order.len() {
            let kids: Vec<String> = self.children_of(&order[i]).iter().map(|n| n.id.clone()).collect();
            order.extend(kids);
            i += 1;
        }
        for victim in order.iter().rev() {
            let before: HashSet<String> = self.ancestors(victim).into_iter().collect();
            if let Some(n) = self.nodes.get_mut(victim) {
                n.deleted = true;
                n.etag_v += 1;
            }
            self.journal(victim, before);
        }
    }

    /// The subtree of `scope` (itself included), parents before children.
    fn enumerate(&self, scope: &str) -> Vec<DriveItem> {
        let mut out = Vec::new();
        let mut stack = vec![scope.to_string()];
        while let Some(id) = stack.pop() {
            let Some(node) = self.live(&id) else { continue };
            out.push(self.to_item(node));
            let kids = self.children_of(&id);
            stack.extend(kids.iter().rev().map(|n| n.id.clone()));
        }
        out
    }

    /// Changes since `token` within `scope`, as delta reports them.
    fn changes_since(&self, scope: &str, token: u64) -> Vec<DriveItem> {
        let entries: Vec<&JournalEntry> = self.journal.iter().filter(|e| e.seq > token).collect();
        let in_scope = |e: &JournalEntry| scope == self.root_id || e.id == scope || e.scopes.contains(scope);
        // Last journal position of each id that concerns the scope.
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (pos, e) in entries.iter().enumerate() {
            if in_scope(e) {
                last.insert(e.id.as_str(), pos);
            }
        }
        let mut ids: Vec<(&str, usize)> = last.into_iter().collect();
        ids.sort_by_key(|(_, pos)| *pos);
        let mut out = Vec::new();
        if self.duplicates {
            for e in &entries {
                if in_scope(e) {
                    out.push(e.snapshot.clone());
                }
            }
        }
        let mut emitted: HashSet<String> = HashSet::new();
        for (id, _) in ids {
            let Some(node) = self.nodes.get(id) else { continue };
            if node.deleted || !self.is_within(id, scope) {
                // Deleted, or moved out of a folder scope: a tombstone.
                let mut item = self.to_item(node);
                if !node.deleted {
                    item = DriveItem {
                        id: item.id,
                        parent_reference: item.parent_reference,
                        deleted: Some(DeletedFacet::default()),
                        ..Default::default()
                    };
                }
                out.push(item);
                continue;
            }
            // The ancestor chain below the scope first (as the service sends it), then the item.
            let mut chain: Vec<String> = self.ancestors(id).into_iter().take_while(|a| a != scope).collect();
            chain.reverse();
            for a in chain {
                if emitted.insert(a.clone()) {
                    if let Some(n) = self.nodes.get(&a) {
                        out.push(self.to_item(n));
                    }
                }
            }
            if emitted.insert(id.to_string()) {
                out.push(self.to_item(node));
            }
        }
        out
    }

    fn page_from(&mut self, cursor: u64, offset: usize) -> DeltaPage {
        let page_size = self.page_size;
        let Some(round) = self.cursors.get(&cursor) else {
            return DeltaPage::default();
        };
        let end = (offset + page_size).min(round.items.len());
        let items = round.items[offset.min(end)..end].to_vec();
        if end < round.items.len() {
            DeltaPage {
                items,
                next_link: Some(format!("mock://delta/next?cursor={cursor}&offset={end}")),
                delta_link: None,
            }
        } else {
            let Cursor { scope, token, .. } = self.cursors.remove(&cursor).expect("present");
            DeltaPage {
                items,
                next_link: None,
                delta_link: Some(format!("mock://delta?scope={scope}&token={token}")),
            }
        }
    }
}

/// The parameters of a `mock://` link.
fn link_params(link: &str) -> HashMap<String, String> {
    let query = link.split_once('?').map(|(_, q)| q).unwrap_or("");
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl State {
    fn start_round(&mut self, scope: String, since: Option<u64>) -> DeltaPage {
        let token = self.seq;
        let items = match since {
            None => self.enumerate(&scope),
            Some(t) => self.changes_since(&scope, t),
        };
        let cursor = self.next_cursor;
        self.next_cursor += 1;
        self.cursors.insert(cursor, Cursor { items, scope, token });
        self.page_from(cursor, 0)
    }

    fn check_scope(&self, scope: &str) -> Result<(), DriveError> {
        if scope != self.root_id && !self.folder_delta_supported {
            return Err(DriveError::NotSupported(
                "view.delta can only be called on the root".into(),
            ));
        }
        if self.live(scope).is_none() {
            return Err(not_found("delta folder"));
        }
        Ok(())
    }

    fn delta_page(&mut self, request: &DeltaRequest) -> Result<DeltaPage, DriveError> {
        match request {
            DeltaRequest::Full { folder_id } => {
                let scope = folder_id.clone().unwrap_or_else(|| self.root_id.clone());
                self.check_scope(&scope)?;
                Ok(self.start_round(scope, None))
            }
            DeltaRequest::Link(link) if link.starts_with("mock://delta/next?") => {
                let p = link_params(link);
                let cursor = p.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
                let offset = p.get("offset").and_then(|c| c.parse().ok()).unwrap_or(0);
                if !self.cursors.contains_key(&cursor) {
                    return Err(DriveError::Other {
                        status: Some(400),
                        message: "unknown delta page link".into(),
                    });
                }
                Ok(self.page_from(cursor, offset))
            }
            DeltaRequest::Link(link) if link.starts_with("mock://delta?") => {
                let p = link_params(link);
                let scope = p.get("scope").cloned().unwrap_or_else(|| self.root_id.clone());
                self.check_scope(&scope)?;
                let token = p.get("token").and_then(|t| t.parse::<u64>().ok());
                if let Some(t) = token {
                    if t < self.min_valid_token {
                        return Err(DriveError::ResyncRequired {
                            location: Some(format!("mock://delta?scope={scope}")),
                        });
                    }
                }
                Ok(self.start_round(scope, token))
            }
            DeltaRequest::Link(_) => Err(DriveError::Other {
                status: Some(400),
                message: "not a delta link of this drive".into(),
            }),
        }
    }

    fn require_live(&self, id: &str) -> Result<&Node, DriveError> {
        self.live(id).ok_or_else(|| not_found("item"))
    }

    fn require_folder(&self, id: &str) -> Result<(), DriveError> {
        match self.live(id) {
            Some(n) if n.folder => Ok(()),
            Some(_) => Err(DriveError::Conflict("the parent is not a folder".into())),
            None => Err(not_found("parent folder")),
        }
    }

    fn check_tag(&self, node: &Node, if_match: Option<&str>) -> Result<(), DriveError> {
        if let Some(tag) = if_match {
            let item = self.to_item(node);
            if item.e_tag.as_deref() != Some(tag) && item.c_tag.as_deref() != Some(tag) {
                return Err(DriveError::PreconditionFailed("ETag does not match".into()));
            }
        }
        Ok(())
    }

    fn upload(&mut self, request: UploadRequest) -> Result<DriveItem, DriveError> {
        if self.quota.is_exceeded() {
            return Err(DriveError::QuotaExceeded);
        }
        let content = match request.source {
            UploadSource::Bytes(b) => b,
            UploadSource::File(path) => Bytes::from(std::fs::read(&path).map_err(|e| DriveError::Other {
                status: None,
                message: format!("reading the upload source: {e}"),
            })?),
        };
        let modified = request.modified.unwrap_or_else(Utc::now);
        let id = match request.target {
            UploadTarget::Replace { item_id, if_match } => {
                let node = self.require_live(&item_id)?;
                if node.folder {
                    return Err(DriveError::Conflict("cannot upload over a folder".into()));
                }
                self.check_tag(node, if_match.as_deref())?;
                item_id
            }
            UploadTarget::New { parent_id, name } => {
                self.require_folder(&parent_id)?;
                match self.child_by_name(&parent_id, &name) {
                    None => self.create(&parent_id, &name, false, Bytes::new(), Some(modified)),
                    Some(existing) => match request.conflict {
                        ConflictBehavior::Fail => return Err(DriveError::Conflict("nameAlreadyExists".into())),
                        ConflictBehavior::Replace => existing,
                        ConflictBehavior::Rename => {
                            let mut n = 1;
                            let free = loop {
                                let candidate = match name.rsplit_once('.') {
                                    Some((stem, ext)) => format!("{stem} {n}.{ext}"),
                                    None => format!("{name} {n}"),
                                };
                                if self.child_by_name(&parent_id, &candidate).is_none() {
                                    break candidate;
                                }
                                n += 1;
                            };
                            self.create(&parent_id, &free, false, Bytes::new(), Some(modified))
                        }
                    },
                }
            }
        };
        self.change(&id, |n| {
            n.content = content;
            n.ctag_v += 1;
            n.etag_v += 1;
            n.mtime = modified;
        });
        let node = self.nodes.get(&id).expect("uploaded");
        Ok(self.to_item(node))
    }
}

/// Encoded thumbnail JPEGs per named size (made once per process).
fn thumbnail_jpeg(size: &str) -> Option<Bytes> {
    static JPEGS: OnceLock<HashMap<&'static str, Bytes>> = OnceLock::new();
    let all = JPEGS.get_or_init(|| {
        THUMB_SIZES
            .iter()
            .map(|&(name, edge)| {
                let (w, h) = (edge, edge * 3 / 4);
                let img =
                    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128]));
                let mut out = Vec::new();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
                    .encode_image(&img)
                    .expect("encoding a JPEG in memory");
                (name, Bytes::from(out))
            })
            .collect()
    });
    all.get(size).cloned()
}

#[async_trait]
impl DriveApi for MockDrive {
    async fn drive(&self) -> Result<Drive, DriveError> {
        self.enter(MockOp::Drive).await;
        let s = self.state.lock();
        Ok(Drive {
            id: s.drive_id.clone(),
            drive_type: Some("personal".into()),
            owner: None,
            quota: Some(s.quota.clone()),
        })
    }

    async fn item(&self, id: &str) -> Result<DriveItem, DriveError> {
        self.enter(MockOp::Item).await;
        let s = self.state.lock();
        let id = if id == "root" {
            s.root_id.clone()
        } else {
            id.to_string()
        };
        s.require_live(&id).map(|n| s.to_item(n))
    }

    async fn item_by_path(&self, path: &str) -> Result<DriveItem, DriveError> {
        self.enter(MockOp::ItemByPath).await;
        let s = self.state.lock();
        let id = s.resolve_path(path).ok_or_else(|| not_found("path"))?;
        s.require_live(&id).map(|n| s.to_item(n))
    }

    async fn special_folder(&self, name: &str) -> Result<DriveItem, DriveError> {
        self.enter(MockOp::SpecialFolder).await;
        let s = self.state.lock();
        let id = s.specials.get(name).ok_or_else(|| not_found("special folder"))?;
        s.require_live(id).map(|n| s.to_item(n))
    }

    async fn children(&self, id: &str) -> Result<Vec<DriveItem>, DriveError> {
        self.enter(MockOp::Children).await;
        let s = self.state.lock();
        s.require_live(id)?;
        Ok(s.children_of(id).into_iter().map(|n| s.to_item(n)).collect())
    }

    async fn delta_page(&self, request: &DeltaRequest) -> Result<DeltaPage, DriveError> {
        let full = matches!(request, DeltaRequest::Full { .. })
            || matches!(request, DeltaRequest::Link(l) if l.starts_with("mock://delta?") && !l.contains("token="));
        self.enter(if full { MockOp::DeltaFull } else { MockOp::DeltaPage })
            .await;
        self.state.lock().delta_page(request)
    }

    async fn thumbnails(&self, id: &str) -> Result<Vec<ThumbnailSet>, DriveError> {
        self.enter(MockOp::Thumbnails).await;
        let s = self.state.lock();
        let node = s.require_live(id)?;
        if node.folder || !node.thumbnails {
            return Ok(Vec::new());
        }
        let thumb = |name: &str, edge: u32| Thumbnail {
            width: Some(edge as i64),
            height: Some((edge * 3 / 4) as i64),
            url: Some(format!("mock://thumbnail/{}/{name}?v={}", node.id, node.ctag_v)),
            source_item_id: None,
        };
        Ok(vec![ThumbnailSet {
            id: "0".into(),
            small: Some(thumb("small", 96)),
            medium: Some(thumb("medium", 176)),
            large: Some(thumb("large", 800)),
            ..Default::default()
        }])
    }

    async fn download_thumbnail(&self, url: &str) -> Result<Bytes, DriveError> {
        self.enter(MockOp::DownloadThumbnail).await;
        let path = url
            .strip_prefix("mock://thumbnail/")
            .ok_or_else(|| not_found("thumbnail"))?;
        let path = path.split('?').next().unwrap_or_default();
        let (id, size) = path.rsplit_once('/').ok_or_else(|| not_found("thumbnail"))?;
        {
            let s = self.state.lock();
            let node = s.require_live(id)?;
            if !node.thumbnails {
                return Err(not_found("thumbnail"));
            }
        }
        thumbnail_jpeg(size).ok_or_else(|| not_found("thumbnail size"))
    }

    async fn download_range(&self, id: &str, offset: u64, len: u64) -> Result<Bytes, DriveError> {
        self.enter(MockOp::DownloadContent).await;
        let s = self.state.lock();
        let node = s.require_live(id)?;
        if node.folder {
            return Err(not_found("file"));
        }
        let total = node.content.len() as u64;
        if offset > total {
            return Err(DriveError::Other {
                status: Some(416),
                message: "range not satisfiable".into(),
            });
        }
        let end = offset.saturating_add(len).min(total);
        Ok(node.content.slice(offset as usize..end as usize))
    }

    async fn create_folder(&self, parent_id: &str, name: &str) -> Result<DriveItem, DriveError> {
        self.enter(MockOp::CreateFolder).await;
        let mut s = self.state.lock();
        s.require_folder(parent_id)?;
        if s.child_by_name(parent_id, name).is_some() {
            return Err(DriveError::Conflict("nameAlreadyExists".into()));
        }
        let id = s.create(parent_id, name, true, Bytes::new(), None);
        let node = s.nodes.get(&id).expect("created");
        Ok(s.to_item(node))
    }

    async fn delete(&self, id: &str, if_match: Option<&str>) -> Result<(), DriveError> {
        self.enter(MockOp::Delete).await;
        let mut s = self.state.lock();
        let node = s.require_live(id)?;
        s.check_tag(node, if_match)?;
        s.delete_tree(id);
        Ok(())
    }

    async fn move_item(&self, id: &str, request: &MoveRequest) -> Result<DriveItem, DriveError> {
        self.enter(MockOp::Move).await;
        let mut s = self.state.lock();
        let node = s.require_live(id)?.clone();
        s.check_tag(&node, request.if_match.as_deref())?;
        let parent = request
            .new_parent_id
            .clone()
            .or(node.parent.clone())
            .ok_or_else(|| DriveError::Other {
                status: Some(400),
                message: "cannot move the root".into(),
            })?;
        s.require_folder(&parent)?;
        if s.is_within(&parent, id) {
            return Err(DriveError::Other {
                status: Some(400),
                message: "cannot move a folder into itself".into(),
            });
        }
        let name = request.new_name.clone().unwrap_or(node.name.clone());
        if s.child_by_name(&parent, &name).is_some_and(|other| other != id) {
            return Err(DriveError::Conflict("nameAlreadyExists".into()));
        }
        s.change(id, |n| {
            n.parent = Some(parent);
            n.name = name;
            n.etag_v += 1;
        });
        let node = s.nodes.get(id).expect("moved");
        Ok(s.to_item(node))
    }

    async fn upload(&self, request: UploadRequest) -> Result<DriveItem, DriveError> {
        self.enter(MockOp::Upload).await;
        self.state.lock().upload(request)
    }

    async fn restore(&self, id: &str, parent_id: Option<&str>, name: Option<&str>) -> Result<DriveItem, DriveError> {
        self.enter(MockOp::Restore).await;
        let mut s = self.state.lock();
        let node = s
            .nodes
            .get(id)
            .filter(|n| n.deleted)
            .ok_or_else(|| not_found("deleted item"))?;
        let parent = parent_id
            .map(str::to_string)
            .or(node.parent.clone())
            .unwrap_or_default();
        s.require_folder(&parent)?;
        let name = name.map(str::to_string).unwrap_or(node.name.clone());
        if s.child_by_name(&parent, &name).is_some() {
            return Err(DriveError::Conflict("nameAlreadyExists".into()));
        }
        // The item and every descendant deleted with it come back.
        let subtree: Vec<String> = s
            .nodes
            .values()
            .filter(|n| n.deleted && n.id != id && s.ancestors(&n.id).iter().any(|a| a == id))
            .map(|n| n.id.clone())
            .collect();
        s.change(id, |n| {
            n.deleted = false;
            n.parent = Some(parent);
            n.name = name;
            n.etag_v += 1;
        });
        for d in subtree {
            s.change(&d, |n| n.deleted = false);
        }
        let node = s.nodes.get(id).expect("restored");
        Ok(s.to_item(node))
    }
}

/// How [`FailingDrive`] fails.
struct FailurePlan {
    next: u32,
    next_error: Option<DriveError>,
    fraction: f64,
    fraction_error: Option<DriveError>,
    only: Option<HashSet<MockOp>>,
    rng: rand::rngs::StdRng,
    injected: u64,
}

/// Wraps a drive and fails chosen calls with chosen errors: the next N calls, and/or a random fraction of
/// calls (seeded, so runs repeat), optionally only for some operations.
pub struct FailingDrive<D> {
    inner: D,
    plan: Mutex<FailurePlan>,
}

impl<D: DriveApi> FailingDrive<D> {
    pub fn new(inner: D) -> FailingDrive<D> {
        FailingDrive {
            inner,
            plan: Mutex::new(FailurePlan {
                next: 0,
                next_error: None,
                fraction: 0.0,
                fraction_error: None,
                only: None,
                rng: rand::rngs::StdRng::seed_from_u64(7),
                injected: 0,
            }),
        }
    }
    pub fn inner(&self) -> &D {
        &self.inner
    }
    /// The next `n` calls (of the selected operations) fail with `error`.
    pub fn fail_next(&self, n: u32, error: DriveError) {
        let mut p = self.plan.lock();
        p.next = n;
        p.next_error = Some(error);
    }
    /// Each call (of the selected operations) fails with `error` with probability `fraction`.
    pub fn fail_fraction(&self, fraction: f64, error: DriveError) {
        let mut p = self.plan.lock();
        p.fraction = fraction.clamp(0.0, 1.0);
        p.fraction_error = Some(error);
    }
    /// Restrict failures to these operations (`None`: all).
    pub fn only_ops(&self, ops: Option<&[MockOp]>) {
        self.plan.lock().only = ops.map(|o| o.iter().copied().collect());
    }
    /// Stop failing.
    pub fn heal(&self) {
        let mut p = self.plan.lock();
        p.next = 0;
        p.fraction = 0.0;
    }
    /// Failures injected so far.
    pub fn injected(&self) -> u64 {
        self.plan.lock().injected
    }

    fn check(&self, op: MockOp) -> Result<(), DriveError> {
        let mut p = self.plan.lock();
        if p.only.as_ref().is_some_and(|only| !only.contains(&op)) {
            return Ok(());
        }
        if p.next > 0 {
            if let Some(e) = p.next_error.clone() {
                p.next -= 1;
                p.injected += 1;
                return Err(e);
            }
        }
        if p.fraction > 0.0 {
            let roll: f64 = p.rng.random();
            if roll < p.fraction {
                if let Some(e) = p.fraction_error.clone() {
                    p.injected += 1;
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl<D: DriveApi> DriveApi for FailingDrive<D> {
    async fn drive(&self) -> Result<Drive, DriveError> {
        self.check(MockOp::Drive)?;
        self.inner.drive().await
    }
    async fn item(&self, id: &str) -> Result<DriveItem, DriveError> {
        self.check(MockOp::Item)?;
        self.inner.item(id).await
    }
    async fn item_by_path(&self, path: &str) -> Result<DriveItem, DriveError> {
        self.check(MockOp::ItemByPath)?;
        self.inner.item_by_path(path).await
    }
    async fn special_folder(&self, name: &str) -> Result<DriveItem, DriveError> {
        self.check(MockOp::SpecialFolder)?;
        self.inner.special_folder(name).await
    }
    async fn children(&self, id: &str) -> Result<Vec<DriveItem>, DriveError> {
        self.check(MockOp::Children)?;
        self.inner.children(id).await
    }
    async fn delta_page(&self, request: &DeltaRequest) -> Result<DeltaPage, DriveError> {
        let op = match request {
            DeltaRequest::Full { .. } => MockOp::DeltaFull,
            DeltaRequest::Link(_) => MockOp::DeltaPage,
        };
        self.check(op)?;
        self.inner.delta_page(request).await
    }
    async fn thumbnails(&self, id: &str) -> Result<Vec<ThumbnailSet>, DriveError> {
        self.check(MockOp::Thumbnails)?;
        self.inner.thumbnails(id).await
    }
    async fn download_thumbnail(&self, url: &str) -> Result<Bytes, DriveError> {
        self.check(MockOp::DownloadThumbnail)?;
        self.inner.download_thumbnail(url).await
    }
    async fn download_range(&self, id: &str, offset: u64, len: u64) -> Result<Bytes, DriveError> {
        self.check(MockOp::DownloadContent)?;
        self.inner.download_range(id, offset, len).await
    }
    async fn create_folder(&self, parent_id: &str, name: &str) -> Result<DriveItem, DriveError> {
        self.check(MockOp::CreateFolder)?;
        self.inner.create_folder(parent_id, name).await
    }
    async fn delete(&self, id: &str, if_match: Option<&str>) -> Result<(), DriveError> {
        self.check(MockOp::Delete)?;
        self.inner.delete(id, if_match).await
    }
    async fn move_item(&self, id: &str, request: &MoveRequest) -> Result<DriveItem, DriveError> {
        self.check(MockOp::Move)?;
        self.inner.move_item(id, request).await
    }
    async fn upload(&self, request: UploadRequest) -> Result<DriveItem, DriveError> {
        self.check(MockOp::Upload)?;
        self.inner.upload(request).await
    }
    async fn restore(&self, id: &str, parent_id: Option<&str>, name: Option<&str>) -> Result<DriveItem, DriveError> {
        self.check(MockOp::Restore)?;
        self.inner.restore(id, parent_id, name).await
    }
}
