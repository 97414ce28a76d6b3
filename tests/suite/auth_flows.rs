//! Sign-in flows against a `wiremock` stand-in for the identity platform's `/devicecode` and `/token`
//! endpoints, answering as ENTRA v2-oauth2-device-code.md and v2-oauth2-auth-code-flow.md document (bodies
//! copied from their examples; error bodies in the documented `{error, error_description, error_codes, ...}`
//! shape with the AADSTS numbers of reference-error-codes.md). Polling intervals are the server's (`interval: 1`).

use base64::Engine;
use galleryfs::config::AccountPaths;
use galleryfs::remote::auth::{
    sign_in_with_device_code, AuthError, BrowserSignIn, RefreshingTokenSource, StoredTokens, TokenSource, TokenStore,
};
use galleryfs::remote::Endpoints;
use parking_lot::Mutex;
use serde_json::{json, Value};
use sha2::Digest;
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const CLIENT_ID: &str = "535fb089-9ff3-47b6-9bfb-4f1264799865";
const TOKEN_PATH: &str = "/consumers/oauth2/v2.0/token";
const DEVICECODE_PATH: &str = "/consumers/oauth2/v2.0/devicecode";

fn endpoints(server: &MockServer) -> Endpoints {
    Endpoints {
        graph_url: format!("{}/v1.0", server.uri()),
        login_url: server.uri(),
        tenant: "consumers".into(),
        client_id: CLIENT_ID.into(),
    }
    .validated()
    .unwrap()
}

fn http() -> reqwest::Client {
    galleryfs::remote::auth::http_client().unwrap()
}

/// The form fields of a request body.
fn form(req: &Request) -> HashMap<String, String> {
    url::form_urlencoded::parse(&req.body).into_owned().collect()
}

/// Device authorization response with the documented fields.
fn device_code_body(interval: u64, expires_in: u64) -> Value {
    json!({
        "device_code": "GMMhmHCXhWEzkobqIHGG_EnNYYsAkukHspeYUk9E8",
        "user_code": "FJ8X2ZLAP",
        "verification_uri": "https://microsoft.com/devicelogin",
        "expires_in": expires_in,
        "interval": interval,
        "message": "To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code FJ8X2ZLAP to authenticate."
    })
}

/// The documented successful token response (v2-oauth2-device-code.md), with our values.
fn token_body(access: &str, refresh: Option<&str>) -> Value {
    let mut v = json!({
        "token_type": "Bearer",
        "scope": "Files.ReadWrite offline_access",
        "expires_in": 3599,
        "access_token": access,
    });
    if let Some(r) = refresh {
        v["refresh_token"] = json!(r);
    }
    v
}

/// A token-endpoint error in the documented shape (HTTP 400).
fn error_400(error: &str, aadsts: Option<u32>, text: &str) -> ResponseTemplate {
    let description = match aadsts {
        Some(n) => format!("AADSTS{n}: {text}\r\nTrace ID: 0000aaaa-11bb-cccc-dd22-eeeeee333333\r\nCorrelation ID: aaaa0000-bb11-2222-33cc-444444dddddd\r\nTimestamp: 2016-01-09 02:02:12Z"),
        None => text.to_string(),
    };
    ResponseTemplate::new(400).set_body_json(json!({
        "error": error,
        "error_description": description,
        "error_codes": aadsts.map(|n| vec![n]).unwrap_or_default(),
        "timestamp": "2016-01-09 02:02:12Z",
        "trace_id": "0000aaaa-11bb-cccc-dd22-eeeeee333333",
        "correlation_id": "aaaa0000-bb11-2222-33cc-444444dddddd"
    }))
}

fn pending() -> ResponseTemplate {
    error_400(
        "authorization_pending",
        Some(70016),
        "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
    )
}

/// When a request arrived, and its form fields.
type Hit = (Instant, HashMap<String, String>);

/// Answers with `responses` in order (the last one repeats) and records when each request arrived and its form.
#[derive(Clone)]
struct Script {
    responses: Arc<Vec<ResponseTemplate>>,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Script {
    fn new(responses: Vec<ResponseTemplate>) -> Self {
        Self {
            responses: Arc::new(responses),
            hits: Arc::default(),
        }
    }
    fn count(&self) -> usize {
        self.hits.lock().len()
    }
    fn forms(&self) -> Vec<HashMap<String, String>> {
        self.hits.lock().iter().map(|(_, f)| f.clone()).collect()
    }
    fn gaps(&self) -> Vec<Duration> {
        let hits = self.hits.lock();
        hits.windows(2).map(|w| w[1].0 - w[0].0).collect()
    }
}

impl Respond for Script {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut hits = self.hits.lock();
        hits.push((Instant::now(), form(req)));
        let i = (hits.len() - 1).min(self.responses.len() - 1);
        self.responses[i].clone()
    }
}

