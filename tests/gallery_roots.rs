//! The folders a mount shows, through the real binary against the emulator: the gallery folder looked up again
//! at every mount (`-o folder=` on a remount), checked against the emulator's state and request log.

mod common;

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
    env.mount("poll_interval=1,write_back=600,thumbnails=off");
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
    env.mount("poll_interval=1,write_back=0,thumbnails=off,folder=/Pictures/Samsung Gallery/DCIM");
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
