//! The Camera Roll through a real mount against the emulator: thumbnails of a Camera Backup upload without its
//! original fetched, the per-file commands and edits inside it, a `folder=` inside it, and how soon remote
//! changes in both trees show; each checked against the emulator's state and request log.

use crate::common;

use common::e2e::{wait_until, Env};
use galleryfs::emulator::camera_backup::Platform;
use galleryfs::emulator::media::Content;
use galleryfs::thumbnails;
use std::path::Path;
use std::time::{Duration, Instant};

fn log_of(env: &Env) -> String {
    std::fs::read_to_string(env.cache_dir().join("default/galleryfs.log")).unwrap_or_default()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The root's names without the Timeline (a view, not a folder of the drive).
fn tree_names(dir: &Path) -> Vec<String> {
    names(dir).into_iter().filter(|n| n != "Timeline").collect()
}

fn dump_entry(env: &Env, id: &str) -> Option<galleryfs::emulator::StateEntry> {
    env.emu().state.state_dump().into_iter().find(|e| e.id == id)
}

fn dump_path(env: &Env, path: &str) -> Option<galleryfs::emulator::StateEntry> {
    env.emu().state.state_dump().into_iter().find(|e| e.path == path)
}

fn xattr(path: &Path, name: &str) -> String {
    common::sh_ok(&format!("getfattr --only-values -n {name} '{}'", path.display()))
}

fn file_status(env: &Env, path: &Path) -> serde_json::Value {
    serde_json::from_str(env.galleryfs_ok(&["status", path.to_str().unwrap(), "--json"]).trim()).unwrap()
}

/// Requests since `seq` that fetch an original: an item's `/content` on the API host or a download URL.
fn original_fetches_since(env: &Env, seq: u64) -> Vec<String> {
    env.emu()
        .state
        .log
        .entries_since(seq)
        .into_iter()
        .filter(|e| {
            e.method == "GET"
                && ((e.host == "content" && e.path.starts_with("/download/"))
                    || (e.host == "api"
                        && e.path.split('?').next().unwrap_or("").ends_with("/content")
                        && !e.path.contains("/thumbnails/")))
        })
        .map(|e| format!("{} {}", e.host, e.path))
        .collect()
}

fn upload(env: &Env, platform: Platform, taken: chrono::DateTime<chrono::Utc>, ext: &str) -> (String, String) {
    env.emu().state.camera_backup(platform, taken, ext, None).unwrap()
}

fn taken(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

fn require_getfattr() -> bool {
    if common::tool("getfattr").is_none() {
        common::skip("getfattr (package attr) is not installed");
        return false;
    }
    true
}

/// A Camera Backup upload gets both freedesktop thumbnail sizes and its `.sh_thumbnails` entry from OneDrive's
/// thumbnails, within the poll interval, and its original is never fetched.
#[test]
fn a_camera_backup_upload_gets_thumbnails_without_its_original_fetched() {
    require_fuse!();
    let env = Env::start(3);
    env.login();
    env.mount("poll_interval=2,write_back=0");
    // The gallery's own thumbnails first, so that what follows is the upload's alone.
    assert!(
        wait_until(Duration::from_secs(60), || {
            let t = &env.status_json()["thumbnails"];
            t["total"].as_u64().unwrap_or(0) > 0 && t["ready"] == t["total"]
        }),
        "{}",
        env.status_json()["thumbnails"]
    );
    let seq = env.emu().state.log.next_seq();
    let (id, path) = upload(&env, Platform::Android, taken("2026-10-04T09:00:00Z"), "jpg");
    assert_eq!(path, "/Pictures/Camera Roll/20261004_090000.jpg");
    let shown = env.mnt.join("Camera Roll/20261004_090000.jpg");
    let start = Instant::now();
    let uri = thumbnails::file_uri(&shown);
    let personal = |size: &str| {
        env.xdg_cache()
            .join("thumbnails")
            .join(size)
            .join(thumbnails::thumbnail_name(&uri))
    };
    let md5 = thumbnails::md5_of_name(std::ffi::OsStr::new("20261004_090000.jpg"));
    let shared = env
        .mnt
        .join("Camera Roll/.sh_thumbnails/normal")
        .join(format!("{md5}.png"));
    assert!(
        wait_until(Duration::from_secs(2 + 5), || personal("normal").is_file()
            && personal("large").is_file()),
        "thumbnails within poll_interval + 5 s: {}\nlog: {}",
        env.status_json()["thumbnails"],
        log_of(&env)
    );
    eprintln!("FIGURE: camera roll upload thumbnailed after {:?}", start.elapsed());
    let png = std::fs::read(personal("normal")).unwrap();
    assert_eq!(
        thumbnails::render::read_text(&png, "Thumb::URI").as_deref(),
        Some(uri.as_str())
    );
    let png = std::fs::read(&shared).unwrap_or_else(|e| panic!("{}: {e}", shared.display()));
    assert_eq!(
        thumbnails::render::read_text(&png, "Thumb::URI"),
        Some("./20261004_090000.jpg".to_string())
    );
    let fetched = original_fetches_since(&env, seq);
    assert!(fetched.is_empty(), "the original of {id} was fetched: {fetched:?}");
    assert_eq!(
        file_status(&env, &shown)["state"],
        "cloud",
        "the original is still only on OneDrive"
    );
    env.unmount();
}

/// Inside the Camera Roll: xattrs, pin/free, `status PATH --json`, mkdir/rmdir, a conflict, and
/// `trash restore` of a file deleted there; each checked on the emulator.
#[test]
fn pin_free_xattrs_folders_conflicts_and_trash_work_in_the_camera_roll() {
    require_fuse!();
    if !require_getfattr() {
        return;
    }
    let env = Env::start(2);
    env.login();
    let (id, _) = upload(&env, Platform::Android, taken("2026-10-05T10:00:00Z"), "jpg");
    let (id2, _) = upload(&env, Platform::Android, taken("2026-10-05T10:01:00Z"), "jpg");
    env.mount("poll_interval=1,write_back=0,thumbnails=off");
    let roll = env.mnt.join("Camera Roll");
    let photo = roll.join("20261005_100000.jpg");
    let other = roll.join("20261005_100100.jpg");
    assert!(
        wait_until(Duration::from_secs(10), || photo.exists() && other.exists()),
        "{:?}",
        names(&env.mnt)
    );

    // xattrs and status PATH: the emulator's id, online only.
    assert_eq!(xattr(&photo, "user.galleryfs.id"), id);
    assert_eq!(xattr(&photo, "user.galleryfs.state"), "cloud");
    let s = file_status(&env, &photo);
    assert_eq!(s["id"], id.as_str(), "{s}");
    assert_eq!(s["state"], "cloud", "{s}");
    assert_eq!(s["size"].as_u64(), dump_entry(&env, &id).map(|e| e.size), "{s}");

    // pin downloads it (the emulator's bytes), free gives the space back.
    let seq = env.emu().state.log.next_seq();
    env.galleryfs_ok(&["pin", photo.to_str().unwrap()]);
    assert_eq!(xattr(&photo, "user.galleryfs.state"), "pinned");
    let s = file_status(&env, &photo);
    assert_eq!(s["cached_bytes"], s["size"], "{s}");
    assert!(!original_fetches_since(&env, seq).is_empty(), "pin downloaded it");
    let seq = env.emu().state.log.next_seq();
    let bytes = std::fs::read(&photo).unwrap();
    assert_eq!(bytes.len() as u64, dump_entry(&env, &id).unwrap().size);
    assert!(
        original_fetches_since(&env, seq).is_empty(),
        "a pinned file reads locally"
    );
    env.galleryfs_ok(&["free", photo.to_str().unwrap()]);
    assert_eq!(xattr(&photo, "user.galleryfs.state"), "cloud");
    assert_eq!(file_status(&env, &photo)["cached_bytes"], 0);

    // mkdir / rmdir reach OneDrive.
    std::fs::create_dir(roll.join("Trip")).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || dump_path(
            &env,
            "/Pictures/Camera Roll/Trip"
        )
        .is_some_and(|e| e.kind == "folder")),
        "mkdir reached OneDrive\nlog: {}",
        log_of(&env)
    );
    std::fs::remove_dir(roll.join("Trip")).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || dump_path(
            &env,
            "/Pictures/Camera Roll/Trip"
        )
        .is_none()),
        "rmdir reached OneDrive\nlog: {}",
        log_of(&env)
    );

    // A conflict: a long write-back keeps our edit pending while OneDrive's copy changes.
    env.unmount();
    env.mount("poll_interval=1,write_back=4,thumbnails=off");
    std::fs::write(&other, b"edited here").unwrap();
    env.emu()
        .state
        .edit_file(&id2, Content::Bytes(b"edited on the phone".to_vec().into()))
        .unwrap();
    let conflict_copy = || {
        env.emu()
            .state
            .state_dump()
            .into_iter()
            .find(|e| e.path.starts_with("/Pictures/Camera Roll/20261005_100100 (conflict "))
    };
    assert!(
        wait_until(Duration::from_secs(30), || conflict_copy().is_some()),
        "a conflict copy beside it on OneDrive: {:?}\nlog: {}",
        env.emu()
            .state
            .state_dump()
            .iter()
            .map(|e| e.path.clone())
            .collect::<Vec<_>>(),
        log_of(&env)
    );
    let copy = conflict_copy().unwrap();
    assert_eq!(copy.size, 11, "our edit is the copy");
    assert_eq!(
        dump_entry(&env, &id2).unwrap().size,
        19,
        "OneDrive's edit keeps the item"
    );
    let copy_name = copy.path.rsplit('/').next().unwrap().to_string();
    assert!(
        wait_until(Duration::from_secs(10), || roll.join(&copy_name).exists()),
        "{:?}",
        names(&roll)
    );
    // The name follows OneDrive's version once the kernel's entry for it is invalidated (asynchronous).
    assert!(
        wait_until(Duration::from_secs(10), || std::fs::read(&other)
            .is_ok_and(|b| b == b"edited on the phone")),
        "{:?}",
        std::fs::read(&other).map(|b| String::from_utf8_lossy(&b).into_owned())
    );
    assert_eq!(std::fs::read(roll.join(&copy_name)).unwrap(), b"edited here");

    // A delete in the Camera Roll goes to the recycle bin; `trash restore` brings the same item back.
    std::fs::remove_file(&photo).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || env
            .emu()
            .state
            .recycle_bin_dump()
            .iter()
            .any(|e| e.id == id)),
        "deleted to the recycle bin\nlog: {}",
        log_of(&env)
    );
    let list = env.galleryfs_ok(&["trash", "list"]);
    assert!(list.contains("20261005_100000.jpg"), "{list}");
    env.galleryfs_ok(&["trash", "restore", &id]);
    assert_eq!(
        dump_entry(&env, &id).map(|e| e.path),
        Some("/Pictures/Camera Roll/20261005_100000.jpg".to_string())
    );
    assert!(
        wait_until(Duration::from_secs(10), || photo.exists()),
        "restored into the mount: {:?}",
        names(&roll)
    );
    assert_eq!(xattr(&photo, "user.galleryfs.id"), id);
    env.unmount();
}

