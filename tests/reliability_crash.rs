//! Crash matrix: the real `galleryfs` daemon, mounted over the in-process emulator, is made to die at named
//! points (`GALLERYFS_CRASH_AT`, see `src/crash_points.rs`) or by `kill -9` at a random moment of a burst of edits.
//! Each time the operation had already returned success through the mount; the next `galleryfs mount` on the same
//! cache (which must detect and recover the stale mount the crash left) sends it, and then:
//! - OneDrive holds it exactly once: no duplicate item, no conflict copy of our own upload, the right content
//!   hash, ids kept where an edit or a move keeps them, deletes in the recycle bin once;
//! - the SQLite store is consistent (see [`check_store`]) and mirrors OneDrive;
//! - the mount lists what OneDrive holds.
//!
//! Long variants (more random bursts) run with `GALLERYFS_RELIABILITY_LONG=1`.

mod common;

use common::e2e::{is_mounted, wait_until, Env};
use galleryfs::emulator::faults::{FaultKind, FaultRule};
use galleryfs::emulator::media::Content;
use galleryfs::remote::QuickXorHash;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const CRASH_ENV: &str = "GALLERYFS_CRASH_AT";

// ---------------------------------------------------------------------------------------------------------------
// Driving the daemon

/// `galleryfs` with the environment's directories and, when given, a crash point armed in the daemon.
fn galleryfs_crashing(env: &Env, args: &[&str], crash_at: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_galleryfs"));
    cmd.args(args)
        .env("GALLERYFS_CONFIG_DIR", env.dir.path().join("config"))
        .env("GALLERYFS_CACHE_DIR", env.cache_dir())
        .env("XDG_CACHE_HOME", env.xdg_cache())
        .env_remove("NOTIFY_SOCKET")
        .env_remove(CRASH_ENV);
    if let Some(point) = crash_at {
        cmd.env(CRASH_ENV, point);
    }
    cmd.output().expect("run galleryfs")
}

fn log_text(env: &Env) -> String {
    std::fs::read_to_string(env.cache_dir().join("default/galleryfs.log")).unwrap_or_default()
}

fn daemon_pid(env: &Env) -> Option<i32> {
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.cache_dir().join("default/mount.json")).ok()?).ok()?;
    rec["pid"].as_i64().map(|p| p as i32)
}

fn alive(pid: i32) -> bool {
    // A zombie (the test is not its parent, so it is reaped by init) counts as dead: check /proc state too.
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
        .unwrap_or(false)
}

/// Mounts with `point` armed; the daemon may die before it reports ready (a crash in the first listing).
fn mount_armed(env: &Env, options: &str, point: &str) -> Option<i32> {
    let m = env.mnt.display().to_string();
    let out = galleryfs_crashing(env, &["mount", &m, "-o", options], Some(point));
    out.status.success().then(|| daemon_pid(env)).flatten()
}

