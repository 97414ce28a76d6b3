//! The capture date through a real mount: `user.galleryfs.taken` on every photo and video (OneDrive's
//! `photo.takenDateTime`, else the date in a camera file name, else the creation time) and the photo facet in
//! `status PATH --json`. The time zone is fixed for the daemon (`TZ`), so name dates are read in a known zone.

use crate::common;

use common::e2e::Env;
use galleryfs::emulator::media::Content;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Every daemon of these tests runs with this zone; the expected months are computed with its fixed offset
/// (Tokyo has kept UTC+9 without daylight saving since 1951).
const TZ: &str = "Asia/Tokyo";

fn tokyo() -> chrono::FixedOffset {
    chrono::FixedOffset::east_opt(9 * 3600).unwrap()
}

fn xattr(path: &Path, name: &str) -> String {
    common::sh_ok(&format!("getfattr --only-values -n {name} '{}'", path.display()))
}

fn start(seed: usize) -> Env {
    let mut env = Env::start(seed);
    env.daemon_env.push(("TZ".into(), TZ.into()));
    env
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

/// Every file under `dir` (recursively, skipping `Timeline` at the top): relative path → metadata.
fn files_under(dir: &Path, skip_top: Option<&str>) -> Vec<(String, std::fs::Metadata)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if d == dir && skip_top.is_some_and(|s| e.file_name() == s) {
                continue;
            }
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path().strip_prefix(dir).unwrap().display().to_string(), m));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Requests that change something on OneDrive, since `seq`.
fn changes_sent(env: &Env, since: u64) -> Vec<String> {
    env.emu()
        .state
        .log
        .entries_since(since)
        .into_iter()
        .filter(|e| !matches!(e.method.as_str(), "GET" | "HEAD"))
        .map(|e| format!("{} {} {}", e.method, e.host, e.path))
        .collect()
}

