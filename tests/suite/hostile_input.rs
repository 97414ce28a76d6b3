//! Hostile and broken server input: proptest over the Graph models, the error-body parser, the header parsers,
//! the thumbnail renderer and the delta applier (random rounds with hostile names, cycles, clashes, bad sizes,
//! kind changes, local edits in between, checked against the store invariants after every step). The same
//! target functions are what `cargo fuzz` runs (`fuzz/src/harness.rs`); `replay_fuzz_corpora` replays the
//! checked-in seeds and crash regressions, and the `#[ignore]`d `random_inputs_for_every_target` runs every
//! target over mutated seeds for `GALLERYFS_FUZZ_ITERS` iterations (default 20 000) without libFuzzer.

#[path = "../../fuzz/src/harness.rs"]
mod harness;
#[path = "../../fuzz/src/local_names.rs"]
mod local_names;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------------------------
// Generators

/// Names a server might send: ordinary, case-clashing, Unicode-folding, and hostile.
const NAMES: &[&str] = &[
    "IMG_1.jpg",
    "img_1.JPG",
    "IMG_1 (2).jpg",
    "img_1 (2).JPG",
    "Camera",
    "camera",
    "CAMERA",
    "a",
    "A",
    "Ärger.jpg",
    "ärger.jpg",
    "ß.jpg",
    "SS.jpg",
    "İ.jpg",
    "i\u{307}.jpg",
    "ǅ",
    "ǆ",
    "Ǆ",
    "\u{212A}", // KELVIN SIGN, lowercases to k
    "k",
    "",
    ".",
    "..",
    "a/b",
    "/",
    "../etc",
    "nul\0x",
    "\0",
    "desktop.ini",
    "CON",
    "x.",
    " x ",
    ".hidden",
    "a\\b",
    "é\u{301}",
];

const IDS: &[&str] = &["G", "a", "b", "c", "d", "e", "f", "g", "h", "local:1", "galleryfs:root"];

fn name_strategy() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        12 => prop::sample::select(NAMES).prop_map(|s| Some(s.to_string())),
        1 => Just(None),
        2 => "[a-cA-C0-9 ._/\\x00-]{0,6}".prop_map(Some),
        1 => (250usize..260, any::<bool>())
            .prop_map(|(n, wide)| Some(if wide { "é".repeat(n / 2) } else { "x".repeat(n) })),
    ]
}

fn parent_strategy() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        6 => prop::sample::select(IDS).prop_map(|id| Some(json!({ "id": id, "driveId": "d" }))),
        1 => Just(Some(json!({ "id": "OUTSIDE" }))),
        1 => Just(Some(json!({ "driveId": "d" }))),
        1 => Just(None),
    ]
}

fn size_strategy() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![
        6 => (0i64..100_000).prop_map(Some),
        1 => any::<i64>().prop_map(Some),
        1 => prop::sample::select(vec![i64::MAX, i64::MIN, -1, 0]).prop_map(Some),
        1 => Just(None),
    ]
}

fn time_strategy() -> impl Strategy<Value = Option<&'static str>> {
    prop::sample::select(vec![
        None,
        Some("2024-03-15T14:22:33Z"),
        Some("1970-01-01T00:00:00Z"),
        Some("1601-01-01T00:00:00Z"),
        Some("9999-12-31T23:59:59.9999999Z"),
        Some("2024-03-15T14:22:33.5+14:00"),
    ])
}

/// One driveItem as delta could send it, well-formed or not.
fn item_strategy() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(IDS),
        name_strategy(),
        parent_strategy(),
        0u8..8,
        prop::bool::weighted(0.15),
        size_strategy(),
        time_strategy(),
        prop::sample::select(vec![None, Some("c1"), Some("c2"), Some("")]),
        prop::sample::select(vec![None, Some("image/jpeg"), Some("video/mp4"), Some("text/plain")]),
    )
        .prop_map(|(id, name, parent, kind, deleted, size, time, ctag, mime)| {
            let mut o = serde_json::Map::new();
            o.insert("id".into(), json!(id));
            if let Some(name) = name {
                o.insert("name".into(), json!(name));
            }
            if let Some(parent) = parent {
                o.insert("parentReference".into(), parent);
            }
            let file = json!({ "mimeType": mime, "hashes": { "quickXorHash": ctag } });
            match kind {
                0..=2 => drop(o.insert("file".into(), file)),
                3 | 4 => drop(o.insert("folder".into(), json!({ "childCount": 3 }))),
                5 => {
                    o.insert("file".into(), file);
                    o.insert("folder".into(), json!({}));
                }
                6 => drop(o.insert("package".into(), json!({ "type": "oneNote" }))),
                _ => drop(o.insert("root".into(), json!({}))),
            }
            if deleted {
                o.insert("deleted".into(), json!({ "state": "deleted" }));
            }
            if let Some(size) = size {
                o.insert("size".into(), json!(size));
            }
            if let Some(t) = time {
                o.insert("lastModifiedDateTime".into(), json!(t));
                o.insert("fileSystemInfo".into(), json!({ "lastModifiedDateTime": t }));
            }
            if let Some(c) = ctag {
                o.insert("cTag".into(), json!(c));
                o.insert("eTag".into(), json!(format!("e{c}")));
            }
            Value::Object(o)
        })
}

