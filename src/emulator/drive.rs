//! The in-memory drive of the emulator: items (folders and files) with personal-style ids, eTag/cTag versions,
//! the live tree indexed by case-folded name, the recycle bin, quota, and the change journal (a sequence number
//! per change) that delta tokens point into. Pure model: no HTTP here, errors are Graph errors.

use super::blob::Blob;
use super::errors::{GraphError, GraphResult};
use super::media::MediaKind;
use super::names::{self, fold};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

pub type ItemNo = u64;

/// Item number of the root, as on OneDrive Personal (`…!101`).
pub const ROOT_NO: ItemNo = 101;
/// Default quota: the 5 GB of a free personal account.
pub const DEFAULT_QUOTA_TOTAL: i64 = 5 * 1024 * 1024 * 1024;

/// `@microsoft.graph.conflictBehavior`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Conflict {
    Fail,
    Replace,
    Rename,
}

impl Conflict {
    pub fn parse(s: &str) -> GraphResult<Self> {
        match s {
            "fail" => Ok(Conflict::Fail),
            "replace" => Ok(Conflict::Replace),
            "rename" => Ok(Conflict::Rename),
            other => Err(GraphError::invalid(format!("Invalid conflictBehavior '{other}'"))),
        }
    }
}

#[derive(Clone, Debug)]
pub struct FileData {
    pub blob: Blob,
    pub mime: String,
    /// quickXorHash of this content version; `None` while still being computed.
    pub hash: Option<String>,
    pub media: MediaKind,
    pub taken: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug)]
pub enum ItemKind {
    Folder { special: Option<String> },
    File(FileData),
}

#[derive(Clone, Debug, PartialEq)]
pub enum ItemState {
    Live,
    /// In the recycle bin; `top` is the item the delete was made on.
    Recycled {
        deleted_at: DateTime<Utc>,
        top: ItemNo,
    },
    /// Gone for good (recycle bin emptied).
    Gone,
}

#[derive(Clone, Debug)]
pub struct Item {
    pub no: ItemNo,
    pub name: String,
    pub parent: Option<ItemNo>,
    pub kind: ItemKind,
    pub etag_ver: u64,
    pub ctag_ver: u64,
    pub created: DateTime<Utc>,
    pub modified: DateTime<Utc>,
    pub fs_created: DateTime<Utc>,
    pub fs_modified: DateTime<Utc>,
    pub description: Option<String>,
    /// Journal sequence number of the item's last change.
    pub change_seq: u64,
    pub state: ItemState,
    /// Parent before the last move (folder-scoped delta reports a move out of scope as a delete).
    pub former_parent: Option<ItemNo>,
    /// A control said this item has no thumbnails (e.g. just uploaded).
    pub no_thumbnail: bool,
}

impl Item {
    pub fn is_folder(&self) -> bool {
        matches!(self.kind, ItemKind::Folder { .. })
    }
    pub fn file(&self) -> Option<&FileData> {
        match &self.kind {
            ItemKind::File(f) => Some(f),
            _ => None,
        }
    }
    pub fn is_live(&self) -> bool {
        self.state == ItemState::Live
    }
}

/// The client-settable part of a change (PATCH, or a session's `item`).
#[derive(Clone, Debug, Default)]
pub struct ItemPatch {
    pub name: Option<String>,
    pub parent: Option<ItemNo>,
    pub fs_created: Option<DateTime<Utc>>,
    pub fs_modified: Option<DateTime<Utc>>,
    pub description: Option<String>,
}

/// New content for a file.
#[derive(Clone, Debug)]
pub struct NewContent {
    pub blob: Blob,
    pub hash: Option<String>,
    pub mime: Option<String>,
    pub media: MediaKind,
    pub taken: Option<DateTime<Utc>>,
}

