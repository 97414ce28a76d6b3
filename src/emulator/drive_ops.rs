//! Changes to the drive model: creating folders and files (with the conflict behaviours), replacing content,
//! rename/move/metadata updates, delete to the recycle bin and restore, special folders and seeding. Each change
//! takes a journal sequence number and updates eTags/cTags as documented (OAD resources/driveitem.md).

use super::blob::Blob;
use super::drive::*;
use super::errors::{GraphError, GraphResult};
use super::media::SeedFile;
use super::names::{self, fold, validate_name, MAX_PATH_CHARS};
use chrono::{DateTime, Utc};

/// Seed content up to this size is hashed while seeding; larger content in the background.
const SEED_HASH_NOW_MAX: u64 = 256 * 1024;
/// Quota given to a drive whose seed would fill half of the free 5 GB (1 TB, a paid plan).
const PAID_QUOTA_TOTAL: i64 = 1024 * 1024 * 1024 * 1024;
use std::collections::BTreeMap;

impl Drive {
    /// The whole decoded path must stay under 400 characters (graph-api.md §12).
    fn check_path_len(&self, parent: ItemNo, name: &str) -> GraphResult<()> {
        let len: usize = self
            .names_from_root(parent)
            .iter()
            .map(|n| n.chars().count() + 1)
            .sum::<usize>()
            + name.chars().count()
            + 1;
        if len >= MAX_PATH_CHARS {
            return Err(GraphError::invalid("The path is too long").with_inner("pathIsTooLong"));
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
        self.check_path_len(parent, name)?;
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

    /// Copies `src` (and its subtree) into `parent` as `name` (OAD api/driveitem_copy.md): new ids, same
    /// content and hashes, `fileSystemInfo` kept. Returns the copy.
    pub fn copy_item(
        &mut self,
        src: ItemNo,
        parent: ItemNo,
        name: Option<&str>,
        conflict: Conflict,
        now: DateTime<Utc>,
    ) -> GraphResult<ItemNo> {
        let item = self.live(src)?;
        let mut name = name.map(str::to_string).unwrap_or_else(|| item.name.clone());
        let is_folder = item.is_folder();
        validate_name(&name)?;
        self.live_folder(parent)?;
        self.check_path_len(parent, &name)?;
        if self.is_within(parent, src) {
            return Err(GraphError::invalid(
                "Cannot copy a folder into itself or one of its descendants",
            ));
        }
        self.check_space(self.size_of(src) as i64, true)?;
        if let Some(existing) = self.child_by_name(parent, &name) {
            match conflict {
                Conflict::Fail => return Err(GraphError::name_exists(&name)),
                Conflict::Rename => name = self.free_name(parent, &name, is_folder),
                Conflict::Replace => self.delete(existing, now)?,
            }
        }
        let mut queue = vec![(src, parent, name)];
        let mut top = None;
        while let Some((from, to_parent, to_name)) = queue.pop() {
            let original = self.items[&from].clone();
            let kind = match &original.kind {
                ItemKind::Folder { .. } => folder_kind(None),
                k => k.clone(),
            };
            let patch = ItemPatch {
                fs_created: Some(original.fs_created),
                fs_modified: Some(original.fs_modified),
                description: original.description.clone(),
                ..Default::default()
            };
            let copy = self.insert_new(to_parent, to_name, kind, now, Some(&patch));
            top.get_or_insert(copy);
            for child in self.children_of(from) {
                let child_name = self.items[&child].name.clone();
                queue.push((child, copy, child_name));
            }
        }
        Ok(top.expect("at least the source"))
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
        self.check_path_len(parent, name)?;
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
        if moving || renaming {
            self.check_path_len(new_parent.expect("non-root"), &new_name)?;
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

    /// The special folder `name` if it exists, found by what it is (its `specialFolder` name), never by its
    /// display name: a renamed or localized folder is still the same special folder.
    pub fn existing_special(&self, name: &str) -> Option<ItemNo> {
        let name = name.to_ascii_lowercase();
        self.items
            .values()
            .find(|i| i.is_live() && matches!(&i.kind, ItemKind::Folder { special: Some(s) } if *s == name))
            .map(|i| i.no)
    }

    /// A special folder for a reading request. The Camera Roll is made only by a write (drive_get_specialfolder:
    /// special folders are created the first time an app writes to one), so reading a missing one is
    /// `itemNotFound`; the others are made on first use.
    pub fn special_for_read(&mut self, name: &str, now: DateTime<Utc>) -> GraphResult<ItemNo> {
        if name.eq_ignore_ascii_case("cameraroll") {
            return self
                .existing_special(name)
                .ok_or_else(|| GraphError::not_found("special folder 'cameraroll'"));
        }
        self.special(name, now)
    }

    /// A special folder (`photos` → "Pictures", `cameraroll` → "Camera Roll" in `photos`, …), made on first use.
    pub fn special(&mut self, name: &str, now: DateTime<Utc>) -> GraphResult<ItemNo> {
        let name = name.to_ascii_lowercase();
        if let Some(no) = self.existing_special(&name) {
            return Ok(no);
        }
        let camera_roll_name = self.camera_roll_name.clone();
        let (parent, display) = match name.as_str() {
            "photos" => (ROOT_NO, "Pictures"),
            "documents" => (ROOT_NO, "Documents"),
            "music" => (ROOT_NO, "Music"),
            "desktop" => (ROOT_NO, "Desktop"),
            "cameraroll" => (self.special("photos", now)?, camera_roll_name.as_str()),
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
        self.skip_quota = true;
        let result = self.seed_files(pictures, files);
        self.skip_quota = false;
        // A large seed gets the space of a paid plan rather than an over-quota drive.
        let q = self.quota();
        if q.used > q.total / 2 {
            self.quota_total = PAID_QUOTA_TOTAL.max(q.used * 2);
        }
        result
    }

    fn seed_files(&mut self, pictures: ItemNo, files: Vec<SeedFile>) -> GraphResult<Vec<ItemNo>> {
        let mut pending = Vec::new();
        for f in files {
            let mut segs: Vec<String> = vec!["Samsung Gallery".into()];
            segs.extend(f.path.split('/').filter(|s| !s.is_empty()).map(str::to_string));
            let name = segs.pop().expect("file name");
            let parent = self.ensure_folders(pictures, &segs, f.taken)?;
            // Small content is hashed now, the rest in the background (hashes may appear late, as documented).
            let blob = Blob::Media(f.content);
            let hash = if blob.len() <= SEED_HASH_NOW_MAX {
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
        Ok(pending)
    }

    /// Live files whose hash is still being computed.
    pub fn pending_hashes(&self) -> usize {
        self.items
            .values()
            .filter(|i| i.is_live() && i.file().is_some_and(|f| f.hash.is_none()))
            .count()
    }

    /// Server post-processing of an upload finished: thumbnails appear and the eTag changes (not the cTag).
    pub fn finish_processing(&mut self, no: ItemNo, ctag_ver: u64, now: DateTime<Utc>) {
        let current = self
            .items
            .get(&no)
            .is_some_and(|i| i.is_live() && i.ctag_ver == ctag_ver);
        if current {
            if let Some(i) = self.items.get_mut(&no) {
                i.no_thumbnail = false;
            }
            self.touch(no, false, now);
        }
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
}
