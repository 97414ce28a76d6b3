//! Mounting like any Linux filesystem, through the real binary: the daemonized form, `mount -t fuse.galleryfs`,
//! `mount -a` on a temporary fstab, the `mount.galleryfs` helper, two accounts at once, `galleryfs demo`, and the
//! one-line failure messages (missing or busy mount point, not signed in, bad options, sign-in revoked).

use crate::common;

use common::e2e::{is_mounted, wait_until, Env};
use std::process::Command;
use std::time::Duration;

/// PATH with the binary's directory first, as if galleryfs were installed.
fn path_with_binary() -> String {
    let dir = std::path::Path::new(env!("CARGO_BIN_EXE_galleryfs"))
        .parent()
        .unwrap()
        .display()
        .to_string();
    format!("{dir}:{}", std::env::var("PATH").unwrap_or_default())
}

fn mount_cmd(env: &Env, args: &[&str]) -> std::process::Output {
    Command::new("mount")
        .args(args)
        .env("PATH", path_with_binary())
        .env("GALLERYFS_CONFIG_DIR", env.dir.path().join("config"))
        .env("GALLERYFS_CACHE_DIR", env.cache_dir())
        .env("XDG_CACHE_HOME", env.xdg_cache())
        .output()
        .expect("run mount")
}

/// mount(8) runs helpers with a fixed PATH, so fstab mounts need galleryfs where it looks (contract: install it in
/// /usr/local/bin). The calling thread enters a private mount namespace in which a directory holding only a link to
/// the test binary is bound over /usr/local/bin: mount(8), its helpers and the daemons they start (this thread's
/// children) find galleryfs there, and nothing outside the test sees it. Needs root.
struct PrivateBinDir {
    _dir: tempfile::TempDir,
}

impl PrivateBinDir {
    const DIR: &'static str = "/usr/local/bin";

    fn enter() -> PrivateBinDir {
        use nix::mount::{mount, MsFlags};
        // SAFETY: unshare(2) with CLONE_NEWNS changes the namespace of the calling thread only.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNS) };
        assert_eq!(rc, 0, "unshare(CLONE_NEWNS): {}", std::io::Error::last_os_error());
        // Nothing mounted from here on propagates to the namespace the thread came from.
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .expect("make the new mount namespace private");
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_galleryfs"), dir.path().join("galleryfs")).unwrap();
        mount(
            Some(dir.path()),
            Self::DIR,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap_or_else(|e| panic!("bind-mount over {}: {e}", Self::DIR));
        PrivateBinDir { _dir: dir }
    }
}

impl Drop for PrivateBinDir {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(Self::DIR, nix::mount::MntFlags::MNT_DETACH);
    }
}

fn has_mount_fuse3() -> bool {
    ["/sbin/mount.fuse3", "/usr/sbin/mount.fuse3"]
        .iter()
        .any(|p| std::path::Path::new(p).exists())
}

