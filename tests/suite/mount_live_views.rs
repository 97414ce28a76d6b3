//! Live views through a real mount: every kind of remote change raises, for an `inotifywait -m -r` watching the
//! mount, the events the same change made locally raises (and no others), within `poll_interval` + 5 s; and
//! replaying them changes nothing on OneDrive (no upload, move or delete request), no item id and no local state.
//! Under load (a burst of additions and removals while other processes list the folders) every event still
//! arrives and nothing deadlocks.

use crate::common;

use common::e2e::{wait_until, Env};
use galleryfs::emulator::media::Content;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `poll_interval` of these mounts, in seconds.
const POLL: u64 = 2;

/// An `inotifywait -m -r` on a directory, its events collected as `path|EVENTS` lines (paths from the mount root).
struct Watch {
    child: Child,
    events: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Watch {
    fn start(dir: &Path) -> Watch {
        let mut child = Command::new("inotifywait")
            .args(["-m", "-r", "--format", "%w%f|%e"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("inotifywait is needed for this test: apt-get install inotify-tools");
        let events = Arc::new(Mutex::new(Vec::new()));
        let prefix = format!("{}/", dir.display());
        let stdout = child.stdout.take().unwrap();
        {
            let events = events.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let line = line.strip_prefix(&prefix).unwrap_or(&line).to_string();
                    events.lock().unwrap().push((Instant::now(), line));
                }
            });
        }
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while stderr.read_line(&mut line).unwrap() > 0 && !line.contains("Watches established") {}
        assert!(line.contains("Watches established"), "inotifywait starts: {line}");
        Watch { child, events }
    }

    fn count(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// The count once no event has come for half a second (the test's own reads raise events too).
    fn settled_count(&self) -> usize {
        let mut last = self.count();
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = self.count();
            if now == last {
                return now;
            }
            last = now;
        }
    }

