//! The uncached-read rows in several cycles (`GALLERYFS_BENCH_ROWS=reads`): the big file read through a fresh
//! mount (empty cache) vs a direct download, `GALLERYFS_BENCH_CYCLES` times (default 5), each cycle printed with
//! the daemon's CPU time for the read, then the median ratio; the full read of uncached 4 MB photos and the
//! open + first byte of uncached photos on the last cycle's mount; the daemon's peak VmRSS growth during a read.
//!
//! The limited link (`GALLERYFS_BENCH_LINK=0` skips it): the same rows on a 1 Gbit/s link with a 20 ms round trip.
//! The bench makes a network namespace (`ip netns add`), puts `tc qdisc add dev lo root netem delay 10ms rate
//! 1gbit` on its loopback (each direction crosses `lo` once: 20 ms round trip) and runs itself inside it (`ip netns
//! exec`, with `GALLERYFS_BENCH_NETNS_CHILD=1`): its own emulator, mounts, reads and direct downloads all go over
//! that link, the emulator's latency at 0. Without netem in the kernel (this VM's), the rate comes from `tbf` and
//! the round trip from the emulator's 20 ms per request. The namespace is deleted afterwards.

use anyhow::{bail, Result};
use std::time::Duration;

use crate::env::*;
use crate::report::*;
use crate::rows::row_first_byte;
use crate::rows_gallery_scan::{row_full_read, ScanSeed, FULL_READ_FOLDER, FULL_READ_LEN};