impl NewContent {
    pub fn plain(blob: Blob, hash: Option<String>) -> Self {
        Self {
            blob,
            hash,
            mime: None,
            media: MediaKind::Other,
            taken: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct QuotaView {
    pub total: i64,
    pub used: i64,
    pub remaining: i64,
    pub deleted: i64,
    pub state: &'static str,
}

/// One entry of a delta round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeltaEntry {
    pub no: ItemNo,
    pub deleted: bool,
}

#[derive(Debug)]
pub struct Drive {
    pub drive_id: String,
    pub(crate) items: HashMap<ItemNo, Item>,
    pub(crate) children: HashMap<ItemNo, BTreeMap<String, ItemNo>>,
    pub(crate) next_no: ItemNo,
    pub(crate) seq: u64,
    /// Delta tokens of an older epoch are refused with 410.
    pub epoch: u64,
    pub quota_total: i64,
    /// Added to the computed `used` (a control sets `used` directly through it).
    pub quota_used_extra: i64,
    /// Seeding: no quota checks (each costs a scan of the drive).
    pub(crate) skip_quota: bool,
    /// The display name the `cameraroll` special folder gets when it is made ("Camera Roll" in English;
    /// localized elsewhere, e.g. "Rullino").
    pub camera_roll_name: String,
}

/// The English display name of the `cameraroll` special folder.
pub const DEFAULT_CAMERA_ROLL_NAME: &str = "Camera Roll";

impl Drive {
    pub fn new(drive_id: String, now: DateTime<Utc>) -> Self {
        let mut d = Drive {
            drive_id,
            items: HashMap::new(),
            children: HashMap::new(),
            next_no: ROOT_NO + 1,
            seq: 1,
            epoch: 1,
            quota_total: DEFAULT_QUOTA_TOTAL,
            quota_used_extra: 0,
            skip_quota: false,
            camera_roll_name: DEFAULT_CAMERA_ROLL_NAME.to_string(),
        };
        d.items.insert(
            ROOT_NO,
            new_item(ROOT_NO, "root".into(), None, folder_kind(None), now, 1),
        );
        d.children.insert(ROOT_NO, BTreeMap::new());
        d
    }

    /// A random personal-style drive id: 16 lowercase hex digits.
    pub fn random_id() -> String {
        format!("{:016x}", rand::random::<u64>() | (1 << 60))
    }

    // ----- ids, lookup, paths -----

    pub fn id_of(&self, no: ItemNo) -> String {
        format!("{}!{}", self.drive_id.to_uppercase(), no)
    }

    /// Parses `<DRIVEID>!<n>` (drive part case-insensitive) or `root`.
    pub fn parse_id(&self, id: &str) -> Option<ItemNo> {
        if id.eq_ignore_ascii_case("root") {
            return Some(ROOT_NO);
        }
        let (drive, n) = id.split_once('!')?;
        if !drive.eq_ignore_ascii_case(&self.drive_id)
            && !drive
                .trim_start_matches('0')
                .eq_ignore_ascii_case(self.drive_id.trim_start_matches('0'))
        {
            return None;
        }
        n.parse().ok()
    }

    pub fn item(&self, no: ItemNo) -> Option<&Item> {
        self.items.get(&no)
    }

    pub(crate) fn item_mut(&mut self, no: ItemNo) -> Option<&mut Item> {
        self.items.get_mut(&no)
    }

    /// A live item, else 404.
    pub fn live(&self, no: ItemNo) -> GraphResult<&Item> {
        match self.items.get(&no) {
            Some(i) if i.is_live() => Ok(i),
            _ => Err(GraphError::not_found(self.id_of(no))),
        }
    }

    pub fn live_folder(&self, no: ItemNo) -> GraphResult<&Item> {
        let i = self.live(no)?;
        if !i.is_folder() {
            return Err(GraphError::invalid("The item is not a folder"));
        }
        Ok(i)
    }

    pub fn live_by_id(&self, id: &str) -> GraphResult<ItemNo> {
        let no = self.parse_id(id).ok_or_else(|| GraphError::not_found(id))?;
        self.live(no)?;
        Ok(no)
    }

    pub fn child_by_name(&self, parent: ItemNo, name: &str) -> Option<ItemNo> {
        self.children.get(&parent)?.get(&fold(name)).copied()
    }

    /// Live children, sorted by case-folded name.
    pub fn children_of(&self, parent: ItemNo) -> Vec<ItemNo> {
        self.children
            .get(&parent)
            .map(|m| m.values().copied().collect())
            .unwrap_or_default()
    }

    /// Live children after the case-folded name `after`, at most `limit`, plus whether more follow.
    pub fn children_page(&self, parent: ItemNo, after: Option<&str>, limit: usize) -> (Vec<ItemNo>, bool) {
        let Some(map) = self.children.get(&parent) else {
            return (Vec::new(), false);
        };
        let iter: Box<dyn Iterator<Item = (&String, &ItemNo)>> = match after {
            Some(a) => Box::new(map.range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))),
            None => Box::new(map.iter()),
        };
        let mut out: Vec<ItemNo> = iter.take(limit + 1).map(|(_, n)| *n).collect();
        let more = out.len() > limit;
        out.truncate(limit);
        (out, more)
    }

