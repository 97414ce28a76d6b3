//! Remote changes reach a real mount within seconds: with `poll_interval=300` a remote add, rename and delete show
//! within 5 s thanks to socket.io notifications; with the channel not offered and `poll_interval=2` they still
//! show within 7 s by polling; and a deletion delta never reported disappears at the periodic full re-list.

use crate::common;

use common::e2e::{wait_until, Env};
use galleryfs::emulator::media::Content;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Adds, renames and deletes a photo on OneDrive; each must show in the mount within `limit`.
fn remote_add_rename_delete_show_within(env: &Env, limit: Duration) {
    let camera = format!("{}/DCIM/Camera", env.gallery_root());
    let remote = format!("{camera}/20991231_120000.jpg");
    let local: PathBuf = env.mnt.join("DCIM/Camera/20991231_120000.jpg");
    let started = Instant::now();
    env.emu()
        .state
        .add_file(&remote, Content::Bytes(b"pushed from the phone".to_vec().into()))
        .unwrap();
    assert!(
        wait_until(limit, || local.exists()),
        "remote add shows within {limit:?}"
    );
    eprintln!("add shown after {:?}", started.elapsed());
    assert_eq!(std::fs::read(&local).unwrap(), b"pushed from the phone");

    let started = Instant::now();
    env.emu().state.rename_item(&remote, "renamed_push.jpg").unwrap();
    let renamed = env.mnt.join("DCIM/Camera/renamed_push.jpg");
    assert!(
        wait_until(limit, || renamed.exists() && !local.exists()),
        "remote rename shows within {limit:?}"
    );
    eprintln!("rename shown after {:?}", started.elapsed());

    let started = Instant::now();
    env.emu()
        .state
        .delete_item(&format!("{camera}/renamed_push.jpg"))
        .unwrap();
    assert!(
        wait_until(limit, || !renamed.exists()),
        "remote delete shows within {limit:?}"
    );
    eprintln!("delete shown after {:?}", started.elapsed());
}

fn mounted_env(options: &str, before_mount: impl FnOnce(&mut Env)) -> Env {
    let mut env = Env::start(8);
    assert!(env.rt.block_on(env.emu().wait_for_hashes(Duration::from_secs(60))));
    before_mount(&mut env);
    env.login();
    env.mount(options);
    assert!(env.mnt.join("DCIM/Camera").is_dir(), "the gallery is listed");
    env
}

#[test]
fn push_notifications_bring_remote_changes_within_5_s_despite_a_300_s_poll() {
    require_fuse!();
    // Everything the daemon can log, to show the channel's credential (the notificationUrl's query) never is.
    let env = mounted_env("poll_interval=300", |env| {
        env.daemon_env.push(("GALLERYFS_LOG".into(), "trace".into()))
    });
    assert!(
        wait_until(Duration::from_secs(10), || env.emu().state.socketio.connections() == 1),
        "the mount connects to the notification channel"
    );
    remote_add_rename_delete_show_within(&env, Duration::from_secs(5));
    // Changes in quick succession may share a notification.
    assert!(env.emu().state.socketio.notifications_sent() >= 2);
    env.unmount();
    assert!(
        wait_until(Duration::from_secs(5), || env.emu().state.socketio.connections() == 0),
        "unmounting closes the channel"
    );
    let log = std::fs::read_to_string(env.cache_dir().join("default/galleryfs.log")).unwrap();
    assert!(
        log.contains("notification channel connected"),
        "the log tells about the channel"
    );
    assert!(!log.contains("snthgk"), "the notificationUrl's query is never logged");
}

#[test]
fn without_the_channel_polling_brings_remote_changes_within_7_s() {
    require_fuse!();
    let env = mounted_env("poll_interval=2", |env| env.emu().state.socketio.set_enabled(false));
    remote_add_rename_delete_show_within(&env, Duration::from_secs(7));
    assert_eq!(env.emu().state.socketio.connections(), 0);
    assert_eq!(env.emu().state.socketio.notifications_sent(), 0);
    let asked = env
        .emu()
        .state
        .log
        .entries()
        .iter()
        .filter(|e| e.path.contains("/subscriptions/socketIo"))
        .count();
    assert_eq!(asked, 1, "asked once, then fell back to polling silently");
    env.unmount();
}

/// Full enumerations of the gallery (delta requests without a token) the emulator has answered.
fn full_listings(env: &Env) -> usize {
    env.emu()
        .state
        .log
        .entries()
        .iter()
        .filter(|e| e.path.contains("/delta") && !e.path.contains("token"))
        .count()
}

#[test]
fn a_deletion_delta_missed_disappears_at_the_full_relist() {
    require_fuse!();
    // poll_interval=1: a full re-list every 12 polls, i.e. every 12 s.
    let env = mounted_env("poll_interval=1", |_| {});
    let victim = env
        .mnt
        .join("DCIM/Camera")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let name = victim.file_name().unwrap().to_str().unwrap().to_string();
    // Start right after a re-list so the next one is a known time away.
    let listed = full_listings(&env);
    assert!(
        wait_until(Duration::from_secs(20), || full_listings(&env) > listed),
        "a periodic full re-list happens"
    );
    let relisted_at = Instant::now();
    let listed = full_listings(&env);
    env.emu().state.drop_next_delta_deletion();
    env.emu()
        .state
        .delete_item(&format!("{}/DCIM/Camera/{name}", env.gallery_root()))
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(full_listings(&env), listed, "no re-list yet");
    assert!(
        victim.exists(),
        "delta never reported this deletion, so polls keep the file"
    );
    assert!(
        wait_until(Duration::from_secs(20), || !victim.exists()),
        "the full re-list removes it"
    );
    assert!(full_listings(&env) > listed);
    eprintln!("removed {:?} after the previous re-list", relisted_at.elapsed());
    env.unmount();
}
