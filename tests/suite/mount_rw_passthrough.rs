//! FUSE passthrough on a writable mount, through a real mount of the emulator's gallery: a complete cached
//! original is read by the kernel (the daemon reads none of its bytes); a writer opening it while a passthrough
//! reader has it open succeeds, its bytes are what every open sees and what reaches OneDrive; the file is `dirty`
//! (never OneDrive's version) until the upload; and a `kill -9` right after such a write loses nothing: the next
//! start uploads the edit.

use crate::common;
use crate::mount_cached_reads::largest_photo;
use crate::reliability_support::{self, remote_hash};

use common::e2e::{is_mounted, wait_until, Env};
use galleryfs::remote::QuickXorHash;
use std::os::unix::fs::FileExt;
use std::time::Duration;

fn daemon_pid(env: &Env) -> i32 {
    reliability_support::daemon_pid(env).expect("the mount records its daemon's pid")
}

/// Bytes the daemon has read with `read`-like system calls so far (`rchar` of /proc/PID/io): a read the daemon
/// answers costs it at least the bytes it returns; a read the kernel passes through costs it nothing.
fn daemon_read_bytes(pid: i32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("rchar in /proc/PID/io")
}

/// Opens `path` and reads it whole (`size` bytes), asserting that the kernel passed the read through: the daemon
/// read less than a quarter of it. Returns the open file and the bytes.
fn passthrough_reader(pid: i32, path: &std::path::Path, size: u64) -> (std::fs::File, Vec<u8>) {
    let file = std::fs::File::open(path).unwrap();
    let before = daemon_read_bytes(pid);
    let mut whole = vec![0u8; size as usize];
    file.read_exact_at(&mut whole, 0).unwrap();
    let read_by_daemon = daemon_read_bytes(pid) - before;
    assert!(
        read_by_daemon < size / 4,
        "the daemon read {read_by_daemon} bytes for a {size}-byte read: not a passthrough open"
    );
    (file, whole)
}

fn state_of(path: &std::path::Path) -> String {
    common::sh_ok(&format!(
        "getfattr --only-values -n user.galleryfs.state '{}'",
        path.display()
    ))
}

/// A mounted gallery whose largest photo is complete in the cache, remounted so that the next opens find it
/// complete (an `rw` mount with `options`).
fn cached_photo(options: &str) -> (Env, String, u64, String) {
    require_passthrough();
    let env = Env::start(20);
    assert!(
        env.rt.block_on(env.emu().wait_for_hashes(Duration::from_secs(60))),
        "emulator hashes ready"
    );
    env.login();
    env.mount(options);
    let (rel, size, hash) = largest_photo(&env);
    let bytes = std::fs::read(env.mnt.join(&rel)).unwrap();
    assert_eq!(QuickXorHash::of(&bytes), hash, "first read (downloaded)");
    assert_eq!(state_of(&env.mnt.join(&rel)), "cached");
    env.unmount();
    env.mount(options);
    (env, rel, size, hash)
}

/// FUSE passthrough needs root (the backing-file ioctl) and kernel ≥ 6.9: without them these tests prove nothing.
fn require_passthrough() {
    let kernel = common::sh_ok("uname -r");
    let version: Vec<u32> = kernel
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    assert!(
        nix::unistd::geteuid().is_root() && version >= vec![6, 9],
        "FUSE passthrough needs root and kernel ≥ 6.9 (kernel {kernel})"
    );
}