async fn mount(server: &MockServer, at: &str, script: &Script) {
    Mock::given(method("POST"))
        .and(path(at))
        .respond_with(script.clone())
        .mount(server)
        .await;
}

async fn device_server(
    interval: u64,
    expires_in: u64,
    token_answers: Vec<ResponseTemplate>,
) -> (MockServer, Script, Script) {
    let server = MockServer::start().await;
    let devicecode = Script::new(vec![
        ResponseTemplate::new(200).set_body_json(device_code_body(interval, expires_in))
    ]);
    let token = Script::new(token_answers);
    mount(&server, DEVICECODE_PATH, &devicecode).await;
    mount(&server, TOKEN_PATH, &token).await;
    (server, devicecode, token)
}

// ---------------------------------------------------------------- device code

#[tokio::test]
async fn device_code_pending_twice_then_success_honours_interval() {
    let (server, devicecode, token) = device_server(
        1,
        900,
        vec![
            pending(),
            pending(),
            ResponseTemplate::new(200).set_body_json(token_body("at-1", Some("rt-1"))),
        ],
    )
    .await;
    let mut shown = None;
    let tokens = sign_in_with_device_code(&endpoints(&server), &http(), |p| shown = Some(p.clone()))
        .await
        .unwrap();
    assert_eq!(tokens.access_token, "at-1");
    assert_eq!(tokens.refresh_token.as_deref(), Some("rt-1"));
    assert_eq!(tokens.scope, "Files.ReadWrite offline_access");
    let left = tokens.seconds_left();
    assert!(
        (3500..=3599).contains(&left),
        "expiry is absolute from expires_in: {left}"
    );

    let shown = shown.expect("prompt shown");
    assert_eq!(shown.user_code, "FJ8X2ZLAP");
    assert_eq!(shown.verification_uri, "https://microsoft.com/devicelogin");
    assert!(shown
        .instructions()
        .contains("enter the code FJ8X2ZLAP to authenticate."));

    let dc = &devicecode.forms()[0];
    assert_eq!(dc["client_id"], CLIENT_ID);
    assert_eq!(dc["scope"], "Files.ReadWrite offline_access");

    assert_eq!(token.count(), 3);
    for f in token.forms() {
        assert_eq!(f["grant_type"], "urn:ietf:params:oauth:grant-type:device_code");
        assert_eq!(f["client_id"], CLIENT_ID);
        assert_eq!(f["device_code"], "GMMhmHCXhWEzkobqIHGG_EnNYYsAkukHspeYUk9E8");
        assert!(!f.contains_key("client_secret"), "a public client sends no secret");
    }
    for gap in token.gaps() {
        assert!(
            gap >= Duration::from_millis(990),
            "polled after {gap:?}, interval is 1 s"
        );
        assert!(gap < Duration::from_millis(2500), "polled too late: {gap:?}");
    }
}

#[tokio::test]
async fn slow_down_adds_five_seconds_to_the_interval() {
    let (server, _, token) = device_server(
        1,
        900,
        vec![
            error_400("slow_down", None, "slow down"),
            ResponseTemplate::new(200).set_body_json(token_body("at-1", Some("rt-1"))),
        ],
    )
    .await;
    let tokens = sign_in_with_device_code(&endpoints(&server), &http(), |_| {})
        .await
        .unwrap();
    assert_eq!(tokens.access_token, "at-1");
    let gaps = token.gaps();
    assert_eq!(gaps.len(), 1);
    assert!(
        gaps[0] >= Duration::from_millis(5990),
        "interval after slow_down must be 1 + 5 s: {:?}",
        gaps[0]
    );
}

#[tokio::test]
async fn declined_stops_with_a_clear_error() {
    let (server, _, token) = device_server(
        1,
        900,
        vec![
            pending(),
            error_400(
                "authorization_declined",
                None,
                "The end user denied the authorization request.",
            ),
        ],
    )
    .await;
    let err = sign_in_with_device_code(&endpoints(&server), &http(), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::Declined { .. }), "{err:?}");
    assert!(err.to_string().starts_with("sign-in was declined"), "{err}");
    assert_eq!(token.count(), 2, "no polling after the decline");
}

