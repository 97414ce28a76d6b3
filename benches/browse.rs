//! The browse benchmark (not a test): galleryfs against references measured in the same run, printed as ratios.
//!
//! The emulator runs as its own process (`galleryfs emulator`), the mount as the real daemon (`galleryfs mount`);
//! this process is only the client (reads, `ls -l`, direct HTTP) and hosts the passthrough FUSE reference. One
//! table per emulated latency: measure, galleryfs, reference, ratio, target. Each row is one function returning a
//! [`Row`]. `GALLERYFS_BENCH_QUICK=1` is the CI-sized mode (64 MiB file, 1,000 items, 0 ms only).
//! See `docs/benchmarks.md` for what each row measures and what limits it.

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use galleryfs::emulator::media::fill_synthetic;
use galleryfs::fs::passthrough::PassthroughFs;
use galleryfs::fuse::{self, MountedFs};
use galleryfs::mount_options::MountOptions;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const GALLERY: &str = "/Pictures/Samsung Gallery";
const BIG_SEED: u64 = 0xB16_F11E;
/// Every mount: no thumbnail prefetch competing with the measured work, a cache large enough for the big file.
const MOUNT_OPTIONS: &str = "thumbnails=off,cache_size=8G,poll_interval=600";

/// How big this run is.
struct Plan {
    quick: bool,
    big_len: u64,
    items: usize,
    photos: usize,
    ls_runs: usize,
    latencies: Vec<u64>,
    /// Items indexed for the memory row (at least the gallery's; 0: row skipped).
    memory_items: usize,
}

impl Plan {
    fn from_env() -> Plan {
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
            }
        }
    }

    fn big_label(&self) -> String {
        if self.big_len >= 1024 * MIB {
            format!("{} GiB", self.big_len / (1024 * MIB))
        } else {
            format!("{} MiB", self.big_len / MIB)
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Figures and rows

/// One measured figure.
#[derive(Clone, Copy)]
enum Figure {
    /// Bytes per second.
    Rate(f64),
    Time(Duration),
    /// Bytes (memory).
    Bytes(u64),
    None,
}

impl std::fmt::Display for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Figure::Rate(r) => write!(f, "{:.0} MiB/s", r / MIB as f64),
            Figure::Time(t) if *t >= Duration::from_secs(1) => write!(f, "{:.2} s", t.as_secs_f64()),
            Figure::Time(t) => write!(f, "{:.1} ms", t.as_secs_f64() * 1000.0),
            Figure::Bytes(b) => write!(f, "{:.1} MiB", *b as f64 / MIB as f64),
            Figure::None => f.write_str("—"),
        }
    }
}

/// What a row must reach.
#[derive(Clone, Copy)]
enum Target {
    /// ratio ≥ x (throughput: galleryfs / reference).
    AtLeast(f64),
    /// ratio ≤ x (time: galleryfs / reference).
    AtMost(f64),
    /// absolute figure ≤ bytes.
    BytesAtMost(u64),
}

impl Target {
    fn met(&self, row: &Row) -> Option<bool> {
        match (self, row.ratio, row.galleryfs) {
            (Target::AtLeast(x), Some(r), _) => Some(r >= *x),
            (Target::AtMost(x), Some(r), _) => Some(r <= *x),
            (Target::BytesAtMost(b), _, Figure::Bytes(v)) => Some(v <= *b),
            _ => None,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::AtLeast(x) => write!(f, "≥ {x}"),
            Target::AtMost(x) => write!(f, "≤ {x}"),
            Target::BytesAtMost(b) => write!(f, "≤ {} MiB", b / MIB),
        }
    }
}

struct Row {
    measure: String,
    galleryfs: Figure,
    reference: Figure,
    ratio: Option<f64>,
    target: Target,
    note: Option<String>,
}

impl Row {
    /// A row comparing two figures of the same kind; the ratio is oriented so the target reads naturally.
    fn compare(measure: String, galleryfs: Figure, reference: Figure, target: Target) -> Row {
        let ratio = match (galleryfs, reference) {
            (Figure::Rate(g), Figure::Rate(r)) if r > 0.0 => Some(g / r),
            (Figure::Time(g), Figure::Time(r)) if !r.is_zero() => Some(g.as_secs_f64() / r.as_secs_f64()),
            _ => None,
        };
        Row {
            measure,
            galleryfs,
            reference,
            ratio,
            target,
            note: None,
        }
    }

    fn skipped(measure: String, target: Target, why: String) -> Row {
        Row {
            measure,
            galleryfs: Figure::None,
            reference: Figure::None,
            ratio: None,
            target,
            note: Some(why),
        }
    }