#[test]
fn timeline_lists_every_photo_once_by_month_as_the_same_file() {
    use chrono::Datelike;
    use std::os::unix::fs::MetadataExt;
    require_fuse!();
    let env = start(40);
    env.login();
    env.mount("thumbnails=off,poll_interval=2,write_back=0");
    let timeline = env.mnt.join("Timeline");
    let root: Vec<String> = std::fs::read_dir(&env.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        root.iter().any(|n| n == "Timeline"),
        "the root lists Timeline: {root:?}"
    );

    // Each photo and video of the albums once, under the month of its capture date (Tokyo), same inode.
    let albums = files_under(&env.mnt, Some("Timeline"));
    let media: Vec<_> = albums
        .iter()
        .filter_map(|(rel, m)| {
            let taken = common::sh(&format!(
                "getfattr --only-values -n user.galleryfs.taken '{}'",
                env.mnt.join(rel).display()
            ));
            taken.status.success().then(|| {
                (
                    rel.clone(),
                    m.ino(),
                    String::from_utf8_lossy(&taken.stdout).into_owned(),
                )
            })
        })
        .collect();
    assert!(media.len() >= 30, "{} media files", media.len());
    let listed = files_under(&timeline, None);
    assert_eq!(listed.len(), media.len(), "the Timeline holds every media file once");
    let by_ino: std::collections::HashMap<u64, &(String, std::fs::Metadata)> =
        listed.iter().map(|e| (e.1.ino(), e)).collect();
    assert_eq!(by_ino.len(), listed.len(), "no inode twice in the Timeline");
    for (rel, ino, taken) in &media {
        let (tl_rel, tl_meta) = by_ino
            .get(ino)
            .unwrap_or_else(|| panic!("{rel} is not in the Timeline"));
        let local = chrono::DateTime::parse_from_rfc3339(taken)
            .unwrap()
            .with_timezone(&tokyo());
        let month = format!("{:04}/{:04}-{:02}/", local.year(), local.year(), local.month());
        assert!(
            tl_rel.starts_with(&month),
            "{rel} (taken {taken}) is at {tl_rel}, not in {month}"
        );
        assert_eq!(tl_meta.nlink(), 2, "{tl_rel}: album entry + Timeline entry");
        assert_eq!(tl_meta.len(), std::fs::metadata(env.mnt.join(rel)).unwrap().len());
    }
    // `du` counts each photo once.
    let du = |p: &Path| common::sh_ok(&format!("du -s --apparent-size -B1 '{}' | cut -f1", p.display()));
    let _ = du(&env.mnt);

    // Reading through the Timeline gives the album file's bytes.
    let (first_rel, _, _) = &media[0];
    let tl_path = timeline.join(&by_ino[&std::fs::metadata(env.mnt.join(first_rel)).unwrap().ino()].0);
    assert_eq!(
        std::fs::read(&tl_path).unwrap(),
        std::fs::read(env.mnt.join(first_rel)).unwrap()
    );
    assert_eq!(
        xattr(&tl_path, "user.galleryfs.id"),
        xattr(&env.mnt.join(first_rel), "user.galleryfs.id")
    );

    // Creating, mkdir and renaming into the Timeline: EPERM, and nothing reaches OneDrive.
    let month_dir = tl_path.parent().unwrap().to_path_buf();
    let since = env.emu().state.log.next_seq();
    let eperm = |r: std::io::Result<()>, what: &str| {
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EPERM), "{what}");
    };
    eperm(std::fs::write(month_dir.join("new.jpg"), b"x").map(|_| ()), "create");
    eperm(std::fs::create_dir(month_dir.join("sub")), "mkdir");
    eperm(std::fs::create_dir(timeline.join("1999")), "mkdir a year");
    let (second_rel, _, _) = &media[1];
    eperm(
        std::fs::rename(env.mnt.join(second_rel), month_dir.join("moved.jpg")),
        "rename into the Timeline",
    );
    eperm(std::fs::remove_dir(&timeline), "rmdir the Timeline");
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(changes_sent(&env, since), Vec::<String>::new(), "nothing was sent");

    // `mv` from the Timeline into an album moves the photo there on OneDrive (same id); it stays in the Timeline.
    let moving = &media[2];
    let moving_tl = timeline.join(&by_ino[&moving.1].0);
    let id = xattr(&moving_tl, "user.galleryfs.id");
    let name = Path::new(&moving.0).file_name().unwrap().to_owned();
    std::fs::create_dir_all(env.mnt.join("Picked")).unwrap();
    std::fs::rename(&moving_tl, env.mnt.join("Picked").join(&name)).unwrap();
    assert!(!env.mnt.join(&moving.0).exists(), "gone from its old album");
    assert_eq!(
        std::fs::metadata(env.mnt.join("Picked").join(&name)).unwrap().ino(),
        moving.1
    );
    assert!(
        moving_tl.exists() || files_under(&timeline, None).iter().any(|e| e.1.ino() == moving.1),
        "still in the Timeline"
    );
    let moved_on_onedrive = || {
        env.emu().state.item_json(&id).is_ok_and(|j| {
            j["parentReference"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("/Picked"))
        })
    };
    assert!(
        common::e2e::wait_until(std::time::Duration::from_secs(30), moved_on_onedrive),
        "moved on OneDrive with its id: {:?}",
        env.emu().state.item_json(&id)
    );

    // `rm` in the Timeline deletes the photo: gone from its album, in OneDrive's recycle bin.
    let removing = &media[3];
    let removing_tl = timeline.join(&by_ino[&removing.1].0);
    let id = xattr(&removing_tl, "user.galleryfs.id");
    std::fs::remove_file(&removing_tl).unwrap();
    assert!(!env.mnt.join(&removing.0).exists(), "gone from its album");
    assert!(!removing_tl.exists(), "gone from the Timeline");
    assert!(
        common::e2e::wait_until(std::time::Duration::from_secs(30), || env
            .emu()
            .state
            .recycle_bin_dump()
            .iter()
            .any(|e| e.id == id)),
        "in the recycle bin"
    );

    // A photo added on OneDrive shows in the Timeline within the poll interval, under its month.
    let bytes = std::fs::read(env.mnt.join(&media[4].0)).unwrap();
    env.emu()
        .state
        .add_file(
            &format!("{}/Remote/VID_20190704_101010.jpg", env.gallery_root()),
            Content::Bytes(b"no exif here"[..].into()),
        )
        .unwrap();
    let _ = bytes;
    let new_entry = timeline.join("2019/2019-07/VID_20190704_101010.jpg");
    assert!(
        common::e2e::wait_until(std::time::Duration::from_secs(10), || new_entry.exists()),
        "a remote addition is in the Timeline within the poll interval"
    );
    env.unmount();

    // timeline=off: no Timeline.
    env.mount("thumbnails=off,timeline=off");
    assert!(!env.mnt.join("Timeline").exists());
    assert_eq!(
        std::fs::metadata(env.mnt.join("Picked").join(&name)).unwrap().nlink(),
        1
    );
    env.unmount();
}