#[tokio::test]
async fn expired_token_stops_and_says_run_login_again() {
    let (server, _, token) = device_server(
        1,
        900,
        vec![error_400("expired_token", Some(70019), "Verification code expired.")],
    )
    .await;
    let err = sign_in_with_device_code(&endpoints(&server), &http(), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::CodeExpired), "{err:?}");
    assert_eq!(err.to_string(), "the code expired; run login again");
    assert_eq!(token.count(), 1);
}

#[tokio::test]
async fn bad_verification_code_stops() {
    let (server, _, token) = device_server(
        1,
        900,
        vec![error_400(
            "bad_verification_code",
            Some(70018),
            "Invalid verification code.",
        )],
    )
    .await;
    let err = sign_in_with_device_code(&endpoints(&server), &http(), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::BadVerificationCode), "{err:?}");
    assert_eq!(token.count(), 1);
}

#[tokio::test]
async fn code_lifetime_ends_the_polling() {
    let (server, _, token) = device_server(1, 3, vec![pending()]).await;
    let started = Instant::now();
    let err = sign_in_with_device_code(&endpoints(&server), &http(), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::CodeExpired), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "stopped at expires_in");
    assert!(
        (2..=3).contains(&token.count()),
        "polled {} times in 3 s at interval 1",
        token.count()
    );
}

#[tokio::test]
async fn server_busy_keeps_polling() {
    let (server, _, token) = device_server(
        1,
        900,
        vec![
            ResponseTemplate::new(503).set_body_string("<html>busy</html>"),
            ResponseTemplate::new(200).set_body_json(token_body("at-1", Some("rt-1"))),
        ],
    )
    .await;
    let tokens = sign_in_with_device_code(&endpoints(&server), &http(), |_| {})
        .await
        .unwrap();
    assert_eq!(tokens.access_token, "at-1");
    assert_eq!(token.count(), 2);
    assert!(token.gaps()[0] >= Duration::from_millis(1990), "backs off after a 503");
}

// ---------------------------------------------------------------- token file + refresh

struct Account {
    _dir: tempfile::TempDir,
    paths: AccountPaths,
    store: TokenStore,
}

fn account_with(tokens: &StoredTokens) -> Account {
    let dir = tempfile::tempdir().unwrap();
    let paths = AccountPaths::in_dirs("work", &dir.path().join("config"), &dir.path().join("cache"));
    let store = TokenStore::new(paths.token_file.clone());
    store.save(tokens).unwrap();
    Account {
        _dir: dir,
        paths,
        store,
    }
}

fn tokens(access: &str, refresh: Option<&str>, secs_left: i64) -> StoredTokens {
    StoredTokens {
        access_token: access.into(),
        expires_at: chrono::Utc::now() + chrono::Duration::seconds(secs_left),
        refresh_token: refresh.map(str::to_string),
        scope: "Files.ReadWrite offline_access".into(),
    }
}

fn source(server: &MockServer, acct: &Account) -> RefreshingTokenSource {
    RefreshingTokenSource::new("work", &endpoints(server), acct.store.clone(), http()).unwrap()
}

