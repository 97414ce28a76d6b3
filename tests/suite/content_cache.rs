//! The content cache and the on-demand reader against in-memory sources: correctness of sequential, random and
//! concurrent reads, read-ahead growth and reset, integrity (hash mismatch, short bodies, offline), budget and LRU
//! eviction, content version changes, cancellation, and an ignored throughput benchmark.

use crate::common;

use galleryfs::cache::{CacheError, DiskCache, OriginalFetcher, PrefetchingReader, ReadError, ReaderConfig};
use galleryfs::fs::FsError;
use galleryfs::remote::drive_api::{DriveApi, DriveError};
use galleryfs::remote::mock_drive::{DownloadFailure, DownloadPick, FailingDrive, MockDrive, MockOp};
use galleryfs::remote::QuickXorHash;
use galleryfs::store::{ContentState, ItemKind, NewItem, RemoteAttrs, Store, StoreError, ROOT_INO};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
const INITIAL_WINDOW: u64 = (MIB + 128 * KIB) as u64;
const HEADER_WINDOW: u64 = (64 * KIB) as u64;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    content: Arc<DiskCache>,
    mock: Arc<MockDrive>,
}

impl Fixture {
    fn new(budget: u64) -> Fixture {
        Fixture::with_store(budget, |_| Store::open_in_memory().unwrap())
    }