#[test]
fn fstab_forms_and_every_way_of_unmounting() {
    require_fuse!();
    if !nix::unistd::geteuid().is_root() || !has_mount_fuse3() {
        skip_test!("needs root and mount.fuse3 (apt-get install fuse3)");
    }
    let _installed = PrivateBinDir::enter();
    let env = Env::start(10);
    env.login();
    let m = env.mnt.display().to_string();

    // mount -t fuse.galleryfs: mount.fuse3 runs `galleryfs default MOUNTPOINT -o OPTIONS`.
    let out = mount_cmd(
        &env,
        &[
            "-t",
            "fuse.galleryfs",
            "default",
            &m,
            "-o",
            "rw,_netdev,poll_interval=5,thumbnails=off",
        ],
    );
    assert!(
        out.status.success(),
        "mount -t: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read_dir(&env.mnt).unwrap().count() > 0,
        "the mount lists the gallery"
    );
    common::sh_ok(&format!("umount '{m}'"));
    assert!(wait_until(Duration::from_secs(10), || !is_mounted(&env.mnt)));

    // mount -a on a temporary fstab (fstab escapes the space of a mount point as \040; ours has none).
    let fstab = env.dir.path().join("fstab");
    std::fs::write(
        &fstab,
        format!("default {m} fuse.galleryfs rw,_netdev,nofail,x-systemd.automount,thumbnails=off 0 0\n"),
    )
    .unwrap();
    let out = mount_cmd(&env, &["-a", "-T", fstab.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "mount -a: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(is_mounted(&env.mnt));
    // fusermount3 -u ends it too.
    common::sh_ok(&format!("fusermount3 -u '{m}'"));
    assert!(wait_until(Duration::from_secs(10), || !is_mounted(&env.mnt)));

    // The helper for type `galleryfs` (what mount(8) runs from /sbin/mount.galleryfs).
    let helper = concat!(env!("CARGO_MANIFEST_DIR"), "/mount-helpers/mount.galleryfs");
    let out = Command::new(helper)
        .args(["default", &m, "-o", "ro,thumbnails=off"])
        .env("PATH", path_with_binary())
        .env("GALLERYFS_CONFIG_DIR", env.dir.path().join("config"))
        .env("GALLERYFS_CACHE_DIR", env.cache_dir())
        .env("XDG_CACHE_HOME", env.xdg_cache())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mount.galleryfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = std::fs::write(env.mnt.join("x.jpg"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "ro is honoured");
    // SIGTERM to the daemon unmounts cleanly.
    let pid: i32 = env.status_json()["mountpoint"]
        .as_str()
        .map(|_| {
            let rec: serde_json::Value =
                serde_json::from_slice(&std::fs::read(env.cache_dir().join("default/mount.json")).unwrap()).unwrap();
            rec["pid"].as_i64().unwrap() as i32
        })
        .unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || !is_mounted(&env.mnt)),
        "SIGTERM unmounts"
    );
    assert!(wait_until(Duration::from_secs(10), || nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        None
    )
    .is_err()));
}

