//! The content cache's block map: which byte ranges `[lo, hi)` of one content version (inode + cTag) are present
//! in the item's sparse cache file, kept merged (disjoint, non-adjacent), plus per-item `cached_bytes` and
//! `last_access` for LRU eviction. Marking bytes of a different cTag first forgets the old version's ranges.
//! The item's `content_state` follows (partial / cached / cloud) unless it is dirty.

use super::items::ContentState;
use super::{now_millis, Result, StoreTx};
use rusqlite::{params, OptionalExtension};

/// An item whose cached content may be evicted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvictionCandidate {
    pub ino: u64,
    pub cached_bytes: u64,
    /// Unix milliseconds (strictly increasing per access across the store).
    pub last_access: i64,
}

impl StoreTx<'_> {
    fn content_ctag(&self, ino: u64) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT ctag FROM content WHERE ino = ?1")?
            .query_row([ino as i64], |r| r.get(0))
            .optional()?)
    }

    /// A strictly increasing access clock: wall-clock milliseconds, bumped past the latest recorded access.
    fn access_clock(&self) -> Result<i64> {
        let latest: Option<i64> = self.one("SELECT MAX(last_access) FROM content", [], |r| r.get(0))?;
        Ok(now_millis().max(latest.unwrap_or(0) + 1))
    }

    /// Records that bytes `[start, end)` of content version `ctag` are now in the cache file.
    pub fn mark_present(&self, ino: u64, ctag: &str, start: u64, end: u64) -> Result<()> {
        if start >= end {
            return Ok(());
        }
        let item = self.get(ino)?.ok_or(super::StoreError::NoSuchInode(ino))?;
        let now = self.access_clock()?;
        if self.content_ctag(ino)?.as_deref() != Some(ctag) {
            self.exec("DELETE FROM blocks WHERE ino = ?1", [ino as i64])?;
            self.exec(
                "INSERT INTO content (ino, ctag, cached_bytes, last_access) VALUES (?1, ?2, 0, ?3) \
                 ON CONFLICT(ino) DO UPDATE SET ctag = ?2, cached_bytes = 0, last_access = ?3",
                params![ino as i64, ctag, now],
            )?;
        }
        let (mut lo, mut hi) = (start as i64, end as i64);
        {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT lo, hi FROM blocks WHERE ino = ?1 AND lo <= ?3 AND hi >= ?2")?;
            let rows = stmt.query_map(params![ino as i64, lo, hi], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })?;
            for r in rows {
                let (l, h) = r?;
                lo = lo.min(l);
                hi = hi.max(h);
            }
        }
        self.exec(
            "DELETE FROM blocks WHERE ino = ?1 AND lo >= ?2 AND hi <= ?3",
            params![ino as i64, lo, hi],
        )?;
        self.exec(
            "INSERT INTO blocks (ino, lo, hi) VALUES (?1, ?2, ?3)",
            params![ino as i64, lo, hi],
        )?;
        let cached: i64 = self.one(
            "SELECT COALESCE(SUM(hi - lo), 0) FROM blocks WHERE ino = ?1",
            [ino as i64],
            |r| r.get(0),
        )?;
        self.exec(
            "UPDATE content SET cached_bytes = ?2, last_access = ?3 WHERE ino = ?1",
            params![ino as i64, cached, now],
        )?;
        if !item.is_dirty() {
            let state = if cached as u64 >= item.size {
                ContentState::Cached
            } else {
                ContentState::Partial
            };
            self.set_content_state(ino, state)?;
        }
        Ok(())
    }

    /// The sub-ranges of `[start, end)` of content version `ctag` that are not cached, in order.
    pub fn missing_ranges(&self, ino: u64, ctag: &str, start: u64, end: u64) -> Result<Vec<(u64, u64)>> {
        if start >= end {
            return Ok(Vec::new());
        }
        if self.content_ctag(ino)?.as_deref() != Some(ctag) {
            return Ok(vec![(start, end)]);
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT lo, hi FROM blocks WHERE ino = ?1 AND lo < ?3 AND hi > ?2 ORDER BY lo")?;
        let rows = stmt.query_map(params![ino as i64, start as i64, end as i64], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
        })?;
        let mut missing = Vec::new();
        let mut cursor = start;
        for r in rows {
            let (lo, hi) = r?;
            if lo > cursor {
                missing.push((cursor, lo.min(end)));
            }
            cursor = cursor.max(hi);
        }
        if cursor < end {
            missing.push((cursor, end));
        }
        Ok(missing)
    }

    /// Bytes of the item's current cached version.
    pub fn present_bytes(&self, ino: u64) -> Result<u64> {
        let n: Option<i64> = self
            .conn
            .prepare_cached("SELECT cached_bytes FROM content WHERE ino = ?1")?
            .query_row([ino as i64], |r| r.get(0))
            .optional()?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    /// Forgets all cached ranges of an item (after eviction or a remote content change).
    pub fn drop_blocks(&self, ino: u64) -> Result<()> {
        self.exec("DELETE FROM content WHERE ino = ?1", [ino as i64])?;
        self.exec(
            "UPDATE items SET content_state = 0 WHERE ino = ?1 AND content_state IN (1, 2)",
            [ino as i64],
        )?;
        Ok(())
    }

    /// Records an access to the item's cached content (LRU).
    pub fn touch(&self, ino: u64) -> Result<()> {
        let now = self.access_clock()?;
        self.exec(
            "UPDATE content SET last_access = ?2 WHERE ino = ?1",
            params![ino as i64, now],
        )?;
        Ok(())
    }

    /// Up to `limit` items holding cached bytes, least recently accessed first, never pinned or dirty ones.
    pub fn eviction_candidates(&self, limit: usize) -> Result<Vec<EvictionCandidate>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT c.ino, c.cached_bytes, c.last_access FROM content c JOIN items i ON i.ino = c.ino \
             WHERE i.pinned = 0 AND i.content_state <> 3 AND c.cached_bytes > 0 \
             ORDER BY c.last_access, c.ino LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(EvictionCandidate {
                ino: r.get::<_, i64>(0)? as u64,
                cached_bytes: r.get::<_, i64>(1)?.max(0) as u64,
                last_access: r.get(2)?,
            })
        })?;
        rows.map(|r| Ok(r?)).collect()
    }

    /// Bytes cached across all items.
    pub fn total_cached_bytes(&self) -> Result<u64> {
        let n: i64 = self.one("SELECT COALESCE(SUM(cached_bytes), 0) FROM content", [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{ContentState, ItemKind, NewItem, Store, ROOT_INO};

    fn file(s: &Store, id: &str, size: u64) -> u64 {
        s.insert(&NewItem {
            item_id: id.into(),
            parent_ino: ROOT_INO,
            name: format!("{id}.jpg"),
            kind: ItemKind::File,
            size,
            etag: None,
            ctag: Some("c1".into()),
            quick_xor_hash: None,
            mtime: 0,
            mime_type: None,
            is_media: true,
            content_state: ContentState::Cloud,
            local_only: false,
        })
        .unwrap()
    }

    #[test]
    fn ranges_merge_and_gaps_are_reported() {
        let s = Store::open_in_memory().unwrap();
        let f = file(&s, "A", 100);
        assert_eq!(s.missing_ranges(f, "c1", 0, 100).unwrap(), vec![(0, 100)]);
        s.mark_present(f, "c1", 10, 20).unwrap();
        s.mark_present(f, "c1", 30, 40).unwrap();
        assert_eq!(
            s.missing_ranges(f, "c1", 0, 100).unwrap(),
            vec![(0, 10), (20, 30), (40, 100)]
        );
        assert_eq!(s.missing_ranges(f, "c1", 12, 18).unwrap(), vec![]);
        assert_eq!(s.missing_ranges(f, "c1", 15, 35).unwrap(), vec![(20, 30)]);
        assert_eq!(s.get(f).unwrap().unwrap().content_state, ContentState::Partial);
        // Adjacent and overlapping ranges merge into one.
        s.mark_present(f, "c1", 20, 30).unwrap();
        s.mark_present(f, "c1", 35, 60).unwrap();
        assert_eq!(s.missing_ranges(f, "c1", 0, 100).unwrap(), vec![(0, 10), (60, 100)]);
        assert_eq!(s.present_bytes(f).unwrap(), 50);
        s.mark_present(f, "c1", 0, 100).unwrap();
        assert_eq!(s.missing_ranges(f, "c1", 0, 100).unwrap(), vec![]);
        assert_eq!(s.present_bytes(f).unwrap(), 100);
        assert_eq!(s.get(f).unwrap().unwrap().content_state, ContentState::Cached);
        // Another content version has nothing cached, and marking it forgets the old one.
        assert_eq!(s.missing_ranges(f, "c2", 0, 100).unwrap(), vec![(0, 100)]);
        s.mark_present(f, "c2", 0, 10).unwrap();
        assert_eq!(s.present_bytes(f).unwrap(), 10);
        assert_eq!(s.missing_ranges(f, "c1", 0, 5).unwrap(), vec![(0, 5)]);
        s.drop_blocks(f).unwrap();
        assert_eq!(s.present_bytes(f).unwrap(), 0);
        assert_eq!(s.get(f).unwrap().unwrap().content_state, ContentState::Cloud);
    }

    #[test]
    fn lru_order_skips_pinned_and_dirty() {
        let s = Store::open_in_memory().unwrap();
        let a = file(&s, "A", 10);
        let b = file(&s, "B", 10);
        let c = file(&s, "C", 10);
        let d = file(&s, "D", 10);
        for ino in [a, b, c, d] {
            s.mark_present(ino, "c1", 0, 10).unwrap();
        }
        s.touch(a).unwrap(); // a is now the most recent
        s.set_pinned(b, true).unwrap();
        s.set_content_state(c, ContentState::Dirty).unwrap();
        let order: Vec<u64> = s.eviction_candidates(10).unwrap().iter().map(|e| e.ino).collect();
        assert_eq!(order, vec![d, a]);
        assert_eq!(s.eviction_candidates(1).unwrap()[0].cached_bytes, 10);
        assert_eq!(s.total_cached_bytes().unwrap(), 40);
        s.remove(d).unwrap();
        assert_eq!(s.total_cached_bytes().unwrap(), 30, "removing an item drops its blocks");
    }
}