    /// With the store `open` makes (given the fixture's directory).
    fn with_store(budget: u64, open: impl FnOnce(&std::path::Path) -> Store) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open(dir.path()));
        let content = Arc::new(DiskCache::open(dir.path(), store.clone(), budget).unwrap());
        Fixture {
            _dir: dir,
            store,
            content,
            mock: Arc::new(MockDrive::new()),
        }
    }

    /// A cache over the mock with fast retries.
    fn cache(&self) -> OriginalFetcher {
        self.cache_over(self.mock.clone())
    }

    fn cache_over(&self, source: Arc<dyn DriveApi>) -> OriginalFetcher {
        OriginalFetcher::new(self.content.clone(), source).with_config(ReaderConfig {
            retry_backoff: Duration::from_millis(5),
            ..ReaderConfig::default()
        })
    }

    /// Adds a remote item with content `data` and its true quickXorHash.
    fn add(&self, id: &str, data: &[u8]) -> u64 {
        self.add_with_hash(id, data, Some(QuickXorHash::of(data)))
    }

    fn add_with_hash(&self, id: &str, data: &[u8], hash: Option<String>) -> u64 {
        self.mock.insert_file(id, "c1", data.to_vec());
        self.add_row(id, data.len() as u64, hash)
    }

    /// The store row of an item with cTag `c1` (its content is put in the mock separately).
    fn add_row(&self, id: &str, size: u64, hash: Option<String>) -> u64 {
        self.store
            .insert(&NewItem {
                item_id: id.into(),
                parent_ino: ROOT_INO,
                name: format!("{id}.jpg"),
                kind: ItemKind::File,
                size,
                etag: Some("e1".into()),
                ctag: Some("c1".into()),
                quick_xor_hash: hash,
                mtime: 0,
                mime_type: Some("image/jpeg".into()),
                is_media: true,
                content_state: ContentState::Cloud,
                local_only: false,
            })
            .unwrap()
    }

    fn state(&self, ino: u64) -> ContentState {
        self.store.get(ino).unwrap().unwrap().content_state
    }

    /// Waits (at most 10 s) for `ino` to be cached whole: a photo read whole in one part is written and
    /// committed after its last read was answered.
    async fn wait_cached(&self, ino: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.state(ino) != ContentState::Cached {
            assert!(
                Instant::now() < deadline,
                "inode {ino} was never cached: {:?}",
                self.state(ino)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Number of files under the item's cache directory.
    fn files_of(&self, id: &str) -> usize {
        std::fs::read_dir(self.content.item_dir(id)).map_or(0, |d| d.count())
    }
}

/// Deterministic pseudo-random bytes.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Holds the store's writer for `hold` on another thread (returns once it is held): every commit of an item stops
/// inside its generation lock meanwhile. The flag turns true as the writer is let go.
fn hold_store_writer(
    store: &Arc<Store>,
    hold: Duration,
) -> (std::thread::JoinHandle<()>, Arc<std::sync::atomic::AtomicBool>) {
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let holder = {
        let (store, released) = (store.clone(), released.clone());
        std::thread::spawn(move || {
            store
                .write(|_| {
                    held_tx.send(()).unwrap();
                    std::thread::sleep(hold);
                    released.store(true, std::sync::atomic::Ordering::SeqCst);
                    Ok::<_, StoreError>(())
                })
                .unwrap();
        })
    };
    held_rx.recv().unwrap();
    (holder, released)
}

async fn read_all(cache: &OriginalFetcher, ino: u64, chunk: usize) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    read_rest(&mut cache.open(ino)?, &mut out, chunk).await?;
    Ok(out)
}

/// Reads on with `reader` from `out.len()` to the end of the file, `chunk` bytes at a time, into `out`.
async fn read_rest(reader: &mut PrefetchingReader, out: &mut Vec<u8>, chunk: usize) -> Result<(), ReadError> {
    loop {
        let got = reader.read(out.len() as u64, chunk).await?;
        if got.is_empty() {
            return Ok(());
        }
        out.extend_from_slice(&got);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_read_is_exact_with_growing_requests_then_served_from_cache() {
    let f = Fixture::new(u64::MAX);
    let data = pattern(50 * MIB, 1);
    let ino = f.add("A", &data);
    let cache = f.cache();

    let got = read_all(&cache, ino, 128 * KIB).await.unwrap();
    assert!(got == data, "sequential read returned different bytes");
    let requests = f.mock.downloads();
    assert_eq!(requests[0].start, 0);
    assert_eq!(requests[0].len(), INITIAL_WINDOW, "first request is 1 MiB + 128 KiB");
    let sizes: Vec<u64> = requests.iter().map(|r| r.len()).collect();
    assert!(
        sizes[1] > sizes[0] && sizes[2] > sizes[1],
        "request sizes grow: {sizes:?}"
    );
    assert_eq!(
        *sizes.iter().max().unwrap(),
        8 * MIB as u64,
        "parts are capped at 8 MiB: {sizes:?}"
    );
    assert_eq!(f.mock.bytes_served(), data.len() as u64, "every byte fetched once");
    f.wait_cached(ino).await;
    assert_eq!(f.store.present_bytes(ino).unwrap(), data.len() as u64);
    assert_eq!(
        f.content.hash_reread_bytes(),
        0,
        "the bytes were hashed as they streamed in: the verification read nothing back"
    );

    f.mock.reset_counts();
    let again = read_all(&cache, ino, 100_000).await.unwrap();
    assert!(again == data, "cached read returned different bytes");
    assert_eq!(
        f.mock.count(MockOp::DownloadContent),
        0,
        "a cached item needs no request"
    );
}

/// A photo read whole: reads the received chunks can answer do not wait for a commit of the item in progress (a
/// commit holds the item's generation lock exclusively; here it is held up by the store's writer), and the part
/// reads on while its previous piece is written. The read that reaches the end waits for the commits (it carries
/// the whole-file check; the photo is larger than the received chunks kept, so no check in memory answers it) and
/// the file ends up cached and verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_from_received_chunks_do_not_wait_for_a_commit_in_progress() {
    // A file-backed store: block-map queries use its reader connections, not the writer held below.
    let f = Fixture::with_store(u64::MAX, |dir| Store::open(dir.join("meta.db")).unwrap());
    let data = pattern(6 * MIB, 21);
    let ino = f.add("P", &data);
    let cache = OriginalFetcher::new(f.content.clone(), f.mock.clone()).with_config(ReaderConfig {
        retry_backoff: Duration::from_millis(5),
        received_max: 5 * MIB,
        ..ReaderConfig::default()
    });
    let mut reader = cache.open(ino).unwrap();

    // The store's writer, held for a while: every commit of the item stops inside the generation lock.
    let (holder, released) = hold_store_writer(&f.store, Duration::from_secs(4));

    let mut got = Vec::new();
    for i in 0..4u64 {
        let chunk = reader.read(i * MIB as u64, MIB).await.unwrap();
        assert_eq!(chunk.len(), MIB);
        got.extend_from_slice(&chunk);
        if i == 1 {
            // Time for the first piece's commit to start (and stop at the store).
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    assert!(
        !released.load(std::sync::atomic::Ordering::SeqCst),
        "the first 4 MiB were answered while the commit of the first piece waited"
    );
    assert_eq!(f.mock.downloads().len(), 1, "the whole photo in one request");

    read_rest(&mut reader, &mut got, MIB).await.unwrap();
    assert!(
        released.load(std::sync::atomic::Ordering::SeqCst),
        "the read reaching the end waited for the commits"
    );
    holder.join().unwrap();
    assert!(got == data, "the bytes read are the file's");
    f.wait_cached(ino).await;
    assert_eq!(f.store.present_bytes(ino).unwrap(), data.len() as u64);
}

/// What the FUSE thread answers itself (`read_now`): bytes the received chunks hold, or a range of the cache file
/// a read found present; not a range still to download (and asking starts no download), not the read that
/// reaches the end while ranges answered from chunks await the whole-file check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_at_hand_are_answered_at_once_and_only_those() {
    let f = Fixture::new(u64::MAX);
    let data = pattern(6 * MIB, 22);
    let ino = f.add("Q", &data);
    let cache = f.cache();
    let mut reader = cache.open(ino).unwrap();
    assert!(reader.read_now(0, MIB).is_none(), "nothing is fetched yet");
    assert!(f.mock.downloads().is_empty(), "asking starts no download");
    assert!(reader.read(0, MIB).await.unwrap() == data[..MIB]);
    // The rest of the photo arrives in the background (one request for the whole photo).
    let deadline = Instant::now() + Duration::from_secs(10);
    let second = loop {
        if let Some(read) = reader.read_now(MIB as u64, MIB) {
            break read.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the second MiB never became readable at once"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(second == data[MIB..2 * MIB], "the received bytes are the file's");
    let last = (data.len() - MIB) as u64;
    assert!(
        reader.read_now(last, MIB).is_none(),
        "the end of the file waits for the check of what was answered before"
    );
    assert!(reader.read(last, MIB).await.unwrap() == data[data.len() - MIB..]);
    f.wait_cached(ino).await;
    assert_eq!(f.mock.downloads().len(), 1);

    // A new handle on the cached file: once a read found the bytes present, the next reads come from the file.
    let mut reader = cache.open(ino).unwrap();
    assert!(
        reader.read_now(0, MIB).is_none(),
        "nothing is known of the cache file yet"
    );
    assert!(reader.read(0, MIB).await.unwrap() == data[..MIB]);
    for i in 1..6 {
        let at = i * MIB;
        let read = reader.read_now(at as u64, MIB).expect("known present").unwrap();
        assert!(read == data[at..at + MIB], "MiB {i} as cached");
    }
    assert_eq!(f.mock.downloads().len(), 1, "nothing downloaded again");
}

/// A photo received whole in one part is checked against its quickXorHash in memory as it arrives: the read
/// that reaches its end is answered from the received chunks once the check passes, not after the cache file's
/// commit (held up here by the store's writer); the file is cached and verified after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_checked_in_memory_is_read_to_its_end_before_its_commit() {
    let f = Fixture::with_store(u64::MAX, |dir| Store::open(dir.join("meta.db")).unwrap());
    let data = pattern(4 * MIB + 12_345, 23);
    let ino = f.add("W", &data);
    let cache = f.cache();
    let mut reader = cache.open(ino).unwrap();
    let (holder, released) = hold_store_writer(&f.store, Duration::from_secs(4));
    let mut got = Vec::new();
    read_rest(&mut reader, &mut got, MIB).await.unwrap();
    assert!(
        !released.load(std::sync::atomic::Ordering::SeqCst),
        "the whole photo was read while its commit waited"
    );
    assert!(got == data, "the bytes read are the file's");
    holder.join().unwrap();
    f.wait_cached(ino).await;
    assert_eq!(f.store.present_bytes(ino).unwrap(), data.len() as u64);
    assert_eq!(f.mock.downloads().len(), 1, "the whole photo in one request");
}

/// Corrupted bytes in a photo received whole fail the check in memory, so the read that reaches its end is not
/// answered from the received chunks: the commit's check fails it, and nothing is cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_photo_received_whole_fails_the_read_of_its_end() {
    let f = Fixture::new(u64::MAX);
    let data = pattern(4 * MIB, 24);
    let ino = f.add("C", &data);
    let cache = f.cache_over(Arc::new(FailingDrive::with_download_failures(
        f.mock.clone(),
        DownloadPick::From(1),
        DownloadFailure::Corrupt { at: 2 * MIB as u64 + 5 },
    )));
    let err = read_all(&cache, ino, MIB).await.unwrap_err();
    assert!(matches!(err, ReadError::HashMismatch { .. }), "{err:?}");
    assert_ne!(f.state(ino), ContentState::Cached);
    assert_eq!(f.files_of("C"), 0, "the bad file is deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_reads_return_the_right_bytes_and_stop_at_the_end() {
    let f = Fixture::new(u64::MAX);
    let data = pattern(10 * MIB + 12_345, 2);
    let ino = f.add("R", &data);
    let cache = f.cache();
    let mut reader = cache.open(ino).unwrap();
    let positions = pattern(400 * 8, 3);
    for p in positions.chunks(8) {
        let offset = u32::from_le_bytes([p[0], p[1], p[2], p[3]]) as usize % (data.len() + 1000);
        let len = u32::from_le_bytes([p[4], p[5], p[6], p[7]]) as usize % (300 * KIB);
        let got = reader.read(offset as u64, len).await.unwrap();
        let lo = offset.min(data.len());
        let hi = (offset + len).min(data.len());
        assert_eq!(got.len(), hi - lo, "read at {offset} of {len}");
        assert!(got[..] == data[lo..hi], "bytes at {offset}+{len}");
    }
    assert!(reader.read(data.len() as u64, 10).await.unwrap().is_empty());
    assert!(reader.read(u64::MAX - 5, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_and_backward_seeks_reset_the_window() {
    let f = Fixture::new(u64::MAX);
    let data = pattern(50 * MIB, 4);
    let ino = f.add("S", &data);
    let cache = f.cache();
    let mut reader = cache.open(ino).unwrap();
    let mut offset = 0;
    while offset < 6 * MIB {
        let got = reader.read(offset as u64, 128 * KIB).await.unwrap();
        assert!(got[..] == data[offset..offset + 128 * KIB]);
        offset += 128 * KIB;
    }
    assert!(
        reader.window() > 4 * INITIAL_WINDOW,
        "the window grew: {}",
        reader.window()
    );

    // A forward seek just ahead waits for the read-ahead and does not reset.
    let grown = reader.window();
    let got = reader.read((offset + 256 * KIB) as u64, 128 * KIB).await.unwrap();
    assert!(got[..] == data[offset + 256 * KIB..offset + 384 * KIB]);
    assert!(reader.window() >= grown, "a near forward seek keeps the window");

    // A far seek resets it: the first request there is small.
    let before = f.mock.downloads().len();
    let far = 40 * MIB;
    let got = reader.read(far as u64, 128 * KIB).await.unwrap();
    assert!(got[..] == data[far..far + 128 * KIB]);
    assert_eq!(reader.window(), INITIAL_WINDOW);
    let after_seek: Vec<_> = f.mock.downloads()[before..]
        .iter()
        .filter(|r| r.start >= far as u64)
        .cloned()
        .collect();
    assert_eq!(after_seek[0].start, far as u64);
    assert_eq!(
        after_seek[0].len(),
        INITIAL_WINDOW,
        "first request after a far seek: {after_seek:?}"
    );

    // Reading on from there grows the window again; a backward seek resets it.
    for i in 1..8 {
        reader.read((far + i * 128 * KIB) as u64, 128 * KIB).await.unwrap();
    }
    assert!(reader.window() > INITIAL_WINDOW);
    let got = reader.read((20 * MIB) as u64, 64 * KIB).await.unwrap();
    assert!(got[..] == data[20 * MIB..20 * MIB + 64 * KIB]);
    assert_eq!(
        reader.window(),
        HEADER_WINDOW,
        "a backward seek resets the window (a small read there: a header's worth)"
    );
}

/// A metadata scan reads a photo's first kilobytes in small requests that the kernel's read-ahead ramps up (16,
/// 32, 64 KiB): the first request covers a header's worth, then only what is read is fetched; a reader that jumps
/// to the end fetches that range only; a full-size request (a streaming reader) opens the window at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_reads_fetch_what_is_read_and_streaming_reads_grow() {
    let f = Fixture::new(u64::MAX);
    let data = pattern(4 * MIB, 12);
    let ino = f.add("H", &data);
    let cache = f.cache();
    let mut reader = cache.open(ino).unwrap();
    for (offset, len) in [(0, 16 * KIB), (16 * KIB, 32 * KIB), (48 * KIB, 64 * KIB)] {
        let got = reader.read(offset as u64, len).await.unwrap();
        assert!(got[..] == data[offset..offset + len]);
    }
    let spans: Vec<(u64, u64)> = f
        .mock
        .downloads()
        .iter()
        .map(|r| (r.start, r.start + r.len()))
        .collect();
    assert_eq!(
        spans,
        [(0, HEADER_WINDOW), (HEADER_WINDOW, 112 * KIB as u64)],
        "header reads"
    );
    // (Reads are answered from the received chunks, so the header's commit may land after them: `Cloud` or
    // `Partial`, never whole.)
    assert_ne!(f.state(ino), ContentState::Cached, "a header scan caches nothing whole");
    drop(reader);

    // The last 4 KiB: that range (and nothing around it).
    f.mock.reset_counts();
    let mut reader = cache.open(ino).unwrap();
    let tail = data.len() - 4 * KIB;
    let got = reader.read(tail as u64, 4 * KIB).await.unwrap();
    assert!(got[..] == data[tail..]);
    assert_eq!(f.mock.bytes_served(), 4 * KIB as u64, "{:?}", f.mock.downloads());
    drop(reader);

    // A streaming reader: the first 128 KiB request opens the window; at the start of a file of at most one part
    // (a photo read whole by `cp` or a viewer) it asks for the whole file at once: one request, no top-up a round
    // trip later.
    let g = Fixture::new(u64::MAX);
    let ino = g.add("S", &data);
    let cache = g.cache();
    let mut reader = cache.open(ino).unwrap();
    reader.read(0, 128 * KIB).await.unwrap();
    assert_eq!(reader.window(), INITIAL_WINDOW);
    assert_eq!(g.mock.downloads()[0].len(), data.len() as u64);
    let got = read_all(&cache, ino, 128 * KIB).await.unwrap();
    assert!(got == data);
    assert_eq!(g.mock.downloads().len(), 1, "{:?}", g.mock.downloads());
    drop(reader);

    // Larger than a part: the window, which grows.
    let big = pattern(12 * MIB, 13);
    let ino = g.add("B", &big);
    g.mock.reset_counts();
    let mut reader = cache.open(ino).unwrap();
    reader.read(0, 128 * KIB).await.unwrap();
    assert_eq!(g.mock.downloads()[0].len(), INITIAL_WINDOW);
}

/// The kernel's read-ahead reaches the daemon as 1 MiB requests answered by several threads, so they arrive out of
/// order (2 MiB behind the furthest read was measured through a mount). Those are not seeks: before this test, each
/// one reset the window and cancelled the read-ahead, and a 20 ms link read at half its speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_ahead_requests_out_of_order_are_not_seeks() {
    let f = Fixture::new(u64::MAX);
    let data = pattern(48 * MIB, 9);
    let ino = f.add("O", &data);
    let cache = f.cache();
    let mut reader = cache.open(ino).unwrap();
    // 1 MiB reads in the order three threads might answer them: each triple's last request overtakes the others.
    let mut order = Vec::new();
    for base in (0..48).step_by(3) {
        order.extend([base + 2, base, base + 1]);
    }
    let mut smallest_window_after_growth = u64::MAX;
    for (n, i) in order.into_iter().enumerate() {
        let offset = i * MIB;
        let got = reader.read(offset as u64, MIB).await.unwrap();
        assert!(got[..] == data[offset..offset + MIB], "bytes at {offset}");
        if n >= 6 {
            smallest_window_after_growth = smallest_window_after_growth.min(reader.window());
        }
    }
    assert!(
        smallest_window_after_growth > INITIAL_WINDOW,
        "a read 2 MiB behind the furthest one reset the window"
    );
    assert_eq!(f.mock.bytes_served(), data.len() as u64, "every byte fetched once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_mismatch_fails_the_read_and_caches_nothing() {
    let f = Fixture::new(u64::MAX);
    let data = pattern(3 * MIB, 5);
    let wrong = QuickXorHash::of(&pattern(3 * MIB, 6));
    let ino = f.add_with_hash("H", &data, Some(wrong));
    let cache = f.cache();
    let err = read_all(&cache, ino, 128 * KIB).await.unwrap_err();
    assert!(matches!(err, ReadError::HashMismatch { .. }), "{err:?}");
    assert_eq!(FsError::from(err).errno(), libc::EIO);
    assert_ne!(f.state(ino), ContentState::Cached);
    assert_eq!(f.store.present_bytes(ino).unwrap(), 0, "blocks dropped");
    assert_eq!(
        f.store.missing_ranges(ino, "c1", 0, data.len() as u64).unwrap().len(),
        1
    );
    assert_eq!(f.files_of("H"), 0, "the bad file is deleted");

    // The handle stays failed; pinning fails the same way.
    let mut reader = cache.open(ino).unwrap();
    let result = async {
        let mut offset = 0u64;
        loop {
            let got = reader.read(offset, MIB).await?;
            if got.is_empty() {
                return Ok::<_, ReadError>(());
            }
            offset += got.len() as u64;
        }
    }
    .await;
    assert!(matches!(result, Err(ReadError::HashMismatch { .. })));
    assert!(matches!(reader.read(0, 10).await, Err(ReadError::HashMismatch { .. })));
    let pinned = cache.fetch_whole(ino, |_, _| {}).await;
    assert!(matches!(pinned, Err(ReadError::HashMismatch { .. })), "{pinned:?}");
    assert_ne!(f.state(ino), ContentState::Cached);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_bytes_hashed_while_streaming_fail_the_read() {
    let f = Fixture::new(u64::MAX);
    let data = pattern(20 * MIB, 9);
    let ino = f.add("X", &data);
    let cache = f.cache_over(Arc::new(FailingDrive::with_download_failures(
        f.mock.clone(),
        DownloadPick::From(1),
        DownloadFailure::Corrupt {
            at: 13 * MIB as u64 + 5,
        },
    )));
    let err = read_all(&cache, ino, 128 * KIB).await.unwrap_err();
    assert!(matches!(err, ReadError::HashMismatch { .. }), "{err:?}");
    assert_eq!(FsError::from(err).errno(), libc::EIO);
    assert_ne!(f.state(ino), ContentState::Cached);
    assert_eq!(f.store.present_bytes(ino).unwrap(), 0, "blocks dropped");
    assert_eq!(f.files_of("X"), 0, "the bad file is deleted");
    // A clean source afterwards gives the right bytes.
    assert!(read_all(&f.cache(), ino, MIB).await.unwrap() == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_bodies_are_retried_then_fail_after_the_attempt_limit() {
    let f = Fixture::new(u64::MAX);
    let data = pattern(5 * MIB, 7);
    let ino = f.add("T", &data);
    let failing = Arc::new(FailingDrive::with_download_failures(
        f.mock.clone(),
        DownloadPick::Numbers(vec![1, 2]),
        DownloadFailure::Truncate(0.5),
    ));
    let cache = f.cache_over(failing.clone());
    let got = read_all(&cache, ino, 128 * KIB).await.unwrap();
    assert!(got == data, "retried read returned different bytes");
    assert_eq!(failing.injected(), 2);
    f.wait_cached(ino).await;
    // The whole 5 MiB in one request (a streaming read from the start of a file of one part), cut in half.
    let (size, half) = (data.len() as u64, data.len() as u64 / 2);
    assert!(
        f.mock.downloads().iter().any(|r| r.start == half && r.end == size),
        "the retry resumes where the body stopped: {:?}",
        f.mock.downloads()
    );

    // Every request truncated: the read that needs the missing tail fails, nothing is cached as complete.
    let f = Fixture::new(u64::MAX);
    let ino = f.add("U", &data);
    let failing = Arc::new(FailingDrive::with_download_failures(
        f.mock.clone(),
        DownloadPick::From(1),
        DownloadFailure::Truncate(0.5),
    ));
    let cache = f.cache_over(failing);
    let err = read_all(&cache, ino, 128 * KIB).await.unwrap_err();
    assert!(matches!(err, ReadError::ShortBody { attempts: 3, .. }), "{err:?}");
    assert_ne!(f.state(ino), ContentState::Cached);

    // An error in the middle of a body is retried too.
    let f = Fixture::new(u64::MAX);
    let ino = f.add("V", &data);
    let offline = DriveError::Offline("connection reset".into());
    let failing = Arc::new(FailingDrive::with_download_failures(
        f.mock.clone(),
        DownloadPick::Numbers(vec![1]),
        DownloadFailure::ErrorMidway(0.3, offline),
    ));
    let got = read_all(&f.cache_over(failing), ino, 128 * KIB).await.unwrap();
    assert!(got == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_and_changed_content_are_errors_not_bytes() {
    let f = Fixture::new(u64::MAX);
    let data = pattern(2 * MIB, 8);
    let ino = f.add("O", &data);
    let cache = f.cache();
    f.mock.set_offline(true);
    let mut reader = cache.open(ino).unwrap();
    let err = reader.read(0, 4096).await.unwrap_err();
    assert!(
        matches!(
            &err,
            ReadError::Remote {
                source: DriveError::Offline(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(FsError::from(err).errno(), libc::EIO);
    assert_eq!(f.mock.count(MockOp::DownloadContent), 3, "bounded retries");
    f.mock.set_offline(false);
    let got = reader.read(0, 4096).await.unwrap();
    assert!(got[..] == data[..4096], "the handle recovers when back online");

    // The item changes on OneDrive while open: reading uncached bytes of the old version fails.
    f.mock.insert_file("O", "c2", pattern(2 * MIB, 9));
    let err = reader.read(MIB as u64 + 512 * KIB as u64, 4096).await.unwrap_err();
    assert!(matches!(err, ReadError::VersionChanged { .. }), "{err:?}");
    assert_eq!(
        FsError::from(err).errno(),
        libc::ESTALE,
        "a file changed under its reader is stale"
    );
    assert!(matches!(
        reader.read(0, 10).await,
        Err(ReadError::VersionChanged { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_does_not_use_old_blocks_and_removes_the_old_file() {
    let f = Fixture::new(u64::MAX);
    let old = pattern(3 * MIB, 10);
    let ino = f.add("N", &old);
    let cache = f.cache();
    assert!(read_all(&cache, ino, 256 * KIB).await.unwrap() == old);
    f.wait_cached(ino).await;

    let new = pattern(2 * MIB + 77, 11);
    f.mock.insert_file("N", "c2", new.clone());
    f.store
        .update_remote(
            ino,
            &RemoteAttrs {
                etag: Some("e2".into()),
                ctag: Some("c2".into()),
                size: new.len() as u64,
                quick_xor_hash: Some(QuickXorHash::of(&new)),
                mtime: 1,
                mime_type: Some("image/jpeg".into()),
                is_media: true,
            },
        )
        .unwrap();
    f.content.forget_stale(ino).unwrap();
    assert_eq!(f.store.present_bytes(ino).unwrap(), 0, "old blocks forgotten");
    assert_eq!(f.state(ino), ContentState::Cloud);

    f.mock.reset_counts();
    let got = read_all(&cache, ino, 256 * KIB).await.unwrap();
    assert!(got == new, "the new version is read, not old bytes");
    assert_eq!(f.mock.bytes_served(), new.len() as u64);
    assert!(f.mock.downloads().iter().all(|r| r.item_id == "N"));
    f.wait_cached(ino).await;
    assert_eq!(f.files_of("N"), 1, "one file: the old version's is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_evicts_least_recently_used_never_pinned_dirty_or_open() {
    let f = Fixture::new((2 * MIB + MIB / 2) as u64);
    let cache = f.cache();
    let items: Vec<(u64, Vec<u8>)> = (0..6)
        .map(|i| {
            let data = pattern(MIB, 20 + i);
            (f.add(&format!("B{i}"), &data), data)
        })
        .collect();
    let ino = |i: usize| items[i].0;

    cache.fetch_whole(ino(0), |_, _| {}).await.unwrap();
    cache.fetch_whole(ino(1), |_, _| {}).await.unwrap();
    assert_eq!(f.content.usage().unwrap().used_bytes, 2 * MIB as u64);
    cache.fetch_whole(ino(2), |_, _| {}).await.unwrap();
    // The commit that completes an item wakes its reader before it enforces the budget: wait for the eviction.
    let fixture = &f;
    let settled = |ino: u64| async move {
        let deadline = Instant::now() + Duration::from_secs(5);
        while fixture.state(ino) != ContentState::Cloud && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    settled(ino(0)).await;
    assert_eq!(f.state(ino(0)), ContentState::Cloud, "the least recently used went");
    assert_eq!(f.files_of("B0"), 0);
    f.wait_cached(ino(1)).await;
    f.wait_cached(ino(2)).await;

    // Pinned B2 is never evicted and does not count: B3 and B4 push the evictable bytes over, B1 goes.
    f.store.set_pinned(ino(2), true).unwrap();
    cache.fetch_whole(ino(3), |_, _| {}).await.unwrap();
    assert_eq!(f.state(ino(1)), ContentState::Cached, "B1 + B3 fit the budget");
    cache.fetch_whole(ino(4), |_, _| {}).await.unwrap();
    settled(ino(1)).await;
    assert_eq!(f.state(ino(1)), ContentState::Cloud);
    assert_eq!(f.state(ino(2)), ContentState::Cached, "pinned items are never evicted");
    assert_eq!(
        f.content.usage().unwrap().used_bytes,
        2 * MIB as u64,
        "pinned bytes do not count"
    );

    // A dirty item keeps its blocks; an open item is skipped while open.
    f.store.set_content_state(ino(3), ContentState::Dirty).unwrap();
    let mut open = cache.open(ino(5)).unwrap();
    assert!(open.read(0, MIB).await.unwrap()[..] == items[5].1[..]);
    f.content.set_budget(0);
    f.content.enforce_budget().unwrap();
    assert_eq!(f.state(ino(4)), ContentState::Cloud);
    assert_eq!(
        f.store.present_bytes(ino(3)).unwrap(),
        MIB as u64,
        "dirty is never evicted"
    );
    assert_eq!(f.state(ino(5)), ContentState::Cached, "open items are not evicted");
    drop(open);
    f.content.enforce_budget().unwrap();
    assert_eq!(f.state(ino(5)), ContentState::Cloud);
    assert_eq!(f.content.usage().unwrap().used_bytes, 0);

    // `galleryfs free`: explicit eviction, refused for dirty items.
    assert_eq!(f.content.evict(ino(2)).unwrap(), MIB as u64);
    assert_eq!(f.state(ino(2)), ContentState::Cloud);
    assert!(matches!(f.content.evict(ino(3)), Err(CacheError::Dirty(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_whole_reports_progress_and_verifies() {
    let f = Fixture::new(u64::MAX);
    let data = pattern(20 * MIB + 3, 30);
    let ino = f.add("P", &data);
    let mut seen = Vec::new();
    f.cache()
        .fetch_whole(ino, |done, total| seen.push((done, total)))
        .await
        .unwrap();
    f.wait_cached(ino).await;
    assert_eq!(seen.last(), Some(&(data.len() as u64, data.len() as u64)));
    assert!(
        seen.windows(2).all(|w| w[0].0 <= w[1].0),
        "progress only grows: {seen:?}"
    );
    let empty = f.add("E", &[]);
    f.cache().fetch_whole(empty, |_, _| {}).await.unwrap();
    f.wait_cached(empty).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_of_one_item_get_correct_bytes() {
    let f = Fixture::new(u64::MAX);
    let data = Arc::new(pattern(20 * MIB, 40));
    let ino = f.add("C", &data);
    let cache = f.cache();
    let mut tasks = Vec::new();
    for (k, chunk) in [(0u64, 128 * KIB), (1, 100_000), (2, 333_333)] {
        let cache = cache.clone();
        let data = data.clone();
        tasks.push(tokio::spawn(async move {
            let mut reader = cache.open(ino).unwrap();
            // Reader 2 starts in the middle, then wraps around.
            let start = if k == 2 { data.len() / 2 } else { 0 };
            let mut offset = start;
            let mut read = 0;
            while read < data.len() {
                let got = reader.read(offset as u64, chunk).await.unwrap();
                assert!(got[..] == data[offset..offset + got.len()], "reader {k} at {offset}");
                read += got.len();
                offset = (offset + got.len()) % data.len();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    f.wait_cached(ino).await;
    let served = f.mock.bytes_served();
    assert!(
        served < data.len() as u64 * 5 / 4,
        "readers wait for each other's fetches instead of repeating them: {served} bytes for {}",
        data.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_reader_cancels_its_fetches() {
    let f = Fixture::new(u64::MAX);
    let data = pattern(40 * MIB, 50);
    let ino = f.add("D", &data);
    let cache = f.cache();
    f.mock.set_latency(Duration::from_millis(1000));
    let mut reader = cache.open(ino).unwrap();
    for i in 0..5 {
        reader.read((i * 128 * KIB) as u64, 128 * KIB).await.unwrap();
    }
    // The fifth read used half the first window: read-ahead is requested (and waits on the latency).
    let deadline = Instant::now() + Duration::from_millis(500);
    while f.mock.count(MockOp::DownloadContent) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        f.mock.count(MockOp::DownloadContent) >= 2,
        "read-ahead was requested: {:?}",
        f.mock.downloads()
    );
    drop(reader);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The first request may itself be cut short by the drop (its last flush racing it); the read-ahead request,
    // which waits out the latency, must not have streamed a byte.
    let served = f.mock.bytes_served();
    assert!(
        (5 * 128 * KIB as u64..=INITIAL_WINDOW).contains(&served),
        "only the first request's bytes were streamed ({served}); the aborted read-ahead streamed nothing"
    );
    assert_eq!(f.state(ino), ContentState::Partial);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_cache_directory_is_refetched_not_an_error() {
    let f = Fixture::new(u64::MAX);
    let data = pattern(3 * MIB, 70);
    let ino = f.add("Z", &data);
    let cache = f.cache();
    assert!(read_all(&cache, ino, 128 * KIB).await.unwrap() == data);
    f.wait_cached(ino).await;
    std::fs::remove_dir_all(f.content.dir()).unwrap();
    f.mock.reset_counts();
    assert!(read_all(&cache, ino, 128 * KIB).await.unwrap() == data);
    assert!(f.mock.count(MockOp::DownloadContent) > 0, "refetched");
    f.wait_cached(ino).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_failures_never_yield_wrong_bytes() {
    let f = Fixture::new(u64::MAX);
    let data = Arc::new(pattern(12 * MIB + 999, 80));
    let ino = f.add("F", &data);
    let failures = [
        DownloadFailure::Truncate(0.4),
        DownloadFailure::ErrorMidway(0.6, DriveError::Offline("reset".into())),
        DownloadFailure::Error(DriveError::Offline("timeout".into())),
    ];
    for (seed, failure) in failures.into_iter().enumerate() {
        f.content.evict(ino).unwrap();
        let failing = Arc::new(FailingDrive::with_download_failures(
            f.mock.clone(),
            DownloadPick::Fraction {
                probability: 0.3,
                seed: seed as u64,
            },
            failure,
        ));
        let cache = f.cache_over(failing.clone());
        let mut tasks = Vec::new();
        for k in 0..3u64 {
            let (cache, data) = (cache.clone(), data.clone());
            tasks.push(tokio::spawn(async move {
                let mut reader = cache.open(ino).unwrap();
                let steps = pattern(60 * 8, 100 + k);
                let mut errors = 0;
                for (i, p) in steps.chunks(8).enumerate() {
                    // Mostly sequential runs with occasional jumps.
                    let jump = u32::from_le_bytes([p[0], p[1], p[2], p[3]]) as usize % data.len();
                    let offset = if i % 10 == 0 {
                        jump
                    } else {
                        (jump / 2 + i * 200_000) % data.len()
                    };
                    let len = 1 + u32::from_le_bytes([p[4], p[5], p[6], p[7]]) as usize % (512 * KIB);
                    match reader.read(offset as u64, len).await {
                        Ok(got) => {
                            let hi = (offset + len).min(data.len());
                            assert!(got[..] == data[offset..hi], "reader {k}: wrong bytes at {offset}+{len}");
                        }
                        Err(ReadError::Remote { .. } | ReadError::ShortBody { .. }) => errors += 1,
                        Err(other) => panic!("unexpected error {other:?}"),
                    }
                }
                errors
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(failing.injected() > 0, "failures were injected");
        assert_ne!(f.state(ino), ContentState::Dirty);
        // What the cache holds is right: read everything back through a clean source.
        let got = read_all(&f.cache(), ino, MIB).await.unwrap();
        assert!(got[..] == data[..], "cache content after failures ({seed})");
        f.wait_cached(ino).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_sample_media_round_trip() {
    let names = ["samsung_sm-g935l.jpg", "video_720p_gps.mp4", "apple_iphone6_video.mov"];
    let mut samples = Vec::new();
    for name in names {
        let Some(data) = common::sample(name) else {
            return;
        };
        samples.push((name, data));
    }
    let f = Fixture::new(u64::MAX);
    let cache = f.cache();
    for (name, data) in &samples {
        let ino = f.add(name, data);
        assert!(read_all(&cache, ino, 128 * KIB).await.unwrap() == *data, "{name}");
        f.wait_cached(ino).await;
    }
    eprintln!("{} real samples read through the cache and verified", names.len());
}

/// `cargo test --test suite content_cache::throughput -- --ignored --nocapture`; size from GALLERYFS_BENCH_MIB (1024).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput_reader_vs_raw_stream() {
    use futures::StreamExt;
    let mib: usize = std::env::var("GALLERYFS_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let f = Fixture::new(u64::MAX);
    // No hash: this measures the reader and the cache, not quickXorHash in a debug build.
    f.mock.insert_file("BIG", "c1", pattern(mib * MIB, 60));
    let ino = f.add_row("BIG", (mib * MIB) as u64, None);

    let started = Instant::now();
    let mut body = f.mock.download("BIG", "c1", 0, (mib * MIB) as u64).await.unwrap();
    // The raw consumer copies every chunk out, as a reader handing bytes to an application would.
    let mut sink = vec![0u8; 128 * KIB];
    let mut raw = 0usize;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        sink[..chunk.len().min(128 * KIB)].copy_from_slice(&chunk[..chunk.len().min(128 * KIB)]);
        raw += chunk.len();
    }
    let raw_secs = started.elapsed().as_secs_f64();
    assert_eq!(raw, mib * MIB);

    let cache = f.cache();
    let mut reader = cache.open(ino).unwrap();
    let started = Instant::now();
    let mut offset = 0u64;
    loop {
        let got = reader.read(offset, 128 * KIB).await.unwrap();
        if got.is_empty() {
            break;
        }
        offset += got.len() as u64;
    }
    let reader_secs = started.elapsed().as_secs_f64();
    assert_eq!(offset, (mib * MIB) as u64);
    let (raw_rate, reader_rate) = (mib as f64 / raw_secs, mib as f64 / reader_secs);
    eprintln!(
        "{mib} MiB: raw stream {raw_rate:.0} MiB/s, through the reader {reader_rate:.0} MiB/s, ratio {:.3}",
        reader_rate / raw_rate
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_known_present_survive_eviction_under_an_open_reader() {
    let f = Fixture::new(u64::MAX);
    let data = pattern(6 * MIB, 21);
    let ino = f.add("E", &data);
    let cache = f.cache();
    let mut reader = cache.open(ino).unwrap();
    let mut got = Vec::new();
    while got.len() < 3 * MIB {
        got.extend_from_slice(&reader.read(got.len() as u64, 256 * KIB).await.unwrap());
    }
    // "Free up space" while the handle is open: the bytes the reader knew present are gone from the cache.
    f.content.evict(ino).unwrap();
    assert_eq!(f.store.present_bytes(ino).unwrap(), 0);
    // Earlier offsets again (known present before the eviction) and the rest: all correct, refetched.
    let again = reader.read(MIB as u64, 256 * KIB).await.unwrap();
    assert!(again[..] == data[MIB..MIB + 256 * KIB], "re-read after eviction");
    while got.len() < data.len() {
        got.extend_from_slice(&reader.read(got.len() as u64, 256 * KIB).await.unwrap());
    }
    assert!(got == data, "whole read across an eviction");
}