#[test]
fn cached_reads_bypass_the_daemon_and_a_writer_joins_the_readers() {
    require_fuse!();
    let (env, rel, size, hash) = cached_photo("poll_interval=600,thumbnails=off,write_back=1");
    let path = env.mnt.join(&rel);
    let pid = daemon_pid(&env);

    // A reader of the complete original: the kernel reads the cache file, the daemon none of its bytes.
    let (a, whole) = passthrough_reader(pid, &path, size);
    assert_eq!(QuickXorHash::of(&whole), hash, "reader a: OneDrive's bytes");

    // A writer opens the file while the passthrough reader has it open: no EIO; what it writes every open sees.
    let edit = b"EDITED THROUGH PASSTHROUGH";
    let w = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("a writer's open alongside a passthrough reader must not fail");
    w.write_all_at(edit, 100).unwrap();
    let mut seen = vec![0u8; edit.len()];
    a.read_exact_at(&mut seen, 100).unwrap();
    assert_eq!(&seen[..], edit, "the reader sees the writer's bytes");
    let b = std::fs::File::open(&path).expect("a new reader while the writer is open");
    b.read_exact_at(&mut seen, 100).unwrap();
    assert_eq!(&seen[..], edit, "a new reader sees the writer's bytes");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size, "size unchanged");
    // Growing the file through the writer: stat follows.
    w.write_all_at(b"tail", size).unwrap();
    drop(w);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        size + 4,
        "size after the append"
    );
    let mut expected = whole.clone();
    expected[100..100 + edit.len()].copy_from_slice(edit);
    expected.extend_from_slice(b"tail");
    let new_hash = QuickXorHash::of(&expected);
    assert_ne!(
        state_of(&path),
        "cached",
        "an edited file is never OneDrive's version before its upload"
    );

    // Uploaded: OneDrive has the edited bytes; every open reads them.
    assert!(
        wait_until(Duration::from_secs(60), || remote_hash(&env, &rel).as_deref()
            == Some(new_hash.as_str())),
        "OneDrive has the edited bytes"
    );
    drop((a, b));
    assert!(std::fs::read(&path).unwrap() == expected, "a new open after the upload");
    env.unmount();
    env.mount("poll_interval=600,thumbnails=off");
    assert!(std::fs::read(&path).unwrap() == expected, "after a remount");
    env.unmount();
}

#[test]
fn kill_9_after_a_write_through_passthrough_loses_nothing() {
    require_fuse!();
    let (env, rel, size, hash) = cached_photo("poll_interval=600,thumbnails=off,write_back=600");
    let path = env.mnt.join(&rel);
    let pid = daemon_pid(&env);
    let (a, whole) = passthrough_reader(pid, &path, size);
    let edit = b"WRITTEN BEFORE THE CRASH";
    let w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    w.write_all_at(edit, 0).unwrap();
    let mut expected = whole.clone();
    expected[..edit.len()].copy_from_slice(edit);
    let new_hash = QuickXorHash::of(&expected);

    // kill -9 with the writer still open: no close, no flush, no journalled upload.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err()
    }));
    drop((a, w));
    let _ = std::process::Command::new("umount").arg("-l").arg(&env.mnt).status();
    assert!(wait_until(Duration::from_secs(10), || !is_mounted(&env.mnt)));
    assert_eq!(
        remote_hash(&env, &rel).as_deref(),
        Some(hash.as_str()),
        "nothing uploaded yet"
    );

    // The next start uploads the edit; the mount serves the edited bytes, never the old version.
    env.mount("poll_interval=600,thumbnails=off,write_back=0");
    assert!(std::fs::read(&path).unwrap() == expected, "the edit after the restart");
    assert!(
        wait_until(Duration::from_secs(60), || remote_hash(&env, &rel).as_deref()
            == Some(new_hash.as_str())),
        "OneDrive has the edit made before the crash"
    );
    env.unmount();
}

#[test]
fn a_writer_that_writes_nothing_leaves_onedrives_version_cached() {
    require_fuse!();
    let (env, rel, size, hash) = cached_photo("poll_interval=600,thumbnails=off,write_back=0");
    let path = env.mnt.join(&rel);
    let ctag = |env: &Env| {
        env.emu()
            .state
            .item_json(&format!("{}/{rel}", env.gallery_root()))
            .unwrap()["cTag"]
            .clone()
    };
    let before = ctag(&env);
    let a = std::fs::File::open(&path).unwrap();
    let mut whole = vec![0u8; size as usize];
    a.read_exact_at(&mut whole, 0).unwrap();
    let w = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("a writer's open alongside a passthrough reader");
    let mut head = vec![0u8; 4096];
    w.read_exact_at(&mut head, 0).unwrap();
    assert_eq!(&head[..], &whole[..4096]);
    drop(w);
    // The release finds OneDrive's bytes unchanged: the file is OneDrive's cached version again, nothing uploaded.
    assert!(
        wait_until(Duration::from_secs(10), || state_of(&path) == "cached"),
        "state after an unchanged writer's close: {}",
        state_of(&path)
    );
    drop(a);
    assert_eq!(QuickXorHash::of(&std::fs::read(&path).unwrap()), hash);
    assert_eq!(ctag(&env), before, "no new version on OneDrive");
    // Read-only mounts (no staging area) read it too.
    env.unmount();
    env.mount("poll_interval=600,thumbnails=off,ro");
    assert_eq!(
        QuickXorHash::of(&std::fs::read(&path).unwrap()),
        hash,
        "read-only mount"
    );
    env.unmount();
}