pub fn cycles() -> usize {
    std::env::var("GALLERYFS_BENCH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(5)
}

/// The full-read row's 4 MB photos only (not the scans' Camera Roll).
pub fn seed_full_photos(b: &Bench) -> Result<ScanSeed> {
    let full_ids = b.add_files(FULL_READ_FOLDER, b.plan.photos, 900, |_| FULL_READ_LEN)?;
    b.wait_for_hashes()?;
    Ok(ScanSeed {
        full_ids,
        ..ScanSeed::default()
    })
}

/// The daemon's CPU time so far (utime + stime).
fn cpu_of(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Ok(Duration::from_millis(ticks * 1000 / hz))
}

/// The target of the sequential-read rows: ≥ 0.97 on the limited link, ≥ 0.9 otherwise.
fn read_target() -> Target {
    if in_netns_child() {
        Target::AtLeast(0.97)
    } else {
        Target::AtLeast(0.9)
    }
}

pub fn in_netns_child() -> bool {
    std::env::var("GALLERYFS_BENCH_NETNS_CHILD").is_ok_and(|v| v == "1")
}

/// Runs this bench's read rows inside a network namespace whose loopback is a 1 Gbit/s link with 20 ms round trip
/// (see the module note); the child prints its own table. `None` when skipped, with why.
pub fn run_on_limited_link() -> Result<Option<String>> {
    if std::env::var("GALLERYFS_BENCH_LINK").is_ok_and(|v| v == "0") {
        return Ok(Some("GALLERYFS_BENCH_LINK=0".into()));
    }
    if !nix::unistd::geteuid().is_root() {
        return Ok(Some("not root (ip netns and tc need it)".into()));
    }
    let ns = format!("galleryfs-bench-{}", std::process::id());
    let ip = |args: &[&str]| -> Result<()> {
        let out = std::process::Command::new("ip").args(args).output()?;
        if !out.status.success() {
            bail!("ip {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    };
    ip(&["netns", "add", &ns])?;
    let run = || -> Result<()> {
        ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
        // netem (per-packet delay) where the kernel has it; otherwise tbf for the rate and the emulator's 20 ms
        // per request for the round trip.
        let netem = ip(&[
            "netns", "exec", &ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "10ms", "rate", "1gbit",
        ]);
        let (latency, desc) = match netem {
            Ok(()) => (
                "0",
                "tc netem delay 10ms rate 1gbit on the loopback of a network namespace",
            ),
            Err(e) => {
                eprintln!("netem unavailable ({e:#}); tbf for the rate, the emulator's latency for the round trip");
                ip(&[
                    "netns", "exec", &ns, "tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "1gbit", "burst",
                    "1mb", "latency", "50ms",
                ])?;
                (
                    "20",
                    "tc tbf rate 1gbit on the loopback of a network namespace (this kernel has no netem), 20 ms per \
                     request from the emulator",
                )
            }
        };
        let exe = std::env::current_exe()?;
        let status = std::process::Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(exe)
            .arg("--bench")
            .env("GALLERYFS_BENCH_NETNS_CHILD", "1")
            .env("GALLERYFS_BENCH_ROWS", "reads")
            .env("GALLERYFS_BENCH_LATENCIES", latency)
            .env("GALLERYFS_BENCH_LINK_DESC", desc)
            .status()?;
        if !status.success() {
            bail!("the bench inside the network namespace failed: {status}");
        }
        Ok(())
    };
    let outcome = run();
    let _ = ip(&["netns", "delete", &ns]);
    outcome.map(|()| None)
}

fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// One cycle: a fresh mount, the direct download, the read through the mount; (row, kept mount).
fn cycle<'a>(b: &'a Bench, n: usize) -> Result<(Row, GalleryMount<'a>)> {
    let m = b.mount()?;
    walk(&m.mnt)?;
    let pid = m.pid()?;
    let (rss, _) = memory_of(pid)?;
    reset_peak(pid)?;
    let (n_ref, t_ref) = b.direct_download(&b.big_id)?;
    let cpu = cpu_of(pid)?;
    let (bytes, t) = read_file(&m.path("Video/big.mp4"))?;
    let cpu = cpu_of(pid)?.saturating_sub(cpu);
    let (_, peak) = memory_of(pid)?;
    if bytes != b.plan.big_len || n_ref != b.plan.big_len {
        bail!(
            "read {bytes} bytes through the mount, {n_ref} directly, expected {}",
            b.plan.big_len
        );
    }
    let mut row = Row::compare(
        format!("  cycle {n}"),
        Figure::Rate(bytes as f64 / t.as_secs_f64()),
        Figure::Rate(n_ref as f64 / t_ref.as_secs_f64()),
        read_target(),
    );
    row.note = Some(format!(
        "daemon CPU {:.2} s for the read; VmRSS growth {:.1} MiB",
        cpu.as_secs_f64(),
        peak.saturating_sub(rss) as f64 / MIB as f64
    ));
    Ok((row, m))
}

/// The rows at the current latency.
pub fn rows_reads(b: &Bench, full: &ScanSeed) -> Vec<Row> {
    let measure = format!("{} uncached sequential read (median)", b.plan.big_label());
    let target = read_target();
    let mut rows = Vec::new();
    let (mut g, mut r, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = None;
    for n in 1..=cycles() {
        if let Some(m) = last.take() {
            let m: GalleryMount = m;
            if let Err(e) = m.unmount() {
                rows.push(Row::failed("unmount".into(), target, &e));
            }
        }
        match cycle(b, n) {
            Ok((row, m)) => {
                if let (Figure::Rate(x), Figure::Rate(y), Some(q)) = (row.galleryfs, row.reference, row.ratio) {
                    g.push(x);
                    r.push(y);
                    ratios.push(q);
                }
                rows.push(row);
                last = Some(m);
            }
            Err(e) => rows.push(Row::failed(format!("  cycle {n}"), target, &e)),
        }
    }
    if !ratios.is_empty() {
        let mut row = Row::compare(
            measure,
            Figure::Rate(median_f64(g)),
            Figure::Rate(median_f64(r)),
            target,
        );
        row.ratio = Some(median_f64(ratios.clone()));
        row.note = Some(format!(
            "median ratio of {} cycles (figures: median rates); min {:.2}, max {:.2}",
            ratios.len(),
            ratios.iter().cloned().fold(f64::MAX, f64::min),
            ratios.iter().cloned().fold(0.0, f64::max)
        ));
        rows.insert(0, row);
    }
    if let Some(m) = last {
        rows.push(row_full_read(b, full, &m));
        rows.push(row_first_byte(b, &m));
        if let Err(e) = m.unmount() {
            rows.push(Row::failed("unmount".into(), target, &e));
        }
    }
    rows
}
