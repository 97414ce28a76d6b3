//! The real `galleryfs login` binary against the Graph emulator's identity platform: device code approved by a
//! "person" through the emulator's control (never auto-approved), the token file (0600) and the saved
//! endpoints, an expired access token replaced by refresh, a declined code, the `--browser` flow driven by a
//! plain HTTP client following the authorize URL, and a 0644 token file refused with a message naming it.
//!
//! Each test runs the binary with private `GALLERYFS_CONFIG_DIR` / `GALLERYFS_CACHE_DIR`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use galleryfs::config::{AccountPaths, AccountSettings};
use galleryfs::emulator::identity::store::DeviceCodeStatus;
use galleryfs::emulator::{self, EmulatorConfig, EmulatorHandle};
use galleryfs::remote::auth::{AuthError, RefreshingTokenSource, TokenSource, TokenStore};
use galleryfs::remote::{Endpoints, GraphClient, RetryPolicy};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const ACCOUNT: &str = "emu";

struct Dirs {
    dir: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Self {
        Dirs {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn config(&self) -> PathBuf {
        self.dir.path().join("config")
    }
    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }
    fn paths(&self) -> AccountPaths {
        AccountPaths::in_dirs(ACCOUNT, &self.config(), &self.cache())
    }
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_galleryfs"));
        cmd.args(args)
            .env("GALLERYFS_CONFIG_DIR", self.config())
            .env("GALLERYFS_CACHE_DIR", self.cache())
            .env("XDG_CACHE_HOME", self.dir.path().join("xdg-cache"))
            .env_remove("NOTIFY_SOCKET")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }
}

async fn start_emulator() -> EmulatorHandle {
    let h = emulator::start(EmulatorConfig {
        seed_gallery: 2,
        ..Default::default()
    })
    .await
    .expect("emulator starts");
    // Poll every second (the documented default is 5 s) to keep the test short.
    h.state.identity.set_poll_interval(1);
    h
}

fn login_args<'a>(graph: &'a str, login: &'a str, browser: bool) -> Vec<&'a str> {
    let mut v = vec![
        "login",
        "--account",
        ACCOUNT,
        "--graph-url",
        graph,
        "--login-url",
        login,
    ];
    if browser {
        v.push("--browser");
    }
    v
}

/// A running `galleryfs` whose stderr lines arrive on a channel (and are kept for assertions).
struct Running {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd.spawn().expect("galleryfs runs");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// The first stderr line for which `pick` gives a value.
    async fn wait_for<T>(&mut self, what: &str, pick: impl Fn(&str) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} on stderr within 20 s; saw {:?}", self.seen))
                .unwrap_or_else(|| panic!("stderr closed before {what}; saw {:?}", self.seen));
            self.seen.push(line.clone());
            if let Some(v) = pick(&line) {
                return v;
            }
        }
    }

    /// Waits for the exit; returns the status, stdout and all of stderr.
    async fn finish(mut self) -> (ExitStatus, String, String) {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("galleryfs exits within 30 s")
            .unwrap();
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            use tokio::io::AsyncReadExt;
            out.read_to_string(&mut stdout).await.unwrap();
        }
        while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(2), self.lines.recv()).await {
            self.seen.push(line);
        }
        (status, stdout, self.seen.join("\n"))
    }
}

fn user_code_in(line: &str) -> Option<String> {
    let rest = line.split("enter the code ").nth(1)?;
    Some(rest.split_whitespace().next()?.to_string())
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        ..Default::default()
    }
}

