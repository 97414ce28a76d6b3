//! Faults at scale (issue 6, item 1): the real daemon mounted over the emulator while a fifth of all requests
//! fail at random (429/503 with Retry-After, 500/502/504, resets mid-body, truncated bodies, slow answers) and
//! download URLs expire and upload sessions vanish at random moments. Photos and videos (generated, some above
//! 4 MiB so upload sessions are used, and the real samples) are copied in with `cp -r`, renamed, moved and
//! deleted with `mv`/`rm`, then evicted and copied out again. Checked: every byte identical on both sides
//! (quickXorHash of the source against the emulator's state, bytes read back against the source), nothing
//! duplicated (exactly the expected items, no conflict copies), nothing lost, and Retry-After honoured by every
//! request (from the emulator's request log). `GALLERYFS_RELIABILITY_LONG=1` runs a few hundred files.

use crate::common;
use crate::fault_support as reliability_support;

use common::e2e::{wait_until, Env};
use galleryfs::emulator::media::Content;
use reliability_support as rs;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// The fraction of requests that fail (or are slowed).
const FAULT_RATE: f64 = 0.20;

struct Plan {
    generated: usize,
    big: usize,
    drain_limit: Duration,
}

fn plan() -> Plan {
    if std::env::var("GALLERYFS_RELIABILITY_LONG").is_ok_and(|v| v == "1") {
        Plan {
            generated: 420,
            big: 24,
            drain_limit: Duration::from_secs(1200),
        }
    } else {
        Plan {
            generated: 104,
            big: 5,
            drain_limit: Duration::from_secs(240),
        }
    }
}

/// The source tree: relative path (below `Import/`) → bytes.
fn source_files(plan: &Plan) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for i in 0..plan.generated {
        let len = 8_000 + (i * 7_919) % 400_000;
        files.insert(format!("Camera/IMG_{i:04}.jpg"), rs::random_bytes(len, i as u64));
    }
    for i in 0..plan.big {
        // 4 MiB + something: above the simple-upload limit the daemon uses, so upload sessions carry them.
        let len = (4 << 20) + 123_457 + i * 611_953;
        files.insert(
            format!("Videos/VID_{i:03}.mp4"),
            rs::random_bytes(len, 10_000 + i as u64),
        );
    }
    for (name, bytes) in rs::real_samples() {
        files.insert(format!("Real/{name}"), bytes);
    }
    files
}

fn write_tree(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (rel, bytes) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
}

/// Renames, moves and deletes with real tools, applied to `expected` as well.
fn rename_move_delete(m: &str, expected: &mut BTreeMap<String, Vec<u8>>, round: usize, every: usize) {
    let names: Vec<String> = expected.keys().cloned().collect();
    let mut cmds = Vec::new();
    for (n, rel) in names.iter().enumerate() {
        if n % every != round % every {
            continue;
        }
        let bytes = expected.remove(rel).unwrap();
        let (dir, file) = rel.rsplit_once('/').unwrap();
        match (n / every) % 3 {
            0 => {
                let to = format!("{dir}/r{round}_{file}");
                cmds.push(format!("mv 'Import/{rel}' 'Import/{to}'"));
                expected.insert(to, bytes);
            }
            1 => {
                let to = format!("Moved{round}/{file}");
                cmds.push(format!(
                    "mkdir -p 'Import/Moved{round}' && mv 'Import/{rel}' 'Import/{to}'"
                ));
                expected.insert(to, bytes);
            }
            _ => cmds.push(format!("rm 'Import/{rel}'")),
        }
    }
    common::sh_ok(&format!("cd '{m}' && {}", cmds.join(" && ")));
}

