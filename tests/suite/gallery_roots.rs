//! The folders a mount shows, through the real binary against the emulator: the gallery folder looked up again
//! at every mount (`-o folder=` on a remount), checked against the emulator's state and request log.

use crate::common;

use common::e2e::{wait_until, Env};
use std::time::Duration;

fn log_of(env: &Env) -> String {
    std::fs::read_to_string(env.cache_dir().join("default/galleryfs.log")).unwrap_or_default()
}

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Downloads of file content the emulator served since `seq`.
fn content_reads_since(env: &Env, seq: u64) -> usize {
    env.emu()
        .state
        .log
        .entries_since(seq)
        .iter()
        .filter(|e| e.host == "content" && e.method == "GET")
        .count()
}

/// Mount the default gallery, unmount, mount `folder=…/DCIM`: the root shows DCIM's children, a cached original
/// of DCIM is served without a download (same item id), and a change journalled in the old tree is still sent.
#[test]
fn another_folder_on_a_remount_is_shown_and_the_old_trees_changes_are_sent() {
    require_fuse!();
    let env = Env::start(3);
    env.login();
    // A long write-back keeps the new file journalled until the next mount.
    env.mount("poll_interval=1,write_back=600,thumbnails=off,timeline=off");
    let root = names(&env.mnt);
    assert!(root.contains(&"DCIM".to_string()), "{root:?}");
    let camera = env.mnt.join("DCIM/Camera");
    let photo = std::fs::read_dir(&camera).unwrap().next().unwrap().unwrap().path();
    let photo_name = photo.file_name().unwrap().to_string_lossy().into_owned();
    let bytes = std::fs::read(&photo).unwrap();
    let old_album = root.iter().find(|n| *n != "DCIM").cloned();
    let pending_dir = match &old_album {
        Some(a) => env.mnt.join(a),
        None => env.mnt.clone(),
    };
    std::fs::write(pending_dir.join("pending.jpg"), b"journalled in the old tree").unwrap();
    env.unmount();
    assert!(
        !env.emu()
            .state
            .state_dump()
            .iter()
            .any(|e| e.path.ends_with("/pending.jpg")),
        "the change is still journalled"
    );

    let seq = env.emu().state.log.next_seq();
    env.mount("poll_interval=1,write_back=0,thumbnails=off,timeline=off,folder=/Pictures/Samsung Gallery/DCIM");
    let shown = names(&env.mnt);
    assert!(
        shown.contains(&"Camera".to_string()),
        "root shows DCIM's children: {shown:?}\nlog: {}",
        log_of(&env)
    );
    assert!(!shown.contains(&"DCIM".to_string()), "{shown:?}");
    let again = env.mnt.join("Camera").join(&photo_name);
    assert_eq!(std::fs::read(&again).unwrap(), bytes);
    assert_eq!(
        content_reads_since(&env, seq),
        0,
        "the cached original was kept by item id (no download)"
    );
    let expected = format!(
        "/Pictures/Samsung Gallery{}/pending.jpg",
        old_album.as_ref().map(|a| format!("/{a}")).unwrap_or_default()
    );
    assert!(
        wait_until(Duration::from_secs(30), || env
            .emu()
            .state
            .state_dump()
            .iter()
            .any(|e| e.path == expected && e.size == 26)),
        "the old tree's journalled upload was sent to {expected}\nlog: {}",
        log_of(&env)
    );
    assert!(wait_until(Duration::from_secs(10), || env.status_json()["outbox"]
        ["pending"]
        == 0));
    env.unmount();
}

fn dump_entry(env: &Env, id: &str) -> Option<galleryfs::emulator::StateEntry> {
    env.emu().state.state_dump().into_iter().find(|e| e.id == id)
}