    pub fn child_count(&self, no: ItemNo) -> usize {
        self.children.get(&no).map(|m| m.len()).unwrap_or(0)
    }

    /// Walks `segments` (already percent-decoded) from `base`, case-insensitively.
    pub fn resolve_path(&self, base: ItemNo, segments: &[String]) -> GraphResult<ItemNo> {
        let mut cur = self.live(base)?.no;
        for seg in segments {
            cur = self
                .child_by_name(cur, seg)
                .ok_or_else(|| GraphError::not_found(format!("path segment '{seg}'")))?;
        }
        Ok(cur)
    }

    /// Segment names from the root to `no` (empty for the root).
    pub fn names_from_root(&self, no: ItemNo) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = no;
        while let Some(item) = self.items.get(&cur) {
            match item.parent {
                Some(p) => {
                    out.push(item.name.clone());
                    cur = p;
                }
                None => break,
            }
        }
        out.reverse();
        out
    }

    /// `parentReference.path` for children of `no`: `/drive/root:` or `/drive/root:/Pictures/...`.
    pub fn api_path(&self, no: ItemNo) -> String {
        let names = self.names_from_root(no);
        if names.is_empty() {
            "/drive/root:".into()
        } else {
            format!("/drive/root:/{}", names.join("/"))
        }
    }

    pub fn depth(&self, no: ItemNo) -> usize {
        let mut d = 0;
        let mut cur = no;
        while let Some(p) = self.items.get(&cur).and_then(|i| i.parent) {
            d += 1;
            cur = p;
        }
        d
    }

    /// Whether `no` is `ancestor` or below it, following parent links whatever the items' states.
    pub fn is_within(&self, no: ItemNo, ancestor: ItemNo) -> bool {
        let mut cur = Some(no);
        while let Some(c) = cur {
            if c == ancestor {
                return true;
            }
            cur = self.items.get(&c).and_then(|i| i.parent);
        }
        false
    }

    /// Sum of file sizes below a folder (live items), or a file's size.
    pub fn size_of(&self, no: ItemNo) -> u64 {
        match self.items.get(&no).map(|i| &i.kind) {
            Some(ItemKind::File(f)) => f.blob.len(),
            Some(ItemKind::Folder { .. }) => self.children_of(no).iter().map(|c| self.size_of(*c)).sum(),
            None => 0,
        }
    }

    // ----- journal and tags -----

    pub fn current_seq(&self) -> u64 {
        self.seq
    }

    pub(super) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Records a change of `no`: new eTag (and cTag when `content`), journal entry, ancestors' cTags.
    pub(super) fn touch(&mut self, no: ItemNo, content: bool, now: DateTime<Utc>) {
        let seq = self.next_seq();
        if let Some(i) = self.items.get_mut(&no) {
            i.etag_ver += 1;
            if content {
                i.ctag_ver += 1;
            }
            i.change_seq = seq;
            i.modified = now;
        }
        self.bump_ancestors(no);
    }

    /// A descendant changed: folders above get a new cTag (not a new eTag).
    pub(super) fn bump_ancestors(&mut self, no: ItemNo) {
        let mut cur = self.items.get(&no).and_then(|i| i.parent);
        while let Some(p) = cur {
            match self.items.get_mut(&p) {
                Some(i) => {
                    i.ctag_ver += 1;
                    cur = i.parent;
                }
                None => break,
            }
        }
    }

    fn guid(&self, no: ItemNo) -> String {
        let d = self.drive_id.to_uppercase();
        let d = format!("{d:0>16}");
        format!("{}-{}-{}-0000-{:012X}", &d[0..8], &d[8..12], &d[12..16], no)
    }

    pub fn etag(&self, item: &Item) -> String {
        format!("\"{{{}}},{}\"", self.guid(item.no), item.etag_ver)
    }

    pub fn ctag(&self, item: &Item) -> String {
        format!("\"c:{{{}}},{}\"", self.guid(item.no), item.ctag_ver)
    }

    /// `If-Match` / `If-None-Match` value matches the item's eTag or cTag (`*` matches anything).
    pub fn tag_matches(&self, item: &Item, header: &str) -> bool {
        let h = header.trim();
        if h == "*" {
            return true;
        }
        let (e, c) = (self.etag(item), self.ctag(item));
        h.contains(&e) || h.contains(&c) || unquote(h) == unquote(&e) || unquote(h) == unquote(&c)
    }

    // ----- quota -----

    pub fn quota(&self) -> QuotaView {
        let (mut live, mut deleted) = (0i64, 0i64);
        for i in self.items.values() {
            if let ItemKind::File(f) = &i.kind {
                match i.state {
                    ItemState::Live => live += f.blob.len() as i64,
                    ItemState::Recycled { .. } => deleted += f.blob.len() as i64,
                    ItemState::Gone => {}
                }
            }
        }
        let used = live + deleted + self.quota_used_extra;
        let remaining = self.quota_total - used;
        let state = if remaining <= 0 {
            "exceeded"
        } else if (remaining as f64) < self.quota_total as f64 * 0.01 {
            "critical"
        } else if (remaining as f64) < self.quota_total as f64 * 0.10 {
            "nearing"
        } else {
            "normal"
        };
        QuotaView {
            total: self.quota_total,
            used,
            remaining,
            deleted,
            state,
        }
    }

    /// Sets total and/or used (used through an offset, so later uploads still count).
    pub fn set_quota(&mut self, total: Option<i64>, used: Option<i64>) {
        if let Some(t) = total {
            self.quota_total = t;
        }
        if let Some(u) = used {
            let actual = self.quota().used - self.quota_used_extra;
            self.quota_used_extra = u - actual;
        }
    }

    /// 507 when `growth` more bytes do not fit, or when the drive is over quota and something new is made.
    pub fn check_space(&self, growth: i64, creates: bool) -> GraphResult<()> {
        if self.skip_quota {
            return Ok(());
        }
        let q = self.quota();
        if (creates && q.state == "exceeded") || (growth > 0 && growth > q.remaining) {
            return Err(GraphError::quota());
        }
        Ok(())
    }

    // ----- delta -----

    /// Items of one delta round for the subtree `scope`: everything (no `since`), or what changed after `since`
    /// with the ancestors of changed items; live items parents first, then deletes children first.
    pub fn delta_entries(&self, scope: ItemNo, since: Option<u64>) -> Vec<DeltaEntry> {
        let Some(since) = since else {
            let mut out = Vec::new();
            let mut queue = VecDeque::from([scope]);
            while let Some(n) = queue.pop_front() {
                out.push(DeltaEntry { no: n, deleted: false });
                queue.extend(self.children_of(n));
            }
            return out;
        };
        let mut live: HashSet<ItemNo> = HashSet::new();
        let mut deleted: Vec<ItemNo> = Vec::new();
        for i in self.items.values().filter(|i| i.change_seq > since) {
            let in_scope = self.is_within(i.no, scope);
            if i.is_live() && in_scope {
                let mut cur = Some(i.no);
                while let Some(c) = cur {
                    if !live.insert(c) || c == scope {
                        break;
                    }
                    cur = self.items.get(&c).and_then(|x| x.parent);
                }
            } else if (!i.is_live() && in_scope && i.no != scope)
                || (i.is_live() && i.former_parent.is_some_and(|p| self.is_within(p, scope)))
            {
                // Deleted, or moved out of the scope.
                deleted.push(i.no);
            }
        }
        let mut live: Vec<ItemNo> = live.into_iter().collect();
        live.sort_by_key(|n| (self.depth(*n), *n));
        deleted.sort_by_key(|n| (std::cmp::Reverse(self.depth(*n)), *n));
        live.into_iter()
            .map(|no| DeltaEntry { no, deleted: false })
            .chain(deleted.into_iter().map(|no| DeltaEntry { no, deleted: true }))
            .collect()
    }

    /// All live items (not the root), parents first, for the state dump.
    pub fn live_items(&self) -> Vec<ItemNo> {
        let mut v = self.delta_entries(ROOT_NO, None);
        v.remove(0);
        v.into_iter().map(|e| e.no).collect()
    }
}

