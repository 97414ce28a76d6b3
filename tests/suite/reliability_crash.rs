//! Crash matrix: the real `galleryfs` daemon, mounted over the in-process emulator, is made to die at named
//! points (`GALLERYFS_CRASH_AT`, see `src/crash_points.rs`) or by `kill -9` at a random moment of a burst of edits.
//! Each time the operation had already returned success through the mount; the next `galleryfs mount` on the same
//! cache (which must detect and recover the stale mount the crash left) sends it, and then:
//! - OneDrive holds it exactly once: no duplicate item, no conflict copy of our own upload, the right content
//!   hash, ids kept where an edit or a move keeps them, deletes in the recycle bin once;
//! - the SQLite store is consistent (see `reliability_support::check_store`) and mirrors OneDrive;
//! - the mount lists what OneDrive holds.
//!
//! Long variants (more random bursts) run with `GALLERYFS_RELIABILITY_LONG=1`.

use crate::common;
use crate::reliability_support;

use common::e2e::{is_mounted, wait_until, Env};
use galleryfs::emulator::faults::{FaultKind, FaultRule};
use galleryfs::emulator::media::Content;
use galleryfs::remote::QuickXorHash;
use rand::{Rng, SeedableRng};
use reliability_support::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------------------------
// The matrix

#[derive(Clone, Copy, Debug)]
enum Scenario {
    /// `cp` of a new small photo (a simple PUT).
    NewSmall,
    /// `cp` of a new 12 MiB video (an upload session of two 10 MiB fragments).
    NewBig,
    /// An edit of a seeded photo (its id must be kept, no conflict copy of our own upload).
    EditSmall,
    /// `rm` of a seeded photo.
    Delete,
    /// `mv` of a seeded photo into another folder under a new name.
    Rename,
    /// `mkdir` and a file copied into the new folder.
    Mkdir,
    /// Remote changes (adds, a rename, a delete) applied by an incremental delta round.
    RemoteDelta,
    /// `cp` of a new small photo renamed while its PUT is on the way (slowed by the emulator).
    NewSmallRenamedDuringUpload,
    /// The first listing of a gallery of two folders (listed folder by folder after a `token=latest` link; one
    /// folder received, nothing applied, no delta link saved yet).
    FirstListing,
}

struct KillPoint {
    point: &'static str,
    scenario: Scenario,
    what: &'static str,
}

const MATRIX: &[KillPoint] = &[
    KillPoint {
        point: "replay.upload_start",
        scenario: Scenario::NewSmall,
        what: "before the upload's first request",
    },
    KillPoint {
        point: "upload.simple_sent",
        scenario: Scenario::NewSmall,
        what: "a simple PUT answered, the answer not journalled",
    },
    KillPoint {
        point: "upload.fragment_sent:1",
        scenario: Scenario::NewBig,
        what: "after fragment 1 of 2 of an upload session",
    },
    KillPoint {
        point: "replay.upload_done",
        scenario: Scenario::NewBig,
        what: "an upload session complete, its item not journalled",
    },
    KillPoint {
        point: "replay.upload_done",
        scenario: Scenario::EditSmall,
        what: "an edit uploaded, not journalled",
    },
    KillPoint {
        point: "upload.simple_sent",
        scenario: Scenario::EditSmall,
        what: "an edit's PUT answered, not journalled",
    },
    KillPoint {
        point: "replay.delete_sent",
        scenario: Scenario::Delete,
        what: "a delete sent, not journalled",
    },
    KillPoint {
        point: "replay.move_sent",
        scenario: Scenario::Rename,
        what: "a move sent, not journalled",
    },
    KillPoint {
        point: "replay.mkdir_sent",
        scenario: Scenario::Mkdir,
        what: "a folder created, not journalled",
    },
    KillPoint {
        point: "delta.row_applied:2",
        scenario: Scenario::RemoteDelta,
        what: "during delta apply, after 2 rows, before the delta link is saved",
    },
    KillPoint {
        point: "poller.page_applied",
        scenario: Scenario::FirstListing,
        what: "first listing: one folder of two received, no delta link saved",
    },
    KillPoint {
        point: "delta.row_applied:230",
        scenario: Scenario::FirstListing,
        what: "first listing: its one transaction half applied, no delta link saved",
    },
    KillPoint {
        point: "upload.simple_sent",
        scenario: Scenario::NewSmallRenamedDuringUpload,
        what: "a first PUT answered, the file renamed meanwhile, nothing journalled",
    },
];

