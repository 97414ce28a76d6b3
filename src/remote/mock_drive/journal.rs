//! The state of a [`MockDrive`](super::MockDrive): the item tree, the change journal and the delta semantics built
//! on it (full enumeration, changes since a token, tombstones, duplicates, paging), uploads, and the thumbnail
//! JPEGs.

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::time::Duration;

use super::{DownloadRecord, MockOp};
use crate::remote::drive_api::{
    ConflictBehavior, DeltaPage, DeltaRequest, DriveError, UploadRequest, UploadSource, UploadTarget,
};
use crate::remote::models::{
    DeletedFacet, DriveItem, FileFacet, FileSystemInfo, FolderFacet, Hashes, ImageFacet, ItemReference, Quota,
    SpecialFolder,
};
use crate::remote::QuickXorHash;

/// OneDrive's named thumbnail sizes: longest edge in pixels (landscape 4:3 sources).
pub(super) const THUMB_SIZES: [(&str, u32); 3] = [("small", 96), ("medium", 176), ("large", 800)];

#[derive(Clone, Debug)]
pub(super) struct Node {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) parent: Option<String>,
    pub(super) folder: bool,
    pub(super) content: Bytes,
    pub(super) etag_v: u64,
    pub(super) ctag_v: u64,
    /// A cTag chosen by the test ([`MockDrive::insert_file`](super::MockDrive::insert_file)) instead of one made
    /// from `ctag_v`; cleared by the next content change.
    pub(super) fixed_ctag: Option<String>,
    pub(super) mtime: DateTime<Utc>,
    pub(super) thumbnails: bool,
    pub(super) deleted: bool,
    pub(super) special: Option<String>,
}

impl Node {
    /// The content version tag, as `cTag` reports it.
    pub(super) fn ctag(&self) -> String {
        match &self.fixed_ctag {
            Some(ctag) => ctag.clone(),
            None => format!("\"c:{{{}}},{}\"", self.id, self.ctag_v),
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct JournalEntry {
    pub(super) seq: u64,
    pub(super) id: String,
    /// The item as it was right after this change.
    pub(super) snapshot: DriveItem,
    /// Every folder the item was below before or after the change (for folder-scoped delta).
    pub(super) scopes: HashSet<String>,
}

/// A delta round being paged through.
#[derive(Debug)]
pub(super) struct Cursor {
    pub(super) items: Vec<DriveItem>,
    pub(super) scope: String,
    /// The journal position the round ends at (its delta link's token).
    pub(super) token: u64,
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) drive_id: String,
    pub(super) root_id: String,
    pub(super) next_id: u64,
    pub(super) nodes: HashMap<String, Node>,
    pub(super) specials: HashMap<String, String>,
    pub(super) seq: u64,
    pub(super) journal: Vec<JournalEntry>,
    /// Delta tokens below this are refused with 410.
    pub(super) min_valid_token: u64,
    pub(super) cursors: HashMap<u64, Cursor>,
    pub(super) next_cursor: u64,
    pub(super) page_size: usize,
    /// Items per `children` page (each page is one counted request); unbounded by default.
    pub(super) children_page_size: usize,
    pub(super) duplicates: bool,
    pub(super) folder_delta_supported: bool,
    pub(super) latency: Duration,
    /// Every request fails with `Offline` while set.
    pub(super) offline: bool,
    /// Download bodies come in chunks of at most this many bytes.
    pub(super) chunk_size: usize,
    /// Every download request, in order.
    pub(super) downloads: Vec<DownloadRecord>,
    /// Bytes handed out by download bodies (counted as they are consumed).
    pub(super) bytes_served: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub(super) counts: HashMap<MockOp, u64>,
    pub(super) quota: Quota,
}

pub(super) fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 15, 14, 22, 33)
        .single()
        .expect("valid time")
}

pub(super) fn mime_for(name: &str) -> Option<&'static str> {
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

pub(super) fn not_found(what: &str) -> DriveError {
    DriveError::NotFound(what.to_string())
}

impl State {
    pub(super) fn live(&self, id: &str) -> Option<&Node> {
        self.nodes.get(id).filter(|n| !n.deleted)
    }

    pub(super) fn child_by_name(&self, parent: &str, name: &str) -> Option<String> {
        let key = name.to_lowercase();
        self.nodes
            .values()
            .find(|n| !n.deleted && n.parent.as_deref() == Some(parent) && n.name.to_lowercase() == key)
            .map(|n| n.id.clone())
    }

    pub(super) fn children_of(&self, parent: &str) -> Vec<&Node> {
        let mut v: Vec<&Node> = self
            .nodes
            .values()
            .filter(|n| !n.deleted && n.parent.as_deref() == Some(parent))
            .collect();
        v.sort_by_key(|n| n.name.to_lowercase());
        v
    }

