//! The upload rows (`GALLERYFS_BENCH_ROWS=uploads`), on a gallery of their own (one small photo):
//! - `cp -r` of a camera folder into a `write_back=0` mount, until every file is on OneDrive (size and
//!   quickXorHash in the emulator's state), against the same files sent directly, 4 at a time (simple PUT up to
//!   4 MiB, an upload session of 10 MiB fragments above, as the mount sends them); the folder is
//!   `GALLERYFS_BENCH_CAMERA=PHOTOS,VIDEOS` (default 300 photos of 2–8 MB and 10 videos of 20–100 MB; quick: 40
//!   and 2);
//! - `cp` of one file of `copy_len` bytes into a `write_back=0` mount until durable, against a direct upload
//!   session;
//! - the same `cp` with the default `write_back` (2 s): the time from `cp`'s return until the file is durable,
//!   against the contract's bound of `write_back` + 1 s.
//!
//! Both sides end when the emulator's state shows every file with its size and hash, polled the same way.

use anyhow::{bail, Result};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::env::*;
use crate::report::*;

/// The mount's default `write_back`, in seconds.
const DEFAULT_WRITE_BACK: u64 = 2;
/// Files up to this size go by simple PUT (Graph's documented limit for it), as the mount sends them.
const SIMPLE_MAX: u64 = 4 * MIB;

/// The camera folder's size: (photos, videos).
fn camera_counts(quick: bool) -> (usize, usize) {
    if let Ok(v) = std::env::var("GALLERYFS_BENCH_CAMERA") {
        let mut it = v.split(',').filter_map(|n| n.trim().parse().ok());
        if let (Some(p), Some(v)) = (it.next(), it.next()) {
            return (p, v);
        }
    }
    if quick {
        (40, 2)
    } else {
        (300, 10)
    }
}

/// Makes the gallery these rows write into (one small photo, so the gallery folder exists).
pub fn seed_uploads(b: &Bench) -> Result<()> {
    b.add_files("Photos", 1, 900, |_| 100_000)?;
    b.wait_for_hashes()
}

/// One camera file on disk: its name, size and hash.
struct CameraFile {
    name: String,
    path: PathBuf,
    len: u64,
    hash: String,
}

/// Writes the camera folder to `dir`: photos of 2–8 MB, videos of 20–100 MB, incompressible.
fn write_camera(dir: &Path, photos: usize, videos: usize, seed: u64) -> Result<Vec<CameraFile>> {
    std::fs::create_dir_all(dir)?;
    let mut files = Vec::new();
    let mut add = |name: String, len: u64, seed: u64| -> Result<()> {
        let data = generated(len, seed);
        let path = dir.join(&name);
        std::fs::write(&path, &data)?;
        files.push(CameraFile {
            name,
            path,
            len,
            hash: galleryfs::remote::QuickXorHash::of(&data),
        });
        Ok(())
    };
    for i in 0..photos {
        let len = 2_000_000 + (i as u64 * 1_234_567) % 6_000_000;
        add(format!("20261207_{:06}.jpg", 100_000 + i), len, seed + i as u64)?;
    }
    for i in 0..videos {
        let len = 20_000_000 + (i as u64 * 37_000_000) % 80_000_000;
        add(
            format!("20261207_{:06}.mp4", 200_000 + i),
            len,
            seed + 10_000 + i as u64,
        )?;
    }
    Ok(files)
}