/// OneDrive adds the photo facet a few seconds after an upload: the photo first shows under its creation date,
/// then moves to the month it was taken, and `user.galleryfs.taken` follows.
#[test]
fn a_late_photo_facet_re_dates_the_entry() {
    use std::os::unix::fs::MetadataExt;
    require_fuse!();
    let env = start(0);
    env.emu().state.add_folder(env.gallery_root()).unwrap();
    env.emu().state.set_photo_facet_delay(std::time::Duration::from_secs(8));
    env.login();
    env.mount("thumbnails=off,poll_interval=1,write_back=0");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/photos/apple_iphone6.jpg");
    let album = env.mnt.join("Beach");
    std::fs::create_dir(&album).unwrap();
    let photo = album.join("beach.jpg");
    std::fs::copy(&sample, &photo).unwrap();
    let ino = std::fs::metadata(&photo).unwrap().ino();
    let uploaded = || !xattr(&photo, "user.galleryfs.id").starts_with("local:");
    assert!(
        common::e2e::wait_until(std::time::Duration::from_secs(20), uploaded),
        "uploaded"
    );
    // Before the facet: the creation date (this month).
    let now = chrono::Utc::now().with_timezone(&tokyo());
    let this_month = env.mnt.join(format!(
        "Timeline/{}/{}/beach.jpg",
        now.format("%Y"),
        now.format("%Y-%m")
    ));
    assert_eq!(
        std::fs::metadata(&this_month).unwrap().ino(),
        ino,
        "first under its creation date"
    );
    // The facet arrives (EXIF DateTimeOriginal 2014-09-16 14:05:12): September 2014, in Tokyo too.
    let taken_month = env.mnt.join("Timeline/2014/2014-09/beach.jpg");
    assert!(
        common::e2e::wait_until(std::time::Duration::from_secs(20), || taken_month.exists()),
        "re-dated when the photo facet arrived: taken {}",
        xattr(&photo, "user.galleryfs.taken")
    );
    assert_eq!(std::fs::metadata(&taken_month).unwrap().ino(), ino);
    assert_eq!(xattr(&photo, "user.galleryfs.taken"), "2014-09-16T14:05:12Z");
    assert!(!this_month.exists(), "no longer under its creation date");
    env.unmount();
}

/// Thumbnails work in the Timeline: the freedesktop personal cache is pre-seeded for the Timeline's URIs, and a
/// month answers `.sh_thumbnails` for its entries.
#[test]
fn timeline_thumbnails_are_seeded_and_shared() {
    use galleryfs::thumbnails::{file_uri, read_text, shared_thumbnail_name, thumbnail_name};
    require_fuse!();
    let env = start(12);
    env.login();
    env.mount("poll_interval=600");
    assert!(
        common::e2e::wait_until(std::time::Duration::from_secs(60), || {
            let t = &env.status_json()["thumbnails"];
            t["total"].as_u64().unwrap_or(0) > 0 && t["ready"] == t["total"]
        }),
        "thumbnails ready"
    );
    let timeline = env.mnt.join("Timeline");
    let entries = files_under(&timeline, None);
    let jpegs: Vec<_> = entries.iter().filter(|(rel, _)| rel.ends_with(".jpg")).collect();
    assert!(!jpegs.is_empty(), "{entries:?}");
    for (rel, _) in jpegs {
        let path = timeline.join(rel);
        let uri = file_uri(&path);
        let png = env.xdg_cache().join("thumbnails/normal").join(thumbnail_name(&uri));
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("no seeded thumbnail for {uri}: {e}"));
        assert_eq!(read_text(&bytes, "Thumb::URI"), Some(uri.clone()));
        let shared = path
            .parent()
            .unwrap()
            .join(".sh_thumbnails/normal")
            .join(shared_thumbnail_name(path.file_name().unwrap()));
        assert!(
            std::fs::read(&shared).is_ok_and(|b| b.starts_with(b"\x89PNG")),
            "{}",
            shared.display()
        );
    }
    env.unmount();
}

