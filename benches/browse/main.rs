//! The browse benchmark (not a test): galleryfs against references measured in the same run, printed as ratios.
//!
//! The emulator runs as its own process (`galleryfs emulator`), the mount as the real daemon (`galleryfs mount`);
//! this process is only the client (reads, `ls -l`, direct HTTP) and hosts the passthrough FUSE reference. One
//! table per emulated latency: measure, galleryfs, reference, ratio, target. Each row is one function returning a
//! [`Row`]. `GALLERYFS_BENCH_QUICK=1` is the CI-sized mode (64 MiB file, 1,000 items, 0 ms only);
//! `GALLERYFS_BENCH_ROWS=gallery_scan` runs only the gallery-scan rows (`rows_gallery_scan.rs`);
//! `GALLERYFS_BENCH_ROWS=reads` runs only the uncached-read rows in several cycles (`rows_reads.rs`);
//! `GALLERYFS_BENCH_ROWS=cached_reads` only the big file's reads (uncached, then cached: same mount, after a
//! remount (`rw`), read-only mount);
//! `GALLERYFS_BENCH_THUMBNAILS=1` runs only the thumbnail rows (`rows_thumbnails.rs`) on a gallery of its own;
//! `GALLERYFS_BENCH_ROWS=uploads` runs only the upload rows (`rows_uploads.rs`), on a gallery of their own.
//! See `docs/benchmarks.md` for what each row measures and what limits it.

mod env;
mod report;
mod rows;
mod rows_gallery_scan;
mod rows_reads;
mod rows_thumbnails;
mod rows_uploads;

use anyhow::Result;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use env::*;
use report::*;
use rows::*;
use rows_gallery_scan::*;

/// How big this run is.
pub struct Plan {
    pub quick: bool,
    pub big_len: u64,
    pub items: usize,
    pub photos: usize,
    pub ls_runs: usize,
    pub latencies: Vec<u64>,
    /// Items indexed for the memory row (at least the gallery's; 0: row skipped).
    pub memory_items: usize,
    /// Bytes copied into the mount by the `cp` row.
    pub copy_len: u64,
    /// Camera photos the metadata-scan rows scan.
    pub scan_photos: usize,
    /// Only the gallery-scan rows (`GALLERYFS_BENCH_ROWS=gallery_scan`).
    pub only_scan: bool,
    /// Only the big file's read rows (`GALLERYFS_BENCH_ROWS=cached_reads`).
    pub only_cached_reads: bool,
    /// Only the uncached-read rows, in cycles (`GALLERYFS_BENCH_ROWS=reads`).
    pub only_reads: bool,
}

impl Plan {
    pub fn from_env() -> Plan {
        let mut plan = Self::sized_from_env();
        // `GALLERYFS_BENCH_LATENCIES=0,20` (or `none`: only the memory rows) for a focused run.
        if let Ok(list) = std::env::var("GALLERYFS_BENCH_LATENCIES") {
            plan.latencies = list.split(',').filter_map(|ms| ms.trim().parse().ok()).collect();
        }
        // `GALLERYFS_BENCH_ROWS=gallery_scan`: only the metadata-scan, full-read, first-byte and Timeline rows.
        plan.only_scan = std::env::var("GALLERYFS_BENCH_ROWS").is_ok_and(|v| v == "gallery_scan");
        plan.only_cached_reads = std::env::var("GALLERYFS_BENCH_ROWS").is_ok_and(|v| v == "cached_reads");
        if plan.only_scan || plan.only_cached_reads {
            plan.memory_items = 0;
        }
        plan.only_reads = std::env::var("GALLERYFS_BENCH_ROWS").is_ok_and(|v| v == "reads");
        if plan.only_reads {
            plan.memory_items = 0;
            plan.items = plan.items.min(100);
        }
        plan
    }

    fn sized_from_env() -> Plan {
        let quick = std::env::var("GALLERYFS_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        if quick {
            Plan {
                quick,
                big_len: 64 * MIB,
                items: 1_000,
                photos: 6,
                ls_runs: 3,
                latencies: vec![0],
                memory_items: 1_000,
                copy_len: 32 * MIB,
                scan_photos: 100,
                only_scan: false,
                only_cached_reads: false,
                only_reads: false,
            }
        } else {
            Plan {
                quick,
                big_len: 1024 * MIB,
                items: 10_000,
                photos: 15,
                ls_runs: 5,
                latencies: vec![0, 20],
                memory_items: 100_000,
                copy_len: 200_000_000,
                scan_photos: 1_000,
                only_scan: false,
                only_cached_reads: false,
                only_reads: false,
            }
        }
    }