/// Compares the emulator's files below the gallery's `Import` folder with `expected`; describes every difference.
fn remote_differences(env: &Env, expected: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let remote = rs::remote_files(&env.emu().state, &format!("{}/Import", env.gallery_root()));
    let mut diffs = Vec::new();
    for (rel, bytes) in expected {
        match remote.get(rel) {
            None => diffs.push(format!("lost: {rel}")),
            Some((_, h)) if h.as_deref() != Some(rs::hash(bytes).as_str()) => {
                diffs.push(format!("different bytes: {rel} ({h:?} vs {})", rs::hash(bytes)))
            }
            Some(_) => {}
        }
    }
    for rel in remote.keys() {
        if !expected.contains_key(rel) {
            diffs.push(format!("extra (duplicate, conflict copy or undone delete): {rel}"));
        }
    }
    diffs
}

/// The mount lists exactly the expected files below `Import`.
fn assert_mount_lists(env: &Env, expected: &BTreeMap<String, Vec<u8>>) {
    let out = common::sh_ok(&format!("cd '{}/Import' && find . -type f | sort", env.mnt.display()));
    let listed: Vec<&str> = out.lines().map(|l| l.trim_start_matches("./")).collect();
    let want: Vec<&str> = expected.keys().map(String::as_str).collect();
    let missing: Vec<&&str> = want.iter().filter(|w| !listed.contains(w)).collect();
    let extra: Vec<&&str> = listed.iter().filter(|l| !want.contains(l)).collect();
    let log = rs::keep_daemon_log(env, "faults");
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the mount lists something else: missing {missing:?}, extra {extra:?}; OneDrive: {:?}; daemon log: {}",
        remote_differences(env, expected),
        log.display()
    );
}