    pub(super) fn resolve_path(&self, path: &str) -> Option<String> {
        let mut current = self.root_id.clone();
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            current = self.child_by_name(&current, segment)?;
        }
        Some(current)
    }

    /// Ids of the folders above `id`, nearest first.
    pub(super) fn ancestors(&self, id: &str) -> Vec<String> {
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

    pub(super) fn is_within(&self, id: &str, scope: &str) -> bool {
        id == scope || self.ancestors(id).iter().any(|a| a == scope)
    }

    pub(super) fn to_item(&self, n: &Node) -> DriveItem {
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
            c_tag: Some(n.ctag()),
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
            image: (!n.folder && is_image).then_some(ImageFacet {
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

    pub(super) fn journal(&mut self, id: &str, before: HashSet<String>) {
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

    pub(super) fn create(
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
                fixed_ctag: None,
                mtime: mtime.unwrap_or_else(Utc::now),
                thumbnails: media,
                deleted: false,
                special: None,
            },
        );
        self.journal(&id, HashSet::new());
        id
    }

    pub(super) fn change(&mut self, id: &str, f: impl FnOnce(&mut Node)) {
        let before: HashSet<String> = self.ancestors(id).into_iter().collect();
        let Some(node) = self.nodes.get_mut(id) else { return };
        f(node);
        self.journal(id, before);
    }

    pub(super) fn delete_tree(&mut self, id: &str) {
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
    pub(super) fn enumerate(&self, scope: &str) -> Vec<DriveItem> {
        let mut out = Vec::new();
        let mut stack = vec![scope.to_string()];
        while let Some(id) = stack.pop() {
            let Some(node) = self.live(&id) else { continue };
            out.push(self.to_item(node));
            if node.folder {
                let kids = self.children_of(&id);
                stack.extend(kids.iter().rev().map(|n| n.id.clone()));
            }
        }
        out
    }

    /// Changes since `token` within `scope`, as delta reports them.
    pub(super) fn changes_since(&self, scope: &str, token: u64) -> Vec<DriveItem> {
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

    pub(super) fn page_from(&mut self, cursor: u64, offset: usize) -> DeltaPage {
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
pub(super) fn link_params(link: &str) -> HashMap<String, String> {
    let query = link.split_once('?').map(|(_, q)| q).unwrap_or("");
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl State {
    pub(super) fn start_round(&mut self, scope: String, since: Option<u64>) -> DeltaPage {
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

    pub(super) fn check_scope(&self, scope: &str) -> Result<(), DriveError> {
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

    pub(super) fn delta_page(&mut self, request: &DeltaRequest) -> Result<DeltaPage, DriveError> {
        match request {
            DeltaRequest::Full { folder_id } => {
                let scope = folder_id.clone().unwrap_or_else(|| self.root_id.clone());
                self.check_scope(&scope)?;
                Ok(self.start_round(scope, None))
            }
            DeltaRequest::Latest { folder_id } => {
                let scope = folder_id.clone().unwrap_or_else(|| self.root_id.clone());
                self.check_scope(&scope)?;
                let now = self.seq;
                Ok(self.start_round(scope, Some(now)))
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

    pub(super) fn require_live(&self, id: &str) -> Result<&Node, DriveError> {
        self.live(id).ok_or_else(|| not_found("item"))
    }

    pub(super) fn require_folder(&self, id: &str) -> Result<(), DriveError> {
        match self.live(id) {
            Some(n) if n.folder => Ok(()),
            Some(_) => Err(DriveError::Conflict("the parent is not a folder".into())),
            None => Err(not_found("parent folder")),
        }
    }

    pub(super) fn check_tag(&self, node: &Node, if_match: Option<&str>) -> Result<(), DriveError> {
        if let Some(tag) = if_match {
            let item = self.to_item(node);
            if item.e_tag.as_deref() != Some(tag) && item.c_tag.as_deref() != Some(tag) {
                return Err(DriveError::PreconditionFailed("ETag does not match".into()));
            }
        }
        Ok(())
    }

    pub(super) fn upload(&mut self, request: UploadRequest) -> Result<DriveItem, DriveError> {
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
            n.fixed_ctag = None;
            n.etag_v += 1;
            n.mtime = modified;
        });
        let node = self.nodes.get(&id).expect("uploaded");
        Ok(self.to_item(node))
    }
}

/// `c256x256` → (256, 256).
pub(super) fn parse_custom_size(size: &str) -> Option<(u32, u32)> {
    let (w, h) = size.strip_prefix('c')?.split_once('x')?;
    let (w, h) = (w.parse().ok()?, h.trim_end_matches("_Crop").parse().ok()?);
    (w > 0 && h > 0 && w <= 4096 && h <= 4096).then_some((w, h))
}

/// A 4:3 landscape picture fitted inside `w`×`h`.
pub(super) fn fit_4_3(w: u32, h: u32) -> (u32, u32) {
    if w * 3 <= h * 4 {
        (w, (w * 3 / 4).max(1))
    } else {
        ((h * 4 / 3).max(1), h)
    }
}

/// The thumbnail JPEG of a named (`medium`) or custom (`c256x256`) size, encoded once per process.
pub(super) fn thumbnail_jpeg(size: &str) -> Option<Bytes> {
    static JPEGS: OnceLock<Mutex<HashMap<String, Bytes>>> = OnceLock::new();
    let (w, h) = match THUMB_SIZES.iter().find(|(name, _)| *name == size) {
        Some(&(_, edge)) => (edge, edge * 3 / 4),
        None => {
            let (w, h) = parse_custom_size(size)?;
            fit_4_3(w, h)
        }
    };
    let cache = JPEGS.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(b) = cache.lock().get(size) {
        return Some(b.clone());
    }
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128]));
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&img)
        .ok()?;
    let bytes = Bytes::from(out);
    cache.lock().insert(size.to_string(), bytes.clone());
    Some(bytes)
}
