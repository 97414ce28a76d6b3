//! Edits through a real FUSE mount with real tools (cp, mv, rm, rsync -a, sed -i, the write-then-rename save,
//! truncate, touch -d, mkdir, rmdir), then the outbox replayed to a mock OneDrive and the remote state checked:
//! content hashes, item ids kept, the recycle bin. Also remote edits and deletes showing in the mount, conflict
//! copies, and what OneDrive cannot store.

use crate::common;
use crate::edits_support;

use edits_support::{quick_config, Synced};
use galleryfs::fs::FsCore;
use galleryfs::remote::mock_drive::MockDrive;
use galleryfs::remote::QuickXorHash;
use std::sync::Arc;
use std::time::Duration;

struct Mounted {
    rt: tokio::runtime::Runtime,
    s: Synced,
    mounted: Option<galleryfs::fuse::MountedFs>,
    mnt: tempfile::TempDir,
    m: String,
}

impl Mounted {
    fn new() -> Mounted {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mock = Arc::new(MockDrive::new());
        let s = rt.block_on(Synced::new(mock.clone(), mock, Duration::ZERO, quick_config()));
        let mnt = tempfile::tempdir().unwrap();
        let m = std::fs::canonicalize(mnt.path()).unwrap().display().to_string();
        let config =
            galleryfs::fuse::fuser_config(&galleryfs::mount_options::MountOptions::default(), "galleryfs:edits");
        let core: Arc<dyn FsCore> = s.fs.clone();
        let mounted = galleryfs::fuse::mount(core, rt.handle().clone(), mnt.path(), &config).expect("mount");
        s.fs.set_invalidator(mounted.invalidator());
        Mounted {
            rt,
            s,
            mounted: Some(mounted),
            mnt,
            m,
        }
    }