const OPTIONS: &str = "poll_interval=1,write_back=0,thumbnails=off";

fn run_kill_point(k: &KillPoint) {
    eprintln!("kill point {} ({:?}): {}", k.point, k.scenario, k.what);
    // Delta pages hold 200 items: a gallery of 250 lists in two.
    let env = Env::start(if matches!(k.scenario, Scenario::FirstListing) {
        250
    } else {
        3
    });
    env.login();
    let m = env.mnt.display().to_string();
    let src = tempfile::tempdir().unwrap();
    let before = remote_tree(&env);
    let (seeded, seeded_id) = a_seeded_file(&env);
    let small = bytes(70_000, 7);
    let big = bytes(12 << 20, 9);
    let edited = bytes(90_000, 11);
    std::fs::write(src.path().join("new.jpg"), &small).unwrap();
    std::fs::write(src.path().join("big.mp4"), &big).unwrap();
    std::fs::write(src.path().join("edited.jpg"), &edited).unwrap();
    let sp = src.path().display().to_string();
    let renamed_remotely = match seeded.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/renamed remotely.jpg"),
        None => "renamed remotely.jpg".to_string(),
    };

    let pid = match k.scenario {
        Scenario::RemoteDelta => {
            // A first mount lists the gallery and saves the delta link; the remote changes come while unmounted,
            // the armed daemon applies them in its catch-up round.
            mount_clean(&env, OPTIONS);
            unmount(&env);
            for i in 0..5 {
                env.emu()
                    .state
                    .add_file(
                        &format!("{}/Remote/r{i}.jpg", env.gallery_root()),
                        Content::Bytes(bytes(1000 + i, i as u32).into()),
                    )
                    .unwrap();
            }
            env.emu().state.rename_item(&seeded_id, "renamed remotely.jpg").unwrap();
            assert!(remote_tree(&env).contains_key(&renamed_remotely));
            let (_, other) = remote_tree(&env)
                .into_iter()
                .find(|(k, v)| v.1 == "file" && v.0 != seeded_id && !k.starts_with("Remote/"))
                .unwrap();
            env.emu().state.delete_item(&other.0).unwrap();
            mount_armed(&env, OPTIONS, k.point)
        }
        Scenario::FirstListing => {
            let pid = mount_armed(&env, OPTIONS, k.point);
            assert!(
                pid.is_none(),
                "the mount reported ready although its first listing crashed"
            );
            pid
        }
        _ => {
            let pid = mount_armed(&env, OPTIONS, k.point);
            assert!(pid.is_some(), "the armed mount came up");
            // The folder's creation is slowed so the copy into it returns before the daemon dies.
            let slow = match k.scenario {
                Scenario::Mkdir => Some("POST"),
                Scenario::NewSmallRenamedDuringUpload => Some("PUT"),
                _ => None,
            }
            .map(|method| {
                env.emu()
                    .state
                    .faults
                    .add_rule(FaultRule::new(FaultKind::Latency { ms: 1500 }).method(method))
            });
            let cmd = match k.scenario {
                Scenario::NewSmall => format!("cp '{sp}/new.jpg' '{m}/new.jpg'"),
                Scenario::NewBig => format!("cp '{sp}/big.mp4' '{m}/big.mp4'"),
                Scenario::EditSmall => format!("cp '{sp}/edited.jpg' '{m}/{seeded}'"),
                Scenario::Delete => format!("rm '{m}/{seeded}'"),
                Scenario::Rename => format!("mkdir '{m}/Moved' && mv '{m}/{seeded}' '{m}/Moved/renamed.jpg'"),
                Scenario::Mkdir => format!("mkdir '{m}/Album' && cp '{sp}/new.jpg' '{m}/Album/in album.jpg'"),
                Scenario::NewSmallRenamedDuringUpload => {
                    format!("cp '{sp}/new.jpg' '{m}/new.jpg' && sleep 0.5 && mv '{m}/new.jpg' '{m}/renamed.jpg'")
                }
                Scenario::RemoteDelta | Scenario::FirstListing => unreachable!(),
            };
            common::sh_ok(&cmd);
            wait_crashed(&env, pid, k.point);
            if let Some(rule) = slow {
                env.emu().state.faults.remove_rule(rule);
            }
            pid
        }
    };
    wait_crashed(&env, pid, k.point);

    // The next mount finds the stale mount, recovers it, and sends what was journalled.
    let stderr = mount_clean(&env, OPTIONS);
    if pid.is_some() {
        assert!(
            stderr.contains("stale mount"),
            "the restart did not report the stale mount: {stderr}"
        );
    }
    wait_drained(&env);
    if std::env::var_os("GALLERYFS_KEEP_LOG").is_some() {
        let _ = std::fs::write(std::env::temp_dir().join("galleryfs-killpoint.log"), log_text(&env));
    }

    let after = || remote_tree(&env);
    match k.scenario {
        Scenario::NewSmall => {
            assert!(
                wait_until(Duration::from_secs(30), || remote_hash(&env, "new.jpg")
                    == Some(QuickXorHash::of(&small))),
                "new.jpg on OneDrive with its content"
            );
            assert_eq!(after().len(), before.len() + 1, "exactly one item added: {:?}", after());
        }
        Scenario::NewBig => {
            assert!(
                wait_until(Duration::from_secs(60), || remote_hash(&env, "big.mp4")
                    == Some(QuickXorHash::of(&big))),
                "big.mp4 on OneDrive with its content: {:?}",
                after().get("big.mp4")
            );
            assert_eq!(after().len(), before.len() + 1, "exactly one item added: {:?}", after());
        }
        Scenario::EditSmall => {
            assert!(
                wait_until(Duration::from_secs(30), || remote_hash(&env, &seeded)
                    == Some(QuickXorHash::of(&edited))),
                "the edit reached OneDrive"
            );
            assert_eq!(
                remote_id(&env, &seeded).as_deref(),
                Some(seeded_id.as_str()),
                "the id is kept"
            );
            assert_eq!(after().len(), before.len(), "nothing added: {:?}", after());
        }
        Scenario::Delete => {
            assert!(remote_id(&env, &seeded).is_none());
            let bin = env.emu().state.recycle_bin_dump();
            assert_eq!(bin.len(), 1, "exactly the deleted photo is in the recycle bin: {bin:?}");
            assert_eq!(bin[0].id, seeded_id);
            assert_eq!(after().len(), before.len() - 1);
        }
        Scenario::Rename => {
            assert!(
                wait_until(Duration::from_secs(30), || remote_id(&env, "Moved/renamed.jpg")
                    == Some(seeded_id.clone())),
                "moved with its id: {:?}",
                after()
            );
            assert!(remote_id(&env, &seeded).is_none());
            assert_eq!(after().len(), before.len() + 1, "one folder added: {:?}", after());
            assert!(env.emu().state.recycle_bin_dump().is_empty());
        }
        Scenario::NewSmallRenamedDuringUpload => {
            assert!(
                wait_until(Duration::from_secs(30), || remote_hash(&env, "renamed.jpg")
                    == Some(QuickXorHash::of(&small))),
                "renamed.jpg on OneDrive with its content: {:?}",
                after()
            );
            assert!(
                remote_id(&env, "new.jpg").is_none(),
                "no stray at the old name: {:?}",
                after()
            );
            assert_eq!(after().len(), before.len() + 1, "exactly one item added: {:?}", after());
        }
        Scenario::Mkdir => {
            assert!(
                wait_until(Duration::from_secs(30), || remote_hash(&env, "Album/in album.jpg")
                    == Some(QuickXorHash::of(&small))),
                "the file in the new folder: {:?}",
                after()
            );
            let albums: Vec<String> = after().into_keys().filter(|k| k.starts_with("Album")).collect();
            assert_eq!(albums, vec!["Album", "Album/in album.jpg"], "one folder, one file");
        }
        Scenario::RemoteDelta => {
            let listed = wait_until(Duration::from_secs(30), || {
                std::fs::read_dir(format!("{m}/Remote")).is_ok_and(|d| d.count() == 5)
                    && Path::new(&format!("{m}/{}", renamed_remotely)).exists()
            });
            assert!(
                listed,
                "remote changes listed after the restart: {:?}",
                mount_tree(&env.mnt)
            );
        }
        Scenario::FirstListing => {
            // Ids, kinds and sizes (the emulator hashes its large synthetic files in the background, so a hash may
            // appear between the two snapshots).
            let shape = |t: &BTreeMap<String, (String, String, u64, Option<String>)>| -> BTreeMap<String, (String, String, u64)> {
                t.iter().map(|(k, v)| (k.clone(), (v.0.clone(), v.1.clone(), v.2))).collect()
            };
            assert_eq!(shape(&after()), shape(&before), "a listing changes nothing on OneDrive")
        }
    }
    assert!(
        conflict_copies(&env).is_empty(),
        "no conflict copy: {:?}",
        conflict_copies(&env)
    );
    final_checks(&env, OPTIONS);
}

