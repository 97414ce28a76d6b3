//! Metadata scans through a real mount fetch headers, not originals: `exiftool -fast` or `exiv2` over a folder of
//! cloud photos fetches a small fraction of their bytes (measured by the emulator's request log: every ranged GET of
//! original content and its range) and leaves them `cloud`/`partial`, never `cached`; a reader that jumps to the end
//! fetches that range only; a full read (a viewer, `cp`) fetches the photo whole by one request and caches it.

use crate::common;

use common::e2e::Env;
use galleryfs::emulator::media::Content;
use std::collections::BTreeMap;
use std::path::Path;

/// The larger sample photos (what a phone takes today: megabytes, EXIF at the front).
const PHOTOS: [&str; 6] = [
    "apple_iphone6.jpg",
    "nokia_8.3_5g.jpg",
    "samsung_gt-i9505.jpg",
    "samsung_sm-g935l.jpg",
    "samsung_sm-n900a.jpg",
    "apple_iphone13promax.heic",
];

fn samples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/photos")
}

/// `bytes=A-B` → (A, B + 1).
fn parse_range(range: &str) -> Option<(u64, u64)> {
    let spec = range.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    Some((a.parse().ok()?, b.parse::<u64>().ok()? + 1))
}

/// Ranges of original content requested since `seq` (download URLs are opaque tokens, so not per item; a GET
/// without a bounded range counts as a whole file: end `u64::MAX`).
fn content_ranges(env: &Env, since: u64) -> Vec<(u64, u64)> {
    env.emu()
        .state
        .log
        .entries_since(since)
        .into_iter()
        .filter(|e| e.host == "content" && e.path.starts_with("/download/") && e.method == "GET")
        .map(|e| e.range.as_deref().and_then(parse_range).unwrap_or((0, u64::MAX)))
        .collect()
}

fn xattr(path: &Path, name: &str) -> String {
    common::sh_ok(&format!("getfattr --only-values -n {name} '{}'", path.display()))
}

/// The sample photos in `Scan/` of a mounted gallery, as cloud files; their sizes by name.
fn mount_samples() -> (Env, BTreeMap<&'static str, u64>) {
    let env = Env::start(0);
    let mut sizes = BTreeMap::new();
    for name in PHOTOS {
        let bytes = std::fs::read(samples().join(name)).expect("sample photo");
        sizes.insert(name, bytes.len() as u64);
        env.emu()
            .state
            .add_file(
                &format!("{}/Scan/{name}", env.gallery_root()),
                Content::Bytes(bytes.into()),
            )
            .unwrap();
    }
    assert!(
        env.rt
            .block_on(env.emu().wait_for_hashes(std::time::Duration::from_secs(60))),
        "emulator hashes ready"
    );
    env.login();
    env.mount("thumbnails=off");
    (env, sizes)
}

/// Runs `scan` (a shell command line printing one date per photo) over `dir` and checks, by the emulator's request
/// log, that it fetched at most 5 % of the photos' bytes and left every photo `cloud` or `partial`.
fn assert_header_scan(env: &Env, sizes: &BTreeMap<&str, u64>, dir: &Path, scan: &str) {
    let since = env.emu().state.log.next_seq();
    let out = common::sh_ok(scan);
    let dates = out.lines().filter(|l| l.contains(':')).count();
    assert!(dates >= PHOTOS.len(), "{scan} printed the dates:\n{out}");
    let ranges = content_ranges(env, since);
    let total: u64 = sizes.values().sum();
    let largest = *sizes.values().max().unwrap();
    let fetched: u64 = ranges.iter().map(|(a, b)| b.min(&largest) - a).sum();
    eprintln!("ranges fetched by {scan}: {ranges:?}");
    eprintln!(
        "fetched {fetched} of {total} bytes ({:.2} %)",
        fetched as f64 * 100.0 / total as f64
    );
    assert!(
        fetched * 20 <= total,
        "{scan}: fetched {fetched} of {total} bytes (more than 5 %): {ranges:?}"
    );
    for name in PHOTOS {
        let state = xattr(&dir.join(name), "user.galleryfs.state");
        assert!(state == "cloud" || state == "partial", "{name} is {state} after {scan}");
    }
}

