//! Reads of originals complete in the cache, through a real mount of the emulator's gallery: handles opened on a
//! complete original read it directly (FUSE passthrough when the kernel and privileges allow it, else `pread` in the
//! daemon), return OneDrive's bytes, mix with other opens of the same file without `EIO` (a writer's open included),
//! and keep working after a remount; a read-only mount uses passthrough where the kernel and privileges allow
//! (writable mounts too: `mount_rw_passthrough`).

use crate::common;

use common::e2e::Env;
use galleryfs::remote::QuickXorHash;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::time::Duration;

/// The emulator's (path relative to the gallery, size, quickXorHash) of its largest photo.
pub(crate) fn largest_photo(env: &Env) -> (String, u64, String) {
    photos_largest_first(env)
        .into_iter()
        .next()
        .expect("the seeded gallery has photos")
}

/// The emulator's photos (path relative to the gallery, size, quickXorHash), the largest first.
fn photos_largest_first(env: &Env) -> Vec<(String, u64, String)> {
    let prefix = format!("{}/", env.gallery_root());
    let mut photos: Vec<_> = env
        .emu()
        .state
        .state_dump()
        .into_iter()
        .filter(|e| e.kind == "file" && e.path.ends_with(".jpg"))
        .filter_map(|e| {
            let rel = e.path.strip_prefix(&prefix)?.to_string();
            Some((rel, e.size, e.quick_xor_hash.clone()?))
        })
        .collect();
    photos.sort_by_key(|p| std::cmp::Reverse(p.1));
    photos
}

fn hash_of_file(path: &std::path::Path) -> String {
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).unwrap();
    QuickXorHash::of(&buf)
}

fn log(env: &Env) -> String {
    std::fs::read_to_string(env.cache_dir().join("default/galleryfs.log")).unwrap_or_default()
}

#[test]
fn complete_originals_are_read_directly_and_mix_with_other_opens() {
    require_fuse!();
    let env = Env::start(20);
    assert!(
        env.rt.block_on(env.emu().wait_for_hashes(Duration::from_secs(60))),
        "emulator hashes ready"
    );
    env.login();
    env.mount("poll_interval=600,thumbnails=off");
    let (rel, size, hash) = largest_photo(&env);
    let path = env.mnt.join(&rel);

    // Root sets the mount's read-ahead: 128 KiB, so a header scan of a cloud file makes the kernel ask for little.
    if nix::unistd::geteuid().is_root() {
        use std::os::unix::fs::MetadataExt;
        let dev = std::fs::metadata(&env.mnt).unwrap().dev();
        let ra = std::fs::read_to_string(format!(
            "/sys/class/bdi/{}:{}/read_ahead_kb",
            libc::major(dev),
            libc::minor(dev)
        ))
        .unwrap();
        assert_eq!(ra.trim(), "128", "the daemon set the mount's read-ahead");
    }

    // The first read downloads and verifies; the file is then complete in the cache.
    assert_eq!(hash_of_file(&path), hash, "first read (downloaded)");
    let state = common::sh_ok(&format!(
        "getfattr --only-values -n user.galleryfs.state '{}'",
        path.display()
    ));
    assert_eq!(state, "cached");

    // Opens of the complete original: two readers at once (the same backing file), then a reader and a writer's
    // open at the same time — none of them fails, every read returns OneDrive's bytes.
    let a = std::fs::File::open(&path).unwrap();
    let b = std::fs::File::open(&path).unwrap();
    let mut whole = vec![0u8; size as usize];
    a.read_exact_at(&mut whole, 0).unwrap();
    assert_eq!(QuickXorHash::of(&whole), hash, "reader a");
    let mut tail = vec![0u8; 1000];
    b.read_exact_at(&mut tail, size - 1000).unwrap();
    assert_eq!(&tail[..], &whole[whole.len() - 1000..], "reader b");
    let rw = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("a writer's open alongside passthrough readers must not fail");
    let mut head = vec![0u8; 4096];
    rw.read_exact_at(&mut head, 0).unwrap();
    assert_eq!(&head[..], &whole[..4096], "read through the writer's handle");
    drop(rw);
    let mut again = vec![0u8; 4096];
    a.read_exact_at(&mut again, 8192).unwrap();
    assert_eq!(
        &again[..],
        &whole[8192..8192 + 4096],
        "reader a after the writer closed"
    );
    drop((a, b));
    assert_eq!(hash_of_file(&path), hash, "a new open after everything closed");

    // After a remount the original is complete at open: read from the cache file, not the network.
    env.unmount();
    env.mount("poll_interval=600,thumbnails=off");
    let downloads = |env: &Env| {
        env.emu()
            .state
            .log
            .entries()
            .iter()
            .filter(|e| e.host == "content" && e.path.starts_with("/download/"))
            .count()
    };
    let before = downloads(&env);
    assert_eq!(hash_of_file(&env.mnt.join(&rel)), hash, "read after remount");
    assert_eq!(downloads(&env), before, "a complete original is not downloaded again");

    env.unmount();

    // A read-only mount passes complete originals through to the kernel where it can.
    env.mount("poll_interval=600,thumbnails=off,ro");
    let a = std::fs::File::open(env.mnt.join(&rel)).unwrap();
    let b = std::fs::File::open(env.mnt.join(&rel)).unwrap();
    let mut again = vec![0u8; size as usize];
    a.read_exact_at(&mut again, 0).unwrap();
    assert!(again == whole, "read-only mount, reader a");
    b.read_exact_at(&mut again[..4096], 0).unwrap();
    assert_eq!(&again[..4096], &whole[..4096], "read-only mount, reader b");
    drop((a, b));
    assert_eq!(hash_of_file(&env.mnt.join(&rel)), hash, "read-only mount, after close");
    assert_eq!(downloads(&env), before, "no download on the read-only mount either");
    let root = nix::unistd::geteuid().is_root();
    let kernel = common::sh_ok("uname -r");
    let used = log(&env).contains("FUSE passthrough");
    eprintln!(
        "kernel {kernel}, root {root}: passthrough {}",
        if used { "used" } else { "not used" }
    );
    let version: Vec<u32> = kernel
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .map(|n| n.parse().unwrap_or(0))
        .collect();
    if root && version >= vec![6, 9] {
        assert!(
            used,
            "root on kernel {kernel} (≥ 6.9): the read-only mount uses FUSE passthrough"
        );
    }
    env.unmount();
}

