//! A model check (shuttle) of the content cache's fetch-claim protocol, run on the real [`DiskCache`]: with the
//! `shuttle` feature its locks and atomics are shuttle's (`src/cache/sync_shim.rs`), so shuttle explores the
//! interleavings of the real `claim_fetch`, `fetches_in_flight`, `missing_ranges`, `write_at` (data half under the
//! item's generation read lock, commit under its write lock, verification of the completing range), `read_at`,
//! `evict`, and the wait on the item's change signal. Each reader thread drives them in the order
//! `cache/reader.rs` does (`PrefetchingReader::ensure_present`: enable the wake-up, look at the fetches in flight
//! and the block map, claim what nobody fetches, write it, end the claim; otherwise wait).
//!
//! Invariants: two readers never hold claims on the same bytes (also when a fetch ends without bytes); no write fails (a commit across an eviction is
//! discarded, never verified against a file that lost bytes); every reader ends with the right bytes (no deadlock,
//! no lost wake-up: shuttle fails a schedule where every thread waits); afterwards every byte the block map says
//! is present is in the cache file with its value.
//!
//! Needs the feature: `cargo test --features shuttle --test content_claims_shuttle` (`.ci/run` runs it).

use galleryfs::cache::{DiskCache, ItemVersion};
use galleryfs::remote::QuickXorHash;
use galleryfs::store::{ContentState, ItemKind, NewItem, Store, ROOT_INO};
use std::sync::{Arc, Mutex};

const SIZE: u64 = 16;
/// Bytes per fetched part (the reader's `part_size`).
const PART: u64 = 4;
/// Iterations per exploration strategy.
const ITERATIONS: usize = 400;

struct World {
    _dir: tempfile::TempDir,
    content: DiskCache,
    v: ItemVersion,
    data: Vec<u8>,
    /// Claims held now: (reader, start, end).
    claims: Mutex<Vec<(usize, u64, u64)>>,
}

fn world(with_hash: bool) -> Arc<World> {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open_in_memory().unwrap());
    let data: Vec<u8> = (1..=SIZE as u8).collect();
    let ino = store
        .insert(&NewItem {
            item_id: "A".into(),
            parent_ino: ROOT_INO,
            name: "a.jpg".into(),
            kind: ItemKind::File,
            size: SIZE,
            etag: Some("e1".into()),
            ctag: Some("c1".into()),
            quick_xor_hash: with_hash.then(|| QuickXorHash::of(&data)),
            mtime: 0,
            mime_type: Some("image/jpeg".into()),
            is_media: true,
            content_state: ContentState::Cloud,
            local_only: false,
        })
        .unwrap();
    let content = DiskCache::open(dir.path(), store, u64::MAX).unwrap();
    let v = content.version(ino).unwrap();
    Arc::new(World {
        _dir: dir,
        content,
        v,
        data,
        claims: Mutex::new(Vec::new()),
    })
}

/// The parts of `missing` no fetch in `busy` covers, cut at `PART` boundaries.
fn to_fetch(missing: &[(u64, u64)], busy: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(lo, hi) in missing {
        let mut pos = lo;
        while pos < hi {
            let end = (pos / PART + 1) * PART;
            let end = end.min(hi);
            if !busy.iter().any(|&(s, e)| s < end && pos < e) {
                out.push((pos, end));
            }
            pos = end;
        }
    }
    out
}

/// A reader of the whole item; with `fail_first`, its first fetch ends without bytes (a download that failed or
/// was aborted: the claim is dropped unwritten) and the reader gives up (the app saw the error and closed the file).
fn reader(w: &World, me: usize, fail_first: bool) {
    let open = w.content.register_reader(w.v.ino);
    for _ in 0..200 {
        // As `ensure_present`: the wake-up is enabled before the block map is looked at.
        let watch = open.watch();
        let mut notified = std::pin::pin!(watch.changed());
        notified.as_mut().enable();
        let busy = w.content.fetches_in_flight(&w.v);
        let missing = w.content.missing_ranges(&w.v, 0, SIZE).unwrap();
        if missing.is_empty() {
            match w.content.read_at(&w.v, 0, SIZE).unwrap() {
                Some(bytes) => {
                    assert_eq!(bytes, w.data, "reader {me} got wrong bytes");
                    return;
                }
                None => continue,
            }
        }
        let parts = to_fetch(&missing, &busy);
        if parts.is_empty() {
            // Everything missing is being fetched by another reader: wait for a commit or the end of a fetch.
            shuttle::future::block_on(notified);
            continue;
        }
        for (lo, hi) in parts {
            for (a, b, in_flight) in w.content.claim_fetch(&w.v, lo, hi) {
                {
                    let mut claims = w.claims.lock().unwrap();
                    if let Some(other) = claims.iter().find(|&&(_, s, e)| s < b && a < e) {
                        panic!("readers {me} and {} both claimed bytes of {a}..{b}", other.0);
                    }
                    claims.push((me, a, b));
                }
                if fail_first {
                    w.claims.lock().unwrap().retain(|c| *c != (me, a, b));
                    drop(in_flight);
                    return;
                }
                let written = w.content.write_at(&w.v, a, &w.data[a as usize..b as usize]);
                assert!(written.is_ok(), "reader {me}'s write of {a}..{b} failed: {written:?}");
                w.claims.lock().unwrap().retain(|c| *c != (me, a, b));
                drop(in_flight);
            }
        }
    }
    panic!("reader {me} never finished");
}

/// Every byte the block map says is present is in the cache file with its value.
fn check_present_bytes(w: &World) {
    let missing = w.content.missing_ranges(&w.v, 0, SIZE).unwrap();
    let file = std::fs::read(w.content.path_of(&w.v)).unwrap_or_default();
    for b in 0..SIZE {
        if missing.iter().any(|&(lo, hi)| lo <= b && b < hi) {
            continue;
        }
        assert_eq!(
            file.get(b as usize),
            Some(&w.data[b as usize]),
            "byte {b} is present in the block map but not in the file"
        );
    }
}

fn scenario(with_hash: bool, evict: bool, failed_fetch: bool) {
    let w = world(with_hash);
    let readers: Vec<_> = (0..2)
        .map(|me| {
            let w = w.clone();
            shuttle::thread::spawn(move || reader(&w, me, failed_fetch && me == 0))
        })
        .collect();
    if evict {
        let w2 = w.clone();
        shuttle::thread::spawn(move || {
            w2.content.evict(w2.v.ino).unwrap();
        })
        .join()
        .unwrap();
    }
    for r in readers {
        r.join().unwrap();
    }
    check_present_bytes(&w);
}

fn explore(with_hash: bool, evict: bool, failed_fetch: bool) {
    shuttle::check_random(move || scenario(with_hash, evict, failed_fetch), ITERATIONS);
    shuttle::check_pct(move || scenario(with_hash, evict, failed_fetch), ITERATIONS, 3);
}

#[test]
fn two_readers_share_the_fetches_of_one_item() {
    explore(true, false, false);
}

/// The other reader waits for the failed fetch's range: the end of the claim must wake it.
#[test]
fn a_failed_fetch_wakes_the_reader_waiting_for_it() {
    explore(true, false, true);
}

#[test]
fn two_readers_and_an_eviction() {
    explore(true, true, false);
}

/// Without a quickXorHash (OneDrive may omit it) only the generation check keeps bytes written before an eviction
/// from being marked present.
#[test]
fn two_readers_and_an_eviction_of_an_item_without_a_hash() {
    explore(false, true, false);
}