    /// Events after the first `from`, without the watcher's own reads of the folders it adds watches to.
    fn since(&self, from: usize) -> Vec<(Instant, String)> {
        self.events.lock().unwrap()[from..]
            .iter()
            .filter(|(_, e)| {
                !(e.contains("ISDIR") && (e.contains("OPEN") || e.contains("ACCESS") || e.contains("NOWRITE")))
            })
            .cloned()
            .collect()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes a remote change and checks that exactly `expected` events follow, the last within `poll_interval` + 5 s;
/// returns how long after the change the first event came.
fn change_raises(env: &Env, watch: &Watch, what: &str, change: impl FnOnce(&Env), expected: &[&str]) -> Duration {
    let from = watch.settled_count();
    let started = Instant::now();
    change(env);
    let limit = Duration::from_secs(POLL + 5);
    let arrived = wait_until(limit, || watch.since(from).len() >= expected.len());
    // Anything extra (a second replay, a stray event) would come shortly after.
    std::thread::sleep(Duration::from_millis(1500));
    let got = watch.since(from);
    let lines: Vec<&str> = got.iter().map(|(_, e)| e.as_str()).collect();
    assert!(arrived, "{what}: expected {expected:?} within {limit:?}, got {lines:?}");
    assert_eq!(
        lines, expected,
        "{what}: the events a local change raises, and no others"
    );
    let first = got[0].0.duration_since(started);
    let last = got.last().unwrap().0.duration_since(started);
    assert!(last <= limit, "{what}: last event after {last:?}");
    eprintln!("{what}: first event {first:?} after the change");
    first
}

fn mounted(env: &Env) {
    assert!(env.rt.block_on(env.emu().wait_for_hashes(Duration::from_secs(60))));
    env.login();
    // No push channel: the changes come by polling, the slower path the contract bounds.
    env.emu().state.socketio.set_enabled(false);
    env.mount(&format!("poll_interval={POLL}"));
    assert!(env.mnt.join("DCIM/Camera").is_dir(), "the gallery is listed");
}

/// Requests that would change OneDrive.
fn writes_to_onedrive(env: &Env) -> Vec<String> {
    env.emu()
        .state
        .log
        .entries()
        .into_iter()
        .filter(|r| r.method != "GET")
        .filter(|r| !r.path.contains("/oauth2/"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[test]
fn every_kind_of_remote_change_reaches_an_inotify_watch_and_changes_nothing_else() {
    require_fuse!();
    let env = Env::start(6);
    mounted(&env);
    let g = env.gallery_root();
    let state = &env.emu().state;
    let watch = Watch::start(&env.mnt);

    change_raises(
        &env,
        &watch,
        "new photo",
        |_| {
            state
                .add_file(
                    &format!("{g}/DCIM/Camera/20991231_120000.jpg"),
                    Content::Bytes(b"v1".to_vec().into()),
                )
                .unwrap();
        },
        &[
            "DCIM/Camera/20991231_120000.jpg|CREATE",
            "DCIM/Camera/20991231_120000.jpg|OPEN",
            "DCIM/Camera/20991231_120000.jpg|CLOSE_WRITE,CLOSE",
        ],
    );
    assert_eq!(
        std::fs::read(env.mnt.join("DCIM/Camera/20991231_120000.jpg")).unwrap(),
        b"v1"
    );
    change_raises(
        &env,
        &watch,
        "new content",
        |_| {
            state
                .edit_file(
                    &format!("{g}/DCIM/Camera/20991231_120000.jpg"),
                    Content::Bytes(b"version 2".to_vec().into()),
                )
                .unwrap();
        },
        &[
            "DCIM/Camera/20991231_120000.jpg|OPEN",
            "DCIM/Camera/20991231_120000.jpg|CLOSE_WRITE,CLOSE",
        ],
    );
    assert_eq!(
        std::fs::read(env.mnt.join("DCIM/Camera/20991231_120000.jpg")).unwrap(),
        b"version 2"
    );
    change_raises(
        &env,
        &watch,
        "rename",
        |_| {
            state
                .rename_item(&format!("{g}/DCIM/Camera/20991231_120000.jpg"), "renamed.jpg")
                .unwrap()
        },
        &[
            "DCIM/Camera/20991231_120000.jpg|MOVED_FROM",
            "DCIM/Camera/renamed.jpg|MOVED_TO",
        ],
    );
    change_raises(
        &env,
        &watch,
        "move to another folder",
        |_| {
            state
                .move_item(
                    &format!("{g}/DCIM/Camera/renamed.jpg"),
                    &format!("{g}/DCIM/Screenshots"),
                    None,
                )
                .unwrap()
        },
        &[
            "DCIM/Camera/renamed.jpg|MOVED_FROM",
            "DCIM/Screenshots/renamed.jpg|MOVED_TO",
        ],
    );
    let moved = env.mnt.join("DCIM/Screenshots/renamed.jpg");
    assert_eq!(std::fs::read(&moved).unwrap(), b"version 2");
    let id = xattr(&moved, "user.galleryfs.id");
    assert_eq!(
        state.item_json(&format!("{g}/DCIM/Screenshots/renamed.jpg")).unwrap()["id"].as_str(),
        Some(id.as_str()),
        "the item keeps its OneDrive id"
    );
    assert_ne!(
        xattr(&moved, "user.galleryfs.state"),
        "dirty",
        "nothing recorded as a local edit"
    );
    change_raises(
        &env,
        &watch,
        "delete",
        |_| state.delete_item(&format!("{g}/DCIM/Screenshots/renamed.jpg")).unwrap(),
        &["DCIM/Screenshots/renamed.jpg|DELETE"],
    );
    assert!(!moved.exists());
    change_raises(
        &env,
        &watch,
        "new folder",
        |_| {
            state.add_folder(&format!("{g}/DCIM/Album")).unwrap();
        },
        &["DCIM/Album|CREATE,ISDIR"],
    );
    change_raises(
        &env,
        &watch,
        "folder renamed",
        |_| state.rename_item(&format!("{g}/DCIM/Album"), "Holidays").unwrap(),
        &[
            "DCIM/Album|MOVED_FROM,ISDIR",
            "DCIM/Holidays|MOVED_TO,ISDIR",
            "DCIM/Holidays/|MOVE_SELF",
        ],
    );
    change_raises(
        &env,
        &watch,
        "new photo in the new folder",
        |_| {
            state
                .add_file(
                    &format!("{g}/DCIM/Holidays/beach.jpg"),
                    Content::Bytes(b"sand".to_vec().into()),
                )
                .unwrap();
        },
        &[
            "DCIM/Holidays/beach.jpg|CREATE",
            "DCIM/Holidays/beach.jpg|OPEN",
            "DCIM/Holidays/beach.jpg|CLOSE_WRITE,CLOSE",
        ],
    );
    change_raises(
        &env,
        &watch,
        "folder removed",
        |_| state.delete_item(&format!("{g}/DCIM/Holidays")).unwrap(),
        &[
            "DCIM/Holidays/beach.jpg|DELETE",
            "DCIM/Holidays/|DELETE_SELF",
            "DCIM/Holidays|DELETE,ISDIR",
        ],
    );
    assert!(!env.mnt.join("DCIM/Holidays").exists());

    // The replays changed nothing on OneDrive and left nothing to upload.
    assert_eq!(
        writes_to_onedrive(&env),
        Vec::<String>::new(),
        "no upload, move or delete request"
    );
    let status = env.status_json();
    assert_eq!(status["outbox"]["pending"], 0, "nothing journalled: {status}");
    drop(watch);
    env.unmount();
}

fn xattr(path: &Path, name: &str) -> String {
    let out = Command::new("getfattr")
        .args(["--only-values", "-n", name])
        .arg(path)
        .output()
        .expect("getfattr is needed: apt-get install attr");
    assert!(
        out.status.success(),
        "getfattr {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_burst_of_remote_changes_under_concurrent_listing_raises_every_event_without_deadlock() {
    require_fuse!();
    let env = Env::start(6);
    mounted(&env);
    let g = env.gallery_root();
    let state = &env.emu().state;
    let watch = Watch::start(&env.mnt);
    // Other processes list and stat the folders all along.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listers: Vec<_> = (0..3)
        .map(|_| {
            let (stop, dir) = (stop.clone(), env.mnt.join("DCIM/Camera"));
            std::thread::spawn(move || {
                let mut rounds = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(entries) = std::fs::read_dir(&dir) {
                        for e in entries.flatten() {
                            let _ = e.metadata();
                        }
                    }
                    rounds += 1;
                }
                rounds
            })
        })
        .collect();

    const N: usize = 40;
    let from = watch.count();
    for i in 0..N {
        state
            .add_file(
                &format!("{g}/DCIM/Camera/burst_{i:02}.jpg"),
                Content::Bytes(format!("{i}").into_bytes().into()),
            )
            .unwrap();
    }
    let creates = |w: &Watch| w.since(from).iter().filter(|(_, e)| e.ends_with("|CREATE")).count();
    assert!(
        wait_until(Duration::from_secs(POLL + 5), || creates(&watch) == N),
        "every addition raises IN_CREATE: {} of {N}",
        creates(&watch)
    );
    let from = watch.count();
    for i in 0..N {
        state.delete_item(&format!("{g}/DCIM/Camera/burst_{i:02}.jpg")).unwrap();
    }
    let deletes = |w: &Watch| w.since(from).iter().filter(|(_, e)| e.ends_with("|DELETE")).count();
    assert!(
        wait_until(Duration::from_secs(POLL + 5), || deletes(&watch) == N),
        "every removal raises IN_DELETE: {} of {N}",
        deletes(&watch)
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in listers {
        assert!(l.join().unwrap() > 0);
    }
    // The mount still answers, shows the final state and sent nothing back.
    let names: Vec<_> = std::fs::read_dir(env.mnt.join("DCIM/Camera"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with("burst_")), "{names:?}");
    assert_eq!(writes_to_onedrive(&env), Vec::<String>::new());
    drop(watch);
    env.unmount();
}

#[test]
fn a_read_only_mount_stays_read_only_and_still_raises_the_events() {
    require_fuse!();
    let env = Env::start(6);
    assert!(env.rt.block_on(env.emu().wait_for_hashes(Duration::from_secs(60))));
    env.login();
    env.emu().state.socketio.set_enabled(false);
    env.mount(&format!("poll_interval={POLL},ro"));
    let camera = env.mnt.join("DCIM/Camera");
    assert!(camera.is_dir());
    // Read-only for applications in every way they can tell.
    let err = std::fs::write(camera.join("local.jpg"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    let st = nix::sys::statvfs::statvfs(&env.mnt).unwrap();
    assert!(st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == env.mnt.to_str())
        .expect("mounted");
    assert!(line.split(' ').nth(3).unwrap().split(',').any(|o| o == "ro"), "{line}");

    let g = env.gallery_root();
    let state = &env.emu().state;
    let watch = Watch::start(&env.mnt);
    change_raises(
        &env,
        &watch,
        "new photo (ro)",
        |_| {
            state
                .add_file(
                    &format!("{g}/DCIM/Camera/ro.jpg"),
                    Content::Bytes(b"ro".to_vec().into()),
                )
                .unwrap();
        },
        &[
            "DCIM/Camera/ro.jpg|CREATE",
            "DCIM/Camera/ro.jpg|OPEN",
            "DCIM/Camera/ro.jpg|CLOSE_WRITE,CLOSE",
        ],
    );
    change_raises(
        &env,
        &watch,
        "delete (ro)",
        |_| state.delete_item(&format!("{g}/DCIM/Camera/ro.jpg")).unwrap(),
        &["DCIM/Camera/ro.jpg|DELETE"],
    );
    let err = std::fs::remove_file(camera.read_dir().unwrap().next().unwrap().unwrap().path()).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    assert_eq!(writes_to_onedrive(&env), Vec::<String>::new());
    drop(watch);
    env.unmount();
}