    /// Replays the outbox until it is empty (or fails the test).
    fn replay(&self) {
        for _ in 0..20 {
            let report = self.rt.block_on(self.s.replayer.replay_once()).unwrap();
            assert_eq!(report.failed, 0, "{report:?}");
            if self.s.store.pending().unwrap().is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("outbox not drained: {:?}", self.s.store.pending().unwrap());
    }

    fn sync(&self) {
        self.rt.block_on(self.s.sync());
    }

    fn remote_hash(&self, path: &str) -> Option<String> {
        self.s.remote(path).and_then(|i| i.quick_xor_hash().map(str::to_string))
    }

    fn sh(&self, cmd: &str) -> String {
        common::sh_ok(&format!("cd '{}' && {cmd}", self.m))
    }

    fn sh_err(&self, cmd: &str) -> String {
        common::sh_err(&format!("cd '{}' && {cmd}", self.m))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(m) = self.mounted.take() {
            let _ = m.unmount();
        }
        let _ = &self.mnt;
    }
}

fn sample_bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn real_tools_edit_the_gallery_and_onedrive_follows() {
    require_fuse!();
    let t = Mounted::new();
    let src = tempfile::tempdir().unwrap();
    let big = sample_bytes(5 << 20, 1); // above the 4 MiB simple-upload limit
    std::fs::write(src.path().join("big.jpg"), &big).unwrap();
    std::fs::write(src.path().join("small.jpg"), b"small photo").unwrap();
    let sp = src.path().display();

    // cp, mkdir, mv, rsync -a
    t.sh(&format!(
        "mkdir Album && cp '{sp}/big.jpg' Album/ && cp '{sp}/small.jpg' ."
    ));
    t.sh(&format!(
        "mkdir -p '{sp}/tree/sub' && echo one > '{sp}/tree/a.txt' && echo two > '{sp}/tree/sub/b.txt'"
    ));
    t.sh(&format!(
        "touch -d '2021-06-01 12:00:00 UTC' '{sp}/tree/a.txt' && rsync -a '{sp}/tree/' Synced/"
    ));
    t.replay();
    assert_eq!(t.remote_hash("Album/big.jpg").unwrap(), QuickXorHash::of(&big));
    assert_eq!(t.s.remote_content("small.jpg").unwrap(), &b"small photo"[..]);
    assert_eq!(t.s.remote_content("Synced/sub/b.txt").unwrap(), &b"two\n"[..]);
    let a = t.s.remote("Synced/a.txt").unwrap();
    assert_eq!(
        a.modified().unwrap().timestamp(),
        1_622_548_800,
        "rsync -a kept the mtime"
    );
    assert!(t.s.remote("Synced/.a.txt.XXXXXX").is_none());
    let small_id = t.s.remote("small.jpg").unwrap().id;

    // mv within the gallery keeps the item; sed -i (write X.tmp, rename over X) keeps the id
    t.sh("mv small.jpg Album/renamed.jpg");
    t.sh("printf 'hello world\\n' > note.txt");
    t.replay();
    let note_id = t.s.remote("note.txt").unwrap().id;
    t.sh("sed -i 's/world/gallery/' note.txt");
    t.sh("printf 'saved' > note.txt.tmp && mv note.txt.tmp Album/renamed.jpg");
    t.replay();
    assert_eq!(
        t.s.remote("Album/renamed.jpg").unwrap().id,
        small_id,
        "mv and the atomic save keep the id"
    );
    assert_eq!(t.s.remote_content("Album/renamed.jpg").unwrap(), &b"saved"[..]);
    assert_eq!(t.s.remote("note.txt").unwrap().id, note_id, "sed -i keeps the id");
    assert_eq!(t.s.remote_content("note.txt").unwrap(), &b"hello gallery\n"[..]);
    assert!(t.s.remote("small.jpg").is_none());

    // truncate and touch -d
    t.sh("truncate -s 5 note.txt && touch -d '2020-01-02 03:04:05 UTC' note.txt");
    assert_eq!(t.sh("stat -c '%s %Y' note.txt").trim(), "5 1577934245");
    t.replay();
    let note = t.s.remote("note.txt").unwrap();
    assert_eq!(t.s.mock.content(&note.id).unwrap(), &b"hello"[..]);
    assert_eq!(note.modified().unwrap().timestamp(), 1_577_934_245);

    // rm goes to the recycle bin; rmdir of an empty folder too; a temp file never reaches OneDrive
    t.sh("rm Album/renamed.jpg && rm -r Synced");
    t.sh("echo scratch > scratch.tmp && rm scratch.tmp");
    t.replay();
    assert!(t.s.mock.get(&small_id).unwrap().deleted.is_some());
    assert!(t.s.remote("Synced").is_none());
    assert!(t.s.remote("scratch.tmp").is_none());
    assert!(t.s.mock.id_by_path("/Pictures/Samsung Gallery/scratch.tmp").is_none());
    let listing = t.sh("ls -a");
    assert!(
        !listing.contains("scratch.tmp") && listing.contains("Album"),
        "{listing}"
    );

    // cp -a works (chmod/chown accepted without effect)
    t.sh(&format!(
        "cp -a '{sp}/small.jpg' kept.jpg && chmod 600 kept.jpg && chown 0:0 kept.jpg"
    ));
    assert_eq!(t.sh("stat -c %a kept.jpg").trim(), "644");
    t.replay();
    assert_eq!(t.s.remote_content("kept.jpg").unwrap(), &b"small photo"[..]);
}

#[test]
fn what_onedrive_cannot_store_is_refused() {
    require_fuse!();
    let t = Mounted::new();
    for name in [
        "'a:b.jpg'",
        "'CON.txt'",
        "'trailing.'",
        "'desktop.ini'",
        "'~$lock.docx'",
    ] {
        let err = t.sh_err(&format!("touch {name}"));
        assert!(err.contains("Invalid argument"), "{name}: {err}");
    }
    let long = "x".repeat(256);
    assert!(t.sh_err(&format!("touch {long}")).contains("File name too long"));
    t.sh("echo x > ok.txt");
    assert!(t.sh_err("ln -s ok.txt link").contains("Operation not permitted"));
    assert!(t.sh_err("ln ok.txt hard").contains("Operation not permitted"));
    assert!(t.sh_err("mkfifo fifo").contains("Operation not permitted"));
    assert!(t
        .sh_err("mkdir full && touch full/x && rmdir full")
        .contains("Directory not empty"));
    assert_eq!(
        t.sh("ls").split_whitespace().collect::<Vec<_>>(),
        vec!["full", "ok.txt"]
    );
}

#[test]
fn remote_changes_show_and_conflicts_keep_both() {
    require_fuse!();
    let t = Mounted::new();
    let id = t.s.mock.add_file(&t.s.gallery_id, "IMG_1.jpg", &b"v1"[..]);
    let gone = t.s.mock.add_file(&t.s.gallery_id, "gone.jpg", &b"bye"[..]);
    t.sync();
    assert_eq!(t.sh("cat IMG_1.jpg"), "v1");
    // A remote edit and a remote delete show in the mount.
    t.s.mock.edit_file(&id, &b"v2 remote"[..]);
    t.s.mock.delete_item(&gone);
    t.sync();
    assert_eq!(t.sh("cat IMG_1.jpg"), "v2 remote");
    assert!(!t.sh("ls").contains("gone.jpg"));
    // Both sides change: OneDrive's version keeps the name, ours is beside it.
    t.sh("printf 'local v3' > IMG_1.jpg");
    assert_eq!(
        t.sh("getfattr --only-values -n user.galleryfs.state IMG_1.jpg"),
        "dirty",
        "a pending edit shows as dirty"
    );
    t.s.mock.edit_file(&id, &b"remote v3"[..]);
    t.sync();
    assert_eq!(
        t.sh("cat IMG_1.jpg"),
        "local v3",
        "a dirty file is never overwritten by a delta"
    );
    assert_eq!(
        t.sh("getfattr --only-values -n user.galleryfs.state IMG_1.jpg"),
        "conflict",
        "both sides changed it: the state says so until the conflict copy is made"
    );
    t.replay();
    let today = chrono::Local::now().date_naive().format("%Y-%m-%d").to_string();
    let copy = format!("IMG_1 (conflict {today} testhost).jpg");
    assert_eq!(t.sh("cat IMG_1.jpg"), "remote v3");
    assert_eq!(t.sh(&format!("cat '{copy}'")), "local v3");
    assert_eq!(t.s.remote_content(&copy).unwrap(), &b"local v3"[..]);
    assert_eq!(t.s.mock.content(&id).unwrap(), &b"remote v3"[..]);
}

#[test]
fn offline_edits_queue_and_replay() {
    require_fuse!();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mock = Arc::new(MockDrive::new());
    let failing = Arc::new(galleryfs::remote::mock_drive::FailingDrive::new(mock.clone()));
    let s = rt.block_on(Synced::new(
        mock.clone(),
        failing.clone(),
        Duration::ZERO,
        quick_config(),
    ));
    let mnt = tempfile::tempdir().unwrap();
    let config = galleryfs::fuse::fuser_config(&galleryfs::mount_options::MountOptions::default(), "galleryfs:edits");
    let core: Arc<dyn FsCore> = s.fs.clone();
    let mounted = galleryfs::fuse::mount(core, rt.handle().clone(), mnt.path(), &config).expect("mount");
    let m = mnt.path().display().to_string();
    failing.fail_fraction(
        1.0,
        galleryfs::remote::drive_api::DriveError::Offline("network unreachable".into()),
    );
    let task = rt.spawn(s.replayer.clone().run(s.fs.outbox_wake()));
    common::sh_ok(&format!(
        "cd '{m}' && mkdir Trip && echo day1 > Trip/day1.txt && echo x > x.txt && rm x.txt"
    ));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!s.store.pending().unwrap().is_empty());
    assert_eq!(common::sh_ok(&format!("cat '{m}/Trip/day1.txt'")), "day1\n");
    assert_eq!(
        common::sh_ok(&format!(
            "getfattr --only-values -n user.galleryfs.state '{m}/Trip/day1.txt'"
        )),
        "dirty"
    );
    failing.heal();
    s.fs.outbox_wake().notify_one();
    for _ in 0..100 {
        if s.store.pending().unwrap().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        s.fs.outbox_wake().notify_one();
    }
    task.abort();
    assert!(
        s.store.pending().unwrap().is_empty(),
        "{:?}",
        s.store.pending().unwrap()
    );
    assert_eq!(s.remote_content("Trip/day1.txt").unwrap(), &b"day1\n"[..]);
    assert!(s.remote("x.txt").is_none());
    mounted.unmount().unwrap();
}

