//! Secrets and access (issue 6, item 5): a full run of the real binary at the most verbose log level (device-code
//! login, mount, reads, writes including an upload session, renames, deletes, access-token expiry and refresh,
//! random faults, status/trash/free commands) with the daemon's log and every command's output captured, then
//! scanned for every secret the emulator handed out: access and refresh tokens, device codes, the tokens of
//! pre-authenticated download and upload URLs, thumbnail URL signatures. Also: the token file is 0600 and a looser
//! one is refused; the mount is private to its user unless `allow_other` (another uid cannot stat it); plain http
//! is refused for a non-loopback Graph or login URL.

use crate::common;
use crate::fault_support as reliability_support;

use common::e2e::{wait_until, Env};
use galleryfs::emulator::media::Content;
use reliability_support as rs;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TRACE: &[(&str, &str)] = &[("GALLERYFS_LOG", "trace"), ("RUST_LOG", "trace")];

/// Captured command outputs (stdout and stderr of every CLI run).
#[derive(Default)]
struct Captured(Vec<String>);

impl Captured {
    fn run(&mut self, env: &Env, args: &[&str]) -> Output {
        let out = rs::galleryfs_with(env, args, TRACE);
        self.0.push(format!(
            "$ galleryfs {}\n{}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
        out
    }

    fn ok(&mut self, env: &Env, args: &[&str]) -> String {
        let out = self.run(env, args);
        assert!(
            out.status.success(),
            "galleryfs {args:?} failed: {}",
            self.0.last().unwrap()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Every string value under a key containing `token` in a JSON document.
fn token_values(v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                if let (true, Some(s)) = (k.contains("token"), v.as_str()) {
                    out.insert(s.to_string());
                }
                token_values(v, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| token_values(v, out)),
        _ => {}
    }
}

/// Access and refresh tokens the identity platform issued (from its snapshot: `[token, …]` pairs).
fn identity_tokens(env: &Env) -> BTreeSet<String> {
    let snap = serde_json::to_value(env.emu().state.identity.snapshot()).unwrap();
    let mut out = BTreeSet::new();
    for key in ["access_tokens", "refresh_tokens"] {
        for pair in snap[key].as_array().into_iter().flatten() {
            if let Some(t) = pair[0].as_str() {
                out.insert(t.to_string());
            }
        }
    }
    out
}

fn token_file(env: &Env) -> std::path::PathBuf {
    let accounts = env.dir.path().join("config");
    walk_files(&accounts)
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".tokens.json"))
        .expect("a token file after login")
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Thumbnail URLs of every file in the gallery (pre-authenticated, stable), asked with a test token.
fn thumbnail_url_secrets(env: &Env) -> BTreeSet<String> {
    let token = env.emu().test_token();
    let graph = env.emu().graph_url();
    let ids: Vec<String> = env
        .emu()
        .state
        .state_dump()
        .into_iter()
        .filter(|e| e.kind == "file")
        .map(|e| e.id)
        .collect();
    env.rt.block_on(async move {
        let client = reqwest::Client::new();
        let mut out = BTreeSet::new();
        for id in ids {
            let Ok(r) = client
                .get(format!("{graph}/me/drive/items/{id}/thumbnails"))
                .bearer_auth(&token)
                .send()
                .await
            else {
                continue;
            };
            let mut urls = BTreeSet::new();
            if let Ok(v) = r.json::<serde_json::Value>().await {
                collect_urls(&v, &mut urls);
            }
            for u in urls {
                // The secret part: the path below the content host (its signature segment included).
                if let Some(last) = u.rsplit('/').next().filter(|s| s.len() >= 16) {
                    out.insert(last.to_string());
                }
            }
        }
        out
    })
}

fn collect_urls(v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                if let (true, Some(s)) = (k == "url", v.as_str()) {
                    out.insert(s.to_string());
                }
                collect_urls(v, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_urls(v, out)),
        _ => {}
    }
}

/// Places in `text` where a pre-authenticated URL's path shows (`{content}/download/…`, `/upload/…`,
/// `/thumbnails/…`), whatever its token: the redacted form is `{content}/…`.
fn preauthenticated_paths(text: &str, content_url: &str) -> Vec<String> {
    ["/download/", "/upload/", "/thumbnails/"]
        .iter()
        .flat_map(|p| {
            let needle = format!("{content_url}{p}");
            text.match_indices(&needle)
                .map(|(i, _)| text[i..].chars().take(120).collect::<String>())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn no_secret_reaches_any_log_or_output_at_trace_level() {
    require_fuse!();
    let env = Env::start(0);
    for i in 0..8u64 {
        let path = format!("{}/DCIM/Camera/IMG_{i}.jpg", env.gallery_root());
        let bytes = rs::random_bytes(40_000 + i as usize * 50_000, 500 + i);
        env.emu().state.add_file(&path, Content::Bytes(bytes.into())).unwrap();
    }
    let mut cap = Captured::default();
    let emu = env.emu();
    // Short-lived access tokens (5 s before the daemon's 120 s refresh margin): the run refreshes them by itself,
    // besides the forced expiry below.
    emu.state.identity.set_access_token_lifetime(125);
    cap.ok(
        &env,
        &[
            "login",
            "--graph-url",
            &emu.graph_url(),
            "--login-url",
            &emu.login_url(),
        ],
    );
    let tokens_file = token_file(&env);
    let mode = std::fs::metadata(&tokens_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "token file {} mode {mode:o}", tokens_file.display());
    let mut secrets: BTreeSet<String> = BTreeSet::new();
    let collect_token_file = |secrets: &mut BTreeSet<String>| {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&tokens_file).unwrap()).unwrap();
        token_values(&v, secrets);
    };
    collect_token_file(&mut secrets);
    assert!(!secrets.is_empty(), "the token file holds tokens");

    // Upload-session tokens vanish from the emulator when the session completes: sample them while it runs.
    let url_tokens = Arc::new(Mutex::new(BTreeSet::new()));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (state, tokens, on) = (emu.state.clone(), url_tokens.clone(), sampling.clone());
        std::thread::spawn(move || {
            while on.load(Ordering::Relaxed) {
                tokens.lock().unwrap().extend(state.issued_url_tokens());
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    cap.ok(
        &env,
        &[
            "mount",
            &env.mnt.display().to_string(),
            "-o",
            "poll_interval=2,write_back=0",
        ],
    );
    let m = env.mnt.display().to_string();
    rs::install_random_mix(&emu.state.faults, 0.10, 7);

    // Reads (download URLs), writes (simple upload and an upload session), rename, delete.
    let out = tempfile::tempdir().unwrap();
    common::sh_ok(&format!("cp -r '{m}/DCIM' '{}/'", out.path().display()));
    let src = tempfile::tempdir().unwrap();
    let big = rs::random_bytes(6 << 20, 99);
    let small = rs::random_bytes(200_000, 98);
    std::fs::write(src.path().join("big.mp4"), &big).unwrap();
    std::fs::write(src.path().join("small.jpg"), &small).unwrap();
    common::sh_ok(&format!(
        "cp '{0}/big.mp4' '{0}/small.jpg' '{m}/' && mv '{m}/DCIM/Camera/IMG_1.jpg' '{m}/renamed.jpg' && rm '{m}/DCIM/Camera/IMG_2.jpg'",
        src.path().display()
    ));
    // Access tokens expire mid-run: the next requests get 401 and the daemon refreshes.
    std::thread::sleep(Duration::from_secs(2));
    emu.state.identity.expire_access_tokens();
    // The next Graph request (a delta poll at the latest) gets 401 and the daemon refreshes.
    let token_requests = || {
        emu.state
            .log
            .entries()
            .iter()
            .filter(|e| e.method == "POST" && e.path.ends_with("/oauth2/v2.0/token"))
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(60), || token_requests() >= 2),
        "the daemon refreshed its expired access token"
    );
    let uploaded = |name: &str, bytes: &[u8]| {
        rs::remote_files(&emu.state, env.gallery_root())
            .get(name)
            .is_some_and(|r| r.1.as_deref() == Some(rs::hash(bytes).as_str()))
    };
    assert!(
        wait_until(Duration::from_secs(120), || uploaded("big.mp4", &big)
            && uploaded("small.jpg", &small)),
        "uploads reached OneDrive; status: {}",
        rs::status_json_lenient(&env)
    );
    // More reads after the refresh, with the cache emptied first (new download URLs).
    cap.ok(&env, &["free", &format!("{m}/DCIM")]);
    common::sh_ok(&format!("cat '{m}/DCIM/Camera/IMG_3.jpg' '{m}/big.mp4' > /dev/null"));
    cap.ok(&env, &["status", "--json"]);
    cap.ok(&env, &["status", &format!("{m}/big.mp4")]);
    cap.ok(&env, &["trash", "list"]);
    emu.state.faults.clear_rules();
    assert!(rs::wait_outbox_drained(&env, Duration::from_secs(60)));
    cap.ok(&env, &["status"]);
    cap.ok(&env, &["unmount", &m]);
    wait_until(Duration::from_secs(10), || !common::e2e::is_mounted(&env.mnt));
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    collect_token_file(&mut secrets);

    // Everything the emulator handed out.
    let identity = identity_tokens(&env);
    // The sign-in and at least one refresh (the emulator keeps only live tokens, so count the token requests).
    let token_requests = emu
        .state
        .log
        .entries()
        .iter()
        .filter(|e| e.method == "POST" && e.path.ends_with("/oauth2/v2.0/token"))
        .count();
    assert!(
        token_requests >= 2,
        "the run refreshed its access token: {token_requests} token requests, {} live tokens",
        identity.len()
    );
    secrets.extend(identity);
    let device_codes = emu.state.identity.issued_device_codes();
    assert!(!device_codes.is_empty(), "a device code was issued");
    secrets.extend(device_codes);
    let mut urls = url_tokens.lock().unwrap().clone();
    urls.extend(emu.state.issued_url_tokens());
    assert!(urls.len() >= 4, "download and upload URLs were issued: {}", urls.len());
    secrets.extend(urls);
    let thumbs = thumbnail_url_secrets(&env);
    secrets.extend(thumbs);
    secrets.insert(emu.test_token());
    secrets.retain(|s| s.len() >= 16);

    let log = rs::daemon_log(&env);
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "the daemon logged at trace level"
    );
    assert!(
        log.contains("refresh") || log.contains("401"),
        "the log shows the token refresh happened"
    );
    let mut haystacks = vec![("daemon log".to_string(), log)];
    for (i, c) in cap.0.iter().enumerate() {
        haystacks.push((format!("command output #{i}"), c.clone()));
    }
    let mut hits = Vec::new();
    for (name, text) in &haystacks {
        for s in &secrets {
            if let Some(at) = text.find(s.as_str()) {
                let line = text[..at].lines().count();
                hits.push(format!("{name}, line {line}: a secret ({}…)", &s[..6]));
            }
        }
        for p in preauthenticated_paths(text, &emu.content_url()) {
            hits.push(format!(
                "{name}: a pre-authenticated URL path: {}",
                &p[..p.len().min(60)]
            ));
        }
        for q in [
            "access_token=",
            "refresh_token=",
            "device_code=",
            "tempauth=",
            "Bearer ey",
            "Bearer ",
        ] {
            if text.contains(q) && !text.contains(&format!("{q}[")) {
                // `Bearer ` followed by something other than a redaction marker.
                let i = text.find(q).unwrap();
                let after = &text[i + q.len()..];
                if !after.starts_with('…') && !after.starts_with("<redacted>") && !after.starts_with("[redacted]") {
                    hits.push(format!("{name}: `{q}` followed by a value"));
                }
            }
        }
    }
    let scanned: usize = haystacks.iter().map(|(_, t)| t.len()).sum();
    eprintln!(
        "RESULT secrets: {} secrets searched in {} texts ({} KiB), {} hits",
        secrets.len(),
        haystacks.len(),
        scanned >> 10,
        hits.len()
    );
    let saved = rs::keep_daemon_log(&env, "secrets");
    assert!(
        hits.is_empty(),
        "secrets leaked (log kept at {}):\n{}",
        saved.display(),
        hits.join("\n")
    );
}

#[test]
fn token_file_looser_than_0600_is_refused() {
    require_fuse!();
    let env = Env::start(1);
    env.login();
    let file = token_file(&env);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    for args in [
        vec!["status"],
        vec!["mount", &env.mnt.to_str().unwrap(), "-o", "thumbnails=off"],
    ] {
        let out = env.galleryfs(&args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
        assert!(
            err.contains(&*file.to_string_lossy()) && err.contains("644"),
            "{args:?} names the file and its mode: {err}"
        );
        if args[0] == "mount" {
            assert!(!out.status.success(), "mount refused");
            assert!(!common::e2e::is_mounted(&env.mnt));
        }
    }
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    env.galleryfs_ok(&["status"]);
}

/// Runs `cmd` as the user `tests`; None when there is no such user (or no way to switch to it).
fn as_tests_user(cmd: &str) -> Option<Output> {
    if !common::sh("getent passwd tests").status.success() || !nix::unistd::geteuid().is_root() {
        return None;
    }
    std::process::Command::new("setpriv")
        .args(["--reuid=tests", "--regid=tests", "--clear-groups", "sh", "-c", cmd])
        .output()
        .ok()
}

#[test]
fn the_mount_is_private_unless_allow_other() {
    require_fuse!();
    if as_tests_user("true").is_none_or(|o| !o.status.success()) {
        skip_test!("needs root and a user named `tests` (setpriv) to try the mount as another uid");
    }
    let env = Env::start(2);
    // The test's directories are private (0700): let the other user reach the mount point itself.
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    env.login();
    let m = env.mnt.display().to_string();
    env.mount("thumbnails=off");
    assert!(
        std::fs::metadata(format!("{m}/DCIM")).is_ok(),
        "the owner sees the gallery"
    );
    let other = as_tests_user(&format!("stat '{m}/DCIM'")).unwrap();
    assert!(
        !other.status.success(),
        "another uid cannot stat inside a private mount"
    );
    let other = as_tests_user(&format!("ls '{m}'")).unwrap();
    assert!(
        !other.status.success() && String::from_utf8_lossy(&other.stderr).contains("ermission denied"),
        "another uid cannot list a private mount: {}",
        String::from_utf8_lossy(&other.stderr)
    );
    env.unmount();
    env.mount("thumbnails=off,allow_other");
    let other = as_tests_user(&format!("stat '{m}/DCIM' && ls '{m}'")).unwrap();
    assert!(
        other.status.success(),
        "with allow_other another uid can: {}",
        String::from_utf8_lossy(&other.stderr)
    );
    env.unmount();
}

#[test]
fn plain_http_is_refused_for_a_non_loopback_host() {
    let env = Env::start(0);
    let emu = env.emu();
    for (graph, login) in [
        ("http://graph.example.com/v1.0".to_string(), emu.login_url()),
        (emu.graph_url(), "http://login.example.com".to_string()),
        ("http://10.1.2.3:8080/v1.0".to_string(), emu.login_url()),
    ] {
        let started = std::time::Instant::now();
        let out = env.galleryfs(&["login", "--graph-url", &graph, "--login-url", &login]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{graph} {login}: refused");
        assert!(
            err.contains("plain http") && err.contains("https"),
            "{graph} {login}: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "refused before any network access"
        );
    }
    assert!(
        emu.state.identity.issued_device_codes().is_empty(),
        "no sign-in was started for a refused URL"
    );
    // Loopback over plain http is accepted (the emulator), in all its documented forms.
    env.login();
}
