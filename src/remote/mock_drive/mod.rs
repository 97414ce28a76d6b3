//! Test doubles for [`DriveApi`]: [`MockDrive`], an in-memory OneDrive, and [`FailingDrive`], a wrapper that
//! fails chosen calls and cuts chosen download bodies short (the approach of mountpoint-s3's mock and failure
//! clients).
//!
//! `MockDrive` keeps a tree of folders and files with ids (`MOCK!<n>`), eTag/cTag versions, the quickXorHash of
//! the content, a `photos` special folder (display name chosen by the test: it is localized on OneDrive), and a
//! change journal that gives real delta semantics: full enumeration (folder-scoped or from the root, parents
//! before children, paged), a `token=latest` link (no items), incremental rounds since a delta link (the changed
//! items with their ancestor chain, deletes as `deleted` tombstones, items moved out of a folder scope as
//! deletes), the same item repeated with older states first when asked (the last occurrence wins), and `410`
//! resync on demand. Thumbnails are tiny real JPEGs (made with `image`) at OneDrive's named sizes; an item can have
//! none. Downloads are pinned to the cTag (another one answers `PreconditionFailed`), come in chunks of a chosen
//! size, and are logged ([`DownloadRecord`]) with the bytes their bodies handed out. Every request is counted per
//! [`MockOp`]; an optional per-request latency simulates the network (`children` pages of a chosen size cost one
//! request each), and the drive can be set offline.
//!
//! Compiled for the crate's own unit tests and with the `mock` cargo feature (which the integration tests and
//! benchmarks enable through the crate's dev-dependency on itself), never into the shipped binary.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;

use super::drive_api::{DeltaPage, DeltaRequest, DownloadStream, DriveApi, DriveError, MoveRequest, UploadRequest};
use super::models::{Drive, DriveItem, Quota, Thumbnail, ThumbnailSet};
use futures::StreamExt;

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
    /// A `token=latest` request (no items, a delta link for "from now on").
    DeltaLatest,
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

mod failing;
mod journal;

pub use failing::{DownloadFailure, DownloadPick, FailingDrive};

/// One download request seen by a [`MockDrive`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadRecord {
    pub item_id: String,
    pub start: u64,
    pub end: u64,
}

