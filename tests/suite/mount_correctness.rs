//! Through a real mount of the emulator: bytes that fail their quickXorHash are never served (not on the read that
//! found them, not on any later one, not from the kernel's page cache), truncated downloads and a remote edit racing
//! a read end in `EIO` (`ESTALE` for the edit) and then the right bytes; a full OneDrive is noticed within two poll intervals (`ENOSPC`,
//! `df`); a clean unmount logs no warning.

use crate::common;

use common::e2e::{wait_until, Env};
use galleryfs::emulator::faults::{FaultHost, FaultKind, FaultRule};
use galleryfs::emulator::media::Content;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

fn log(env: &Env) -> String {
    std::fs::read_to_string(env.cache_dir().join("default/galleryfs.log")).unwrap_or_default()
}

/// Bytes that look like nothing in particular (xorshift), `len` of them.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// Adds `DCIM/Camera/<name>` to the emulator's gallery; returns its path from the drive root.
fn add_photo(env: &Env, name: &str, bytes: &[u8]) -> String {
    let full = format!("{}/DCIM/Camera/{name}", env.gallery_root());
    env.emu()
        .state
        .add_file(&full, Content::Bytes(bytes.to_vec().into()))
        .unwrap();
    full
}

/// `cat FILE`: the whole file, or the errno that ended it.
fn cat(path: &Path) -> Result<Vec<u8>, i32> {
    std::fs::read(path).map_err(|e| e.raw_os_error().unwrap_or(0))
}

fn assert_eio(what: &str, read: Result<Vec<u8>, i32>, bad: &[u8], env: &Env) {
    match read {
        Err(errno) => assert_eq!(errno, libc::EIO, "{what}: errno"),
        Ok(bytes) => panic!(
            "{what}: read succeeded with {} bytes ({}) instead of EIO\nlog:\n{}",
            bytes.len(),
            if bytes == bad {
                "the damaged bytes"
            } else {
                "other bytes"
            },
            log(env)
        ),
    }
}

#[test]
fn bytes_that_fail_their_check_are_never_served_again() {
    require_fuse!();
    let env = Env::start(0);
    let good = noise(3 * 1024 * 1024 + 12_345, 7);
    let full = add_photo(&env, "damaged.jpg", &good);
    env.login();
    env.mount("poll_interval=600,thumbnails=off");
    let path = env.mnt.join("DCIM/Camera/damaged.jpg");

    // OneDrive's stored copy damaged in its first page, its hashes unchanged: the first page is answered (and kept
    // by the kernel) long before the whole file is downloaded and checked.
    env.emu().state.corrupt_file(&full, 100, 0xff).unwrap();
    let mut bad = good.clone();
    bad[100] ^= 0xff;

    assert_eio("the first cat", cat(&path), &bad, &env);
    assert_eio("the second cat", cat(&path), &bad, &env);
    // Nothing of the damaged version is served, not even the first page.
    let f = std::fs::File::open(&path).unwrap();
    let mut page = vec![0u8; 4096];
    let err = f.read_exact_at(&mut page, 0).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "a read of the first page: {err}");
    drop(f);
    assert!(
        log(&env).contains("were wrong or incomplete and were discarded"),
        "the log says what happened:\n{}",
        log(&env)
    );
    let state = common::sh_ok(&format!(
        "getfattr --only-values -n user.galleryfs.state '{}'",
        path.display()
    ));
    assert_eq!(state, "cloud", "the damaged download is not cached");

    // OneDrive's copy is good again (same version): the right bytes come back, and stay.
    env.emu().state.corrupt_file(&full, 100, 0xff).unwrap();
    assert!(cat(&path).unwrap() == good, "the good copy is served once it verifies");
    assert!(cat(&path).unwrap() == good, "and again from the cache");
    env.unmount();
}