/// Inodes under `dir` (recursively): relative path → (inode, link count).
fn inodes_under(dir: &Path) -> BTreeMap<String, (u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    files_under(dir, None)
        .into_iter()
        .map(|(rel, m)| (rel, (m.ino(), m.nlink())))
        .collect()
}

/// A copy of the mount made by `copy` into a fresh directory keeps each Timeline entry as a hard link of its album
/// file: every Timeline entry has 2 links and the inode of its album copy, so each photo's bytes are there once.
fn assert_copy_links(dest: &Path, album_of: &BTreeMap<String, String>, how: &str) {
    let copied = inodes_under(dest);
    for (tl_rel, album_rel) in album_of {
        let tl = copied
            .get(&format!("Timeline/{tl_rel}"))
            .unwrap_or_else(|| panic!("{how}: Timeline/{tl_rel} not copied"));
        let album = copied
            .get(album_rel)
            .unwrap_or_else(|| panic!("{how}: {album_rel} not copied"));
        assert_eq!(tl.0, album.0, "{how}: Timeline/{tl_rel} is not a link of {album_rel}");
        assert_eq!(tl.1, 2, "{how}: Timeline/{tl_rel} has {} links", tl.1);
    }
}

/// Each Timeline entry is its album file (same inode, 2 links), so the tools that follow hard links count and copy
/// each photo once: `du` of the mount is the albums' bytes, `cp -a` and `rsync -aH` make the Timeline entries hard
/// links of the album copies, `tar` stores them as links. Status, xattrs, pin and free work on a Timeline path;
/// hard links into and out of the Timeline are refused with nothing sent.
#[test]
fn timeline_entries_are_hard_links_for_du_cp_rsync_tar() {
    use std::os::unix::fs::MetadataExt;
    require_fuse!();
    let env = start(20);
    env.login();
    env.mount("thumbnails=off,poll_interval=2,write_back=0");
    let timeline = env.mnt.join("Timeline");

    // Album path of each Timeline entry, by inode.
    let albums = files_under(&env.mnt, Some("Timeline"));
    let album_by_ino: HashMap<u64, &String> = albums.iter().map(|(rel, m)| (m.ino(), rel)).collect();
    let album_of: BTreeMap<String, String> = files_under(&timeline, None)
        .into_iter()
        .map(|(rel, m)| {
            let album = album_by_ino
                .get(&m.ino())
                .unwrap_or_else(|| panic!("Timeline/{rel} has no album entry with its inode"));
            assert_eq!(m.nlink(), 2, "Timeline/{rel}");
            (rel, (*album).clone())
        })
        .collect();
    assert!(album_of.len() >= 10, "{} entries in the Timeline", album_of.len());
    let album_bytes: u64 = albums.iter().map(|(_, m)| m.len()).sum();

    // `du` counts each photo once: the whole mount is the albums' bytes (folders are 0 bytes).
    let du = common::sh_ok(&format!("du -s --apparent-size -B1 '{}' | cut -f1", env.mnt.display()));
    assert_eq!(du.trim().parse::<u64>().unwrap(), album_bytes, "du -s of the mount");

    // Status, xattrs, pin, unpin and free through a Timeline path act on the album's file.
    let (tl_rel, album_rel) = album_of.iter().next().unwrap();
    let (tl_path, album_path) = (timeline.join(tl_rel), env.mnt.join(album_rel));
    let tl = tl_path.display().to_string();
    let status: serde_json::Value = serde_json::from_str(&env.galleryfs_ok(&["status", "--json", &tl])).unwrap();
    assert_eq!(
        status["id"].as_str(),
        Some(xattr(&album_path, "user.galleryfs.id").as_str()),
        "{status}"
    );
    assert_eq!(
        status["size"],
        std::fs::metadata(&album_path).unwrap().len(),
        "{status}"
    );
    assert_eq!(status["state"], "cloud", "{status}");
    assert_eq!(
        xattr(&tl_path, "user.galleryfs.taken"),
        xattr(&album_path, "user.galleryfs.taken")
    );
    env.galleryfs_ok(&["pin", &tl]);
    assert_eq!(xattr(&album_path, "user.galleryfs.state"), "pinned");
    env.galleryfs_ok(&["unpin", &tl]);
    assert_eq!(xattr(&album_path, "user.galleryfs.state"), "cached");
    env.galleryfs_ok(&["free", &tl]);
    assert_eq!(xattr(&album_path, "user.galleryfs.state"), "cloud");
    // A Timeline month: pinning it pins its photos.
    let month = tl_path.parent().unwrap();
    env.galleryfs_ok(&["pin", &month.display().to_string()]);
    for e in std::fs::read_dir(month).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(xattr(&p, "user.galleryfs.state"), "pinned", "{}", p.display());
    }
    env.galleryfs_ok(&["unpin", &month.display().to_string()]);
    env.galleryfs_ok(&["status", &month.display().to_string()]);

    // Hard links into and out of the Timeline: EPERM, and nothing reaches OneDrive.
    let since = env.emu().state.log.next_seq();
    let eperm = |r: std::io::Result<()>, what: &str| {
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EPERM), "{what}");
    };
    eperm(
        std::fs::hard_link(&album_path, month.join("linked.jpg")),
        "ln into the Timeline",
    );
    eperm(
        std::fs::hard_link(&tl_path, album_path.with_file_name("linked.jpg")),
        "ln out of the Timeline",
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(changes_sent(&env, since), Vec::<String>::new(), "nothing was sent");

    // `rsync -aH`, `cp -a` of the whole mount: the Timeline entries are hard links of the album copies.
    let rsynced = env.dir.path().join("rsynced");
    common::sh_ok(&format!("rsync -aH '{}/' '{}/'", env.mnt.display(), rsynced.display()));
    assert_copy_links(&rsynced, &album_of, "rsync -aH");
    let copied = env.dir.path().join("copied");
    common::sh_ok(&format!("cp -a '{}' '{}'", env.mnt.display(), copied.display()));
    assert_copy_links(&copied, &album_of, "cp -a");
    let du_copy = common::sh_ok(&format!("du -s --apparent-size -B1 '{}' | cut -f1", copied.display()));
    let dirs_bytes: u64 = common::sh_ok(&format!("find '{}' -type d -printf '%s\\n'", copied.display()))
        .lines()
        .map(|l| l.trim().parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        du_copy.trim().parse::<u64>().unwrap() - dirs_bytes,
        album_bytes,
        "the copy holds each photo's bytes once"
    );

    // `tar` stores each Timeline entry (or its album entry, whichever comes first) as a link to the other.
    let listing = common::sh_ok(&format!("tar -C '{}' -cf - . | tar -tvf -", env.mnt.display()));
    let links = listing
        .lines()
        .filter(|l| l.starts_with('h') && l.contains(" link to "))
        .count();
    assert_eq!(
        links,
        album_of.len(),
        "tar: one hard link per Timeline entry:\n{listing}"
    );
    env.unmount();
}