fn step_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => (prop::bool::weighted(0.2), prop::collection::vec(item_strategy(), 0..12))
            .prop_map(|(full, items)| json!({ "full": full, "value": items })),
        1 => prop::sample::select(IDS).prop_map(|id| json!({ "dirty": id })),
        1 => (prop::sample::select(IDS), prop::sample::select(NAMES), any::<bool>())
            .prop_map(|(parent, name, dir)| json!({ "local": { "parent": parent, "name": name, "dir": dir } })),
    ]
}

/// Arbitrary JSON, biased towards driveItem-looking objects.
fn json_strategy() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,8}".prop_map(Value::from),
        prop::sample::select(vec!["2024-03-15T14:22:33Z", "image/jpeg", "c1", "", "bytes 0-1/2"]).prop_map(Value::from),
    ];
    let keys = prop::sample::select(vec![
        "id",
        "name",
        "size",
        "file",
        "folder",
        "deleted",
        "parentReference",
        "hashes",
        "quickXorHash",
        "mimeType",
        "lastModifiedDateTime",
        "fileSystemInfo",
        "image",
        "photo",
        "video",
        "width",
        "takenDateTime",
        "thumbnails",
        "value",
        "@odata.nextLink",
        "@odata.deltaLink",
        "error",
        "code",
        "innerError",
        "innererror",
        "nextExpectedRanges",
        "c300x400",
    ]);
    leaf.prop_recursive(5, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

fn small_jpeg() -> Vec<u8> {
    use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
    let image = RgbImage::from_fn(24, 16, |x, y| Rgb([(x * 10) as u8, (y * 15) as u8, 99]));
    let mut out = std::io::Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(image)
        .write_to(&mut out, ImageFormat::Jpeg)
        .unwrap();
    out.into_inner()
}

fn small_png() -> Vec<u8> {
    use image::{DynamicImage, ImageFormat, Rgba, RgbaImage};
    let image = RgbaImage::from_fn(20, 12, |x, y| Rgba([x as u8, y as u8, 7, 200]));
    let mut out = std::io::Cursor::new(Vec::new());
    DynamicImage::ImageRgba8(image)
        .write_to(&mut out, ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    /// Overwrite 4 bytes with a big-endian u32 (PNG dimensions live at 16..24).
    Word(usize, u32),
}

fn mutation_strategy() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => (any::<usize>(), prop::sample::select(vec![0u32, 1, 16_384, 16_385, 65_535, 0x7fff_ffff, u32::MAX]))
            .prop_map(|(i, w)| Mutation::Word(i, w)),
    ]
}

fn mutate(mut data: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if data.is_empty() {
            break;
        }
        let n = data.len();
        match m {
            Mutation::Flip(i, x) => data[i % n] ^= x,
            Mutation::Truncate(i) => data.truncate(i % n),
            Mutation::Insert(i, b) => {
                let at = i % n;
                data.splice(at..at, b.iter().copied());
            }
            Mutation::Word(i, w) => {
                let at = (i % n).min(n.saturating_sub(4));
                for (k, byte) in w.to_be_bytes().iter().enumerate() {
                    if let Some(slot) = data.get_mut(at + k) {
                        *slot = *byte;
                    }
                }
            }
        }
    }
    data
}