/// (st_mtime, st_ctime, st_nlink) of a path.
fn stat_times(path: &str) -> (i64, i64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {path}: {e}"));
    (m.mtime(), m.ctime(), m.nlink())
}

/// 2001-02-03 04:05:06 UTC: a folder set to it shows any later move at once, without waiting for the clock.
const OLD_TIME: i64 = 981_173_106;

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[test]
fn folder_times_move_when_entries_change_here_or_on_onedrive() {
    require_fuse!();
    let t = Mounted::new();
    t.sh("mkdir a b && echo x > a/f && echo y > a/keep");
    let p = |rel: &str| format!("{}/{rel}", t.m);
    let set_old = |dirs: &[&str]| {
        t.sh(&format!("touch -d @{OLD_TIME} {}", dirs.join(" ")));
        for d in dirs {
            assert_eq!(stat_times(&p(d)).0, OLD_TIME, "utimensat on folder {d} did not stick");
        }
    };
    let moves = |what: &str, dirs: &[&str], op: &dyn Fn()| {
        set_old(dirs);
        let before = unix_now();
        op();
        for d in dirs {
            let (mtime, ctime, _) = stat_times(&p(d));
            assert!(
                mtime >= before,
                "{what}: the mtime of {d} did not move ({mtime} < {before})"
            );
            assert!(
                ctime >= mtime,
                "{what}: the ctime of {d} did not move ({ctime} < {mtime})"
            );
        }
    };
    moves("open(O_CREAT)", &["a"], &|| {
        t.sh("touch a/new");
    });
    moves("mkdir", &["a"], &|| {
        t.sh("mkdir a/sub");
    });
    moves("unlink", &["a"], &|| {
        t.sh("rm a/new");
    });
    moves("rmdir", &["a"], &|| {
        t.sh("rmdir a/sub");
    });
    moves("rename in a folder", &["a"], &|| {
        t.sh("mv a/f a/g");
    });
    moves("rename between folders", &["a", "b"], &|| {
        t.sh("mv a/g b/h");
    });
    // Opening, reading and writing an existing file leave its folder alone.
    set_old(&["a"]);
    t.sh("cat a/keep >/dev/null && echo more >> a/keep");
    assert_eq!(stat_times(&p("a")).0, OLD_TIME);

    // The folder's time reaches OneDrive's fileSystemInfo, and OneDrive's own listing of the folder (which still
    // has that time) does not take the local one back.
    t.replay();
    let a = t.s.remote("a").expect("folder a on OneDrive");
    assert_eq!(a.modified().map(|m| m.timestamp()), Some(OLD_TIME));
    t.sync();
    assert_eq!(stat_times(&p("a")).0, OLD_TIME);

    // Changes made on OneDrive move the folder's times too: an entry added, one removed, one moved out.
    let remote_moves = |what: &str, dirs: &[&str], change: &dyn Fn()| {
        set_old(dirs);
        t.replay();
        t.sync();
        let before = unix_now();
        change();
        t.sync();
        for d in dirs {
            // The kernel's cached attributes are dropped by the invalidation thread, after the round is applied.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while stat_times(&p(d)).0 < before && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let (mtime, ctime, _) = stat_times(&p(d));
            assert!(
                mtime >= before,
                "{what}: the mtime of {d} did not move ({mtime} < {before})"
            );
            assert!(ctime >= mtime, "{what}: the ctime of {d} did not move");
        }
    };
    let b_id = t.s.remote("b").unwrap().id;
    remote_moves("added on OneDrive", &["a"], &|| {
        t.s.mock.add_file(&a.id, "remote.jpg", &b"remote"[..]);
    });
    remote_moves("removed on OneDrive", &["a"], &|| {
        t.s.mock.delete_item(&t.s.remote("a/remote.jpg").unwrap().id);
    });
    remote_moves("moved on OneDrive", &["a", "b"], &|| {
        let keep = t.s.remote("a/keep").unwrap().id;
        t.s.mock.move_to(&keep, &b_id);
    });
    assert!(std::path::Path::new(&p("b/keep")).exists());
}

#[test]
fn a_folder_links_count_its_subfolders() {
    require_fuse!();
    let t = Mounted::new();
    let nlink = |rel: &str| stat_times(&format!("{}/{rel}", t.m)).2;
    t.sh("mkdir -p p/s1 p/s2 q && touch p/file");
    assert_eq!((nlink("p"), nlink("q"), nlink("p/s1")), (4, 2, 2));
    assert_eq!(nlink("."), 4, "the root holds p and q");
    t.sh("mv p/s2 q/");
    assert_eq!((nlink("p"), nlink("q")), (3, 3));
    t.sh("rmdir p/s1 && rmdir q/s2");
    assert_eq!((nlink("p"), nlink("q")), (2, 2));
}

