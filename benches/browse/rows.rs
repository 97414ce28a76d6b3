//! The rows: each measures galleryfs and its reference in the same run and returns one [`Row`] (a failure becomes
//! a row saying why), plus the local-disk references they compare against.

use anyhow::{bail, Context, Result};
use galleryfs::emulator::media::fill_synthetic;
use galleryfs::fs::passthrough::PassthroughFs;
use galleryfs::fuse::{self, MountedFs};
use galleryfs::mount_options::MountOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::env::*;
use crate::report::*;

/// Cold mount (empty cache) to a complete listing vs paging every folder directly. Leaves the mount up.
pub fn row_cold_mount<'a>(b: &'a Bench, mount_out: &mut Option<GalleryMount<'a>>) -> Row {
    let measure = format!("cold mount → complete listing ({} items)", b.plan.items);
    let target = Target::AtMost(1.2);
    let mut run = || -> Result<Row> {
        let (direct_items, reference) = b.direct_listing()?;
        let start = Instant::now();
        let m = b.mount()?;
        let listed = walk(&m.mnt)?;
        let galleryfs = start.elapsed();
        *mount_out = Some(m);
        let mut row = Row::compare(
            measure.clone(),
            Figure::Time(galleryfs),
            Figure::Time(reference),
            target,
        );
        let rss = mount_out
            .as_ref()
            .and_then(|m| m.pid().ok())
            .and_then(|pid| memory_of(pid).ok())
            .map(|(rss, _)| rss as f64 / MIB as f64);
        row.note = Some(match rss {
            Some(rss) => format!("daemon VmRSS after the listing: {rss:.1} MiB"),
            None => "daemon VmRSS unknown".into(),
        });
        if listed != direct_items {
            row.note = Some(format!("mount listed {listed} entries, direct paging {direct_items}"));
        }
        Ok(row)
    };
    run().unwrap_or_else(|e| Row::failed(measure.clone(), target, &e))
}

/// Uncached sequential read of the big file through the mount vs a direct HTTP download.
pub fn row_sequential_read(b: &Bench, m: &GalleryMount) -> Row {
    let measure = format!("{} uncached sequential read", b.plan.big_label());
    let target = Target::AtLeast(0.9);
    let run = || -> Result<Row> {
        let (n_ref, t_ref) = b.direct_download(&b.big_id)?;
        let (n, t) = read_file(&m.path("Video/big.mp4"))?;
        if n != b.plan.big_len || n_ref != b.plan.big_len {
            bail!(
                "read {n} bytes through the mount, {n_ref} directly, expected {}",
                b.plan.big_len
            );
        }
        Ok(Row::compare(
            measure.clone(),
            Figure::Rate(n as f64 / t.as_secs_f64()),
            Figure::Rate(n_ref as f64 / t_ref.as_secs_f64()),
            target,
        ))
    };
    run().unwrap_or_else(|e| Row::failed(measure.clone(), target, &e))
}

/// Second read of the (now cached) big file vs reading a local copy on the same disk; both in the page cache.
/// `after_remount`: the mount was remounted first, so the read goes through the daemon's content cache rather
/// than the kernel's page cache of the FUSE file: on this writable mount, FUSE passthrough of the complete cache
/// file where the kernel (≥ 6.9) and root allow it.
pub fn row_cached_read(b: &Bench, m: &GalleryMount, local_copy: &Path, after_remount: bool) -> Row {
    let measure = if after_remount {
        format!("{} cached read after remount (rw mount)", b.plan.big_label())
    } else {
        format!("{} cached read, same mount", b.plan.big_label())
    };
    let target = Target::AtLeast(0.9);
    let run = || -> Result<Row> {
        // Warm the local copy's pages as the mount's cache file is warm (it was just written).
        read_file(local_copy)?;
        let (n_ref, t_ref) = read_file(local_copy)?;
        let (n, t) = read_file(&m.path("Video/big.mp4"))?;
        if n != n_ref {
            bail!("read {n} bytes through the mount, {n_ref} locally");
        }
        Ok(Row::compare(
            measure.clone(),
            Figure::Rate(n as f64 / t.as_secs_f64()),
            Figure::Rate(n_ref as f64 / t_ref.as_secs_f64()),
            target,
        ))
    };
    run().unwrap_or_else(|e| Row::failed(measure.clone(), target, &e))
}