fn unquote(s: &str) -> &str {
    s.trim().trim_matches('"')
}

pub(super) fn folder_kind(special: Option<String>) -> ItemKind {
    ItemKind::Folder { special }
}

pub(super) fn file_kind(name: &str, c: NewContent) -> ItemKind {
    ItemKind::File(FileData {
        mime: c.mime.unwrap_or_else(|| names::mime_for(name).to_string()),
        blob: c.blob,
        hash: c.hash,
        media: c.media,
        taken: c.taken,
    })
}

pub(super) fn new_item(
    no: ItemNo,
    name: String,
    parent: Option<ItemNo>,
    kind: ItemKind,
    now: DateTime<Utc>,
    seq: u64,
) -> Item {
    Item {
        no,
        name,
        parent,
        kind,
        etag_ver: 1,
        ctag_ver: 1,
        created: now,
        modified: now,
        fs_created: now,
        fs_modified: now,
        description: None,
        change_seq: seq,
        state: ItemState::Live,
        former_parent: None,
        no_thumbnail: false,
    }
}

pub(super) fn apply_times(item: &mut Item, p: &ItemPatch) {
    if let Some(t) = p.fs_created {
        item.fs_created = t;
    }
    if let Some(t) = p.fs_modified {
        item.fs_modified = t;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    fn drive() -> Drive {
        Drive::new("0123456789abcdef".into(), now())
    }

    fn put(d: &mut Drive, parent: ItemNo, name: &str, data: &[u8]) -> ItemNo {
        let c = NewContent::plain(
            Blob::bytes(data.to_vec()),
            Some(crate::emulator::quickxor::QuickXor::of(data)),
        );
        d.write_file(parent, name, c, Conflict::Fail, &ItemPatch::default(), now())
            .unwrap()
            .0
    }

    #[test]
    fn ids_are_personal_style() {
        let d = drive();
        assert_eq!(d.id_of(ROOT_NO), "0123456789ABCDEF!101");
        assert_eq!(d.parse_id("0123456789abcdef!101"), Some(ROOT_NO));
        assert_eq!(d.parse_id("123456789ABCDEF!7"), Some(7), "15-digit drive id tolerated");
        assert_eq!(d.parse_id("FFFF!7"), None);
        assert_eq!(Drive::random_id().len(), 16);
    }

    #[test]
    fn names_are_case_insensitive_and_case_preserving() {
        let mut d = drive();
        let f = put(&mut d, ROOT_NO, "IMG.jpg", b"a");
        assert_eq!(d.child_by_name(ROOT_NO, "img.JPG"), Some(f));
        assert_eq!(d.item(f).unwrap().name, "IMG.jpg");
        let c = NewContent::plain(Blob::bytes(&b"b"[..]), None);
        let e = d
            .write_file(ROOT_NO, "img.jpg", c, Conflict::Fail, &ItemPatch::default(), now())
            .unwrap_err();
        assert_eq!(e.code, "nameAlreadyExists");
        let c = NewContent::plain(Blob::bytes(&b"b"[..]), None);
        let (r, created) = d
            .write_file(ROOT_NO, "img.jpg", c, Conflict::Rename, &ItemPatch::default(), now())
            .unwrap();
        assert!(created);
        assert_eq!(d.item(r).unwrap().name, "img 1.jpg");
    }

    #[test]
    fn etag_ctag_rules() {
        let mut d = drive();
        let folder = d.create_folder(ROOT_NO, "A", Conflict::Fail, now()).unwrap();
        let f = put(&mut d, folder, "x.jpg", b"one");
        let tags = |d: &Drive, n| (d.etag(d.item(n).unwrap()), d.ctag(d.item(n).unwrap()));
        let (fe, fc) = tags(&d, f);
        let (de, dc) = tags(&d, folder);
        // Rename: eTag changes, cTag stays; the folder's cTag changes, its eTag does not.
        d.update(
            f,
            &ItemPatch {
                name: Some("y.jpg".into()),
                ..Default::default()
            },
            now(),
        )
        .unwrap();
        let (fe2, fc2) = tags(&d, f);
        assert_ne!(fe, fe2);
        assert_eq!(fc, fc2);
        let (de2, dc2) = tags(&d, folder);
        assert_eq!(de, de2);
        assert_ne!(dc, dc2);
        // Content edit: both change.
        d.replace_content(
            f,
            NewContent::plain(Blob::bytes(&b"two"[..]), None),
            &ItemPatch::default(),
            now(),
        )
        .unwrap();
        let (fe3, fc3) = tags(&d, f);
        assert_ne!(fe2, fe3);
        assert_ne!(fc2, fc3);
        assert!(d.tag_matches(d.item(f).unwrap(), &fe3));
        assert!(d.tag_matches(d.item(f).unwrap(), &fc3));
        assert!(!d.tag_matches(d.item(f).unwrap(), &fe2));
    }

    #[test]
    fn move_into_own_subtree_is_refused() {
        let mut d = drive();
        let a = d.create_folder(ROOT_NO, "a", Conflict::Fail, now()).unwrap();
        let b = d.create_folder(a, "b", Conflict::Fail, now()).unwrap();
        let e = d
            .update(
                a,
                &ItemPatch {
                    parent: Some(b),
                    ..Default::default()
                },
                now(),
            )
            .unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        let e = d
            .update(
                a,
                &ItemPatch {
                    parent: Some(a),
                    ..Default::default()
                },
                now(),
            )
            .unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
    }

    #[test]
    fn delete_recycles_subtree_and_restore_brings_it_back() {
        let mut d = drive();
        let a = d.create_folder(ROOT_NO, "a", Conflict::Fail, now()).unwrap();
        let f = put(&mut d, a, "f.bin", &[7u8; 1000]);
        d.delete(a, now()).unwrap();
        assert!(d.live(a).is_err() && d.live(f).is_err());
        assert_eq!(d.quota().deleted, 1000);
        assert_eq!(d.recycle_bin().iter().map(|i| i.no).collect::<Vec<_>>(), vec![a]);
        // Name is free again while in the bin; restoring then clashes.
        let other = d.create_folder(ROOT_NO, "A", Conflict::Fail, now()).unwrap();
        assert_eq!(d.restore(a, None, None, now()).unwrap_err().code, "nameAlreadyExists");
        d.delete(other, now()).unwrap();
        d.restore(a, None, None, now()).unwrap();
        assert!(d.live(f).is_ok());
        assert_eq!(d.resolve_path(ROOT_NO, &["A".into(), "F.BIN".into()]).unwrap(), f);
        assert_eq!(d.quota().deleted, 0);
    }

    #[test]
    fn delta_reports_changes_ancestors_and_deletes() {
        let mut d = drive();
        let a = d.create_folder(ROOT_NO, "a", Conflict::Fail, now()).unwrap();
        let b = d.create_folder(a, "b", Conflict::Fail, now()).unwrap();
        let f = put(&mut d, b, "f", b"1");
        let g = put(&mut d, ROOT_NO, "g", b"1");
        let full: Vec<ItemNo> = d.delta_entries(ROOT_NO, None).iter().map(|e| e.no).collect();
        assert_eq!(full[0], ROOT_NO);
        assert!(full.iter().position(|n| *n == b) < full.iter().position(|n| *n == f));
        let t = d.current_seq();
        assert!(d.delta_entries(ROOT_NO, Some(t)).is_empty());
        d.replace_content(
            f,
            NewContent::plain(Blob::bytes(&b"2"[..]), None),
            &ItemPatch::default(),
            now(),
        )
        .unwrap();
        d.delete(g, now()).unwrap();
        let inc = d.delta_entries(ROOT_NO, Some(t));
        let want = vec![
            DeltaEntry {
                no: ROOT_NO,
                deleted: false,
            },
            DeltaEntry { no: a, deleted: false },
            DeltaEntry { no: b, deleted: false },
            DeltaEntry { no: f, deleted: false },
            DeltaEntry { no: g, deleted: true },
        ];
        assert_eq!(inc, want);
        // Folder-scoped: g is outside `a`; moving f out of `a` reads as a delete there.
        let t2 = d.current_seq();
        d.update(
            f,
            &ItemPatch {
                parent: Some(ROOT_NO),
                ..Default::default()
            },
            now(),
        )
        .unwrap();
        assert_eq!(d.delta_entries(a, Some(t2)), vec![DeltaEntry { no: f, deleted: true }]);
        assert_eq!(
            d.delta_entries(ROOT_NO, Some(t2)),
            vec![
                DeltaEntry {
                    no: ROOT_NO,
                    deleted: false
                },
                DeltaEntry { no: f, deleted: false }
            ]
        );
    }

    #[test]
    fn quota_states_and_507() {
        let mut d = drive();
        d.set_quota(Some(1000), None);
        assert_eq!(d.quota().state, "normal");
        put(&mut d, ROOT_NO, "a", &[0u8; 950]);
        assert_eq!(d.quota().state, "nearing");
        d.set_quota(None, Some(995));
        assert_eq!(d.quota().state, "critical");
        let c = NewContent::plain(Blob::bytes(vec![0u8; 10]), None);
        let e = d
            .write_file(ROOT_NO, "b", c, Conflict::Fail, &ItemPatch::default(), now())
            .unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (507, "quotaLimitReached"));
        d.set_quota(None, Some(1000));
        assert_eq!(d.quota().state, "exceeded");
        assert_eq!(
            d.create_folder(ROOT_NO, "x", Conflict::Fail, now()).unwrap_err().code,
            "quotaLimitReached"
        );
    }

    #[test]
    fn special_photos_is_pictures() {
        let mut d = drive();
        let p = d.special("photos", now()).unwrap();
        assert_eq!(d.item(p).unwrap().name, "Pictures");
        assert_eq!(d.special("PHOTOS", now()).unwrap(), p);
        assert_eq!(d.api_path(p), "/drive/root:/Pictures");
        assert!(d.special("nope", now()).is_err());
    }
}
