//! Hash while streaming: the quickXorHash of one content version's bytes, fed as they are written to the version's
//! cache file, so that the verification after the last byte does not read the whole file back.
//!
//! quickXorHash is sequential (each byte's rotation depends on its absolute offset, and the state only moves
//! forward), so the hash follows the written bytes in offset order: a write at the hash's end is hashed from memory;
//! a write beyond it is remembered as *pending* and hashed from the cache file (just written, so in the page cache)
//! once the bytes before it have been; a write over bytes already hashed makes the hash unusable (it no longer
//! vouches for the file), and so does a generation change (eviction, mismatch). When the version completes,
//! [`StreamHasher::finish`] uses the hash if it covers the whole file and otherwise continues it (or starts over)
//! by reading the file — the fallback for random-access fills and for versions partly cached before a restart.
//!
//! One [`StreamHasher`] per item (in the content store's item slot). Callers hold the item's generation lock
//! (shared for `feed`, exclusive for `finish`), so the generation they pass is current.

use super::verify;
use crate::remote::QuickXorHash;
use parking_lot::Mutex;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Pending ranges kept before giving up on the streamed hash (random access); the fallback reads the file.
const MAX_PENDING: usize = 256;
/// Buffer for hashing pending ranges from the file.
const CATCH_UP_BUFFER: usize = 1024 * 1024;

/// Bytes read back from cache files to hash them, for tests and the benchmark.
#[derive(Debug, Default)]
pub struct HashCounters {
    /// Pending ranges hashed from the file while the download ran (page-cache reads).
    pub caught_up: AtomicU64,
    /// Bytes read back by the verification when the version completed (the fallback).
    pub reread: AtomicU64,
}

struct State {
    ctag: String,
    generation: u64,
    hash: QuickXorHash,
    /// Written ranges beyond `hash.len()`: sorted, disjoint, not touching.
    pending: Vec<(u64, u64)>,
}

/// The streamed hash of one item (see the module note).
#[derive(Default)]
pub struct StreamHasher(Mutex<Option<State>>);

impl StreamHasher {
    /// Records that `bytes` were written at `offset` of the version `ctag` (under `generation`) in `file`, which
    /// must be readable (pending ranges are hashed from it).
    pub fn feed(&self, ctag: &str, generation: u64, file: &File, offset: u64, bytes: &[u8], counters: &HashCounters) {
        let mut guard = self.0.lock();
        let current = guard
            .as_ref()
            .is_some_and(|s| s.ctag == ctag && s.generation == generation);
        if !current {
            *guard = Some(State {
                ctag: ctag.to_string(),
                generation,
                hash: QuickXorHash::new(),
                pending: Vec::new(),
            });
        }
        let state = guard.as_mut().expect("state set above");
        let end = offset + bytes.len() as u64;
        let pos = state.hash.len();
        if offset < pos {
            // Bytes already hashed were written again: the hash no longer vouches for the file.
            *guard = None;
            return;
        }
        if offset > pos {
            add_range(&mut state.pending, offset, end);
            if state.pending.len() > MAX_PENDING {
                *guard = None;
            }
            return;
        }
        state.hash.update(bytes);
        if catch_up(state, file, counters).is_err() {
            *guard = None;
        }
    }

    /// Forgets the hash (the file was deleted or is being replaced).
    pub fn reset(&self) {
        *self.0.lock() = None;
    }