#[test]
fn exiftool_scan_fetches_headers_only_and_caches_nothing() {
    require_fuse!();
    assert!(
        common::sh("exiftool -ver").status.success(),
        "exiftool is required (apt-get install libimage-exiftool-perl)"
    );
    let (env, sizes) = mount_samples();
    let dir = env.mnt.join("Scan");

    // The scan: every photo's date, read through the mount.
    assert_header_scan(
        &env,
        &sizes,
        &dir,
        &format!("exiftool -fast -s3 -DateTimeOriginal '{}'", dir.display()),
    );

    // A reader that jumps to the end (a JPEG trailer, an MP4's moov) fetches that range only.
    let tail_photo = PHOTOS[3];
    let since = env.emu().state.log.next_seq();
    common::sh_ok(&format!(
        "tail -c 4096 '{}' > /dev/null",
        dir.join(tail_photo).display()
    ));
    let rs = content_ranges(&env, since);
    let size = sizes[tail_photo];
    assert!(!rs.is_empty(), "the tail was fetched");
    for (a, b) in &rs {
        assert!(
            *a >= size - 256 * 1024 && *b <= size,
            "reading the last 4 KiB of {size} bytes fetched {a}..{b}"
        );
    }

    // A viewer reading a whole photo (1 MiB reads) gets it whole, verified and cached, by one request: its first
    // read (a full-size request at offset 0 of a file of at most one part) asks for the whole file.
    let viewed = PHOTOS[4];
    let since = env.emu().state.log.next_seq();
    let copy = env.dir.path().join("viewed.jpg");
    common::sh_ok(&format!(
        "dd if='{}' of='{}' bs=1M status=none",
        dir.join(viewed).display(),
        copy.display()
    ));
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(samples().join(viewed)).unwrap()
    );
    assert_eq!(xattr(&dir.join(viewed), "user.galleryfs.state"), "cached");
    let rs = content_ranges(&env, since);
    assert!(
        rs.len() == 1 && rs[0].1 == sizes[viewed],
        "a whole read of {viewed} fetched {rs:?}"
    );

    env.unmount();
}

/// `cp` of a 6 MB photo never read before: one GET of the whole file (its first read, a full-size request at offset
/// 0 of a file of at most one part, asks for all of it), the right bytes, verified and cached.
#[test]
fn cp_of_a_photo_fetches_it_whole_in_one_request() {
    require_fuse!();
    let env = Env::start(0);
    let len = 6_000_000u64;
    env.emu()
        .state
        .add_file(
            &format!("{}/Full/big_photo.jpg", env.gallery_root()),
            Content::Synthetic { seed: 77, len },
        )
        .unwrap();
    assert!(
        env.rt
            .block_on(env.emu().wait_for_hashes(std::time::Duration::from_secs(60))),
        "emulator hashes ready"
    );
    env.login();
    env.mount("thumbnails=off");
    let photo = env.mnt.join("Full/big_photo.jpg");
    let since = env.emu().state.log.next_seq();
    let copy = env.dir.path().join("copied.jpg");
    common::sh_ok(&format!("cp '{}' '{}'", photo.display(), copy.display()));
    let mut expected = vec![0u8; len as usize];
    galleryfs::emulator::media::fill_synthetic(77, 0, &mut expected);
    assert!(std::fs::read(&copy).unwrap() == expected, "cp copied other bytes");
    assert_eq!(xattr(&photo, "user.galleryfs.state"), "cached");
    let rs = content_ranges(&env, since);
    assert_eq!(rs, [(0, len)], "cp of a {len}-byte photo fetched {rs:?}");
    env.unmount();
}

#[test]
fn exiv2_scan_fetches_headers_only_and_caches_nothing() {
    require_fuse!();
    assert!(
        common::sh("exiv2 --version").status.success(),
        "exiv2 is required (apt-get install exiv2)"
    );
    let (env, sizes) = mount_samples();
    let dir = env.mnt.join("Scan");
    assert_header_scan(
        &env,
        &sizes,
        &dir,
        &format!(
            "cd '{}' && exiv2 -q -g Exif.Photo.DateTimeOriginal -Pv {}",
            dir.display(),
            PHOTOS.join(" ")
        ),
    );
    env.unmount();
}
