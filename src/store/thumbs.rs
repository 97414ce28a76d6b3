//! Thumbnail states per (item id, size) for the content version (cTag) they were fetched for: `ready` (in the
//! thumbnail cache), `missing` (OneDrive has none for this version), `failed` (with attempts). A state recorded
//! for another cTag is stale, so a content change makes the item pending again without any cleanup.

use super::items::{select_columns, ItemRow};
use super::{Result, StoreError, StoreTx};
use rusqlite::{params, OptionalExtension};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ThumbSize {
    /// freedesktop `normal` (128 px).
    Normal,
    /// freedesktop `large` (256 px).
    Large,
}

impl ThumbSize {
    pub fn as_str(self) -> &'static str {
        match self {
            ThumbSize::Normal => "normal",
            ThumbSize::Large => "large",
        }
    }
    fn parse(s: &str) -> Result<Self> {
        match s {
            "normal" => Ok(ThumbSize::Normal),
            "large" => Ok(ThumbSize::Large),
            other => Err(StoreError::Corrupt(format!("thumbnail size {other:?}"))),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ThumbState {
    Ready,
    /// OneDrive has no thumbnail for this content version.
    Missing,
    Failed,
}

impl ThumbState {
    fn to_db(self) -> i64 {
        match self {
            ThumbState::Ready => 0,
            ThumbState::Missing => 1,
            ThumbState::Failed => 2,
        }
    }
    fn from_db(v: i64) -> Result<Self> {
        match v {
            0 => Ok(ThumbState::Ready),
            1 => Ok(ThumbState::Missing),
            2 => Ok(ThumbState::Failed),
            other => Err(StoreError::Corrupt(format!("thumbnail state {other}"))),
        }
    }
}

/// A state to record for one thumbnail ([`crate::store::Store::set_thumbnail_states`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThumbStateUpdate {
    pub item_id: String,
    pub size: ThumbSize,
    pub ctag: Option<String>,
    pub state: ThumbState,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThumbRow {
    pub item_id: String,
    pub size: ThumbSize,
    pub ctag: Option<String>,
    pub state: ThumbState,
    /// Consecutive failures for this cTag.
    pub attempts: u32,
    /// Unix milliseconds.
    pub updated_at: i64,
}

/// Thumbnail progress of one size over the media items' current content versions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThumbCounts {
    pub ready: u64,
    pub missing: u64,
    pub failed: u64,
    /// Media items in the store.
    pub total: u64,
}

impl StoreTx<'_> {
    /// Records the outcome of fetching a thumbnail for content version `ctag`. A failure for the same cTag
    /// increments `attempts`; any other state resets it.
    pub fn set_thumbnail_state(
        &self,
        item_id: &str,
        size: ThumbSize,
        ctag: Option<&str>,
        state: ThumbState,
    ) -> Result<()> {
        let previous = self.thumbnail(item_id, size)?;
        let attempts = match (state, previous) {
            (ThumbState::Failed, Some(p)) if p.state == ThumbState::Failed && p.ctag.as_deref() == ctag => {
                p.attempts + 1
            }
            (ThumbState::Failed, _) => 1,
            _ => 0,
        };
        self.exec(
            "INSERT INTO thumbs (item_id, size, ctag, state, attempts, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT(item_id, size) DO UPDATE SET ctag = ?3, state = ?4, attempts = ?5, updated_at = ?6",
            params![
                item_id,
                size.as_str(),
                ctag,
                state.to_db(),
                attempts,
                super::now_millis()
            ],
        )?;
        Ok(())
    }

    pub fn thumbnail(&self, item_id: &str, size: ThumbSize) -> Result<Option<ThumbRow>> {
        let raw = self
            .conn
            .prepare_cached(
                "SELECT item_id, size, ctag, state, attempts, updated_at FROM thumbs WHERE item_id = ?1 AND size = ?2",
            )?
            .query_row(params![item_id, size.as_str()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .optional()?;
        raw.map(|(item_id, size, ctag, state, attempts, updated_at)| {
            Ok(ThumbRow {
                item_id,
                size: ThumbSize::parse(&size)?,
                ctag,
                state: ThumbState::from_db(state)?,
                attempts: attempts.max(0) as u32,
                updated_at,
            })
        })
        .transpose()
    }

    pub fn thumbnail_counts(&self, size: ThumbSize) -> Result<ThumbCounts> {
        let mut counts = ThumbCounts {
            total: self.media_count()?,
            ..ThumbCounts::default()
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT t.state, COUNT(*) FROM thumbs t JOIN items i ON i.item_id = t.item_id \
             WHERE t.size = ?1 AND i.is_media = 1 AND t.ctag IS i.ctag GROUP BY t.state",
        )?;
        let rows = stmt.query_map([size.as_str()], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
        for r in rows {
            let (state, n) = r?;
            match ThumbState::from_db(state)? {
                ThumbState::Ready => counts.ready = n as u64,
                ThumbState::Missing => counts.missing = n as u64,
                ThumbState::Failed => counts.failed = n as u64,
            }
        }
        Ok(counts)
    }

    /// Media items (not local-only) without a `ready` or `missing` state of `size` for their current cTag, and
    /// not failed `max_attempts` times already for it; newest first.
    pub fn pending_thumbnails(&self, size: ThumbSize, max_attempts: u32, limit: usize) -> Result<Vec<ItemRow>> {
        let sql = format!(
            "SELECT {} FROM items i LEFT JOIN thumbs t ON t.item_id = i.item_id AND t.size = ?1 AND t.ctag IS i.ctag \
             WHERE i.is_media = 1 AND i.kind = 0 AND i.local_only = 0 \
             AND (t.state IS NULL OR (t.state = 2 AND t.attempts < ?2)) \
             ORDER BY i.mtime DESC, i.ino LIMIT ?3",
            select_columns("i")
        );
        self.query_items(&sql, params![size.as_str(), max_attempts, limit as i64])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ContentState, ItemKind, NewItem, RemoteAttrs, Store, ROOT_INO};

    fn media(s: &Store, id: &str, mtime: i64) -> u64 {
        s.insert(&NewItem {
            item_id: id.into(),
            parent_ino: ROOT_INO,
            name: format!("{id}.jpg"),
            kind: ItemKind::File,
            size: 1,
            etag: None,
            ctag: Some("c1".into()),
            quick_xor_hash: None,
            mtime,
            mime_type: Some("image/jpeg".into()),
            is_media: true,
            content_state: ContentState::Cloud,
            local_only: false,
        })
        .unwrap()
    }

    #[test]
    fn pending_follows_ctag_and_attempts() {
        let s = Store::open_in_memory().unwrap();
        let a = media(&s, "A", 1);
        media(&s, "B", 2);
        media(&s, "C", 3);
        let ids = |v: Vec<ItemRow>| v.into_iter().map(|r| r.item_id).collect::<Vec<_>>();
        assert_eq!(
            ids(s.pending_thumbnails(ThumbSize::Normal, 3, 10).unwrap()),
            ["C", "B", "A"]
        );
        s.set_thumbnail_state("A", ThumbSize::Normal, Some("c1"), ThumbState::Ready)
            .unwrap();
        s.set_thumbnail_state("B", ThumbSize::Normal, Some("c1"), ThumbState::Missing)
            .unwrap();
        for _ in 0..3 {
            s.set_thumbnail_state("C", ThumbSize::Normal, Some("c1"), ThumbState::Failed)
                .unwrap();
        }
        assert_eq!(s.thumbnail("C", ThumbSize::Normal).unwrap().unwrap().attempts, 3);
        assert!(s.pending_thumbnails(ThumbSize::Normal, 3, 10).unwrap().is_empty());
        assert_eq!(ids(s.pending_thumbnails(ThumbSize::Normal, 4, 10).unwrap()), ["C"]);
        assert_eq!(ids(s.pending_thumbnails(ThumbSize::Large, 3, 10).unwrap()).len(), 3);
        let counts = s.thumbnail_counts(ThumbSize::Normal).unwrap();
        assert_eq!(
            (counts.ready, counts.missing, counts.failed, counts.total),
            (1, 1, 1, 3)
        );
        // New content makes A pending again.
        s.update_remote(
            a,
            &RemoteAttrs {
                ctag: Some("c2".into()),
                is_media: true,
                ..RemoteAttrs::default()
            },
        )
        .unwrap();
        assert_eq!(ids(s.pending_thumbnails(ThumbSize::Normal, 3, 10).unwrap()), ["A"]);
        assert_eq!(s.thumbnail_counts(ThumbSize::Normal).unwrap().ready, 0);
        // States follow the item id when a local item gets its real id; they vanish with the item.
        s.remove(a).unwrap();
        assert!(s.thumbnail("A", ThumbSize::Normal).unwrap().is_none());
    }
}