impl DownloadRecord {
    /// Bytes asked for.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}
use journal::*;

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
                fixed_ctag: None,
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
                children_page_size: usize::MAX,
                duplicates: false,
                folder_delta_supported: true,
                latency: Duration::ZERO,
                offline: false,
                chunk_size: 64 * 1024,
                downloads: Vec::new(),
                bytes_served: Default::default(),
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
    /// While offline every request fails with [`DriveError::Offline`] (after being counted).
    pub fn set_offline(&self, offline: bool) {
        self.state.lock().offline = offline;
    }
    /// Download bodies come in chunks of at most `n` bytes (64 KiB by default).
    pub fn set_download_chunk_size(&self, n: usize) {
        self.state.lock().chunk_size = n.max(1);
    }
    /// Items per delta page.
    pub fn set_page_size(&self, n: usize) {
        self.state.lock().page_size = n.max(1);
    }
    /// Items per `children` page (as `$top`): a listing of more costs one counted request (and one latency) per
    /// page. Unbounded by default (one request per listing).
    pub fn set_children_page_size(&self, n: usize) {
        self.state.lock().children_page_size = n.max(1);
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
        self.count(MockOp::DeltaFull) + self.count(MockOp::DeltaPage) + self.count(MockOp::DeltaLatest)
    }
    pub fn total_requests(&self) -> u64 {
        self.state.lock().counts.values().sum()
    }
    /// Forgets the request counts, the download log and the bytes served.
    pub fn reset_counts(&self) {
        let mut s = self.state.lock();
        s.counts.clear();
        s.downloads.clear();
        s.bytes_served.store(0, std::sync::atomic::Ordering::Relaxed);
    }
    /// Every download request so far, in the order they were made.
    pub fn downloads(&self) -> Vec<DownloadRecord> {
        self.state.lock().downloads.clone()
    }
    /// Bytes handed out by download bodies so far (counted as they are consumed).
    pub fn bytes_served(&self) -> u64 {
        self.state
            .lock()
            .bytes_served
            .load(std::sync::atomic::Ordering::Relaxed)
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

    /// Adds a file with a chosen id and cTag at the drive root, or gives the file `id` new content under cTag
    /// `ctag`: for tests that build their own store rows (the content cache's) and name versions themselves.
    pub fn insert_file(&self, id: &str, ctag: &str, content: impl Into<Bytes>) {
        let content = content.into();
        let mut s = self.state.lock();
        if !s.nodes.contains_key(id) {
            let root = s.root_id.clone();
            s.nodes.insert(
                id.to_string(),
                Node {
                    id: id.to_string(),
                    name: id.to_string(),
                    parent: Some(root),
                    folder: false,
                    content: Bytes::new(),
                    etag_v: 0,
                    ctag_v: 0,
                    fixed_ctag: None,
                    mtime: base_time(),
                    thumbnails: false,
                    deleted: false,
                    special: None,
                },
            );
        }
        let ctag = ctag.to_string();
        s.change(id, |n| {
            n.content = content;
            n.ctag_v += 1;
            n.etag_v += 1;
            n.fixed_ctag = Some(ctag);
            n.deleted = false;
        });
    }

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
            n.fixed_ctag = None;
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

    /// Counts a request of `op`, waits the latency, and fails it when the drive is offline.
    async fn enter(&self, op: MockOp) -> Result<(), DriveError> {
        let latency = {
            let mut s = self.state.lock();
            *s.counts.entry(op).or_insert(0) += 1;
            s.latency
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if self.state.lock().offline {
            return Err(DriveError::Offline("the mock drive is offline".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl DriveApi for MockDrive {
    async fn drive(&self) -> Result<Drive, DriveError> {
        self.enter(MockOp::Drive).await?;
        let s = self.state.lock();
        Ok(Drive {
            id: s.drive_id.clone(),
            drive_type: Some("personal".into()),
            owner: None,
            quota: Some(s.quota.clone()),
        })
    }

    async fn item(&self, id: &str) -> Result<DriveItem, DriveError> {
        self.enter(MockOp::Item).await?;
        let s = self.state.lock();
        let id = if id == "root" {
            s.root_id.clone()
        } else {
            id.to_string()
        };
        s.require_live(&id).map(|n| s.to_item(n))
    }

    async fn item_by_path(&self, path: &str) -> Result<DriveItem, DriveError> {
        self.enter(MockOp::ItemByPath).await?;
        let s = self.state.lock();
        let id = s.resolve_path(path).ok_or_else(|| not_found("path"))?;
        s.require_live(&id).map(|n| s.to_item(n))
    }

    async fn special_folder(&self, name: &str) -> Result<DriveItem, DriveError> {
        self.enter(MockOp::SpecialFolder).await?;
        let s = self.state.lock();
        let id = s.specials.get(name).ok_or_else(|| not_found("special folder"))?;
        s.require_live(id).map(|n| s.to_item(n))
    }

    async fn children(&self, id: &str) -> Result<Vec<DriveItem>, DriveError> {
        self.enter(MockOp::Children).await?;
        let (items, page_size) = {
            let s = self.state.lock();
            s.require_live(id)?;
            let items: Vec<DriveItem> = s.children_of(id).into_iter().map(|n| s.to_item(n)).collect();
            (items, s.children_page_size)
        };
        // Each further page is one more request, after the previous one.
        for _ in 1..items.len().div_ceil(page_size) {
            self.enter(MockOp::Children).await?;
        }
        Ok(items)
    }

    /// Like `children`, each file with its custom-size thumbnails (`c{W}x{H}` in `sizes`; others ignored), an
    /// empty list for files without thumbnails; counted as `Children` requests.
    async fn children_with_thumbnails(&self, id: &str, sizes: &str) -> Result<Vec<DriveItem>, DriveError> {
        let mut items = self.children(id).await?;
        let s = self.state.lock();
        for item in items.iter_mut().filter(|i| !i.is_folder()) {
            let Ok(node) = s.require_live(&item.id) else { continue };
            let mut set = ThumbnailSet {
                id: "0".into(),
                ..Default::default()
            };
            if node.thumbnails {
                for size in sizes.split(',') {
                    let Some((w, h)) = parse_custom_size(size) else {
                        continue;
                    };
                    let (tw, th) = fit_4_3(w, h);
                    let thumb = Thumbnail {
                        width: Some(tw as i64),
                        height: Some(th as i64),
                        url: Some(format!("mock://thumbnail/{}/c{w}x{h}?v={}", node.id, node.ctag_v)),
                        source_item_id: None,
                    };
                    set.custom
                        .insert(size.to_string(), serde_json::to_value(thumb).unwrap_or_default());
                }
            }
            item.thumbnails = Some(if set.custom.is_empty() { Vec::new() } else { vec![set] });
        }
        Ok(items)
    }

    async fn delta_page(&self, request: &DeltaRequest) -> Result<DeltaPage, DriveError> {
        let full = matches!(request, DeltaRequest::Full { .. })
            || matches!(request, DeltaRequest::Link(l) if l.starts_with("mock://delta?") && !l.contains("token="));
        let op = match request {
            DeltaRequest::Latest { .. } => MockOp::DeltaLatest,
            _ if full => MockOp::DeltaFull,
            _ => MockOp::DeltaPage,
        };
        self.enter(op).await?;
        self.state.lock().delta_page(request)
    }

    async fn thumbnails(&self, id: &str) -> Result<Vec<ThumbnailSet>, DriveError> {
        self.enter(MockOp::Thumbnails).await?;
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

    async fn thumbnail_custom(&self, id: &str, size: &str) -> Result<Option<Thumbnail>, DriveError> {
        self.enter(MockOp::Thumbnails).await?;
        let Some((w, h)) = parse_custom_size(size) else {
            return Err(DriveError::Other {
                status: Some(400),
                message: "invalid thumbnail size".into(),
            });
        };
        let s = self.state.lock();
        let node = s.require_live(id)?;
        if node.folder || !node.thumbnails {
            return Ok(None);
        }
        let (tw, th) = fit_4_3(w, h);
        Ok(Some(Thumbnail {
            width: Some(tw as i64),
            height: Some(th as i64),
            url: Some(format!("mock://thumbnail/{}/c{w}x{h}?v={}", node.id, node.ctag_v)),
            source_item_id: None,
        }))
    }

    async fn download_thumbnail(&self, url: &str) -> Result<Bytes, DriveError> {
        self.enter(MockOp::DownloadThumbnail).await?;
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

    async fn download(&self, id: &str, ctag: &str, start: u64, end: u64) -> Result<DownloadStream, DriveError> {
        self.state.lock().downloads.push(DownloadRecord {
            item_id: id.to_string(),
            start,
            end,
        });
        self.enter(MockOp::DownloadContent).await?;
        let s = self.state.lock();
        let node = s.require_live(id)?;
        if node.folder {
            return Err(not_found("file"));
        }
        if node.ctag() != ctag {
            return Err(DriveError::PreconditionFailed(
                "the content changed on OneDrive since the file was opened".into(),
            ));
        }
        let total = node.content.len() as u64;
        if start >= total || start >= end {
            return Err(DriveError::Other {
                status: Some(416),
                message: format!("bytes {start}..{end} are beyond the end of the content"),
            });
        }
        let body = node.content.slice(start as usize..end.min(total) as usize);
        let (chunk, served) = (s.chunk_size, s.bytes_served.clone());
        let chunks = (0..body.len().div_ceil(chunk)).map(move |i| {
            let piece = body.slice(i * chunk..((i + 1) * chunk).min(body.len()));
            served.fetch_add(piece.len() as u64, std::sync::atomic::Ordering::Relaxed);
            Ok(piece)
        });
        Ok(futures::stream::iter(chunks).boxed())
    }

    async fn create_folder(&self, parent_id: &str, name: &str) -> Result<DriveItem, DriveError> {
        self.enter(MockOp::CreateFolder).await?;
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
        self.enter(MockOp::Delete).await?;
        let mut s = self.state.lock();
        let node = s.require_live(id)?;
        s.check_tag(node, if_match)?;
        s.delete_tree(id);
        Ok(())
    }

    async fn move_item(&self, id: &str, request: &MoveRequest) -> Result<DriveItem, DriveError> {
        self.enter(MockOp::Move).await?;
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
            if let Some(modified) = request.modified {
                n.mtime = modified;
            }
            n.etag_v += 1;
        });
        let node = s.nodes.get(id).expect("moved");
        Ok(s.to_item(node))
    }

    async fn upload(&self, request: UploadRequest) -> Result<DriveItem, DriveError> {
        self.enter(MockOp::Upload).await?;
        self.state.lock().upload(request)
    }

    async fn restore(&self, id: &str, parent_id: Option<&str>, name: Option<&str>) -> Result<DriveItem, DriveError> {
        self.enter(MockOp::Restore).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(items: &[DriveItem]) -> Vec<String> {
        items.iter().map(|i| i.name.clone().unwrap_or_default()).collect()
    }

    #[tokio::test]
    async fn full_enumeration_is_paged_parents_first() {
        let d = MockDrive::new();
        let g = d.mkdir_p("/Pictures/Samsung Gallery");
        d.seed_gallery(&g, 25);
        d.set_page_size(10);
        let first = d
            .delta_page(&DeltaRequest::Full {
                folder_id: Some(g.clone()),
            })
            .await
            .unwrap();
        assert_eq!(first.items.len(), 10);
        assert!(first.delta_link.is_none());
        let round = d
            .delta(DeltaRequest::Full {
                folder_id: Some(g.clone()),
            })
            .await
            .unwrap();
        assert_eq!(
            round.items.len(),
            1 + 3 + 25,
            "gallery, DCIM, Camera, Screenshots and the files"
        );
        let pos = |id: &str| round.items.iter().position(|i| i.id == id).unwrap();
        for item in &round.items[1..] {
            assert!(pos(item.parent_id().unwrap()) < pos(&item.id), "parent after child");
        }
        assert_eq!(d.count(MockOp::DeltaFull), 2);
        // Nothing changed: an empty incremental round.
        let again = d.delta(DeltaRequest::Link(round.delta_link)).await.unwrap();
        assert!(again.items.is_empty());
    }

    #[tokio::test]
    async fn incremental_rounds_report_changes_duplicates_and_resync() {
        let d = MockDrive::new();
        let g = d.mkdir_p("/Pictures/Samsung Gallery");
        let outside = d.mkdir_p("/Documents");
        let a = d.add_file(&g, "a.jpg", "a");
        let b = d.add_file(&g, "b.jpg", "b");
        let link = d
            .delta(DeltaRequest::Full {
                folder_id: Some(g.clone()),
            })
            .await
            .unwrap()
            .delta_link;
        d.rename(&a, "a1.jpg");
        d.rename(&a, "a2.jpg");
        d.move_to(&b, &outside);
        d.add_file(&outside, "elsewhere.txt", "x");
        let round = d.delta(DeltaRequest::Link(link.clone())).await.unwrap();
        assert_eq!(names(&round.items), ["a2.jpg", ""]);
        assert!(round.items[1].is_deleted(), "moved out of the scope reads as deleted");
        d.set_duplicate_entries(true);
        let dup = d.delta(DeltaRequest::Link(link.clone())).await.unwrap();
        let a_states: Vec<_> = dup
            .items
            .iter()
            .filter(|i| i.id == a)
            .map(|i| i.name.clone().unwrap())
            .collect();
        assert_eq!(a_states.last().unwrap(), "a2.jpg");
        assert!(a_states.len() > 1);
        d.expire_delta_tokens();
        match d.delta(DeltaRequest::Link(link)).await {
            Err(DriveError::ResyncRequired { location: Some(loc) }) => {
                let full = d.delta(DeltaRequest::Link(loc)).await.unwrap();
                assert!(full.items.iter().any(|i| i.id == a));
                let after = d.delta(DeltaRequest::Link(full.delta_link)).await.unwrap();
                assert!(after.items.is_empty(), "a fresh link works after a resync");
            }
            other => panic!("expected a resync, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn folder_delta_can_be_refused_and_thumbnails_absent() {
        let d = MockDrive::new();
        let g = d.mkdir_p("/Samsung Gallery");
        let f = d.add_file(&g, "x.jpg", "x");
        d.set_folder_delta_supported(false);
        let e = d
            .delta_page(&DeltaRequest::Full { folder_id: Some(g) })
            .await
            .unwrap_err();
        assert!(e.is_not_supported());
        assert_eq!(d.thumbnails(&f).await.unwrap().len(), 1);
        d.set_thumbnails_available(&f, false);
        assert!(d.thumbnails(&f).await.unwrap().is_empty());
        let jpeg = thumbnail_jpeg("medium").unwrap();
        let img = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((img.width(), img.height()), (176, 132));
        assert_eq!(d.count(MockOp::DownloadContent), 0);
    }
}