macro_rules! kill_point_tests {
    ($($name:ident => $index:expr,)*) => {$(
        #[test]
        fn $name() {
            require_fuse!();
            run_kill_point(&MATRIX[$index]);
        }
    )*};
}

kill_point_tests! {
    crash_before_the_first_upload_request => 0,
    crash_after_a_simple_put_before_its_journal => 1,
    crash_mid_upload_session_after_fragment_1 => 2,
    crash_after_an_upload_session_completed_before_its_journal => 3,
    crash_after_an_edit_uploaded_before_its_journal => 4,
    crash_after_an_edit_put_answered_before_its_journal => 5,
    crash_mid_delete => 6,
    crash_mid_rename_and_move => 7,
    crash_mid_mkdir => 8,
    crash_during_delta_apply_before_the_link_is_saved => 9,
    crash_during_a_first_listing_between_pages => 10,
    crash_during_a_first_listing_mid_round => 11,
    crash_after_a_first_put_of_a_file_renamed_meanwhile => 12,
}

#[test]
fn the_matrix_names_real_crash_points() {
    // Every point in the table is one the code defines (a typo would make a test wait for nothing).
    let src: String = [
        "src/sync/outbox_replay.rs",
        "src/remote/upload.rs",
        "src/sync/delta_apply.rs",
        "src/sync/engine.rs",
    ]
    .iter()
    .map(|p| std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(p)).unwrap())
    .collect();
    for k in MATRIX {
        let name = k.point.split(':').next().unwrap();
        assert!(
            src.contains(&format!("crash_point(\"{name}\")")),
            "{name} is not a crash point"
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// A new file's upload session completed on OneDrive, its item not journalled, the file renamed or moved meanwhile

/// Where the file is by the time its upload session completes.
#[derive(Clone, Copy, Debug)]
enum AfterSession {
    /// Still where the session was created for.
    Kept,
    /// Renamed in its folder.
    Renamed,
    /// Moved into another folder under a new name.
    Moved,
}

/// The restart after a crash around a first upload's session: it reports the stale mount, and then OneDrive holds
/// exactly one item with `data`, at `at`, nothing at `gone`, one item more than `before`; the mount lists the
/// file once, at `at`, and no conflict copy was made.
fn restart_expecting_one_item(env: &Env, before: usize, data: &[u8], at: &str, gone: &str) {
    let hash = QuickXorHash::of(data);
    let stderr = mount_clean(env, OPTIONS);
    assert!(
        stderr.contains("stale mount"),
        "the restart did not report the stale mount: {stderr}"
    );
    wait_drained(env);
    let ours = || -> Vec<String> {
        remote_tree(env)
            .into_iter()
            .filter(|(_, v)| v.3.as_deref() == Some(hash.as_str()))
            .map(|(k, _)| k)
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(30), || ours() == vec![at.to_string()]),
        "exactly one item with the file's bytes, at {at}: {:?}\nOneDrive: {:?}\nlog tail:\n{}",
        ours(),
        remote_tree(env),
        tail(&log_text(env), 40)
    );
    assert!(
        remote_id(env, gone).is_none(),
        "nothing left at {gone}: {:?}",
        remote_tree(env)
    );
    assert_eq!(
        remote_tree(env).len(),
        before + 1,
        "exactly one item added: {:?}",
        remote_tree(env)
    );
    let listed = wait_until(Duration::from_secs(30), || {
        let tree = mount_tree(&env.mnt);
        tree.get(at) == Some(&Some(data.len() as u64)) && !tree.contains_key(gone)
    });
    assert!(
        listed,
        "the mount shows the file once, at {at}: {:?}",
        mount_tree(&env.mnt)
    );
    assert!(
        conflict_copies(env).is_empty(),
        "no conflict copy: {:?}",
        conflict_copies(env)
    );
}

/// A new 4.5 MB file (an upload session of one fragment) is copied in; the fragment is slowed by the emulator so
/// that the file is renamed or moved while it is on the way (after the session was created for the old place);
/// the daemon dies once the session has completed on OneDrive, before the store records the item. After the
/// restart, the item the session made is the file's: adopted (and moved to the file's place), never uploaded a
/// second time, never lost.
/// `cp` of `file` into the mount directory `m` while every upload fragment takes 2 s at the emulator; returns once
/// the file's upload session exists (its first fragment on the way), with the id of the latency rule.
fn copy_in_with_slow_fragments(env: &Env, file: &Path, m: &str) -> u64 {
    let slow = env.emu().state.faults.add_rule(
        FaultRule::new(FaultKind::Latency { ms: 2000 })
            .method("PUT")
            .path_contains("/upload/"),
    );
    let log_from = env.emu().state.log.next_seq();
    common::sh_ok(&format!("cp '{}' '{m}/'", file.display()));
    assert!(
        wait_until(Duration::from_secs(30), || env
            .emu()
            .state
            .log
            .entries_since(log_from)
            .iter()
            .any(|r| r.method == "POST"
                && r.path.contains("createUploadSession")
                && r.status < 300)),
        "an upload session was created; log tail:\n{}",
        tail(&log_text(env), 30)
    );
    slow
}

fn run_session_completed_then_moved(after: AfterSession) {
    eprintln!("upload session completed before its journal, file {after:?}");
    let env = Env::start(3);
    env.login();
    let m = env.mnt.display().to_string();
    let src = tempfile::tempdir().unwrap();
    let data = bytes(4_500_000, 13);
    let hash = QuickXorHash::of(&data);
    std::fs::write(src.path().join("big.jpg"), &data).unwrap();

    let pid = mount_armed(&env, OPTIONS, "replay.upload_done");
    assert!(pid.is_some(), "the armed mount came up");
    let (want, gone): (&str, &str) = match after {
        AfterSession::Kept => ("big.jpg", "renamed.jpg"),
        AfterSession::Renamed => ("renamed.jpg", "big.jpg"),
        AfterSession::Moved => {
            std::fs::create_dir(env.mnt.join("Moved")).unwrap();
            // The folder exists on OneDrive before the file's upload starts.
            assert!(
                wait_until(Duration::from_secs(30), || remote_id(&env, "Moved").is_some()),
                "the folder reached OneDrive"
            );
            ("Moved/renamed.jpg", "big.jpg")
        }
    };
    let before = remote_tree(&env);
    // The session exists (created for `big.jpg`), its fragment is on the way.
    let slow = copy_in_with_slow_fragments(&env, &src.path().join("big.jpg"), &m);
    match after {
        AfterSession::Kept => {}
        AfterSession::Renamed | AfterSession::Moved => {
            std::fs::rename(env.mnt.join("big.jpg"), env.mnt.join(want)).unwrap();
        }
    }
    wait_crashed(&env, pid, "replay.upload_done");
    env.emu().state.faults.remove_rule(slow);
    assert_eq!(
        remote_hash(&env, "big.jpg").as_deref(),
        Some(hash.as_str()),
        "the session completed at the place it was created for before the crash: {:?}",
        remote_tree(&env)
    );

    restart_expecting_one_item(&env, before.len(), &data, want, gone);
    assert!(
        env.emu().state.recycle_bin_dump().is_empty(),
        "nothing uploaded twice and taken back: {:?}",
        env.emu().state.recycle_bin_dump()
    );
    assert_eq!(
        std::fs::read(env.mnt.join(want)).unwrap(),
        data,
        "the mount reads its bytes"
    );
    final_checks(&env, OPTIONS);
}

#[test]
fn crash_after_an_upload_session_completed_for_a_file_renamed_meanwhile() {
    require_fuse!();
    run_session_completed_then_moved(AfterSession::Renamed);
}

#[test]
fn crash_after_an_upload_session_completed_for_a_file_moved_meanwhile() {
    require_fuse!();
    run_session_completed_then_moved(AfterSession::Moved);
}

#[test]
fn crash_after_a_one_fragment_upload_session_completed_before_its_journal() {
    require_fuse!();
    run_session_completed_then_moved(AfterSession::Kept);
}

/// A new 12 MiB file's upload session (two fragments) is created for its first name; the file is renamed (or
/// moved into another folder: `to`) while fragment 1 is on the way and the daemon dies right after it. The next
/// daemon goes on with the file at its new place: it must not resume the session made for the old one (which
/// would complete there, behind the rename), and, when it dies too once its upload completed (`crash_again`),
/// the daemon after it adopts that item instead of uploading the file a second time.
fn run_session_of_a_renamed_file_after_a_crash(to: &str, crash_again: bool) {
    eprintln!("upload session interrupted, file renamed to {to}; crash again after completion: {crash_again}");
    let env = Env::start(3);
    env.login();
    let m = env.mnt.display().to_string();
    let src = tempfile::tempdir().unwrap();
    let data = bytes(12 << 20, 17);
    let hash = QuickXorHash::of(&data);
    std::fs::write(src.path().join("big.mp4"), &data).unwrap();

    let pid = mount_armed(&env, OPTIONS, "upload.fragment_sent:1");
    assert!(pid.is_some(), "the armed mount came up");
    if let Some((dir, _)) = to.rsplit_once('/') {
        std::fs::create_dir(env.mnt.join(dir)).unwrap();
        assert!(
            wait_until(Duration::from_secs(30), || remote_id(&env, dir).is_some()),
            "the folder reached OneDrive"
        );
    }
    let before = remote_tree(&env);
    let slow = copy_in_with_slow_fragments(&env, &src.path().join("big.mp4"), &m);
    std::fs::rename(env.mnt.join("big.mp4"), env.mnt.join(to)).unwrap();
    wait_crashed(&env, pid, "upload.fragment_sent:1");
    env.emu().state.faults.remove_rule(slow);
    assert!(remote_id(&env, "big.mp4").is_none(), "the session is not complete yet");

    if crash_again {
        let pid = mount_armed(&env, OPTIONS, "replay.upload_done");
        assert!(pid.is_some(), "the second armed mount came up");
        wait_crashed(&env, pid, "replay.upload_done");
        assert_eq!(
            remote_tree(&env)
                .values()
                .filter(|v| v.3.as_deref() == Some(hash.as_str()))
                .count(),
            1,
            "the second daemon's upload completed: {:?}",
            remote_tree(&env)
        );
    }
    restart_expecting_one_item(&env, before.len(), &data, to, "big.mp4");
    final_checks(&env, OPTIONS);
}

#[test]
fn a_session_made_for_the_old_name_is_not_resumed_after_a_crash() {
    require_fuse!();
    run_session_of_a_renamed_file_after_a_crash("renamed.mp4", false);
}

#[test]
fn crash_after_the_upload_of_a_file_renamed_during_an_interrupted_session() {
    require_fuse!();
    run_session_of_a_renamed_file_after_a_crash("renamed.mp4", true);
}

#[test]
fn crash_after_the_upload_of_a_file_moved_during_an_interrupted_session() {
    require_fuse!();
    run_session_of_a_renamed_file_after_a_crash("Moved/renamed.mp4", true);
}

// ---------------------------------------------------------------------------------------------------------------
// A stale mount

fn mountinfo_count(path: &Path) -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == path.to_str())
        .count()
}

