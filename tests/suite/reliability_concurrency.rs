//! Concurrency through a real mount (the `galleryfs` binary over the in-process emulator): many threads reading
//! and writing the same and different files, readdir while delta rounds apply remote changes, unlink of an open
//! file, rename while an upload runs. Each ends with invariants: content hashes on OneDrive equal a model (or,
//! where threads raced on one file, equal what the mount shows, which must be one of the versions written), no
//! duplicate or stray item, and the store checker of `reliability_support`.
//!
//! The model check of the content cache's fetch-claim protocol (shuttle, on the real `DiskCache`) is
//! `tests/content_claims_shuttle.rs`.
//! Longer variants run with `GALLERYFS_RELIABILITY_LONG=1`.

use crate::common;
use crate::reliability_support;

use common::e2e::{wait_until, Env};
use galleryfs::emulator::faults::{FaultKind, FaultRule};
use galleryfs::emulator::media::Content;
use galleryfs::remote::QuickXorHash;
use reliability_support::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const OPTIONS: &str = "poll_interval=1,write_back=0,thumbnails=off";

fn long() -> bool {
    std::env::var_os("GALLERYFS_RELIABILITY_LONG").is_some()
}

/// Atomically saves `data` as `path` the way editors do: a temp file beside it, then a rename over it.
fn save_atomically(path: &Path, tag: &str, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_file_name(format!(".{}.{tag}.tmp", path.file_name().unwrap().to_string_lossy()));
    write_file(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

/// Rewrites `path` in place (no truncation) with one `pwrite` of `data`, and closes it checking the close.
fn rewrite_in_place(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::fd::IntoRawFd;
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.write_all_at(data, 0)?;
    nix::unistd::close(f.into_raw_fd()).map_err(std::io::Error::from)
}

#[test]
fn many_readers_and_writers_on_the_same_and_different_files() {
    require_fuse!();
    let env = Env::start(2);
    env.login();
    // A remote photo bigger than one read, not cached yet: readers fetch it in parallel.
    let remote_bytes = bytes(3_000_000, 5);
    env.emu()
        .state
        .add_file(
            &format!("{}/Shared/remote.jpg", env.gallery_root()),
            Content::Bytes(remote_bytes.clone().into()),
        )
        .unwrap();
    mount_clean(&env, OPTIONS);
    let root = env.mnt.join("Shared");
    let rounds = if long() { 40 } else { 12 };
    let failed = Arc::new(AtomicBool::new(false));
    let remote_bytes = Arc::new(remote_bytes);

    std::thread::scope(|s| {
        // Readers of one remote file at random offsets: every byte is OneDrive's.
        for r in 0..4u64 {
            let (root, want, failed) = (root.clone(), remote_bytes.clone(), failed.clone());
            s.spawn(move || {
                let mut f = std::fs::File::open(root.join("remote.jpg")).unwrap();
                let mut x = r.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                for _ in 0..rounds * 4 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let off = x % (want.len() as u64 - 1);
                    let len = ((x >> 20) % 300_000).min(want.len() as u64 - off) as usize;
                    let mut buf = vec![0u8; len];
                    f.seek(SeekFrom::Start(off)).unwrap();
                    f.read_exact(&mut buf).unwrap();
                    if buf[..] != want[off as usize..off as usize + len] {
                        failed.store(true, Ordering::SeqCst);
                        panic!("reader {r}: wrong bytes at {off}+{len}");
                    }
                }
            });
        }
        // Writers of their own files: each rewrites its file and reads it back.
        for w in 0..3u32 {
            let root = root.clone();
            s.spawn(move || {
                for i in 0..rounds {
                    let data = bytes(10_000 + (i as usize * 7_919) % 200_000, w * 1000 + i);
                    let path = root.join(format!("own{w}.jpg"));
                    write_file(&path, &data).unwrap();
                    assert_eq!(std::fs::read(&path).unwrap(), data, "writer {w} round {i} reads back");
                }
            });
        }
        // Two writers rewriting one file in place (one write of the whole content each), and its reader.
        write_file(&root.join("both.jpg"), &bytes(50_000, 1)).unwrap();
        for w in 0..2u32 {
            let root = root.clone();
            s.spawn(move || {
                for i in 0..rounds {
                    let data = bytes(50_000, 90_000 + w * 1000 + i);
                    rewrite_in_place(&root.join("both.jpg"), &data).unwrap();
                }
            });
        }
        {
            let root = root.clone();
            s.spawn(move || {
                for _ in 0..rounds * 3 {
                    let got = std::fs::read(root.join("both.jpg")).unwrap();
                    assert_eq!(got.len(), 50_000, "a reader saw both.jpg with another size");
                }
            });
        }
    });
    assert!(!failed.load(Ordering::SeqCst));

    // Every file's last version reaches OneDrive; both.jpg holds what the mount shows, one of the saved versions.
    wait_drained(&env);
    let mut want: BTreeMap<String, String> = (0..3u32)
        .map(|w| {
            let i = rounds - 1;
            let data = bytes(10_000 + (i as usize * 7_919) % 200_000, w * 1000 + i);
            (format!("Shared/own{w}.jpg"), QuickXorHash::of(&data))
        })
        .collect();
    let both = std::fs::read(root.join("both.jpg")).unwrap_or_else(|e| {
        let keep = std::env::temp_dir().join("galleryfs-concurrency.log");
        let _ = std::fs::write(&keep, log_text(&env));
        panic!(
            "both.jpg after the saves: {e}\nmount: {:?}\nOneDrive: {:?}\nlog kept in {}",
            mount_tree(&root),
            remote_tree(&env)
                .into_iter()
                .filter(|(k, _)| k.starts_with("Shared"))
                .collect::<Vec<_>>(),
            keep.display()
        )
    });
    let versions: BTreeSet<String> = (0..2u32)
        .flat_map(|w| (0..rounds).map(move |i| QuickXorHash::of(&bytes(50_000, 90_000 + w * 1000 + i))))
        .collect();
    assert!(
        versions.contains(&QuickXorHash::of(&both)),
        "both.jpg is one written version, not a mix"
    );
    want.insert("Shared/both.jpg".into(), QuickXorHash::of(&both));
    want.insert("Shared/remote.jpg".into(), QuickXorHash::of(&remote_bytes));
    let files = || -> BTreeMap<String, String> {
        remote_tree(&env)
            .into_iter()
            .filter(|(k, v)| k.starts_with("Shared/") && v.1 == "file")
            .map(|(k, v)| (k, v.3.unwrap_or_default()))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(30), || files() == want),
        "OneDrive holds exactly the last versions, no temp file, no duplicate:\nwant:     {want:?}\nOneDrive: {:?}",
        files()
    );
    assert!(conflict_copies(&env).is_empty(), "{:?}", conflict_copies(&env));
    final_checks(&env, OPTIONS);
}