fn mode_of(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn fresh_token_is_served_without_refresh() {
    let server = MockServer::start().await;
    let token = Script::new(vec![ResponseTemplate::new(500)]);
    mount(&server, TOKEN_PATH, &token).await;
    let acct = account_with(&tokens("at-0", Some("rt-0"), 3000));
    let src = source(&server, &acct);
    assert_eq!(src.access_token().await.unwrap(), "at-0");
    // A 401 for an older token than the current one does not refresh either.
    assert_eq!(src.refresh_after_rejection("at-older").await.unwrap(), "at-0");
    assert_eq!(token.count(), 0);
}

#[tokio::test]
async fn refresh_rotates_and_persists_the_newest_refresh_token() {
    let server = MockServer::start().await;
    let token = Script::new(vec![
        ResponseTemplate::new(200).set_body_json(token_body("at-1", Some("rt-1"))),
        ResponseTemplate::new(200).set_body_json(token_body("at-2", Some("rt-2"))),
    ]);
    mount(&server, TOKEN_PATH, &token).await;
    // 60 s left: inside the 2-minute margin, so it is refreshed.
    let acct = account_with(&tokens("at-0", Some("rt-0"), 60));
    let src = source(&server, &acct);

    assert_eq!(src.access_token().await.unwrap(), "at-1");
    assert_eq!(
        acct.store.load().unwrap().unwrap().refresh_token.as_deref(),
        Some("rt-1")
    );
    assert_eq!(
        src.access_token().await.unwrap(),
        "at-1",
        "fresh now: no second refresh"
    );
    assert_eq!(token.count(), 1);

    // Graph rejected at-1: refresh once more.
    assert_eq!(src.refresh_after_rejection("at-1").await.unwrap(), "at-2");
    let on_file = acct.store.load().unwrap().unwrap();
    assert_eq!(on_file.access_token, "at-2");
    assert_eq!(on_file.refresh_token.as_deref(), Some("rt-2"));
    assert_eq!(mode_of(acct.store.path()), 0o600);

    let forms = token.forms();
    assert_eq!(forms.len(), 2);
    assert_eq!(forms[0]["grant_type"], "refresh_token");
    assert_eq!(forms[0]["refresh_token"], "rt-0");
    assert_eq!(forms[0]["client_id"], CLIENT_ID);
    assert_eq!(forms[1]["refresh_token"], "rt-1", "the rotated refresh token is used");
}

#[tokio::test]
async fn refresh_without_new_refresh_token_keeps_the_old_one() {
    let server = MockServer::start().await;
    let token = Script::new(vec![ResponseTemplate::new(200).set_body_json(token_body("at-1", None))]);
    mount(&server, TOKEN_PATH, &token).await;
    let acct = account_with(&tokens("at-0", Some("rt-0"), -10));
    let src = source(&server, &acct);
    assert_eq!(src.access_token().await.unwrap(), "at-1");
    let on_file = acct.store.load().unwrap().unwrap();
    assert_eq!(on_file.access_token, "at-1");
    assert_eq!(on_file.refresh_token.as_deref(), Some("rt-0"));
}

#[tokio::test]
async fn invalid_grant_says_sign_in_again() {
    let server = MockServer::start().await;
    let token = Script::new(vec![error_400(
        "invalid_grant",
        Some(70008),
        "The provided authorization code or refresh token has expired due to inactivity.",
    )]);
    mount(&server, TOKEN_PATH, &token).await;
    let acct = account_with(&tokens("at-0", Some("rt-0"), -10));
    let src = source(&server, &acct);
    let err = src.access_token().await.unwrap_err();
    assert!(matches!(err, AuthError::SignInAgain { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("sign in again: galleryfs login --account work ("),
        "{msg}"
    );
    assert!(msg.contains("AADSTS70008"), "{msg}");
    assert!(!msg.contains("rt-0"), "never a token in a message");
    assert!(acct.store.load().unwrap().is_some(), "the token file is kept");
}

#[tokio::test]
async fn network_error_keeps_the_tokens() {
    // A port with nobody listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ep = Endpoints {
        graph_url: format!("http://127.0.0.1:{port}/v1.0"),
        login_url: format!("http://127.0.0.1:{port}"),
        tenant: "consumers".into(),
        client_id: CLIENT_ID.into(),
    };
    let acct = account_with(&tokens("at-0", Some("rt-0"), -10));
    let src = RefreshingTokenSource::new("work", &ep, acct.store.clone(), http()).unwrap();
    let err = src.access_token().await.unwrap_err();
    assert!(matches!(err, AuthError::Network(_)), "{err:?}");
    assert!(err.is_transient());
    assert_eq!(
        acct.store.load().unwrap().unwrap().refresh_token.as_deref(),
        Some("rt-0")
    );
}

#[tokio::test]
async fn group_readable_token_file_is_refused() {
    let server = MockServer::start().await;
    let acct = account_with(&tokens("at-0", Some("rt-0"), 3000));
    assert_eq!(mode_of(&acct.paths.token_file), 0o600, "written 0600");
    std::fs::set_permissions(&acct.paths.token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = source(&server, &acct).access_token().await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, AuthError::InsecureTokenFile { mode: 0o644, .. }),
        "{err:?}"
    );
    assert!(msg.contains(&acct.paths.token_file.display().to_string()), "{msg}");
    assert!(msg.contains("0644"), "{msg}");
}

#[tokio::test]
async fn missing_token_file_means_not_signed_in() {
    let server = MockServer::start().await;
    let acct = account_with(&tokens("at-0", None, 3000));
    acct.store.delete().unwrap();
    let err = source(&server, &acct).access_token().await.unwrap_err();
    assert_eq!(err.to_string(), "not signed in: run galleryfs login --account work");
}

#[tokio::test]
async fn concurrent_callers_share_one_refresh() {
    let server = MockServer::start().await;
    let token = Script::new(vec![ResponseTemplate::new(200)
        .set_body_json(token_body("at-1", Some("rt-1")))
        .set_delay(Duration::from_millis(300))]);
    mount(&server, TOKEN_PATH, &token).await;
    let acct = account_with(&tokens("at-0", Some("rt-0"), -10));
    let src = Arc::new(source(&server, &acct));
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let s = src.clone();
            tokio::spawn(async move { s.access_token().await })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), "at-1");
    }
    assert_eq!(token.count(), 1, "one refresh for all callers");

    // Several requests rejected with at-1 at once: still one refresh.
    let token2 = Script::new(vec![ResponseTemplate::new(200)
        .set_body_json(token_body("at-2", Some("rt-2")))
        .set_delay(Duration::from_millis(200))]);
    server.reset().await;
    mount(&server, TOKEN_PATH, &token2).await;
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let s = src.clone();
            tokio::spawn(async move { s.refresh_after_rejection("at-1").await })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), "at-2");
    }
    assert_eq!(token2.count(), 1);
}