/// Mounts (no crash point) and returns the `mount` command's stderr.
fn mount_clean(env: &Env, options: &str) -> String {
    let m = env.mnt.display().to_string();
    let out = galleryfs_crashing(env, &["mount", &m, "-o", options], None);
    assert!(
        out.status.success(),
        "mount after the crash failed ({}):\nstderr: {}\nlog tail: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        tail(&log_text(env), 30)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Waits until the daemon that recorded `pid` has died at its crash point (and says so in the log).
fn wait_crashed(env: &Env, pid: Option<i32>, point: &str) {
    let name = point.split(':').next().unwrap();
    let crashed = wait_until(Duration::from_secs(60), || {
        pid.is_none_or(|p| !alive(p))
            && log_text(env)
                .lines()
                .any(|l| l.contains("crash point reached") && l.contains(name))
    });
    assert!(
        crashed,
        "the daemon did not reach crash point {point}; log tail:\n{}",
        tail(&log_text(env), 30)
    );
}

fn wait_drained(env: &Env) {
    let drained = wait_until(Duration::from_secs(90), || {
        env.status_json()["outbox"]["pending"].as_u64() == Some(0)
    });
    assert!(
        drained,
        "outbox not drained after the restart: {}\nlog tail:\n{}",
        env.status_json(),
        tail(&log_text(env), 40)
    );
}

fn unmount(env: &Env) {
    let m = env.mnt.display().to_string();
    let out = env.galleryfs(&["unmount", &m]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(wait_until(Duration::from_secs(20), || !is_mounted(&env.mnt)));
    // The daemon leaves after the session ends: let it close the store.
    if let Some(pid) = daemon_pid(env) {
        wait_until(Duration::from_secs(20), || !alive(pid));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// OneDrive's side

/// The emulator's live items below the gallery: relative path → (id, kind, size, hash).
fn remote_tree(env: &Env) -> BTreeMap<String, (String, String, u64, Option<String>)> {
    let prefix = format!("{}/", env.gallery_root());
    env.emu()
        .state
        .state_dump()
        .into_iter()
        .filter_map(|e| {
            let rel = e.path.strip_prefix(&prefix)?.to_string();
            Some((rel, (e.id, e.kind, e.size, e.quick_xor_hash)))
        })
        .collect()
}

fn remote_hash(env: &Env, rel: &str) -> Option<String> {
    remote_tree(env).get(rel).and_then(|r| r.3.clone())
}

fn remote_id(env: &Env, rel: &str) -> Option<String> {
    remote_tree(env).get(rel).map(|r| r.0.clone())
}

/// Names in the gallery that look like conflict copies (`… (conflict YYYY-MM-DD host).ext`).
fn conflict_copies(env: &Env) -> Vec<String> {
    remote_tree(env).into_keys().filter(|k| k.contains("(conflict ")).collect()
}

/// The first seeded photo: (relative path, id).
fn a_seeded_file(env: &Env) -> (String, String) {
    remote_tree(env)
        .into_iter()
        .find(|(_, v)| v.1 == "file")
        .map(|(k, v)| (k, v.0))
        .expect("a seeded file")
}

// ---------------------------------------------------------------------------------------------------------------
// The mount's side

/// Everything the mount lists, recursively: relative path → Some(size) for files, None for folders.
fn mount_tree(root: &Path) -> BTreeMap<String, Option<u64>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Option<u64>>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display())) {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                out.insert(rel, None);
                walk(root, &p, out);
            } else {
                out.insert(rel, Some(meta.len()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The mount lists exactly what OneDrive holds below the gallery (names, kinds, sizes); waits for a poll.
fn assert_mount_matches_remote(env: &Env) {
    let want = || -> BTreeMap<String, Option<u64>> {
        remote_tree(env)
            .into_iter()
            .map(|(k, v)| (k, (v.1 == "file").then_some(v.2)))
            .collect()
    };
    let same = wait_until(Duration::from_secs(30), || mount_tree(&env.mnt) == want());
    assert!(
        same,
        "the mount does not list what OneDrive holds:\nmount:    {:?}\nOneDrive: {:?}",
        mount_tree(&env.mnt),
        want()
    );
}

// ---------------------------------------------------------------------------------------------------------------
// The store's invariants

/// Opens the unmounted store and checks it: SQLite integrity and foreign keys; every row's parent exists and is a
/// folder; no cycle; no duplicate inode, item id or (parent, name); no placeholder id left once the outbox is
/// empty; cached-content rows only for files. Then, when `remote` is given, that the store mirrors OneDrive:
/// every row's item id is live there at the row's path, and every remote item has a row.
fn check_store(db: &Path, remote: Option<&BTreeMap<String, (String, String, u64, Option<String>)>>) {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok", "SQLite integrity");
    let fk: Vec<String> = conn
        .prepare("PRAGMA foreign_key_check")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(fk.is_empty(), "foreign key violations in {fk:?}");
    struct Row {
        ino: i64,
        item_id: String,
        parent: Option<i64>,
        name: String,
        name_key: String,
        kind: i64,
    }
    let rows: Vec<Row> = conn
        .prepare("SELECT ino, item_id, parent_ino, name, name_key, kind FROM items")
        .unwrap()
        .query_map([], |r| {
            Ok(Row {
                ino: r.get(0)?,
                item_id: r.get(1)?,
                parent: r.get(2)?,
                name: r.get(3)?,
                name_key: r.get(4)?,
                kind: r.get(5)?,
            })
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let by_ino: BTreeMap<i64, &Row> = rows.iter().map(|r| (r.ino, r)).collect();
    assert_eq!(by_ino.len(), rows.len(), "duplicate inode");
    let ids: BTreeSet<&str> = rows.iter().map(|r| r.item_id.as_str()).collect();
    assert_eq!(ids.len(), rows.len(), "duplicate item_id");
    let names: BTreeSet<(Option<i64>, &str)> = rows.iter().map(|r| (r.parent, r.name_key.as_str())).collect();
    assert_eq!(names.len(), rows.len(), "two rows with one (parent, name)");
    let outbox: i64 = conn.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0)).unwrap();
    let mut paths: BTreeMap<String, &Row> = BTreeMap::new();
    for r in &rows {
        if r.ino == 1 {
            assert!(r.parent.is_none(), "the root has a parent");
            continue;
        }
        let mut path = vec![r.name.clone()];
        let mut at = r.parent;
        let mut depth = 0;
        while let Some(p) = at {
            let parent = by_ino
                .get(&p)
                .unwrap_or_else(|| panic!("orphan: row {} ({:?}) has a missing parent {p}", r.ino, r.name));
            assert_eq!(parent.kind, 1, "row {} ({:?}) is inside a file", r.ino, r.name);
            if parent.ino != 1 {
                path.push(parent.name.clone());
            }
            at = parent.parent;
            depth += 1;
            assert!(depth < 100, "a cycle through row {}", r.ino);
        }
        assert!(
            outbox > 0 || !r.item_id.starts_with("local:"),
            "row {} ({:?}) still has a placeholder id with an empty outbox",
            r.ino,
            r.name
        );
        path.reverse();
        paths.insert(path.join("/"), r);
    }
    let bad_content: i64 = conn
        .query_row(
            "SELECT count(*) FROM content c JOIN items i ON i.ino = c.ino WHERE i.kind = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(bad_content, 0, "cached content recorded for a folder");
    if let Some(remote) = remote {
        assert_eq!(outbox, 0, "outbox not empty");
        for (path, row) in &paths {
            let r = remote
                .get(path)
                .unwrap_or_else(|| panic!("the store has {path:?} ({}), OneDrive does not", row.item_id));
            assert_eq!(r.0, row.item_id, "{path}: the store's item id is not OneDrive's");
        }
        for path in remote.keys() {
            assert!(paths.contains_key(path), "OneDrive has {path:?}, the store does not");
        }
    }
}

fn db_path(env: &Env) -> PathBuf {
    env.cache_dir().join("default/meta.db")
}

/// Unmounts, checks the store against OneDrive, mounts again and checks the listing.
fn final_checks(env: &Env, options: &str) {
    // Let a poll bring our own changes back from delta (the store then mirrors OneDrive exactly).
    std::thread::sleep(Duration::from_millis(2500));
    unmount(env);
    check_store(&db_path(env), Some(&remote_tree(env)));
    mount_clean(env, options);
    assert_mount_matches_remote(env);
    unmount(env);
}

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
];

fn bytes(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2654435761) >> 24) as u8)
        .collect()
}

const OPTIONS: &str = "poll_interval=1,write_back=0,thumbnails=off";

fn run_kill_point(k: &KillPoint) {
    eprintln!("kill point {} ({:?}): {}", k.point, k.scenario, k.what);
    let env = Env::start(3);
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
        _ => {
            let pid = mount_armed(&env, OPTIONS, k.point);
            assert!(pid.is_some(), "the armed mount came up");
            // The folder's creation is slowed so the copy into it returns before the daemon dies.
            let slow = matches!(k.scenario, Scenario::Mkdir).then(|| {
                env.emu()
                    .state
                    .faults
                    .add_rule(FaultRule::new(FaultKind::Latency { ms: 1500 }).method("POST"))
            });
            let cmd = match k.scenario {
                Scenario::NewSmall => format!("cp '{sp}/new.jpg' '{m}/new.jpg'"),
                Scenario::NewBig => format!("cp '{sp}/big.mp4' '{m}/big.mp4'"),
                Scenario::EditSmall => format!("cp '{sp}/edited.jpg' '{m}/{seeded}'"),
                Scenario::Delete => format!("rm '{m}/{seeded}'"),
                Scenario::Rename => format!("mkdir '{m}/Moved' && mv '{m}/{seeded}' '{m}/Moved/renamed.jpg'"),
                Scenario::Mkdir => format!("mkdir '{m}/Album' && cp '{sp}/new.jpg' '{m}/Album/in album.jpg'"),
                Scenario::RemoteDelta => unreachable!(),
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
            assert_eq!(remote_id(&env, &seeded).as_deref(), Some(seeded_id.as_str()), "the id is kept");
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
            assert!(listed, "remote changes listed after the restart: {:?}", mount_tree(&env.mnt));
        }
    }
    assert!(conflict_copies(&env).is_empty(), "no conflict copy: {:?}", conflict_copies(&env));
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
}

#[test]
fn the_matrix_names_real_crash_points() {
    // Every point in the table is one the code defines (a typo would make a test wait for nothing).
    let src: String = ["src/sync/outbox_replay.rs", "src/remote/upload.rs", "src/sync/delta_apply.rs", "src/sync/poller.rs"]
        .iter()
        .map(|p| std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(p)).unwrap())
        .collect();
    for k in MATRIX {
        let name = k.point.split(':').next().unwrap();
        assert!(src.contains(&format!("crash_point(\"{name}\")")), "{name} is not a crash point");
    }
}