/// Two editors saving one file at once (temp file, rename over it): the file keeps one OneDrive item holding the
/// last saved version, no temp file and no conflict copy reach OneDrive. `with_reader`: a third thread reads the
/// file all along and must always find a whole version.
fn concurrent_atomic_saves(options: &str, with_reader: bool) {
    let env = Env::start(2);
    env.login();
    mount_clean(&env, options);
    let root = env.mnt.join("Saves");
    std::fs::create_dir(&root).unwrap();
    write_file(&root.join("both.jpg"), &bytes(50_000, 1)).unwrap();
    wait_drained(&env);
    let id = remote_id(&env, "Saves/both.jpg").expect("uploaded");
    let rounds = if long() { 30 } else { 10 };
    std::thread::scope(|s| {
        for w in 0..2u32 {
            let (root, env) = (root.clone(), &env);
            s.spawn(move || {
                for i in 0..rounds {
                    let data = bytes(50_000 + w as usize, 90_000 + w * 1000 + i);
                    save_atomically(&root.join("both.jpg"), &format!("w{w}"), &data).unwrap_or_else(|e| {
                        let keep = std::env::temp_dir().join("galleryfs-saves.log");
                        let _ = std::fs::write(&keep, log_text(env));
                        panic!("save {i} of writer {w}: {e} (log kept in {})", keep.display())
                    });
                }
            });
        }
        let (root, env) = (root.clone(), &env);
        s.spawn(move || {
            if !with_reader {
                return;
            }
            for _ in 0..rounds * 3 {
                let got = std::fs::read(root.join("both.jpg")).unwrap_or_else(|e| {
                    let keep = std::env::temp_dir().join("galleryfs-saves.log");
                    let _ = std::fs::write(&keep, log_text(env));
                    panic!("both.jpg is always there: {e} (log kept in {})", keep.display())
                });
                assert!(
                    got.len() == 50_000 || got.len() == 50_001,
                    "a torn save: {} bytes",
                    got.len()
                );
            }
        });
    });
    wait_drained(&env);
    let both = std::fs::read(root.join("both.jpg")).unwrap();
    let want = BTreeMap::from([("Saves/both.jpg".to_string(), (id, QuickXorHash::of(&both)))]);
    let files = || -> BTreeMap<String, (String, String)> {
        remote_tree(&env)
            .into_iter()
            .filter(|(k, v)| k.starts_with("Saves/") && v.1 == "file")
            .map(|(k, v)| (k, (v.0, v.3.unwrap_or_default())))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(30), || files() == want),
        "one item, the last version, no temp file or conflict copy:\nwant:     {want:?}\nOneDrive: {:?}",
        files()
    );
    final_checks(&env, options);
}