/// The cached read after a remount, on a read-only mount (FUSE passthrough of complete originals, kernel ≥ 6.9 and
/// root).
pub fn row_cached_read_ro(b: &Bench, m: &GalleryMount, local_copy: &Path) -> Row {
    let mut row = row_cached_read(b, m, local_copy, true);
    row.measure = format!("{} cached read, read-only mount", b.plan.big_label());
    row.note = Some("remounted with ro: complete originals are read by the kernel (FUSE passthrough)".into());
    row
}

/// open + first byte of uncached photos through the mount vs a direct GET's first byte; medians. The photos are
/// opened out of name order (a stride of 5): opened in order, the mount's viewer read-ahead fetches the next ones
/// before they are opened, and they would not be uncached any more.
pub fn row_first_byte(b: &Bench, m: &GalleryMount) -> Row {
    let measure = "open + first byte of an uncached photo".to_string();
    let target = Target::AtMost(1.2);
    let run = || -> Result<Row> {
        let (mut g, mut r) = (Vec::new(), Vec::new());
        let n = b.photo_ids.len();
        let order: Vec<usize> = (0..5).flat_map(|k| (k..n).step_by(5)).collect();
        for i in order {
            let id = &b.photo_ids[i];
            r.push(b.direct_first_byte(id)?);
            let path = m.path(&format!("Photos/{}", item_name("Photos", i)));
            let start = Instant::now();
            let f = std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
            let mut one = [0u8; 1];
            f.read_exact_at(&mut one, 0)?;
            g.push(start.elapsed());
        }
        let mut row = Row::compare(
            measure.clone(),
            Figure::Time(median(g)),
            Figure::Time(median(r)),
            target,
        );
        row.note = Some(format!(
            "medians of {} photos, opened out of name order (no viewer read-ahead)",
            b.photo_ids.len()
        ));
        Ok(row)
    };
    run().unwrap_or_else(|e| Row::failed(measure.clone(), target, &e))
}

/// Warm `ls -l` of the item folder through the mount vs the same names on a passthrough FUSE; medians.
pub fn row_warm_ls(b: &Bench, m: &GalleryMount, passthrough: &Path) -> Row {
    let measure = format!("warm ls -l of {} items", b.plan.items);
    let target = Target::AtMost(1.5);
    let run = || -> Result<Row> {
        let dir = m.path("Camera");
        ls_l(&dir)?;
        ls_l(passthrough)?;
        let (mut g, mut r) = (Vec::new(), Vec::new());
        for _ in 0..b.plan.ls_runs {
            g.push(ls_l(&dir)?);
            r.push(ls_l(passthrough)?);
        }
        let mut row = Row::compare(
            measure.clone(),
            Figure::Time(median(g)),
            Figure::Time(median(r)),
            target,
        );
        row.note = Some(format!("medians of {} runs after one warm-up", b.plan.ls_runs));
        Ok(row)
    };
    run().unwrap_or_else(|e| Row::failed(measure.clone(), target, &e))
}

/// `cp` of a generated file into the mount, until OneDrive (the emulator's state) has it with the right size and
/// quickXorHash, vs uploading the same bytes directly by an upload session with the daemon's fragment size.
pub fn row_copy_in(b: &Bench, m: &GalleryMount) -> Row {
    let measure = format!("cp {} in, until durable on OneDrive", b.plan.copy_label());
    let target = Target::AtMost(1.2);
    let probe = m.path("Photos/.bench-write-probe");
    if let Err(e) = std::fs::File::create(&probe) {
        return Row::skipped(measure, target, format!("skipped: the mount refuses writes ({e})"));
    }
    let _ = std::fs::remove_file(&probe);
    let run = || -> Result<Row> {
        let data = generated_bytes(b.plan.copy_len, 0x5eed ^ b.fresh_tag() as u64);
        let hash = galleryfs::remote::QuickXorHash::of(&data);
        let src = b.dir.path().join("copy-source.bin");
        std::fs::write(&src, &data)?;
        let tag = b.fresh_tag();
        let fragment = galleryfs::remote::upload::DEFAULT_FRAGMENT;
        let t_ref = b.direct_upload(&format!("Photos/direct-{tag}.bin"), &data, fragment)?;
        b.wait_durable(
            &format!("Photos/direct-{tag}.bin"),
            data.len() as u64,
            &hash,
            Duration::from_secs(60),
        )?;
        drop(data);
        let rel = format!("Photos/cp-{tag}.bin");
        let start = Instant::now();
        let status = Command::new("cp").arg(&src).arg(m.path(&rel)).status()?;
        if !status.success() {
            bail!("cp into the mount failed: {status}");
        }
        let t_cp = start.elapsed();
        b.wait_durable(&rel, b.plan.copy_len, &hash, Duration::from_secs(600))?;
        let t = start.elapsed();
        let _ = std::fs::remove_file(&src);
        let mut row = Row::compare(measure.clone(), Figure::Time(t), Figure::Time(t_ref), target);
        row.note = Some(format!(
            "cp returned after {:.2} s; includes the mount's 2 s write_back delay (default), without it {:.2}; \
             {} MiB fragments on both sides",
            t_cp.as_secs_f64(),
            t.saturating_sub(Duration::from_secs(2)).as_secs_f64() / t_ref.as_secs_f64(),
            fragment / MIB
        ));
        Ok(row)
    };
    run().unwrap_or_else(|e| Row::failed(measure.clone(), target, &e))
}