// ---------------------------------------------------------------------------------------------------------------
// Properties (CI: about a minute in a debug build)

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hostile_delta_scripts_keep_the_store_sound(steps in prop::collection::vec(step_strategy(), 1..10)) {
        harness::delta_round(&serde_json::to_vec(&steps).unwrap());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_json_is_parsed_or_refused_without_panic(value in json_strategy()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        harness::driveitem_json(&bytes);
        harness::error_body(&[0, 0].iter().copied().chain(bytes.iter().copied()).collect::<Vec<_>>());
        harness::error_body(&[9, 1].iter().copied().chain(bytes.iter().copied()).collect::<Vec<_>>());
        // As a one-item round, too.
        harness::delta_round(format!("[{{\"value\":[{value}]}}]").as_bytes());
    }

    #[test]
    fn any_bytes_are_parsed_or_refused_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        harness::driveitem_json(&bytes);
        harness::error_body(&bytes);
        harness::content_range(&bytes);
    }

    #[test]
    fn header_values_never_panic(
        text in prop_oneof![
            "bytes [0-9*]{0,21}-[0-9]{0,21}/[0-9*]{0,21}",
            "[ 0-9]{0,25}",
            "(Mon|Sun), [0-9]{1,2} (Jan|Dec) [0-9]{1,6} [0-9]{2}:[0-9]{2}:[0-9]{2} (GMT|\\+1400|-1200)",
            ".{0,40}",
        ]
    ) {
        harness::content_range(text.as_bytes());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 120, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn broken_thumbnails_never_crash_the_renderer(
        png_source in any::<bool>(),
        mutations in prop::collection::vec(mutation_strategy(), 1..4),
    ) {
        let source = if png_source { small_png() } else { small_jpeg() };
        harness::thumbnail_decode(&mutate(source, &mutations));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Regressions and named hostile cases

#[test]
fn names_that_would_escape_or_clash_are_handled_visibly() {
    use galleryfs::store::{Store, ROOT_INO};
    use galleryfs::sync::delta_apply::{apply_delta_round, RejectReason};
    let store = Store::open_in_memory().unwrap();
    let file = |id: &str, name: &str| json!({ "id": id, "name": name, "file": {}, "parentReference": { "id": "G" } });
    let items: Vec<galleryfs::remote::models::DriveItem> = serde_json::from_value(json!([
        file("1", "../../etc/passwd"),
        file("2", ".."),
        file("3", "a\u{0}b"),
        file("4", &"x".repeat(256)),
        file("5", "IMG_1.jpg"),
        file("6", "img_1.JPG"),
        file("7", "\u{212A}"),
        file("8", "k"),
    ]))
    .unwrap();
    let changes = apply_delta_round(&store, "G", &items).unwrap();
    let reason = |id: &str| changes.rejected.iter().find(|r| r.item_id == id).map(|r| r.reason);
    assert_eq!(reason("1"), Some(RejectReason::ContainsSlash));
    assert_eq!(reason("2"), Some(RejectReason::DotName));
    assert_eq!(reason("3"), Some(RejectReason::ContainsNul));
    assert_eq!(reason("4"), Some(RejectReason::NameTooLong));
    let names: Vec<String> = store.children(ROOT_INO).unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(
        names.contains(&"IMG_1.jpg".to_string()) && names.contains(&"img_1 (2).JPG".to_string()),
        "{names:?}"
    );
    assert_eq!(changes.renamed_for_clash.len(), 2, "{changes:?}");
    harness::StoreChecker::default().check(&store).unwrap();
}

/// Runs every target over every file in `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/`.
#[test]
fn replay_fuzz_corpora() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for (target, run) in targets() {
        for dir in [root.join("corpus").join(target), root.join("regressions").join(target)] {
            for path in files_in(&dir) {
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| run(&data));
                assert!(outcome.is_ok(), "{target} panicked on {}", path.display());
                replayed += 1;
            }
        }
    }
    assert!(
        replayed >= 20,
        "only {replayed} corpus files found under {}",
        root.display()
    );
}

type Target = fn(&[u8]);