    /// The quickXorHash (base64) of the first `size` bytes of the version's file at `path`: the streamed hash when
    /// it covers them, otherwise the streamed hash continued over the rest of the file, or the whole file read.
    pub fn finish(
        &self,
        ctag: &str,
        generation: u64,
        path: &Path,
        size: u64,
        counters: &HashCounters,
    ) -> io::Result<String> {
        let state = self.0.lock().take();
        let start = match state {
            Some(s) if s.ctag == ctag && s.generation == generation && s.hash.len() <= size => s.hash,
            _ => QuickXorHash::new(),
        };
        if start.len() == size {
            return Ok(start.finish_base64());
        }
        counters.reread.fetch_add(size - start.len(), Ordering::Relaxed);
        tracing::debug!(hashed = start.len(), size, "verifying a cache file by reading it back");
        verify::quick_xor_continue(path, start, size)
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

/// Hashes the pending ranges that the hash has reached, reading them from the file.
fn catch_up(state: &mut State, file: &File, counters: &HashCounters) -> io::Result<()> {
    let mut buf = Vec::new();
    while let Some(&(lo, hi)) = state.pending.first() {
        let pos = state.hash.len();
        if lo > pos {
            break;
        }
        state.pending.remove(0);
        let mut at = pos;
        while at < hi {
            let n = ((hi - at) as usize).min(CATCH_UP_BUFFER);
            buf.resize(n, 0);
            file.read_exact_at(&mut buf, at)?;
            state.hash.update(&buf);
            at += n as u64;
        }
        counters.caught_up.fetch_add(hi.saturating_sub(pos), Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn setup(data: &[u8]) -> (tempfile::TempDir, std::path::PathBuf, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        File::create(&path).unwrap().write_all(data).unwrap();
        let file = File::open(&path).unwrap();
        (dir, path, file)
    }

    #[test]
    fn in_order_writes_need_no_reread() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let (_d, path, file) = setup(&data);
        let (h, c) = (StreamHasher::default(), HashCounters::default());
        for (i, chunk) in data.chunks(7_000).enumerate() {
            h.feed("c1", 0, &file, (i * 7_000) as u64, chunk, &c);
        }
        let got = h.finish("c1", 0, &path, data.len() as u64, &c).unwrap();
        assert_eq!(got, QuickXorHash::of(&data));
        assert_eq!(c.reread.load(Ordering::Relaxed), 0);
        assert_eq!(c.caught_up.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn out_of_order_writes_catch_up_from_the_file() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let (_d, path, file) = setup(&data);
        let (h, c) = (StreamHasher::default(), HashCounters::default());
        // Parts 2 and 3 arrive before part 1 ends, as parallel parts do.
        h.feed("c1", 3, &file, 20_000, &data[20_000..30_000], &c);
        h.feed("c1", 3, &file, 30_000, &data[30_000..50_000], &c);
        h.feed("c1", 3, &file, 0, &data[..10_000], &c);
        h.feed("c1", 3, &file, 10_000, &data[10_000..20_000], &c);
        assert_eq!(c.caught_up.load(Ordering::Relaxed), 30_000);
        let got = h.finish("c1", 3, &path, 50_000, &c).unwrap();
        assert_eq!(got, QuickXorHash::of(&data));
        assert_eq!(c.reread.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn rewrites_generation_changes_and_late_starts_fall_back_to_reading() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 241) as u8).collect();
        let (_d, path, file) = setup(&data);
        let c = HashCounters::default();
        // Hashed bytes written again (possibly with other bytes): the hash is dropped.
        let h = StreamHasher::default();
        h.feed("c1", 0, &file, 0, &[0u8; 5_000], &c);
        h.feed("c1", 0, &file, 0, &data[..5_000], &c);
        h.feed("c1", 0, &file, 5_000, &data[5_000..], &c);
        assert_eq!(h.finish("c1", 0, &path, 10_000, &c).unwrap(), QuickXorHash::of(&data));
        assert_eq!(c.reread.swap(0, Ordering::Relaxed), 10_000);
        // Another generation: the earlier hash is not used.
        h.feed("c1", 0, &file, 0, &[9u8; 4_000], &c);
        assert_eq!(h.finish("c1", 1, &path, 10_000, &c).unwrap(), QuickXorHash::of(&data));
        assert_eq!(c.reread.swap(0, Ordering::Relaxed), 10_000);
        // Hashed up to 4,000 only: the rest is read from the file.
        h.feed("c1", 2, &file, 0, &data[..4_000], &c);
        assert_eq!(h.finish("c1", 2, &path, 10_000, &c).unwrap(), QuickXorHash::of(&data));
        assert_eq!(c.reread.load(Ordering::Relaxed), 6_000);
    }

    #[test]
    fn ranges_merge() {
        let mut r = Vec::new();
        add_range(&mut r, 10, 20);
        add_range(&mut r, 30, 40);
        add_range(&mut r, 0, 5);
        assert_eq!(r, vec![(0, 5), (10, 20), (30, 40)]);
        add_range(&mut r, 20, 30);
        assert_eq!(r, vec![(0, 5), (10, 40)]);
        add_range(&mut r, 3, 12);
        assert_eq!(r, vec![(0, 40)]);
    }
}