#[test]
fn times_after_2038_round_trip() {
    require_fuse!();
    let t = Mounted::new();
    // 2^31 s is 2038-01-19; 2^32 s is 2106-02-07.
    t.sh("mkdir d && echo x > d/f && touch -d @2147483648 d/f && touch -d @4294967296 d");
    assert_eq!(stat_times(&format!("{}/d/f", t.m)).0, 2_147_483_648);
    assert_eq!(stat_times(&format!("{}/d", t.m)).0, 4_294_967_296);
    t.replay();
    let modified = |rel: &str| t.s.remote(rel).and_then(|i| i.modified()).map(|m| m.timestamp());
    assert_eq!(modified("d/f"), Some(2_147_483_648));
    assert_eq!(modified("d"), Some(4_294_967_296));
}

// ---- third-party POSIX suites (tests/pjdfstest/run.sh installs the tools) ----

/// The path of an installed tool (in PATH or ~/.cargo/bin).
fn tool(name: &str) -> Option<std::path::PathBuf> {
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(std::path::Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

fn suite_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pjdfstest")
}

/// A mount whose outbox replays in the background, as in real use.
fn mounted_with_replayer() -> (Mounted, tokio::task::JoinHandle<()>) {
    let t = Mounted::new();
    let task = t.rt.spawn(t.s.replayer.clone().run(t.s.fs.outbox_wake()));
    (t, task)
}

/// One pjdfstest case's outcome, as its output line ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CaseOutcome {
    Passed,
    ExpectedFailure,
    Skipped,
    Failed,
    PassedUnexpectedly,
}

/// Every case's outcome from pjdfstest's output (one `NAME   outcome` line per case).
fn pjdfstest_outcomes(text: &str) -> Vec<(String, CaseOutcome)> {
    let outcomes = [
        ("PASSED UNEXPECTEDLY", CaseOutcome::PassedUnexpectedly),
        ("failed as expected", CaseOutcome::ExpectedFailure),
        ("FAILED", CaseOutcome::Failed),
        ("skipped", CaseOutcome::Skipped),
        ("ok", CaseOutcome::Passed),
    ];
    text.lines()
        .filter(|l| !l.starts_with(char::is_whitespace))
        .filter_map(|l| {
            let (name, rest) = l.split_once(' ')?;
            let rest = rest.trim();
            let outcome = outcomes.iter().find(|(word, _)| rest == *word)?.1;
            name.contains("::").then(|| (name.to_string(), outcome))
        })
        .collect()
}

/// The `expected_failures` of a pjdfstest configuration file (one quoted name a line, comments between).
fn expected_failures(config: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(config).unwrap();
    let list = text
        .split_once("expected_failures = [")
        .expect("an expected_failures list")
        .1;
    let list = list.split_once("\n]").expect("the list's end").0;
    list.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('"'))
        .map(|l| l.trim_end_matches(',').trim_matches('"').to_string())
        .collect()
}

/// pjdfstest 0.2.2 (the version `.ci/run` installs): how many of its cases pass on galleryfs, and the one it skips
/// (`LINK_MAX` is unknown where hard links are refused).
const PJDFSTEST_PASSED: usize = 155;
const PJDFSTEST_SKIPPED: &[&str] = &["link::link_count_max"];

