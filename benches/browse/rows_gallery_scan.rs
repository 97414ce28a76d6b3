//! The gallery-scan rows: what a photo manager's metadata scan costs on cloud photos (bytes fetched, by the
//! emulator's request log, against the originals' bytes), a viewer's full read and first byte of an uncached photo
//! against direct GETs, and a warm `ls -lR Timeline` against the same tree on a passthrough FUSE; all measured in
//! the same run. `GALLERYFS_BENCH_ROWS=gallery_scan` runs only these rows (and seeds only what they read).

use anyhow::{anyhow, bail, Context, Result};
use galleryfs::fs::passthrough::PassthroughFs;
use galleryfs::fuse;
use galleryfs::mount_options::MountOptions;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use crate::env::*;
use crate::report::*;
use crate::rows::row_first_byte;

/// The folder the full-read row's photos are in, and their size ("a 4 MB photo").
pub const FULL_READ_FOLDER: &str = "Full";
pub const FULL_READ_LEN: u64 = 4_000_000;
/// The Camera Roll's name in the mount (OneDrive's English name).
pub const CAMERA_ROLL: &str = "Camera Roll";

/// What the scan rows read, seeded once.
#[derive(Default)]
pub struct ScanSeed {
    /// Ids of the full-read row's photos.
    pub full_ids: Vec<String>,
    /// Bytes of the Camera Roll's photos (the scans' originals).
    pub roll_bytes: u64,
    pub roll_photos: usize,
}

impl Bench {
    /// `plan.scan_photos` camera photos by Camera Backup into the Camera Roll (real full-size phone JPEGs with EXIF,
    /// taken a few hours apart so the Timeline has many months), and the full-read row's 4 MB photos.
    pub fn seed_gallery_scan(&self) -> Result<ScanSeed> {
        let t = Instant::now();
        let url = format!("{}/camera-backup", self.emu.control);
        let start = chrono::DateTime::parse_from_rfc3339("2022-01-01T08:00:00Z")?.to_utc();
        let bodies: Vec<Value> = (0..self.plan.scan_photos)
            .map(|i| {
                let taken = start + chrono::Duration::minutes(397 * i as i64);
                json!({ "platform": "android", "taken": taken.to_rfc3339() })
            })
            .collect();
        self.rt.block_on(async {
            use futures::StreamExt;
            let results: Vec<Result<()>> = futures::stream::iter(bodies)
                .map(|b| {
                    let (http, url) = (&self.http, &url);
                    async move {
                        http.post(url).json(&b).send().await?.error_for_status()?;
                        Ok(())
                    }
                })
                .buffered(4)
                .collect()
                .await;
            results.into_iter().collect::<Result<()>>()
        })?;
        let full_ids = self.add_files(FULL_READ_FOLDER, self.plan.photos, 900, |_| FULL_READ_LEN)?;
        self.wait_for_hashes()?;
        let state = self.control_get("state")?;
        let roll: Vec<u64> = state
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| {
                e["kind"] == "file"
                    && e["path"]
                        .as_str()
                        .is_some_and(|p| p.starts_with(&format!("/Pictures/{CAMERA_ROLL}/")))
            })
            .filter_map(|e| e["size"].as_u64())
            .collect();
        if roll.len() != self.plan.scan_photos {
            bail!(
                "{} photos in the Camera Roll, {} uploaded",
                roll.len(),
                self.plan.scan_photos
            );
        }
        eprintln!(
            "seeded {} camera photos ({:.0} MiB) and {} × 4 MB in {:.1} s",
            roll.len(),
            roll.iter().sum::<u64>() as f64 / MIB as f64,
            full_ids.len(),
            t.elapsed().as_secs_f64()
        );
        Ok(ScanSeed {
            full_ids,
            roll_bytes: roll.iter().sum(),
            roll_photos: roll.len(),
        })
    }

    /// The emulator's request log from `since` on.
    fn request_log(&self, since: u64) -> Result<Vec<Value>> {
        let log = self
            .control_get(&format!("log?since={since}"))
            .or_else(|_| self.control_get(&format!("log/?since={since}")))?;
        log.as_array()
            .cloned()
            .ok_or_else(|| anyhow!("the request log is not an array"))
    }

    /// The number the emulator's next logged request gets.
    fn log_next_seq(&self) -> Result<u64> {
        let log = self.request_log(0)?;
        Ok(log.iter().filter_map(|e| e["seq"].as_u64()).max().map_or(0, |s| s + 1))
    }
}

