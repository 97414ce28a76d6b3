//! Soak (issue 6, item 6): the real daemon mounted over the emulator for a while (`GALLERYFS_SOAK_SECS`, default
//! 75 s in CI; the documented run is 3600) under mixed work — browsing (`readdir` + `stat` of the whole tree),
//! reading whole files (evicted now and then so they are downloaded again), local edits (create, overwrite,
//! rename, delete), remote changes through the emulator's controls (add, edit, rename, delete), and random faults
//! (10 % of requests, plus expiring download URLs and vanishing upload sessions) — while the daemon's resident
//! memory (VmRSS) and open file descriptors are sampled every `GALLERYFS_SOAK_SAMPLE_SECS` (default 2). After a
//! warm-up (a fifth of the run, at least 10 s) both must be flat: the last third's maximum at most the first
//! third's maximum plus a margin (RSS: 24 MiB + 10 %; fds: 8), and the fd count may not grow monotonically. The
//! curve is printed and written to `target/reliability/soak.csv`. At the end the outbox drains and OneDrive holds
//! exactly what the mount holds.

use crate::common;
use crate::fault_support as reliability_support;

use common::e2e::{wait_until, Env};
use galleryfs::emulator::media::Content;
use rand::{Rng, SeedableRng};
use reliability_support as rs;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long after a remote change a read of that photo may fail (until the daemon has heard of the change: the
/// poll interval, 2 s, plus a loaded machine's delays).
const RACE_WINDOW: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug)]
struct Sample {
    secs: f64,
    rss_kib: u64,
    fds: u64,
}

fn sample(pid: i32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
}

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Walks the tree below `dir` (readdir + stat of everything), as a file manager or `ls -lR` does.
fn browse(dir: &std::path::Path) -> usize {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            n += 1;
            if let Ok(md) = std::fs::symlink_metadata(e.path()) {
                if md.is_dir() {
                    n += browse(&e.path());
                }
            }
        }
    }
    n
}

/// Max of a slice of samples by a field.
fn max_of(s: &[Sample], f: impl Fn(&Sample) -> u64) -> u64 {
    s.iter().map(f).max().unwrap_or(0)
}

/// A local file the test made is not where it should be: what happened to its slot, both listings (the daemon's
/// log is kept).
fn lost(env: &Env, history: &[String], slot: usize, what: &str) -> String {
    let mark = format!("slot {slot}:");
    let mine: Vec<&String> = history.iter().filter(|h| h.contains(&mark)).collect();
    let listing = common::sh(&format!("ls -la '{}/Local'", env.mnt.display()));
    let log = rs::keep_daemon_log(env, "soak");
    format!(
        "{what}\nhistory of slot {slot}: {mine:#?}\nthe mount's Local/: {}\nOneDrive's Local/: {:?}\ndaemon log: {}",
        String::from_utf8_lossy(&listing.stdout),
        rs::remote_files(&env.emu().state, &format!("{}/Local", env.gallery_root()))
            .keys()
            .collect::<Vec<_>>(),
        log.display()
    )
}