/// `len` reproducible pseudo-random bytes (xorshift64*), incompressible like a video.
pub(crate) fn generated_bytes(len: u64, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len as usize + 8);
    while (out.len() as u64) < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len as usize);
    out
}

/// Resident memory with `memory_items` indexed, and the growth while streaming the big file uncached.
pub fn rows_memory(b: &Bench) -> Vec<Row> {
    let have = b.plan.items + b.plan.photos + 1;
    let idx = format!("resident memory, {} items indexed", b.plan.memory_items.max(have));
    let stream = format!("  added while streaming {} uncached", b.plan.big_label());
    let run = || -> Result<Vec<Row>> {
        if b.plan.memory_items > have {
            let t = Instant::now();
            b.add_files("More", b.plan.memory_items - have, 200_000, photo_size)?;
            eprintln!(
                "added {} items in {:.1} s",
                b.plan.memory_items - have,
                t.elapsed().as_secs_f64()
            );
        }
        let m = b.mount()?;
        walk(&m.mnt)?;
        ls_l(&m.path("Camera"))?;
        std::thread::sleep(Duration::from_secs(2));
        let pid = m.pid()?;
        let (rss, _) = memory_of(pid)?;
        let split = rss_split(pid).unwrap_or_default();
        reset_peak(pid)?;
        read_file(&m.path("Video/big.mp4"))?;
        let (_, peak) = memory_of(pid)?;
        m.unmount()?;
        let mut a = Row::skipped(idx.clone(), Target::BytesAtMost(50 * MIB), String::new());
        a.galleryfs = Figure::Bytes(rss);
        a.note = Some(format!("VmRSS of the daemon after the listing and one ls -l ({split})"));
        let mut s = Row::skipped(stream.clone(), Target::BytesAtMost(64 * MIB), String::new());
        s.galleryfs = Figure::Bytes(peak.saturating_sub(rss));
        s.note = Some(format!(
            "peak VmRSS during the read {:.1} MiB",
            peak as f64 / MIB as f64
        ));
        Ok(vec![a, s])
    };
    run().unwrap_or_else(|e| vec![Row::failed(idx.clone(), Target::BytesAtMost(50 * MIB), &e)])
}

// References on the local disk

/// The big file's exact bytes on the local disk (the "local copy" reference).
pub fn write_local_copy(path: &Path, len: u64) -> Result<()> {
    let mut f = std::io::BufWriter::with_capacity(4 * MIB as usize, std::fs::File::create(path)?);
    let mut buf = vec![0u8; 4 * MIB as usize];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        fill_synthetic(BIG_SEED, off, &mut buf[..n]);
        f.write_all(&buf[..n])?;
        off += n as u64;
    }
    f.flush()?;
    Ok(())
}

/// A local directory with the item folder's names and sizes (sparse), served by a passthrough FUSE.
pub fn passthrough_reference(b: &Bench) -> Result<(MountedFs, PathBuf)> {
    let base = b.dir.path().join("local-items");
    std::fs::create_dir_all(&base)?;
    for i in 0..b.plan.items {
        let f = std::fs::File::create(base.join(item_name("Camera", i)))?;
        f.set_len(photo_size(i))?;
    }
    let mnt = b.dir.path().join("passthrough");
    std::fs::create_dir_all(&mnt)?;
    let core = Arc::new(PassthroughFs::new(&base));
    let config = fuse::fuser_config(&MountOptions::default(), "passthrough");
    let mounted = fuse::mount(core, b.rt.handle().clone(), &mnt, &config)?;
    Ok((mounted, mnt))
}
