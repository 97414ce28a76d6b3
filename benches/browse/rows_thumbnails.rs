//! The thumbnail rows (`GALLERYFS_BENCH_THUMBNAILS=1`): a gallery of `items` photos, mounted with thumbnails on
//! at the run's latency, from the start of `galleryfs mount` (which returns after the first listing) until the
//! status reports every thumbnail ready; the daemon's CPU per item during the pass (utime + stime from
//! `/proc/<pid>/stat`, from the mount's return to the end of the pass); and an uncached video read through the
//! mount while the pass runs, against the same read on a mount without thumbnails. Each mount starts with an
//! empty cache directory and an empty freedesktop cache of its own.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::env::*;
use crate::report::*;

/// The videos read during and without the pass (one each: both reads are uncached).
const CLIPS: [&str; 2] = ["clip_without.mp4", "clip_during.mp4"];

/// Seeds the gallery this row needs: `items` small photos under `Camera` and two videos under `Clips`.
pub fn seed_thumbnails(b: &Bench, clip_len: u64) -> Result<()> {
    let t = Instant::now();
    b.add_files("Camera", b.plan.items, 10_000, photo_size)?;
    for (k, name) in CLIPS.iter().enumerate() {
        b.control_post(
            "files",
            json!({"path": format!("{GALLERY}/Clips/{name}"), "size": clip_len, "seed": 0xC11F + k as u64}),
        )?;
    }
    b.wait_for_hashes()?;
    eprintln!(
        "seeded {} photos and 2 videos of {} MiB in {:.1} s",
        b.plan.items,
        clip_len / MIB,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A mount of this row: its own cache and freedesktop cache directories.
struct ThumbMount<'a> {
    b: &'a Bench,
    mnt: PathBuf,
    cache: PathBuf,
    xdg: PathBuf,
}

impl<'a> ThumbMount<'a> {
    fn mount(b: &'a Bench, options: &str) -> Result<ThumbMount<'a>> {
        let tag = b.fresh_tag();
        let m = ThumbMount {
            b,
            mnt: b.dir.path().join(format!("thumbs-mnt-{tag}")),
            cache: b.dir.path().join(format!("thumbs-cache-{tag}")),
            xdg: b.dir.path().join(format!("thumbs-xdg-{tag}")),
        };
        std::fs::create_dir_all(&m.mnt)?;
        let mnt = m.mnt.display().to_string();
        m.run(&["mount", &mnt, "-o", options])?;
        Ok(m)
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.b.bin)
            .args(args)
            .env("GALLERYFS_CONFIG_DIR", self.b.config_dir())
            .env("GALLERYFS_CACHE_DIR", &self.cache)
            .env("XDG_CACHE_HOME", &self.xdg)
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running galleryfs {args:?}"))?;
        if !out.status.success() {
            bail!(
                "galleryfs {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn pid(&self) -> Result<u32> {
        let record: Value = serde_json::from_slice(&std::fs::read(self.cache.join("default/mount.json"))?)?;
        record["pid"]
            .as_u64()
            .map(|p| p as u32)
            .ok_or_else(|| anyhow!("mount record without pid"))
    }

    /// (ready, total) thumbnails from `galleryfs status --json`.
    fn thumbnails(&self) -> Result<(u64, u64)> {
        let s: Value = serde_json::from_str(&self.run(&["status", "--json"])?)?;
        let t = &s["thumbnails"];
        Ok((t["ready"].as_u64().unwrap_or(0), t["total"].as_u64().unwrap_or(0)))
    }

    /// Waits until every thumbnail is ready (polling the status every 250 ms); the time it was first seen so.
    fn wait_all_ready(&self, limit: Duration) -> Result<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            let (ready, total) = self.thumbnails()?;
            if total > 0 && ready >= total {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                bail!("{ready} of {total} thumbnails ready after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// PNGs in the freedesktop cache (`normal` and `large`).
    fn pngs(&self) -> usize {
        ["normal", "large"]
            .iter()
            .map(|size| {
                std::fs::read_dir(self.xdg.join("thumbnails").join(size))
                    .map(|d| d.filter(|e| e.is_ok()).count())
                    .unwrap_or(0)
            })
            .sum()
    }

    fn unmount(self) -> Result<()> {
        let mnt = self.mnt.display().to_string();
        self.run(&["unmount", &mnt])?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while is_mounted(&self.mnt) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        // The directories stay until the run ends: on an ext4 without a journal (this VM's), tens of thousands of
        // inodes freed just before a pass make every file the next pass creates scan them (`recently_deleted`).
        Ok(())
    }
}

/// CPU time (user + system) a process has used so far.
pub fn cpu_of(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (u64, u64) = (fields[11].parse()?, fields[12].parse()?);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as u64;
    Ok(Duration::from_millis((utime + stime) * 1000 / hz))
}

/// The three thumbnail rows at the bench's current latency.
pub fn rows_thumbnails(b: &Bench, latency: u64) -> Vec<Row> {
    let time = format!("{} items: mount → every thumbnail, {latency} ms", b.plan.items);
    let cpu = "  daemon CPU per item during the pass".to_string();
    let video = "  video read during the pass ÷ without".to_string();
    let limit = Duration::from_secs(600);
    let mut rows = Vec::new();

    // 1. The pass alone: wall time and the daemon's CPU.
    let pass = || -> Result<(Row, Row)> {
        let start = Instant::now();
        let m = ThumbMount::mount(b, "thumbnails=on,poll_interval=600")?;
        let listed = start.elapsed();
        let pid = m.pid()?;
        let rss_at_mount = memory_of(pid).map(|(rss, _)| rss).unwrap_or(0);
        reset_peak(pid)?;
        let cpu_at_mount = cpu_of(pid)?;
        let done = m.wait_all_ready(limit)?;
        let cpu_pass = cpu_of(pid)?.saturating_sub(cpu_at_mount);
        let elapsed = done - start;
        let (_, total) = m.thumbnails()?;
        let pngs = m.pngs();
        let rss = memory_of(pid).map(|(_, peak)| peak).unwrap_or(0);
        m.unmount()?;
        let mut t = Row::skipped(time.clone(), Target::AtMost(60.0), String::new());
        t.galleryfs = Figure::Time(elapsed);
        t.ratio = Some(elapsed.as_secs_f64());
        t.note = Some(format!(
            "ratio column = seconds; mount (first listing) took {:.1} s; {total} items with thumbnails, {pngs} PNGs \
             in the freedesktop cache (album and Timeline URIs); daemon VmRSS {:.1} MiB after the listing, peak \
             {:.1} MiB during the pass",
            listed.as_secs_f64(),
            rss_at_mount as f64 / MIB as f64,
            rss as f64 / MIB as f64
        ));
        let per_item_ms = cpu_pass.as_secs_f64() * 1000.0 / total.max(1) as f64;
        let mut c = Row::skipped(cpu.clone(), Target::AtMost(1.0), String::new());
        c.galleryfs = Figure::Time(cpu_pass);
        c.ratio = Some(per_item_ms);
        c.note = Some(format!(
            "ratio column = ms of daemon CPU (user + system) per item, {:.1} s for the pass",
            cpu_pass.as_secs_f64()
        ));
        Ok((t, c))
    };
    match pass() {
        Ok((t, c)) => rows.extend([t, c]),
        Err(e) => rows.push(Row::failed(time.clone(), Target::AtMost(60.0), &e)),
    }

    // 2. A video read while the pass runs, against the same read on a mount without thumbnails.
    let ratio = || -> Result<Row> {
        let m = ThumbMount::mount(b, "thumbnails=off,poll_interval=600")?;
        let (n_ref, t_ref) = read_file(&m.mnt.join("Clips").join(CLIPS[0]))?;
        m.unmount()?;
        let m = ThumbMount::mount(b, "thumbnails=on,poll_interval=600")?;
        // The pass has begun once it published what it has to do.
        let deadline = Instant::now() + Duration::from_secs(10);
        while m.thumbnails()?.1 == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let (ready_before, total) = m.thumbnails()?;
        let (n, t) = read_file(&m.mnt.join("Clips").join(CLIPS[1]))?;
        let (ready_after, _) = m.thumbnails()?;
        m.wait_all_ready(limit)?;
        m.unmount()?;
        if ready_after >= total {
            bail!("the pass ended during the read ({ready_before}→{ready_after} of {total}); the read says nothing");
        }
        let mut row = Row::compare(
            video.clone(),
            Figure::Rate(n as f64 / t.as_secs_f64()),
            Figure::Rate(n_ref as f64 / t_ref.as_secs_f64()),
            Target::AtLeast(0.9),
        );
        row.note = Some(format!(
            "{} MiB each; thumbnails ready {ready_before}→{ready_after} of {total} during the read",
            n / MIB
        ));
        Ok(row)
    };
    rows.push(ratio().unwrap_or_else(|e| Row::failed(video.clone(), Target::AtLeast(0.9), &e)));
    rows
}

/// The clip size of this plan.
pub fn clip_len(quick: bool) -> u64 {
    if quick {
        32 * MIB
    } else {
        1024 * MIB
    }
}
