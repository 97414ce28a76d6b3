//! Hash while streaming: the quickXorHash of one content version's bytes, fed as they are written to the version's
//! cache file, so that the verification after the last byte does not read the whole file back.
//!
//! quickXorHash XORs each byte in at a rotation fixed by its absolute offset, so the written pieces are hashed in
//! whatever order they arrive ([`QuickXorHash::update_at`]: parallel download parts, a reader that seeks) and the
//! ranges hashed are remembered. A write over bytes already hashed makes the hash unusable (it no longer vouches
//! for the file: the earlier bytes are XORed in and unknown), and so does a generation change (eviction,
//! mismatch). When the version completes, [`StreamHasher::finish`] reads from the file only the ranges not hashed
//! on the way in (none for a download that ran in this process) — or the whole file when the hash is unusable.
//!
//! One [`StreamHasher`] per item (in the content store's item slot). Callers hold the item's generation lock
//! (shared for `feed`, exclusive for `finish`), so the generation they pass is current.

use crate::remote::QuickXorHash;
use parking_lot::Mutex;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Separate hashed ranges kept before giving up on the streamed hash (random access); the fallback reads the file.
const MAX_RANGES: usize = 256;
/// Buffer for hashing the ranges not hashed on the way in.
const READ_BUFFER: usize = 1024 * 1024;

/// Bytes read back from cache files to hash them, for tests and the benchmark.
#[derive(Debug, Default)]
pub struct HashCounters {
    /// Bytes read back by the verification when a version completed (the fallback).
    pub reread: AtomicU64,
}

struct State {
    ctag: String,
    generation: u64,
    hash: QuickXorHash,
    /// The ranges hashed: sorted, disjoint, not touching.
    hashed: Vec<(u64, u64)>,
}

/// The streamed hash of one item (see the module note).
#[derive(Default)]
pub struct StreamHasher(Mutex<Option<State>>);

impl StreamHasher {
    /// Records that `bytes` were written at `offset` of the version `ctag` (under `generation`).
    pub fn feed(&self, ctag: &str, generation: u64, offset: u64, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut guard = self.0.lock();
        let current = guard
            .as_ref()
            .is_some_and(|s| s.ctag == ctag && s.generation == generation);
        if !current {
            *guard = Some(State {
                ctag: ctag.to_string(),
                generation,
                hash: QuickXorHash::new(),
                hashed: Vec::new(),
            });
        }
        let state = guard.as_mut().expect("state set above");
        let end = offset + bytes.len() as u64;
        if state.hashed.iter().any(|&(lo, hi)| lo < end && offset < hi) {
            // Bytes already hashed were written again: the hash no longer vouches for the file.
            *guard = None;
            return;
        }
        state.hash.update_at(offset, bytes);
        add_range(&mut state.hashed, offset, end);
        if state.hashed.len() > MAX_RANGES {
            *guard = None;
        }
    }

    /// Forgets the hash (the file was deleted or is being replaced).
    pub fn reset(&self) {
        *self.0.lock() = None;
    }

    /// The quickXorHash (base64) of the first `size` bytes of the version's file at `path`: the streamed hash,
    /// completed with the ranges it lacks read from the file (all of it when the hash is unusable).
    pub fn finish(
        &self,
        ctag: &str,
        generation: u64,
        path: &Path,
        size: u64,
        counters: &HashCounters,
    ) -> io::Result<String> {
        let state = self.0.lock().take();
        let (mut hash, hashed) = match state {
            Some(s) if s.ctag == ctag && s.generation == generation && s.hashed.last().is_none_or(|r| r.1 <= size) => {
                (s.hash, s.hashed)
            }
            _ => (QuickXorHash::new(), Vec::new()),
        };
        let gaps = gaps(&hashed, size);
        if !gaps.is_empty() {
            let file = File::open(path)?;
            let mut buf = Vec::new();
            for (lo, hi) in gaps {
                counters.reread.fetch_add(hi - lo, Ordering::Relaxed);
                let mut at = lo;
                while at < hi {
                    let n = ((hi - at) as usize).min(READ_BUFFER);
                    buf.resize(n, 0);
                    file.read_exact_at(&mut buf, at)?;
                    hash.update_at(at, &buf);
                    at += n as u64;
                }
            }
            tracing::debug!(size, "verified a cache file partly or wholly read back");
        }
        hash.set_len(size);
        Ok(hash.finish_base64())
    }
}

