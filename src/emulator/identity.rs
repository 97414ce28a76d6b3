//! Emulator identity platform: `/{tenant}/oauth2/v2.0/{devicecode,token,authorize}` as the Microsoft identity
//! platform documents them, the access and refresh tokens it issued, and the controls tests use (approve or
//! decline a device code, expire or revoke tokens).
//!
//! Parts: [`store`] (grants and tokens, no HTTP), [`endpoints`] (the documented endpoints and the `/link` page),
//! [`token_error`] (the documented error bodies). This file holds [`Identity`], the bearer check for Graph
//! requests and the control routes. Tokens and codes are never logged.

mod endpoints;
pub mod store;
pub mod token_error;

pub use store::{DeviceCodeStatus, IdentitySettings, IdentitySnapshot, PendingDeviceCode, RefreshInvalidation};

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use std::sync::Arc;
use store::{AccessTokenState, IdentityStore};

#[derive(Clone, Debug)]
pub struct IdentityConfig {
    /// Approve device codes as soon as they are issued.
    pub auto_approve: bool,
    /// Lifetime of issued access tokens (`expires_in`), seconds.
    pub access_token_lifetime_secs: u64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            auto_approve: false,
            access_token_lifetime_secs: 3599,
        }
    }
}

/// The application id galleryfs is registered under with the Microsoft identity platform (a public fact about
/// the app registration, as an Entra tenant would hold it).
pub const GALLERYFS_APP_ID: &str = "b6d2a1b4-6e54-4c59-9c5e-6a1f0a9f2d31";

/// Client ids registered with the emulated platform from the start: galleryfs's own.
pub const REGISTERED_CLIENT_IDS: &[&str] = &[GALLERYFS_APP_ID];

/// The documented default polling interval of device codes, seconds.
pub const DEFAULT_POLL_INTERVAL_SECS: u64 = 5;
/// The documented default lifetime of device codes, seconds.
pub const DEFAULT_DEVICE_CODE_LIFETIME_SECS: u64 = 900;

/// The emulated identity platform.
#[derive(Debug)]
pub struct Identity {
    /// The configuration it started with (current values: [`Identity::settings`]).
    pub config: IdentityConfig,
    store: Mutex<IdentityStore>,
}

/// Why a Graph request's bearer token was refused; answers 401 with a Graph error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BearerError {
    Missing,
    Invalid,
    Expired,
}

impl IntoResponse for BearerError {
    fn into_response(self) -> Response {
        let message = match self {
            BearerError::Missing => "Access token is empty.",
            BearerError::Invalid => "Invalid access token: the token is not recognised.",
            BearerError::Expired => "Lifetime validation failed, the token is expired.",
        };
        // RFC 6750 §3.1: no error code when the request carried no authentication; `expired_token` is what
        // rclone looks for before refreshing.
        let challenge = match self {
            BearerError::Missing => BEARER_REALM.to_string(),
            BearerError::Invalid => {
                format!("{BEARER_REALM}, error=\"invalid_token\", error_description=\"The access token is invalid\"")
            }
            BearerError::Expired => format!(
                "{BEARER_REALM}, error=\"invalid_token\", error_description=\"expired_token: the access token has \
                 expired\""
            ),
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        let body = serde_json::json!({
            "error": {
                "code": "InvalidAuthenticationToken",
                "message": message,
                "innerError": {
                    "date": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
                    "request-id": request_id,
                    "client-request-id": request_id,
                }
            }
        });
        (
            StatusCode::UNAUTHORIZED,
            [
                (header::WWW_AUTHENTICATE, challenge),
                (header::CONTENT_TYPE, "application/json".to_string()),
            ],
            body.to_string(),
        )
            .into_response()
    }
}

const BEARER_REALM: &str = "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"";

impl Identity {
    pub fn new(config: IdentityConfig) -> Arc<Self> {
        let settings = IdentitySettings {
            auto_approve: config.auto_approve,
            access_token_lifetime_secs: config.access_token_lifetime_secs,
            poll_interval_secs: DEFAULT_POLL_INTERVAL_SECS,
            device_code_lifetime_secs: DEFAULT_DEVICE_CODE_LIFETIME_SECS,
            deny_authorize: false,
        };
        let clients = REGISTERED_CLIENT_IDS.iter().map(|s| s.to_string());
        Arc::new(Self {
            config,
            store: Mutex::new(IdentityStore::new(settings, clients)),
        })
    }

    /// `/{tenant}/oauth2/v2.0/{devicecode,token,authorize}` and the device-login page.
    pub fn router(self: &Arc<Self>) -> Router {
        endpoints::router(self.clone())
    }