#[test]
fn a_stale_mount_left_by_kill_9_is_detected_and_recovered() {
    require_fuse!();
    let env = Env::start(3);
    env.login();
    mount_clean(&env, OPTIONS);
    let pid = daemon_pid(&env).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(wait_until(Duration::from_secs(10), || !alive(pid)));
    // Left as it is: still mounted, and every access says the daemon is gone.
    assert!(is_mounted(&env.mnt), "the dead daemon's mount is left behind");
    let err = std::fs::read_dir(&env.mnt).map(|_| ()).unwrap_err();
    assert!(
        matches!(err.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)),
        "the dead mount answers ENOTCONN (or ECONNABORTED): {err}"
    );

    let stderr = mount_clean(&env, OPTIONS);
    let said: Vec<&str> = stderr.lines().filter(|l| l.contains("stale mount")).collect();
    assert_eq!(said.len(), 1, "one line about the stale mount: {stderr}");
    assert!(said[0].contains(&env.mnt.display().to_string()), "{}", said[0]);
    assert_eq!(
        mountinfo_count(&env.mnt),
        1,
        "the stale mount was detached, one mount is there"
    );
    assert_mount_matches_remote(&env);
    unmount(&env);
    assert_eq!(mountinfo_count(&env.mnt), 0);
}