#[test]
fn two_accounts_side_by_side() {
    require_fuse!();
    let env = Env::start(8);
    env.login();
    let emu = env.emu();
    env.galleryfs_ok(&[
        "login",
        "--account",
        "second",
        "--graph-url",
        &emu.graph_url(),
        "--login-url",
        &emu.login_url(),
    ]);
    let second = env.dir.path().join("Second");
    std::fs::create_dir(&second).unwrap();
    env.mount("thumbnails=off");
    env.galleryfs_ok(&[
        "mount",
        "--account",
        "second",
        second.to_str().unwrap(),
        "-o",
        "thumbnails=off",
    ]);
    let a: Vec<_> = std::fs::read_dir(&env.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let b: Vec<_> = std::fs::read_dir(&second)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(!a.is_empty());
    assert_eq!(a.len(), b.len());
    let s1 = env.status_json();
    let s2: serde_json::Value =
        serde_json::from_str(&env.galleryfs_ok(&["status", "--account", "second", "--json"])).unwrap();
    assert_eq!(s1["mountpoint"], env.mnt.display().to_string());
    assert_eq!(
        s2["mountpoint"],
        std::fs::canonicalize(&second).unwrap().display().to_string()
    );
    assert_eq!(s2["account"], "second");
    env.galleryfs_ok(&["unmount", second.to_str().unwrap()]);
    env.unmount();
    // Logging out forgets the tokens: a later mount says how to sign in.
    env.galleryfs_ok(&["logout", "--account", "second"]);
    let out = env.galleryfs(&["mount", "--account", "second", second.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("galleryfs login --account second"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn one_line_failure_messages() {
    require_fuse!();
    let env = Env::start(4);
    let m = env.mnt.display().to_string();
    // Not signed in.
    let out = env.galleryfs(&["mount", &m]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("not signed in") && err.contains("galleryfs login --account default"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    // Missing mount point.
    let out = env.galleryfs(&["mount", "/nonexistent/galleryfs/mp"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not exist") && err.contains("mkdir -p /nonexistent/galleryfs/mp"),
        "{err}"
    );
    // No /dev/fuse (a container without --device /dev/fuse), and no fusermount3 for a non-root user: run in a
    // private mount namespace that hides them (needs root, unshare(1) and the `tests` user; said when skipped).
    let bin = env!("CARGO_BIN_EXE_galleryfs");
    let has = |tool: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if nix::unistd::geteuid().is_root()
        && has("unshare")
        && has("runuser")
        && nix::unistd::User::from_name("tests").ok().flatten().is_some()
    {
        let hidden = |script: &str| {
            let out = Command::new("unshare")
                .args(["-m", "sh", "-c", script])
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            )
        };
        let (code, err) = hidden(&format!("mount -t tmpfs tmpfs /dev && '{bin}' mount '{m}'"));
        assert_eq!(code, Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.contains("/dev/fuse is missing") && err.contains("modprobe fuse"),
            "{err}"
        );
        let fusermount = common::sh_ok("command -v fusermount3").trim().to_string();
        if !fusermount.is_empty() {
            let (code, err) = hidden(&format!(
                "mount --bind /dev/null '{fusermount}' && runuser -u tests -- env HOME=/tmp '{bin}' mount /tmp"
            ));
            assert_eq!(code, Some(1), "{err}");
            assert_eq!(err.lines().count(), 1, "one line: {err}");
            assert!(err.contains("fusermount3 is missing") && err.contains("fuse3"), "{err}");
        }
    } else {
        common::skip("part: /dev/fuse and fusermount3 missing (needs root, unshare, runuser and a `tests` user)");
    }
    // Bad option: usage error.
    let out = env.galleryfs(&["mount", &m, "-o", "cache_size=lots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cache_size"));
    // Busy: something already mounted there.
    env.login();
    env.mount("thumbnails=off");
    let out = env.galleryfs(&["mount", &m]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("busy"), "{err}");

    // Sign-in revoked (password changed): the mount stays readable from cache, status says what to do.
    let first = std::fs::read_dir(env.mnt.join("DCIM/Camera"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let cached = std::fs::read(&first).unwrap();
    env.emu().state.identity.revoke_refresh_tokens();
    env.emu().state.identity.expire_access_tokens();
    let msg = "sign in again: galleryfs login --account default";
    assert!(
        wait_until(Duration::from_secs(40), || env.status_json()["message"]
            .as_str()
            .is_some_and(|m| m.contains(msg))),
        "status says to sign in again: {}",
        env.status_json()
    );
    assert_eq!(env.status_json()["signed_in"], false);
    assert_eq!(std::fs::read(&first).unwrap(), cached, "cached originals stay readable");
    let log = std::fs::read_to_string(env.cache_dir().join("default/galleryfs.log")).unwrap();
    assert!(log.contains(msg), "the log says it too");
    env.unmount();
}

#[test]
fn demo_mounts_a_sample_gallery_until_interrupted() {
    require_fuse!();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("demo");
    std::fs::create_dir(&mnt).unwrap();
    let mnt = std::fs::canonicalize(mnt).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_galleryfs"))
        .args(["demo", mnt.to_str().unwrap()])
        .env("GALLERYFS_CONFIG_DIR", dir.path().join("config"))
        .env("GALLERYFS_CACHE_DIR", dir.path().join("cache"))
        .env("XDG_CACHE_HOME", dir.path().join("xdg"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let camera = mnt.join("DCIM/Camera");
    assert!(wait_until(Duration::from_secs(60), || camera.is_dir()), "demo mounted");
    let photo = std::fs::read_dir(&camera)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jpg"))
        .unwrap();
    let bytes = std::fs::read(&photo).unwrap();
    image::load_from_memory(&bytes).expect("a viewable JPEG");
    let exif = exif::Reader::new().read_from_container(&mut std::io::Cursor::new(&bytes));
    assert!(exif.is_ok(), "sample photos carry EXIF");
    assert!(std::fs::read_dir(&camera).unwrap().any(|e| {
        let p = e.unwrap().path();
        p.extension().is_some_and(|x| x == "mp4" || x == "avi")
    }));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "demo exits 0 after Ctrl-C");
    assert!(!is_mounted(&mnt));
}

/// Samsung's help page: OneDrive full, and the gallery folder gone. Writes fail with ENOSPC while reads go on;
/// a deleted gallery keeps the local view and every pending change; `status` says why each time.
#[test]
fn a_full_onedrive_and_a_deleted_gallery_keep_what_is_local() {
    require_fuse!();
    let env = Env::start(3);
    env.login();
    env.mount("poll_interval=1,write_back=0,thumbnails=off");
    let m = env.mnt.display().to_string();
    let first = std::fs::read_dir(env.mnt.join("DCIM/Camera"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let cached = std::fs::read(&first).unwrap();

    // Full: the next upload is refused with 507, and from then on writes fail with ENOSPC.
    let used = env.emu().state.quota().used;
    env.emu().state.set_quota(Some(used + 10), Some(used + 10));
    std::fs::write(format!("{m}/big.jpg"), vec![7u8; 100_000]).unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || env.status_json()["message"]
            .as_str()
            .is_some_and(|s| s.contains("OneDrive is full"))),
        "status says OneDrive is full: {}\nlog: {}",
        env.status_json(),
        std::fs::read_to_string(env.cache_dir().join("default/galleryfs.log")).unwrap_or_default()
    );
    let err = std::fs::write(format!("{m}/more.jpg"), b"more").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert_eq!(std::fs::read(&first).unwrap(), cached, "reads go on");
    let state = common::sh_ok(&format!("getfattr --only-values -n user.galleryfs.state '{m}/big.jpg'"));
    assert_eq!(state, "dirty", "the refused upload stays on this device");
    // Space again: the kept upload goes through and writes are accepted.
    env.emu().state.set_quota(Some(used + 1_000_000_000), Some(used));
    assert!(
        wait_until(Duration::from_secs(90), || env.status_json()["outbox"]["pending"] == 0),
        "the kept upload went through once OneDrive had space: {}",
        env.status_json()
    );
    std::fs::write(format!("{m}/more.jpg"), b"more").unwrap();

    // The gallery folder deleted on OneDrive (from the web): the mount keeps its view and says so.
    assert!(wait_until(Duration::from_secs(20), || env.status_json()["outbox"]
        ["pending"]
        == 0));
    env.emu().state.delete_gallery().unwrap();
    std::fs::write(format!("{m}/after.jpg"), b"made after the folder went").unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || env.status_json()["gallery"] == "missing"),
        "status --json: {}\nlog: {}",
        env.status_json(),
        std::fs::read_to_string(env.cache_dir().join("default/galleryfs.log")).unwrap_or_default()
    );
    let text = env.galleryfs_ok(&["status"]);
    assert!(
        text.to_lowercase().contains("missing") || text.contains("deleted"),
        "{text}"
    );
    assert_eq!(std::fs::read(&first).unwrap(), cached, "cached originals stay readable");
    assert_eq!(
        std::fs::read(format!("{m}/after.jpg")).unwrap(),
        b"made after the folder went"
    );
    assert!(env.mnt.join("DCIM/Camera").is_dir(), "the local view is kept");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        env.status_json()["outbox"]["pending"].as_u64().unwrap() >= 1,
        "the pending change is kept: {}",
        env.status_json()
    );
    env.unmount();
}

/// The user unit parses cleanly for systemd (`systemd-analyze verify`, with ExecStart pointing at this build).
/// Readiness (`Type=notify`) is covered by cli_files' NOTIFY_SOCKET test; SIGTERM by the unmounting tests.
#[test]
fn the_systemd_unit_verifies() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        skip_test!("systemd-analyze is not installed (apt-get install systemd)");
    };
    assert!(out.status.success());
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/mount-helpers/galleryfs@.service")).unwrap();
    assert!(unit.contains("Type=notify") && unit.contains("ExecStart=/usr/local/bin/galleryfs mount --account %i -f"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("galleryfs@test.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/galleryfs", env!("CARGO_BIN_EXE_galleryfs")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "systemd-analyze verify: {err}"
    );
}

/// `logout --purge-cache` never deletes the cache of a mounted account (its store holds the pending changes):
/// it says to unmount first. Right after `galleryfs unmount`, while the daemon still ends, it waits for it and
/// deletes the whole cache directory.
#[test]
fn purge_cache_waits_for_the_mount_to_end_and_spares_a_mounted_account() {
    require_fuse!();
    let env = Env::start(2);
    env.login();
    env.mount("poll_interval=2,write_back=600");
    let m = env.mnt.display().to_string();
    common::sh_ok(&format!("echo pending > '{m}/pending.txt'"));
    let cache = env.cache_dir().join("default");
    let out = env.galleryfs(&["logout", "--purge-cache"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a mounted account's cache was purged: {err}");
    assert!(
        err.contains("is mounted at") && err.contains("galleryfs unmount"),
        "the message says what to do: {err}"
    );
    assert!(
        cache.join("meta.db").exists(),
        "the store with the pending change is kept"
    );
    assert!(is_mounted(&env.mnt));
    assert_eq!(
        std::fs::read_to_string(format!("{m}/pending.txt")).unwrap(),
        "pending\n"
    );
    // Unmounted: the purge, at once after, leaves nothing (the daemon's last writes included).
    env.galleryfs_ok(&["unmount", &m]);
    env.galleryfs_ok(&["logout", "--purge-cache"]);
    assert!(!cache.exists(), "the cache directory is gone");
}