    /// Control routes, mounted by the server at `/_emulator/identity`:
    /// `GET /device-codes`, `POST /device-codes/{user_code}/approve|decline`, `POST /device-codes/expire`,
    /// `POST /expire-access-tokens`, `POST /revoke-refresh-tokens[?reason=password_changed|inactivity|
    /// consent_revoked]`, `GET|POST /settings` (partial JSON),
    /// `POST /clients/{client_id}` (optional body `{"secret"}`: a confidential client),
    /// `POST /test-token` → `{"access_token"}`.
    pub fn control_router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/device-codes", get(control_device_codes))
            .route("/device-codes/expire", post(control_expire_device_codes))
            .route("/device-codes/{user_code}/{decision}", post(control_decide))
            .route("/expire-access-tokens", post(control_expire_access))
            .route("/revoke-refresh-tokens", post(control_revoke_refresh))
            .route("/settings", get(control_settings).post(control_update_settings))
            .route("/clients/{client_id}", post(control_register_client))
            .route("/test-token", post(control_test_token))
            .with_state(self.clone())
    }

    /// Checks the `Authorization` header value of a Graph request.
    pub fn check_bearer(&self, authorization: Option<&str>) -> Result<(), BearerError> {
        let value = authorization
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or(BearerError::Missing)?;
        let (scheme, token) = value.split_once(' ').ok_or(BearerError::Invalid)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(BearerError::Invalid);
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(BearerError::Missing);
        }
        match self.store.lock().access_token_state(token) {
            AccessTokenState::Valid => Ok(()),
            AccessTokenState::Expired => Err(BearerError::Expired),
            AccessTokenState::Unknown => Err(BearerError::Invalid),
        }
    }

    /// Issues a valid access token without a sign-in flow (for tests).
    pub fn issue_test_token(&self) -> String {
        self.store.lock().issue_access_token()
    }

    /// Current settings.
    pub fn settings(&self) -> IdentitySettings {
        self.store.lock().settings.clone()
    }

    pub fn set_auto_approve(&self, on: bool) {
        self.store.lock().settings.auto_approve = on;
    }

    /// Lifetime of access tokens issued from now on.
    pub fn set_access_token_lifetime(&self, secs: u64) {
        self.store.lock().settings.access_token_lifetime_secs = secs;
    }

    /// `interval` of device codes issued from now on.
    pub fn set_poll_interval(&self, secs: u64) {
        self.store.lock().settings.poll_interval_secs = secs;
    }

    /// `expires_in` of device codes issued from now on.
    pub fn set_device_code_lifetime(&self, secs: u64) {
        self.store.lock().settings.device_code_lifetime_secs = secs;
    }

    /// `/authorize` answers `error=access_denied` (the user refuses consent) while on.
    pub fn set_deny_authorize(&self, on: bool) {
        self.store.lock().settings.deny_authorize = on;
    }

    /// Registers a public client (the kind galleryfs is).
    pub fn register_client(&self, client_id: &str) {
        self.store.lock().register_client(client_id, None);
    }

    /// Registers a confidential client that authenticates with `secret` (e.g. rclone's own app id).
    pub fn register_confidential_client(&self, client_id: &str, secret: &str) {
        self.store.lock().register_client(client_id, Some(secret));
    }

    /// Device-code sign-ins that are still live (not expired, not redeemed).
    pub fn pending_device_codes(&self) -> Vec<PendingDeviceCode> {
        self.store.lock().pending_device_codes()
    }

    /// A person approves the sign-in of `user_code`; false when no pending sign-in has that code.
    pub fn approve_user_code(&self, user_code: &str) -> bool {
        self.store.lock().decide_user_code(user_code, true)
    }

    /// A person declines the sign-in of `user_code`; false when no pending sign-in has that code.
    pub fn decline_user_code(&self, user_code: &str) -> bool {
        self.store.lock().decide_user_code(user_code, false)
    }

    /// Every device code issued so far (secrets: for tests that scan logs for leaks; never log them).
    pub fn issued_device_codes(&self) -> Vec<String> {
        self.store.lock().issued_device_codes()
    }

    /// Every device code expires now.
    pub fn expire_device_codes(&self) {
        self.store.lock().expire_device_codes();
    }

    /// Every access token issued so far expires now.
    pub fn expire_access_tokens(&self) {
        self.store.lock().expire_access_tokens();
        tracing::info!(target: "emulator::identity", "all access tokens expired");
    }

    /// Tokens and registered clients, for the emulator's state file (holds secrets; never log it).
    pub fn snapshot(&self) -> IdentitySnapshot {
        self.store.lock().snapshot()
    }

    /// Takes back what [`Identity::snapshot`] saved (after a restart).
    pub fn restore(&self, snapshot: IdentitySnapshot) {
        self.store.lock().restore(snapshot);
    }

    /// Every refresh token issued so far is revoked (as after a password change: AADSTS50173).
    pub fn revoke_refresh_tokens(&self) {
        self.invalidate_refresh_tokens(RefreshInvalidation::PasswordChanged);
    }

    /// Every refresh token issued so far stops working for `reason`.
    pub fn invalidate_refresh_tokens(&self, reason: RefreshInvalidation) {
        self.store.lock().invalidate_refresh_tokens(reason);
        tracing::info!(target: "emulator::identity", ?reason, "all refresh tokens invalidated");
    }
}

