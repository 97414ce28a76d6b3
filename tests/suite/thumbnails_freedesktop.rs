//! The freedesktop thumbnail library end to end on disk: rendering real and synthetic sources, the personal cache
//! (atomic writes, modes, validity, fail markers, removal), the shared repository's PNGs, and GLib itself (`gio`
//! from libglib2.0-bin) accepting our thumbnail.

use std::ffi::OsStr;
use std::io::Cursor;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use galleryfs::thumbnails::shared_repo::render_shared_png;
use galleryfs::thumbnails::{
    file_uri, read_text, read_text_chunks, render_png, thumbnail_name, PersonalCache, ThumbExtra, ThumbSize,
};
use image::{DynamicImage, GenericImageView, ImageFormat, Rgb, RgbImage};

use crate::common;

use common::sample;

fn synthetic_jpeg(width: u32, height: u32) -> Vec<u8> {
    let image = RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 90])
    });
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(image)
        .write_to(&mut out, ImageFormat::Jpeg)
        .unwrap();
    out.into_inner()
}

fn decoded(png: &[u8]) -> DynamicImage {
    image::load_from_memory_with_format(png, ImageFormat::Png).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn large_source_is_scaled_to_each_size_keeping_aspect() {
    let source = synthetic_jpeg(4000, 3000);
    for (size, expected) in [(ThumbSize::Normal, (128, 96)), (ThumbSize::Large, (256, 192))] {
        let png = render_png(
            &source,
            size,
            "file:///g/big.jpg",
            1_700_000_000,
            &ThumbExtra::default(),
        )
        .unwrap();
        assert_eq!(decoded(&png).dimensions(), expected, "{size:?}");
        // Left edge dark red channel, right edge bright: the scaled image is the source, not a blank canvas.
        let thumb = decoded(&png).to_rgb8();
        assert!(thumb.get_pixel(0, 10)[0] < 20 && thumb.get_pixel(expected.0 - 1, 10)[0] > 230);
    }
    let portrait = render_png(
        &synthetic_jpeg(3000, 4000),
        ThumbSize::Large,
        "u",
        1,
        &ThumbExtra::default(),
    )
    .unwrap();
    assert_eq!(decoded(&portrait).dimensions(), (192, 256));
}

#[test]
fn embedded_exif_orientation_6_is_applied() {
    let Some(source) = sample("orientation_6.jpg") else {
        return;
    };
    let stored = image::load_from_memory(&source).unwrap(); // image::load ignores EXIF orientation
    let (sw, sh) = stored.dimensions();
    let png = render_png(&source, ThumbSize::Large, "file:///g/o6.jpg", 1, &ThumbExtra::default()).unwrap();
    let thumb = decoded(&png).to_rgb8();
    let (tw, th) = thumb.dimensions();
    // Orientation 6 = rotate 90° clockwise: the stored width becomes the displayed height.
    assert_eq!(sw > sh, th > tw, "stored {sw}x{sh}, thumbnail {tw}x{th}");
    assert!(tw.max(th) <= 256);
    // Compare with the stored pixels rotated both ways; clockwise must be the (much) closer one.
    let distance = |reference: &DynamicImage| -> u64 {
        let reference = reference
            .resize_exact(tw, th, image::imageops::FilterType::Triangle)
            .to_rgb8();
        reference
            .pixels()
            .zip(thumb.pixels())
            .map(|(a, b)| (0..3).map(|c| a[c].abs_diff(b[c]) as u64).sum::<u64>())
            .sum()
    };
    let clockwise = distance(&stored.rotate90());
    let counter = distance(&stored.rotate270());
    assert!(
        clockwise * 2 < counter,
        "clockwise {clockwise} vs counter-clockwise {counter}"
    );
}

#[test]
fn real_phone_photo_renders_a_normal_thumbnail() {
    let Some(source) = sample("samsung_sm-g935l.jpg") else {
        return;
    };
    let uri = file_uri(Path::new("/mnt/gallery/Camera/samsung_sm-g935l.jpg"));
    let extra = ThumbExtra {
        original_size: Some(source.len() as u64),
        mimetype: Some("image/jpeg".into()),
        ..Default::default()
    };
    let png = render_png(&source, ThumbSize::Normal, &uri, 1_600_000_000, &extra).unwrap();
    let (w, h) = decoded(&png).dimensions();
    assert_eq!(w.max(h), 128);
    assert_eq!(read_text(&png, "Thumb::URI").as_deref(), Some(uri.as_str()));
    assert_eq!(read_text(&png, "Thumb::Size"), Some(source.len().to_string()));
}

#[test]
fn store_is_atomic_private_and_recognised_as_current() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = PersonalCache::new(tmp.path().join("cache"));
    let uri = file_uri(Path::new("/mnt/g/Camera/a b#1.jpg"));
    let png = render_png(
        &synthetic_jpeg(640, 480),
        ThumbSize::Normal,
        &uri,
        1_700_000_123,
        &ThumbExtra::default(),
    )
    .unwrap();

    let path = cache.store(&uri, ThumbSize::Normal, &png).unwrap();
    assert_eq!(
        path,
        tmp.path().join("cache/thumbnails/normal").join(thumbnail_name(&uri))
    );
    assert_eq!(std::fs::read(&path).unwrap(), png);
    assert_eq!(mode(&path), 0o600);
    for dir in ["cache/thumbnails", "cache/thumbnails/normal"] {
        assert_eq!(mode(&tmp.path().join(dir)), 0o700, "{dir}");
    }
    let entries: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        entries,
        vec![path.file_name().unwrap().to_os_string()],
        "no temporary file may remain"
    );

    assert!(cache.is_current(&uri, ThumbSize::Normal, 1_700_000_123));
    assert!(
        !cache.is_current(&uri, ThumbSize::Normal, 1_700_000_124),
        "another mtime is stale"
    );
    assert!(
        !cache.is_current(&uri, ThumbSize::Large, 1_700_000_123),
        "no large thumbnail stored"
    );
    // A thumbnail file labelled with another URI (an MD5 collision, or a foreign writer) is not ours.
    let other = file_uri(Path::new("/elsewhere.jpg"));
    std::fs::copy(&path, cache.path_for(&other, ThumbSize::Normal)).unwrap();
    assert!(!cache.is_current(&other, ThumbSize::Normal, 1_700_000_123));

    // Overwriting replaces the content in place.
    let newer = render_png(
        &synthetic_jpeg(64, 48),
        ThumbSize::Normal,
        &uri,
        1_800_000_000,
        &ThumbExtra::default(),
    )
    .unwrap();
    cache.store(&uri, ThumbSize::Normal, &newer).unwrap();
    assert!(cache.is_current(&uri, ThumbSize::Normal, 1_800_000_000));
    assert!(!cache.is_current(&uri, ThumbSize::Normal, 1_700_000_123));
}

