//! The `items` table: one row per file or folder of the gallery, row id = inode number (AUTOINCREMENT, so an inode
//! is never handed out twice, even after its item is removed), the gallery root at inode 1. Names are unique per
//! folder by their case-folded key (OneDrive is case-insensitive and case-preserving).

use super::{Result, StoreError, StoreTx};
use rusqlite::{params, OptionalExtension, Row};

/// The inode of the gallery root (`FUSE_ROOT_ID`).
pub const ROOT_INO: u64 = 1;

/// The prefix of placeholder ids of items created locally and not yet uploaded.
pub const LOCAL_ID_PREFIX: &str = "local:";

/// The case-folded key of a name (Unicode lowercase), used for lookups and sibling uniqueness.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ItemKind {
    File,
    Dir,
}

/// The state of the local copy of an item's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ContentState {
    /// Nothing cached; the content lives on OneDrive only.
    #[default]
    Cloud,
    /// Some byte ranges are cached.
    Partial,
    /// The whole content is cached and equals the remote version.
    Cached,
    /// Changed locally and not yet uploaded: never evicted, never overwritten by a delta.
    Dirty,
}

impl ContentState {
    fn to_db(self) -> i64 {
        match self {
            ContentState::Cloud => 0,
            ContentState::Partial => 1,
            ContentState::Cached => 2,
            ContentState::Dirty => 3,
        }
    }
    fn from_db(v: i64) -> Result<Self> {
        Ok(match v {
            0 => ContentState::Cloud,
            1 => ContentState::Partial,
            2 => ContentState::Cached,
            3 => ContentState::Dirty,
            other => return Err(StoreError::Corrupt(format!("content_state {other}"))),
        })
    }
}

/// One item as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemRow {
    pub ino: u64,
    /// The OneDrive item id, or `local:<uuid>` for a local-only item.
    pub item_id: String,
    /// `None` for the root only.
    pub parent_ino: Option<u64>,
    pub name: String,
    pub name_key: String,
    pub kind: ItemKind,
    pub size: u64,
    pub etag: Option<String>,
    pub ctag: Option<String>,
    pub quick_xor_hash: Option<String>,
    /// Whole seconds since the Unix epoch.
    pub mtime: i64,
    pub mime_type: Option<String>,
    pub is_media: bool,
    pub pinned: bool,
    pub content_state: ContentState,
    pub local_only: bool,
    /// The content version last agreed with OneDrive (the edits baseline).
    pub base_ctag: Option<String>,
    pub base_hash: Option<String>,
    pub base_size: Option<u64>,
    /// OneDrive deleted the item or moved it out of the gallery, but it is kept because it (or something below
    /// it) has local changes; an upload must create it anew rather than replace it.
    pub remote_removed: bool,
    /// Whole seconds since the Unix epoch of the last local status change (entries of a folder created, removed
    /// or renamed; times set; the item renamed), when later than `mtime`: `st_ctime` is the later of the two.
    pub ctime: Option<i64>,
    /// `fileSystemInfo.lastModifiedDateTime` as OneDrive last reported it (whole seconds; `None` for items never
    /// seen there). A folder's `mtime` moves with its entries locally and follows OneDrive's only when OneDrive's
    /// changes.
    pub remote_mtime: Option<i64>,
}

impl ItemRow {
    pub fn is_dir(&self) -> bool {
        self.kind == ItemKind::Dir
    }
    pub fn is_dirty(&self) -> bool {
        self.content_state == ContentState::Dirty
    }
    /// `st_ctime` in whole Unix seconds: the later of the last local status change and `mtime`.
    pub fn status_changed(&self) -> i64 {
        self.ctime.map_or(self.mtime, |c| c.max(self.mtime))
    }
}

/// A row to insert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewItem {
    pub item_id: String,
    pub parent_ino: u64,
    pub name: String,
    pub kind: ItemKind,
    pub size: u64,
    pub etag: Option<String>,
    pub ctag: Option<String>,
    pub quick_xor_hash: Option<String>,
    pub mtime: i64,
    pub mime_type: Option<String>,
    pub is_media: bool,
    pub content_state: ContentState,
    pub local_only: bool,
}

