//! The `trash` table: what was deleted through galleryfs, so `galleryfs trash list` can show it (OneDrive
//! Personal offers no recycle-bin listing) and `galleryfs trash restore` can bring it back by id. A row is
//! recorded when the delete is journalled and marked `in_recycle_bin` once OneDrive accepted it.

use super::{Result, StoreTx};
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

/// One delete made through galleryfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrashRow {
    pub item_id: String,
    pub name: String,
    /// The path below the gallery root when it was deleted.
    pub path: String,
    pub parent_id: Option<String>,
    pub is_dir: bool,
    pub size: u64,
    pub deleted_at: DateTime<Utc>,
    /// OneDrive accepted the delete (the item is in its recycle bin); `false` while the delete is queued.
    pub in_recycle_bin: bool,
}

type RawTrash = (String, String, String, Option<String>, bool, i64, String, i64);

impl StoreTx<'_> {
    pub fn record_trash(&self, row: &TrashRow) -> Result<()> {
        self.exec(
            "INSERT INTO trash (item_id, name, path, parent_id, is_dir, size, deleted_at, state) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT(item_id) DO UPDATE SET name = ?2, path = ?3, \
             parent_id = ?4, is_dir = ?5, size = ?6, deleted_at = ?7, state = ?8",
            params![
                row.item_id,
                row.name,
                row.path,
                row.parent_id,
                row.is_dir,
                row.size as i64,
                row.deleted_at.to_rfc3339(),
                row.in_recycle_bin as i64
            ],
        )?;
        Ok(())
    }

    /// OneDrive accepted the delete of `item_id`.
    pub fn trash_delete_done(&self, item_id: &str) -> Result<()> {
        self.exec("UPDATE trash SET state = 1 WHERE item_id = ?1", [item_id])?;
        Ok(())
    }

    /// Forgets a trash record (restored, or the delete was cancelled).
    pub fn forget_trash(&self, item_id: &str) -> Result<()> {
        self.exec("DELETE FROM trash WHERE item_id = ?1", [item_id])?;
        Ok(())
    }

    pub fn trash_entry(&self, item_id: &str) -> Result<Option<TrashRow>> {
        let raw = self
            .one(
                "SELECT item_id, name, path, parent_id, is_dir, size, deleted_at, state FROM trash \
                 WHERE item_id = ?1",
                [item_id],
                raw_trash,
            )
            .optional()?;
        raw.map(trash_row).transpose()
    }

    /// Deletes made since `since`, newest first.
    pub fn trash_since(&self, since: DateTime<Utc>) -> Result<Vec<TrashRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT item_id, name, path, parent_id, is_dir, size, deleted_at, state FROM trash \
             WHERE deleted_at >= ?1 ORDER BY deleted_at DESC",
        )?;
        let rows = stmt.query_map([since.to_rfc3339()], raw_trash)?;
        rows.map(|r| trash_row(r?)).collect()
    }
}

fn raw_trash(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawTrash> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn trash_row(raw: RawTrash) -> Result<TrashRow> {
    let (item_id, name, path, parent_id, is_dir, size, deleted_at, state) = raw;
    let deleted_at = DateTime::parse_from_rfc3339(&deleted_at)
        .map_err(|_| super::StoreError::Corrupt(format!("trash time {deleted_at:?}")))?
        .with_timezone(&Utc);
    Ok(TrashRow {
        item_id,
        name,
        path,
        parent_id,
        is_dir,
        size: size.max(0) as u64,
        deleted_at,
        in_recycle_bin: state == 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn row(id: &str, days_ago: i64) -> TrashRow {
        TrashRow {
            item_id: id.into(),
            name: format!("{id}.jpg"),
            path: format!("/Camera/{id}.jpg"),
            parent_id: Some("P".into()),
            is_dir: false,
            size: 3,
            deleted_at: Utc::now() - chrono::Duration::days(days_ago),
            in_recycle_bin: false,
        }
    }

    #[test]
    fn records_lists_recent_first_and_forgets() {
        let s = Store::open_in_memory().unwrap();
        s.write(|t| {
            t.record_trash(&row("old", 40))?;
            t.record_trash(&row("a", 2))?;
            t.record_trash(&row("b", 1))?;
            t.trash_delete_done("a")
        })
        .unwrap();
        let since = Utc::now() - chrono::Duration::days(30);
        let listed = s.read(|t| t.trash_since(since)).unwrap();
        let ids: Vec<_> = listed.iter().map(|r| r.item_id.as_str()).collect();
        assert_eq!(ids, vec!["b", "a"]);
        assert!(listed[1].in_recycle_bin && !listed[0].in_recycle_bin);
        s.write(|t| t.forget_trash("a")).unwrap();
        assert!(s.read(|t| t.trash_entry("a")).unwrap().is_none());
        assert_eq!(s.read(|t| t.trash_entry("b")).unwrap().unwrap().path, "/Camera/b.jpg");
    }
}