/// The Camera Roll beside the gallery: absent until Camera Backup makes it, then shown within the poll interval
/// under its OneDrive name, read with the right bytes; edit, move to an album (same id), delete (recycle bin);
/// `camera_roll=off` hides it.
#[test]
fn the_camera_roll_shows_beside_the_gallery_and_works_like_it() {
    require_fuse!();
    let env = Env::start(3);
    env.login();
    env.mount("poll_interval=1,write_back=0,thumbnails=off,timeline=off");
    let m = env.mnt.clone();
    assert!(!names(&m).iter().any(|n| n.contains("Camera Roll")), "{:?}", names(&m));
    assert!(
        wait_until(Duration::from_secs(10), || env.status_json()["camera_roll"]["state"]
            == "missing"),
        "{}",
        env.status_json()
    );

    // Camera Backup makes the folder and uploads a photo (Android naming).
    let taken = chrono::DateTime::parse_from_rfc3339("2026-10-03T08:15:42Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let photo = galleryfs::emulator::camera_backup::camera_photo(taken, 3);
    let expected = photo.read_range(0, photo.len());
    let (id, path) = env
        .emu()
        .state
        .camera_backup(
            galleryfs::emulator::camera_backup::Platform::Android,
            taken,
            "jpg",
            Some(photo),
        )
        .unwrap();
    assert_eq!(path, "/Pictures/Camera Roll/20261003_081542.jpg");
    let shown = m.join("Camera Roll/20261003_081542.jpg");
    assert!(
        wait_until(Duration::from_secs(6), || shown.exists()),
        "the upload shows within the poll interval: {:?}\nlog: {}",
        names(&m),
        log_of(&env)
    );
    assert!(m.join("DCIM").is_dir(), "the gallery stays at the root");
    assert_eq!(std::fs::read(&shown).unwrap(), expected.to_vec(), "the right bytes");
    let status = env.status_json();
    assert_eq!(status["camera_roll"]["state"], "ok", "{status}");
    assert_eq!(status["camera_roll"]["path"], "/Camera Roll", "{status}");
    assert_eq!(status["camera_roll"]["items"], 1, "{status}");

    // An edit reaches the same item.
    std::fs::write(&shown, b"edited in the camera roll").unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || dump_entry(&env, &id)
            .is_some_and(|e| e.size == 25)),
        "edit sent: {:?}\nlog: {}",
        dump_entry(&env, &id),
        log_of(&env)
    );

    // A move into an album is a OneDrive move (same id).
    let album = m.join("DCIM/Camera/20261003_081542.jpg");
    std::fs::rename(&shown, &album).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || dump_entry(&env, &id).is_some_and(|e| e
            .path
            == "/Pictures/Samsung Gallery/DCIM/Camera/20261003_081542.jpg")),
        "moved by id: {:?}\nlog: {}",
        dump_entry(&env, &id),
        log_of(&env)
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(std::fs::read(&album).unwrap(), b"edited in the camera roll");
    assert!(!shown.exists());

    // A second upload, deleted from the mount: to the recycle bin.
    let later = taken + chrono::Duration::minutes(5);
    let (id2, _) = env
        .emu()
        .state
        .camera_backup(galleryfs::emulator::camera_backup::Platform::Ios, later, "heic", None)
        .unwrap();
    let ios = m.join("Camera Roll/2026/10/20261003_082042000_iOS.heic");
    assert!(
        wait_until(Duration::from_secs(6), || ios.exists()),
        "iOS upload in YYYY/MM: {:?}",
        names(&m.join("Camera Roll"))
    );
    std::fs::remove_file(&ios).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || env
            .emu()
            .state
            .recycle_bin_dump()
            .iter()
            .any(|e| e.id == id2)),
        "deleted to the recycle bin\nlog: {}",
        log_of(&env)
    );
    env.unmount();

    env.mount("poll_interval=1,write_back=0,thumbnails=off,timeline=off,camera_roll=off");
    assert!(!m.join("Camera Roll").exists(), "{:?}", names(&m));
    assert_eq!(env.status_json()["camera_roll"]["state"], "off");
    env.unmount();
}

/// An emulator whose Camera Roll has a localized name that clashes with a gallery album, with recent uploads.
fn env_with_camera_roll(name: &str, uploads: usize) -> Env {
    Env::start_with(galleryfs::emulator::EmulatorConfig {
        seed_gallery: 3,
        auto_approve: true,
        camera_roll_name: Some(name.to_string()),
        seed_camera_roll: uploads,
        ..Default::default()
    })
}

/// A store made without the Camera Roll (as by the version before it) upgrades in place: the cached original
/// keeps its inode and is served without a download. The localized name clashes with an album, so the Camera
/// Roll shows as `NAME (Camera Backup)`. The gallery deleted on OneDrive leaves the Camera Roll working.
#[test]
fn a_store_without_the_camera_roll_upgrades_and_the_trees_fail_independently() {
    require_fuse!();
    use std::os::unix::fs::MetadataExt;
    let env = env_with_camera_roll("DCIM", 2);
    env.login();
    env.mount("poll_interval=1,write_back=0,thumbnails=off,timeline=off,camera_roll=off");
    let m = env.mnt.clone();
    assert_eq!(names(&m), vec!["DCIM".to_string()]);
    let photo = std::fs::read_dir(m.join("DCIM/Camera"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&photo).unwrap();
    let ino = std::fs::metadata(&photo).unwrap().ino();
    env.unmount();

    let seq = env.emu().state.log.next_seq();
    env.mount("poll_interval=1,write_back=0,thumbnails=off,timeline=off");
    let roll = m.join("DCIM (Camera Backup)");
    assert!(
        wait_until(Duration::from_secs(6), || roll.is_dir()),
        "{:?}\nlog: {}",
        names(&m),
        log_of(&env)
    );
    assert_eq!(names(&roll).len(), 2, "{:?}", names(&roll));
    assert_eq!(std::fs::metadata(&photo).unwrap().ino(), ino, "inode kept");
    assert_eq!(std::fs::read(&photo).unwrap(), bytes);
    let downloads: Vec<_> = env
        .emu()
        .state
        .log
        .entries_since(seq)
        .into_iter()
        .filter(|e| e.host == "content" && e.method == "GET")
        .collect();
    assert!(downloads.is_empty(), "served from the cache: {downloads:?}");
    let status = env.status_json();
    assert_eq!(status["camera_roll"]["path"], "/DCIM (Camera Backup)", "{status}");

    // The gallery goes; the Camera Roll keeps working.
    env.emu().state.delete_gallery().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || env.status_json()["gallery"] == "missing"),
        "{}",
        env.status_json()
    );
    let taken = chrono::Utc::now() - chrono::Duration::minutes(1);
    let (id, _) = env
        .emu()
        .state
        .camera_backup(
            galleryfs::emulator::camera_backup::Platform::Android,
            taken,
            "jpg",
            None,
        )
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(6), || names(&roll).len() == 3),
        "{:?}\nlog: {}",
        names(&roll),
        log_of(&env)
    );
    let status = env.status_json();
    assert_eq!(status["camera_roll"]["state"], "ok", "{status}");
    assert_eq!(status["gallery"], "missing", "{status}");
    assert!(dump_entry(&env, &id).is_some());
    env.unmount();
}