#[test]
fn freeing_a_file_that_passthrough_readers_have_open_keeps_new_opens_working() {
    require_fuse!();
    let (env, rel, size, hash) = cached_photo("poll_interval=600,thumbnails=off");
    let path = env.mnt.join(&rel);
    let pid = daemon_pid(&env);
    let (a, _) = passthrough_reader(pid, &path, size);
    // "Free up space" while the passthrough reader has it open.
    common::sh_ok(&format!("setfattr -n user.galleryfs.free -v 1 '{}'", path.display()));
    assert_eq!(state_of(&path), "cloud");
    // New opens meanwhile read OneDrive's bytes (the kernel refuses an open of another file with EIO).
    let b = std::fs::File::open(&path).expect("a new open after the file was freed");
    let mut again = vec![0u8; size as usize];
    b.read_exact_at(&mut again, 0).expect("a read through the new open");
    assert_eq!(QuickXorHash::of(&again), hash, "the new open reads OneDrive's bytes");
    drop((a, b));
    assert_eq!(
        QuickXorHash::of(&std::fs::read(&path).unwrap()),
        hash,
        "after every reader closed"
    );
    env.unmount();
}

#[test]
fn a_remote_change_is_never_served_as_the_old_bytes_to_new_opens() {
    require_fuse!();
    let (env, rel, size, hash) = cached_photo("poll_interval=1,thumbnails=off");
    let path = env.mnt.join(&rel);
    let pid = daemon_pid(&env);
    let (a, whole) = passthrough_reader(pid, &path, size);
    // OneDrive gets a new version while the passthrough reader has the old one open.
    let new_bytes: Vec<u8> = (0..size + 1000).map(|i| (i % 251) as u8).collect();
    env.emu()
        .state
        .edit_file(
            &format!("{}/{rel}", env.gallery_root()),
            galleryfs::emulator::media::Content::Bytes(new_bytes.clone().into()),
        )
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || std::fs::metadata(&path)
            .is_ok_and(|m| m.len() == size + 1000)),
        "the mount shows the new version"
    );
    // A new open meanwhile: the new bytes, or a refusal — never the old version.
    match std::fs::read(&path) {
        Ok(read) => {
            assert_ne!(QuickXorHash::of(&read), hash, "a new open served the old version");
            assert!(read == new_bytes, "a new open reads the new version");
        }
        Err(e) => eprintln!("a new open next to the old version's passthrough reader: {e}"),
    }
    // The old reader keeps its version.
    let mut again = vec![0u8; 4096];
    a.read_exact_at(&mut again, 0).unwrap();
    assert_eq!(&again[..], &whole[..4096], "the old reader keeps the bytes it opened");
    drop(a);
    assert!(
        std::fs::read(&path).unwrap() == new_bytes,
        "after the old reader closed"
    );
    env.unmount();
}

#[test]
fn truncating_opens_and_truncate_next_to_a_passthrough_reader() {
    require_fuse!();
    let (env, rel, size, _hash) = cached_photo("poll_interval=600,thumbnails=off,write_back=0");
    let path = env.mnt.join(&rel);
    let pid = daemon_pid(&env);
    let (a, _) = passthrough_reader(pid, &path, size);

    // `O_TRUNC` while the reader has it open: the reader sees what a local file would show.
    common::sh_ok(&format!("printf 'replaced content' > '{}'", path.display()));
    assert_eq!(std::fs::read(&path).unwrap(), b"replaced content");
    let mut head = vec![0u8; 64];
    let n = a.read_at(&mut head, 0).unwrap();
    assert_eq!(
        &head[..n],
        b"replaced content",
        "the open reader after O_TRUNC and a write"
    );
    let expected = QuickXorHash::of(b"replaced content");
    assert!(
        wait_until(Duration::from_secs(60), || remote_hash(&env, &rel).as_deref()
            == Some(expected.as_str())),
        "OneDrive has the replaced content"
    );

    // truncate(2) with the reader still open.
    common::sh_ok(&format!("truncate -s 8 '{}'", path.display()));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 8);
    let n = a.read_at(&mut head, 0).unwrap();
    assert_eq!(&head[..n], b"replaced", "the open reader after truncate");
    let expected = QuickXorHash::of(b"replaced");
    assert!(
        wait_until(Duration::from_secs(60), || remote_hash(&env, &rel).as_deref()
            == Some(expected.as_str())),
        "OneDrive has the truncated content"
    );
    drop(a);
    assert_eq!(std::fs::read(&path).unwrap(), b"replaced");
    env.unmount();
}