#[test]
fn fail_marker_lives_in_the_program_directory_and_is_removed_with_the_thumbnails() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = PersonalCache::new(tmp.path());
    let uri = "file:///mnt/g/clip.mp4";
    let marker = cache.store_fail_marker(uri, 42).unwrap();
    let expected_dir = tmp
        .path()
        .join("thumbnails/fail")
        .join(format!("galleryfs-{}", env!("CARGO_PKG_VERSION")));
    assert_eq!(marker, expected_dir.join(thumbnail_name(uri)));
    assert_eq!(mode(&marker), 0o600);
    assert_eq!(mode(&expected_dir), 0o700);
    assert_eq!(mode(&tmp.path().join("thumbnails/fail")), 0o700);
    let texts = read_text_chunks(&std::fs::read(&marker).unwrap());
    assert!(texts.contains(&("Thumb::URI".into(), uri.into())));
    assert!(texts.contains(&("Thumb::MTime".into(), "42".into())));
    assert!(cache.has_fail_marker(uri, 42));
    assert!(!cache.has_fail_marker(uri, 43));

    let png = render_png(
        &synthetic_jpeg(300, 300),
        ThumbSize::Large,
        uri,
        42,
        &ThumbExtra::default(),
    )
    .unwrap();
    let large = cache.store(uri, ThumbSize::Large, &png).unwrap();
    cache.remove(uri).unwrap();
    assert!(!marker.exists() && !large.exists());
    cache.remove(uri).unwrap(); // nothing left: still fine
}

