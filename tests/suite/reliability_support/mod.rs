//! Shared by the reliability tests: the real `galleryfs` binary driven with a crash point armed or not, the
//! emulator's and the mount's trees, and the store invariant checker.
#![allow(dead_code)]

use crate::common::e2e::{is_mounted, wait_until, Env};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

pub const CRASH_ENV: &str = "GALLERYFS_CRASH_AT";

// ---------------------------------------------------------------------------------------------------------------
// Driving the daemon

/// `galleryfs` with the environment's directories and, when given, a crash point armed in the daemon.
pub fn galleryfs_crashing(env: &Env, args: &[&str], crash_at: Option<&str>) -> Output {
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

pub fn log_text(env: &Env) -> String {
    std::fs::read_to_string(env.cache_dir().join("default/galleryfs.log")).unwrap_or_default()
}

pub fn daemon_pid(env: &Env) -> Option<i32> {
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.cache_dir().join("default/mount.json")).ok()?).ok()?;
    rec["pid"].as_i64().map(|p| p as i32)
}

pub fn alive(pid: i32) -> bool {
    // A zombie (the test is not its parent, so it is reaped by init) counts as dead: check /proc state too.
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
        .unwrap_or(false)
}

/// Mounts with `point` armed; the daemon may die before it reports ready (a crash in the first listing).
pub fn mount_armed(env: &Env, options: &str, point: &str) -> Option<i32> {
    let m = env.mnt.display().to_string();
    let out = galleryfs_crashing(env, &["mount", &m, "-o", options], Some(point));
    out.status.success().then(|| daemon_pid(env)).flatten()
}

/// Mounts (no crash point) and returns the `mount` command's stderr.
pub fn mount_clean(env: &Env, options: &str) -> String {
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

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Waits until the daemon that recorded `pid` has died at its crash point (and says so in the log).
pub fn wait_crashed(env: &Env, pid: Option<i32>, point: &str) {
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

pub fn wait_drained(env: &Env) {
    let start = std::time::Instant::now();
    let drained = wait_until(Duration::from_secs(90), || {
        env.status_json()["outbox"]["pending"].as_u64() == Some(0)
    });
    if start.elapsed() > Duration::from_secs(10) {
        eprintln!(
            "the outbox took {:?} to drain: {}",
            start.elapsed(),
            env.status_json()["outbox"]
        );
    }
    assert!(
        drained,
        "outbox not drained after the restart: {}\nlog tail:\n{}",
        env.status_json(),
        tail(&log_text(env), 40)
    );
}

pub fn unmount(env: &Env) {
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
pub type RemoteTree = BTreeMap<String, (String, String, u64, Option<String>)>;

/// The emulator's live items below the gallery.
pub fn remote_tree(env: &Env) -> RemoteTree {
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

/// The upload sessions (`createUploadSession`) the emulator answered since log position `since`.
pub fn upload_sessions(env: &Env, since: u64) -> usize {
    env.emu()
        .state
        .log
        .entries_since(since)
        .iter()
        .filter(|r| r.method == "POST" && r.path.contains("createUploadSession"))
        .count()
}

pub fn remote_hash(env: &Env, rel: &str) -> Option<String> {
    remote_tree(env).get(rel).and_then(|r| r.3.clone())
}

pub fn remote_id(env: &Env, rel: &str) -> Option<String> {
    remote_tree(env).get(rel).map(|r| r.0.clone())
}

/// Names in the gallery that look like conflict copies (`… (conflict YYYY-MM-DD host).ext`).
pub fn conflict_copies(env: &Env) -> Vec<String> {
    remote_tree(env)
        .into_keys()
        .filter(|k| k.contains("(conflict "))
        .collect()
}

/// The first seeded photo: (relative path, id).
pub fn a_seeded_file(env: &Env) -> (String, String) {
    remote_tree(env)
        .into_iter()
        .find(|(_, v)| v.1 == "file")
        .map(|(k, v)| (k, v.0))
        .expect("a seeded file")
}

// ---------------------------------------------------------------------------------------------------------------
// The mount's side

/// Everything the mount lists below the gallery, recursively: relative path → Some(size) for files, None for
/// folders. The virtual `Timeline` at the root (the same files again, by date) is left out.
pub fn mount_tree(root: &Path) -> BTreeMap<String, Option<u64>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Option<u64>>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display())) {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if rel == "Timeline" {
                continue;
            }
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
pub fn assert_mount_matches_remote(env: &Env) {
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
pub fn check_store(db: &Path, remote: Option<&RemoteTree>) {
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

pub fn db_path(env: &Env) -> PathBuf {
    env.cache_dir().join("default/meta.db")
}

/// Unmounts, checks the store against OneDrive, mounts again and checks the listing.
pub fn final_checks(env: &Env, options: &str) {
    // Let a poll bring our own changes back from delta (the store then mirrors OneDrive exactly).
    std::thread::sleep(Duration::from_millis(2500));
    unmount(env);
    check_store(&db_path(env), Some(&remote_tree(env)));
    mount_clean(env, options);
    assert_mount_matches_remote(env);
    unmount(env);
}

pub fn bytes(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2654435761) >> 24) as u8)
        .collect()
}

/// One edit through the mount, as a user's tool would make it; close errors count (a write is only done once
/// its close succeeded).
pub fn write_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::fd::IntoRawFd;
    let mut f = std::fs::File::create(path)?;
    f.write_all(data)?;
    let fd = f.into_raw_fd();
    nix::unistd::close(fd).map_err(std::io::Error::from)
}