/// `folder=` at the Camera Roll, or inside it: the tree shows once (at the root), not a second time beside it.
#[test]
fn a_folder_at_or_inside_the_camera_roll_shows_once() {
    require_fuse!();
    let env = Env::start(2);
    env.login();
    let (id, _) = upload(&env, Platform::Ios, taken("2026-10-06T11:00:00Z"), "heic");
    env.mount("poll_interval=1,write_back=0,thumbnails=off,folder=/Pictures/Camera Roll");
    // The Camera Roll's round has run (it found the folder) before the root is looked at.
    assert!(
        wait_until(Duration::from_secs(10), || env.status_json()["camera_roll"]["state"]
            == "ok"),
        "{}",
        env.status_json()
    );
    let m = env.mnt.clone();
    assert_eq!(tree_names(&m), vec!["2026".to_string()], "log: {}", log_of(&env));
    let file = m.join("2026/10/20261006_110000000_iOS.heic");
    assert!(file.exists());
    let status = env.status_json();
    assert_eq!(
        status["camera_roll"]["path"],
        serde_json::Value::Null,
        "no second folder for it: {status}"
    );
    env.unmount();

    env.mount("poll_interval=1,write_back=0,thumbnails=off,folder=/Pictures/Camera Roll/2026");
    // The Camera Roll's round has run (it found the folder) before the root is looked at.
    assert!(
        wait_until(Duration::from_secs(10), || env.status_json()["camera_roll"]["state"]
            == "ok"),
        "{}",
        env.status_json()
    );
    assert_eq!(tree_names(&m), vec!["10".to_string()], "log: {}", log_of(&env));
    assert!(m.join("10/20261006_110000000_iOS.heic").exists());
    let status = env.status_json();
    assert_eq!(
        status["camera_roll"]["path"],
        serde_json::Value::Null,
        "no second folder for it: {status}"
    );
    assert!(dump_entry(&env, &id).is_some());
    env.unmount();
}

