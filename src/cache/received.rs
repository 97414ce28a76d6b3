//! Download chunks a reader's parts received recently, kept in memory so that the reader answers reads from them
//! while the parts write the cache file behind (see [`super::reader`]).
//!
//! Bounded: at most `cap` bytes, only chunks within `behind` bytes before the reader's position and `cap` bytes
//! after it are kept; when over `cap`, the chunks furthest ahead go first (those reach the cache file before the
//! reader gets there). Chunks are the download's own buffers (`Bytes`), shared with the part that writes them:
//! keeping one costs no copy. All chunks are bytes of the one content version the reader is pinned to.

use bytes::{Bytes, BytesMut};
use std::collections::BTreeMap;

pub(crate) struct Received {
    chunks: BTreeMap<u64, Bytes>,
    bytes: usize,
    cap: usize,
    behind: u64,
    reader_at: u64,
}

impl Received {
    pub(crate) fn new(cap: usize, behind: u64) -> Received {
        Received {
            chunks: BTreeMap::new(),
            bytes: 0,
            cap,
            behind,
            reader_at: 0,
        }
    }

    fn keeps(&self, start: u64, end: u64) -> bool {
        end > self.reader_at.saturating_sub(self.behind) && start < self.reader_at + self.cap as u64
    }

    /// Keeps `chunk` (the bytes at `offset`) when it lies near the reader; returns whether it was kept.
    pub(crate) fn insert(&mut self, offset: u64, chunk: Bytes) -> bool {
        let len = chunk.len();
        if len == 0 || self.cap == 0 || !self.keeps(offset, offset + len as u64) {
            return false;
        }
        if let Some(old) = self.chunks.insert(offset, chunk) {
            self.bytes -= old.len();
        }
        self.bytes += len;
        while self.bytes > self.cap {
            match self.chunks.pop_last() {
                Some((_, c)) => self.bytes -= c.len(),
                None => break,
            }
        }
        self.chunks.contains_key(&offset)
    }

    /// The reader now reads at `at`: chunks out of its span are dropped.
    pub(crate) fn advance(&mut self, at: u64) {
        self.reader_at = at;
        let lo = at.saturating_sub(self.behind);
        let hi = at + self.cap as u64;
        while let Some(entry) = self.chunks.first_entry() {
            if *entry.key() + entry.get().len() as u64 > lo {
                break;
            }
            self.bytes -= entry.remove().len();
        }
        while let Some(entry) = self.chunks.last_entry() {
            if *entry.key() < hi {
                break;
            }
            self.bytes -= entry.remove().len();
        }
    }

    /// Whether no chunk is kept.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Drops every chunk.
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.bytes = 0;
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes `[start, end)` when the chunks cover all of them (one chunk's slice without a copy, else gathered).
    pub(crate) fn get(&self, start: u64, end: u64) -> Option<Bytes> {
        if start >= end {
            return Some(Bytes::new());
        }
        let mut pieces: Vec<Bytes> = Vec::new();
        let mut cursor = start;
        while cursor < end {
            let (&offset, chunk) = self.chunks.range(..=cursor).next_back()?;
            let chunk_end = offset + chunk.len() as u64;
            if chunk_end <= cursor {
                return None;
            }
            let from = (cursor - offset) as usize;
            let to = (end.min(chunk_end) - offset) as usize;
            pieces.push(chunk.slice(from..to));
            cursor = end.min(chunk_end);
        }
        if pieces.len() == 1 {
            return pieces.pop();
        }
        let mut out = BytesMut::with_capacity((end - start) as usize);
        for piece in pieces {
            out.extend_from_slice(&piece);
        }
        Some(out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(offset: u64, len: usize) -> Bytes {
        Bytes::from((0..len).map(|i| (offset as usize + i) as u8).collect::<Vec<u8>>())
    }

    #[test]
    fn gathers_across_chunks_and_refuses_gaps() {
        let mut r = Received::new(1 << 20, 1 << 10);
        assert!(r.insert(0, chunk(0, 100)));
        assert!(r.insert(100, chunk(100, 50)));
        assert!(r.insert(200, chunk(200, 50)));
        assert_eq!(r.get(10, 140).unwrap(), chunk(10, 130));
        assert_eq!(r.get(0, 100).unwrap(), chunk(0, 100));
        assert!(r.get(120, 210).is_none(), "a gap is not served");
        assert!(r.get(240, 260).is_none(), "nor bytes past the last chunk");
    }

    #[test]
    fn stays_within_its_cap_and_span() {
        let mut r = Received::new(1000, 100);
        for i in 0..20u64 {
            r.insert(i * 100, chunk(i * 100, 100));
        }
        assert!(r.bytes() <= 1000);
        assert!(r.get(0, 100).is_some(), "the chunks nearest the reader stay");
        assert!(r.get(1900, 2000).is_none(), "the furthest ahead go first");
        r.advance(500);
        assert!(
            r.get(300, 400).is_none(),
            "chunks more than `behind` before the reader are dropped"
        );
        assert!(r.get(400, 500).is_some());
        assert!(!r.insert(5000, chunk(5000, 10)), "a chunk far ahead is not kept");
        r.clear();
        assert!(r.is_empty());
    }
}