#[test]
fn truncated_downloads_end_in_eio_and_a_remote_edit_racing_a_read_in_estale_then_the_right_bytes() {
    require_fuse!();
    let env = Env::start(0);
    let good = noise(2 * 1024 * 1024 + 777, 11);
    add_photo(&env, "cut.jpg", &good);
    let first = noise(4 * 1024 * 1024 + 1, 13);
    let edited_path = add_photo(&env, "edited.jpg", &first);
    env.login();
    env.mount("poll_interval=1,thumbnails=off");

    // Every download cut short (full Content-Length declared, then the connection closes).
    let path = env.mnt.join("DCIM/Camera/cut.jpg");
    env.emu().state.faults.add_rule(
        FaultRule::new(FaultKind::Truncate { after_bytes: 200_000 })
            .host(FaultHost::Content)
            .path_contains("/download/"),
    );
    assert_eio("a truncated download", cat(&path), &[], &env);
    assert_eio("a truncated download, again", cat(&path), &[], &env);
    assert!(
        log(&env).contains("OneDrive cannot be reached; check the network"),
        "the log says what happened (the connection kept breaking) and what to do:\n{}",
        log(&env)
    );
    env.emu().state.faults.clear_rules();
    assert!(cat(&path).unwrap() == good, "the whole file once downloads complete");

    // A remote edit lands while a handle is reading the old version: the handle reads the old version or fails
    // with ESTALE (never a mix of versions); a new open reads the new version.
    let path = env.mnt.join("DCIM/Camera/edited.jpg");
    let mut f = std::fs::File::open(&path).unwrap();
    let mut head = vec![0u8; 64 * 1024];
    f.read_exact(&mut head).unwrap();
    assert!(head == first[..head.len()], "the head of the first version");
    let second = noise(3 * 1024 * 1024 + 5, 17);
    env.emu()
        .state
        .edit_file(&edited_path, Content::Bytes(second.clone().into()))
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || std::fs::metadata(&path)
            .is_ok_and(|m| m.len() == second.len() as u64)),
        "the edit shows in the mount"
    );
    f.seek(SeekFrom::Start(head.len() as u64)).unwrap();
    let mut rest = Vec::new();
    match f.read_to_end(&mut rest) {
        Ok(_) => assert!(rest == first[head.len()..], "the old handle reads only the old version"),
        Err(e) => {
            assert_eq!(e.raw_os_error(), Some(libc::ESTALE), "{e}");
            assert!(
                log(&env).contains("changed on OneDrive while it was open; close and reopen it"),
                "the log says what to do:\n{}",
                log(&env)
            );
        }
    }
    drop(f);
    assert!(cat(&path).unwrap() == second, "a new open reads the new version");
    env.unmount();
}

#[test]
fn a_full_onedrive_is_noticed_within_two_poll_intervals() {
    require_fuse!();
    let env = Env::start(3);
    env.login();
    let poll = Duration::from_secs(2);
    env.mount("poll_interval=2,write_back=0,thumbnails=off");
    let m = env.mnt.display().to_string();
    // Give the first rounds time to run (the quota is read at the first listing).
    std::thread::sleep(2 * poll);
    let df = || {
        let s = nix::sys::statvfs::statvfs(&env.mnt).unwrap();
        let unit = s.fragment_size() as u64;
        (s.blocks() as u64 * unit, s.blocks_available() as u64 * unit)
    };

    // OneDrive full: a smaller plan than what is stored.
    let total: i64 = 7_777 * 4096;
    let q = env.emu().state.set_quota(Some(total), Some(total + 4096));
    assert_eq!(q.state, "exceeded");
    let reported = Instant::now();
    // df and the ENOSPC check change together: no write is tried before df shows the new figures (one accepted
    // before would be refused later with 507, and that would hold writes back after the quota is normal again).
    let noticed = wait_until(2 * poll + Duration::from_secs(2), || df() == (total as u64, 0));
    assert!(
        noticed,
        "within two poll intervals df shows the new quota: df = {:?} after {:?}\nlog:\n{}",
        df(),
        reported.elapsed(),
        log(&env)
    );
    let err = std::fs::write(format!("{m}/new.jpg"), vec![1u8; 10_000]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");

    // Room again: within two intervals df shows it and writes work.
    env.emu().state.set_quota(Some(total * 4), Some(total));
    let free = (total * 3) as u64;
    assert!(
        wait_until(2 * poll + Duration::from_secs(2), || df() == ((total * 4) as u64, free)),
        "df shows the room: {:?}",
        df()
    );
    std::fs::write(format!("{m}/new.jpg"), vec![1u8; 10_000]).unwrap();
    env.unmount();
}

#[test]
fn a_clean_unmount_logs_no_warning() {
    require_fuse!();
    let env = Env::start(12);
    env.login();
    env.mount("poll_interval=1,write_back=0");
    let m = env.mnt.display().to_string();
    // Activity: listings, a read, a write that is uploaded, thumbnails, polls and the notification channel.
    common::sh_ok(&format!("ls -lR '{m}' > /dev/null"));
    let photo = std::fs::read_dir(env.mnt.join("DCIM/Camera"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::read(&photo).unwrap();
    std::fs::write(format!("{m}/made-here.jpg"), noise(300_000, 3)).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || env.status_json()["outbox"]["pending"] == 0),
        "the upload went through: {}",
        env.status_json()
    );
    // Requests in flight when the unmount comes: a thumbnail pass over many new photos, and slow polls.
    for i in 0..300 {
        add_photo(&env, &format!("late-{i}.jpg"), &noise(2_000, i + 20));
    }
    env.emu()
        .state
        .faults
        .add_rule(FaultRule::new(FaultKind::Latency { ms: 300 }));
    assert!(
        wait_until(Duration::from_secs(20), || env
            .mnt
            .join("DCIM/Camera/late-299.jpg")
            .exists()),
        "the new photos show"
    );
    let before = log(&env).len();
    env.unmount();
    assert!(
        wait_until(Duration::from_secs(10), || log(&env).contains("INFO unmounted")),
        "the daemon ended: {}",
        log(&env)
    );
    let shutdown = log(&env)[before..].to_string();
    let loud: Vec<&str> = shutdown
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(loud.is_empty(), "warnings at a clean unmount:\n{}", loud.join("\n"));
}