#[test]
fn copies_renames_and_deletes_survive_a_fifth_of_requests_failing() {
    require_fuse!();
    let started = Instant::now();
    let plan = plan();
    let env = Env::start(0);
    // Photos already on OneDrive (as the phone uploaded them), read back under faults too.
    let mut phone = BTreeMap::new();
    for i in 0..12u64 {
        let bytes = rs::random_bytes(50_000 + (i as usize) * 90_001, 77_000 + i);
        let path = format!("{}/DCIM/Camera/PHONE_{i:02}.jpg", env.gallery_root());
        env.emu()
            .state
            .add_file(&path, Content::Bytes(bytes.clone().into()))
            .unwrap();
        phone.insert(format!("DCIM/Camera/PHONE_{i:02}.jpg"), bytes);
    }
    env.login();
    env.mount("poll_interval=3,write_back=1");
    let m = env.mnt.display().to_string();

    let faults = env.emu().state.faults.clone();
    rs::install_random_mix(&faults, FAULT_RATE, 0x6a11_f00d);
    let mut chaos = rs::Chaos::start(env.emu().state.clone(), Duration::from_millis(2500), 42);
    let first_seq = env.emu().state.log.next_seq();

    // 1. Copy everything in with cp -r, then at once (uploads in flight) rename, move and delete some.
    let mut expected = source_files(&plan);
    let src = tempfile::tempdir().unwrap();
    write_tree(&src.path().join("Import"), &expected);
    let total_bytes: usize = expected.values().map(Vec::len).sum();
    eprintln!(
        "copying {} files ({} MiB) into the mount",
        expected.len(),
        total_bytes >> 20
    );
    common::sh_ok(&format!("cp -r '{}/Import' '{m}/'", src.path().display()));
    rename_move_delete(&m, &mut expected, 0, 9);
    eprintln!("copied in after {:?}", started.elapsed());

    // 2. Once OneDrive has it all: rename, move and delete more (PATCH and DELETE under faults).
    let drained = rs::wait_outbox_drained(&env, plan.drain_limit);
    eprintln!("first drain after {:?}", started.elapsed());
    assert!(drained, "outbox not drained: {}", rs::status_json_lenient(&env));
    assert_mount_lists(&env, &expected);
    rename_move_delete(&m, &mut expected, 1, 11);
    assert!(
        rs::wait_outbox_drained(&env, plan.drain_limit),
        "outbox not drained: {}",
        rs::status_json_lenient(&env)
    );
    eprintln!("second drain after {:?}", started.elapsed());

    // 3. Every byte identical, nothing duplicated, nothing lost: after a drain the emulator matches at once
    // (a short wait only tells "slow" from "wrong" in the message).
    let diffs = remote_differences(&env, &expected);
    if !diffs.is_empty() {
        wait_until(Duration::from_secs(20), || {
            remote_differences(&env, &expected).is_empty()
        });
    }
    let late = remote_differences(&env, &expected);
    assert!(
        diffs.is_empty(),
        "after the outbox drained, OneDrive differs ({} items; still after 20 s: {}):\n{}\nstatus: {}",
        diffs.len(),
        late.len(),
        diffs.join("\n"),
        rs::status_json_lenient(&env)
    );
    let all = rs::remote_files(&env.emu().state, env.gallery_root());
    assert_eq!(
        all.len(),
        expected.len() + phone.len(),
        "no other files anywhere in the gallery: {:?}",
        all.keys().filter(|k| !k.starts_with("Import/")).collect::<Vec<_>>()
    );
    assert!(!all.keys().any(|k| k.contains("conflict")), "no conflict copies");

    // 4. Out again: evict the cached originals, then cp -r out of the mount (downloads under faults).
    let freed = env.galleryfs(&["free", &format!("{m}/Import"), &format!("{m}/DCIM")]);
    assert!(
        freed.status.success(),
        "free: {}",
        String::from_utf8_lossy(&freed.stderr)
    );
    let out = tempfile::tempdir().unwrap();
    common::sh_ok(&format!("cp -r '{m}/Import' '{m}/DCIM' '{}/'", out.path().display()));
    let read_back = rs::local_files(&out.path().join("Import"));
    assert_eq!(
        read_back.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the mount lists exactly what was left"
    );
    for (rel, bytes) in &expected {
        assert!(read_back[rel] == *bytes, "{rel}: the bytes read back differ");
    }
    let phone_back = rs::local_files(&out.path().join("DCIM"));
    for (rel, bytes) in &phone {
        let rel = rel.strip_prefix("DCIM/").unwrap();
        assert!(
            phone_back.get(rel) == Some(bytes),
            "{rel}: a phone photo read back differs"
        );
    }
    eprintln!("read back after {:?}", started.elapsed());

    // 5. Retry-After honoured by every request, and the faults really happened.
    chaos.stop();
    faults.clear_rules();
    let audit = rs::audit_throttling(&env.emu().state);
    let requests = env
        .emu()
        .state
        .log
        .entries_since(first_seq)
        .iter()
        .filter(|e| !e.path.starts_with("/_emulator"))
        .count();
    let counts = faults.counts();
    let injected: u64 = counts.values().sum();
    eprintln!(
        "RESULT faults: {requests} requests, {injected} faults injected and survived {counts:?}, \
         {} download-URL expiries, {} upload-session drops; {} throttle windows, {} requests already on the wire \
         inside one, {} violations; {} files ({} MiB) in, {} after renames/moves/deletes, 0 bytes lost; {:?}",
        chaos.url_expiries.load(std::sync::atomic::Ordering::Relaxed),
        chaos.session_drops.load(std::sync::atomic::Ordering::Relaxed),
        audit.windows,
        audit.inside_raw,
        audit.violations.len(),
        source_files(&plan).len(),
        total_bytes >> 20,
        expected.len(),
        started.elapsed()
    );
    assert!(
        audit.violations.is_empty(),
        "requests inside a Retry-After window:\n{}",
        audit.violations.join("\n")
    );
    for kind in ["status_429", "status_503", "status_500", "reset", "truncate", "latency"] {
        assert!(
            counts.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} fault was injected: {counts:?}"
        );
    }
    assert!(
        injected as f64 > requests as f64 * FAULT_RATE * 0.5,
        "{injected} faults for {requests} requests"
    );
    env.unmount();
}

