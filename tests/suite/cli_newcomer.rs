//! The first ten minutes, as a person meets galleryfs, through the real binary and real mounts: the demo's sample
//! files are real and of a phone's sizes (every photo decodes, camera photos are full-size, every video passes
//! `ffprobe`, every file's bytes are the emulator's), its terminal shows only lines for people
//! and its first Ctrl-C returns at once even when the mount is busy, the mount shows as `fuse.galleryfs` with
//! consistent `df -i` figures, `pin --account` of a folder fetches only files, `status` speaks in KiB/MiB and
//! relative times and refuses an unknown account, and `mount --help` lists every `-o` option.

use crate::common;

use common::e2e::{is_mounted, wait_until, Env};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A tool the test needs: its absence fails the test under `GALLERYFS_REQUIRE_ALL=1` (CI), and is said otherwise.
fn tool(name: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("GALLERYFS_REQUIRE_ALL").as_deref() != Ok("1"),
            "{name} is required (apt-get install ffmpeg)"
        );
        eprintln!("SKIPPED part: {name} is not installed");
    }
    found
}

fn files_below(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_below(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The mount's line of /proc/mounts: (source, type).
fn proc_mount(mnt: &Path) -> Option<(String, String)> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.get(1) == Some(&mnt.to_str().unwrap())).then(|| (f[0].to_string(), f[2].to_string()))
    })
}

struct Demo {
    dir: tempfile::TempDir,
    mnt: PathBuf,
}

/// Stops a demo that a failed assertion left running: kills it and detaches its mount (a passing test has
/// already stopped it with Ctrl-C and disarmed this).
struct StopOnFailure {
    pid: i32,
    mnt: PathBuf,
    armed: bool,
}

impl Drop for StopOnFailure {
    fn drop(&mut self) {
        if self.armed {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), nix::sys::signal::Signal::SIGKILL);
            let _ = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

impl Demo {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_galleryfs"));
        c.args(args)
            .env("GALLERYFS_CONFIG_DIR", self.dir.path().join("config"))
            .env("GALLERYFS_CACHE_DIR", self.dir.path().join("cache"))
            .env("XDG_CACHE_HOME", self.dir.path().join("xdg"))
            .env_remove("GALLERYFS_LOG")
            .env_remove("NOTIFY_SOCKET");
        c
    }

    fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = self.cmd(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("cache/demo/galleryfs.log")).unwrap_or_default()
    }
}

