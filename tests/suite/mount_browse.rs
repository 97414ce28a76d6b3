//! Browsing through a real mount of the emulator's Samsung Gallery, with the real binary and real tools: the
//! listing matches OneDrive, originals read back identical (quickXorHash), thumbnails are seeded for every photo
//! and video, remote changes show within poll_interval + 5 s, `status --json` tells the truth, and a second mount
//! lists from the store even with OneDrive gone.

use crate::common;

use common::e2e::{wait_until, Env};
use galleryfs::emulator::media::Content;
use galleryfs::remote::QuickXorHash;
use galleryfs::thumbnails::{self, render::read_text};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Relative path → (size, quickXorHash) of every file under the gallery, as OneDrive (the emulator) has them.
fn remote_files(env: &Env) -> BTreeMap<String, (u64, Option<String>)> {
    let prefix = format!("{}/", env.gallery_root());
    env.emu()
        .state
        .state_dump()
        .into_iter()
        .filter(|e| e.kind == "file")
        .filter_map(|e| {
            e.path
                .strip_prefix(&prefix)
                .map(|p| (p.to_string(), (e.size, e.quick_xor_hash.clone())))
        })
        .collect()
}

/// The gallery's files in the mount (the `Timeline` at the root shows the same files again: not counted).
fn local_files(root: &std::path::Path) -> BTreeMap<String, u64> {
    crate::reliability_support::mount_tree(root)
        .into_iter()
        .filter_map(|(rel, size)| size.map(|size| (rel, size)))
        .collect()
}

/// GETs of original content on the emulator's content host (thumbnails excluded).
fn original_downloads(env: &Env) -> usize {
    env.emu()
        .state
        .log
        .entries()
        .iter()
        .filter(|e| e.host == "content" && e.path.starts_with("/download/"))
        .count()
}

/// The bytes OneDrive serves for a gallery file, fetched directly (not through the mount).
fn direct_download(env: &Env, rel: &str) -> Vec<u8> {
    direct_range(env, rel, 0, u64::MAX)
}

fn direct_range(env: &Env, rel: &str, start: u64, len: u64) -> Vec<u8> {
    let url = format!(
        "{}/me/drive/root:{}/{}:/content",
        env.emu().graph_url(),
        env.gallery_root(),
        rel
    );
    let token = env.emu().test_token();
    env.rt.block_on(async {
        let client = reqwest::Client::new();
        let mut req = client.get(url).bearer_auth(token);
        if len != u64::MAX {
            req = req.header("Range", format!("bytes={}-{}", start, start + len - 1));
        }
        let resp = req.send().await.unwrap();
        assert!(resp.status().is_success(), "direct GET: {}", resp.status());
        resp.bytes().await.unwrap().to_vec()
    })
}