/// `len` reproducible pseudo-random bytes.
fn generated(len: u64, seed: u64) -> Vec<u8> {
    crate::rows::generated_bytes(len, seed.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Sends one file directly: a simple PUT up to 4 MiB, else an upload session with 10 MiB fragments.
async fn send_direct(b: &Bench, rel: &str, path: &Path) -> Result<()> {
    let data = bytes::Bytes::from(tokio::fs::read(path).await?);
    if data.len() as u64 <= SIMPLE_MAX {
        let url = format!("{}/me/drive/root:{}:/content", b.emu.graph, gallery_path(rel));
        b.auth(b.http.put(&url)).body(data).send().await?.error_for_status()?;
        return Ok(());
    }
    b.upload_session(rel, data, galleryfs::remote::upload::DEFAULT_FRAGMENT)
        .await
}

/// Waits until the emulator's state holds every `(gallery-relative path, size, hash)` of `want`.
fn wait_all_durable(b: &Bench, want: &BTreeMap<String, (u64, String)>, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let state = b.control_get("state")?;
        let mut have = 0;
        for e in state.as_array().into_iter().flatten() {
            let Some(path) = e["path"].as_str().and_then(|p| p.strip_prefix(GALLERY)) else {
                continue;
            };
            if let Some((len, hash)) = want.get(path.trim_start_matches('/')) {
                if e["size"].as_u64() == Some(*len) && e["quickXorHash"].as_str() == Some(hash.as_str()) {
                    have += 1;
                }
            }
        }
        if have == want.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{have} of {} files durable within {limit:?}", want.len());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Mounts a cold cache with `options` added to the bench's.
fn mount_with<'a>(b: &'a Bench, options: &str) -> Result<GalleryMount<'a>> {
    let mut m = b.mount()?;
    m.remount_with(&format!("{MOUNT_OPTIONS},{options}"))?;
    Ok(m)
}

/// `cp -r` of the camera folder into a `write_back=0` mount ÷ the same files sent directly, 4 in parallel.
fn row_camera_import(b: &Bench) -> Row {
    let (photos, videos) = camera_counts(b.plan.quick);
    let measure = format!("cp -r camera folder ({photos} photos, {videos} videos), write_back=0, until durable");
    let target = Target::AtMost(1.3);
    let run = || -> Result<Row> {
        let tag = b.fresh_tag();
        let src = b.dir.path().join(format!("camera-{tag}"));
        let files = write_camera(&src, photos, videos, 0xCA3E_0000 + tag as u64 * 100_000)?;
        let total: u64 = files.iter().map(|f| f.len).sum();
        // The reference: every file sent directly, 4 requests in flight.
        let direct: BTreeMap<String, (u64, String)> = files
            .iter()
            .map(|f| (format!("Direct-{tag}/{}", f.name), (f.len, f.hash.clone())))
            .collect();
        let start = Instant::now();
        b.rt.block_on(async {
            let results: Vec<Result<()>> = futures::stream::iter(&files)
                .map(|f| {
                    let rel = format!("Direct-{tag}/{}", f.name);
                    async move { send_direct(b, &rel, &f.path).await }
                })
                .buffer_unordered(4)
                .collect()
                .await;
            results.into_iter().collect::<Result<Vec<()>>>()
        })?;
        wait_all_durable(b, &direct, Duration::from_secs(600))?;
        let t_ref = start.elapsed();
        // galleryfs: `cp -r` into the mount.
        let m = mount_with(b, "write_back=0")?;
        let dest = format!("Import-{tag}");
        let via_mount: BTreeMap<String, (u64, String)> = files
            .iter()
            .map(|f| (format!("{dest}/{}", f.name), (f.len, f.hash.clone())))
            .collect();
        let start = Instant::now();
        let status = Command::new("cp").arg("-r").arg(&src).arg(m.path(&dest)).status()?;
        if !status.success() {
            bail!("cp -r into the mount failed: {status}");
        }
        let t_cp = start.elapsed();
        wait_all_durable(b, &via_mount, Duration::from_secs(1800))?;
        let t = start.elapsed();
        m.unmount()?;
        let _ = std::fs::remove_dir_all(&src);
        let mut row = Row::compare(measure.clone(), Figure::Time(t), Figure::Time(t_ref), target);
        row.note = Some(format!(
            "{} files, {:.0} MB; cp -r returned after {:.2} s; reference: 4 in flight, simple PUT ≤ 4 MiB, \
             sessions of {} MiB fragments above",
            files.len(),
            total as f64 / 1e6,
            t_cp.as_secs_f64(),
            galleryfs::remote::upload::DEFAULT_FRAGMENT / MIB
        ));
        Ok(row)
    };
    run().unwrap_or_else(|e| Row::failed(measure.clone(), target, &e))
}

/// One big file copied in: (time until `cp` returned, time until durable), both from the start of `cp`.
fn copy_one(b: &Bench, m: &GalleryMount, src: &Path, rel: &str, len: u64, hash: &str) -> Result<(Duration, Duration)> {
    let start = Instant::now();
    let status = Command::new("cp").arg(src).arg(m.path(rel)).status()?;
    if !status.success() {
        bail!("cp into the mount failed: {status}");
    }
    let t_cp = start.elapsed();
    let want = BTreeMap::from([(rel.to_string(), (len, hash.to_string()))]);
    wait_all_durable(b, &want, Duration::from_secs(600))?;
    Ok((t_cp, start.elapsed()))
}

/// `cp` of one big file with `write_back=0` ÷ a direct upload session; and with the default `write_back`, the
/// time from `cp`'s return until durable ÷ `write_back` + 1 s.
fn rows_big_copy(b: &Bench) -> Vec<Row> {
    let label = b.plan.copy_label();
    let m0 = format!("cp {label}, write_back=0, until durable");
    let m2 = format!("cp {label}, write_back={DEFAULT_WRITE_BACK}: durable after cp returned");
    let run = || -> Result<Vec<Row>> {
        let tag = b.fresh_tag();
        let data = generated(b.plan.copy_len, 0xB16C ^ tag as u64);
        let hash = galleryfs::remote::QuickXorHash::of(&data);
        let src = b.dir.path().join(format!("copy-{tag}.bin"));
        std::fs::write(&src, &data)?;
        drop(data);
        let len = b.plan.copy_len;
        let rel = format!("Photos/direct-{tag}.bin");
        let start = Instant::now();
        b.rt.block_on(send_direct(b, &rel, &src))?;
        wait_all_durable(
            b,
            &BTreeMap::from([(rel.clone(), (len, hash.clone()))]),
            Duration::from_secs(600),
        )?;
        let t_ref = start.elapsed();
        let m = mount_with(b, "write_back=0")?;
        let (t_cp0, t0) = copy_one(b, &m, &src, &format!("Photos/cp0-{tag}.bin"), len, &hash)?;
        m.unmount()?;
        let m = b.mount()?;
        let (t_cp2, t2) = copy_one(b, &m, &src, &format!("Photos/cp2-{tag}.bin"), len, &hash)?;
        m.unmount()?;
        let _ = std::fs::remove_file(&src);
        let mut r0 = Row::compare(m0.clone(), Figure::Time(t0), Figure::Time(t_ref), Target::AtMost(1.2));
        r0.note = Some(format!(
            "cp returned after {:.2} s; reference: one upload session, {} MiB fragments",
            t_cp0.as_secs_f64(),
            galleryfs::remote::upload::DEFAULT_FRAGMENT / MIB
        ));
        let bound = Duration::from_secs(DEFAULT_WRITE_BACK + 1);
        let mut r2 = Row::compare(
            m2.clone(),
            Figure::Time(t2.saturating_sub(t_cp2)),
            Figure::Time(bound),
            Target::AtMost(1.0),
        );
        r2.note = Some(format!(
            "reference column: the bound write_back + 1 s; cp returned after {:.2} s, durable {:.2} s after cp began",
            t_cp2.as_secs_f64(),
            t2.as_secs_f64()
        ));
        Ok(vec![r0, r2])
    };
    run().unwrap_or_else(|e| {
        vec![
            Row::failed(m0.clone(), Target::AtMost(1.2), &e),
            Row::failed(m2.clone(), Target::AtMost(1.0), &e),
        ]
    })
}

/// Every upload row at the bench's current latency.
pub fn rows_uploads(b: &Bench) -> Vec<Row> {
    let mut rows = vec![row_camera_import(b)];
    rows.extend(rows_big_copy(b));
    rows
}