fn targets() -> Vec<(&'static str, Target)> {
    vec![
        ("driveitem_json", harness::driveitem_json as Target),
        ("delta_round", harness::delta_round),
        ("error_body", harness::error_body),
        ("content_range", harness::content_range),
        ("thumbnail_decode", harness::thumbnail_decode),
        ("local_names", local_names::local_names),
    ]
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The libFuzzer-free driver: every target over random mutations of its seeds, `GALLERYFS_FUZZ_ITERS` each.
/// `cargo test --test suite hostile_input:: -- --ignored --nocapture`.
#[test]
#[ignore = "long: a fuzzing campaign without libFuzzer"]
fn random_inputs_for_every_target() {
    use rand::{Rng, SeedableRng};
    let iters: u64 = std::env::var("GALLERYFS_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seed: u64 = std::env::var("GALLERYFS_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("corpus");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for (target, run) in targets() {
        let seeds: Vec<Vec<u8>> = files_in(&root.join(target))
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        let started = Instant::now();
        let mut done = 0u64;
        while done < iters {
            let mut data = if seeds.is_empty() || rng.random_ratio(1, 10) {
                (0..rng.random_range(0..64)).map(|_| rng.random()).collect()
            } else {
                seeds[rng.random_range(0..seeds.len())].clone()
            };
            // JSON seeds: mostly structure-aware mutation (byte flips rarely leave valid JSON).
            if let (Ok(mut value), true) = (serde_json::from_slice::<Value>(&data), rng.random_ratio(4, 5)) {
                let rate = rng.random_range(0.02..0.3);
                mutate_value(&mut value, &mut rng, rate);
                data = serde_json::to_vec(&value).unwrap();
                if rng.random_ratio(1, 2) {
                    if let Err(panic) = std::panic::catch_unwind(|| run(&data)) {
                        let out = std::env::temp_dir().join(format!("galleryfs-crash-{target}-{done}"));
                        std::fs::write(&out, &data).unwrap();
                        std::panic::resume_unwind(panic);
                    }
                    done += 1;
                    continue;
                }
            }
            for _ in 0..rng.random_range(1..6) {
                let n = data.len();
                match rng.random_range(0..5) {
                    0 if n > 0 => data[rng.random_range(0..n)] ^= 1 << rng.random_range(0..8),
                    1 if n > 0 => data.truncate(rng.random_range(0..n)),
                    2 => {
                        let at = rng.random_range(0..=n);
                        let byte = *b"{}[]\",:0-9/\\.".get(rng.random_range(0..14)).unwrap_or(&b'0');
                        data.insert(at, byte);
                    }
                    3 if n > 1 => {
                        let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
                        let (a, b) = (a.min(b), a.max(b));
                        let chunk = data[a..b].to_vec();
                        let at = rng.random_range(0..=data.len());
                        data.splice(at..at, chunk);
                    }
                    _ if n > 0 => data[rng.random_range(0..n)] = rng.random(),
                    _ => data.push(rng.random()),
                }
            }
            if let Err(panic) = std::panic::catch_unwind(|| run(&data)) {
                let out = std::env::temp_dir().join(format!("galleryfs-crash-{target}-{done}"));
                std::fs::write(&out, &data).unwrap();
                std::panic::resume_unwind(panic);
            }
            done += 1;
            if started.elapsed() > Duration::from_secs(3_600) {
                break;
            }
        }
        println!(
            "{target}: {done} executions in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
}

/// Found by `hostile_delta_scripts_keep_the_store_sound`: an item whose parent is a *file* made the whole round
/// fail (`NotADirectory`), so every later poll failed the same way and sync was stuck for good.
#[test]
fn a_child_of_a_file_is_rejected_not_fatal() {
    use galleryfs::store::Store;
    use galleryfs::sync::delta_apply::{apply_delta_round, RejectReason};
    let store = Store::open_in_memory().unwrap();
    let items: Vec<galleryfs::remote::models::DriveItem> = serde_json::from_value(json!([
        { "id": "a", "name": "inner.jpg", "file": {}, "parentReference": { "id": "f" } },
        { "id": "f", "name": "IMG_1.jpg", "file": {}, "parentReference": { "id": "G" } },
    ]))
    .unwrap();
    let changes = apply_delta_round(&store, "G", &items).expect("the round applies");
    assert_eq!(changes.rejected.len(), 1, "{changes:?}");
    assert_eq!(changes.rejected[0].reason, RejectReason::ParentNotFolder);
    assert!(store.get_by_item_id("f").unwrap().is_some());
    assert!(store.get_by_item_id("a").unwrap().is_none());
    // Same when the file parent is already in the store.
    let later: Vec<galleryfs::remote::models::DriveItem> = serde_json::from_value(json!([
        { "id": "b", "name": "x", "folder": {}, "parentReference": { "id": "f" } },
    ]))
    .unwrap();
    let changes = apply_delta_round(&store, "G", &later).expect("the round applies");
    assert_eq!(changes.rejected[0].reason, RejectReason::ParentNotFolder);
    harness::StoreChecker::default().check(&store).unwrap();
}

/// Found by reading `ThrottleGate::pause_for` while writing the `content_range` target: a `Retry-After` of a huge
/// number of seconds panicked (`Instant + Duration` overflow, or `DateTime + TimeDelta` out of range) inside the
/// request pipeline.
#[test]
fn an_absurd_retry_after_does_not_panic_the_throttle_gate() {
    for value in [
        "18446744073709551615",
        "9223372036854775807",
        "10000000000000",
        "8210298412800",
    ] {
        harness::content_range(value.as_bytes());
    }
    let gate = galleryfs::remote::http::ThrottleGate::default();
    gate.pause_for(Duration::MAX);
    assert!(gate.remaining() > Duration::from_secs(3_600), "the gate still closes");
    assert!(gate.throttled_until().is_some());
}

/// Decompression bombs and absurd dimensions: refused or rendered, never a crash, never seconds of work. Found
/// here: a 458-byte JPEG claiming 16000×16000 took 21 s (and ~768 MB) to render, a 260 KB PNG of 16384×16384
/// took 6 s; `render.rs` now refuses sources over 4096 px a side or 64 MiB of pixels.
#[test]
fn thumbnail_bombs_are_refused_quickly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/thumbnail_decode");
    let files = files_in(&dir);
    assert!(files.len() >= 5, "bomb seeds missing in {}", dir.display());
    for path in files {
        let data = std::fs::read(&path).unwrap();
        let started = Instant::now();
        let out = galleryfs::thumbnails::render_png(
            &data,
            galleryfs::thumbnails::ThumbSize::Normal,
            "file:///g/x.jpg",
            1,
            &Default::default(),
        );
        let took = started.elapsed();
        let name = path.file_name().unwrap().to_string_lossy();
        if name.starts_with("bomb") || name.contains("claims") || name.starts_with("huge") {
            assert!(out.is_err(), "{name} was rendered");
        }
        assert!(took < Duration::from_secs(2), "{name} took {took:?}");
    }
}

/// Found by `hostile_delta_scripts_keep_the_store_sound` once ids like `local:1` were in the pool: a server item
/// whose id has galleryfs's local-placeholder prefix was stored as a remote row that the rest of galleryfs (the
/// outbox replayer) takes for a local one, and a guessed placeholder id would have merged into a local row.
#[test]
fn server_ids_with_a_reserved_prefix_are_rejected() {
    use galleryfs::store::{ItemKind, NewItem, Store, ROOT_INO};
    use galleryfs::sync::delta_apply::{apply_delta_round, RejectReason};
    let store = Store::open_in_memory().unwrap();
    let local = store
        .insert(&NewItem::local(ROOT_INO, "mine.jpg", ItemKind::File, 5))
        .unwrap();
    let local_id = store.get(local).unwrap().unwrap().item_id;
    let items: Vec<galleryfs::remote::models::DriveItem> = serde_json::from_value(json!([
        { "id": "local:1", "name": "a.jpg", "file": {}, "parentReference": { "id": "G" } },
        { "id": local_id, "name": "hijack.jpg", "file": {}, "size": 1, "parentReference": { "id": "G" } },
        { "id": "galleryfs:x", "name": "b", "folder": {}, "parentReference": { "id": "G" } },
        { "id": "c", "name": "c.jpg", "file": {}, "parentReference": { "id": "galleryfs:x" } },
    ]))
    .unwrap();
    let changes = apply_delta_round(&store, "G", &items).unwrap();
    let reasons: Vec<_> = changes
        .rejected
        .iter()
        .map(|r| (r.item_id.as_str(), r.reason))
        .collect();
    assert!(reasons.contains(&("local:1", RejectReason::ReservedId)), "{reasons:?}");
    assert!(
        reasons.contains(&(local_id.as_str(), RejectReason::ReservedId)),
        "{reasons:?}"
    );
    assert!(reasons.contains(&("c", RejectReason::ParentRejected)), "{reasons:?}");
    let row = store.get(local).unwrap().unwrap();
    assert_eq!(
        (row.name.as_str(), row.local_only),
        ("mine.jpg", true),
        "the local row is untouched"
    );
    assert_eq!(store.item_count().unwrap(), 1);
    harness::StoreChecker::default().check(&store).unwrap();
}

fn apply_json(store: &galleryfs::store::Store, items: Vec<Value>) -> galleryfs::sync::delta_apply::AppliedChanges {
    let items: Vec<galleryfs::remote::models::DriveItem> = serde_json::from_value(Value::Array(items)).unwrap();
    galleryfs::sync::delta_apply::apply_delta_round(store, "G", &items).expect("the round applies")
}

/// Found while reviewing `resolve` for the delta target: it recursed once per nesting level, so one round with a
/// 20 000-deep folder chain overflowed the stack and aborted the process. `resolve` is iterative now.
#[test]
fn a_deep_folder_chain_in_one_round_does_not_overflow_the_stack() {
    let store = galleryfs::store::Store::open_in_memory().unwrap();
    let depth = 20_000;
    let items: Vec<Value> = (0..depth)
        .rev()
        .map(|i| {
            let parent = if i == 0 { "G".to_string() } else { format!("d{}", i - 1) };
            json!({ "id": format!("d{i}"), "name": "x", "folder": {}, "parentReference": { "id": parent } })
        })
        .collect();
    // On a 2 MiB thread, like a tokio worker.
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            apply_json(&store, items);
            store.item_count().unwrap()
        })
        .unwrap();
    assert_eq!(handle.join().expect("no stack overflow"), depth as u64);
}

/// Found the same way: `free_name` tried ` (2)`, ` (3)`, … from the start for every clashing item, so 2 000
/// case-equal names took 25 s (quadratic) inside the write transaction. The next free suffix is remembered now.
#[test]
fn many_clashing_names_apply_in_reasonable_time() {
    let store = galleryfs::store::Store::open_in_memory().unwrap();
    let n = 2_000;
    let items: Vec<Value> = (0..n)
        .map(|i| {
            let name = if i % 2 == 0 { "IMG_1.jpg" } else { "img_1.JPG" };
            json!({ "id": format!("f{i}"), "name": name, "file": {}, "parentReference": { "id": "G" } })
        })
        .collect();
    let started = Instant::now();
    let changes = apply_json(&store, items);
    let took = started.elapsed();
    assert_eq!(changes.renamed_for_clash.len(), n - 1);
    assert_eq!(store.item_count().unwrap(), n as u64);
    assert!(took < Duration::from_secs(5), "{n} clashing names took {took:?}");
}

/// Mutates a JSON value in place: each node has probability `rate` of being replaced, dropped, duplicated or
/// given a hostile value from the pools above.
fn mutate_value(value: &mut Value, rng: &mut rand::rngs::StdRng, rate: f64) {
    use rand::Rng;
    if rng.random_bool(rate) {
        *value = match rng.random_range(0..7) {
            0 => json!(NAMES[rng.random_range(0..NAMES.len())]),
            1 => json!(IDS[rng.random_range(0..IDS.len())]),
            2 => json!([i64::MIN, -1, 0, 1, 255, 256, i64::MAX][rng.random_range(0..7)]),
            3 => Value::Null,
            4 => json!({}),
            5 => json!({ "id": IDS[rng.random_range(0..IDS.len())] }),
            _ => json!(["2024-03-15T14:22:33Z", "9999-12-31T23:59:59Z", "c1", "c2"][rng.random_range(0..4)]),
        };
        return;
    }
    match value {
        Value::Array(items) => {
            if !items.is_empty() && rng.random_bool(rate) {
                let i = rng.random_range(0..items.len());
                match rng.random_range(0..3) {
                    0 => drop(items.remove(i)),
                    1 => {
                        let copy = items[i].clone();
                        items.insert(rng.random_range(0..=items.len()), copy);
                    }
                    _ => {
                        let j = rng.random_range(0..items.len());
                        items.swap(i, j);
                    }
                }
            }
            for item in items {
                mutate_value(item, rng, rate);
            }
        }
        Value::Object(map) => {
            if !map.is_empty() && rng.random_bool(rate) {
                let key = map
                    .keys()
                    .nth(rng.random_range(0..map.len()))
                    .cloned()
                    .unwrap_or_default();
                map.remove(&key);
            }
            if rng.random_bool(rate) {
                let key = [
                    "file",
                    "folder",
                    "deleted",
                    "root",
                    "package",
                    "name",
                    "size",
                    "parentReference",
                ][rng.random_range(0..8)];
                map.insert(key.to_string(), json!({}));
            }
            for (_, v) in map.iter_mut() {
                mutate_value(v, rng, rate);
            }
        }
        _ => {}
    }
}