#[test]
fn browse_a_gallery_through_a_real_mount() {
    require_fuse!();
    let env = Env::start(60);
    assert!(
        env.rt.block_on(env.emu().wait_for_hashes(Duration::from_secs(60))),
        "emulator hashes ready"
    );
    env.login();
    env.mount("poll_interval=2");

    // The listing is OneDrive's, names and sizes exact, `.sh_thumbnails` never listed.
    let remote = remote_files(&env);
    let local = local_files(&env.mnt);
    assert_eq!(local.keys().collect::<Vec<_>>(), remote.keys().collect::<Vec<_>>());
    for (path, size) in &local {
        assert_eq!(*size, remote[path].0, "size of {path}");
    }
    assert!(!local.keys().any(|p| p.contains(".sh_thumbnails")));

    // Listing everything and seeding every thumbnail fetched zero bytes of originals (the emulator's request log).
    let downloads_before = original_downloads(&env);
    assert_eq!(downloads_before, 0, "listing must not download originals");
    common::sh_ok(&format!("find '{}' -type f | wc -l", env.mnt.display()));
    assert!(
        wait_until(Duration::from_secs(60), || {
            let t = &env.status_json()["thumbnails"];
            t["total"].as_u64().unwrap_or(0) > 0 && t["ready"] == t["total"]
        }),
        "thumbnails ready within 60 s"
    );
    assert_eq!(original_downloads(&env), 0, "thumbnails must not download originals");
    let found = common::sh_ok(&format!(
        "find '{}' -path '{}/Timeline' -prune -o -type f -print",
        env.mnt.display(),
        env.mnt.display()
    ));
    assert_eq!(
        found.lines().count(),
        remote.len(),
        "find sees every file, and no .sh_thumbnails"
    );

    // Originals read back identical: a few photos in full (and the hash attribute agrees).
    let photos: Vec<&String> = remote.keys().filter(|p| p.ends_with(".jpg")).take(4).collect();
    assert!(!photos.is_empty());
    for p in &photos {
        let bytes = std::fs::read(env.mnt.join(p)).unwrap();
        assert_eq!(Some(QuickXorHash::of(&bytes)), remote[*p].1, "content of {p}");
        let state = common::sh_ok(&format!(
            "getfattr --only-values -n user.galleryfs.state '{}'",
            env.mnt.join(p).display()
        ));
        assert_eq!(state, "cached", "{p} is verified and cached after a full read");
    }
    // sha1sum/cmp against the bytes OneDrive serves, a decodable JPEG, and random-offset reads of a large video.
    let direct = direct_download(&env, photos[1]);
    let mounted = env.mnt.join(photos[1]);
    // Photos are megabytes: the direct copy goes through a file, not a command line.
    let copy = env.dir.path().join("direct.jpg");
    std::fs::write(&copy, &direct).unwrap();
    assert_eq!(
        common::sh_ok(&format!("sha1sum < '{}'", mounted.display())),
        common::sh_ok(&format!("sha1sum < '{}'", copy.display()))
    );
    common::sh_ok(&format!("cmp '{}' '{}'", mounted.display(), copy.display()));
    image::load_from_memory(&std::fs::read(&mounted).unwrap()).expect("the fetched JPEG decodes");
    if let Some(video) = remote
        .iter()
        .filter(|(p, _)| p.ends_with(".mp4"))
        .max_by_key(|(_, v)| v.0)
        .map(|(p, _)| p.clone())
    {
        let whole_size = remote[&video].0;
        let direct = direct_range(&env, &video, whole_size / 3, 65536);
        let skip = whole_size / 3 / 4096;
        let out = std::process::Command::new("dd")
            .args([
                format!("if={}", env.mnt.join(&video).display()),
                "bs=4096".into(),
                format!("skip={skip}"),
                "count=16".into(),
                "status=none".into(),
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        let offset_in = (whole_size / 3 - skip * 4096) as usize;
        assert_eq!(
            &out.stdout[..],
            &direct_range(&env, &video, skip * 4096, 65536)[..],
            "dd at a random offset"
        );
        assert_eq!(&out.stdout[offset_in..offset_in + 100], &direct[..100]);
    }

    // mtime is fileSystemInfo.lastModifiedDateTime in whole seconds, atime = mtime.
    let first = photos[0];
    let id = common::sh_ok(&format!(
        "getfattr --only-values -n user.galleryfs.id '{}'",
        env.mnt.join(first).display()
    ));
    let item = env.emu().state.item_json(&id).unwrap();
    let fsi = item["fileSystemInfo"]["lastModifiedDateTime"]
        .as_str()
        .unwrap()
        .to_string();
    let want = chrono::DateTime::parse_from_rfc3339(&fsi).unwrap().timestamp();
    let st = common::sh_ok(&format!("stat -c '%Y %X' '{}'", env.mnt.join(first).display()));
    assert_eq!(st.trim(), format!("{want} {want}"));

    // Thumbnails: every photo and video gets both sizes in the personal cache, labelled for its mount path.
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = wait_until(Duration::from_secs(60), || {
        let s = env.status_json();
        let t = &s["thumbnails"];
        t["total"].as_u64().unwrap_or(0) > 0 && t["ready"] == t["total"]
    });
    assert!(
        done,
        "thumbnails ready within 60 s: {}",
        env.status_json()["thumbnails"]
    );
    assert!(Instant::now() <= deadline);
    let uri = thumbnails::file_uri(&env.mnt.join(first));
    for size in ["normal", "large"] {
        let png = std::fs::read(
            env.xdg_cache()
                .join("thumbnails")
                .join(size)
                .join(thumbnails::thumbnail_name(&uri)),
        )
        .unwrap_or_else(|e| panic!("{size} thumbnail of {first}: {e}"));
        assert_eq!(read_text(&png, "Thumb::URI").as_deref(), Some(uri.as_str()));
        assert_eq!(read_text(&png, "Thumb::MTime"), Some(want.to_string()));
    }
    // ... and the shared repository answers by path in the file's directory.
    let (dir, name) = first.rsplit_once('/').unwrap();
    let md5 = thumbnails::md5_of_name(std::ffi::OsStr::new(name));
    let shared = std::fs::read(
        env.mnt
            .join(dir)
            .join(".sh_thumbnails/normal")
            .join(format!("{md5}.png")),
    )
    .unwrap();
    assert_eq!(read_text(&shared, "Thumb::URI"), Some(format!("./{name}")));

    // Remote changes (as the phone or the web makes them) show within poll_interval + 5 s.
    let new_path = format!("{}/DCIM/Camera/20991231_235959.jpg", env.gallery_root());
    env.emu()
        .state
        .add_file(&new_path, Content::Bytes(b"a new photo from the phone".to_vec().into()))
        .unwrap();
    let new_local = env.mnt.join("DCIM/Camera/20991231_235959.jpg");
    assert!(
        wait_until(Duration::from_secs(7), || new_local.exists()),
        "remote add shows up"
    );
    assert_eq!(std::fs::read(&new_local).unwrap(), b"a new photo from the phone");
    env.emu().state.rename_item(&new_path, "renamed.jpg").unwrap();
    let renamed = env.mnt.join("DCIM/Camera/renamed.jpg");
    assert!(
        wait_until(Duration::from_secs(7), || renamed.exists() && !new_local.exists()),
        "remote rename shows up"
    );
    env.emu()
        .state
        .delete_item(&format!("{}/DCIM/Camera/renamed.jpg", env.gallery_root()))
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(7), || !renamed.exists()),
        "remote delete shows up"
    );

    // status --json carries the contract's fields.
    let s = env.status_json();
    for key in [
        "account",
        "mountpoint",
        "folder",
        "gallery",
        "online",
        "signed_in",
        "message",
        "quota",
        "outbox",
        "cache",
        "thumbnails",
        "last_sync",
        "next_sync",
        "throttled_until",
    ] {
        assert!(s.get(key).is_some(), "status --json lacks {key}: {s}");
    }
    assert_eq!(s["mountpoint"], env.mnt.display().to_string());
    assert_eq!(
        (s["gallery"].as_str(), s["online"].as_bool(), s["signed_in"].as_bool()),
        (Some("ok"), Some(true), Some(true))
    );
    assert!(s["cache"]["used_bytes"].as_u64().unwrap() > 0);
    env.unmount();
    assert_eq!(env.status_json()["mountpoint"], serde_json::Value::Null);
}