/// A local rename never flickers back: a delta answer made before the rename reached OneDrive but delivered after
/// it (a slow link) must not put the file back under its old name, not even for a moment. Two ways the late
/// answer mentions the file: its own upload just finished (copy, then rename), or the phone just edited it.
#[test]
fn a_rename_is_never_undone_by_a_late_delta_answer() {
    require_fuse!();
    use galleryfs::emulator::faults::{FaultKind, FaultRule};
    let env = Env::start(0);
    let album = format!("{}/Album", env.gallery_root());
    for i in 0..3 {
        env.emu()
            .state
            .add_file(
                &format!("{album}/PHONE_{i}.jpg"),
                Content::Bytes(rs::random_bytes(20_000, i).into()),
            )
            .unwrap();
    }
    env.login();
    env.mount("poll_interval=1,write_back=0,thumbnails=off");
    let m = env.mnt.display().to_string();
    // Every delta answer arrives 1.5 s after it was made.
    env.emu()
        .state
        .faults
        .add_rule(FaultRule::new(FaultKind::SlowAnswer { ms: 1500 }).path_contains("/delta"));
    let mut flickers = Vec::new();
    let mut renamed = Vec::new();
    for i in 0..6u64 {
        let (old, new) = if i % 2 == 0 {
            // Copy in, and rename as soon as OneDrive has it.
            let name = format!("NEW_{i}.jpg");
            std::fs::write(format!("{m}/Album/{name}"), rs::random_bytes(30_000, 100 + i)).unwrap();
            assert!(wait_until(Duration::from_secs(30), || rs::remote_files(
                &env.emu().state,
                &album
            )
            .contains_key(&name)));
            (name, format!("NEW_{i}_renamed.jpg"))
        } else {
            // The phone edits it; rename at once.
            let name = format!("PHONE_{}.jpg", i / 2);
            let bytes = rs::random_bytes(25_000, 200 + i);
            env.emu()
                .state
                .edit_file(&format!("{album}/{name}"), Content::Bytes(bytes.into()))
                .unwrap();
            std::thread::sleep(Duration::from_millis(300));
            (name, format!("PHONE_{}_renamed.jpg", i / 2))
        };
        std::fs::rename(format!("{m}/Album/{old}"), format!("{m}/Album/{new}")).unwrap();
        renamed.push(new.clone());
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            let listing: Vec<String> = std::fs::read_dir(format!("{m}/Album"))
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            if listing.contains(&old) || !listing.contains(&new) {
                flickers.push(format!(
                    "{:?} after renaming {old} to {new}: {listing:?}",
                    start.elapsed()
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    assert!(
        flickers.is_empty(),
        "renames undone for a while:\n{}",
        flickers.join("\n")
    );
    assert!(
        wait_until(Duration::from_secs(30), || {
            let remote = rs::remote_files(&env.emu().state, &album);
            renamed.iter().all(|n| remote.contains_key(n)) && remote.len() == renamed.len()
        }),
        "OneDrive has the new names: {:?}",
        rs::remote_files(&env.emu().state, &album).keys().collect::<Vec<_>>()
    );
    env.unmount();
}

/// An edit whose upload reached OneDrive but whose answer was lost every time the client asked (connection reset
/// mid-answer, retries exhausted) is retried later by the outbox: OneDrive then already holds exactly the edited
/// bytes, which is the daemon's own upload, not a change made elsewhere — no conflict copy, nothing uploaded twice.
#[test]
fn an_edit_whose_answer_was_lost_is_not_a_conflict() {
    require_fuse!();
    use galleryfs::emulator::faults::{FaultKind, FaultRule};
    let env = Env::start(0);
    let album = format!("{}/Album", env.gallery_root());
    env.emu()
        .state
        .add_file(
            &format!("{album}/A.jpg"),
            Content::Bytes(rs::random_bytes(50_000, 1).into()),
        )
        .unwrap();
    env.login();
    env.mount("poll_interval=2,write_back=0,thumbnails=off");
    let m = env.mnt.display().to_string();
    assert!(std::path::Path::new(&format!("{m}/Album/A.jpg")).exists());
    let faults = &env.emu().state.faults;
    faults.add_rule(
        FaultRule::new(FaultKind::Reset { after_bytes: 10 })
            .method("PUT")
            .count(5),
    );
    let edited = rs::random_bytes(60_000, 2);
    std::fs::write(format!("{m}/Album/A.jpg"), &edited).unwrap();
    assert!(
        rs::wait_outbox_drained(&env, Duration::from_secs(90)),
        "{}",
        rs::status_json_lenient(&env)
    );
    assert_eq!(
        faults.counts().get("reset"),
        Some(&5),
        "every answer of the first attempt was lost"
    );
    let remote = rs::remote_files(&env.emu().state, &album);
    assert_eq!(
        remote.keys().collect::<Vec<_>>(),
        vec!["A.jpg"],
        "no conflict copy on OneDrive"
    );
    assert_eq!(remote["A.jpg"].1.as_deref(), Some(rs::hash(&edited).as_str()));
    let listing: Vec<String> = std::fs::read_dir(format!("{m}/Album"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listing, vec!["A.jpg"], "no conflict copy in the mount");
    assert_eq!(std::fs::read(format!("{m}/Album/A.jpg")).unwrap(), edited);
    env.unmount();
}

/// A download URL fetched for a read can expire before the read gets through (here: a 503 with Retry-After
/// pauses every request for 1 s, and the URL expires meanwhile): the read fetches a fresh URL once and succeeds,
/// instead of failing with EIO (seen in the soak as an `open` for an edit failing with 403 "URL has expired").
#[test]
fn a_download_url_that_expires_during_a_throttle_pause_is_replaced() {
    use galleryfs::emulator::faults::{FaultHost, FaultKind, FaultRule};
    use galleryfs::remote::auth::StaticToken;
    use galleryfs::remote::{Endpoints, GraphClient, RetryPolicy};
    use std::sync::Arc;
    let env = Env::start(0);
    let h = env.emu();
    let bytes = rs::random_bytes(300_000, 5);
    let id = h
        .state
        .add_file(
            &format!("{}/a.jpg", env.gallery_root()),
            Content::Bytes(bytes.clone().into()),
        )
        .unwrap();
    let endpoints = Endpoints {
        graph_url: h.graph_url(),
        login_url: h.login_url(),
        ..Default::default()
    };
    let client = GraphClient::new(endpoints, Arc::new(StaticToken(h.test_token())), RetryPolicy::default()).unwrap();
    h.state.faults.add_rule(
        FaultRule::new(FaultKind::Status {
            status: 503,
            retry_after_secs: Some(1),
        })
        .host(FaultHost::Content)
        .count(1),
    );
    let state = h.state.clone();
    let expiry = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        state.expire_download_urls();
    });
    let got = env.rt.block_on(async {
        let mut slot = None;
        let mut stream = client.item_range(&id, &mut slot, 0, bytes.len() as u64).await?;
        let mut out = Vec::new();
        use futures::StreamExt;
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok::<_, galleryfs::remote::GraphError>(out)
    });
    expiry.join().unwrap();
    let got = got.expect("the read gets through with a fresh URL");
    assert!(got == bytes, "the bytes read are the file's");
    let content_gets: Vec<u16> = h
        .state
        .log
        .entries()
        .iter()
        .filter(|e| e.host == "content")
        .map(|e| e.status)
        .collect();
    assert_eq!(content_gets.first(), Some(&503), "{content_gets:?}");
    assert!(
        content_gets.contains(&403) || content_gets.contains(&410) || content_gets.contains(&404),
        "{content_gets:?}"
    );
}
