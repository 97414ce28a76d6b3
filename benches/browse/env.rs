//! The bench environment: the emulator process, the real daemon's mounts (each on an empty cache directory), and
//! the client-side primitives both sides of a row use (whole-file reads, `ls -l`, directory walks, /proc memory
//! figures, direct Graph requests).

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::report::MIB;
use crate::Plan;

pub const GALLERY: &str = "/Pictures/Samsung Gallery";
pub const BIG_SEED: u64 = 0xB16_F11E;
/// Every mount: no thumbnail prefetch competing with the measured work, a cache large enough for the big file.
pub const MOUNT_OPTIONS: &str = "thumbnails=off,cache_size=8G,poll_interval=600";

/// `galleryfs emulator` in its own process; SIGTERM on drop.
pub struct EmulatorProcess {
    pub child: Child,
    pub graph: String,
    pub login: String,
    pub control: String,
}

impl EmulatorProcess {
    pub fn spawn(bin: &Path) -> Result<EmulatorProcess> {
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

    pub fn pid(&self) -> u32 {
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

// The bench environment

pub struct Bench {
    pub plan: Plan,
    pub bin: PathBuf,
    pub rt: tokio::runtime::Runtime,
    pub http: reqwest::Client,
    pub emu: EmulatorProcess,
    pub dir: tempfile::TempDir,
    pub token: String,
    pub big_id: String,
    pub photo_ids: Vec<String>,
    pub next_tag: std::cell::Cell<u32>,
}

/// A mount by the real daemon, with a cache directory of its own (so it starts cold).
pub struct GalleryMount<'a> {
    pub bench: &'a Bench,
    pub mnt: PathBuf,
    pub cache: PathBuf,
    pub mounted: bool,
}

impl Bench {
    pub fn start(plan: Plan) -> Result<Bench> {
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

    pub fn control_get(&self, path: &str) -> Result<Value> {
        let url = format!("{}/{path}", self.emu.control);
        self.rt.block_on(async {
            let r = self.http.get(&url).send().await?.error_for_status()?;
            Ok(r.json().await?)
        })
    }

    pub fn control_post(&self, path: &str, body: Value) -> Result<Value> {
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

    pub fn set_latency(&self, ms: u64) -> Result<()> {
        self.control_post("faults/latency", json!({ "ms": ms })).map(drop)
    }

    /// Adds `count` generated files under `folder` (relative to the gallery), 16 requests at a time; returns ids.
    pub fn add_files(
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

    /// The gallery the rows read: one big video (unless `only_scan`: its rows do not run), a folder of photos, a
    /// folder of `items` files.
    pub fn seed(&mut self) -> Result<()> {
        let t = Instant::now();
        let big_len = self.plan.big_len;
        if !self.plan.only_scan {
            self.big_id = self.add_files("Video", 1, BIG_SEED, |_| big_len)?.remove(0);
        }
        self.photo_ids = self.add_files("Photos", self.plan.photos, 500, |i| 3 * MIB + i as u64 * 4099)?;
        self.add_files("Camera", self.plan.items, 10_000, photo_size)?;
        self.wait_for_hashes()?;
        eprintln!(
            "seeded {} items ({}) in {:.1} s",
            self.plan.items + self.plan.photos + usize::from(!self.plan.only_scan),
            if self.plan.only_scan {
                "no big file: only the gallery-scan rows run".to_string()
            } else {
                format!("{} file hashed", self.plan.big_label())
            },
            t.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Large generated content is hashed in the background; the mount verifies downloads against the hash.
    pub fn wait_for_hashes(&self) -> Result<()> {
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

    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// Runs the galleryfs binary with this bench's config dir and `cache` as the cache dir.
    pub fn galleryfs(&self, cache: &Path, args: &[&str]) -> Result<String> {
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

    pub fn login(&self) -> Result<()> {
        let cache = self.dir.path().join("cache-login");
        self.galleryfs(
            &cache,
            &["login", "--graph-url", &self.emu.graph, "--login-url", &self.emu.login],
        )
        .map(drop)
    }

    pub fn fresh_tag(&self) -> u32 {
        let t = self.next_tag.get() + 1;
        self.next_tag.set(t);
        t
    }

    /// Mounts with an empty cache directory; returns once `galleryfs mount` has returned (the mount answers).
    pub fn mount(&self) -> Result<GalleryMount<'_>> {
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

    pub fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        rb.bearer_auth(&self.token)
    }

    pub fn content_url(&self, id: &str) -> String {
        format!("{}/me/drive/items/{id}/content", self.emu.graph)
    }
}

impl GalleryMount<'_> {
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// The daemon's pid, from the mount record it writes.
    pub fn pid(&self) -> Result<u32> {
        let record: Value = serde_json::from_slice(&std::fs::read(self.cache.join("default/mount.json"))?)?;
        record["pid"]
            .as_u64()
            .map(|p| p as u32)
            .ok_or_else(|| anyhow!("mount record without pid"))
    }

    /// Unmounts and removes the cache directory.
    pub fn unmount(mut self) -> Result<()> {
        self.stop()?;
        let _ = std::fs::remove_dir_all(&self.cache);
        Ok(())
    }

    pub fn stop(&mut self) -> Result<()> {
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
    pub fn remount(&mut self) -> Result<()> {
        self.remount_with(MOUNT_OPTIONS)
    }

    /// [`GalleryMount::remount`] with other mount options.
    pub fn remount_with(&mut self, options: &str) -> Result<()> {
        self.stop()?;
        let m = self.mnt.display().to_string();
        self.bench.galleryfs(&self.cache, &["mount", &m, "-o", options])?;
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

pub fn is_mounted(path: &Path) -> bool {
    let p = path.to_str().unwrap_or("");
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|s| s.lines().any(|l| l.split(' ').nth(4) == Some(p)))
        .unwrap_or(false)
}

pub fn item_name(folder: &str, i: usize) -> String {
    match folder {
        "Video" => "big.mp4".into(),
        "Photos" => format!("IMG_{i:04}.jpg"),
        _ => format!("20240101_{:06}.jpg", i),
    }
}

/// Sizes of the listed items: small, because the emulator hashes every added file at once (≈ 100 MB/s), and a
/// listing's cost does not depend on the sizes it shows.
pub fn photo_size(i: usize) -> u64 {
    1024 + (i as u64 * 7919) % 4096
}

// Client-side primitives

/// Reads a whole file with 1 MiB reads; returns (bytes, elapsed).
pub fn read_file(path: &Path) -> Result<(u64, Duration)> {
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
pub fn ls_l(dir: &Path) -> Result<Duration> {
    timed_ls("-l", dir)
}

/// Runs `ls -lR DIR` (the whole tree) with its output discarded; returns the elapsed time.
pub fn ls_lr(dir: &Path) -> Result<Duration> {
    timed_ls("-lR", dir)
}

fn timed_ls(flags: &str, dir: &Path) -> Result<Duration> {
    let start = Instant::now();
    let status = Command::new("ls")
        .arg(flags)
        .arg(dir)
        .env("LC_ALL", "C")
        .stdout(Stdio::null())
        .status()?;
    let t = start.elapsed();
    if !status.success() {
        bail!("ls {flags} {} failed: {status}", dir.display());
    }
    Ok(t)
}

/// Reads every directory under `root` (names only, as a file manager's first listing does); returns entries.
pub fn walk(root: &Path) -> Result<usize> {
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
pub fn memory_of(pid: u32) -> Result<(u64, u64)> {
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
pub fn rss_split(pid: u32) -> Result<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(status
        .lines()
        .filter(|l| l.starts_with("RssAnon:") || l.starts_with("RssFile:"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", "))
}

/// Resets the peak-RSS mark of a process (`echo 5 > /proc/PID/clear_refs`).
pub fn reset_peak(pid: u32) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").context("clear_refs")
}

impl Bench {
    /// Direct HTTP download of an item's content (following the redirect to the content host); (bytes, elapsed).
    pub fn direct_download(&self, id: &str) -> Result<(u64, Duration)> {
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
    pub fn direct_first_byte(&self, id: &str) -> Result<Duration> {
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

    /// Uploads `data` to `rel` (under the gallery) by an upload session, fragments of `fragment` bytes sent one
    /// after the other as the rules require; the time until the last fragment's answer.
    pub fn direct_upload(&self, rel: &str, data: &[u8], fragment: u64) -> Result<Duration> {
        self.rt.block_on(async {
            let start = Instant::now();
            self.upload_session(rel, bytes::Bytes::copy_from_slice(data), fragment)
                .await?;
            Ok(start.elapsed())
        })
    }

    /// `data` sent to `rel` (under the gallery) by an upload session (conflictBehavior `replace`), fragments of
    /// `fragment` bytes one after the other.
    pub async fn upload_session(&self, rel: &str, data: bytes::Bytes, fragment: u64) -> Result<()> {
        let url = format!(
            "{}/me/drive/root:{}:/createUploadSession",
            self.emu.graph,
            gallery_path(rel)
        );
        let session: Value = self
            .auth(self.http.post(&url))
            .json(&json!({ "item": { "@microsoft.graph.conflictBehavior": "replace" } }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let upload_url = session["uploadUrl"]
            .as_str()
            .ok_or_else(|| anyhow!("upload session without uploadUrl"))?
            .to_string();
        let total = data.len();
        let mut offset = 0usize;
        while offset < total {
            let end = (offset + fragment as usize).min(total);
            self.http
                .put(&upload_url)
                .header("Content-Range", format!("bytes {offset}-{}/{total}", end - 1))
                .body(data.slice(offset..end))
                .send()
                .await?
                .error_for_status()?;
            offset = end;
        }
        Ok(())
    }

    /// Waits until the emulator's state has `rel` (under the gallery) with this size and quickXorHash.
    pub fn wait_durable(&self, rel: &str, size: u64, hash: &str, limit: Duration) -> Result<()> {
        let path = format!("{GALLERY}/{rel}");
        let deadline = Instant::now() + limit;
        loop {
            let state = self.control_get("state")?;
            let done = state.as_array().into_iter().flatten().any(|e| {
                e["path"].as_str() == Some(path.as_str())
                    && e["size"].as_u64() == Some(size)
                    && e["quickXorHash"].as_str() == Some(hash)
            });
            if done {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{rel} did not reach OneDrive with size {size} and its hash within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Pages every folder of the gallery with `$top=1000` on a new connection; (items, elapsed).
    pub fn direct_listing(&self) -> Result<(usize, Duration)> {
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

/// `rel` under the gallery, percent-encoded for `root:/…:` addressing.
pub fn gallery_path(rel: &str) -> String {
    percent_encoding::utf8_percent_encode(&format!("{GALLERY}/{rel}"), percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2F", "/")
}