#[test]
fn the_demo_serves_real_files_and_stops_at_the_first_ctrl_c() {
    require_fuse!();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("Gallery");
    std::fs::create_dir(&mnt).unwrap();
    let mnt = std::fs::canonicalize(mnt).unwrap();
    let demo = Demo { dir, mnt };
    let mut child = demo
        .cmd(&["demo", demo.mnt.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stop_on_failure = StopOnFailure {
        pid: child.id() as i32,
        mnt: demo.mnt.clone(),
        armed: true,
    };
    let camera = demo.mnt.join("DCIM/Camera");
    assert!(wait_until(Duration::from_secs(60), || camera.is_dir()), "demo mounted");

    // The mount's type and its inode figures.
    let (source, fstype) = proc_mount(&demo.mnt).expect("in /proc/mounts");
    assert_eq!((source.as_str(), fstype.as_str()), ("galleryfs:demo", "fuse.galleryfs"));
    let st = nix::sys::statvfs::statvfs(&demo.mnt).unwrap();
    let (files, ffree) = (st.files() as u64, st.files_free() as u64);
    assert!(ffree <= files && files - ffree >= 120, "files {files}, free {ffree}");
    let df = common::sh_ok(&format!("df -i '{}' | tail -n 1", demo.mnt.display()));
    assert!(!df.contains(" -"), "no negative figure in df -i: {df}");

    // Every sample file is real: photos decode, videos pass ffprobe (some with the index in front, some at the
    // end), and none is a toy size.
    let mut all = Vec::new();
    files_below(&demo.mnt, &mut all);
    assert!(all.len() >= 120, "{} files", all.len());
    let ffprobe = tool("ffprobe");
    // What the demo's emulator serves, by path below the gallery: every file read through the mount equals it.
    let served: std::collections::HashMap<String, galleryfs::emulator::media::Content> =
        galleryfs::emulator::media::samsung_gallery(120, galleryfs::emulator::state::GALLERY_SEED)
            .into_iter()
            .map(|f| (f.path, f.content))
            .collect();
    let by_name: std::collections::HashMap<&str, &galleryfs::emulator::media::Content> = served
        .iter()
        .map(|(path, content)| (path.rsplit('/').next().unwrap(), content))
        .collect();
    let (mut photos, mut camera_photos, mut videos, mut fast_start) = (0, 0, 0, 0);
    for f in &all {
        let rel = f.strip_prefix(&demo.mnt).unwrap().to_str().unwrap().to_string();
        // The Timeline shows the same files by date: look them up by name.
        let name = rel.rsplit('/').next().unwrap();
        let in_gallery = if rel.starts_with("Timeline/") {
            by_name.get(name).copied()
        } else {
            served.get(&rel)
        };
        let backup;
        let content = match in_gallery {
            Some(c) => c,
            // Camera Backup's uploads to the Camera Roll: the camera photo of the time in the name.
            None => {
                let taken = chrono::NaiveDateTime::parse_from_str(name, "%Y%m%d_%H%M%S.jpg")
                    .unwrap_or_else(|e| panic!("{rel} is not in the demo's drive: {e}"))
                    .and_utc();
                backup = galleryfs::emulator::camera_backup::camera_photo(taken, taken.timestamp() as usize);
                &backup
            }
        };
        let bytes = std::fs::read(f).unwrap();
        assert!(
            bytes.len() as u64 == content.len() && bytes[..] == content.read_range(0, content.len())[..],
            "{rel}: the mount's {} bytes differ from the emulator's {}",
            bytes.len(),
            content.len()
        );
        let ext = f
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "jpg" | "png" => {
                // The Timeline's copies have the same bytes (checked above): decode each file once.
                if !rel.starts_with("Timeline/") {
                    image::load_from_memory(&bytes).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                }
                let camera = rel.starts_with("DCIM/Camera/")
                    || rel.starts_with("Camera Roll/")
                    || (rel.starts_with("Timeline/") && name.as_bytes()[0].is_ascii_digit());
                if camera {
                    // A phone camera's photo, not a thumbnail-sized picture.
                    assert!(bytes.len() >= 1 << 20, "{rel}: {} bytes", bytes.len());
                    camera_photos += 1;
                } else {
                    assert!(
                        bytes.len() < 512 << 10,
                        "{rel}: {} bytes for a screenshot or app image",
                        bytes.len()
                    );
                }
                photos += 1;
            }
            "mp4" | "avi" => {
                let size = std::fs::metadata(f).unwrap().len();
                assert!(size > 256 * 1024, "{}: {size} bytes", f.display());
                let mut head = [0u8; 64];
                std::fs::File::open(f).unwrap().read_exact(&mut head).unwrap();
                if ext == "mp4" {
                    assert_eq!(&head[4..8], b"ftyp", "{}", f.display());
                    fast_start += usize::from(head.windows(4).any(|w| w == b"moov"));
                }
                if ffprobe {
                    let out = Command::new("ffprobe")
                        .args(["-v", "error", "-show_entries", "stream=codec_type,width,height"])
                        .args(["-of", "csv=p=0"])
                        .arg(f)
                        .output()
                        .unwrap();
                    let text = String::from_utf8_lossy(&out.stdout);
                    assert!(
                        out.status.success() && out.stderr.is_empty() && text.starts_with("video,"),
                        "ffprobe {}: {text} {}",
                        f.display(),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                videos += 1;
            }
            other => panic!("unexpected sample {}: {other}", f.display()),
        }
    }
    assert!(photos > 90 && videos > 3, "{photos} photos, {videos} videos");
    assert!(camera_photos > 60, "{camera_photos} camera photos");
    assert!(
        fast_start > 0 && fast_start < videos,
        "{fast_start} of {videos} videos index in front"
    );

    // Commands that act on an account take --account; pinning a folder fetches its files, not the folder.
    let shots = demo.mnt.join("DCIM/Screenshots");
    let (code, _, err) = demo.run(&["pin", "--account", "demo", shots.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = demo.run(&["pin", "--account", "nosuch", shots.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("nosuch") && err.contains("demo"), "{err}");
    for f in std::fs::read_dir(&shots).unwrap() {
        let state = common::sh_ok(&format!(
            "getfattr --only-values -n user.galleryfs.state '{}'",
            f.unwrap().path().display()
        ));
        assert_eq!(state.trim(), "pinned");
    }
    assert!(
        !demo.log().contains("not a file with content"),
        "pinning a folder fetches only files:\n{}",
        demo.log()
    );
    let (code, _, err) = demo.run(&["free", "--account", "demo", shots.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = demo.run(&["unpin", "--account", "demo", shots.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");

    // status for people: binary units and relative local times; an unknown account is an error naming the others.
    let (code, out, err) = demo.run(&["status", "--account", "demo"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("(ok)") && out.contains("iB of ") && (out.contains(" ago)") || out.contains("(now)")),
        "{out}"
    );
    assert!(!out.contains(" bytes"), "{out}");
    let (code, out, err) = demo.run(&["status", "--account", "nosuch"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.is_empty() && err.contains("\"nosuch\"") && err.contains("demo"),
        "{err}"
    );

    // Ctrl-C while a shell sits in the mount (it cannot be unmounted cleanly): the demo returns at once.
    let mut shell = Command::new("sleep").arg("60").current_dir(&camera).spawn().unwrap();
    let started = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    stop_on_failure.armed = false;
    let took = started.elapsed();
    let _ = shell.kill();
    let _ = shell.wait();
    assert!(status.success(), "demo exits 0 after Ctrl-C");
    // Not a speed figure: before, the demo waited 10 s for the busy mount's session to end.
    assert!(took < Duration::from_secs(5), "the first Ctrl-C took {took:?}");
    assert!(!is_mounted(&demo.mnt));

    // The terminal had lines for people only, and the last ones say what stays and how to remove it.
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    for level in [" INFO ", " WARN ", " DEBUG ", " ERROR "] {
        assert!(!err.contains(level), "tracing on the terminal:\n{err}");
    }
    assert!(!err.contains("journalled"), "nothing was pending:\n{err}");
    assert!(
        err.contains("fresh sample") && err.contains("logout --account demo --purge-cache"),
        "{err}"
    );
    assert!(demo.log().contains("SIGINT"), "the log file has the events");
    let (code, _, err) = demo.run(&["logout", "--account", "demo", "--purge-cache"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!demo.dir.path().join("cache/demo").exists());
}

#[test]
fn status_refuses_an_unknown_account_and_a_new_one_claims_nothing() {
    let env = Env::start(3);
    // No account at all yet.
    let out = env.galleryfs(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("galleryfs login") && err.contains("galleryfs demo"),
        "{err}"
    );
    env.login();
    // Signed in, never synced: no "(ok)" for a folder nobody looked at yet.
    let out = env.galleryfs_ok(&["status"]);
    assert!(out.contains("(not synced yet)") && !out.contains("(ok)"), "{out}");
    assert!(out.contains("cache:       0 B of 10 GiB"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&env.galleryfs_ok(&["status", "--json"])).unwrap();
    assert_eq!(json["cache"]["budget_bytes"], 10u64 << 30, "--json stays exact");
    for args in [
        &["status", "--account", "nosuch"][..],
        &["status", "--account", "nosuch", "--json"],
    ] {
        let out = env.galleryfs(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("\"nosuch\"") && err.contains("accounts: default"), "{err}");
    }
}

#[test]
fn mount_help_lists_every_option_and_a_bad_one_names_them() {
    let bin = env!("CARGO_BIN_EXE_galleryfs");
    let out = Command::new(bin).args(["mount", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "ro, rw",
        "allow_other",
        "default_permissions",
        "uid=N",
        "umask=OCTAL",
        "noatime, atime",
        "dev, nodev",
        "exec, noexec",
        "fsname=NAME",
        "account=NAME",
        "folder=PATH",
        "cache_size=SIZE",
        "poll_interval=SECONDS",
        "write_back=SECONDS",
        "thumbnails=on|off",
        "delete_guard=N",
        "_netdev",
    ] {
        let lines = help.lines().filter(|l| l.trim_start().starts_with(option)).count();
        assert_eq!(lines, 1, "{option} on a line of its own:\n{help}");
    }
    let mountpoint = help
        .lines()
        .find(|l| l.contains("<MOUNTPOINT>") && !l.contains("Usage"))
        .expect("a MOUNTPOINT entry");
    let next = help.lines().skip_while(|l| *l != mountpoint).nth(1).unwrap_or("");
    assert!(
        mountpoint.trim() != "<MOUNTPOINT>" || next.contains("directory"),
        "MOUNTPOINT is described:\n{help}"
    );
    assert!(!help.contains("(default: `default`)"), "a default shown twice:\n{help}");

    let out = Command::new(bin)
        .args(["mount", "/tmp", "-o", "rw,bogus"])
        .env("GALLERYFS_CONFIG_DIR", "/nonexistent/galleryfs-test")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"bogus\"") && err.contains("valid options:") && err.contains("cache_size=SIZE"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
