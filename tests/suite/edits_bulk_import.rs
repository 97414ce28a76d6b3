//! Bulk import through a real mount (the `galleryfs` binary over the in-process emulator): `cp -r` of a camera
//! folder (photos below 4 MiB, videos above) into the gallery. Every file lands on OneDrive exactly once with its
//! bytes; small files go by simple `PUT …:/content`, large ones by an upload session; the uploads run in
//! parallel (the request log shows them overlapping), also when OneDrive answers 429 (the number in flight then
//! halves, and everything still lands once), and after a `kill -9` in the middle of the import and a restart.

use crate::common;
use crate::reliability_support;

use common::e2e::{is_mounted, wait_until, Env};
use galleryfs::emulator::faults::{FaultKind, FaultRule};
use galleryfs::emulator::request_log::LoggedRequest;
use galleryfs::remote::QuickXorHash;
use reliability_support::*;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

const OPTIONS: &str = "poll_interval=1,write_back=0,thumbnails=off";

/// A camera folder in `dir/Camera`: `photos` files of 0.3–3.9 MB, 3 more in `Burst/`, and `videos` of 5–6.5 MB.
/// Returns relative path (`Camera/NAME`) → quickXorHash.
fn camera_folder(dir: &Path, photos: usize, videos: usize) -> BTreeMap<String, String> {
    let cam = dir.join("Camera");
    std::fs::create_dir_all(&cam).unwrap();
    let mut want = BTreeMap::new();
    for i in 0..photos {
        let size = 300_000 + (i * 617_000) % 3_600_000;
        let data = bytes(size, 1000 + i as u32);
        let name = format!("20261207_{:06}.jpg", 100_000 + i);
        std::fs::write(cam.join(&name), &data).unwrap();
        want.insert(format!("Camera/{name}"), QuickXorHash::of(&data));
    }
    // A sub-folder: created on OneDrive before the uploads into it.
    std::fs::create_dir_all(cam.join("Burst")).unwrap();
    for i in 0..3 {
        let data = bytes(500_000 + i * 100_000, 3000 + i as u32);
        let name = format!("Burst/20261207_{:06}_BURST.jpg", 300_000 + i);
        std::fs::write(cam.join(&name), &data).unwrap();
        want.insert(format!("Camera/{name}"), QuickXorHash::of(&data));
    }
    for i in 0..videos {
        let data = bytes(5_000_000 + i * 1_500_000, 2000 + i as u32);
        let name = format!("20261207_{:06}.mp4", 200_000 + i);
        std::fs::write(cam.join(&name), &data).unwrap();
        want.insert(format!("Camera/{name}"), QuickXorHash::of(&data));
    }
    want
}

/// OneDrive's files below `Camera/`: path → hash.
fn camera_on_onedrive(env: &Env) -> BTreeMap<String, String> {
    remote_tree(env)
        .into_iter()
        .filter(|(k, v)| k.starts_with("Camera/") && v.1 == "file")
        .map(|(k, v)| (k, v.3.unwrap_or_default()))
        .collect()
}

/// Waits until OneDrive holds exactly `want` below `Camera/` (every file once, its bytes, nothing else).
fn assert_landed_once(env: &Env, want: &BTreeMap<String, String>) {
    wait_drained(env);
    let landed = wait_until(Duration::from_secs(60), || camera_on_onedrive(env) == *want);
    let got = camera_on_onedrive(env);
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let wrong: Vec<_> = want
        .iter()
        .filter(|(k, h)| got.get(*k).is_some_and(|g| g != *h))
        .map(|(k, _)| k)
        .collect();
    assert!(
        landed,
        "every file exactly once with its bytes: missing {missing:?}, extra {extra:?}, wrong bytes {wrong:?}\nlog \
         tail:\n{}",
        tail(&log_text(env), 40)
    );
    assert!(
        conflict_copies(env).is_empty(),
        "no conflict copy: {:?}",
        conflict_copies(env)
    );
}

