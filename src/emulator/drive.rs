//! The in-memory drive of the emulator: items (folders and files) with personal-style ids, eTag/cTag versions,
//! the live tree indexed by case-folded name, the recycle bin, quota, and the change journal (a sequence number
//! per change) that delta tokens point into. Pure model: no HTTP here, errors are Graph errors.

use super::blob::Blob;
use super::errors::{GraphError, GraphResult};
use super::media::{MediaKind, SeedFile};
use super::names::{self, fold, validate_name};
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
}

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

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Records a change of `no`: new eTag (and cTag when `content`), journal entry, ancestors' cTags.
    fn touch(&mut self, no: ItemNo, content: bool, now: DateTime<Utc>) {
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
    fn bump_ancestors(&mut self, no: ItemNo) {
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
        let q = self.quota();
        if (creates && q.state == "exceeded") || (growth > 0 && growth > q.remaining) {
            return Err(GraphError::quota());
        }
        Ok(())
    }

    // ----- changes -----

    fn alloc(&mut self) -> ItemNo {
        let n = self.next_no;
        self.next_no += 1;
        n
    }

    fn link(&mut self, parent: ItemNo, name: &str, no: ItemNo) {
        self.children.entry(parent).or_default().insert(fold(name), no);
    }

    fn unlink(&mut self, parent: ItemNo, name: &str) {
        if let Some(m) = self.children.get_mut(&parent) {
            m.remove(&fold(name));
        }
    }

    /// A free name for `rename`: `name`, `name 1`, `name 2`, ...
    fn free_name(&self, parent: ItemNo, name: &str, is_folder: bool) -> String {
        let mut n = 1;
        loop {
            let cand = names::numbered(name, n, is_folder);
            if self.child_by_name(parent, &cand).is_none() {
                return cand;
            }
            n += 1;
        }
    }

    /// Creates a folder; returns it and whether it was created (false: an existing one was kept).
    pub fn create_folder(
        &mut self,
        parent: ItemNo,
        name: &str,
        conflict: Conflict,
        now: DateTime<Utc>,
    ) -> GraphResult<ItemNo> {
        validate_name(name)?;
        self.live_folder(parent)?;
        self.check_space(0, true)?;
        let mut name = name.to_string();
        if let Some(existing) = self.child_by_name(parent, &name) {
            match conflict {
                Conflict::Fail => return Err(GraphError::name_exists(&name)),
                Conflict::Rename => name = self.free_name(parent, &name, true),
                Conflict::Replace => self.delete(existing, now)?,
            }
        }
        Ok(self.insert_new(parent, name, folder_kind(None), now, None))
    }

    fn insert_new(
        &mut self,
        parent: ItemNo,
        name: String,
        kind: ItemKind,
        now: DateTime<Utc>,
        patch: Option<&ItemPatch>,
    ) -> ItemNo {
        let no = self.alloc();
        let seq = self.next_seq();
        let mut item = new_item(no, name.clone(), Some(parent), kind, now, seq);
        if let Some(p) = patch {
            apply_times(&mut item, p);
            if p.description.is_some() {
                item.description = p.description.clone();
            }
        }
        if item.is_folder() {
            self.children.insert(no, BTreeMap::new());
        }
        self.items.insert(no, item);
        self.link(parent, &name, no);
        self.bump_ancestors(no);
        no
    }

    /// Makes every folder of `segments` below `base` that is missing; returns the last.
    pub fn ensure_folders(&mut self, base: ItemNo, segments: &[String], now: DateTime<Utc>) -> GraphResult<ItemNo> {
        let mut cur = self.live_folder(base)?.no;
        for seg in segments {
            cur = match self.child_by_name(cur, seg) {
                Some(c) => self.live_folder(c)?.no,
                None => self.create_folder(cur, seg, Conflict::Fail, now)?,
            };
        }
        Ok(cur)
    }

    /// Writes a file named `name` in `parent`: creates it, or per `conflict` replaces the existing file's
    /// content (same id) or picks a free name. Returns the item and whether it is new.
    pub fn write_file(
        &mut self,
        parent: ItemNo,
        name: &str,
        content: NewContent,
        conflict: Conflict,
        patch: &ItemPatch,
        now: DateTime<Utc>,
    ) -> GraphResult<(ItemNo, bool)> {
        validate_name(name)?;
        self.live_folder(parent)?;
        let mut name = name.to_string();
        if let Some(existing) = self.child_by_name(parent, &name) {
            match conflict {
                Conflict::Fail => return Err(GraphError::name_exists(&name)),
                Conflict::Rename => name = self.free_name(parent, &name, false),
                Conflict::Replace => {
                    if self.live(existing)?.is_folder() {
                        return Err(GraphError::name_exists(&name));
                    }
                    self.replace_content(existing, content, patch, now)?;
                    return Ok((existing, false));
                }
            }
        }
        self.check_space(content.blob.len() as i64, true)?;
        let kind = file_kind(&name, content);
        Ok((self.insert_new(parent, name, kind, now, Some(patch)), true))
    }

    /// New content for an existing file (same id): new eTag and cTag.
    pub fn replace_content(
        &mut self,
        no: ItemNo,
        content: NewContent,
        patch: &ItemPatch,
        now: DateTime<Utc>,
    ) -> GraphResult<()> {
        let item = self.live(no)?;
        let old = match &item.kind {
            ItemKind::File(f) => f.blob.len() as i64,
            ItemKind::Folder { .. } => return Err(GraphError::invalid("Cannot write content to a folder")),
        };
        self.check_space(content.blob.len() as i64 - old, false)?;
        let name = item.name.clone();
        let item = self.items.get_mut(&no).expect("live item");
        item.kind = file_kind(&name, content);
        item.fs_modified = now;
        apply_times(item, patch);
        item.no_thumbnail = false;
        self.touch(no, true, now);
        Ok(())
    }

    /// PATCH: rename, move, times, description. 409 on a name clash, 400 on a bad name or a cycle.
    pub fn update(&mut self, no: ItemNo, patch: &ItemPatch, now: DateTime<Utc>) -> GraphResult<()> {
        let item = self.live(no)?;
        let old_parent = item.parent;
        let old_name = item.name.clone();
        let new_name = patch.name.clone().unwrap_or_else(|| old_name.clone());
        let new_parent = patch.parent.or(old_parent);
        let moving = new_parent != old_parent;
        let renaming = new_name != old_name;
        if (moving || renaming) && old_parent.is_none() {
            return Err(GraphError::invalid("The root cannot be renamed or moved"));
        }
        if renaming {
            validate_name(&new_name)?;
        }
        if let Some(np) = new_parent.filter(|_| moving) {
            self.live_folder(np)?;
            if self.is_within(np, no) {
                return Err(GraphError::invalid(
                    "Cannot move a folder into itself or one of its descendants",
                ));
            }
        }
        if moving || renaming {
            let np = new_parent.expect("non-root");
            if let Some(other) = self.child_by_name(np, &new_name) {
                if other != no {
                    return Err(GraphError::name_exists(&new_name));
                }
            }
        }
        let metadata = moving
            || renaming
            || patch.fs_created.is_some()
            || patch.fs_modified.is_some()
            || patch.description.is_some();
        if moving || renaming {
            // The old place's folders see a change too.
            self.bump_ancestors(no);
            self.unlink(old_parent.expect("non-root"), &old_name);
            self.link(new_parent.expect("non-root"), &new_name, no);
        }
        let item = self.items.get_mut(&no).expect("live item");
        item.name = new_name;
        if moving {
            item.former_parent = old_parent;
            item.parent = new_parent;
        }
        apply_times(item, patch);
        if patch.description.is_some() {
            item.description = patch.description.clone();
        }
        if metadata {
            self.touch(no, false, now);
        }
        Ok(())
    }

    /// DELETE: the item and its subtree go to the recycle bin.
    pub fn delete(&mut self, no: ItemNo, now: DateTime<Utc>) -> GraphResult<()> {
        let item = self.live(no)?;
        let parent = item.parent.ok_or_else(|| {
            GraphError::new(
                axum::http::StatusCode::FORBIDDEN,
                "accessDenied",
                "The root cannot be deleted",
            )
        })?;
        let name = item.name.clone();
        self.bump_ancestors(no);
        self.unlink(parent, &name);
        for n in self.subtree(no) {
            let seq = self.next_seq();
            let i = self.items.get_mut(&n).expect("subtree item");
            i.state = ItemState::Recycled {
                deleted_at: now,
                top: no,
            };
            i.change_seq = seq;
        }
        Ok(())
    }

    /// `no` and everything below it (following the children index, whatever the states), parents first.
    fn subtree(&self, no: ItemNo) -> Vec<ItemNo> {
        let mut out = vec![no];
        let mut i = 0;
        while i < out.len() {
            let cur = out[i];
            out.extend(self.children.get(&cur).into_iter().flat_map(|m| m.values().copied()));
            i += 1;
        }
        out
    }

    /// Restores a recycled item (to its original parent unless `parent` given), optionally renamed.
    pub fn restore(
        &mut self,
        no: ItemNo,
        parent: Option<ItemNo>,
        name: Option<&str>,
        now: DateTime<Utc>,
    ) -> GraphResult<()> {
        let item = self
            .items
            .get(&no)
            .ok_or_else(|| GraphError::not_found(self.id_of(no)))?;
        let top = match item.state {
            ItemState::Recycled { top, .. } => top,
            _ => return Err(GraphError::not_found(format!("{} in the recycle bin", self.id_of(no)))),
        };
        let target = parent.or(item.parent).expect("recycled items have parents");
        let name = name.map(str::to_string).unwrap_or_else(|| item.name.clone());
        validate_name(&name)?;
        self.live_folder(target)?;
        if self.child_by_name(target, &name).is_some() {
            return Err(GraphError::name_exists(&name));
        }
        let size = self
            .subtree(no)
            .iter()
            .filter_map(|n| self.items.get(n)?.file().map(|f| f.blob.len() as i64))
            .sum::<i64>();
        let _ = size; // recycle-bin bytes already count in `used`
        let old_parent = item.parent;
        if no != top {
            if let Some(op) = old_parent {
                self.unlink(op, &self.items[&no].name.clone());
            }
        }
        for n in self.subtree(no) {
            let seq = self.next_seq();
            let i = self.items.get_mut(&n).expect("subtree item");
            if matches!(i.state, ItemState::Recycled { top: t, .. } if t == top) {
                i.state = ItemState::Live;
                i.change_seq = seq;
            }
        }
        let i = self.items.get_mut(&no).expect("item");
        if Some(target) != old_parent {
            i.former_parent = old_parent;
        }
        i.parent = Some(target);
        i.name = name.clone();
        self.link(target, &name, no);
        self.touch(no, false, now);
        Ok(())
    }

    /// Top-level recycle-bin entries, oldest first.
    pub fn recycle_bin(&self) -> Vec<&Item> {
        let mut v: Vec<&Item> = self
            .items
            .values()
            .filter(|i| matches!(i.state, ItemState::Recycled { top, .. } if top == i.no))
            .collect();
        v.sort_by_key(|i| {
            (
                match i.state {
                    ItemState::Recycled { deleted_at, .. } => deleted_at,
                    _ => i.modified,
                },
                i.no,
            )
        });
        v
    }

    /// Empties the recycle bin for good.
    pub fn empty_recycle_bin(&mut self) {
        for i in self.items.values_mut() {
            if matches!(i.state, ItemState::Recycled { .. }) {
                i.state = ItemState::Gone;
                i.kind = match &i.kind {
                    ItemKind::File(f) => ItemKind::File(FileData {
                        blob: Blob::bytes(Vec::new()),
                        ..f.clone()
                    }),
                    k => k.clone(),
                };
            }
        }
    }

    /// A special folder (`photos` → "Pictures", …), made on first use.
    pub fn special(&mut self, name: &str, now: DateTime<Utc>) -> GraphResult<ItemNo> {
        let name = name.to_ascii_lowercase();
        if let Some(i) = self
            .items
            .values()
            .find(|i| i.is_live() && matches!(&i.kind, ItemKind::Folder { special: Some(s) } if *s == name))
        {
            return Ok(i.no);
        }
        let (parent, display) = match name.as_str() {
            "photos" => (ROOT_NO, "Pictures"),
            "documents" => (ROOT_NO, "Documents"),
            "music" => (ROOT_NO, "Music"),
            "desktop" => (ROOT_NO, "Desktop"),
            "cameraroll" => (self.special("photos", now)?, "Camera Roll"),
            "approot" => (
                self.ensure_folders(ROOT_NO, &["Apps".to_string()], now)?,
                "galleryfs emulator",
            ),
            _ => return Err(GraphError::not_found(format!("special folder '{name}'"))),
        };
        let no = match self.child_by_name(parent, display) {
            Some(n) if self.live(n)?.is_folder() => n,
            _ => self.create_folder(parent, display, Conflict::Rename, now)?,
        };
        if let Some(ItemKind::Folder { special }) = self.items.get_mut(&no).map(|i| &mut i.kind) {
            *special = Some(name);
        }
        Ok(no)
    }

    /// Seeds `Pictures/Samsung Gallery/...` with `files`; returns the items whose hash is still to compute.
    pub fn seed_gallery(&mut self, files: Vec<SeedFile>, now: DateTime<Utc>) -> GraphResult<Vec<ItemNo>> {
        let pictures = self.special("photos", now)?;
        let mut pending = Vec::new();
        for f in files {
            let mut segs: Vec<String> = vec!["Samsung Gallery".into()];
            segs.extend(f.path.split('/').filter(|s| !s.is_empty()).map(str::to_string));
            let name = segs.pop().expect("file name");
            let parent = self.ensure_folders(pictures, &segs, f.taken)?;
            // Small content is hashed now, large generated content in the background (hashes appear late).
            let blob = Blob::Media(f.content);
            let hash = if blob.len() <= 16 * 1024 * 1024 {
                blob.compute_hash().ok()
            } else {
                None
            };
            let content = NewContent {
                blob,
                hash: hash.clone(),
                mime: Some(f.mime_type),
                media: f.kind,
                taken: Some(f.taken),
            };
            let patch = ItemPatch {
                fs_created: Some(f.taken),
                fs_modified: Some(f.taken),
                ..Default::default()
            };
            let (no, _) = self.write_file(parent, &name, content, Conflict::Replace, &patch, f.taken)?;
            if let Some(i) = self.items.get_mut(&no) {
                i.created = f.taken;
            }
            if hash.is_none() {
                pending.push(no);
            }
        }
        let _ = now;
        Ok(pending)
    }

    /// Stores a hash computed in the background, if the item still has that content version.
    pub fn set_hash(&mut self, no: ItemNo, ctag_ver: u64, hash: String) {
        if let Some(i) = self.items.get_mut(&no) {
            if i.ctag_ver == ctag_ver {
                if let ItemKind::File(f) = &mut i.kind {
                    f.hash = Some(hash);
                }
            }
        }
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

fn folder_kind(special: Option<String>) -> ItemKind {
    ItemKind::Folder { special }
}

fn file_kind(name: &str, c: NewContent) -> ItemKind {
    ItemKind::File(FileData {
        mime: c.mime.unwrap_or_else(|| names::mime_for(name).to_string()),
        blob: c.blob,
        hash: c.hash,
        media: c.media,
        taken: c.taken,
    })
}

fn new_item(no: ItemNo, name: String, parent: Option<ItemNo>, kind: ItemKind, now: DateTime<Utc>, seq: u64) -> Item {
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

fn apply_times(item: &mut Item, p: &ItemPatch) {
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
        let c = NewContent::plain(Blob::bytes(data.to_vec()), Some(crate::remote::QuickXorHash::of(data)));
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