    pub fn copy_label(&self) -> String {
        if self.copy_len % MIB == 0 {
            format!("{} MiB", self.copy_len / MIB)
        } else {
            format!("{} MB", self.copy_len / 1_000_000)
        }
    }

    pub fn big_label(&self) -> String {
        if self.big_len >= 1024 * MIB {
            format!("{} GiB", self.big_len / (1024 * MIB))
        } else {
            format!("{} MiB", self.big_len / MIB)
        }
    }
}

/// Context for reading the table: how fast this machine computes a quickXorHash (the mount hashes every
/// downloaded byte with it as the byte is written to the cache) and how loaded it is.
fn print_context() {
    let data = vec![0x5Au8; 64 * MIB as usize];
    let start = Instant::now();
    let mut h = galleryfs::remote::QuickXorHash::new();
    h.update(&data);
    let hash_rate = data.len() as f64 / start.elapsed().as_secs_f64() / MIB as f64;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!(
        "context: quickXorHash {hash_rate:.0} MiB/s in one thread; {cpus} CPUs; load average {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
}

/// Touches most of the machine's free memory once, then frees it. A virtual machine's guest memory is backed by the
/// host on first touch: on a freshly booted VM, writing into never-used pages (the page cache of a new file, a fresh
/// buffer) measured ~2.5 s per GiB against ~0.3 s per GiB for pages used before, so whichever side of a row first
/// touches fresh memory loses (a 10 MiB upload fragment took 40 ms at the emulator instead of 10). Off with
/// `GALLERYFS_BENCH_PREFAULT=0`, and in the quick run; at most 16 GiB, leaving 4 GiB free.
fn prefault_memory(quick: bool) {
    if quick || std::env::var("GALLERYFS_BENCH_PREFAULT").is_ok_and(|v| v == "0") {
        return;
    }
    let available_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let gib = (available_kib / (1024 * 1024)).saturating_sub(4).min(16);
    let start = Instant::now();
    let chunks: Vec<Vec<u8>> = (0..gib)
        .map(|_| std::hint::black_box(vec![1u8; (1024 * MIB) as usize]))
        .collect();
    let touched = chunks.iter().map(|c| u64::from(c[c.len() / 2])).sum::<u64>();
    drop(chunks);
    println!(
        "context: touched {touched} GiB of free memory once in {:.1} s (a VM backs memory on first touch)",
        start.elapsed().as_secs_f64()
    );
}

fn fuse_unavailable() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing".into());
    }
    let root = nix::unistd::geteuid().is_root();
    if !root && Command::new("fusermount3").arg("--version").output().is_err() {
        return Some("not root and fusermount3 is not installed".into());
    }
    None
}

fn run_latency(b: &Bench, latency: u64, passthrough: &Path, local_copy: &Path) -> Result<Vec<Row>> {
    b.set_latency(latency)?;
    let mut rows = Vec::new();
    let mut mount = None;
    rows.push(row_cold_mount(b, &mut mount));
    let Some(m) = mount else {
        return Ok(rows);
    };
    rows.push(row_sequential_read(b, &m));
    rows.push(row_cached_read(b, &m, local_copy, false));
    let mut m = m;
    match m.remount() {
        Ok(()) => rows.push(row_cached_read(b, &m, local_copy, true)),
        Err(e) => {
            rows.push(Row::failed("remount".into(), Target::AtLeast(0.9), &e));
            return Ok(rows);
        }
    }
    if !b.plan.only_cached_reads {
        rows.push(row_first_byte(b, &m));
        rows.push(row_warm_ls(b, &m, passthrough));
        rows.push(row_copy_in(b, &m));
    }
    // A read-only mount of the same cache: complete originals go through FUSE passthrough where the kernel allows.
    match m.remount_with(&format!("{MOUNT_OPTIONS},ro")) {
        Ok(()) => rows.push(row_cached_read_ro(b, &m, local_copy)),
        Err(e) => rows.push(Row::failed("read-only remount".into(), Target::AtLeast(0.9), &e)),
    }
    m.unmount()?;
    Ok(rows)
}