    fn failed(measure: String, target: Target, error: &anyhow::Error) -> Row {
        Row::skipped(measure, target, format!("FAILED: {error:#}"))
    }
}

fn print_table(title: &str, rows: &[Row]) {
    let w = rows
        .iter()
        .map(|r| r.measure.chars().count())
        .max()
        .unwrap_or(10)
        .max(7);
    println!("\n{title}");
    println!(
        "| {:<w$} | {:>14} | {:>14} | {:>6} | {:>9} | met |",
        "measure", "galleryfs", "reference", "ratio", "target"
    );
    println!(
        "|{}|{}|{}|{}|{}|-----|",
        "-".repeat(w + 2),
        "-".repeat(16),
        "-".repeat(16),
        "-".repeat(8),
        "-".repeat(11)
    );
    for r in rows {
        let ratio = r.ratio.map(|x| format!("{x:.2}")).unwrap_or_else(|| "—".into());
        let met = match r.target.met(r) {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "—",
        };
        println!(
            "| {:<w$} | {:>14} | {:>14} | {:>6} | {:>9} | {met:<3} |",
            r.measure,
            r.galleryfs.to_string(),
            r.reference.to_string(),
            ratio,
            r.target.to_string()
        );
        if let Some(n) = &r.note {
            println!("|   ↳ {n}");
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    if v.is_empty() {
        Duration::ZERO
    } else {
        v[v.len() / 2]
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The emulator process

/// `galleryfs emulator` in its own process; SIGTERM on drop.
struct EmulatorProcess {
    child: Child,
    graph: String,
    login: String,
    control: String,
}

impl EmulatorProcess {
    fn spawn(bin: &Path) -> Result<EmulatorProcess> {
        let mut child = Command::new(bin)
            .args(["emulator", "--listen", "127.0.0.1:0", "--auto-approve"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting galleryfs emulator")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .context("reading the emulator's ready line")?;
        let ready: Value = serde_json::from_str(line.trim()).with_context(|| format!("ready line {line:?}"))?;
        let field = |k: &str| {
            ready[k]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("ready line lacks {k}: {line}"))
        };
        Ok(EmulatorProcess {
            graph: field("graph")?,
            login: field("login")?,
            control: field("control")?,
            child,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The bench environment

struct Bench {
    plan: Plan,
    bin: PathBuf,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    emu: EmulatorProcess,
    dir: tempfile::TempDir,
    token: String,
    big_id: String,
    photo_ids: Vec<String>,
    next_tag: std::cell::Cell<u32>,
}

/// A mount by the real daemon, with a cache directory of its own (so it starts cold).
struct GalleryMount<'a> {
    bench: &'a Bench,
    mnt: PathBuf,
    cache: PathBuf,
    mounted: bool,
}

impl Bench {
    fn start(plan: Plan) -> Result<Bench> {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_galleryfs"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let emu = EmulatorProcess::spawn(&bin)?;
        let http = reqwest::Client::builder().build()?;
        let dir = tempfile::Builder::new().prefix("galleryfs-bench-").tempdir()?;
        let mut bench = Bench {
            plan,
            bin,
            rt,
            http,
            emu,
            dir,
            token: String::new(),
            big_id: String::new(),
            photo_ids: Vec::new(),
            next_tag: std::cell::Cell::new(0),
        };
        bench.token = bench.control_get("token")?["access_token"]
            .as_str()
            .ok_or_else(|| anyhow!("no test token"))?
            .to_string();
        Ok(bench)
    }

    fn control_get(&self, path: &str) -> Result<Value> {
        let url = format!("{}/{path}", self.emu.control);
        self.rt.block_on(async {
            let r = self.http.get(&url).send().await?.error_for_status()?;
            Ok(r.json().await?)
        })
    }

    fn control_post(&self, path: &str, body: Value) -> Result<Value> {
        let url = format!("{}/{path}", self.emu.control);
        self.rt.block_on(async {
            let r = self.http.post(&url).json(&body).send().await?;
            let status = r.status();
            let text = r.text().await?;
            if !status.is_success() {
                bail!("POST {path}: {status}: {text}");
            }
            Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
        })
    }

    fn set_latency(&self, ms: u64) -> Result<()> {
        self.control_post("faults/latency", json!({ "ms": ms })).map(drop)
    }

    /// Adds `count` generated files under `folder` (relative to the gallery), 16 requests at a time; returns ids.
    fn add_files(
        &self,
        folder: &str,
        count: usize,
        first_seed: u64,
        size: impl Fn(usize) -> u64,
    ) -> Result<Vec<String>> {
        let url = format!("{}/files", self.emu.control);
        let bodies: Vec<Value> = (0..count)
            .map(|i| {
                json!({
                    "path": format!("{GALLERY}/{folder}/{}", item_name(folder, i)),
                    "size": size(i),
                    "seed": first_seed + i as u64,
                })
            })
            .collect();
        self.rt.block_on(async {
            let results: Vec<Result<String>> = futures::stream::iter(bodies)
                .map(|b| {
                    let (http, url) = (&self.http, &url);
                    async move {
                        let v: Value = http.post(url).json(&b).send().await?.error_for_status()?.json().await?;
                        v["id"]
                            .as_str()
                            .map(str::to_string)
                            .ok_or_else(|| anyhow!("no id in {v}"))
                    }
                })
                .buffered(16)
                .collect()
                .await;
            results.into_iter().collect()
        })
    }

    /// The gallery the rows read: one big video, a folder of photos, a folder of `items` files.
    fn seed(&mut self) -> Result<()> {
        let t = Instant::now();
        let big_len = self.plan.big_len;
        self.big_id = self.add_files("Video", 1, BIG_SEED, |_| big_len)?.remove(0);
        self.photo_ids = self.add_files("Photos", self.plan.photos, 500, |i| 3 * MIB + i as u64 * 4099)?;
        self.add_files("Camera", self.plan.items, 10_000, photo_size)?;
        self.wait_for_hashes()?;
        eprintln!(
            "seeded {} items ({} file hashed) in {:.1} s",
            self.plan.items + self.plan.photos + 1,
            self.plan.big_label(),
            t.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Large generated content is hashed in the background; the mount verifies downloads against the hash.
    fn wait_for_hashes(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let state = self.control_get("state")?;
            let missing = state
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|e| e["kind"] == "file" && e["quickXorHash"].is_null())
                        .count()
                })
                .unwrap_or(0);
            if missing == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{missing} files still unhashed after 300 s");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// Runs the galleryfs binary with this bench's config dir and `cache` as the cache dir.
    fn galleryfs(&self, cache: &Path, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.bin)
            .args(args)
            .env("GALLERYFS_CONFIG_DIR", self.config_dir())
            .env("GALLERYFS_CACHE_DIR", cache)
            .env("XDG_CACHE_HOME", self.dir.path().join("xdg-cache"))
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running galleryfs {args:?}"))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(cache.join("default/galleryfs.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            bail!(
                "galleryfs {args:?} failed ({}): {}\nlog tail:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn login(&self) -> Result<()> {
        let cache = self.dir.path().join("cache-login");
        self.galleryfs(
            &cache,
            &["login", "--graph-url", &self.emu.graph, "--login-url", &self.emu.login],
        )
        .map(drop)
    }

    fn fresh_tag(&self) -> u32 {
        let t = self.next_tag.get() + 1;
        self.next_tag.set(t);
        t
    }

    /// Mounts with an empty cache directory; returns once `galleryfs mount` has returned (the mount answers).
    fn mount(&self) -> Result<GalleryMount<'_>> {
        let tag = self.fresh_tag();
        let mnt = self.dir.path().join(format!("mnt-{tag}"));
        let cache = self.dir.path().join(format!("cache-{tag}"));
        std::fs::create_dir_all(&mnt)?;
        let m = mnt.display().to_string();
        self.galleryfs(&cache, &["mount", &m, "-o", MOUNT_OPTIONS])?;
        Ok(GalleryMount {
            bench: self,
            mnt,
            cache,
            mounted: true,
        })
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        rb.bearer_auth(&self.token)
    }

    fn content_url(&self, id: &str) -> String {
        format!("{}/me/drive/items/{id}/content", self.emu.graph)
    }
}

impl GalleryMount<'_> {
    fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// The daemon's pid, from the mount record it writes.
    fn pid(&self) -> Result<u32> {
        let record: Value = serde_json::from_slice(&std::fs::read(self.cache.join("default/mount.json"))?)?;
        record["pid"]
            .as_u64()
            .map(|p| p as u32)
            .ok_or_else(|| anyhow!("mount record without pid"))
    }

    /// Unmounts and removes the cache directory.
    fn unmount(mut self) -> Result<()> {
        self.stop()?;
        let _ = std::fs::remove_dir_all(&self.cache);
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        self.mounted = false;
        let m = self.mnt.display().to_string();
        self.bench.galleryfs(&self.cache, &["unmount", &m])?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while is_mounted(&self.mnt) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Unmounts and mounts again on the same cache directory: the kernel's page cache of the mount is gone, the
    /// daemon's content cache stays.
    fn remount(&mut self) -> Result<()> {
        self.stop()?;
        let m = self.mnt.display().to_string();
        self.bench.galleryfs(&self.cache, &["mount", &m, "-o", MOUNT_OPTIONS])?;
        self.mounted = true;
        Ok(())
    }
}

impl Drop for GalleryMount<'_> {
    fn drop(&mut self) {
        if self.mounted && is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

fn is_mounted(path: &Path) -> bool {
    let p = path.to_str().unwrap_or("");
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|s| s.lines().any(|l| l.split(' ').nth(4) == Some(p)))
        .unwrap_or(false)
}

fn item_name(folder: &str, i: usize) -> String {
    match folder {
        "Video" => "big.mp4".into(),
        "Photos" => format!("IMG_{i:04}.jpg"),
        _ => format!("20240101_{:06}.jpg", i),
    }
}

/// Sizes of the listed items: small, because the emulator hashes every added file at once (≈ 100 MB/s), and a
/// listing's cost does not depend on the sizes it shows.
fn photo_size(i: usize) -> u64 {
    1024 + (i as u64 * 7919) % 4096
}

// ---------------------------------------------------------------------------------------------------------------
// Client-side primitives

/// Reads a whole file with 1 MiB reads; returns (bytes, elapsed).
fn read_file(path: &Path) -> Result<(u64, Duration)> {
    let start = Instant::now();
    let mut f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut buf = vec![0u8; MIB as usize];
    let mut total = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("read {} at {total}", path.display()))?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    Ok((total, start.elapsed()))
}

/// Runs `ls -l DIR` with its output discarded; returns the elapsed time.
fn ls_l(dir: &Path) -> Result<Duration> {
    let start = Instant::now();
    let status = Command::new("ls")
        .arg("-l")
        .arg(dir)
        .env("LC_ALL", "C")
        .stdout(Stdio::null())
        .status()?;
    let t = start.elapsed();
    if !status.success() {
        bail!("ls -l {} failed: {status}", dir.display());
    }
    Ok(t)
}

/// Reads every directory under `root` (names only, as a file manager's first listing does); returns entries.
fn walk(root: &Path) -> Result<usize> {
    let mut stack = vec![root.to_path_buf()];
    let mut n = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            n += 1;
            if e.file_type()?.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(n)
}

/// Resident memory of a process: (VmRSS, VmHWM) in bytes.
fn memory_of(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| anyhow!("{name} missing"))?;
        let kb: u64 = line.split_whitespace().nth(1).unwrap_or("0").parse()?;
        Ok(kb * 1024)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// `RssAnon`, `RssFile` of a process, for the note under the memory row.
fn rss_split(pid: u32) -> Result<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(status
        .lines()
        .filter(|l| l.starts_with("RssAnon:") || l.starts_with("RssFile:"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", "))
}

/// Resets the peak-RSS mark of a process (`echo 5 > /proc/PID/clear_refs`).
fn reset_peak(pid: u32) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").context("clear_refs")
}

impl Bench {
    /// Direct HTTP download of an item's content (following the redirect to the content host); (bytes, elapsed).
    fn direct_download(&self, id: &str) -> Result<(u64, Duration)> {
        self.rt.block_on(async {
            let start = Instant::now();
            let resp = self
                .auth(self.http.get(self.content_url(id)))
                .send()
                .await?
                .error_for_status()?;
            let mut body = resp.bytes_stream();
            let mut total = 0u64;
            while let Some(chunk) = body.next().await {
                total += chunk?.len() as u64;
            }
            Ok((total, start.elapsed()))
        })
    }

    /// A direct GET of an item's content until its first body byte arrives.
    fn direct_first_byte(&self, id: &str) -> Result<Duration> {
        self.rt.block_on(async {
            let start = Instant::now();
            let resp = self
                .auth(self.http.get(self.content_url(id)))
                .send()
                .await?
                .error_for_status()?;
            let mut body = resp.bytes_stream();
            loop {
                match body.next().await {
                    Some(chunk) => {
                        if !chunk?.is_empty() {
                            return Ok(start.elapsed());
                        }
                    }
                    None => bail!("empty body"),
                }
            }
        })
    }

    /// Pages every folder of the gallery with `$top=1000` on a new connection; (items, elapsed).
    fn direct_listing(&self) -> Result<(usize, Duration)> {
        let http = reqwest::Client::new();
        self.rt.block_on(async {
            let start = Instant::now();
            let root = format!(
                "{}/me/drive/root:{}:/children?$top=1000",
                self.emu.graph,
                percent_encoding::utf8_percent_encode(GALLERY, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
                    .replace("%2F", "/")
            );
            let mut queue = vec![root];
            let mut items = 0usize;
            while let Some(mut url) = queue.pop() {
                loop {
                    let page: Value = http
                        .get(&url)
                        .bearer_auth(&self.token)
                        .send()
                        .await?
                        .error_for_status()?
                        .json()
                        .await?;
                    for item in page["value"].as_array().into_iter().flatten() {
                        items += 1;
                        if item.get("folder").is_some() {
                            let id = item["id"].as_str().unwrap_or_default();
                            queue.push(format!("{}/me/drive/items/{id}/children?$top=1000", self.emu.graph));
                        }
                    }
                    match page["@odata.nextLink"].as_str() {
                        Some(next) => url = next.to_string(),
                        None => break,
                    }
                }
            }
            Ok((items, start.elapsed()))
        })
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Rows

/// Cold mount (empty cache) to a complete listing vs paging every folder directly. Leaves the mount up.
fn row_cold_mount<'a>(b: &'a Bench, mount_out: &mut Option<GalleryMount<'a>>) -> Row {
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
fn row_sequential_read(b: &Bench, m: &GalleryMount) -> Row {
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
/// than the kernel's page cache of the FUSE file.
fn row_cached_read(b: &Bench, m: &GalleryMount, local_copy: &Path, after_remount: bool) -> Row {
    let measure = if after_remount {
        format!("{} cached read after remount", b.plan.big_label())
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

/// open + first byte of uncached photos through the mount vs a direct GET's first byte; medians.
fn row_first_byte(b: &Bench, m: &GalleryMount) -> Row {
    let measure = "open + first byte of an uncached photo".to_string();
    let target = Target::AtMost(1.2);
    let run = || -> Result<Row> {
        let (mut g, mut r) = (Vec::new(), Vec::new());
        for (i, id) in b.photo_ids.iter().enumerate() {
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
        row.note = Some(format!("medians of {} photos", b.photo_ids.len()));
        Ok(row)
    };
    run().unwrap_or_else(|e| Row::failed(measure.clone(), target, &e))
}

/// Warm `ls -l` of the item folder through the mount vs the same names on a passthrough FUSE; medians.
fn row_warm_ls(b: &Bench, m: &GalleryMount, passthrough: &Path) -> Row {
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

/// `cp` of 200 MB into the mount until durable: needs the write path.
fn row_copy_in(m: &GalleryMount) -> Row {
    let measure = "cp 200 MB in, until durable on OneDrive".to_string();
    let target = Target::AtMost(1.2);
    let probe = m.path("Photos/.bench-write-probe");
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Row::skipped(
                measure,
                target,
                "the mount accepts writes but this row is not implemented yet".into(),
            )
        }
        Err(e) => Row::skipped(measure, target, format!("skipped: the mount refuses writes ({e})")),
    }
}

/// Resident memory with `memory_items` indexed, and the growth while streaming the big file uncached.
fn rows_memory(b: &Bench) -> Vec<Row> {
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

// ---------------------------------------------------------------------------------------------------------------
// References on the local disk

/// The big file's exact bytes on the local disk (the "local copy" reference).
fn write_local_copy(path: &Path, len: u64) -> Result<()> {
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
fn passthrough_reference(b: &Bench) -> Result<(MountedFs, PathBuf)> {
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

/// Context for reading the table: how fast this machine computes a quickXorHash (the mount verifies every
/// completed download with it, after the last byte arrives) and how loaded it is.
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

// ---------------------------------------------------------------------------------------------------------------

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
    rows.push(row_first_byte(b, &m));
    rows.push(row_warm_ls(b, &m, passthrough));
    rows.push(row_copy_in(&m));
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
    print_context();
    let mut b = Bench::start(plan)?;
    eprintln!(
        "emulator pid {} at {}; scratch {}",
        b.emu.pid(),
        b.emu.graph,
        b.dir.path().display()
    );
    b.seed()?;
    b.login()?;
    let local_copy = b.dir.path().join("local-big.mp4");
    write_local_copy(&local_copy, b.plan.big_len)?;
    let (pt_mount, pt_dir) = passthrough_reference(&b)?;

    for &latency in &b.plan.latencies.clone() {
        let rows = run_latency(&b, latency, &pt_dir, &local_copy)?;
        print_table(&format!("latency {latency} ms"), &rows);
    }
    pt_mount.unmount()?;
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