/// A photo not cached yet is opened bypassing the page cache (where the kernel keeps shared `mmap` working with
/// that): a shared mapping of it reads OneDrive's bytes, and a photo read whole is cached once its `close`
/// returned (the read of its end is answered before the cache file is written; the close waits for that write).
#[test]
fn an_uncached_photo_maps_shared_and_is_cached_once_closed() {
    require_fuse!();
    let env = Env::start(20);
    assert!(
        env.rt.block_on(env.emu().wait_for_hashes(Duration::from_secs(60))),
        "emulator hashes ready"
    );
    env.login();
    env.mount("poll_interval=600,thumbnails=off");
    let photos = photos_largest_first(&env);
    assert!(
        photos.len() >= 2 && photos[1].1 > 1 << 20,
        "two photos over 1 MiB: {photos:?}"
    );

    let (rel, size, hash) = &photos[0];
    let file = std::fs::File::open(env.mnt.join(rel)).unwrap();
    // SAFETY: a read-only shared mapping of `size` bytes of an open file, unmapped below; nothing writes the file.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            *size as usize,
            libc::PROT_READ,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&file),
            0,
        )
    };
    assert_ne!(map, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
    // SAFETY: the mapping is `size` bytes long and stays mapped until the munmap below.
    let mapped = unsafe { std::slice::from_raw_parts(map as *const u8, *size as usize) };
    assert_eq!(
        &QuickXorHash::of(mapped),
        hash,
        "the shared mapping reads OneDrive's bytes"
    );
    // SAFETY: unmaps the mapping made above; `mapped` is not used after this.
    assert_eq!(unsafe { libc::munmap(map, *size as usize) }, 0);
    drop(file);

    let (rel, _, hash) = &photos[1];
    let path = env.mnt.join(rel);
    assert_eq!(&hash_of_file(&path), hash, "read whole");
    let state = common::sh_ok(&format!(
        "getfattr --only-values -n user.galleryfs.state '{}'",
        path.display()
    ));
    assert_eq!(state, "cached", "cached once the reader closed it");
}