impl NewItem {
    /// A file or folder created locally: placeholder id `local:<uuid>`, local-only, content dirty for files.
    pub fn local(parent_ino: u64, name: &str, kind: ItemKind, mtime: i64) -> NewItem {
        NewItem {
            item_id: format!("{LOCAL_ID_PREFIX}{}", uuid::Uuid::new_v4()),
            parent_ino,
            name: name.to_string(),
            kind,
            size: 0,
            etag: None,
            ctag: None,
            quick_xor_hash: None,
            mtime,
            mime_type: None,
            is_media: false,
            content_state: if kind == ItemKind::File {
                ContentState::Dirty
            } else {
                ContentState::Cloud
            },
            local_only: true,
        }
    }
}

/// The remote attributes of an item (what a delta or an upload response says). Writing them also records them
/// as the baseline (`base_ctag`, `base_hash`, `base_size`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteAttrs {
    pub etag: Option<String>,
    pub ctag: Option<String>,
    pub size: u64,
    pub quick_xor_hash: Option<String>,
    pub mtime: i64,
    pub mime_type: Option<String>,
    pub is_media: bool,
}

const COLUMNS: &str = "ino, item_id, parent_ino, name, name_key, kind, size, etag, ctag, quick_xor_hash, mtime, \
                       mime_type, is_media, pinned, content_state, local_only, base_ctag, base_hash, base_size, \
                       remote_removed, ctime, remote_mtime";

/// Reads a row selected with [`COLUMNS`] (optionally table-qualified in the same order).
pub(super) fn row_to_item(row: &Row<'_>) -> rusqlite::Result<(ItemRow, i64, i64)> {
    let kind: i64 = row.get(5)?;
    let state: i64 = row.get(14)?;
    let item = ItemRow {
        ino: row.get::<_, i64>(0)? as u64,
        item_id: row.get(1)?,
        parent_ino: row.get::<_, Option<i64>>(2)?.map(|p| p as u64),
        name: row.get(3)?,
        name_key: row.get(4)?,
        kind: ItemKind::File,
        size: row.get::<_, i64>(6)?.max(0) as u64,
        etag: row.get(7)?,
        ctag: row.get(8)?,
        quick_xor_hash: row.get(9)?,
        mtime: row.get(10)?,
        mime_type: row.get(11)?,
        is_media: row.get(12)?,
        pinned: row.get(13)?,
        content_state: ContentState::Cloud,
        local_only: row.get(15)?,
        base_ctag: row.get(16)?,
        base_hash: row.get(17)?,
        base_size: row.get::<_, Option<i64>>(18)?.map(|s| s.max(0) as u64),
        remote_removed: row.get(19)?,
        ctime: row.get(20)?,
        remote_mtime: row.get(21)?,
    };
    Ok((item, kind, state))
}

fn finish(raw: (ItemRow, i64, i64)) -> Result<ItemRow> {
    let (mut item, kind, state) = raw;
    item.kind = match kind {
        0 => ItemKind::File,
        1 => ItemKind::Dir,
        other => return Err(StoreError::Corrupt(format!("kind {other}"))),
    };
    item.content_state = ContentState::from_db(state)?;
    Ok(item)
}