/// Upload requests (simple PUTs of a file's content, upload-session fragments) in the log.
fn upload_puts(log: &[LoggedRequest]) -> Vec<&LoggedRequest> {
    log.iter()
        .filter(|e| e.method == "PUT" && (e.path.contains(":/content") || e.path.contains("/upload/")))
        .collect()
}

/// The most upload requests the emulator was handling at one moment.
fn most_at_once(puts: &[&LoggedRequest]) -> usize {
    let mut edges: Vec<(u64, i32)> = Vec::new();
    for p in puts {
        edges.push((p.at_ms, 1));
        edges.push((p.at_ms + p.duration_ms, -1));
    }
    // An end before a start at the same millisecond: touching intervals do not overlap.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

fn start_mounted() -> Env {
    let env = Env::start(3);
    env.login();
    env.mount(OPTIONS);
    env
}

#[test]
fn cp_r_of_a_camera_folder_lands_every_file_once_uploaded_in_parallel() {
    if let Some(why) = common::fuse_unavailable() {
        return common::skip(why);
    }
    let env = start_mounted();
    let src = tempfile::tempdir().unwrap();
    let want = camera_folder(src.path(), 24, 2);
    // Each upload request takes a while at the emulator: uploads sent one after the other never overlap.
    env.emu()
        .state
        .faults
        .add_rule(FaultRule::new(FaultKind::Latency { ms: 300 }).method("PUT"));
    let log_from = env.emu().state.log.next_seq();
    common::sh_ok(&format!(
        "cp -r '{}/Camera' '{}/'",
        src.path().display(),
        env.mnt.display()
    ));
    assert_landed_once(&env, &want);
    env.emu().state.faults.clear_rules();
    // Files tell programs to use the FUSE request size (1 MiB): `cp` sized its writes by `st_blksize`, so each MiB
    // copied in was one round trip to the daemon instead of eight.
    for e in std::fs::read_dir(env.mnt.join("Camera")).unwrap() {
        let meta = e.unwrap().metadata().unwrap();
        assert_eq!(meta.blksize(), 1 << 20, "st_blksize of a file in the mount");
    }

    let log = env.emu().state.log.entries_since(log_from);
    let puts = upload_puts(&log);
    let simple: Vec<_> = puts.iter().filter(|e| e.path.contains(":/content")).collect();
    let sessions = log
        .iter()
        .filter(|e| e.method == "POST" && e.path.contains("createUploadSession"))
        .count();
    assert_eq!(simple.len(), 24 + 3, "one simple PUT per photo (≤ 4 MiB): {simple:?}");
    assert!(
        simple.iter().all(|e| e.path.contains(".jpg")),
        "no simple PUT of a video: {simple:?}"
    );
    assert_eq!(sessions, 2, "one upload session per video (> 4 MiB)");
    let most = most_at_once(&puts);
    assert!(
        most >= 3,
        "uploads overlap in time (parallel): at most {most} at once\n{:?}",
        puts.iter().map(|p| (p.at_ms, p.duration_ms)).collect::<Vec<_>>()
    );
    final_checks(&env, OPTIONS);
}

#[test]
fn an_import_answered_with_429s_lands_every_file_once_with_fewer_uploads_in_flight() {
    if let Some(why) = common::fuse_unavailable() {
        return common::skip(why);
    }
    let env = start_mounted();
    let src = tempfile::tempdir().unwrap();
    let want = camera_folder(src.path(), 20, 1);
    // Rules apply in order: the 429s first, then the latency that keeps uploads in flight together.
    let throttle = FaultRule::new(FaultKind::Status {
        status: 429,
        retry_after_secs: Some(1),
    })
    .method("PUT")
    .probability(0.25)
    .count(6);
    env.emu().state.faults.add_rule(throttle);
    env.emu()
        .state
        .faults
        .add_rule(FaultRule::new(FaultKind::Latency { ms: 200 }).method("PUT"));
    common::sh_ok(&format!(
        "cp -r '{}/Camera' '{}/'",
        src.path().display(),
        env.mnt.display()
    ));
    assert_landed_once(&env, &want);
    let counts = env.emu().state.faults.counts();
    assert!(
        counts.get("status_429").copied().unwrap_or(0) > 0,
        "the emulator answered 429s: {counts:?}"
    );
    assert!(
        log_text(&env).contains("fewer uploads in flight"),
        "the daemon narrowed its uploads under throttling; log tail:\n{}",
        tail(&log_text(&env), 40)
    );
    env.emu().state.faults.clear_rules();
    final_checks(&env, OPTIONS);
}

#[test]
fn kill_9_in_the_middle_of_an_import_then_restart_lands_every_file_once() {
    if let Some(why) = common::fuse_unavailable() {
        return common::skip(why);
    }
    let env = start_mounted();
    let src = tempfile::tempdir().unwrap();
    let want = camera_folder(src.path(), 30, 2);
    env.emu()
        .state
        .faults
        .add_rule(FaultRule::new(FaultKind::Latency { ms: 400 }).method("PUT"));
    let log_from = env.emu().state.log.next_seq();
    common::sh_ok(&format!(
        "cp -r '{}/Camera' '{}/'",
        src.path().display(),
        env.mnt.display()
    ));
    // Some uploads are done and some are on the way: the daemon dies.
    let some_done = wait_until(Duration::from_secs(60), || {
        let log = env.emu().state.log.entries_since(log_from);
        upload_puts(&log).iter().filter(|e| e.status < 300).count() >= 8
    });
    assert!(some_done, "uploads began; log tail:\n{}", tail(&log_text(&env), 30));
    let pid = daemon_pid(&env).expect("the daemon's pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(wait_until(Duration::from_secs(20), || !alive(pid)));
    let landed_before = camera_on_onedrive(&env).len();
    assert!(
        landed_before < want.len(),
        "the import was cut short ({landed_before} of {} files on OneDrive)",
        want.len()
    );
    // Requests the daemon had sent before it died are answered (and acted on) meanwhile.
    std::thread::sleep(Duration::from_millis(800));
    env.emu().state.faults.clear_rules();
    let stderr = mount_clean(&env, OPTIONS);
    assert!(
        stderr.contains("stale mount"),
        "the restart recovered the stale mount: {stderr}"
    );
    assert!(is_mounted(&env.mnt));
    assert_landed_once(&env, &want);
    final_checks(&env, OPTIONS);
}

#[test]
fn renames_and_deletes_made_during_an_import_land_after_its_uploads() {
    if let Some(why) = common::fuse_unavailable() {
        return common::skip(why);
    }
    let env = start_mounted();
    let src = tempfile::tempdir().unwrap();
    let mut want = camera_folder(src.path(), 16, 1);
    env.emu()
        .state
        .faults
        .add_rule(FaultRule::new(FaultKind::Latency { ms: 300 }).method("PUT"));
    let m = env.mnt.join("Camera");
    common::sh_ok(&format!(
        "cp -r '{}/Camera' '{}/'",
        src.path().display(),
        env.mnt.display()
    ));
    // While the uploads are in flight: a rename, a move into the sub-folder, a delete.
    let name = |i: usize| format!("20261207_{:06}.jpg", 100_000 + i);
    std::fs::rename(m.join(name(3)), m.join("renamed.jpg")).unwrap();
    std::fs::rename(m.join(name(5)), m.join("Burst").join(name(5))).unwrap();
    std::fs::remove_file(m.join(name(7))).unwrap();
    let h3 = want.remove(&format!("Camera/{}", name(3))).unwrap();
    want.insert("Camera/renamed.jpg".into(), h3);
    let h5 = want.remove(&format!("Camera/{}", name(5))).unwrap();
    want.insert(format!("Camera/Burst/{}", name(5)), h5);
    want.remove(&format!("Camera/{}", name(7)));
    assert_landed_once(&env, &want);
    env.emu().state.faults.clear_rules();
    final_checks(&env, OPTIONS);
}