/// Inserts `[lo, hi)` into sorted, disjoint ranges, merging overlapping and touching ones.
fn add_range(ranges: &mut Vec<(u64, u64)>, lo: u64, hi: u64) {
    let (mut lo, mut hi) = (lo, hi);
    ranges.retain(|&(a, b)| {
        if b < lo || a > hi {
            true
        } else {
            lo = lo.min(a);
            hi = hi.max(b);
            false
        }
    });
    let at = ranges.partition_point(|&(a, _)| a < lo);
    ranges.insert(at, (lo, hi));
}

/// The parts of `[0, size)` not in the sorted, disjoint `ranges`.
fn gaps(ranges: &[(u64, u64)], size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut cursor = 0;
    for &(lo, hi) in ranges {
        if lo > cursor {
            out.push((cursor, lo.min(size)));
        }
        cursor = cursor.max(hi);
    }
    if cursor < size {
        out.push((cursor, size));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn setup(data: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        File::create(&path).unwrap().write_all(data).unwrap();
        (dir, path)
    }

    #[test]
    fn in_order_writes_need_no_reread() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let (_d, path) = setup(&data);
        let (h, c) = (StreamHasher::default(), HashCounters::default());
        for (i, chunk) in data.chunks(7_000).enumerate() {
            h.feed("c1", 0, (i * 7_000) as u64, chunk);
        }
        let got = h.finish("c1", 0, &path, data.len() as u64, &c).unwrap();
        assert_eq!(got, QuickXorHash::of(&data));
        assert_eq!(c.reread.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn out_of_order_writes_need_no_reread_either() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let (_d, path) = setup(&data);
        let (h, c) = (StreamHasher::default(), HashCounters::default());
        // Parts 2 and 3 arrive before part 1, as parallel parts do.
        h.feed("c1", 3, 20_001, &data[20_001..30_000]);
        h.feed("c1", 3, 30_000, &data[30_000..50_000]);
        h.feed("c1", 3, 0, &data[..10_000]);
        h.feed("c1", 3, 10_000, &data[10_000..20_001]);
        let got = h.finish("c1", 3, &path, 50_000, &c).unwrap();
        assert_eq!(got, QuickXorHash::of(&data));
        assert_eq!(c.reread.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn rewrites_generation_changes_and_gaps_fall_back_to_reading() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 241) as u8).collect();
        let (_d, path) = setup(&data);
        let c = HashCounters::default();
        // Hashed bytes written again (possibly with other bytes): the hash is dropped; what is written afterwards
        // is hashed anew, the rest read from the file.
        let h = StreamHasher::default();
        h.feed("c1", 0, 0, &[0u8; 5_000]);
        h.feed("c1", 0, 0, &data[..5_000]);
        h.feed("c1", 0, 5_000, &data[5_000..]);
        assert_eq!(h.finish("c1", 0, &path, 10_000, &c).unwrap(), QuickXorHash::of(&data));
        assert_eq!(c.reread.swap(0, Ordering::Relaxed), 5_000);
        // Another generation: the earlier hash is not used.
        h.feed("c1", 0, 0, &[9u8; 4_000]);
        assert_eq!(h.finish("c1", 1, &path, 10_000, &c).unwrap(), QuickXorHash::of(&data));
        assert_eq!(c.reread.swap(0, Ordering::Relaxed), 10_000);
        // Two ranges hashed: only the gaps between and after them are read.
        h.feed("c1", 2, 0, &data[..4_000]);
        h.feed("c1", 2, 6_000, &data[6_000..9_000]);
        assert_eq!(h.finish("c1", 2, &path, 10_000, &c).unwrap(), QuickXorHash::of(&data));
        assert_eq!(c.reread.load(Ordering::Relaxed), 3_000);
    }

    #[test]
    fn ranges_merge_and_gaps_are_the_rest() {
        let mut r = Vec::new();
        add_range(&mut r, 10, 20);
        add_range(&mut r, 30, 40);
        add_range(&mut r, 0, 5);
        assert_eq!(r, vec![(0, 5), (10, 20), (30, 40)]);
        assert_eq!(gaps(&r, 50), vec![(5, 10), (20, 30), (40, 50)]);
        add_range(&mut r, 20, 30);
        assert_eq!(r, vec![(0, 5), (10, 40)]);
        add_range(&mut r, 3, 12);
        assert_eq!(r, vec![(0, 40)]);
        assert_eq!(gaps(&r, 40), vec![]);
        assert_eq!(gaps(&[], 7), vec![(0, 7)]);
    }
}