pub(super) fn select_columns(alias: &str) -> String {
    COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn kind_to_db(kind: ItemKind) -> i64 {
    match kind {
        ItemKind::File => 0,
        ItemKind::Dir => 1,
    }
}

impl StoreTx<'_> {
    pub(super) fn query_items(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<ItemRow>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params, row_to_item)?;
        rows.map(|r| finish(r?)).collect()
    }

    fn query_item(&self, sql: &str, params: impl rusqlite::Params) -> Result<Option<ItemRow>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        match stmt.query_row(params, row_to_item).optional()? {
            Some(raw) => Ok(Some(finish(raw)?)),
            None => Ok(None),
        }
    }

    pub fn get(&self, ino: u64) -> Result<Option<ItemRow>> {
        self.query_item(&format!("SELECT {COLUMNS} FROM items WHERE ino = ?1"), [ino as i64])
    }

    fn require(&self, ino: u64) -> Result<ItemRow> {
        self.get(ino)?.ok_or(StoreError::NoSuchInode(ino))
    }

    pub fn get_by_item_id(&self, item_id: &str) -> Result<Option<ItemRow>> {
        self.query_item(&format!("SELECT {COLUMNS} FROM items WHERE item_id = ?1"), [item_id])
    }

    pub fn root(&self) -> Result<ItemRow> {
        self.require(ROOT_INO)
    }

    /// Case-insensitive lookup of `name` in folder `parent_ino`.
    pub fn lookup(&self, parent_ino: u64, name: &str) -> Result<Option<ItemRow>> {
        self.query_item(
            &format!("SELECT {COLUMNS} FROM items WHERE parent_ino = ?1 AND name_key = ?2"),
            params![parent_ino as i64, name_key(name)],
        )
    }

    pub fn children(&self, parent_ino: u64) -> Result<Vec<ItemRow>> {
        self.query_items(
            &format!("SELECT {COLUMNS} FROM items WHERE parent_ino = ?1 ORDER BY name_key"),
            [parent_ino as i64],
        )
    }

    /// Keyset paging: at most `limit` children whose `name_key` sorts after `after`.
    pub fn children_after(&self, parent_ino: u64, after: Option<&str>, limit: usize) -> Result<Vec<ItemRow>> {
        self.query_items(
            &format!(
                "SELECT {COLUMNS} FROM items WHERE parent_ino = ?1 AND (?2 IS NULL OR name_key > ?2) \
                 ORDER BY name_key LIMIT ?3"
            ),
            params![parent_ino as i64, after, limit as i64],
        )
    }

    /// Offset paging (readdir offsets): at most `limit` children after skipping `offset`.
    pub fn children_at(&self, parent_ino: u64, offset: u64, limit: usize) -> Result<Vec<ItemRow>> {
        self.query_items(
            &format!("SELECT {COLUMNS} FROM items WHERE parent_ino = ?1 ORDER BY name_key LIMIT ?2 OFFSET ?3"),
            params![parent_ino as i64, limit as i64, offset as i64],
        )
    }

    pub fn child_count(&self, parent_ino: u64) -> Result<u64> {
        let n: i64 = self.one(
            "SELECT COUNT(*) FROM items WHERE parent_ino = ?1",
            [parent_ino as i64],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    fn require_dir(&self, ino: u64) -> Result<ItemRow> {
        let row = self.require(ino)?;
        if row.kind != ItemKind::Dir {
            return Err(StoreError::NotADirectory(ino));
        }
        Ok(row)
    }

    pub fn insert(&self, item: &NewItem) -> Result<u64> {
        self.require_dir(item.parent_ino)?;
        let (base_ctag, base_hash, base_size) = if item.local_only {
            (None, None, None)
        } else {
            (item.ctag.clone(), item.quick_xor_hash.clone(), Some(item.size as i64))
        };
        let remote_mtime = (!item.local_only).then_some(item.mtime);
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO items (item_id, parent_ino, name, name_key, kind, size, etag, ctag, quick_xor_hash, \
                 mtime, mime_type, is_media, content_state, local_only, base_ctag, base_hash, base_size, \
                 remote_mtime) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
            )?
            .execute(params![
                item.item_id,
                item.parent_ino as i64,
                item.name,
                name_key(&item.name),
                kind_to_db(item.kind),
                item.size as i64,
                item.etag,
                item.ctag,
                item.quick_xor_hash,
                item.mtime,
                item.mime_type,
                item.is_media,
                item.content_state.to_db(),
                item.local_only,
                base_ctag,
                base_hash,
                base_size,
                remote_mtime,
            ]);
        // The unique indexes say whether the name or the id is taken (one statement instead of three lookups:
        // the first listing of a large gallery inserts every row).
        match inserted {
            Ok(_) => Ok(self.conn.last_insert_rowid() as u64),
            Err(rusqlite::Error::SqliteFailure(e, Some(message)))
                if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
            {
                if message.contains("items.item_id") {
                    Err(StoreError::DuplicateItemId)
                } else {
                    Err(StoreError::NameExists {
                        parent: item.parent_ino,
                        name: item.name.clone(),
                    })
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    fn changed(&self, ino: u64, n: usize) -> Result<()> {
        if n == 0 {
            Err(StoreError::NoSuchInode(ino))
        } else {
            Ok(())
        }
    }

    /// Writes the remote attributes and records them as the baseline. A folder keeps its local mtime unless
    /// OneDrive's time changed since it was last seen (see [`ItemRow::remote_mtime`]).
    pub fn update_remote(&self, ino: u64, a: &RemoteAttrs) -> Result<()> {
        let n = self
            .conn
            .prepare_cached(
                "UPDATE items SET etag = ?2, ctag = ?3, size = ?4, quick_xor_hash = ?5, \
                 mtime = CASE WHEN kind = 1 AND remote_mtime = ?6 THEN mtime ELSE ?6 END, remote_mtime = ?6, \
                 mime_type = ?7, is_media = ?8, base_ctag = ?3, base_hash = ?5, base_size = ?4 WHERE ino = ?1",
            )?
            .execute(params![
                ino as i64,
                a.etag,
                a.ctag,
                a.size as i64,
                a.quick_xor_hash,
                a.mtime,
                a.mime_type,
                a.is_media
            ])?;
        self.changed(ino, n)
    }

    /// Updates only the eTag (a metadata-only remote change of a locally dirty item).
    pub fn set_etag(&self, ino: u64, etag: Option<&str>) -> Result<()> {
        let n = self.exec("UPDATE items SET etag = ?2 WHERE ino = ?1", params![ino as i64, etag])?;
        self.changed(ino, n)
    }

    /// Local content change (write/truncate/utimens): size and mtime only; the caller sets the content state.
    pub fn update_local_content(&self, ino: u64, size: u64, mtime: i64) -> Result<()> {
        let n = self.exec(
            "UPDATE items SET size = ?2, mtime = ?3 WHERE ino = ?1",
            params![ino as i64, size as i64, mtime],
        )?;
        self.changed(ino, n)
    }

    pub fn set_content_state(&self, ino: u64, state: ContentState) -> Result<()> {
        let n = self.exec(
            "UPDATE items SET content_state = ?2 WHERE ino = ?1",
            params![ino as i64, state.to_db()],
        )?;
        self.changed(ino, n)
    }

    pub fn set_pinned(&self, ino: u64, pinned: bool) -> Result<()> {
        let n = self.exec(
            "UPDATE items SET pinned = ?2 WHERE ino = ?1",
            params![ino as i64, pinned],
        )?;
        self.changed(ino, n)
    }

    pub fn set_baseline(&self, ino: u64, ctag: Option<&str>, hash: Option<&str>, size: u64) -> Result<()> {
        let n = self.exec(
            "UPDATE items SET base_ctag = ?2, base_hash = ?3, base_size = ?4 WHERE ino = ?1",
            params![ino as i64, ctag, hash, size as i64],
        )?;
        self.changed(ino, n)
    }

    pub fn set_remote_removed(&self, ino: u64, removed: bool) -> Result<()> {
        let n = self.exec(
            "UPDATE items SET remote_removed = ?2 WHERE ino = ?1",
            params![ino as i64, removed],
        )?;
        self.changed(ino, n)
    }

    /// Entries of folder `ino` were created, removed or renamed: its mtime and ctime move to `now` (whole Unix
    /// seconds), as a local filesystem's do. Nothing happens for a file or a missing row.
    pub fn folder_entries_changed(&self, ino: u64, now: i64) -> Result<()> {
        self.exec(
            "UPDATE items SET mtime = ?2, ctime = ?2 WHERE ino = ?1 AND kind = 1",
            params![ino as i64, now],
        )?;
        Ok(())
    }

    /// A folder's times set locally (`utimensat`): mtime as given, ctime `now`.
    pub fn set_folder_mtime(&self, ino: u64, mtime: i64, now: i64) -> Result<()> {
        let n = self.exec(
            "UPDATE items SET mtime = ?2, ctime = ?3 WHERE ino = ?1 AND kind = 1",
            params![ino as i64, mtime, now],
        )?;
        self.changed(ino, n)
    }

    /// The item's own status changed at `now` (renamed or moved): its ctime moves.
    pub fn status_changed_at(&self, ino: u64, now: i64) -> Result<()> {
        self.exec("UPDATE items SET ctime = ?2 WHERE ino = ?1", params![ino as i64, now])?;
        Ok(())
    }

    /// Records `mtime` as OneDrive's `fileSystemInfo` time of `ino` without changing the local mtime (a folder
    /// OneDrive just created, or whose time it just took from us).
    pub fn set_remote_mtime(&self, ino: u64, mtime: i64) -> Result<()> {
        self.exec(
            "UPDATE items SET remote_mtime = ?2 WHERE ino = ?1",
            params![ino as i64, mtime],
        )?;
        Ok(())
    }

    /// Subfolders of folder `ino` (a folder's `st_nlink` is 2 + this).
    pub fn subfolder_count(&self, ino: u64) -> Result<u64> {
        let n: i64 = self.one(
            "SELECT COUNT(*) FROM items WHERE parent_ino = ?1 AND kind = 1",
            [ino as i64],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Whether `ino` is `ancestor` or lies below it.
    pub fn is_within(&self, ino: u64, ancestor: u64) -> Result<bool> {
        let mut current = Some(ino);
        let mut steps = 0u32;
        while let Some(i) = current {
            if i == ancestor {
                return Ok(true);
            }
            steps += 1;
            if steps > 100_000 {
                return Err(StoreError::Corrupt("parent chain loops".into()));
            }
            current = self
                .one("SELECT parent_ino FROM items WHERE ino = ?1", [i as i64], |r| {
                    r.get::<_, Option<i64>>(0)
                })
                .optional()?
                .flatten()
                .map(|p| p as u64);
        }
        Ok(false)
    }

    /// The item's path below the gallery root, `/`-separated with a leading `/` (`/` for the root).
    pub fn path(&self, ino: u64) -> Result<String> {
        let mut parts = Vec::new();
        let mut current = self.require(ino)?;
        while let Some(parent) = current.parent_ino {
            parts.push(std::mem::take(&mut current.name));
            if parts.len() > 100_000 {
                return Err(StoreError::Corrupt("parent chain loops".into()));
            }
            current = self.require(parent)?;
        }
        if current.ino != ROOT_INO {
            return Err(StoreError::Corrupt(format!("inode {ino} is not below the root")));
        }
        parts.reverse();
        Ok(format!("/{}", parts.join("/")))
    }

    /// Moves and/or renames an item; the inode stays. A case-only rename of the same item is allowed.
    pub fn rename(&self, ino: u64, new_parent: u64, new_name: &str) -> Result<()> {
        if ino == ROOT_INO {
            return Err(StoreError::WouldCycle(ino));
        }
        self.require(ino)?;
        self.require_dir(new_parent)?;
        if self.is_within(new_parent, ino)? {
            return Err(StoreError::WouldCycle(ino));
        }
        if let Some(existing) = self.lookup(new_parent, new_name)? {
            if existing.ino != ino {
                return Err(StoreError::NameExists {
                    parent: new_parent,
                    name: new_name.to_string(),
                });
            }
        }
        self.exec(
            "UPDATE items SET parent_ino = ?2, name = ?3, name_key = ?4 WHERE ino = ?1",
            params![ino as i64, new_parent as i64, new_name, name_key(new_name)],
        )?;
        Ok(())
    }

    /// Detaches an item from its folder (parent NULL) for the rest of a transaction, freeing its name; it must be
    /// re-attached with [`StoreTx::rename`] or removed before commit. Used by the delta applier for swaps.
    pub(crate) fn detach(&self, ino: u64) -> Result<()> {
        if ino == ROOT_INO {
            return Err(StoreError::WouldCycle(ino));
        }
        let n = self.exec("UPDATE items SET parent_ino = NULL WHERE ino = ?1", [ino as i64])?;
        self.changed(ino, n)
    }

    /// Rows detached from every folder (parent NULL) other than the root and the retired roots (see
    /// `roots.rs`): files removed while open whose last close never came (the process ended).
    pub fn detached_items(&self) -> Result<Vec<u64>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT ino FROM items WHERE parent_ino IS NULL AND ino <> ?1 AND name <> '' ORDER BY ino",
        )?;
        let rows = stmt.query_map([ROOT_INO as i64], |r| r.get::<_, i64>(0))?;
        rows.map(|r| Ok(r? as u64)).collect()
    }

    /// The inodes of an item's subtree, the item first, parents before children.
    pub fn subtree(&self, ino: u64) -> Result<Vec<u64>> {
        let mut stmt = self.conn.prepare_cached(
            "WITH RECURSIVE sub(ino, depth) AS (SELECT ?1, 0 UNION ALL \
             SELECT items.ino, sub.depth + 1 FROM items JOIN sub ON items.parent_ino = sub.ino) \
             SELECT ino FROM sub ORDER BY depth",
        )?;
        let rows = stmt.query_map([ino as i64], |r| r.get::<_, i64>(0))?;
        rows.map(|r| Ok(r? as u64)).collect()
    }

    /// Removes an item and its subtree (with their blocks and thumbnail states); returns the removed inodes,
    /// deepest first. The root cannot be removed.
    pub fn remove(&self, ino: u64) -> Result<Vec<u64>> {
        if ino == ROOT_INO {
            return Err(StoreError::WouldCycle(ino));
        }
        self.require(ino)?;
        let mut removed = self.subtree(ino)?;
        removed.reverse();
        // ON DELETE CASCADE removes descendants, content, blocks and thumbnail states.
        self.exec("DELETE FROM items WHERE ino = ?1", [ino as i64])?;
        Ok(removed)
    }

    /// Records the OneDrive id of the gallery folder on the root row (and as meta `gallery_item_id`).
    pub fn set_root_item(&self, item_id: &str) -> Result<()> {
        if let Some(other) = self.get_by_item_id(item_id)? {
            if other.ino != ROOT_INO {
                return Err(StoreError::DuplicateItemId);
            }
            return Ok(());
        }
        self.exec(
            "UPDATE items SET item_id = ?1 WHERE ino = ?2",
            params![item_id, ROOT_INO as i64],
        )?;
        self.set_meta(super::meta_keys::GALLERY_ITEM_ID, item_id)
    }

    /// Replaces a local placeholder id by the real OneDrive id and clears `local_only`.
    pub fn set_item_id(&self, ino: u64, real_id: &str) -> Result<()> {
        if let Some(other) = self.get_by_item_id(real_id)? {
            if other.ino != ino {
                return Err(StoreError::DuplicateItemId);
            }
        }
        let n = self.exec(
            "UPDATE items SET item_id = ?2, local_only = 0 WHERE ino = ?1",
            params![ino as i64, real_id],
        )?;
        self.changed(ino, n)
    }

    /// Gives `ino` the OneDrive identity of `from` (item id, tags, hash, baseline, `local_only`,
    /// `remote_removed`): an editor's save renamed a new file over `from`, so the new content must reach `from`'s
    /// item and keep its id and version history. `from`'s row must be removed first (item ids are unique).
    pub fn adopt_identity(&self, ino: u64, from: &ItemRow) -> Result<()> {
        if let Some(other) = self.get_by_item_id(&from.item_id)? {
            if other.ino != ino {
                return Err(StoreError::DuplicateItemId);
            }
        }
        let n = self.exec(
            "UPDATE items SET item_id = ?2, etag = ?3, ctag = ?4, quick_xor_hash = ?5, local_only = ?6, \
             base_ctag = ?7, base_hash = ?8, base_size = ?9, remote_removed = ?10, pinned = ?11 WHERE ino = ?1",
            params![
                ino as i64,
                from.item_id,
                from.etag,
                from.ctag,
                from.quick_xor_hash,
                from.local_only,
                from.base_ctag,
                from.base_hash,
                from.base_size.map(|s| s as i64),
                from.remote_removed,
                from.pinned,
            ],
        )?;
        self.changed(ino, n)
    }

    /// Files with local changes not yet uploaded.
    pub fn dirty_items(&self) -> Result<Vec<ItemRow>> {
        self.query_items(
            &format!("SELECT {COLUMNS} FROM items WHERE content_state = 3 ORDER BY ino"),
            [],
        )
    }

    /// Items other than the root.
    pub fn item_count(&self) -> Result<u64> {
        let n: i64 = self.one("SELECT COUNT(*) FROM items WHERE ino <> 1", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    pub fn media_count(&self) -> Result<u64> {
        let n: i64 = self.one("SELECT COUNT(*) FROM items WHERE is_media = 1", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Every item id in the store with its inode (for full-enumeration reconciliation).
    /// Every item's id and current cTag (none for folders and local items), in one query.
    pub fn all_item_versions(&self) -> Result<Vec<(String, Option<String>)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT item_id, ctag FROM items WHERE ino <> 1")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)))?;
        rows.map(|r| Ok(r?)).collect()
    }

    pub fn all_item_ids(&self) -> Result<Vec<(u64, String)>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT ino, item_id FROM items WHERE ino <> 1")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?)))?;
        rows.map(|r| Ok(r?)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn remote_file(parent: u64, id: &str, name: &str) -> NewItem {
        NewItem {
            item_id: id.into(),
            parent_ino: parent,
            name: name.into(),
            kind: ItemKind::File,
            size: 10,
            etag: Some("e".into()),
            ctag: Some("c1".into()),
            quick_xor_hash: None,
            mtime: 5,
            mime_type: Some("image/jpeg".into()),
            is_media: true,
            content_state: ContentState::Cloud,
            local_only: false,
        }
    }

    fn dir(parent: u64, id: &str, name: &str) -> NewItem {
        NewItem {
            kind: ItemKind::Dir,
            is_media: false,
            ..remote_file(parent, id, name)
        }
    }

    #[test]
    fn root_is_inode_one_and_inodes_are_not_reused() {
        let s = Store::open_in_memory().unwrap();
        assert_eq!(s.root().unwrap().ino, ROOT_INO);
        let a = s.insert(&remote_file(ROOT_INO, "A", "a.jpg")).unwrap();
        assert_eq!(a, 2);
        s.remove(a).unwrap();
        let b = s.insert(&remote_file(ROOT_INO, "B", "a.jpg")).unwrap();
        assert_eq!(b, 3, "a removed inode must not be handed out again");
    }

    #[test]
    fn lookup_is_case_insensitive_and_names_unique_by_key() {
        let s = Store::open_in_memory().unwrap();
        s.insert(&remote_file(ROOT_INO, "A", "Ärger.JPG")).unwrap();
        let hit = s.lookup(ROOT_INO, "äRGER.jpg").unwrap().unwrap();
        assert_eq!(hit.name, "Ärger.JPG");
        let clash = s.insert(&remote_file(ROOT_INO, "B", "ärger.jpg"));
        assert!(matches!(clash, Err(StoreError::NameExists { .. })));
        assert!(matches!(
            s.insert(&remote_file(ROOT_INO, "A", "other.jpg")),
            Err(StoreError::DuplicateItemId)
        ));
    }

    #[test]
    fn rename_keeps_inode_and_refuses_cycles_and_clashes() {
        let s = Store::open_in_memory().unwrap();
        let d = s.insert(&dir(ROOT_INO, "D", "album")).unwrap();
        let sub = s.insert(&dir(d, "S", "sub")).unwrap();
        let f = s.insert(&remote_file(ROOT_INO, "F", "x.jpg")).unwrap();
        s.insert(&remote_file(sub, "G", "y.jpg")).unwrap();
        s.rename(f, sub, "X.jpg").unwrap();
        assert_eq!(s.read(|t| t.path(f)).unwrap(), "/album/sub/X.jpg");
        assert_eq!(s.read(|t| t.path(ROOT_INO)).unwrap(), "/");
        let row = s.get(f).unwrap().unwrap();
        assert_eq!((row.parent_ino, row.name.as_str()), (Some(sub), "X.jpg"));
        assert!(matches!(s.rename(d, sub, "loop"), Err(StoreError::WouldCycle(_))));
        assert!(matches!(s.rename(f, sub, "Y.JPG"), Err(StoreError::NameExists { .. })));
        s.rename(f, sub, "x.JPG").unwrap(); // case-only rename of itself
        assert!(matches!(s.rename(f, f, "z"), Err(StoreError::NotADirectory(_))));
    }

    #[test]
    fn remove_takes_the_subtree() {
        let s = Store::open_in_memory().unwrap();
        let d = s.insert(&dir(ROOT_INO, "D", "album")).unwrap();
        let f = s.insert(&remote_file(d, "F", "x.jpg")).unwrap();
        let removed = s.remove(d).unwrap();
        assert_eq!(removed, vec![f, d]);
        assert!(s.get(f).unwrap().is_none());
        assert_eq!(s.item_count().unwrap(), 0);
    }

    #[test]
    fn adopt_identity_takes_over_id_and_baseline() {
        let s = Store::open_in_memory().unwrap();
        let x = s.insert(&remote_file(ROOT_INO, "X!1", "x.jpg")).unwrap();
        let tmp = s
            .insert(&NewItem::local(ROOT_INO, "x.jpg.tmp", ItemKind::File, 1))
            .unwrap();
        let target = s.get(x).unwrap().unwrap();
        assert!(matches!(
            s.write(|t| t.adopt_identity(tmp, &target)),
            Err(StoreError::DuplicateItemId)
        ));
        s.write(|t| {
            t.remove(x)?;
            t.adopt_identity(tmp, &target)?;
            t.rename(tmp, ROOT_INO, "x.jpg")
        })
        .unwrap();
        let row = s.lookup(ROOT_INO, "x.jpg").unwrap().unwrap();
        assert_eq!(row.ino, tmp);
        assert_eq!(row.item_id, "X!1");
        assert!(!row.local_only);
        assert_eq!(row.base_ctag.as_deref(), Some("c1"));
        assert_eq!(row.base_size, Some(10));
        assert!(row.is_dirty());
        assert_eq!(s.read(|t| t.dirty_items()).unwrap().len(), 1);
    }

    #[test]
    fn local_items_get_their_real_id_later() {
        let s = Store::open_in_memory().unwrap();
        let ino = s
            .insert(&NewItem::local(ROOT_INO, "new.jpg", ItemKind::File, 1))
            .unwrap();
        let row = s.get(ino).unwrap().unwrap();
        assert!(row.local_only && row.item_id.starts_with(LOCAL_ID_PREFIX) && row.is_dirty());
        s.set_item_id(ino, "REAL!1").unwrap();
        let row = s.get_by_item_id("REAL!1").unwrap().unwrap();
        assert_eq!(row.ino, ino);
        assert!(!row.local_only);
    }
}