/// With the default write-back delay (2 s).
#[test]
fn concurrent_atomic_saves_of_one_file() {
    require_fuse!();
    concurrent_atomic_saves("poll_interval=1,thumbnails=off", false);
}

/// A reader of the file being saved: an open racing a rename-over reaches the replaced inode, which stays
/// readable (detached) until the kernel forgets it.
#[test]
fn concurrent_atomic_saves_of_one_file_with_a_reader() {
    require_fuse!();
    concurrent_atomic_saves("poll_interval=1,thumbnails=off", true);
}

/// An open that reaches a file just replaced by an editor's save (the kernel resolved its name before the
/// rename; here an `O_PATH` descriptor reopened through `/proc/self/fd`) reads the replaced version from the
/// cache, also after the new version's upload took the item's place in the cache.
#[test]
fn an_open_racing_an_editors_save_reads_the_replaced_version() {
    require_fuse!();
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let env = Env::start(2);
    env.login();
    mount_clean(&env, OPTIONS);
    let root = env.mnt.join("Saves");
    std::fs::create_dir(&root).unwrap();
    let (old, new) = (bytes(50_000, 1), bytes(50_001, 2));
    write_file(&root.join("both.jpg"), &old).unwrap();
    wait_drained(&env);
    let id = remote_id(&env, "Saves/both.jpg").expect("uploaded");
    let resolved = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(root.join("both.jpg"))
        .unwrap();
    save_atomically(&root.join("both.jpg"), "editor", &new).unwrap();
    wait_drained(&env);
    assert_eq!(
        remote_id(&env, "Saves/both.jpg").as_deref(),
        Some(id.as_str()),
        "the save keeps the item"
    );
    let reopened = format!("/proc/self/fd/{}", resolved.as_raw_fd());
    let got = std::fs::read(&reopened).unwrap_or_else(|e| {
        panic!(
            "the replaced version, opened after the save: {e}\n{}",
            log_text(&env)
                .lines()
                .filter(|l| l.contains("WARN"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    assert!(got == old, "the replaced version's bytes ({} bytes read)", got.len());
    assert_eq!(std::fs::read(root.join("both.jpg")).unwrap(), new);
    drop(resolved);
    final_checks(&env, OPTIONS);
}

/// The same with `write_back=0`: a temp file can finish uploading before it is renamed over its target, and
/// the replayer commits uploads of files the other editor is replacing at that moment.
#[test]
fn concurrent_atomic_saves_of_one_file_without_write_back_delay() {
    require_fuse!();
    concurrent_atomic_saves(OPTIONS, false);
}

#[test]
fn readdir_while_delta_rounds_apply_remote_changes() {
    require_fuse!();
    let env = Env::start(2);
    env.login();
    env.emu()
        .state
        .add_folder(&format!("{}/Live", env.gallery_root()))
        .unwrap();
    mount_clean(&env, OPTIONS);
    let dir = env.mnt.join("Live");
    let stop = Arc::new(AtomicBool::new(false));
    let listings = std::thread::scope(|s| {
        let lister = {
            let (dir, stop) = (dir.clone(), stop.clone());
            s.spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let names: Vec<String> = std::fs::read_dir(&dir)
                        .expect("readdir during delta apply")
                        .map(|e| e.expect("a directory entry").file_name().to_string_lossy().into_owned())
                        .collect();
                    let unique: BTreeSet<&String> = names.iter().collect();
                    assert_eq!(unique.len(), names.len(), "a name listed twice: {names:?}");
                    n += 1;
                }
                n
            })
        };
        // Remote changes in waves: adds, renames, deletes, each wave applied by a delta round.
        let gallery = env.gallery_root();
        let waves = if long() { 20 } else { 6 };
        let mut live: Vec<String> = Vec::new();
        for wave in 0..waves {
            for i in 0..8 {
                let id = env
                    .emu()
                    .state
                    .add_file(
                        &format!("{gallery}/Live/w{wave}_{i}.jpg"),
                        Content::Bytes(bytes(500 + i, wave as u32 * 10 + i as u32).into()),
                    )
                    .unwrap();
                live.push(id);
            }
            if wave > 0 {
                let renamed = live[(wave * 3) % live.len()].clone();
                env.emu()
                    .state
                    .rename_item(&renamed, &format!("renamed{wave}.jpg"))
                    .unwrap();
                let gone = live.remove((wave * 5) % live.len());
                if gone != renamed {
                    env.emu().state.delete_item(&gone).unwrap();
                } else {
                    live.push(gone);
                }
            }
            std::thread::sleep(Duration::from_millis(700));
        }
        // Wait for the last round, then stop the lister.
        let want = || -> BTreeSet<String> {
            remote_tree(&env)
                .into_keys()
                .filter_map(|k| k.strip_prefix("Live/").map(str::to_string))
                .collect()
        };
        let listed = || -> BTreeSet<String> {
            std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        };
        let settled = wait_until(Duration::from_secs(30), || listed() == want());
        stop.store(true, Ordering::SeqCst);
        let n = lister.join().unwrap();
        assert!(
            settled,
            "the mount lists OneDrive's folder:\nmount:    {:?}\nOneDrive: {:?}",
            listed(),
            want()
        );
        n
    });
    assert!(listings > 10, "the lister ran during the rounds ({listings} listings)");
    final_checks(&env, OPTIONS);
}

/// A file written here and not sent yet (a long write-back delay holds it), opened and unlinked: the open
/// descriptor reads it whole, the directory no longer lists it, and nothing ever reaches OneDrive.
#[test]
fn an_unlinked_open_new_file_stays_readable_until_closed() {
    require_fuse!();
    let env = Env::start(2);
    env.login();
    mount_clean(&env, "poll_interval=1,write_back=600,thumbnails=off");
    let m = env.mnt.clone();
    let data = bytes(300_000, 79);
    write_file(&m.join("new.jpg"), &data).unwrap();
    let mut f = std::fs::File::open(m.join("new.jpg")).unwrap();
    let mut head = vec![0u8; 1000];
    f.read_exact(&mut head).unwrap();
    std::fs::remove_file(m.join("new.jpg")).unwrap();
    assert!(!m.join("new.jpg").exists());
    let mut rest = Vec::new();
    f.read_to_end(&mut rest).unwrap();
    head.extend(rest);
    assert!(head == data, "the unlinked file reads whole until closed");
    drop(f);
    wait_drained(&env);
    assert!(remote_id(&env, "new.jpg").is_none(), "never sent");
    final_checks(&env, "poll_interval=1,write_back=600,thumbnails=off");
}

/// Files that are on OneDrive (one uploaded from here, one not cached), opened and unlinked: still readable
/// until closed, then in the recycle bin once.
#[test]
fn an_unlinked_open_file_stays_readable_until_closed() {
    require_fuse!();
    let env = Env::start(2);
    env.login();
    let remote_bytes = bytes(2_000_000, 77);
    let remote_id = env
        .emu()
        .state
        .add_file(
            &format!("{}/remote.jpg", env.gallery_root()),
            Content::Bytes(remote_bytes.clone().into()),
        )
        .unwrap();
    mount_clean(&env, OPTIONS);
    let m = env.mnt.clone();
    // A file written here and uploaded.
    let local_bytes = bytes(300_000, 78);
    write_file(&m.join("local.jpg"), &local_bytes).unwrap();
    assert!(wait_until(Duration::from_secs(30), || remote_hash(&env, "local.jpg")
        == Some(QuickXorHash::of(&local_bytes))));
    let local_id = remote_id_of(&env, "local.jpg");

    let mut local = std::fs::File::open(m.join("local.jpg")).unwrap();
    let mut remote = std::fs::File::open(m.join("remote.jpg")).unwrap();
    // Read the first bytes of the remote file only: the rest is not cached when it is unlinked.
    let mut head = vec![0u8; 1000];
    remote.read_exact(&mut head).unwrap();
    assert_eq!(head, remote_bytes[..1000]);
    std::fs::remove_file(m.join("local.jpg")).unwrap();
    std::fs::remove_file(m.join("remote.jpg")).unwrap();
    assert!(
        !m.join("local.jpg").exists() && !m.join("remote.jpg").exists(),
        "gone from the directory"
    );
    // Give the outbox time to send the deletes while the files are still open.
    std::thread::sleep(Duration::from_secs(3));
    let mut got = Vec::new();
    local.read_to_end(&mut got).unwrap();
    assert_eq!(got, local_bytes, "the unlinked local file reads whole until closed");
    let mut rest = Vec::new();
    remote.read_to_end(&mut rest).unwrap();
    assert_eq!(
        rest.len(),
        remote_bytes.len() - 1000,
        "the unlinked remote file reads whole until closed"
    );
    assert!(
        rest == remote_bytes[1000..],
        "the unlinked remote file's bytes are OneDrive's"
    );
    drop(local);
    drop(remote);
    wait_drained(&env);
    let bin: BTreeSet<String> = env.emu().state.recycle_bin_dump().into_iter().map(|e| e.id).collect();
    assert_eq!(
        bin,
        BTreeSet::from([local_id, remote_id]),
        "both deleted on OneDrive, once"
    );
    final_checks(&env, OPTIONS);
}

fn remote_id_of(env: &Env, rel: &str) -> String {
    remote_id(env, rel).unwrap_or_else(|| panic!("{rel} on OneDrive"))
}

#[test]
fn a_rename_during_an_upload_ends_with_the_final_name_and_content() {
    require_fuse!();
    let env = Env::start(2);
    env.login();
    mount_clean(&env, OPTIONS);
    let m = env.mnt.clone();
    std::fs::create_dir(m.join("Album")).unwrap();
    assert!(wait_until(Duration::from_secs(20), || remote_id(&env, "Album").is_some()));
    // Upload requests are slowed so the renames land while the upload runs: a session (12 MiB) and a simple PUT.
    let big = bytes(12 << 20, 3);
    let small = bytes(200_000, 4);
    let slow = env
        .emu()
        .state
        .faults
        .add_rule(FaultRule::new(FaultKind::Latency { ms: 1200 }).method("PUT"));
    write_file(&m.join("video.mp4"), &big).unwrap();
    write_file(&m.join("photo.jpg"), &small).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    std::fs::rename(m.join("video.mp4"), m.join("Album/holiday.mp4")).unwrap();
    std::fs::rename(m.join("photo.jpg"), m.join("photo renamed.jpg")).unwrap();
    std::thread::sleep(Duration::from_millis(800));
    std::fs::rename(m.join("photo renamed.jpg"), m.join("Album/photo final.jpg")).unwrap();
    wait_drained(&env);
    env.emu().state.faults.remove_rule(slow);
    let want: BTreeMap<String, String> = BTreeMap::from([
        ("Album/holiday.mp4".to_string(), QuickXorHash::of(&big)),
        ("Album/photo final.jpg".to_string(), QuickXorHash::of(&small)),
    ]);
    let files = || -> BTreeMap<String, String> {
        remote_tree(&env)
            .into_iter()
            .filter(|(_, v)| v.1 == "file")
            .filter(|(k, _)| !k.starts_with("DCIM/"))
            .map(|(k, v)| (k, v.3.unwrap_or_default()))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(60), || files() == want),
        "final names and contents, nothing at the old names:\nwant:     {want:?}\nOneDrive: {:?}",
        files()
    );
    final_checks(&env, OPTIONS);
}