// ---------------------------------------------------------------------------------------------------------------
// kill -9 at a random moment of a burst of mixed edits

/// What the burst's folder should hold: relative path below `Burst/` → content (None for a folder).
type Model = BTreeMap<String, Option<Vec<u8>>>;

/// How an edit that returned success changes the model.
type ModelUpdate = Box<dyn FnOnce(&mut Model)>;

/// Runs random edits in `Burst/` until one fails (the daemon is gone) or `max_ops` are done. Returns the model of
/// what returned success, and the paths the failed edit touched (their outcome is unknown).
fn burst(
    root: &Path,
    rng: &mut rand::rngs::StdRng,
    max_ops: usize,
    killed: &std::sync::atomic::AtomicBool,
    journal: &mut Vec<String>,
    log: &dyn Fn() -> String,
) -> (Model, BTreeSet<String>, usize) {
    let mut model = Model::new();
    let mut next = 0;
    for op in 0..max_ops {
        let files: Vec<String> = model
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        let dirs: Vec<String> = model
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        let in_some_dir = |rng: &mut rand::rngs::StdRng, name: String| -> String {
            if !dirs.is_empty() && rng.random_bool(0.4) {
                format!("{}/{name}", dirs[rng.random_range(0..dirs.len())])
            } else {
                name
            }
        };
        next += 1;
        let choice = if files.is_empty() { 0 } else { rng.random_range(0..10) };
        let (touched, result, apply): (Vec<String>, std::io::Result<()>, ModelUpdate) = match choice {
            // A new photo (sometimes above the simple-upload limit: an upload session).
            0..=3 => {
                let rel = in_some_dir(rng, format!("p{next}.jpg"));
                let size = if rng.random_bool(0.1) {
                    4_500_000
                } else {
                    rng.random_range(1..150_000)
                };
                let data = bytes(size, rng.random());
                let r = write_file(&root.join(&rel), &data);
                (vec![rel.clone()], r, Box::new(move |m| drop(m.insert(rel, Some(data)))))
            }
            // An edit of an existing one.
            4 | 5 => {
                let rel = files[rng.random_range(0..files.len())].clone();
                let data = bytes(rng.random_range(1..120_000), rng.random());
                let r = write_file(&root.join(&rel), &data);
                (vec![rel.clone()], r, Box::new(move |m| drop(m.insert(rel, Some(data)))))
            }
            // A rename (maybe into a folder).
            6 | 7 => {
                let from = files[rng.random_range(0..files.len())].clone();
                let to = in_some_dir(rng, format!("r{next}.jpg"));
                let r = std::fs::rename(root.join(&from), root.join(&to));
                (
                    vec![from.clone(), to.clone()],
                    r,
                    Box::new(move |m| {
                        let v = m.remove(&from).unwrap();
                        m.insert(to, v);
                    }),
                )
            }
            // A delete.
            8 => {
                let rel = files[rng.random_range(0..files.len())].clone();
                let r = std::fs::remove_file(root.join(&rel));
                (vec![rel.clone()], r, Box::new(move |m| drop(m.remove(&rel))))
            }
            // A folder.
            _ => {
                let rel = format!("d{next}");
                let r = std::fs::create_dir(root.join(&rel));
                (vec![rel.clone()], r, Box::new(move |m| drop(m.insert(rel, None))))
            }
        };
        let kind = [
            "new", "new", "new", "new", "edit", "edit", "rename", "rename", "delete", "mkdir",
        ][choice];
        journal.push(format!("{op}: {kind} {touched:?} -> {result:?}"));
        match result {
            Ok(()) => apply(&mut model),
            Err(e) => {
                if !killed.load(std::sync::atomic::Ordering::SeqCst) {
                    let keep = std::env::temp_dir().join("galleryfs-burst-alive.log");
                    let _ = std::fs::write(&keep, format!("{}\n--- edits ---\n{}", log(), journal.join("\n")));
                    panic!(
                        "edit {op} ({kind} {touched:?}) failed while the daemon was alive: {e}\n{}\nlog kept in {}",
                        journal.join("\n"),
                        keep.display()
                    );
                }
                return (model, touched.into_iter().collect(), op);
            }
        }
    }
    (model, BTreeSet::new(), max_ops)
}