/// `login` by device code, approved through the emulator's control after the binary printed the code.
async fn device_login(h: &EmulatorHandle, dirs: &Dirs) -> (ExitStatus, String, String) {
    let (graph, login) = (h.graph_url(), h.login_url());
    let mut run = Running::spawn(dirs.command(&login_args(&graph, &login, false)));
    let code = run.wait_for("the user code", user_code_in).await;
    // Not approved by itself: the code is pending and login keeps waiting.
    let pending = h.state.identity.pending_device_codes();
    let mine = pending
        .iter()
        .find(|p| p.user_code == code)
        .expect("the printed code is live");
    assert_eq!(mine.status, DeviceCodeStatus::Pending);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(run.child.try_wait().unwrap().is_none(), "login waits for the approval");
    assert!(h.state.identity.approve_user_code(&code));
    run.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_code_login_then_refresh_after_expiry() {
    let h = start_emulator().await;
    let dirs = Dirs::new();
    let (status, stdout, stderr) = device_login(&h, &dirs).await;
    assert!(
        status.success(),
        "login failed: {status}\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stderr.contains(&format!("open {}/link", h.login_url())),
        "verification URL shown: {stderr}"
    );
    assert!(stdout.contains("signed in"), "{stdout}");
    assert!(stdout.contains(&format!("account {ACCOUNT}")), "{stdout}");

    let paths = dirs.paths();
    assert_eq!(mode_of(&paths.token_file), 0o600, "token file is owner-only");
    let store = TokenStore::new(paths.token_file.clone());
    let tokens = store.load().unwrap().expect("tokens stored");
    assert!(tokens.refresh_token.is_some());
    assert!(tokens.valid_for(Duration::from_secs(600)));
    for secret in [&tokens.access_token, tokens.refresh_token.as_ref().unwrap()] {
        assert!(
            !stdout.contains(secret.as_str()) && !stderr.contains(secret.as_str()),
            "no token printed"
        );
    }
    let settings = AccountSettings::load(&paths.settings_file)
        .unwrap()
        .expect("settings saved");
    assert_eq!(settings.endpoints.graph_url, h.graph_url());
    assert_eq!(settings.endpoints.login_url, h.login_url());

    // The access token expires on the service side; the next command refreshes and goes on.
    h.state.identity.expire_access_tokens();
    let endpoints: Endpoints = settings.endpoints.clone();
    let source = Arc::new(RefreshingTokenSource::for_account(&paths.name, &paths.token_file, &endpoints).unwrap());
    let client = GraphClient::new(endpoints.clone(), source.clone(), fast_policy()).unwrap();
    let seq = h.state.log.next_seq();
    let drive = client.drive().await.expect("works after refresh");
    assert_eq!(drive.id, h.drive_id());
    let log = h.state.log.entries_since(seq);
    assert_eq!(log[0].status, 401, "the expired token was refused first");
    assert_eq!(
        log.iter().filter(|r| r.path.ends_with("/oauth2/v2.0/token")).count(),
        1,
        "one refresh"
    );
    let refreshed = store.load().unwrap().unwrap();
    assert_ne!(refreshed.access_token, tokens.access_token);
    assert_eq!(mode_of(&paths.token_file), 0o600, "still owner-only after the refresh");

    // A later process reads the refreshed file and needs no refresh.
    let again = RefreshingTokenSource::for_account(&paths.name, &paths.token_file, &endpoints).unwrap();
    assert_eq!(again.access_token().await.unwrap(), refreshed.access_token);

    // status, a command that reads the token file, reports the account signed in.
    let out = dirs
        .command(&["status", "--account", ACCOUNT, "--json"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["signed_in"], serde_json::json!(true), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_device_code_fails_with_a_clear_message() {
    let h = start_emulator().await;
    let dirs = Dirs::new();
    let (graph, login) = (h.graph_url(), h.login_url());
    let mut run = Running::spawn(dirs.command(&login_args(&graph, &login, false)));
    let code = run.wait_for("the user code", user_code_in).await;
    assert!(h.state.identity.decline_user_code(&code));
    let (status, stdout, stderr) = run.finish().await;
    assert_eq!(status.code(), Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("galleryfs: sign-in was declined"), "{stderr}");
    assert!(!dirs.paths().token_file.exists(), "nothing stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_login_by_following_the_authorize_url() {
    let h = start_emulator().await;
    let dirs = Dirs::new();
    let (graph, login) = (h.graph_url(), h.login_url());
    let mut cmd = dirs.command(&login_args(&graph, &login, true));
    // No xdg-open: the browser flow must not open anything on the test machine.
    cmd.env("PATH", "/nonexistent");
    let mut run = Running::spawn(cmd);
    let authorize = run
        .wait_for("the authorize URL", |line| {
            let t = line.trim();
            t.starts_with(&format!("{}/", h.login_url())).then(|| t.to_string())
        })
        .await;
    let url = url::Url::parse(&authorize).unwrap();
    assert!(url.path().ends_with("/oauth2/v2.0/authorize"), "{authorize}");
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q.get("response_type").map(String::as_str), Some("code"));
    assert_eq!(q.get("code_challenge_method").map(String::as_str), Some("S256"));
    assert!(
        q.get("redirect_uri")
            .is_some_and(|r| r.starts_with("http://localhost:")),
        "{q:?}"
    );

    // "The browser": a plain HTTP client following the redirects (authorize → loopback listener).
    let browser = reqwest::Client::builder().build().unwrap();
    let page = browser
        .get(authorize.as_str())
        .send()
        .await
        .expect("the redirect chain completes");
    assert!(page.status().is_success(), "{}", page.status());
    assert!(
        page.url().as_str().starts_with("http://localhost:"),
        "ended at the loopback listener"
    );

    let (status, stdout, stderr) = run.finish().await;
    assert!(status.success(), "stdout: {stdout}\nstderr: {stderr}");
    let paths = dirs.paths();
    assert_eq!(mode_of(&paths.token_file), 0o600);
    let tokens = TokenStore::new(paths.token_file.clone()).load().unwrap().unwrap();
    assert!(tokens.refresh_token.is_some());
    // The stored token works against Graph.
    let ok = browser
        .get(format!("{}/me/drive", h.graph_url()))
        .bearer_auth(&tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_readable_token_file_is_refused_naming_it() {
    let h = start_emulator().await;
    let dirs = Dirs::new();
    let (status, stdout, stderr) = device_login(&h, &dirs).await;
    assert!(status.success(), "stdout: {stdout}\nstderr: {stderr}");
    let paths = dirs.paths();
    std::fs::set_permissions(&paths.token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let file = paths.token_file.display().to_string();

    let out = dirs
        .command(&["status", "--account", ACCOUNT, "--json"])
        .output()
        .await
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["signed_in"], serde_json::json!(false), "{report}");
    let message = report["message"].as_str().unwrap_or_default();
    assert!(message.contains(&file) && message.contains("0644"), "{message}");

    // mount reads the tokens before anything else: it refuses too, naming the file, and mounts nothing.
    let mountpoint = dirs.dir.path().join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        dirs.command(&["mount", "--account", ACCOUNT, mountpoint.to_str().unwrap()])
            .output(),
    )
    .await
    .expect("mount gives up at once")
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&file) && err.contains("0644"), "{err}");

    let settings = AccountSettings::load(&paths.settings_file).unwrap().unwrap();
    let source = RefreshingTokenSource::for_account(&paths.name, &paths.token_file, &settings.endpoints).unwrap();
    let err = source.access_token().await.unwrap_err();
    assert!(matches!(err, AuthError::InsecureTokenFile { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&file) && text.contains("0644") && text.contains("chmod 600"),
        "{text}"
    );
    assert_eq!(
        mode_of(&paths.token_file),
        0o644,
        "the file is left for the user to fix"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_mount_refreshes_the_expired_token() {
    require_fuse!();
    let h = start_emulator().await;
    let dirs = Dirs::new();
    let (status, stdout, stderr) = device_login(&h, &dirs).await;
    assert!(status.success(), "stdout: {stdout}\nstderr: {stderr}");
    let paths = dirs.paths();
    let before = TokenStore::new(paths.token_file.clone()).load().unwrap().unwrap();
    h.state.identity.expire_access_tokens();

    let mnt = dirs.dir.path().join("Gallery");
    std::fs::create_dir(&mnt).unwrap();
    let m = mnt.to_str().unwrap().to_string();
    let out = dirs
        .command(&["mount", "--account", ACCOUNT, &m])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "mount failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = {
        let mnt = mnt.clone();
        tokio::task::spawn_blocking(move || {
            fn walk(dir: &Path, out: &mut Vec<String>) {
                for entry in std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()) {
                    if entry.file_type().unwrap().is_dir() {
                        walk(&entry.path(), out);
                    } else {
                        out.push(entry.file_name().to_string_lossy().into_owned());
                    }
                }
            }
            // The gallery's files: the Timeline at the root shows them again.
            let mut names = Vec::new();
            for entry in std::fs::read_dir(&mnt).unwrap().filter_map(|e| e.ok()) {
                if entry.file_name() == "Timeline" {
                    continue;
                }
                if entry.file_type().unwrap().is_dir() {
                    walk(&entry.path(), &mut names);
                } else {
                    names.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
            names
        })
        .await
        .unwrap()
    };
    let unmounted = dirs.command(&["unmount", &m]).output().await.unwrap();
    assert!(
        unmounted.status.success(),
        "{}",
        String::from_utf8_lossy(&unmounted.stderr)
    );
    let seeded = h.state.state_dump().into_iter().filter(|e| e.kind == "file").count();
    assert_eq!(listing.len(), seeded, "the mount lists the gallery: {listing:?}");
    let after = TokenStore::new(paths.token_file.clone()).load().unwrap().unwrap();
    assert_ne!(
        after.access_token, before.access_token,
        "the mount refreshed the expired token"
    );
    assert_eq!(mode_of(&paths.token_file), 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_against_a_separate_emulator_process_through_its_http_controls() {
    let dirs = Dirs::new();
    let mut emu = dirs.command(&["emulator", "--listen", "127.0.0.1:0", "--seed-gallery", "2"]);
    let mut emu = emu.spawn().expect("galleryfs emulator runs");
    let mut stdout = BufReader::new(emu.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), stdout.next_line())
        .await
        .expect("ready line within 20 s")
        .unwrap()
        .expect("a ready line");
    let ready: serde_json::Value = serde_json::from_str(&ready).expect("the ready line is JSON");
    let (graph, login, control) = (
        ready["graph"].as_str().unwrap().to_string(),
        ready["login"].as_str().unwrap().to_string(),
        ready["control"].as_str().unwrap().to_string(),
    );
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{control}/identity/settings"))
        .json(&serde_json::json!({"poll_interval_secs": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let mut run = Running::spawn(dirs.command(&login_args(&graph, &login, false)));
    let code = run.wait_for("the user code", user_code_in).await;
    let pending: serde_json::Value = http
        .get(format!("{control}/identity/device-codes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        pending
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["user_code"] == code.as_str() && p["status"] == "pending"),
        "{pending}"
    );
    let r = http
        .post(format!("{control}/identity/device-codes/{code}/approve"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let (status, stdout_text, stderr) = run.finish().await;
    assert!(status.success(), "stdout: {stdout_text}\nstderr: {stderr}");

    // Expire every access token over HTTP; the stored sign-in refreshes and Graph answers.
    let r = http
        .post(format!("{control}/identity/expire-access-tokens"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let paths = dirs.paths();
    let settings = AccountSettings::load(&paths.settings_file).unwrap().unwrap();
    assert_eq!(settings.endpoints.graph_url, graph);
    let source =
        Arc::new(RefreshingTokenSource::for_account(&paths.name, &paths.token_file, &settings.endpoints).unwrap());
    let client = GraphClient::new(settings.endpoints.clone(), source, fast_policy()).unwrap();
    let gallery = client
        .item_by_path("/Pictures/Samsung Gallery")
        .await
        .expect("Graph after refresh");
    assert!(gallery.is_folder());
    let _ = emu.start_kill();
    let _ = emu.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_device_code_and_refused_browser_consent_fail_clearly() {
    let h = start_emulator().await;
    let (graph, login) = (h.graph_url(), h.login_url());

    // Nobody approves before the code's expires_in: login stops and says to run it again.
    h.state.identity.set_device_code_lifetime(2);
    let dirs = Dirs::new();
    let mut run = Running::spawn(dirs.command(&login_args(&graph, &login, false)));
    let code = run.wait_for("the user code", user_code_in).await;
    assert!(!code.is_empty());
    let (status, _, stderr) = run.finish().await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("galleryfs: the code expired; run login again"),
        "{stderr}"
    );
    assert!(!dirs.paths().token_file.exists());

    // The user refuses consent in the browser: the redirect carries access_denied.
    h.state.identity.set_deny_authorize(true);
    let dirs = Dirs::new();
    let mut cmd = dirs.command(&login_args(&graph, &login, true));
    cmd.env("PATH", "/nonexistent");
    let mut run = Running::spawn(cmd);
    let authorize = run
        .wait_for("the authorize URL", |line| {
            let t = line.trim();
            t.starts_with(&format!("{login}/")).then(|| t.to_string())
        })
        .await;
    let _ = reqwest::Client::new().get(authorize.as_str()).send().await;
    let (status, _, stderr) = run.finish().await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("galleryfs: sign-in was declined"), "{stderr}");
    assert!(!dirs.paths().token_file.exists());
}
