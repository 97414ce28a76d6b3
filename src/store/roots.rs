//! The folders a store's tree hangs from.
//!
//! - The gallery root is inode 1 and carries the gallery folder's OneDrive id. When the mount is given another
//!   folder ([`StoreTx::retire_root`]), the old tree moves under a *retired root*: a detached folder row (no
//!   parent, empty name) that keeps the old folder's id, so the changes journalled in it still reach the old
//!   folder on OneDrive. Rows of the new folder are found again by item id (the new folder's own row gives its
//!   children to the root; a full listing of the new folder moves the others back), so their inodes and cached
//!   originals are kept. [`StoreTx::prune_retired_roots`] then removes what no pending change needs.
//! - Nested tree roots (the Camera Roll): a folder row below the root whose OneDrive folder lies elsewhere on the
//!   drive and is synced as a tree of its own. Its inode is kept in the `meta` table under
//!   [`keys::CAMERA_ROLL_INO`](super::meta_keys::CAMERA_ROLL_INO).

use super::items::ROOT_INO;
use super::{meta_keys, Result, StoreTx};
use rusqlite::params;
use std::collections::HashSet;

/// The item id the root carries while it changes folders (inside one transaction).
const SWITCHING_ID: &str = "galleryfs:switching";

impl StoreTx<'_> {
    /// Makes `new_id` the gallery folder (see the module note). The old delta link is dropped.
    pub fn retire_root(&self, new_id: &str) -> Result<()> {
        let old_id: String = self.one("SELECT item_id FROM items WHERE ino = ?1", [ROOT_INO as i64], |r| {
            r.get(0)
        })?;
        if old_id == new_id {
            return Ok(());
        }
        let has_children = self.one(
            "SELECT EXISTS(SELECT 1 FROM items WHERE parent_ino = ?1)",
            [ROOT_INO as i64],
            |r| r.get::<_, bool>(0),
        )?;
        self.exec(
            "UPDATE items SET item_id = ?2 WHERE ino = ?1",
            params![ROOT_INO as i64, SWITCHING_ID],
        )?;
        if has_children && !old_id.starts_with("galleryfs:") {
            self.exec(
                "INSERT INTO items (item_id, parent_ino, name, name_key, kind) VALUES (?1, NULL, '', '', 1)",
                [&old_id],
            )?;
            let retired = self.conn.last_insert_rowid();
            self.exec(
                "UPDATE items SET parent_ino = ?1 WHERE parent_ino = ?2",
                params![retired, ROOT_INO as i64],
            )?;
            tracing::info!(
                retired,
                "the gallery is another folder now; the old tree is kept for its pending changes"
            );
        }
        if let Some(row) = self.get_by_item_id(new_id)? {
            // The new folder was known (a subfolder of the old one, or an older retired root): its children
            // keep their inodes at the root.
            self.exec(
                "UPDATE items SET parent_ino = ?1 WHERE parent_ino = ?2",
                params![ROOT_INO as i64, row.ino as i64],
            )?;
            self.exec("DELETE FROM items WHERE ino = ?1", [row.ino as i64])?;
        }
        self.exec(
            "UPDATE items SET item_id = ?2 WHERE ino = ?1",
            params![ROOT_INO as i64, new_id],
        )?;
        self.set_meta(meta_keys::GALLERY_ITEM_ID, new_id)?;
        self.delete_meta(meta_keys::DELTA_LINK)?;
        Ok(())
    }

    /// Retires the folder row `ino` and its subtree (an earlier Camera Roll): detached with an empty name, it keeps
    /// its id for the changes journalled in it until [`StoreTx::prune_retired_roots`] finds nothing needed.
    pub fn retire_subtree(&self, ino: u64) -> Result<()> {
        self.exec(
            "UPDATE items SET parent_ino = NULL, name = '', name_key = '' WHERE ino = ?1 AND ino <> ?2 AND kind = 1",
            params![ino as i64, ROOT_INO as i64],
        )?;
        Ok(())
    }

    /// Files below folder `ino` (at any depth).
    pub fn file_count_below(&self, ino: u64) -> Result<u64> {
        let n: i64 = self.one(
            "WITH RECURSIVE sub(ino) AS (SELECT ?1 UNION ALL SELECT items.ino FROM items JOIN sub ON \
             items.parent_ino = sub.ino) SELECT COUNT(*) FROM sub JOIN items ON items.ino = sub.ino \
             WHERE items.kind = 0",
            [ino as i64],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// The retired roots (detached folder rows with an empty name).
    pub fn retired_roots(&self) -> Result<Vec<u64>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT ino FROM items WHERE parent_ino IS NULL AND ino <> ?1 AND kind = 1 AND name = '' ORDER BY ino",
        )?;
        let rows = stmt.query_map([ROOT_INO as i64], |r| r.get::<_, i64>(0))?;
        rows.map(|r| Ok(r? as u64)).collect()
    }

    /// Removes the rows of retired trees that no pending change needs (a journalled operation, local content or
    /// a folder above one); a retired root left with nothing goes too. Returns how many rows went.
    pub fn prune_retired_roots(&self) -> Result<usize> {
        let mut needed: HashSet<u64> = HashSet::new();
        {
            let mut stmt = self.conn.prepare_cached(
                "SELECT ino FROM outbox UNION SELECT json_extract(op, '$.parent') FROM outbox WHERE kind = 'mkdir' \
                 UNION SELECT ino FROM items WHERE content_state = 3 OR local_only = 1",
            )?;
            let rows = stmt.query_map([], |r| r.get::<_, Option<i64>>(0))?;
            for r in rows {
                needed.extend(r?.map(|i| i as u64));
            }
        }
        let mut removed = 0;
        for retired in self.retired_roots()? {
            let subtree = self.subtree(retired)?;
            let mut keep: HashSet<u64> = HashSet::new();
            for &ino in subtree.iter().filter(|i| needed.contains(i)) {
                let mut current = Some(ino);
                while let Some(i) = current {
                    if !keep.insert(i) {
                        break;
                    }
                    current = self.get(i)?.and_then(|r| r.parent_ino);
                }
            }
            for &ino in subtree.iter().rev() {
                if !keep.contains(&ino) {
                    removed += self.exec("DELETE FROM items WHERE ino = ?1", [ino as i64])?;
                }
            }
        }
        Ok(removed)
    }

    /// `(ino, item_id)` of the rows below `top` (not `top` itself), not descending into `excluded` folders (nor
    /// listing them): the rows one tree's full listing answers for.
    pub fn tree_item_ids(&self, top: u64, excluded: &[u64]) -> Result<Vec<(u64, String)>> {
        let excluded = serde_json::to_string(excluded).expect("inodes serialize");
        let mut stmt = self.conn.prepare_cached(
            "WITH RECURSIVE sub(ino) AS (SELECT ?1 UNION ALL SELECT items.ino FROM items JOIN sub ON \
             items.parent_ino = sub.ino WHERE items.ino NOT IN (SELECT value FROM json_each(?2))) \
             SELECT items.ino, items.item_id FROM sub JOIN items ON items.ino = sub.ino WHERE sub.ino <> ?1",
        )?;
        let rows = stmt.query_map(params![top as i64, excluded], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Whether `ino` is in the tree shown from the root (not in a retired one, not detached).
    pub fn is_shown(&self, ino: u64) -> Result<bool> {
        let mut current = Some(ino);
        let mut steps = 0;
        while let Some(i) = current {
            if i == ROOT_INO {
                return Ok(true);
            }
            current = self.get(i)?.and_then(|r| r.parent_ino);
            steps += 1;
            if steps > 100_000 {
                return Ok(false);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{ItemKind, NewItem, OutboxOp, Store, ROOT_INO};

    fn folder(s: &Store, id: &str, parent: u64, name: &str) -> u64 {
        s.write(|t| t.insert(&new(id, parent, name, ItemKind::Dir))).unwrap()
    }

    fn new(id: &str, parent: u64, name: &str, kind: ItemKind) -> NewItem {
        NewItem {
            item_id: id.into(),
            parent_ino: parent,
            name: name.into(),
            kind,
            size: 0,
            etag: None,
            ctag: None,
            quick_xor_hash: None,
            mtime: 0,
            mime_type: None,
            is_media: false,
            content_state: Default::default(),
            local_only: false,
        }
    }

    #[test]
    fn a_subfolder_becomes_the_root_and_pending_changes_of_the_old_tree_stay() {
        let s = Store::open_in_memory().unwrap();
        s.set_root_item("G").unwrap();
        let dcim = folder(&s, "D", ROOT_INO, "DCIM");
        let camera = folder(&s, "C", dcim, "Camera");
        let download = folder(&s, "W", ROOT_INO, "Download");
        let photo = s
            .write(|t| t.insert(&new("P", camera, "a.jpg", ItemKind::File)))
            .unwrap();
        let pending = s
            .write(|t| t.insert(&new("Q", download, "b.jpg", ItemKind::File)))
            .unwrap();
        let untouched = s
            .write(|t| t.insert(&new("R", download, "c.jpg", ItemKind::File)))
            .unwrap();
        s.write(|t| {
            t.enqueue(&OutboxOp::Move {
                ino: pending,
                item_id: "Q".into(),
                new_parent_id: "W".into(),
                new_name: "d.jpg".into(),
            })
        })
        .unwrap();
        s.write(|t| t.retire_root("D")).unwrap();
        assert_eq!(s.lookup(ROOT_INO, "Camera").unwrap().unwrap().ino, camera);
        assert!(s.lookup(ROOT_INO, "DCIM").unwrap().is_none());
        assert_eq!(s.get(photo).unwrap().unwrap().parent_ino, Some(camera));
        assert_eq!(s.get(ROOT_INO).unwrap().unwrap().item_id, "D");
        let retired = s.read(|t| t.retired_roots()).unwrap();
        assert_eq!(retired.len(), 1);
        assert_eq!(s.get(retired[0]).unwrap().unwrap().item_id, "G");
        assert!(!s.read(|t| t.is_shown(pending)).unwrap());
        s.write(|t| t.prune_retired_roots()).unwrap();
        assert!(s.get(pending).unwrap().is_some(), "a journalled change keeps its row");
        assert_eq!(s.get(download).unwrap().unwrap().item_id, "W");
        assert!(s.get(untouched).unwrap().is_none(), "the rest of the old tree goes");
        // Once the change is sent, the whole retired tree goes.
        let seq = s.pending().unwrap()[0].seq;
        s.write(|t| t.complete(seq)).unwrap();
        s.write(|t| t.prune_retired_roots()).unwrap();
        assert!(s.read(|t| t.retired_roots()).unwrap().is_empty());
    }
}