/// Remote changes in both trees show within poll_interval + 5 s by polling alone (the notification channel
/// off); the figures are printed.
#[test]
fn remote_changes_in_both_trees_show_within_the_poll_interval() {
    require_fuse!();
    remote_changes_show(false);
}

/// The notification channel wakes both trees: remote changes show well before the poll interval.
#[test]
fn a_notification_wakes_both_trees() {
    require_fuse!();
    remote_changes_show(true);
}

fn remote_changes_show(notifications: bool) {
    let env = Env::start(2);
    env.emu().state.socketio.set_enabled(notifications);
    env.login();
    upload(&env, Platform::Android, taken("2026-10-07T12:00:00Z"), "jpg");
    let poll = if notifications { 30u64 } else { 3 };
    env.mount(&format!("poll_interval={poll},write_back=0,thumbnails=off"));
    let m = env.mnt.clone();
    assert!(wait_until(Duration::from_secs(10), || m.join("Camera Roll").is_dir()));
    // With the channel on, a change must show long before the 30 s poll would find it.
    let limit = Duration::from_secs(if notifications { 8 } else { poll + 5 });
    for round in 0..3 {
        let gallery_file = format!("/Pictures/Samsung Gallery/DCIM/Camera/remote_{round}.jpg");
        let start = Instant::now();
        env.emu()
            .state
            .add_file(&gallery_file, Content::Bytes(b"from the web".to_vec().into()))
            .unwrap();
        let (_, _) = upload(
            &env,
            Platform::Android,
            taken(&format!("2026-10-07T12:0{}:00Z", round + 1)),
            "jpg",
        );
        let in_gallery = m.join(format!("DCIM/Camera/remote_{round}.jpg"));
        let in_roll = m.join(format!("Camera Roll/20261007_120{}00.jpg", round + 1));
        let mut seen_gallery = None;
        let mut seen_roll = None;
        wait_until(limit, || {
            if seen_gallery.is_none() && in_gallery.exists() {
                seen_gallery = Some(start.elapsed());
            }
            if seen_roll.is_none() && in_roll.exists() {
                seen_roll = Some(start.elapsed());
            }
            seen_gallery.is_some() && seen_roll.is_some()
        });
        eprintln!(
            "FIGURE: notifications {notifications}, round {round}: gallery {seen_gallery:?}, camera roll \
             {seen_roll:?} (poll {poll} s)"
        );
        assert!(
            seen_gallery.is_some() && seen_roll.is_some(),
            "both within {limit:?}: gallery {seen_gallery:?}, camera roll {seen_roll:?}\nlog: {}",
            log_of(&env)
        );
        // A remote delete in the Camera Roll shows too.
        let start = Instant::now();
        env.emu()
            .state
            .delete_item(&format!("/Pictures/Camera Roll/20261007_120{}00.jpg", round + 1))
            .unwrap();
        assert!(
            wait_until(limit, || !in_roll.exists()),
            "remote delete in the Camera Roll"
        );
        eprintln!(
            "FIGURE: notifications {notifications}, round {round}: camera roll delete {:?}",
            start.elapsed()
        );
    }
    env.unmount();
}