#[test]
fn shared_repository_png_carries_the_relative_uri() {
    let png = render_shared_png(
        &synthetic_jpeg(500, 400),
        ThumbSize::Normal,
        OsStr::new("a b.jpg"),
        7,
        &ThumbExtra::default(),
    )
    .unwrap();
    assert_eq!(read_text(&png, "Thumb::URI").as_deref(), Some("./a%20b.jpg"));
    assert_eq!(read_text(&png, "Thumb::MTime").as_deref(), Some("7"));
    assert_eq!(decoded(&png).dimensions(), (128, 102));
}

/// GLib's own verdict: `gio info -a 'thumbnail::*' FILE` with XDG_CACHE_HOME pointing at our cache (needs `gio`,
/// package libglib2.0-bin, which scripts/test installs).
#[test]
fn gio_reports_our_thumbnail_valid() {
    if common::tool("gio").is_none() {
        skip_test!("gio is not installed (apt-get install libglib2.0-bin)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("Samsung Gallery [2024] #1");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("Ü 100%.jpg");
    std::fs::write(&file, synthetic_jpeg(800, 600)).unwrap();
    let meta = std::fs::metadata(&file).unwrap();
    let mtime = std::os::unix::fs::MetadataExt::mtime(&meta);
    let file = file.canonicalize().unwrap();
    let uri = file_uri(&file);
    let extra = ThumbExtra {
        original_size: Some(meta.len()),
        mimetype: Some("image/jpeg".into()),
        ..Default::default()
    };
    let cache = PersonalCache::new(tmp.path().join("xdg-cache"));
    for size in ThumbSize::SEEDED {
        let png = render_png(&std::fs::read(&file).unwrap(), size, &uri, mtime, &extra).unwrap();
        cache.store(&uri, size, &png).unwrap();
    }

    let gio = |xdg_cache: &Path| {
        let output = std::process::Command::new("gio")
            .args(["info", "-a", "thumbnail::*,standard::name"])
            .arg(&file)
            .env("XDG_CACHE_HOME", xdg_cache)
            .env("GIO_USE_VFS", "local")
            .output()
            .expect("gio must be installed for this test");
        assert!(
            output.status.success(),
            "gio failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let report = gio(&tmp.path().join("xdg-cache"));
    eprintln!("{report}");
    let large = cache.path_for(&uri, ThumbSize::Large);
    let normal = cache.path_for(&uri, ThumbSize::Normal);
    assert!(
        report.contains(&format!("thumbnail::path: {}", large.display()))
            || report.contains(&format!("thumbnail::path: {}", normal.display())),
        "GLib did not find our thumbnail:\n{report}"
    );
    assert!(
        report.contains("thumbnail::is-valid: TRUE"),
        "GLib found the thumbnail invalid:\n{report}"
    );

    // Control: touching the file makes GLib call the same thumbnail stale.
    let later = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs((mtime + 10) as u64);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let stale = gio(&tmp.path().join("xdg-cache"));
    assert!(
        stale.contains("thumbnail::is-valid: FALSE"),
        "a stale thumbnail was accepted:\n{stale}"
    );
}

/// GLib's own URIs for tricky names, compared with [`file_uri`]: `gio info` prints the `uri:` it hashes (needs
/// `gio`, package libglib2.0-bin).
#[test]
fn file_uri_matches_gio_for_tricky_names() {
    if common::tool("gio").is_none() {
        skip_test!("gio is not installed (apt-get install libglib2.0-bin)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let names = [
        "plain.jpg",
        "a b.jpg",
        "#1.jpg",
        "100%.jpg",
        "[x].jpg",
        "a+b.jpg",
        "~tilde.jpg",
        "Ü.jpg",
        "日本 語.heic",
        "semi;colon?.jpg",
        "(1)!$&'*,=:@.jpg",
        "quote\"<>\\^`{|}.jpg",
        "tab\there.jpg",
        "-_.~.mp4",
    ];
    for name in names {
        let file = root.join(name);
        std::fs::write(&file, b"x").unwrap();
        let output = std::process::Command::new("gio")
            .args(["info", "-a", "standard::name"])
            .arg(&file)
            .env("GIO_USE_VFS", "local")
            .output()
            .expect("gio must be installed for this test");
        assert!(
            output.status.success(),
            "gio failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8(output.stdout).unwrap();
        let gio_uri = stdout
            .lines()
            .find_map(|line| line.strip_prefix("uri: "))
            .expect("gio prints uri:");
        assert_eq!(file_uri(&file), gio_uri, "name {name:?}");
    }
    // GFile canonicalises lexically before escaping; so does file_uri.
    std::fs::create_dir(root.join("sub")).unwrap();
    let messy = format!("{}//sub/./../a b.jpg", root.display());
    let output = std::process::Command::new("gio")
        .args(["info", "-a", "standard::name", &messy])
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let gio_uri = stdout
        .lines()
        .find_map(|line| line.strip_prefix("uri: "))
        .expect("gio prints uri:");
    assert_eq!(file_uri(Path::new(&messy)), gio_uri);
}

#[test]
fn rename_moves_and_relabels_every_size() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = PersonalCache::new(tmp.path());
    let old = file_uri(Path::new("/mnt/g/Camera/old.jpg"));
    let new = file_uri(Path::new("/mnt/g/Trip 2024/new [1].jpg"));
    for size in ThumbSize::SEEDED {
        let png = render_png(&synthetic_jpeg(400, 300), size, &old, 100, &ThumbExtra::default()).unwrap();
        cache.store(&old, size, &png).unwrap();
    }
    assert_eq!(cache.rename(&old, &new, 200).unwrap(), 2);
    for size in ThumbSize::SEEDED {
        assert!(!cache.path_for(&old, size).exists(), "{size:?} left behind");
        assert!(cache.is_current(&new, size, 200), "{size:?} not moved");
        assert_eq!(mode(&cache.path_for(&new, size)), 0o600);
    }
    assert_eq!(cache.rename(&old, &new, 200).unwrap(), 0, "nothing left to move");
}

// ---------------------------------------------------------------- through a real mount

mod mounted {
    use super::*;
    use common::e2e::{wait_until, Env};
    use galleryfs::emulator::faults::{FaultHost, FaultKind, FaultRule};
    use galleryfs::emulator::request_log::LoggedRequest;
    use std::os::unix::fs::MetadataExt;
    use std::time::Duration;

    /// Files under the mount (the Timeline shows them again: not walked).
    fn media_files(root: &Path) -> Vec<std::path::PathBuf> {
        crate::reliability_support::mount_tree(root)
            .into_iter()
            .filter_map(|(rel, size)| size.map(|_| root.join(rel)))
            .collect()
    }

    /// Mounts a seeded gallery (thumbnails on) and waits until every thumbnail is ready; returns how many
    /// items have thumbnails.
    fn mount_and_wait(env: &Env) -> usize {
        assert!(env.rt.block_on(env.emu().wait_for_hashes(Duration::from_secs(60))));
        env.login();
        env.mount("poll_interval=600");
        let done = wait_until(Duration::from_secs(60), || {
            let t = &env.status_json()["thumbnails"];
            t["total"].as_u64().unwrap_or(0) > 0 && t["ready"] == t["total"]
        });
        assert!(done, "thumbnails ready: {}", env.status_json()["thumbnails"]);
        env.status_json()["thumbnails"]["total"].as_u64().unwrap() as usize
    }

    /// Per-item thumbnail requests (`GET …/items/{id}/thumbnails`) the daemon made.
    fn per_item_requests(log: &[LoggedRequest]) -> usize {
        log.iter()
            .filter(|r| r.host == "api" && r.path.contains("/thumbnails") && !r.path.contains("/children"))
            .count()
    }

    /// Every media file has a valid PNG per size in the personal cache, labelled with its URI and mtime, no
    /// larger than the size. Returns the number of files checked.
    fn check_personal_cache(env: &Env) -> usize {
        let files = media_files(&env.mnt);
        let mut checked = 0;
        for file in &files {
            let uri = file_uri(file);
            if !env
                .xdg_cache()
                .join("thumbnails/normal")
                .join(thumbnail_name(&uri))
                .exists()
            {
                continue; // Not a photo or video (the count is checked against the status).
            }
            let mtime = std::fs::metadata(file).unwrap().mtime();
            for (size, edge) in [("normal", 128), ("large", 256)] {
                let path = env.xdg_cache().join("thumbnails").join(size).join(thumbnail_name(&uri));
                let png =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("{size} thumbnail of {}: {e}", file.display()));
                assert_eq!(read_text(&png, "Thumb::URI").as_deref(), Some(uri.as_str()));
                assert_eq!(
                    read_text(&png, "Thumb::MTime"),
                    Some(mtime.to_string()),
                    "{}",
                    file.display()
                );
                let img = decoded(&png);
                assert!(
                    img.width().max(img.height()) <= edge,
                    "{size} of {}: {:?}",
                    file.display(),
                    img.dimensions()
                );
                assert_eq!(mode(&path), 0o600);
            }
            checked += 1;
        }
        checked
    }

    #[test]
    fn thumbnail_urls_come_with_the_listing_not_one_request_per_item() {
        require_fuse!();
        let env = Env::start(24);
        let total = mount_and_wait(&env);
        let checked = check_personal_cache(&env);
        assert_eq!(checked, total, "every photo and video has both sizes");
        let log = env.emu().state.log.entries();
        assert_eq!(per_item_requests(&log), 0, "the listing carried every thumbnail URL");
        let expanded = log
            .iter()
            .filter(|r| r.host == "api" && r.path.contains("/children") && r.path.contains("expand=thumbnails"))
            .count();
        assert!(expanded > 0, "the folders were listed with $expand=thumbnails");
        // Exactly one download per size: no larger size fetched and scaled.
        let jpegs: Vec<&LoggedRequest> = log
            .iter()
            .filter(|r| r.host == "content" && r.path.starts_with("/thumbnails/"))
            .collect();
        assert_eq!(jpegs.len(), 2 * checked, "one JPEG per item and size");
        assert!(jpegs
            .iter()
            .all(|r| r.path.contains("/c128x128") || r.path.contains("/c256x256")));
    }

    #[test]
    fn without_thumbnails_in_the_listing_each_item_is_asked() {
        require_fuse!();
        let env = Env::start(12);
        // As OneDrive for Business does: `$expand=thumbnails` on a listing is a 400.
        env.emu().state.faults.add_rule(
            FaultRule::new(FaultKind::Status {
                status: 400,
                retry_after_secs: Some(0),
            })
            .host(FaultHost::Api)
            .path_contains("expand=thumbnails"),
        );
        let total = mount_and_wait(&env);
        let checked = check_personal_cache(&env);
        assert_eq!(checked, total, "every photo and video has both sizes");
        let log = env.emu().state.log.entries();
        assert!(
            per_item_requests(&log) >= checked,
            "each item's thumbnails asked by itself: {} requests for {checked} items",
            per_item_requests(&log)
        );
    }
}
