//! The emulated identity platform over HTTP, checked against what ENTRA documents: device-code flow,
//! authorization code + PKCE, refresh rotation and revocation, error bodies, and the control routes.

use galleryfs::emulator::identity::{BearerError, Identity, IdentityConfig};
use galleryfs::remote::endpoints::DEFAULT_CLIENT_ID;
use serde_json::Value;
use std::sync::Arc;

struct Server {
    base: String,
    identity: Arc<Identity>,
    http: reqwest::Client,
}

async fn start() -> Server {
    let identity = Identity::new(IdentityConfig::default());
    identity.set_poll_interval(1);
    let app = identity.router().nest("/_emulator/identity", identity.control_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Server {
        base: format!("http://{addr}"),
        identity,
        http,
    }
}

impl Server {
    async fn form(&self, path: &str, fields: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .form(fields)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    async fn device_code(&self, scope: &str) -> Value {
        let (status, body) = self
            .form(
                "/consumers/oauth2/v2.0/devicecode",
                &[("client_id", DEFAULT_CLIENT_ID), ("scope", scope)],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn poll(&self, device_code: &str) -> (u16, Value) {
        self.form(
            "/consumers/oauth2/v2.0/token",
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("device_code", device_code),
            ],
        )
        .await
    }

    async fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        self.form(
            "/consumers/oauth2/v2.0/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }
}

fn assert_documented_error(status: u16, body: &Value, error: &str) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], error, "{body}");
    for field in [
        "error_description",
        "timestamp",
        "trace_id",
        "correlation_id",
        "error_uri",
    ] {
        assert!(body[field].is_string(), "{field} missing in {body}");
    }
    assert!(body["error_codes"].as_array().is_some_and(|c| !c.is_empty()), "{body}");
}

#[tokio::test]
async fn device_code_flow_from_pending_to_tokens_through_the_link_page() {
    let s = start().await;
    let dc = s.device_code("Files.ReadWrite offline_access").await;
    assert_eq!(dc["expires_in"], 900);
    assert_eq!(dc["interval"], 1);
    assert_eq!(dc["verification_uri"], format!("{}/link", s.base));
    let user_code = dc["user_code"].as_str().unwrap();
    assert!(dc["message"].as_str().unwrap().contains(user_code));
    assert!(dc.get("verification_uri_complete").is_none());
    let device_code = dc["device_code"].as_str().unwrap();

    let (status, body) = s.poll(device_code).await;
    assert_documented_error(status, &body, "authorization_pending");

    // The page a person opens, then the approval form.
    let page = s.http.get(format!("{}/link", s.base)).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("<form"));
    let approve = s
        .http
        .post(format!("{}/link", s.base))
        .form(&[
            ("user_code", user_code.to_lowercase().as_str()),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(approve.status(), 200);

    tokio::time::sleep(std::time::Duration::from_millis(1050)).await;
    let (status, tokens) = s.poll(device_code).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3599);
    assert!(tokens["ext_expires_in"].is_u64());
    assert!(tokens.get("id_token").is_none(), "no openid scope, no id_token");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(s.identity.check_bearer(Some(&format!("Bearer {access}"))), Ok(()));

    // Refresh rotates; the old refresh token keeps working until revoked.
    let old_refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, renewed) = s.refresh(old_refresh).await;
    assert_eq!(status, 200, "{renewed}");
    let new_refresh = renewed["refresh_token"].as_str().unwrap();
    assert_ne!(new_refresh, old_refresh);
    assert_ne!(renewed["access_token"], tokens["access_token"]);
    assert_eq!(s.refresh(old_refresh).await.0, 200);

    let r = s
        .http
        .post(format!("{}/_emulator/identity/revoke-refresh-tokens", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (status, body) = s.refresh(new_refresh).await;
    assert_documented_error(status, &body, "invalid_grant");
    assert_eq!(body["error_codes"][0], 50173);
    s.http
        .post(format!(
            "{}/_emulator/identity/revoke-refresh-tokens?reason=inactivity",
            s.base
        ))
        .send()
        .await
        .unwrap();
    let (status, body) = s.refresh(new_refresh).await;
    assert_documented_error(status, &body, "invalid_grant");
    assert_eq!(body["error_codes"][0], 700082);
}

#[tokio::test]
async fn device_code_without_offline_access_has_no_refresh_token_and_openid_adds_id_token() {
    let s = start().await;
    s.identity.set_auto_approve(true);
    let dc = s.device_code("Files.ReadWrite openid profile").await;
    let (status, tokens) = s.poll(dc["device_code"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens.get("refresh_token").is_none());
    assert_eq!(tokens["id_token"].as_str().unwrap().split('.').count(), 3);
}

#[tokio::test]
async fn polling_faster_than_interval_gets_slow_down() {
    let s = start().await;
    let dc = s.device_code("Files.ReadWrite").await;
    let device_code = dc["device_code"].as_str().unwrap();
    let (status, body) = s.poll(device_code).await;
    assert_documented_error(status, &body, "authorization_pending");
    let (status, body) = s.poll(device_code).await;
    assert_documented_error(status, &body, "slow_down");
}

#[tokio::test]
async fn declined_expired_and_unknown_device_codes() {
    let s = start().await;
    let dc = s.device_code("Files.ReadWrite").await;
    assert!(s.identity.decline_user_code(dc["user_code"].as_str().unwrap()));
    let (status, body) = s.poll(dc["device_code"].as_str().unwrap()).await;
    assert_documented_error(status, &body, "authorization_declined");

    let dc = s.device_code("Files.ReadWrite").await;
    let listed: Value = s
        .http
        .get(format!("{}/_emulator/identity/device-codes", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["user_code"] == dc["user_code"]));
    assert!(!listed.to_string().contains(dc["device_code"].as_str().unwrap()));
    s.http
        .post(format!("{}/_emulator/identity/device-codes/expire", s.base))
        .send()
        .await
        .unwrap();
    let (status, body) = s.poll(dc["device_code"].as_str().unwrap()).await;
    assert_documented_error(status, &body, "expired_token");

    let (status, body) = s.poll("not-a-device-code").await;
    assert_documented_error(status, &body, "bad_verification_code");
}

fn pkce_challenge(verifier: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

#[tokio::test]
async fn authorization_code_with_pkce_is_single_use_and_bound_to_redirect_uri() {
    let s = start().await;
    let verifier = "a-very-long-code-verifier-of-at-least-forty-three-characters-0123";
    let redirect = "http://localhost:53682/";
    let mut url = url::Url::parse(&format!("{}/consumers/oauth2/v2.0/authorize", s.base)).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", DEFAULT_CLIENT_ID)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", "Files.ReadWrite offline_access")
        .append_pair("state", "xyz 1")
        .append_pair("code_challenge", &pkce_challenge(verifier))
        .append_pair("code_challenge_method", "S256");
    let r = s.http.get(url.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(location.port(), Some(53682));
    let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "xyz 1");
    let code = q["code"].clone();

    let redeem = |verifier: &'static str, redirect: &'static str| {
        let code = code.clone();
        let s = &s;
        async move {
            s.form(
                "/consumers/oauth2/v2.0/token",
                &[
                    ("grant_type", "authorization_code"),
                    ("client_id", DEFAULT_CLIENT_ID),
                    ("code", &code),
                    ("redirect_uri", redirect),
                    ("code_verifier", verifier),
                ],
            )
            .await
        }
    };
    let (status, body) = redeem("wrong-verifier-wrong-verifier-wrong-verifier-00", redirect).await;
    assert_documented_error(status, &body, "invalid_grant");
    let (status, body) = redeem(verifier, "http://localhost:9999/other").await;
    assert_documented_error(status, &body, "invalid_grant");
    let (status, tokens) = redeem(verifier, redirect).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["refresh_token"].is_string());
    let (status, body) = redeem(verifier, redirect).await;
    assert_documented_error(status, &body, "invalid_grant");
    assert_eq!(body["error_codes"][0], 54005);
}

#[tokio::test]
async fn authorize_denied_by_control_redirects_access_denied() {
    let s = start().await;
    let r = s
        .http
        .post(format!("{}/_emulator/identity/settings", s.base))
        .json(&serde_json::json!({"deny_authorize": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["deny_authorize"], true);
    let url = format!(
        "{}/consumers/oauth2/v2.0/authorize?client_id={DEFAULT_CLIENT_ID}&response_type=code&\
         redirect_uri=http%3A%2F%2F127.0.0.1%3A4000%2Fcb&scope=Files.ReadWrite&state=s1",
        s.base
    );
    let r = s.http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("http://127.0.0.1:4000/cb?error=access_denied"),
        "{location}"
    );
    assert!(location.contains("state=s1"));

    // A redirect URI that is not registered is never redirected to.
    let url = format!(
        "{}/consumers/oauth2/v2.0/authorize?client_id={DEFAULT_CLIENT_ID}&response_type=code&\
         redirect_uri=https%3A%2F%2Fevil.example%2F&scope=Files.ReadWrite",
        s.base
    );
    assert_eq!(s.http.get(url).send().await.unwrap().status(), 400);
}

#[tokio::test]
async fn bad_tenant_client_and_secret_are_refused_as_documented() {
    let s = start().await;
    let (status, body) = s
        .form(
            "/contoso-nope/oauth2/v2.0/devicecode",
            &[("client_id", DEFAULT_CLIENT_ID), ("scope", "Files.ReadWrite")],
        )
        .await;
    assert_documented_error(status, &body, "invalid_request");
    assert_eq!(body["error_codes"][0], 90002);

    let (status, body) = s
        .form(
            "/common/oauth2/v2.0/devicecode",
            &[
                ("client_id", "00000000-1111-2222-3333-444444444444"),
                ("scope", "Files.ReadWrite"),
            ],
        )
        .await;
    assert_documented_error(status, &body, "unauthorized_client");
    assert_eq!(body["error_codes"][0], 700016);

    let (status, body) = s
        .form("/consumers/oauth2/v2.0/devicecode", &[("scope", "Files.ReadWrite")])
        .await;
    assert_documented_error(status, &body, "invalid_request");
    assert_eq!(body["error_codes"][0], 900144);

    let (status, body) = s
        .form(
            "/consumers/oauth2/v2.0/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("client_secret", "s3cret"),
                ("refresh_token", "x"),
            ],
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");

    // Client credentials in a Basic header (RFC 6749 §2.3.1) are read too: a secret is refused the same way.
    let r = s
        .http
        .post(format!("{}/consumers/oauth2/v2.0/token", s.base))
        .basic_auth(DEFAULT_CLIENT_ID, Some("s3cret"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");

    let (status, body) = s
        .form(
            "/consumers/oauth2/v2.0/token",
            &[("grant_type", "password"), ("client_id", DEFAULT_CLIENT_ID)],
        )
        .await;
    assert_documented_error(status, &body, "unsupported_grant_type");
}

#[tokio::test]
async fn authorize_form_post_and_fragment_response_modes() {
    let s = start().await;
    let url = |mode: &str| {
        format!(
            "{}/consumers/oauth2/v2.0/authorize?client_id={DEFAULT_CLIENT_ID}&response_type=code&\
             redirect_uri=http%3A%2F%2Flocalhost%3A5000%2F&scope=Files.ReadWrite&state=st&response_mode={mode}",
            s.base
        )
    };
    let page = s.http.get(url("form_post")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("action=\"http://localhost:5000/\""), "{html}");
    assert!(html.contains("name=\"code\"") && html.contains("name=\"state\" value=\"st\""));
    let r = s.http.get(url("fragment")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap();
    assert!(location.starts_with("http://localhost:5000/#code="), "{location}");
}

#[tokio::test]
async fn controls_expire_access_tokens_and_issue_test_tokens() {
    let s = start().await;
    let r: Value = s
        .http
        .post(format!("{}/_emulator/identity/test-token", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = r["access_token"].as_str().unwrap().to_string();
    let header = format!("Bearer {token}");
    assert_eq!(s.identity.check_bearer(Some(&header)), Ok(()));
    s.http
        .post(format!("{}/_emulator/identity/expire-access-tokens", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(s.identity.check_bearer(Some(&header)), Err(BearerError::Expired));
}

#[tokio::test]
async fn confidential_clients_registered_by_control_must_present_their_secret() {
    let s = start().await;
    let app = "b15665d9-eda6-4092-8539-0eec376afd59";
    let r = s
        .http
        .post(format!("{}/_emulator/identity/clients/{app}", s.base))
        .json(&serde_json::json!({"secret": "rclone-secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    s.identity.set_auto_approve(true);
    let (status, dc) = s
        .form(
            "/common/oauth2/v2.0/devicecode",
            &[("client_id", app), ("scope", "Files.ReadWrite offline_access")],
        )
        .await;
    assert_eq!(status, 200, "{dc}");
    let poll = |secret: Option<&'static str>| {
        let device_code = dc["device_code"].as_str().unwrap().to_string();
        let s = &s;
        async move {
            let mut fields = vec![
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code".to_string()),
                ("client_id", app.to_string()),
                ("device_code", device_code),
            ];
            if let Some(secret) = secret {
                fields.push(("client_secret", secret.to_string()));
            }
            let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            s.form("/common/oauth2/v2.0/token", &refs).await
        }
    };
    let (status, body) = poll(None).await;
    assert_eq!(
        (status, body["error_codes"][0].as_u64()),
        (401, Some(7000218)),
        "{body}"
    );
    let (status, body) = poll(Some("wrong")).await;
    assert_eq!(
        (status, body["error_codes"][0].as_u64()),
        (401, Some(7000215)),
        "{body}"
    );
    let (status, tokens) = poll(Some("rclone-secret")).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["refresh_token"].is_string());
}

/// The emulator knows galleryfs's app registration by its own constant; it must be the id the client signs in
/// with by default, or `galleryfs login` without `--client-id` would be refused by the demo.
#[test]
fn the_emulator_registers_the_clients_default_app_id() {
    assert_eq!(
        galleryfs::emulator::identity::GALLERYFS_APP_ID,
        galleryfs::remote::endpoints::DEFAULT_CLIENT_ID
    );
}

/// The emulator's quickXorHash and the client's are separate implementations of one published algorithm: they
/// agree on every length around the 160-byte period and on a megabyte.
#[test]
fn the_emulators_quickxor_agrees_with_the_clients() {
    let data: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    for len in [0, 1, 159, 160, 161, 1000, 1 << 20] {
        assert_eq!(
            galleryfs::emulator::quickxor::QuickXor::of(&data[..len]),
            galleryfs::remote::QuickXorHash::of(&data[..len]),
            "length {len}"
        );
    }
}