// ---------------------------------------------------------------- browser (PKCE)

#[tokio::test]
async fn pkce_authorize_url_and_redeem() {
    let server = MockServer::start().await;
    let token = Script::new(vec![
        ResponseTemplate::new(200).set_body_json(token_body("at-b", Some("rt-b")))
    ]);
    mount(&server, TOKEN_PATH, &token).await;
    let ep = endpoints(&server);
    let sign_in = BrowserSignIn::start(&ep).await.unwrap();
    let url = sign_in.authorize_url().clone();
    let redirect_uri = sign_in.redirect_uri().to_string();
    assert!(url.as_str().starts_with(&ep.identity_url("authorize")), "{url}");
    let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["response_mode"], "query");
    assert_eq!(q["scope"], "Files.ReadWrite offline_access");
    assert_eq!(q["redirect_uri"], redirect_uri);
    assert!(redirect_uri.starts_with("http://localhost:"), "{redirect_uri}");
    let challenge = q["code_challenge"].clone();
    assert_eq!(challenge.len(), 43, "base64url SHA-256");
    let state = q["state"].clone();
    assert!(state.len() >= 16);

    let port: u16 = redirect_uri.rsplit(':').next().unwrap().parse().unwrap();
    let finish = tokio::spawn(async move { sign_in.finish(&http(), Duration::from_secs(20)).await });
    // The browser follows the redirect.
    let page = reqwest::get(format!(
        "http://127.0.0.1:{port}/?code=M.C507_BAY.2.U.abc&state={state}"
    ))
    .await
    .unwrap();
    assert_eq!(page.status(), 200);
    let tokens = finish.await.unwrap().unwrap();
    assert_eq!(tokens.access_token, "at-b");

    let f = &token.forms()[0];
    assert_eq!(f["grant_type"], "authorization_code");
    assert_eq!(f["code"], "M.C507_BAY.2.U.abc");
    assert_eq!(f["redirect_uri"], redirect_uri, "the identical redirect_uri");
    assert_eq!(f["client_id"], CLIENT_ID);
    let verifier = &f["code_verifier"];
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    assert_eq!(computed, challenge, "S256(code_verifier) == code_challenge");
}

#[tokio::test]
async fn browser_access_denied_is_declined() {
    let server = MockServer::start().await;
    let token = Script::new(vec![ResponseTemplate::new(500)]);
    mount(&server, TOKEN_PATH, &token).await;
    let sign_in = BrowserSignIn::start(&endpoints(&server)).await.unwrap();
    let state: String = sign_in
        .authorize_url()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let port: u16 = sign_in.redirect_uri().rsplit(':').next().unwrap().parse().unwrap();
    let finish = tokio::spawn(async move { sign_in.finish(&http(), Duration::from_secs(20)).await });
    reqwest::get(format!(
        "http://127.0.0.1:{port}/?error=access_denied&error_description=the+user+canceled+the+authentication&state={state}"
    ))
    .await
    .unwrap();
    let err = finish.await.unwrap().unwrap_err();
    assert!(matches!(err, AuthError::Declined { .. }), "{err:?}");
    assert!(err.to_string().contains("the user canceled the authentication"));
    assert_eq!(token.count(), 0, "nothing redeemed");
}