/// A 410 on the Camera Roll's delta scope re-lists that tree only: the gallery's delta link keeps working (no
/// 410, no re-listing of it), its inodes stay, and a Camera Roll file keeps its inode too.
#[test]
fn a_resync_on_the_camera_rolls_scope_relists_that_tree_only() {
    require_fuse!();
    use std::os::unix::fs::MetadataExt;
    let env = Env::start(3);
    env.login();
    let (roll_id, _) = {
        upload(&env, Platform::Android, taken("2026-10-08T08:00:00Z"), "jpg");
        let d = env.emu().state.item_json("/Pictures/Camera Roll").unwrap();
        (d["id"].as_str().unwrap().to_string(), ())
    };
    let gallery_id = env.emu().state.item_json("/Pictures/Samsung Gallery").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.mount("poll_interval=1,write_back=0,thumbnails=off");
    let m = env.mnt.clone();
    let in_roll = m.join("Camera Roll/20261008_080000.jpg");
    assert!(wait_until(Duration::from_secs(10), || in_roll.exists()));
    let gallery_file = std::fs::read_dir(m.join("DCIM/Camera"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let gallery_ino = std::fs::metadata(&gallery_file).unwrap().ino();
    let roll_ino = std::fs::metadata(&in_roll).unwrap().ino();
    // Both trees have done incremental rounds.
    std::thread::sleep(Duration::from_secs(3));

    let seq = env.emu().state.log.next_seq();
    env.emu().state.invalidate_delta_tokens_of(&roll_id).unwrap();
    upload(&env, Platform::Android, taken("2026-10-08T08:05:00Z"), "jpg");
    let new = m.join("Camera Roll/20261008_080500.jpg");
    assert!(
        wait_until(Duration::from_secs(10), || new.exists()),
        "the Camera Roll re-listed: {:?}\nlog: {}",
        names(&m.join("Camera Roll")),
        log_of(&env)
    );
    // A change in the gallery still arrives by its delta link.
    env.emu()
        .state
        .add_file(
            "/Pictures/Samsung Gallery/DCIM/Camera/after.jpg",
            Content::Bytes(b"after".to_vec().into()),
        )
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || m
        .join("DCIM/Camera/after.jpg")
        .exists()));
    let entries = env.emu().state.log.entries_since(seq);
    let lines: Vec<String> = entries
        .iter()
        .filter(|e| e.host == "api")
        .map(|e| format!("{} {} {}", e.status, e.method, e.path))
        .collect();
    let gone: Vec<&String> = lines.iter().filter(|l| l.starts_with("410 ")).collect();
    assert!(
        !gone.is_empty() && gone.iter().all(|l| l.contains(&roll_id)),
        "a 410 on the Camera Roll's scope only: {lines:#?}"
    );
    let gallery_deltas: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(&format!("{gallery_id}/delta")) || l.contains("Samsung%20Gallery:/delta"))
        .collect();
    let gone_at = lines.iter().position(|l| l.starts_with("410 ")).unwrap();
    assert!(
        lines[gone_at..]
            .iter()
            .any(|l| l.starts_with("200 GET") && l.contains(&format!("{roll_id}/children"))),
        "the Camera Roll was listed again after the 410: {lines:#?}"
    );
    assert!(
        !gallery_deltas.is_empty()
            && gallery_deltas
                .iter()
                .all(|l| l.starts_with("200 ") && l.contains("token=")),
        "the gallery kept its delta link (no fresh round): {lines:#?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains(&format!("{gallery_id}/children")) || l.contains("Samsung%20Gallery:/children")),
        "the gallery was not re-listed: {lines:#?}"
    );
    assert_eq!(std::fs::metadata(&gallery_file).unwrap().ino(), gallery_ino);
    assert_eq!(std::fs::metadata(&in_roll).unwrap().ino(), roll_ino);
    assert!(std::fs::read(&in_roll).is_ok());
    env.unmount();
}