#[test]
fn a_second_mount_lists_from_the_store_with_onedrive_gone() {
    require_fuse!();
    let mut env = Env::start(30);
    env.login();
    env.mount("thumbnails=off");
    let listing = local_files(&env.mnt);
    let photo = listing.keys().find(|p| p.ends_with(".jpg")).unwrap().clone();
    let cached = std::fs::read(env.mnt.join(&photo)).unwrap();
    let video = listing.keys().find(|p| p.ends_with(".mp4")).cloned();
    env.unmount();

    // OneDrive is unreachable now.
    let emu = env.emu.take().unwrap();
    env.rt.block_on(emu.shutdown()).unwrap();
    env.mount("thumbnails=off");
    assert_eq!(local_files(&env.mnt), listing, "the same listing, from the store");
    assert_eq!(
        std::fs::read(env.mnt.join(&photo)).unwrap(),
        cached,
        "a cached original reads offline"
    );
    if let Some(v) = video {
        let err = std::fs::read(env.mnt.join(&v)).unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EIO),
            "an original that cannot be fetched is EIO"
        );
    }
    assert_eq!(env.status_json()["online"], false);
    env.unmount();
}

/// A photo viewer's "next": opening the photos of a folder one after the other fetches the next few in the
/// background, so they open from the cache; a single open fetches nothing ahead.
#[test]
fn viewing_photos_in_order_fetches_the_next_ones_ahead() {
    require_fuse!();
    let env = Env::start(40);
    env.login();
    env.mount("thumbnails=off");
    let camera = env.mnt.join("DCIM/Camera");
    // The folder in the mount's order (case-folded names), photos only.
    let mut photos: Vec<String> = std::fs::read_dir(&camera)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.to_lowercase().ends_with(".jpg"))
        .collect();
    photos.sort_by_key(|n| n.to_lowercase());
    assert!(photos.len() >= 6, "{photos:?}");
    let state = |name: &str| {
        common::sh_ok(&format!(
            "getfattr --only-values -n user.galleryfs.state '{}'",
            camera.join(name).display()
        ))
    };
    std::fs::read(camera.join(&photos[0])).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(state(&photos[1]), "cloud", "one open fetches nothing ahead");
    std::fs::read(camera.join(&photos[1])).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || state(&photos[2]) == "cached"),
        "the next photo was fetched ahead: {}",
        state(&photos[2])
    );
    // Opening it now reads from the cache: no request about it reaches OneDrive.
    let id = common::sh_ok(&format!(
        "getfattr --only-values -n user.galleryfs.id '{}'",
        camera.join(&photos[2]).display()
    ));
    let since = env.emu().state.log.next_seq();
    let bytes = std::fs::read(camera.join(&photos[2])).unwrap();
    assert_eq!(
        QuickXorHash::of(&bytes),
        remote_files(&env)[&format!("DCIM/Camera/{}", photos[2])]
            .1
            .clone()
            .unwrap()
    );
    let about_it: Vec<_> = env
        .emu()
        .state
        .log
        .entries_since(since)
        .into_iter()
        .filter(|e| e.path.contains(id.as_str()))
        .collect();
    assert!(
        about_it.is_empty(),
        "a photo fetched ahead was requested again: {about_it:?}"
    );
    env.unmount();
}
