//! The capture date through a real mount: `user.galleryfs.taken` on every photo and video (OneDrive's
//! `photo.takenDateTime`, else the date in a camera file name, else the creation time) and the photo facet in
//! `status PATH --json`. The time zone is fixed for the daemon (`TZ`), so name dates are read in a known zone.

mod common;

use common::e2e::Env;
use galleryfs::emulator::media::Content;
use std::path::Path;

/// Every test of this binary runs with this zone (the daemon inherits it).
const TZ: &str = "Asia/Tokyo";

fn xattr(path: &Path, name: &str) -> String {
    common::sh_ok(&format!("getfattr --only-values -n {name} '{}'", path.display()))
}

fn start(seed: usize) -> Env {
    std::env::set_var("TZ", TZ);
    Env::start(seed)
}

#[test]
fn taken_attribute_and_photo_facet_in_status() {
    require_fuse!();
    let env = start(20);
    // A photo without EXIF whose name carries the date, and a file with neither (the creation time decides).
    let gallery = env.gallery_root();
    let named = env
        .emu()
        .state
        .add_file(
            &format!("{gallery}/Misc/Screenshot_20240316-101500_Gallery.jpg"),
            Content::Bytes(b"not really a jpeg"[..].into()),
        )
        .unwrap();
    let plain = env
        .emu()
        .state
        .add_file(
            &format!("{gallery}/Misc/holiday.jpg"),
            Content::Bytes(b"not a jpeg either"[..].into()),
        )
        .unwrap();
    env.login();
    env.mount("thumbnails=off");

    // A camera photo: OneDrive's takenDateTime, and its camera in status.
    let camera = env.mnt.join("DCIM/Camera");
    let photo = std::fs::read_dir(&camera)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "jpg"))
        .expect("a camera photo");
    let id = xattr(&photo, "user.galleryfs.id");
    let item = env.emu().state.item_json(&id).unwrap();
    let remote_taken = item["photo"]["takenDateTime"]
        .as_str()
        .expect("seeded photos have a photo facet");
    let taken = xattr(&photo, "user.galleryfs.taken");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(&taken).unwrap(),
        chrono::DateTime::parse_from_rfc3339(remote_taken).unwrap(),
        "taken = photo.takenDateTime"
    );
    let listed = common::sh_ok(&format!("getfattr -d -m - '{}'", photo.display()));
    assert!(listed.contains("user.galleryfs.taken"), "listed: {listed}");
    let status: serde_json::Value =
        serde_json::from_str(&env.galleryfs_ok(&["status", "--json", &photo.display().to_string()])).unwrap();
    assert_eq!(status["taken"].as_str(), Some(taken.as_str()), "{status}");
    assert_eq!(
        status["photo"]["camera_model"], item["photo"]["cameraModel"],
        "{status}"
    );
    assert_eq!(status["photo"]["width"], item["image"]["width"], "{status}");
    assert_eq!(status["photo"]["height"], item["image"]["height"], "{status}");

    // No photo facet: the date in the name, read in the local zone (Tokyo, +09:00).
    let misc = env.mnt.join("Misc");
    assert_eq!(
        xattr(
            &misc.join("Screenshot_20240316-101500_Gallery.jpg"),
            "user.galleryfs.taken"
        ),
        "2024-03-16T01:15:00Z"
    );
    // Neither: OneDrive's creation time.
    let created = env.emu().state.item_json(&plain).unwrap()["fileSystemInfo"]["createdDateTime"]
        .as_str()
        .unwrap()
        .to_string();
    let taken = xattr(&misc.join("holiday.jpg"), "user.galleryfs.taken");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(&taken).unwrap().timestamp(),
        chrono::DateTime::parse_from_rfc3339(&created).unwrap().timestamp(),
        "taken = createdDateTime"
    );
    let _ = named;
    // Not on folders or non-media files.
    assert!(
        !common::sh(&format!("getfattr -n user.galleryfs.taken '{}'", misc.display()))
            .status
            .success()
    );
    env.unmount();
}