/// Every case of pjdfstest (tests/pjdfstest/galleryfs.toml) through a real mount: none may fail unless listed as
/// an expected failure there, each listed one must run and fail, and the number that pass is pinned, so a case
/// that stops passing (or stops running) fails this test.
#[test]
fn posix_pjdfstest_all() {
    require_fuse!();
    let Some(pjdfstest) = tool("pjdfstest") else {
        skip_test!("pjdfstest is not installed (scripts/test installs it)");
    };
    if !common::sh("getent passwd tests").status.success() {
        skip_test!("pjdfstest needs a user named `tests` (scripts/test adds it)");
    }
    let (t, task) = mounted_with_replayer();
    t.sh("mkdir scratch");
    // Another filesystem, for the cross-device (EXDEV) cases.
    let elsewhere = tempfile::tempdir().unwrap();
    // The erofs cases remount the mount read-only and back with `mount -o remount,ro|rw`. mount(8) would hand a
    // FUSE mount to mount.fuse3, which starts a filesystem instead of remounting one: `-i` remounts through the
    // kernel, as for any filesystem.
    let real_mount = common::sh_ok("command -v mount").trim().to_string();
    let bin = elsewhere.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(bin.join("mount"), format!("#!/bin/sh\nexec '{real_mount}' -i \"$@\"\n")).unwrap();
    common::sh_ok(&format!("chmod 755 '{}/mount'", bin.display()));
    let config = suite_dir().join("galleryfs.toml");
    let run = |config: &std::path::Path, patterns: &str| {
        let out = common::sh(&format!(
            "PATH='{}':\"$PATH\" NO_COLOR=1 '{}' -c '{}' -p '{}/scratch' -s '{}' {patterns} 2>&1",
            bin.display(),
            pjdfstest.display(),
            config.display(),
            t.m,
            elsewhere.path().display()
        ));
        (out.status, String::from_utf8_lossy(&out.stdout).into_owned())
    };
    // The erofs cases run on their own first: a case of pjdfstest itself (posix_fallocate::
    // affected_only_create_flags) leaves a file open for writing until pjdfstest exits, and no filesystem can be
    // remounted read-only while one is. The full run then skips them (allow_remount = false).
    let (erofs_status, erofs_text) = run(&config, "erofs");
    let no_remount = elsewhere.path().join("no-remount.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("allow_remount = true"));
    std::fs::write(
        &no_remount,
        text.replace("allow_remount = true", "allow_remount = false"),
    )
    .unwrap();
    let (status, text) = run(&no_remount, "");
    task.abort();
    let erofs: Vec<(String, CaseOutcome)> = pjdfstest_outcomes(&erofs_text);
    assert!(!erofs.is_empty(), "no erofs case ran:\n{erofs_text}");
    let mut outcomes: Vec<(String, CaseOutcome)> = pjdfstest_outcomes(&text)
        .into_iter()
        .filter(|(name, outcome)| {
            let replaced = erofs.iter().any(|(n, _)| n == name);
            assert!(!replaced || *outcome == CaseOutcome::Skipped, "{name} ran twice");
            !replaced
        })
        .collect();
    outcomes.extend(erofs);
    let with = |o: CaseOutcome| -> Vec<&str> {
        let mut names: Vec<&str> = outcomes
            .iter()
            .filter(|(_, x)| *x == o)
            .map(|(n, _)| n.as_str())
            .collect();
        names.sort();
        names
    };
    eprintln!(
        "pjdfstest: {} passed, {} expected failures, {} skipped, {} cases",
        with(CaseOutcome::Passed).len(),
        with(CaseOutcome::ExpectedFailure).len(),
        with(CaseOutcome::Skipped).len(),
        outcomes.len()
    );
    let failed = with(CaseOutcome::Failed);
    let unexpected = with(CaseOutcome::PassedUnexpectedly);
    assert!(
        failed.is_empty() && unexpected.is_empty(),
        "pjdfstest: failed {failed:?}, passed although listed as expected failures {unexpected:?}\n\
         --- erofs run ---\n{erofs_text}\n--- full run ---\n{text}"
    );
    // Every listed failure ran and failed (none skipped or missing: the list has no stale entries).
    let mut listed = expected_failures(&config);
    listed.sort();
    assert_eq!(
        with(CaseOutcome::ExpectedFailure),
        listed,
        "expected failures that did not run and fail"
    );
    assert_eq!(with(CaseOutcome::Skipped), PJDFSTEST_SKIPPED, "skipped cases");
    assert_eq!(with(CaseOutcome::Passed).len(), PJDFSTEST_PASSED, "passed cases");
    assert!(
        erofs_status.success() && status.success(),
        "pjdfstest exited with {erofs_status} and {status}"
    );
}

#[test]
fn posix_fsx_with_frequent_close_and_reopen() {
    require_fuse!();
    let Some(fsx) = tool("fsx") else {
        skip_test!("fsx is not installed (scripts/test or tests/pjdfstest/run.sh --install installs it)");
    };
    let (t, task) = mounted_with_replayer();
    let artifacts = tempfile::tempdir().unwrap();
    let out = common::sh(&format!(
        "'{}' -N 3000 -S 11 -f '{}' -P '{}' '{}/fsx.bin' 2>&1",
        fsx.display(),
        suite_dir().join("fsx.toml").display(),
        artifacts.path().display(),
        t.m
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "fsx failed:\n{text}");
    // Everything fsx left reaches OneDrive byte for byte.
    let local = std::fs::read(format!("{}/fsx.bin", t.m)).unwrap();
    for _ in 0..100 {
        if t.s.store.pending().unwrap().is_empty() {
            break;
        }
        t.s.fs.outbox_wake().notify_one();
        std::thread::sleep(Duration::from_millis(50));
    }
    task.abort();
    assert!(t.s.store.pending().unwrap().is_empty());
    assert_eq!(t.remote_hash("fsx.bin").unwrap(), QuickXorHash::of(&local));
}

// ---- the real binary, mounted over the in-process emulator ----

mod e2e_edits {
    use super::common;
    use common::e2e::{is_mounted, wait_until, Env};
    use galleryfs::emulator::faults::{FaultKind, FaultRule};
    use galleryfs::remote::QuickXorHash;
    use std::time::Duration;

    /// (id, size, quickXorHash) of the emulator's file at `rel` below the gallery.
    fn remote(env: &Env, rel: &str) -> Option<(String, u64, Option<String>)> {
        let path = format!("{}/{rel}", env.gallery_root());
        env.emu()
            .state
            .state_dump()
            .into_iter()
            .find(|e| e.path == path)
            .map(|e| (e.id, e.size, e.quick_xor_hash))
    }

    fn daemon_pid(env: &Env) -> i32 {
        let rec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(env.cache_dir().join("default/mount.json")).unwrap()).unwrap();
        rec["pid"].as_i64().unwrap() as i32
    }

    /// kill -9 of the mount's own process (by the pid it recorded), then the dead mount detached.
    fn kill_daemon(env: &Env) {
        let pid = daemon_pid(env);
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
        assert!(wait_until(Duration::from_secs(10), || {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err()
        }));
        let _ = std::process::Command::new("umount").arg("-l").arg(&env.mnt).status();
        assert!(wait_until(Duration::from_secs(10), || !is_mounted(&env.mnt)));
    }

    /// `fileSystemInfo.lastModifiedDateTime` (Unix seconds) of the emulator's item at `rel` below the gallery.
    fn remote_mtime(env: &Env, rel: &str) -> Option<i64> {
        let item = env
            .emu()
            .state
            .item_json(&format!("{}/{rel}", env.gallery_root()))
            .ok()?;
        let at = item["fileSystemInfo"]["lastModifiedDateTime"].as_str()?;
        Some(chrono::DateTime::parse_from_rfc3339(at).ok()?.timestamp())
    }

    fn mtime(path: &str) -> i64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("stat {path}: {e}"))
            .mtime()
    }

    /// utimensat on a folder (and a file) reaches OneDrive's fileSystemInfo, survives a remount and a fresh cache,
    /// and works after 2038; a file added on OneDrive moves its folder's mtime.
    #[test]
    fn folder_times_reach_onedrive_and_come_back() {
        require_fuse!();
        // 2040-12-25 and 2^32 s (2106): past the 32-bit limit.
        const Y2040: i64 = 2_240_000_000;
        const Y2106: i64 = 4_294_967_296;
        const OLD: i64 = 981_173_106;
        let env = Env::start(3);
        env.login();
        env.mount("poll_interval=2,write_back=0");
        let m = env.mnt.display().to_string();
        common::sh_ok(&format!("mkdir '{m}/Album' && echo hi > '{m}/Album/note.txt'"));
        assert!(wait_until(Duration::from_secs(20), || remote(&env, "Album/note.txt").is_some()));
        common::sh_ok(&format!(
            "touch -d @{Y2040} '{m}/Album' && touch -d @{Y2106} '{m}/Album/note.txt'"
        ));
        assert_eq!(
            (mtime(&format!("{m}/Album")), mtime(&format!("{m}/Album/note.txt"))),
            (Y2040, Y2106)
        );
        assert!(
            wait_until(Duration::from_secs(20), || remote_mtime(&env, "Album") == Some(Y2040)
                && remote_mtime(&env, "Album/note.txt") == Some(Y2106)),
            "OneDrive has {:?} and {:?}",
            remote_mtime(&env, "Album"),
            remote_mtime(&env, "Album/note.txt")
        );
        assert!(wait_until(Duration::from_secs(20), || env.status_json()["outbox"]
            ["pending"]
            == 0));
        // A remount keeps them; so does a fresh cache (they come from OneDrive alone then).
        env.unmount();
        env.mount("poll_interval=2,write_back=0");
        assert_eq!(
            (mtime(&format!("{m}/Album")), mtime(&format!("{m}/Album/note.txt"))),
            (Y2040, Y2106)
        );
        env.unmount();
        env.galleryfs_ok(&["logout", "--purge-cache"]);
        env.login();
        env.mount("poll_interval=2,write_back=0");
        assert_eq!(
            (mtime(&format!("{m}/Album")), mtime(&format!("{m}/Album/note.txt"))),
            (Y2040, Y2106)
        );
        // A file added on OneDrive moves the folder's mtime (from an old time, so the move shows at once).
        common::sh_ok(&format!("touch -d @{OLD} '{m}/Album'"));
        assert!(wait_until(Duration::from_secs(20), || remote_mtime(&env, "Album") == Some(OLD)));
        assert_eq!(mtime(&format!("{m}/Album")), OLD);
        let before = chrono::Utc::now().timestamp();
        env.emu()
            .state
            .add_file(
                &format!("{}/Album/remote.jpg", env.gallery_root()),
                galleryfs::emulator::media::Content::Bytes(bytes::Bytes::from_static(b"from elsewhere")),
            )
            .unwrap();
        assert!(wait_until(Duration::from_secs(20), || std::path::Path::new(&format!(
            "{m}/Album/remote.jpg"
        ))
        .exists()));
        let after = mtime(&format!("{m}/Album"));
        assert!(after >= before, "the folder's mtime did not move: {after} < {before}");
        env.unmount();
    }

    #[test]
    fn edits_through_the_real_mount_reach_onedrive() {
        require_fuse!();
        let env = Env::start(3);
        env.login();
        env.mount("poll_interval=2,write_back=0");
        let m = env.mnt.display().to_string();
        let camera = format!("{m}/DCIM/Camera");
        assert!(std::path::Path::new(&camera).is_dir());
        let photo: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("new.jpg"), &photo).unwrap();
        common::sh_ok(&format!(
            "cp '{}/new.jpg' '{camera}/' && mkdir '{m}/Album'",
            src.path().display()
        ));
        assert!(wait_until(Duration::from_secs(20), || remote(
            &env,
            "DCIM/Camera/new.jpg"
        )
        .is_some_and(|r| r.2.as_deref() == Some(QuickXorHash::of(&photo).as_str()))));
        let (id, _, _) = remote(&env, "DCIM/Camera/new.jpg").unwrap();
        common::sh_ok(&format!("mv '{camera}/new.jpg' '{m}/Album/moved.jpg'"));
        assert!(wait_until(Duration::from_secs(20), || remote(&env, "Album/moved.jpg")
            .is_some_and(|r| r.0 == id)));
        common::sh_ok(&format!("rm '{m}/Album/moved.jpg'"));
        assert!(wait_until(Duration::from_secs(20), || env
            .emu()
            .state
            .recycle_bin_dump()
            .iter()
            .any(|e| e.id == id)));
        let listed = env.galleryfs_ok(&["trash", "list"]);
        assert!(listed.contains("/Album/moved.jpg") && listed.contains(&id), "{listed}");
        env.galleryfs_ok(&["trash", "restore", &id]);
        assert!(
            remote(&env, "Album/moved.jpg").is_some_and(|r| r.0 == id),
            "restored from the recycle bin"
        );
        assert!(wait_until(Duration::from_secs(20), || std::path::Path::new(&format!(
            "{m}/Album/moved.jpg"
        ))
        .exists()));
        let status = env.status_json();
        assert_eq!(status["outbox"]["pending"], 0, "{status}");
        env.unmount();
    }

    /// With write_back=0 an editor's temporary file is on OneDrive before the editor renames it over its target.
    /// The save still keeps the target's id (version history), the temporary item goes to the recycle bin, and a
    /// file just uploaded reads back from the cache without a download.
    #[test]
    fn a_save_whose_temp_file_was_already_uploaded_keeps_the_id() {
        require_fuse!();
        let env = Env::start(1);
        env.login();
        env.mount("poll_interval=2,write_back=0,thumbnails=off");
        let m = env.mnt.display().to_string();
        let has = |rel: &str, bytes: &[u8]| {
            let want = QuickXorHash::of(bytes);
            wait_until(Duration::from_secs(30), || {
                remote(&env, rel).is_some_and(|r| r.2.as_deref() == Some(want.as_str()))
            })
        };
        let original: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(format!("{m}/photo.jpg"), &original).unwrap();
        assert!(has("photo.jpg", &original));
        let photo_id = remote(&env, "photo.jpg").unwrap().0;
        let edited: Vec<u8> = (0..150_000u32).map(|i| (i % 239) as u8).collect();
        std::fs::write(format!("{m}/photo.jpg.tmp"), &edited).unwrap();
        assert!(has("photo.jpg.tmp", &edited), "the temporary file was uploaded first");
        let tmp_id = remote(&env, "photo.jpg.tmp").unwrap().0;
        assert!(wait_until(Duration::from_secs(20), || env.status_json()["outbox"]
            ["pending"]
            == 0));
        // Read back right after its upload: from the cache, no download of its content.
        let since = env.emu().state.log.next_seq();
        assert_eq!(std::fs::read(format!("{m}/photo.jpg.tmp")).unwrap(), edited);
        let downloads: Vec<_> = env
            .emu()
            .state
            .log
            .entries_since(since)
            .into_iter()
            .filter(|e| e.host == "content" && e.method == "GET")
            .collect();
        assert!(
            downloads.is_empty(),
            "a file just uploaded was downloaded again: {downloads:?}"
        );
        let state = common::sh_ok(&format!(
            "getfattr --only-values -n user.galleryfs.state '{m}/photo.jpg.tmp'"
        ));
        assert_eq!(state, "cached");
        common::sh_ok(&format!("mv '{m}/photo.jpg.tmp' '{m}/photo.jpg'"));
        assert!(has("photo.jpg", &edited), "the save reached OneDrive");
        assert_eq!(
            remote(&env, "photo.jpg").unwrap().0,
            photo_id,
            "the save kept the item id"
        );
        assert!(
            wait_until(Duration::from_secs(20), || remote(&env, "photo.jpg.tmp").is_none()),
            "the temporary item is gone"
        );
        assert!(env.emu().state.recycle_bin_dump().iter().any(|e| e.id == tmp_id));
        assert!(wait_until(Duration::from_secs(20), || env.status_json()["outbox"]
            ["pending"]
            == 0));
        std::thread::sleep(Duration::from_secs(3));
        let listed = common::sh_ok(&format!("ls '{m}'"));
        assert!(!listed.contains("photo.jpg.tmp"), "{listed}");
        assert_eq!(std::fs::read(format!("{m}/photo.jpg")).unwrap(), edited);
        env.unmount();
    }

    /// The real tools against the emulator: rsync -a, sed -i, an editor's temp-then-rename save,
    /// truncate, touch -d; then an outage (every request hangs) during which edits queue, and the replay after it.
    #[test]
    fn real_tools_and_an_outage_against_the_emulator() {
        require_fuse!();
        let env = Env::start(4);
        env.login();
        // The default write_back (2 s): temporary files never reach OneDrive. (write_back=0, where they do, is
        // `a_save_whose_temp_file_was_already_uploaded_keeps_the_id`.)
        env.mount("poll_interval=2,thumbnails=off");
        let m = env.mnt.display().to_string();
        let src = tempfile::tempdir().unwrap();
        let album = src.path().join("Holiday");
        std::fs::create_dir(&album).unwrap();
        let files: Vec<(String, Vec<u8>)> = (0..3)
            .map(|i| {
                (
                    format!("IMG_{i}.jpg"),
                    (0..(50_000 + i * 7_000)).map(|b| (b * (i + 3)) as u8).collect(),
                )
            })
            .collect();
        for (name, bytes) in &files {
            std::fs::write(album.join(name), bytes).unwrap();
        }
        std::fs::write(album.join("notes.txt"), b"hello gallery\n").unwrap();
        let hash_is = |rel: &str, bytes: &[u8]| {
            let want = QuickXorHash::of(bytes);
            wait_until(Duration::from_secs(30), || {
                remote(&env, rel).is_some_and(|r| r.2.as_deref() == Some(want.as_str()))
            })
        };

        // rsync -a of a folder: every file arrives with its exact content.
        common::sh_ok(&format!("rsync -a '{}' '{m}/'", album.display()));
        for (name, bytes) in &files {
            assert!(
                hash_is(&format!("Holiday/{name}"), bytes),
                "rsync -a: {name} on OneDrive with hash {}: {:?}",
                QuickXorHash::of(bytes),
                env.emu()
                    .state
                    .state_dump()
                    .into_iter()
                    .filter(|e| e.path.contains("Holiday"))
                    .collect::<Vec<_>>()
            );
        }
        assert!(hash_is("Holiday/notes.txt", b"hello gallery\n"));
        let notes_id = remote(&env, "Holiday/notes.txt").unwrap().0;

        // sed -i (writes a temp file and renames it over): the item keeps its id, OneDrive gets the new content.
        common::sh_ok(&format!("sed -i 's/hello/HELLO/' '{m}/Holiday/notes.txt'"));
        assert!(
            hash_is("Holiday/notes.txt", b"HELLO gallery\n"),
            "sed -i reached OneDrive"
        );
        assert_eq!(
            remote(&env, "Holiday/notes.txt").unwrap().0,
            notes_id,
            "sed -i kept the item id"
        );

        // An editor's save: write X.tmp, rename over X.
        let (name0, _) = &files[0];
        let id0 = remote(&env, &format!("Holiday/{name0}")).unwrap().0;
        common::sh_ok(&format!(
            "printf 'edited photo' > '{m}/Holiday/{name0}.tmp' && mv '{m}/Holiday/{name0}.tmp' '{m}/Holiday/{name0}'"
        ));
        assert!(
            hash_is(&format!("Holiday/{name0}"), b"edited photo"),
            "the save reached OneDrive ({}): {:?}",
            QuickXorHash::of(b"edited photo"),
            env.emu()
                .state
                .state_dump()
                .into_iter()
                .filter(|e| e.path.contains("Holiday"))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            remote(&env, &format!("Holiday/{name0}")).unwrap().0,
            id0,
            "the save kept the item id"
        );
        assert!(
            remote(&env, &format!("Holiday/{name0}.tmp")).is_none(),
            "the temp file never reached OneDrive"
        );

        // truncate and touch -d.
        let (name1, bytes1) = &files[1];
        common::sh_ok(&format!("truncate -s 1000 '{m}/Holiday/{name1}'"));
        assert!(
            hash_is(&format!("Holiday/{name1}"), &bytes1[..1000]),
            "truncate reached OneDrive"
        );
        common::sh_ok(&format!("touch -d '2021-06-01 12:00:00 UTC' '{m}/Holiday/{name1}'"));
        let id1 = remote(&env, &format!("Holiday/{name1}")).unwrap().0;
        assert!(
            wait_until(Duration::from_secs(30), || env.emu().state.item_json(&id1).is_ok_and(
                |j| j["fileSystemInfo"]["lastModifiedDateTime"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("2021-06-01T12:00:00"))
            )),
            "touch -d reached OneDrive as fileSystemInfo: {:?}",
            env.emu().state.item_json(&id1).map(|j| j["fileSystemInfo"].clone())
        );
        assert_eq!(
            common::sh_ok(&format!("stat -c %Y '{m}/Holiday/{name1}'")).trim(),
            "1622548800"
        );

        // An outage: OneDrive stops answering. Edits are accepted, journalled and shown as dirty.
        env.emu().state.faults.add_rule(FaultRule::new(FaultKind::Hang));
        let offline: Vec<u8> = (0..70_000u32).map(|i| (i % 241) as u8).collect();
        std::fs::write(src.path().join("offline.jpg"), &offline).unwrap();
        common::sh_ok(&format!("cp '{}/offline.jpg' '{m}/Holiday/'", src.path().display()));
        common::sh_ok(&format!("rm '{m}/Holiday/{}'", files[2].0));
        std::thread::sleep(Duration::from_secs(3));
        let state = common::sh_ok(&format!(
            "getfattr --only-values -n user.galleryfs.state '{m}/Holiday/offline.jpg'"
        ));
        assert_eq!(state, "dirty");
        assert!(env.status_json()["outbox"]["pending"].as_u64().unwrap() >= 1);
        assert!(remote(&env, "Holiday/offline.jpg").is_none());
        // OneDrive is back: the outbox replays, in order, nothing lost.
        env.emu().state.faults.clear_rules();
        assert!(
            hash_is("Holiday/offline.jpg", &offline),
            "the queued upload replayed after the outage"
        );
        assert!(
            wait_until(Duration::from_secs(30), || remote(
                &env,
                &format!("Holiday/{}", files[2].0)
            )
            .is_none()),
            "the queued delete replayed"
        );
        assert!(wait_until(Duration::from_secs(30), || env.status_json()["outbox"]
            ["pending"]
            == 0));
        env.unmount();
    }

    #[test]
    fn kill_9_before_and_during_an_upload_loses_nothing() {
        require_fuse!();
        let env = Env::start(1);
        env.login();
        let m = env.mnt.display().to_string();
        let small = b"journalled, not yet sent".to_vec();
        let big: Vec<u8> = (0..(12u32 << 20))
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("small.jpg"), &small).unwrap();
        std::fs::write(src.path().join("big.mp4"), &big).unwrap();

        // 1. Killed after close, before the upload started (a long write-back delay holds it).
        env.mount("poll_interval=2,write_back=600");
        common::sh_ok(&format!("cp '{}/small.jpg' '{m}/'", src.path().display()));
        kill_daemon(&env);
        assert!(remote(&env, "small.jpg").is_none());

        // 2. Killed while the upload of a 12 MiB file (an upload session) is in flight.
        env.mount("poll_interval=2,write_back=0");
        let slow = env
            .emu()
            .state
            .faults
            .add_rule(FaultRule::new(FaultKind::Latency { ms: 1500 }).method("PUT"));
        common::sh_ok(&format!("cp '{}/big.mp4' '{m}/'", src.path().display()));
        // Killed while the session's first fragment (held 1.5 s by the emulator) is on the way: uploads run in
        // parallel, so the session does not wait for the small file's PUT.
        let session_made = wait_until(Duration::from_secs(20), || {
            env.emu()
                .state
                .log
                .entries()
                .iter()
                .any(|r| r.method == "POST" && r.path.contains("createUploadSession"))
        });
        assert!(session_made, "the upload session of big.mp4 began");
        std::thread::sleep(Duration::from_millis(500));
        kill_daemon(&env);
        env.emu().state.faults.remove_rule(slow);
        assert!(remote(&env, "big.mp4").is_none_or(|r| r.2.as_deref() != Some(QuickXorHash::of(&big).as_str())));

        // 3. The next mount sends both, byte for byte, resuming the journalled upload session.
        let sessions = |since: u64| crate::reliability_support::upload_sessions(&env, since);
        assert_eq!(sessions(0), 1, "the killed upload had started its session");
        let restart = env.emu().state.log.next_seq();
        env.mount("poll_interval=2,write_back=0");
        assert!(
            wait_until(Duration::from_secs(60), || {
                remote(&env, "small.jpg").is_some_and(|r| r.2.as_deref() == Some(QuickXorHash::of(&small).as_str()))
                    && remote(&env, "big.mp4").is_some_and(|r| r.2.as_deref() == Some(QuickXorHash::of(&big).as_str()))
            }),
            "uploads completed after the restart; status: {}",
            env.status_json()
        );
        assert_eq!(
            sessions(restart),
            0,
            "the upload resumed its session instead of starting over"
        );
        assert_eq!(std::fs::read(format!("{m}/big.mp4")).unwrap(), big);
        assert!(wait_until(Duration::from_secs(10), || env.status_json()["outbox"]
            ["pending"]
            == 0));
        env.unmount();
    }
}