/// `bytes=A-B` → (A, B + 1).
fn parse_range(range: &str) -> Option<(u64, u64)> {
    let (a, b) = range.trim().strip_prefix("bytes=")?.split_once('-')?;
    Some((a.parse().ok()?, b.parse::<u64>().ok()? + 1))
}

/// Bytes of original content the log's GETs asked for (a GET without a bounded range counts `whole` bytes), and
/// how many GETs.
fn content_bytes(log: &[Value], whole: u64) -> (u64, usize) {
    let gets: Vec<&Value> = log
        .iter()
        .filter(|e| {
            e["host"] == "content"
                && e["method"] == "GET"
                && e["path"].as_str().is_some_and(|p| p.starts_with("/download/"))
        })
        .collect();
    let bytes = gets
        .iter()
        .map(|e| {
            e["range"]
                .as_str()
                .and_then(parse_range)
                .map_or(whole, |(a, b)| b.saturating_sub(a).min(whole))
        })
        .sum();
    (bytes, gets.len())
}

/// A metadata scan (`tool`: a shell command line run in the Camera Roll of a fresh mount) over the cloud photos:
/// bytes fetched ÷ the originals' bytes. Leaves the mount up in `mount_out` for the next rows.
pub fn row_scan_bytes<'a>(
    b: &'a Bench,
    seed: &ScanSeed,
    label: &str,
    tool: &str,
    mount_out: &mut Option<GalleryMount<'a>>,
) -> Row {
    let measure = format!("bytes fetched by {label} over {} cloud photos", seed.roll_photos);
    let target = Target::AtMost(0.05);
    let mut run = || -> Result<Row> {
        let m = b.mount()?;
        let dir = m.path(CAMERA_ROLL);
        let listed = std::fs::read_dir(&dir)
            .with_context(|| format!("list {}", dir.display()))?
            .count();
        if listed != seed.roll_photos {
            bail!(
                "the mount lists {listed} photos in {CAMERA_ROLL}, {} uploaded",
                seed.roll_photos
            );
        }
        let since = b.log_next_seq()?;
        let start = Instant::now();
        let out = Command::new("sh")
            .arg("-c")
            .arg(tool)
            .current_dir(&dir)
            .stderr(Stdio::null())
            .output()
            .with_context(|| format!("running {label}"))?;
        let took = start.elapsed();
        let dates = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(':'))
            .count();
        if dates < seed.roll_photos {
            bail!("{label} printed {dates} dates for {} photos", seed.roll_photos);
        }
        let largest = FULL_READ_LEN.max(seed.roll_bytes / seed.roll_photos.max(1) as u64 * 2);
        let (fetched, gets) = content_bytes(&b.request_log(since)?, largest);
        *mount_out = Some(m);
        Ok(Row {
            measure: measure.clone(),
            galleryfs: Figure::Bytes(fetched),
            reference: Figure::Bytes(seed.roll_bytes),
            ratio: Some(fetched as f64 / seed.roll_bytes as f64),
            target,
            note: Some(format!(
                "{:.2} % of the originals in {gets} ranged GETs ({:.1} KiB each on average); the scan took {:.1} s",
                fetched as f64 * 100.0 / seed.roll_bytes as f64,
                fetched as f64 / gets.max(1) as f64 / 1024.0,
                took.as_secs_f64()
            )),
        })
    };
    run().unwrap_or_else(|e| Row::failed(measure.clone(), target, &e))
}