#[tokio::test]
async fn browser_wrong_state_is_refused() {
    let server = MockServer::start().await;
    let token = Script::new(vec![
        ResponseTemplate::new(200).set_body_json(token_body("at-b", Some("rt-b")))
    ]);
    mount(&server, TOKEN_PATH, &token).await;
    let sign_in = BrowserSignIn::start(&endpoints(&server)).await.unwrap();
    let port: u16 = sign_in.redirect_uri().rsplit(':').next().unwrap().parse().unwrap();
    let finish = tokio::spawn(async move { sign_in.finish(&http(), Duration::from_secs(20)).await });
    let page = reqwest::get(format!("http://127.0.0.1:{port}/?code=abc&state=forged"))
        .await
        .unwrap();
    assert_eq!(page.status(), 400);
    let err = finish.await.unwrap().unwrap_err();
    assert!(matches!(err, AuthError::Browser(_)), "{err:?}");
    assert_eq!(token.count(), 0, "a forged redirect's code is never redeemed");
}

// ---------------------------------------------------------------- the commands

#[tokio::test]
async fn login_and_logout_commands() {
    let (server, _, _token) = device_server(
        1,
        900,
        vec![
            pending(),
            ResponseTemplate::new(200).set_body_json(token_body("at-cli", Some("rt-cli"))),
        ],
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/me/drive"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "b!t18F8ybsHUq1z3LTz8xvZqP8zaSWjkFNhsME-Fepo75dTf9vQKfeRblBZjoSQrd7",
            "driveType": "personal",
            "owner": {"user": {"id": "efee1b77fb3b4f65", "displayName": "Ryan Gregg"}}
        })))
        .mount(&server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let run = |args: Vec<String>| {
        let config = dir.path().join("config");
        let cache = dir.path().join("cache");
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_galleryfs"))
                .args(args)
                .env("GALLERYFS_CONFIG_DIR", config)
                .env("GALLERYFS_CACHE_DIR", cache)
                .output()
                .await
                .unwrap()
        }
    };
    let out = run(vec![
        "login".into(),
        "--account".into(),
        "cli".into(),
        "--client-id".into(),
        CLIENT_ID.into(),
        "--login-url".into(),
        server.uri(),
        "--graph-url".into(),
        format!("{}/v1.0", server.uri()),
        "--folder".into(),
        "Pictures/Samsung Gallery".into(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains("FJ8X2ZLAP") && stderr.contains("https://microsoft.com/devicelogin"),
        "{stderr}"
    );
    assert!(stdout.contains("signed in as Ryan Gregg"), "{stdout}");
    assert!(
        !stdout.contains("at-cli") && !stderr.contains("at-cli"),
        "no token printed"
    );

    let paths = AccountPaths::in_dirs("cli", &dir.path().join("config"), &dir.path().join("cache"));
    assert_eq!(mode_of(&paths.token_file), 0o600);
    let stored = TokenStore::new(paths.token_file.clone()).load().unwrap().unwrap();
    assert_eq!(stored.refresh_token.as_deref(), Some("rt-cli"));
    let settings = galleryfs::config::AccountSettings::load(&paths.settings_file)
        .unwrap()
        .unwrap();
    assert_eq!(settings.endpoints.login_url, server.uri());
    assert_eq!(settings.endpoints.client_id, CLIENT_ID);
    assert_eq!(settings.folder.as_deref(), Some("/Pictures/Samsung Gallery"));

    std::fs::create_dir_all(&paths.cache_dir).unwrap();
    let out = run(vec![
        "logout".into(),
        "--account".into(),
        "cli".into(),
        "--purge-cache".into(),
    ])
    .await;
    assert!(out.status.success());
    assert!(!paths.token_file.exists());
    assert!(!paths.cache_dir.exists());
    let again = run(vec!["logout".into(), "--account".into(), "cli".into()]).await;
    assert!(again.status.success(), "logout is idempotent");

    let bad = run(vec!["login".into(), "--account".into(), "../x".into()]).await;
    assert_eq!(bad.status.code(), Some(2));
    let insecure = run(vec![
        "login".into(),
        "--login-url".into(),
        "http://login.example.com".into(),
    ])
    .await;
    assert_eq!(insecure.status.code(), Some(2));
}