async fn control_device_codes(State(identity): State<Arc<Identity>>) -> Json<Vec<PendingDeviceCode>> {
    Json(identity.pending_device_codes())
}

async fn control_expire_device_codes(State(identity): State<Arc<Identity>>) -> StatusCode {
    identity.expire_device_codes();
    StatusCode::NO_CONTENT
}

async fn control_decide(
    State(identity): State<Arc<Identity>>,
    Path((user_code, decision)): Path<(String, String)>,
) -> Response {
    let done = match decision.as_str() {
        "approve" => identity.approve_user_code(&user_code),
        "decline" => identity.decline_user_code(&user_code),
        _ => return (StatusCode::NOT_FOUND, "decision must be approve or decline").into_response(),
    };
    if done {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::NOT_FOUND, "no pending sign-in has this user code").into_response()
    }
}

async fn control_expire_access(State(identity): State<Arc<Identity>>) -> StatusCode {
    identity.expire_access_tokens();
    StatusCode::NO_CONTENT
}

#[derive(Debug, serde::Deserialize)]
struct RevokeQuery {
    reason: Option<RefreshInvalidation>,
}

async fn control_revoke_refresh(
    State(identity): State<Arc<Identity>>,
    axum::extract::Query(q): axum::extract::Query<RevokeQuery>,
) -> StatusCode {
    identity.invalidate_refresh_tokens(q.reason.unwrap_or(RefreshInvalidation::PasswordChanged));
    StatusCode::NO_CONTENT
}

async fn control_settings(State(identity): State<Arc<Identity>>) -> Json<IdentitySettings> {
    Json(identity.settings())
}

/// Partial update: only the fields present change.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsUpdate {
    auto_approve: Option<bool>,
    access_token_lifetime_secs: Option<u64>,
    poll_interval_secs: Option<u64>,
    device_code_lifetime_secs: Option<u64>,
    deny_authorize: Option<bool>,
}

async fn control_update_settings(
    State(identity): State<Arc<Identity>>,
    Json(update): Json<SettingsUpdate>,
) -> Json<IdentitySettings> {
    {
        let mut store = identity.store.lock();
        let s = &mut store.settings;
        if let Some(v) = update.auto_approve {
            s.auto_approve = v;
        }
        if let Some(v) = update.access_token_lifetime_secs {
            s.access_token_lifetime_secs = v;
        }
        if let Some(v) = update.poll_interval_secs {
            s.poll_interval_secs = v;
        }
        if let Some(v) = update.device_code_lifetime_secs {
            s.device_code_lifetime_secs = v;
        }
        if let Some(v) = update.deny_authorize {
            s.deny_authorize = v;
        }
    }
    Json(identity.settings())
}

/// Optional body of `POST /clients/{client_id}`: `{"secret": "..."}` makes a confidential client.
#[derive(Debug, Default, serde::Deserialize)]
struct ClientBody {
    secret: Option<String>,
}

async fn control_register_client(
    State(identity): State<Arc<Identity>>,
    Path(client_id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let parsed: ClientBody = if body.is_empty() {
        ClientBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        }
    };
    match parsed.secret.as_deref() {
        Some(secret) => identity.register_confidential_client(&client_id, secret),
        None => identity.register_client(&client_id),
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn control_test_token(State(identity): State<Arc<Identity>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "access_token": identity.issue_test_token() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_check_distinguishes_missing_invalid_expired() {
        let identity = Identity::new(IdentityConfig::default());
        let token = identity.issue_test_token();
        assert_eq!(identity.check_bearer(Some(&format!("Bearer {token}"))), Ok(()));
        assert_eq!(identity.check_bearer(Some(&format!("bearer {token}"))), Ok(()));
        assert_eq!(identity.check_bearer(None), Err(BearerError::Missing));
        assert_eq!(identity.check_bearer(Some("Bearer nope")), Err(BearerError::Invalid));
        assert_eq!(
            identity.check_bearer(Some(&format!("Basic {token}"))),
            Err(BearerError::Invalid)
        );
        identity.expire_access_tokens();
        assert_eq!(
            identity.check_bearer(Some(&format!("Bearer {token}"))),
            Err(BearerError::Expired)
        );
        // Tokens issued after the expiry are valid.
        let fresh = identity.issue_test_token();
        assert_eq!(identity.check_bearer(Some(&format!("Bearer {fresh}"))), Ok(()));
    }

    #[test]
    fn bearer_error_answers_401_with_graph_body_and_challenge() {
        let response = BearerError::Expired.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.starts_with("Bearer "));
        assert!(challenge.contains("error=\"invalid_token\""));
        assert!(challenge.contains("expired_token"));
        let missing = BearerError::Missing.into_response();
        let challenge = missing.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(!challenge.contains("error="));
    }
}