#[test]
fn memory_and_file_descriptors_stay_flat_under_mixed_work() {
    require_fuse!();
    let duration = Duration::from_secs(env_secs("GALLERYFS_SOAK_SECS", 75));
    let every = Duration::from_secs(env_secs("GALLERYFS_SOAK_SAMPLE_SECS", 2).max(1));
    let env = Env::start(0);
    let root = env.gallery_root().to_string();
    let remote_dir = format!("{root}/DCIM/Phone");
    // Photos "from the phone": changed remotely during the run.
    let mut remote: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    for i in 0..24usize {
        let bytes = rs::random_bytes(30_000 + i * 40_000, 1_000 + i as u64);
        env.emu()
            .state
            .add_file(
                &format!("{remote_dir}/P_{i:02}.jpg"),
                Content::Bytes(bytes.clone().into()),
            )
            .unwrap();
        remote.insert(i, bytes);
    }
    env.login();
    env.mount("poll_interval=2,write_back=1");
    let m = env.mnt.clone();
    let pid = rs::daemon_pid(&env);
    rs::install_random_mix(&env.emu().state.faults, 0.10, 0x50a4);
    let mut chaos = rs::Chaos::start(env.emu().state.clone(), Duration::from_secs(5), 9);

    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let sampling = Arc::new(AtomicBool::new(true));
    let start = Instant::now();
    let sampler = {
        let (samples, on) = (samples.clone(), sampling.clone());
        std::thread::spawn(move || {
            while on.load(Ordering::Relaxed) {
                if let Some((rss_kib, fds)) = sample(pid) {
                    samples.lock().unwrap().push(Sample {
                        secs: start.elapsed().as_secs_f64(),
                        rss_kib,
                        fds,
                    });
                }
                let next = Instant::now() + every;
                while Instant::now() < next && on.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        })
    };

    // The mixed work. Local files live in `Local/` as slots 0..32: (current name, bytes).
    let local_dir = m.join("Local");
    std::fs::create_dir(&local_dir).unwrap();
    let mut local: BTreeMap<usize, (String, Vec<u8>)> = BTreeMap::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x50a4);
    let mut ops: BTreeMap<&str, u64> = BTreeMap::new();
    let mut read_errors = Vec::new();
    let mut generation = 0u64;
    let mut history: Vec<String> = Vec::new();
    let mut changed_at: BTreeMap<usize, Instant> = BTreeMap::new();
    let mut raced_reads = 0u64;
    let mut op_errors: Vec<String> = Vec::new();
    while start.elapsed() < duration {
        generation += 1;
        let what = rng.random_range(0..100);
        let op = match what {
            0..=14 => {
                browse(&m);
                "browse"
            }
            15..=34 => {
                // Read a phone photo or a local file whole.
                let phone = rng.random_range(0..24usize);
                let path = if rng.random_bool(0.5) {
                    m.join(format!("DCIM/Phone/P_{phone:02}.jpg"))
                } else {
                    match local.values().nth(rng.random_range(0..local.len().max(1))) {
                        Some((name, _)) => local_dir.join(name),
                        None => continue,
                    }
                };
                if let Err(e) = std::fs::read(&path) {
                    // A phone photo may be gone at that moment, or changed since the daemon last heard of it (the
                    // read is pinned to the version it knows: EIO rather than a mix of two versions). A local file
                    // never fails, nor does a phone photo left alone for a while.
                    let raced = !path.starts_with(&local_dir)
                        && (e.kind() == std::io::ErrorKind::NotFound
                            || changed_at.get(&phone).is_some_and(|t| t.elapsed() < RACE_WINDOW));
                    if raced {
                        raced_reads += 1;
                    } else {
                        read_errors.push(format!("{}: {e}", path.display()));
                    }
                }
                "read"
            }
            35..=39 => {
                let _ = env.galleryfs(&["free", &m.join("DCIM").display().to_string()]);
                "evict"
            }
            40..=69 => {
                let slot = rng.random_range(0..32usize);
                let bytes = rs::random_bytes(rng.random_range(1_000..600_000), generation);
                match local.get(&slot).cloned() {
                    None => {
                        let name = format!("L_{slot:02}_{generation}.jpg");
                        match std::fs::write(local_dir.join(&name), &bytes) {
                            Ok(()) => {
                                local.insert(slot, (name.clone(), bytes));
                            }
                            Err(e) => op_errors.push(lost(&env, &history, slot, &format!("create {name}: {e}"))),
                        }
                        history.push(format!(
                            "{:.1}s slot {slot}: create {name}",
                            start.elapsed().as_secs_f64()
                        ));
                        "create"
                    }
                    Some((name, _)) => match rng.random_range(0..3) {
                        0 => {
                            match std::fs::write(local_dir.join(&name), &bytes) {
                                Ok(()) => {
                                    local.insert(slot, (name.clone(), bytes));
                                }
                                Err(e) => {
                                    op_errors.push(lost(&env, &history, slot, &format!("overwrite {name}: {e}")));
                                    local.remove(&slot);
                                }
                            }
                            history.push(format!(
                                "{:.1}s slot {slot}: overwrite {name}",
                                start.elapsed().as_secs_f64()
                            ));
                            "overwrite"
                        }
                        1 => {
                            let to = format!("L_{slot:02}_{generation}.jpg");
                            let old = local.remove(&slot).unwrap().1;
                            match std::fs::rename(local_dir.join(&name), local_dir.join(&to)) {
                                Ok(()) => {
                                    local.insert(slot, (to.clone(), old));
                                }
                                Err(e) => {
                                    op_errors.push(lost(&env, &history, slot, &format!("rename {name} {to}: {e}")))
                                }
                            }
                            history.push(format!(
                                "{:.1}s slot {slot}: rename {name} -> {to}",
                                start.elapsed().as_secs_f64()
                            ));
                            "rename"
                        }
                        _ => {
                            if let Err(e) = std::fs::remove_file(local_dir.join(&name)) {
                                op_errors.push(lost(&env, &history, slot, &format!("rm {name}: {e}")));
                            }
                            history.push(format!("{:.1}s slot {slot}: rm {name}", start.elapsed().as_secs_f64()));
                            local.remove(&slot);
                            "delete"
                        }
                    },
                }
            }
            _ => {
                // A remote change (the phone, the web).
                let i = rng.random_range(0..24usize);
                let path = format!("{remote_dir}/P_{i:02}.jpg");
                let state = &env.emu().state;
                changed_at.insert(i, Instant::now());
                match remote.get(&i) {
                    None => {
                        let bytes = rs::random_bytes(rng.random_range(10_000..400_000), generation);
                        state.add_file(&path, Content::Bytes(bytes.clone().into())).unwrap();
                        remote.insert(i, bytes);
                        "remote add"
                    }
                    Some(_) if rng.random_bool(0.6) => {
                        let bytes = rs::random_bytes(rng.random_range(10_000..400_000), generation);
                        state.edit_file(&path, Content::Bytes(bytes.clone().into())).unwrap();
                        remote.insert(i, bytes);
                        "remote edit"
                    }
                    Some(_) => {
                        state.delete_item(&path).unwrap();
                        remote.remove(&i);
                        "remote delete"
                    }
                }
            }
        };
        *ops.entry(op).or_default() += 1;
        std::thread::sleep(Duration::from_millis(rng.random_range(20..200)));
    }
    let worked = start.elapsed();

    // Settle: faults off, the outbox drains, and OneDrive holds exactly the local files.
    chaos.stop();
    env.emu().state.faults.clear_rules();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let samples = samples.lock().unwrap().clone();

    // The curve.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/reliability");
    let _ = std::fs::create_dir_all(&dir);
    let mut csv = std::fs::File::create(dir.join("soak.csv")).unwrap();
    writeln!(csv, "seconds,rss_kib,fds").unwrap();
    for s in &samples {
        writeln!(csv, "{:.1},{},{}", s.secs, s.rss_kib, s.fds).unwrap();
    }
    let step = (samples.len() / 40).max(1);
    for s in samples.iter().step_by(step) {
        eprintln!(
            "t={:>7.1}s rss={:>7.1} MiB fds={:>3} {}",
            s.secs,
            s.rss_kib as f64 / 1024.0,
            s.fds,
            "#".repeat((s.rss_kib / 2048) as usize)
        );
    }
    let warm = (worked.as_secs_f64() / 5.0).max(10.0);
    let after: Vec<Sample> = samples.iter().copied().filter(|s| s.secs >= warm).collect();
    assert!(after.len() >= 6, "enough samples after warm-up: {}", after.len());
    let third = after.len() / 3;
    let (first, last) = (&after[..third], &after[after.len() - third..]);
    let (rss_first, rss_last) = (max_of(first, |s| s.rss_kib), max_of(last, |s| s.rss_kib));
    let (fd_first, fd_last) = (max_of(first, |s| s.fds), max_of(last, |s| s.fds));
    let rss_margin = 24 * 1024 + rss_first / 10;
    let counts = env.emu().state.faults.counts();
    eprintln!(
        "RESULT soak: {:?} of work, {} samples; ops {ops:?}; faults {counts:?}; url expiries {}, session drops {}; \
         RSS max first third {:.1} MiB, last third {:.1} MiB (limit +{:.1} MiB); fds max first third {fd_first}, \
         last third {fd_last} (limit +8); {raced_reads} reads raced a remote change; read errors {}; local operation errors {}",
        worked,
        samples.len(),
        chaos.url_expiries.load(Ordering::Relaxed),
        chaos.session_drops.load(Ordering::Relaxed),
        rss_first as f64 / 1024.0,
        rss_last as f64 / 1024.0,
        rss_margin as f64 / 1024.0,
        read_errors.len(),
        op_errors.len()
    );
    let log = rs::keep_daemon_log(&env, "soak");
    assert!(
        op_errors.is_empty(),
        "local operations failed:\n{}",
        op_errors.join("\n\n")
    );
    assert!(
        rs::wait_outbox_drained(&env, Duration::from_secs(180)),
        "outbox drained: {}",
        rs::status_json_lenient(&env)
    );
    // What the mount holds: the test's model, unless a local operation failed (then the files as they are).
    let want: BTreeMap<String, String> = if op_errors.is_empty() {
        local.values().map(|(n, b)| (n.clone(), rs::hash(b))).collect()
    } else {
        rs::local_files(&local_dir)
            .into_iter()
            .map(|(n, b)| (n, rs::hash(&b)))
            .collect()
    };
    let remote_local = || -> BTreeMap<String, String> {
        rs::remote_files(&env.emu().state, &format!("{root}/Local"))
            .into_iter()
            .map(|(k, (_, h))| (k, h.unwrap_or_default()))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(20), || remote_local() == want),
        "OneDrive's Local/ differs from the mount's:\nwant {want:?}\nhave {:?}",
        remote_local()
    );
    // The phone's changes show in the mount, byte for byte.
    assert!(
        wait_until(Duration::from_secs(30), || remote.iter().all(|(i, b)| {
            std::fs::read(m.join(format!("DCIM/Phone/P_{i:02}.jpg"))).is_ok_and(|r| r == *b)
        })),
        "the mount shows the phone's latest photos"
    );

    assert!(
        read_errors.is_empty(),
        "reads failed: {read_errors:?} (daemon log: {})",
        log.display()
    );
    assert!(
        rss_last <= rss_first + rss_margin,
        "resident memory grew: {rss_first} KiB → {rss_last} KiB"
    );
    assert!(fd_last <= fd_first + 8, "open fds grew: {fd_first} → {fd_last}");
    let fds: Vec<u64> = after.iter().map(|s| s.fds).collect();
    let monotone = fds.windows(2).all(|w| w[1] >= w[0]) && fds.last() > fds.first();
    assert!(!monotone, "open fds grew monotonically: {fds:?}");
    env.unmount();
}