/// Full read of uncached 4 MB photos through the mount vs a direct GET of each; medians. Opened out of name order
/// (a stride of 5), so the viewer read-ahead has not fetched them before they are read.
pub fn row_full_read(b: &Bench, seed: &ScanSeed, m: &GalleryMount) -> Row {
    let measure = "full read of an uncached 4 MB photo".to_string();
    let target = Target::AtMost(1.1);
    let run = || -> Result<Row> {
        let n = seed.full_ids.len();
        let order: Vec<usize> = (0..5).flat_map(|k| (k..n).step_by(5)).collect();
        let (mut g, mut r) = (Vec::new(), Vec::new());
        for i in order {
            let (n_ref, t_ref) = b.direct_download(&seed.full_ids[i])?;
            let (n_read, t) = read_file(&m.path(&format!("{FULL_READ_FOLDER}/{}", item_name(FULL_READ_FOLDER, i))))?;
            if n_read != FULL_READ_LEN || n_ref != FULL_READ_LEN {
                bail!("read {n_read} bytes through the mount, {n_ref} directly, expected {FULL_READ_LEN}");
            }
            g.push(t);
            r.push(t_ref);
        }
        let mut row = Row::compare(
            measure.clone(),
            Figure::Time(median(g)),
            Figure::Time(median(r)),
            target,
        );
        row.note = Some(format!("medians of {n} photos, 1 MiB reads, opened out of name order"));
        Ok(row)
    };
    run().unwrap_or_else(|e| Row::failed(measure.clone(), target, &e))
}

/// Copies the folders, names and sizes (sparse files) of `from` into `to`; returns the files made.
fn copy_tree_shape(from: &Path, to: &Path) -> Result<usize> {
    std::fs::create_dir_all(to)?;
    let mut files = 0;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let meta = e.metadata()?;
        let dest = to.join(e.file_name());
        if meta.is_dir() {
            files += copy_tree_shape(&e.path(), &dest)?;
        } else {
            std::fs::File::create(&dest)?.set_len(meta.len())?;
            files += 1;
        }
    }
    Ok(files)
}

/// Warm `ls -lR Timeline` through the mount vs the same tree (folders, names, sizes) on a passthrough FUSE; medians.
pub fn row_timeline_ls(b: &Bench, m: &GalleryMount) -> Row {
    let target = Target::AtMost(1.5);
    let mut measure = "warm ls -lR Timeline".to_string();
    let mut run = || -> Result<Row> {
        let timeline = m.path("Timeline");
        ls_lr(&timeline)?;
        let tag = b.fresh_tag();
        let base = b.dir.path().join(format!("timeline-shape-{tag}"));
        let items = copy_tree_shape(&timeline, &base)?;
        measure = format!("warm ls -lR Timeline of {items} items");
        let mnt = b.dir.path().join(format!("timeline-passthrough-{tag}"));
        std::fs::create_dir_all(&mnt)?;
        let core = Arc::new(PassthroughFs::new(&base));
        let config = fuse::fuser_config(&MountOptions::default(), "passthrough");
        let reference = fuse::mount(core, b.rt.handle().clone(), &mnt, &config)?;
        ls_lr(&timeline)?;
        ls_lr(&mnt)?;
        let (mut g, mut r) = (Vec::new(), Vec::new());
        for _ in 0..b.plan.ls_runs {
            g.push(ls_lr(&timeline)?);
            r.push(ls_lr(&mnt)?);
        }
        reference.unmount()?;
        let _ = std::fs::remove_dir_all(&base);
        let mut row = Row::compare(
            measure.clone(),
            Figure::Time(median(g)),
            Figure::Time(median(r)),
            target,
        );
        row.note = Some(format!(
            "medians of {} runs after one warm-up; the reference is the Timeline's folders, names and sizes \
             (sparse files) on a passthrough FUSE",
            b.plan.ls_runs
        ));
        Ok(row)
    };
    run().unwrap_or_else(|e| Row::failed(measure.clone(), target, &e))
}

/// The gallery-scan rows at the current latency, each scan on a fresh mount (nothing cached).
pub fn rows_gallery_scan(b: &Bench, seed: &ScanSeed) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut mount = None;
    rows.push(row_scan_bytes(
        b,
        seed,
        "exiftool -fast -DateTimeOriginal",
        "exiftool -fast -s3 -DateTimeOriginal .",
        &mut mount,
    ));
    if let Some(m) = mount.take() {
        m.unmount()?;
    }
    rows.push(row_scan_bytes(
        b,
        seed,
        "exiv2",
        "exiv2 -q -g Exif.Photo.DateTimeOriginal -Pv ./*",
        &mut mount,
    ));
    let Some(m) = mount else {
        return Ok(rows);
    };
    rows.push(row_full_read(b, seed, &m));
    rows.push(row_first_byte(b, &m));
    rows.push(row_timeline_ls(b, &m));
    m.unmount()?;
    Ok(rows)
}