fn run_random_kill(seed: u64) {
    eprintln!("random kill, seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let env = Env::start(2);
    env.login();
    mount_clean(&env, OPTIONS);
    let root = env.mnt.join("Burst");
    std::fs::create_dir(&root).unwrap();
    let pid = daemon_pid(&env).unwrap();
    let delay = Duration::from_millis(rng.random_range(300..4000));
    let killed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let killed = killed.clone();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            killed.store(true, std::sync::atomic::Ordering::SeqCst);
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        })
    };
    let mut journal = Vec::new();
    let (model, unknown, done) = burst(&root, &mut rng, 400, &killed, &mut journal, &|| log_text(&env));
    killer.join().unwrap();
    eprintln!("seed {seed}: killed after {delay:?}; {done} edits returned success; unknown: {unknown:?}");
    assert!(wait_until(Duration::from_secs(10), || !alive(pid)));

    mount_clean(&env, OPTIONS);
    wait_drained(&env);
    let burst_remote = || -> BTreeMap<String, Option<String>> {
        remote_tree(&env)
            .into_iter()
            .filter_map(|(k, v)| {
                let rel = k.strip_prefix("Burst/")?.to_string();
                Some((
                    rel,
                    (v.1 == "file")
                        .then_some(v.3)
                        .flatten()
                        .or((v.1 == "folder").then(String::new)),
                ))
            })
            .filter(|(k, _)| !unknown.contains(k))
            .collect()
    };
    let want: BTreeMap<String, Option<String>> = model
        .iter()
        .filter(|(k, _)| !unknown.contains(*k))
        .map(|(k, v)| {
            (
                k.clone(),
                Some(v.as_ref().map(|d| QuickXorHash::of(d)).unwrap_or_default()),
            )
        })
        .collect();
    // Large uploads are hashed by the emulator a moment later: wait for the hashes.
    let same = wait_until(Duration::from_secs(60), || burst_remote() == want);
    if !same {
        let keep = std::env::temp_dir().join(format!("galleryfs-burst-{seed}.log"));
        let _ = std::fs::write(
            &keep,
            format!("{}\n--- edits ---\n{}", log_text(&env), journal.join("\n")),
        );
        eprintln!("the daemon's log is kept in {}", keep.display());
    }
    assert!(
        same,
        "seed {seed}: OneDrive does not hold exactly what returned success\nwant:     {want:?}\nOneDrive: {:?}\nedits:\n{}\nlog tail:\n{}",
        burst_remote(),
        journal.join("\n"),
        tail(&log_text(&env), 40)
    );
    assert!(
        conflict_copies(&env).is_empty(),
        "seed {seed}: conflict copies {:?}",
        conflict_copies(&env)
    );
    final_checks(&env, OPTIONS);
}

#[test]
fn kill_9_at_random_moments_of_a_burst_of_edits() {
    require_fuse!();
    let runs: u64 = if std::env::var_os("GALLERYFS_RELIABILITY_LONG").is_some() {
        12
    } else {
        3
    };
    if let Some(seed) = std::env::var("GALLERYFS_BURST_SEED").ok().and_then(|s| s.parse().ok()) {
        return run_random_kill(seed);
    }
    for seed in 0..runs {
        run_random_kill(0x5eed_0000 + seed);
    }
}
