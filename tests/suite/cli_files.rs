//! Per-file commands against a real mount: `galleryfs pin` downloads originals and keeps them ("always keep on
//! this device"), `free` gives their space back, `unpin` lets them be evicted again, `status PATH --json` reports
//! one file; and a foreground mount tells systemd (`Type=notify`) it is ready only once it answers.

use crate::common;

use common::e2e::{wait_until, Env};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

fn file_status(env: &Env, path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(env.galleryfs_ok(&["status", path.to_str().unwrap(), "--json"]).trim()).unwrap()
}

#[test]
fn pin_free_unpin_and_status_of_a_path() {
    require_fuse!();
    let env = Env::start(24);
    env.login();
    env.mount("thumbnails=off");
    let camera = env.mnt.join("DCIM/Camera");
    let files: Vec<_> = std::fs::read_dir(&camera).unwrap().map(|e| e.unwrap().path()).collect();
    let photo = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "jpg"))
        .unwrap()
        .clone();

    let s = file_status(&env, &photo);
    assert_eq!(s["state"], "cloud");
    assert_eq!(s["cached_bytes"], 0);
    assert_eq!(s["size"].as_u64().unwrap(), std::fs::metadata(&photo).unwrap().len());
    assert!(s["id"].as_str().unwrap().contains('!'), "a OneDrive item id: {s}");

    // Pinning a folder downloads every file in it (quiet in a pipe) and returns when they are on this device.
    env.galleryfs_ok(&["pin", camera.to_str().unwrap()]);
    for f in &files {
        let s = file_status(&env, f);
        assert_eq!(s["state"], "pinned", "{}", f.display());
        assert_eq!(s["cached_bytes"], s["size"], "{} is on this device", f.display());
    }
    let before = env.status_json()["cache"]["used_bytes"].as_u64().unwrap();

    // free gives the space back: the file is online-only again, reads still work (fetched on demand).
    env.galleryfs_ok(&["free", photo.to_str().unwrap()]);
    let s = file_status(&env, &photo);
    assert_eq!(
        (s["state"].as_str(), s["cached_bytes"].as_u64()),
        (Some("cloud"), Some(0))
    );
    let after = env.status_json()["cache"]["used_bytes"].as_u64().unwrap();
    assert_eq!(
        after + s["size"].as_u64().unwrap(),
        before,
        "the cache gives back the freed file's size"
    );
    assert!(std::fs::read(&photo).unwrap().len() as u64 == s["size"].as_u64().unwrap());

    // unpin: still cached, no longer pinned.
    let other = files.iter().find(|p| **p != photo).unwrap();
    env.galleryfs_ok(&["unpin", other.to_str().unwrap()]);
    assert_eq!(file_status(&env, other)["state"], "cached");

    // Outside a mount: a clear error.
    let out = env.galleryfs(&["pin", "/tmp"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not inside a galleryfs mount"));
    env.unmount();
}

#[test]
fn foreground_mount_notifies_systemd_when_ready() {
    require_fuse!();
    let env = Env::start(4);
    env.login();
    let sock_path = env.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_galleryfs"))
        .args(["mount", env.mnt.to_str().unwrap(), "-f", "-o", "thumbnails=off"])
        .env("GALLERYFS_CONFIG_DIR", env.dir.path().join("config"))
        .env("GALLERYFS_CACHE_DIR", env.cache_dir())
        .env("XDG_CACHE_HOME", env.xdg_cache())
        .env("NOTIFY_SOCKET", &sock_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("a readiness notification");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means answering: the listing is there at once.
    assert!(std::fs::read_dir(env.mnt.join("DCIM")).unwrap().count() > 0);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "SIGTERM ends a foreground mount with status 0"
    );
    assert!(wait_until(Duration::from_secs(5), || !common::e2e::is_mounted(
        &env.mnt
    )));
}