fn main() -> Result<()> {
    if let Some(why) = fuse_unavailable() {
        println!("SKIPPED: the browse benchmark needs FUSE: {why}");
        return Ok(());
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; figures are meaningless (run `cargo bench --bench browse`)");
    }
    let plan = Plan::from_env();
    let started = Instant::now();
    prefault_memory(plan.quick);
    print_context();
    let mut b = Bench::start(plan)?;
    eprintln!(
        "emulator pid {} at {}; scratch {}",
        b.emu.pid(),
        b.emu.graph,
        b.dir.path().display()
    );
    if std::env::var("GALLERYFS_BENCH_THUMBNAILS").is_ok_and(|v| !v.is_empty() && v != "0") {
        rows_thumbnails::seed_thumbnails(&b, rows_thumbnails::clip_len(b.plan.quick))?;
        b.login()?;
        for &latency in &b.plan.latencies.clone() {
            b.set_latency(latency)?;
            let rows = rows_thumbnails::rows_thumbnails(&b, latency);
            print_table(&format!("thumbnails, latency {latency} ms"), &rows);
        }
        eprintln!("\nthumbnail rows, {:.0} s in all", started.elapsed().as_secs_f64());
        return Ok(());
    }
    if std::env::var("GALLERYFS_BENCH_ROWS").is_ok_and(|v| v == "uploads") {
        rows_uploads::seed_uploads(&b)?;
        b.login()?;
        for &latency in &b.plan.latencies.clone() {
            b.set_latency(latency)?;
            let rows = rows_uploads::rows_uploads(&b);
            print_table(&format!("uploads, latency {latency} ms"), &rows);
        }
        eprintln!("\nupload rows, {:.0} s in all", started.elapsed().as_secs_f64());
        return Ok(());
    }
    b.seed()?;
    if b.plan.only_reads {
        let full = rows_reads::seed_full_photos(&b)?;
        b.login()?;
        for &latency in &b.plan.latencies.clone() {
            b.set_latency(latency)?;
            let rows = rows_reads::rows_reads(&b, &full);
            let title = if rows_reads::in_netns_child() {
                format!(
                    "uncached reads, 1 Gbit/s link with 20 ms round trip ({})",
                    std::env::var("GALLERYFS_BENCH_LINK_DESC").unwrap_or_default()
                )
            } else {
                format!("uncached reads, latency {latency} ms")
            };
            print_table(&title, &rows);
        }
        if !rows_reads::in_netns_child() {
            drop(b);
            match rows_reads::run_on_limited_link() {
                Ok(None) => {}
                Ok(Some(why)) => println!("limited-link rows skipped: {why}"),
                Err(e) => println!("limited-link rows failed: {e:#}"),
            }
        }
        eprintln!("\nread rows, {:.0} s in all", started.elapsed().as_secs_f64());
        return Ok(());
    }
    let scan = if b.plan.only_cached_reads {
        Default::default()
    } else {
        b.seed_gallery_scan()?
    };
    b.login()?;
    if !b.plan.only_scan {
        let local_copy = b.dir.path().join("local-big.mp4");
        write_local_copy(&local_copy, b.plan.big_len)?;
        let (pt_mount, pt_dir) = passthrough_reference(&b)?;
        for &latency in &b.plan.latencies.clone() {
            let rows = run_latency(&b, latency, &pt_dir, &local_copy)?;
            print_table(&format!("latency {latency} ms"), &rows);
        }
        pt_mount.unmount()?;
    }
    for &latency in &b.plan.latencies.clone() {
        if b.plan.only_cached_reads {
            break;
        }
        b.set_latency(latency)?;
        let rows = rows_gallery_scan(&b, &scan)?;
        print_table(&format!("gallery scan, latency {latency} ms"), &rows);
    }
    b.set_latency(0)?;
    if b.plan.memory_items > 0 {
        let rows = rows_memory(&b);
        print_table("memory (latency 0 ms)", &rows);
    }
    eprintln!(
        "\n{} mode, {:.0} s in all",
        if b.plan.quick { "quick" } else { "full" },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
