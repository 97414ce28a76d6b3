//! Helpers shared by the reliability tests (`reliability_faults`, `reliability_secrets`, `reliability_soak`): the
//! random fault mix, the chaos thread that expires download URLs and drops upload sessions, the Retry-After
//! audit over the emulator's request log, generated and real sample files, and running the real binary with
//! extra environment variables.
#![allow(dead_code)]

use crate::common::e2e::{wait_until, Env};
use galleryfs::emulator::faults::{FaultHost, FaultKind, FaultRule, Faults};
use galleryfs::emulator::request_log::LoggedRequest;
use galleryfs::emulator::EmulatorState;
use galleryfs::remote::QuickXorHash;
use rand::{Rng, RngCore, SeedableRng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One kind of fault in the random mix, with its share of the faulted requests.
struct MixEntry {
    share: f64,
    kind: FaultKind,
    host: FaultHost,
}

/// The random mix: a fraction `rate` of all requests (API and content hosts, identity endpoints included)
/// meets one of: 429 or 503 with `Retry-After: 1`, 500/502/504, a connection reset mid-body (early or late in
/// the body), a truncated body, or a slow answer. Returns the rule ids.
pub fn install_random_mix(faults: &Faults, rate: f64, seed: u64) -> Vec<u64> {
    faults.set_seed(seed);
    let throttle = |status| FaultKind::Status {
        status,
        retry_after_secs: Some(1),
    };
    let plain = |status| FaultKind::Status {
        status,
        retry_after_secs: Some(0),
    };
    let mix = [
        MixEntry {
            share: 0.12,
            kind: throttle(429),
            host: FaultHost::Any,
        },
        MixEntry {
            share: 0.12,
            kind: throttle(503),
            host: FaultHost::Any,
        },
        MixEntry {
            share: 0.06,
            kind: plain(500),
            host: FaultHost::Any,
        },
        MixEntry {
            share: 0.06,
            kind: plain(502),
            host: FaultHost::Any,
        },
        MixEntry {
            share: 0.06,
            kind: plain(504),
            host: FaultHost::Any,
        },
        MixEntry {
            share: 0.10,
            kind: FaultKind::Reset { after_bytes: 40 },
            host: FaultHost::Any,
        },
        MixEntry {
            share: 0.10,
            kind: FaultKind::Reset { after_bytes: 200_000 },
            host: FaultHost::Content,
        },
        MixEntry {
            share: 0.08,
            kind: FaultKind::Truncate { after_bytes: 60 },
            host: FaultHost::Any,
        },
        MixEntry {
            share: 0.08,
            kind: FaultKind::Truncate { after_bytes: 300_000 },
            host: FaultHost::Content,
        },
        MixEntry {
            share: 0.22,
            kind: FaultKind::Latency { ms: 400 },
            host: FaultHost::Any,
        },
    ];
    let total: f64 = mix.iter().map(|m| m.share).sum();
    let mut used = 0.0;
    let mut ids = Vec::new();
    for m in mix {
        // Rules are tried in order: each one's chance is conditional on the earlier ones not firing.
        let p = (m.share / total * rate) / (1.0 - used);
        used += m.share / total * rate;
        ids.push(faults.add_rule(FaultRule::new(m.kind).probability(p.min(1.0)).host(m.host)));
    }
    ids
}

/// A background thread that, every `period` (± half), either expires every download URL issued so far or drops
/// every upload session: the "expired download URL" and "upload session that vanishes" faults.
pub struct Chaos {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub url_expiries: Arc<AtomicU64>,
    pub session_drops: Arc<AtomicU64>,
}

impl Chaos {
    pub fn start(state: Arc<EmulatorState>, period: Duration, seed: u64) -> Chaos {
        let stop = Arc::new(AtomicBool::new(false));
        let url_expiries = Arc::new(AtomicU64::new(0));
        let session_drops = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, urls, sessions) = (stop.clone(), url_expiries.clone(), session_drops.clone());
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                let ms = period.as_millis() as u64;
                while !stop.load(Ordering::Relaxed) {
                    let wait = rng.random_range(ms / 2..=ms + ms / 2);
                    let deadline = std::time::Instant::now() + Duration::from_millis(wait);
                    while std::time::Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if rng.random_bool(0.5) {
                        state.expire_download_urls();
                        urls.fetch_add(1, Ordering::Relaxed);
                    } else {
                        state.drop_upload_sessions();
                        sessions.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        Chaos {
            stop,
            thread: Some(thread),
            url_expiries,
            session_drops,
        }
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Chaos {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How long after a throttling answer arrives a request from a client that had not yet received it may still
/// arrive (it was already on the wire). Anything later inside the window is a client that ignored Retry-After.
pub const THROTTLE_GRACE_MS: u64 = 150;

/// What the Retry-After audit found.
#[derive(Debug, Default)]
pub struct ThrottleAudit {
    pub windows: usize,
    /// Requests inside a window at all (including those already on the wire when it opened).
    pub inside_raw: usize,
    /// Requests that arrived later than [`THROTTLE_GRACE_MS`] into a window: Retry-After ignored.
    pub violations: Vec<String>,
}

fn is_identity(path: &str) -> bool {
    path.contains("/oauth2/")
}

/// Checks the request log against every throttle window the emulator opened: no request (of the same service:
/// Graph API and content hosts together, or the identity platform) arrived inside a window, past the grace.
pub fn audit_throttling(state: &EmulatorState) -> ThrottleAudit {
    let log: Vec<LoggedRequest> = state
        .log
        .entries()
        .into_iter()
        .filter(|e| !e.path.starts_with("/_emulator"))
        .collect();
    let windows = state.faults.throttle_windows();
    let mut audit = ThrottleAudit {
        windows: windows.len(),
        ..Default::default()
    };
    for w in &windows {
        // The throttled request itself: same host and status, arrived when the window opened.
        let cause = log
            .iter()
            .filter(|e| e.host == w.host && e.status == w.status && e.at_ms <= w.start_ms + 5)
            .min_by_key(|e| w.start_ms.abs_diff(e.at_ms));
        let identity_window = cause.is_some_and(|c| is_identity(&c.path));
        for e in &log {
            if cause.is_some_and(|c| c.seq == e.seq) || is_identity(&e.path) != identity_window {
                continue;
            }
            if e.at_ms >= w.start_ms && e.at_ms < w.end_ms {
                audit.inside_raw += 1;
                if e.at_ms >= w.start_ms + THROTTLE_GRACE_MS {
                    audit.violations.push(format!(
                        "{} {} {} at {} ms, inside the {} window {}..{} ms opened by {}",
                        e.host,
                        e.method,
                        e.path,
                        e.at_ms,
                        w.status,
                        w.start_ms,
                        w.end_ms,
                        cause.map(|c| c.path.as_str()).unwrap_or("?")
                    ));
                }
            }
        }
    }
    audit
}

/// Bytes that look like nothing in particular, from a seed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

/// The real sample photos and videos (name, bytes); empty when they are absent, after [`common::skip`] (so a
/// failure under `GALLERYFS_REQUIRE_ALL=1`).
pub fn real_samples() -> Vec<(String, Vec<u8>)> {
    let samples = crate::common::samples_dir();
    let Ok(dir) = std::fs::read_dir(&samples) else {
        crate::common::skip(format!(
            "part: {} is absent, the run uses generated files only",
            samples.display()
        ));
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = dir
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_lowercase();
            [".jpg", ".heic", ".mp4", ".mov", ".3gp"].iter().any(|x| n.ends_with(x))
        })
        .filter_map(|e| {
            Some((
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).ok()?,
            ))
        })
        .collect();
    out.sort();
    out
}

/// Runs the galleryfs binary with the environment's directories and `extra` environment variables.
pub fn galleryfs_with(env: &Env, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_galleryfs"));
    cmd.args(args)
        .env("GALLERYFS_CONFIG_DIR", env.dir.path().join("config"))
        .env("GALLERYFS_CACHE_DIR", env.cache_dir())
        .env("XDG_CACHE_HOME", env.xdg_cache())
        .env_remove("NOTIFY_SOCKET");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.output().expect("run galleryfs")
}

/// The daemon's log so far.
pub fn daemon_log(env: &Env) -> String {
    std::fs::read_to_string(env.cache_dir().join("default/galleryfs.log")).unwrap_or_default()
}

/// Copies the daemon's log to `target/reliability/<name>.log` (kept after the test's directories go) and returns
/// that path.
pub fn keep_daemon_log(env: &Env, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/reliability");
    let _ = std::fs::create_dir_all(&dir);
    let to = dir.join(format!("{name}.log"));
    let _ = std::fs::write(&to, daemon_log(env));
    to
}

/// The pid the running mount recorded.
pub fn daemon_pid(env: &Env) -> i32 {
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.cache_dir().join("default/mount.json")).expect("mount.json"))
            .expect("mount.json is JSON");
    rec["pid"].as_i64().expect("pid") as i32
}

/// `galleryfs status --json`, tolerating a failed run (returns Null).
pub fn status_json_lenient(env: &Env) -> serde_json::Value {
    let out = env.galleryfs(&["status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// Waits until the daemon's outbox is empty (by `status --json`); false at the deadline.
pub fn wait_outbox_drained(env: &Env, limit: Duration) -> bool {
    wait_until(limit, || {
        let s = status_json_lenient(env);
        s["outbox"]["pending"] == 0
    })
}

/// Every live file below `root` (a path from the drive root) in the emulator: relative path → (id, hash).
pub fn remote_files(state: &EmulatorState, root: &str) -> BTreeMap<String, (String, Option<String>)> {
    let prefix = format!("{root}/");
    state
        .state_dump()
        .into_iter()
        .filter(|e| e.kind == "file")
        .filter_map(|e| {
            let rel = e.path.strip_prefix(&prefix)?.to_string();
            Some((rel, (e.id, e.quick_xor_hash)))
        })
        .collect()
}

/// Every regular file below `dir`, relative path → bytes (a mount's virtual `Timeline`, the same files again, left
/// out).
pub fn local_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if dir == base && e.file_name() == "Timeline" {
                continue;
            }
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

pub fn hash(bytes: &[u8]) -> String {
    QuickXorHash::of(bytes)
}

/// The paths of `dir` relative to it, as a sorted list (for messages).
pub fn rel(p: &Path, base: &Path) -> PathBuf {
    p.strip_prefix(base).unwrap_or(p).to_path_buf()
}