/// The Timeline follows OneDrive within the poll interval: a photo deleted there leaves it, one renamed or moved
/// there shows under its new name only, and one that Camera Backup puts into the Camera Roll appears under its
/// month.
#[test]
fn timeline_follows_remote_deletes_moves_and_camera_backup() {
    use galleryfs::emulator::camera_backup::Platform;
    use std::os::unix::fs::MetadataExt;
    require_fuse!();
    let env = start(20);
    // The Camera Roll exists from the start, with one photo in it.
    let first = chrono::DateTime::parse_from_rfc3339("2021-06-05T03:00:00Z")
        .unwrap()
        .to_utc();
    env.emu()
        .state
        .camera_backup(Platform::Android, first, "jpg", None)
        .unwrap();
    env.login();
    env.mount("thumbnails=off,poll_interval=2");
    let timeline = env.mnt.join("Timeline");
    let within = |what: &str, cond: &mut dyn FnMut() -> bool| {
        assert!(
            common::e2e::wait_until(std::time::Duration::from_secs(15), cond),
            "{what} within the poll interval: {:?}",
            files_under(&timeline, None)
                .into_iter()
                .map(|e| e.0)
                .collect::<Vec<_>>()
        );
    };
    // Tokyo: 2021-06-05 12:00.
    within("the Camera Roll's photo in the Timeline", &mut || {
        timeline.join("2021/2021-06/20210605_030000.jpg").exists()
    });

    // Three photos of the albums and where the Timeline shows them.
    let in_timeline = |ino: u64| {
        files_under(&timeline, None)
            .into_iter()
            .find(|e| e.1.ino() == ino)
            .map(|e| e.0)
    };
    let photos: Vec<(String, u64, String)> = files_under(&env.mnt, Some("Timeline"))
        .into_iter()
        .filter(|(rel, _)| rel.ends_with(".jpg") && !rel.starts_with("Camera Roll"))
        .take(3)
        .map(|(rel, m)| {
            let id = xattr(&env.mnt.join(&rel), "user.galleryfs.id");
            (rel, m.ino(), id)
        })
        .collect();
    assert_eq!(photos.len(), 3);
    let tl: Vec<String> = photos
        .iter()
        .map(|p| in_timeline(p.1).unwrap_or_else(|| panic!("{} not in the Timeline", p.0)))
        .collect();

    // Deleted on OneDrive: gone from the Timeline.
    env.emu().state.delete_item(&photos[0].2).unwrap();
    within("a remote delete leaves the Timeline", &mut || {
        !timeline.join(&tl[0]).exists()
    });
    assert_eq!(in_timeline(photos[0].1), None);

    // Renamed on OneDrive: the new name in the same month, the old one gone.
    env.emu()
        .state
        .rename_item(&photos[1].2, "renamed on the web.jpg")
        .unwrap();
    let renamed = Path::new(&tl[1]).with_file_name("renamed on the web.jpg");
    within("a remote rename shows in the Timeline", &mut || {
        timeline.join(&renamed).exists()
    });
    assert!(!timeline.join(&tl[1]).exists(), "the old name is gone");
    assert_eq!(std::fs::metadata(timeline.join(&renamed)).unwrap().ino(), photos[1].1);

    // Moved (and renamed) into another album on OneDrive: the new name, same file, old name gone.
    let elsewhere = env
        .emu()
        .state
        .add_folder(&format!("{}/Elsewhere", env.gallery_root()))
        .unwrap();
    env.emu()
        .state
        .move_item(&photos[2].2, &elsewhere, Some("moved.jpg"))
        .unwrap();
    let moved = Path::new(&tl[2]).with_file_name("moved.jpg");
    within("a remote move shows in the Timeline", &mut || {
        timeline.join(&moved).exists()
    });
    assert!(!timeline.join(&tl[2]).exists(), "the old name is gone");
    assert_eq!(std::fs::metadata(timeline.join(&moved)).unwrap().ino(), photos[2].1);
    assert_eq!(
        std::fs::metadata(env.mnt.join("Elsewhere/moved.jpg")).unwrap().ino(),
        photos[2].1
    );

    // Camera Backup uploads a new photo into the Camera Roll (Tokyo: 2023-02-03 21:38).
    let taken = chrono::DateTime::parse_from_rfc3339("2023-02-03T12:38:26Z")
        .unwrap()
        .to_utc();
    let (id, _) = env
        .emu()
        .state
        .camera_backup(Platform::Android, taken, "jpg", None)
        .unwrap();
    let arrived = timeline.join("2023/2023-02/20230203_123826.jpg");
    within("a Camera Backup upload appears in the Timeline", &mut || {
        arrived.exists()
    });
    assert_eq!(xattr(&arrived, "user.galleryfs.id"), id);
    env.unmount();
}
