//! The identity platform's memory: registered clients, device-code and authorization-code grants, and the
//! access and refresh tokens issued. Pure logic (no HTTP), so the grant rules can be tested directly.

use super::token_error::TokenError;
use base64::Engine;
use rand::RngCore;
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Settings that tests change while the emulator runs.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct IdentitySettings {
    pub auto_approve: bool,
    pub access_token_lifetime_secs: u64,
    /// `interval` of device-code answers (documented default 5).
    pub poll_interval_secs: u64,
    /// `expires_in` of device codes (documented default 900).
    pub device_code_lifetime_secs: u64,
    /// `/authorize` answers `error=access_denied` instead of approving.
    pub deny_authorize: bool,
}

/// A device-code sign-in as the control API shows it (the device code itself is never shown).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PendingDeviceCode {
    pub user_code: String,
    pub client_id: String,
    pub scope: String,
    pub status: DeviceCodeStatus,
    pub expires_in_secs: u64,
}

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DeviceCodeStatus {
    Pending,
    Approved,
    Declined,
    Redeemed,
}

#[derive(Debug)]
struct DeviceGrant {
    user_code: String,
    client_id: String,
    tenant: String,
    scope: Vec<String>,
    expires: Instant,
    status: DeviceCodeStatus,
    last_poll: Option<Instant>,
    interval: Duration,
}

#[derive(Debug)]
struct AuthCodeGrant {
    client_id: String,
    redirect_uri: String,
    scope: Vec<String>,
    code_challenge: Option<(String, String)>,
    expires: Instant,
    redeemed: bool,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
struct RefreshGrant {
    client_id: String,
    scope: Vec<String>,
    /// Why the grant no longer works, when it doesn't.
    #[serde(default)]
    invalidated: Option<RefreshInvalidation>,
}

/// Why refresh tokens stop working (each answers `invalid_grant` with its documented AADSTS number).
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RefreshInvalidation {
    /// AADSTS50173: revoked by the user or an admin (password change or reset, sign out everywhere).
    PasswordChanged,
    /// AADSTS700082: expired through inactivity.
    Inactivity,
    /// AADSTS65001: the user removed the app's consent.
    ConsentRevoked,
}

/// What survives an emulator restart (`--state`): refresh tokens, and access tokens with their remaining
/// lifetime, so a signed-in client stays signed in. Holds secrets: only for the emulator's own state file.
#[derive(Clone, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct IdentitySnapshot {
    refresh_tokens: Vec<(String, RefreshGrant)>,
    access_tokens: Vec<(String, u64)>,
    clients: Vec<(String, Option<String>)>,
}

impl std::fmt::Debug for IdentitySnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentitySnapshot")
            .field("refresh_tokens", &self.refresh_tokens.len())
            .field("access_tokens", &self.access_tokens.len())
            .field("clients", &self.clients.len())
            .finish()
    }
}

/// Tokens returned by a successful grant.
#[derive(Clone, Serialize)]
pub struct TokenResponse {
    pub token_type: &'static str,
    pub scope: String,
    pub expires_in: u64,
    pub ext_expires_in: u64,
    pub access_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// Where a bearer token stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessTokenState {
    Valid,
    Expired,
    Unknown,
}

/// Authorization code lifetime (documented: about 10 minutes).
const AUTH_CODE_LIFETIME: Duration = Duration::from_secs(600);
/// Poll-timing slack for timer granularity.
const POLL_SLACK: Duration = Duration::from_millis(50);
/// The consumer tenant id of personal Microsoft accounts.
pub const CONSUMERS_TENANT_ID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

pub struct IdentityStore {
    pub settings: IdentitySettings,
    /// Registered client ids; confidential clients with their secret.
    clients: HashMap<String, Option<String>>,
    device_codes: HashMap<String, DeviceGrant>,
    auth_codes: HashMap<String, AuthCodeGrant>,
    access_tokens: HashMap<String, Instant>,
    refresh_tokens: HashMap<String, RefreshGrant>,
}

/// Debug output shows counts only: the maps are keyed by tokens and codes, which are never printed.
impl std::fmt::Debug for IdentityStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityStore")
            .field("settings", &self.settings)
            .field("clients", &self.clients.keys().collect::<Vec<_>>())
            .field("device_codes", &self.device_codes.len())
            .field("auth_codes", &self.auth_codes.len())
            .field("access_tokens", &self.access_tokens.len())
            .field("refresh_tokens", &self.refresh_tokens.len())
            .finish()
    }
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("scope", &self.scope)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token.is_some())
            .field("id_token", &self.id_token.is_some())
            .finish_non_exhaustive()
    }
}

/// A random opaque string of `bytes` random bytes, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// A user code as people type it: 9 characters without look-alikes (0/O, 1/I).
fn random_user_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut buf = [0u8; 9];
    rand::rng().fill_bytes(&mut buf);
    buf.iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// Normalises a user code typed by a person: case, dashes and spaces do not matter.
pub fn normalise_user_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

pub fn split_scope(scope: &str) -> Vec<String> {
    scope.split_whitespace().map(str::to_string).collect()
}

fn scope_name(scope: &str) -> String {
    // `https://graph.microsoft.com/Files.ReadWrite` and `Files.ReadWrite` name the same permission.
    scope
        .strip_prefix("https://graph.microsoft.com/")
        .unwrap_or(scope)
        .to_ascii_lowercase()
}

fn has_scope(scope: &[String], wanted: &str) -> bool {
    scope.iter().any(|s| scope_name(s) == wanted)
}

impl IdentityStore {
    pub fn new(settings: IdentitySettings, clients: impl IntoIterator<Item = String>) -> Self {
        Self {
            settings,
            clients: clients.into_iter().map(|c| (c, None)).collect(),
            device_codes: HashMap::new(),
            auth_codes: HashMap::new(),
            access_tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
        }
    }

    /// Registers a public client (no secret) or, with `secret`, a confidential one.
    pub fn register_client(&mut self, client_id: &str, secret: Option<&str>) {
        self.clients.insert(client_id.to_string(), secret.map(str::to_string));
    }

    pub fn check_client(&self, client_id: Option<&str>) -> Result<String, TokenError> {
        match client_id {
            None | Some("") => Err(TokenError::missing_parameter("client_id")),
            Some(id) if self.clients.contains_key(id) => Ok(id.to_string()),
            Some(id) => Err(TokenError::unknown_client(id)),
        }
    }

    /// Client authentication at the token endpoint: public clients must not send a secret (AADSTS700025),
    /// confidential clients must send theirs (AADSTS7000218 missing, AADSTS7000215 wrong).
    pub fn check_client_secret(&self, client_id: &str, presented: Option<&str>) -> Result<(), TokenError> {
        match (self.clients.get(client_id).cloned().flatten(), presented) {
            (None, None) => Ok(()),
            (None, Some(_)) => Err(TokenError::public_client_with_secret()),
            (Some(_), None) => Err(TokenError::client_secret_missing()),
            (Some(expected), Some(given)) if expected == given => Ok(()),
            (Some(_), Some(_)) => Err(TokenError::client_secret_wrong()),
        }
    }

    /// Starts a device-code sign-in: returns `(device_code, user_code, expires_in, interval)`.
    pub fn start_device_code(&mut self, client_id: &str, tenant: &str, scope: &str) -> (String, String, u64, u64) {
        let now = Instant::now();
        self.device_codes
            .retain(|_, g| g.expires + Duration::from_secs(3600) > now);
        let device_code = random_token(48);
        let user_code = random_user_code();
        let lifetime = self.settings.device_code_lifetime_secs;
        let interval = self.settings.poll_interval_secs;
        let status = if self.settings.auto_approve {
            DeviceCodeStatus::Approved
        } else {
            DeviceCodeStatus::Pending
        };
        self.device_codes.insert(
            device_code.clone(),
            DeviceGrant {
                user_code: user_code.clone(),
                client_id: client_id.to_string(),
                tenant: tenant.to_string(),
                scope: split_scope(scope),
                expires: now + Duration::from_secs(lifetime),
                status,
                last_poll: None,
                interval: Duration::from_secs(interval),
            },
        );
        (device_code, user_code, lifetime, interval)
    }

    /// Every device code issued so far, redeemed or not (secrets: for tests that scan logs for leaks).
    pub fn issued_device_codes(&self) -> Vec<String> {
        self.device_codes.keys().cloned().collect()
    }

    pub fn pending_device_codes(&self) -> Vec<PendingDeviceCode> {
        let now = Instant::now();
        let mut list: Vec<_> = self
            .device_codes
            .values()
            .filter(|g| g.expires > now && g.status != DeviceCodeStatus::Redeemed)
            .map(|g| PendingDeviceCode {
                user_code: g.user_code.clone(),
                client_id: g.client_id.clone(),
                scope: g.scope.join(" "),
                status: g.status,
                expires_in_secs: g.expires.saturating_duration_since(now).as_secs(),
            })
            .collect();
        list.sort_by(|a, b| a.user_code.cmp(&b.user_code));
        list
    }

    /// A person approves (`true`) or declines the sign-in of `user_code`. False when no live pending code has it.
    pub fn decide_user_code(&mut self, user_code: &str, approve: bool) -> bool {
        let wanted = normalise_user_code(user_code);
        let now = Instant::now();
        match self
            .device_codes
            .values_mut()
            .find(|g| g.user_code == wanted && g.expires > now && g.status == DeviceCodeStatus::Pending)
        {
            Some(grant) => {
                grant.status = if approve {
                    DeviceCodeStatus::Approved
                } else {
                    DeviceCodeStatus::Declined
                };
                true
            }
            None => false,
        }
    }

    /// Makes every device code expire now (tests of `expired_token`).
    pub fn expire_device_codes(&mut self) {
        let now = Instant::now();
        for g in self.device_codes.values_mut() {
            g.expires = now;
        }
    }

    /// A device-code poll (`grant_type=urn:ietf:params:oauth:grant-type:device_code`).
    pub fn poll_device_code(
        &mut self,
        client_id: &str,
        tenant: &str,
        device_code: &str,
    ) -> Result<TokenResponse, TokenError> {
        let now = Instant::now();
        let grant = match self.device_codes.get_mut(device_code) {
            Some(g) if g.client_id == client_id && g.tenant == tenant => g,
            _ => return Err(TokenError::bad_verification_code()),
        };
        if grant.status == DeviceCodeStatus::Redeemed {
            return Err(TokenError::device_code_used());
        }
        if now >= grant.expires {
            return Err(TokenError::expired_device_code());
        }
        let too_fast = grant
            .last_poll
            .is_some_and(|last| now.duration_since(last) + POLL_SLACK < grant.interval);
        grant.last_poll = Some(now);
        if too_fast {
            // RFC 8628 §3.5: the interval grows by 5 s for this and all later requests.
            grant.interval += Duration::from_secs(5);
            return Err(TokenError::slow_down());
        }
        match grant.status {
            DeviceCodeStatus::Pending => Err(TokenError::authorization_pending()),
            DeviceCodeStatus::Declined => Err(TokenError::authorization_declined()),
            DeviceCodeStatus::Approved => {
                grant.status = DeviceCodeStatus::Redeemed;
                let (client, scope) = (grant.client_id.clone(), grant.scope.clone());
                Ok(self.issue_tokens(&client, &scope))
            }
            DeviceCodeStatus::Redeemed => Err(TokenError::device_code_used()),
        }
    }

    /// `/authorize` approved: a single-use code bound to the redirect URI and PKCE challenge.
    pub fn issue_auth_code(
        &mut self,
        client_id: &str,
        redirect_uri: &str,
        scope: &str,
        code_challenge: Option<(String, String)>,
    ) -> String {
        let now = Instant::now();
        self.auth_codes
            .retain(|_, g| g.expires + Duration::from_secs(3600) > now);
        let code = random_token(64);
        self.auth_codes.insert(
            code.clone(),
            AuthCodeGrant {
                client_id: client_id.to_string(),
                redirect_uri: redirect_uri.to_string(),
                scope: split_scope(scope),
                code_challenge,
                expires: now + AUTH_CODE_LIFETIME,
                redeemed: false,
            },
        );
        code
    }

    /// `grant_type=authorization_code`.
    pub fn redeem_auth_code(
        &mut self,
        client_id: &str,
        code: &str,
        redirect_uri: Option<&str>,
        code_verifier: Option<&str>,
    ) -> Result<TokenResponse, TokenError> {
        let grant = match self.auth_codes.get_mut(code) {
            Some(g) if g.client_id == client_id => g,
            _ => return Err(TokenError::bad_auth_code()),
        };
        if grant.redeemed {
            return Err(TokenError::auth_code_redeemed());
        }
        if Instant::now() >= grant.expires {
            return Err(TokenError::auth_code_expired());
        }
        match redirect_uri {
            None => return Err(TokenError::missing_parameter("redirect_uri")),
            Some(uri) if uri != grant.redirect_uri => return Err(TokenError::redirect_uri_mismatch()),
            Some(_) => {}
        }
        if let Some((challenge, method)) = &grant.code_challenge {
            let verifier = code_verifier.ok_or_else(|| TokenError::missing_parameter("code_verifier"))?;
            if !pkce_matches(verifier, challenge, method) {
                return Err(TokenError::pkce_mismatch());
            }
        }
        grant.redeemed = true;
        let scope = grant.scope.clone();
        Ok(self.issue_tokens(client_id, &scope))
    }

    /// `grant_type=refresh_token`: a new access token and a new refresh token; the old one stays valid.
    pub fn redeem_refresh_token(
        &mut self,
        client_id: &str,
        refresh_token: &str,
        scope: Option<&str>,
    ) -> Result<TokenResponse, TokenError> {
        let grant = match self.refresh_tokens.get(refresh_token) {
            Some(g) if g.client_id == client_id => g,
            _ => return Err(TokenError::bad_refresh_token()),
        };
        match grant.invalidated {
            None => {}
            Some(RefreshInvalidation::PasswordChanged) => return Err(TokenError::refresh_token_revoked()),
            Some(RefreshInvalidation::Inactivity) => return Err(TokenError::refresh_token_inactive()),
            Some(RefreshInvalidation::ConsentRevoked) => {
                return Err(TokenError::scope_not_consented(&grant.scope.join(" ")))
            }
        }
        let granted = grant.scope.clone();
        let scope = match scope.map(split_scope).filter(|s| !s.is_empty()) {
            None => granted,
            Some(requested) => {
                const OIDC: [&str; 4] = ["openid", "profile", "email", "offline_access"];
                if let Some(extra) = requested
                    .iter()
                    .find(|s| !OIDC.contains(&scope_name(s).as_str()) && !has_scope(&granted, &scope_name(s)))
                {
                    return Err(TokenError::scope_not_consented(extra));
                }
                requested
            }
        };
        Ok(self.issue_tokens(client_id, &scope))
    }

    fn issue_tokens(&mut self, client_id: &str, scope: &[String]) -> TokenResponse {
        let lifetime = self.settings.access_token_lifetime_secs;
        let access_token = self.issue_access_token();
        let offline = has_scope(scope, "offline_access");
        let refresh_token = offline.then(|| {
            let token = random_token(96);
            self.refresh_tokens.insert(
                token.clone(),
                RefreshGrant {
                    client_id: client_id.to_string(),
                    scope: scope.to_vec(),
                    invalidated: None,
                },
            );
            token
        });
        let id_token = has_scope(scope, "openid").then(|| id_token(client_id, lifetime));
        // The answer lists what the access token is valid for; offline_access is not an access-token scope.
        let granted: Vec<&str> = scope
            .iter()
            .map(String::as_str)
            .filter(|s| scope_name(s) != "offline_access")
            .collect();
        TokenResponse {
            token_type: "Bearer",
            scope: granted.join(" "),
            expires_in: lifetime,
            ext_expires_in: lifetime,
            access_token,
            refresh_token,
            id_token,
        }
    }

    pub fn issue_access_token(&mut self) -> String {
        let now = Instant::now();
        if self.access_tokens.len() > 10_000 {
            self.access_tokens
                .retain(|_, exp| *exp + Duration::from_secs(86_400) > now);
        }
        let token = format!("EwA{}", random_token(120));
        let lifetime = Duration::from_secs(self.settings.access_token_lifetime_secs);
        self.access_tokens.insert(token.clone(), now + lifetime);
        token
    }

    pub fn access_token_state(&self, token: &str) -> AccessTokenState {
        match self.access_tokens.get(token) {
            None => AccessTokenState::Unknown,
            Some(expires) if Instant::now() >= *expires => AccessTokenState::Expired,
            Some(_) => AccessTokenState::Valid,
        }
    }

    pub fn expire_access_tokens(&mut self) {
        let now = Instant::now();
        for exp in self.access_tokens.values_mut() {
            *exp = (*exp).min(now);
        }
    }

    /// Every refresh token issued so far stops working for `reason`.
    pub fn invalidate_refresh_tokens(&mut self, reason: RefreshInvalidation) {
        for grant in self.refresh_tokens.values_mut() {
            grant.invalidated = Some(reason);
        }
    }

    pub fn snapshot(&self) -> IdentitySnapshot {
        let now = Instant::now();
        let mut clients: Vec<(String, Option<String>)> =
            self.clients.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        clients.sort();
        IdentitySnapshot {
            refresh_tokens: self
                .refresh_tokens
                .iter()
                .map(|(t, g)| (t.clone(), g.clone()))
                .collect(),
            access_tokens: self
                .access_tokens
                .iter()
                .filter(|(_, exp)| **exp > now)
                .map(|(t, exp)| (t.clone(), exp.duration_since(now).as_secs()))
                .collect(),
            clients,
        }
    }

    pub fn restore(&mut self, snapshot: IdentitySnapshot) {
        let now = Instant::now();
        self.refresh_tokens.extend(snapshot.refresh_tokens);
        self.access_tokens.extend(
            snapshot
                .access_tokens
                .into_iter()
                .map(|(t, secs)| (t, now + Duration::from_secs(secs))),
        );
        self.clients.extend(snapshot.clients);
    }
}

/// RFC 7636 §4.6: `S256` compares BASE64URL(SHA256(verifier)) with the challenge, `plain` compares them as is.
pub fn pkce_matches(verifier: &str, challenge: &str, method: &str) -> bool {
    use sha2::Digest;
    if method.eq_ignore_ascii_case("plain") {
        return verifier == challenge;
    }
    let digest = sha2::Sha256::digest(verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest) == challenge
}

/// An unsigned JWT carrying the usual id_token claims of a personal account (clients must not validate it).
fn id_token(client_id: &str, lifetime: u64) -> String {
    let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let now = chrono::Utc::now().timestamp();
    let header = b64(serde_json::json!({"typ": "JWT", "alg": "none"}));
    let claims = b64(serde_json::json!({
        "aud": client_id,
        "iss": format!("https://login.microsoftonline.com/{CONSUMERS_TENANT_ID}/v2.0"),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime as i64,
        "name": "Emulated User",
        "preferred_username": "emulated.user@outlook.com",
        "oid": "00000000-0000-0000-1234-56789abcdef0",
        "sub": "emulated-user-subject",
        "tid": CONSUMERS_TENANT_ID,
        "ver": "2.0",
    }));
    format!("{header}.{claims}.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> IdentityStore {
        IdentityStore::new(
            IdentitySettings {
                auto_approve: false,
                access_token_lifetime_secs: 3599,
                poll_interval_secs: 0,
                device_code_lifetime_secs: 900,
                deny_authorize: false,
            },
            ["app".to_string()],
        )
    }

    #[test]
    fn pkce_s256_matches_an_independent_computation() {
        // Challenge computed with `openssl dgst -sha256 -binary | base64` made URL-safe and unpadded.
        let verifier = "dBjftJeZ4CVP-mJ92K9TpfBdNbZ5Lh4e5Yg7ABzYAKc";
        let challenge = "_X35IIFgchG5Npi3DeX28hGtMwDmB1RILqGS--gJItY";
        assert!(pkce_matches(verifier, challenge, "S256"));
        assert!(!pkce_matches("another-verifier", challenge, "S256"));
    }

    #[test]
    fn device_code_pending_then_approved_then_used() {
        let mut s = store();
        let (device, user, _, _) = s.start_device_code("app", "consumers", "Files.ReadWrite offline_access");
        assert_eq!(
            s.poll_device_code("app", "consumers", &device).unwrap_err().error,
            "authorization_pending"
        );
        assert!(s.decide_user_code(&user.to_lowercase(), true));
        let tokens = s.poll_device_code("app", "consumers", &device).unwrap();
        assert!(tokens.refresh_token.is_some());
        assert!(tokens.id_token.is_none());
        assert_eq!(tokens.scope, "Files.ReadWrite");
        assert_eq!(s.access_token_state(&tokens.access_token), AccessTokenState::Valid);
        assert_eq!(
            s.poll_device_code("app", "consumers", &device).unwrap_err().error,
            "invalid_grant"
        );
    }

    #[test]
    fn device_code_of_other_client_or_tenant_is_not_recognised() {
        let mut s = store();
        s.register_client("other", None);
        let (device, _, _, _) = s.start_device_code("app", "consumers", "Files.ReadWrite");
        assert_eq!(
            s.poll_device_code("other", "consumers", &device).unwrap_err().error,
            "bad_verification_code"
        );
        assert_eq!(
            s.poll_device_code("app", "common", &device).unwrap_err().error,
            "bad_verification_code"
        );
    }

    #[test]
    fn refresh_rotates_and_old_token_stays_valid_until_revoked() {
        let mut s = store();
        let code = s.issue_auth_code(
            "app",
            "http://localhost:1/",
            "Files.ReadWrite offline_access openid",
            None,
        );
        let first = s
            .redeem_auth_code("app", &code, Some("http://localhost:1/"), None)
            .unwrap();
        assert!(first.id_token.is_some());
        let old = first.refresh_token.unwrap();
        let second = s.redeem_refresh_token("app", &old, None).unwrap();
        let new = second.refresh_token.unwrap();
        assert_ne!(old, new);
        assert!(s.redeem_refresh_token("app", &old, None).is_ok());
        let err = s
            .redeem_refresh_token("app", &old, Some("Files.ReadWrite.All"))
            .unwrap_err();
        assert_eq!(err.aadsts, 65001);
        s.invalidate_refresh_tokens(RefreshInvalidation::Inactivity);
        let err = s.redeem_refresh_token("app", &new, None).unwrap_err();
        assert_eq!((err.error, err.aadsts), ("invalid_grant", 700082));
        s.invalidate_refresh_tokens(RefreshInvalidation::ConsentRevoked);
        let err = s.redeem_refresh_token("app", &new, None).unwrap_err();
        assert_eq!((err.error, err.aadsts), ("invalid_grant", 65001));
        s.invalidate_refresh_tokens(RefreshInvalidation::PasswordChanged);
        let err = s.redeem_refresh_token("app", &new, None).unwrap_err();
        assert_eq!((err.error, err.aadsts), ("invalid_grant", 50173));
    }

    #[test]
    fn public_and_confidential_client_authentication() {
        let mut s = store();
        s.register_client("web", Some("pw"));
        assert!(s.check_client_secret("app", None).is_ok());
        assert_eq!(s.check_client_secret("app", Some("x")).unwrap_err().aadsts, 700025);
        assert!(s.check_client_secret("web", Some("pw")).is_ok());
        assert_eq!(s.check_client_secret("web", None).unwrap_err().aadsts, 7000218);
        assert_eq!(s.check_client_secret("web", Some("no")).unwrap_err().aadsts, 7000215);
        let printed = format!("{s:?} {:?}", s.snapshot());
        assert!(!printed.contains("pw"), "{printed}");
    }

    #[test]
    fn debug_output_never_shows_tokens() {
        let mut s = store();
        let token = s.issue_access_token();
        let (device, _, _, _) = s.start_device_code("app", "consumers", "Files.ReadWrite");
        let printed = format!("{s:?} {:?}", s.snapshot());
        assert!(!printed.contains(&token) && !printed.contains(&device), "{printed}");
    }

    #[test]
    fn snapshot_keeps_sign_ins_across_a_restart() {
        let mut s = store();
        let code = s.issue_auth_code("app", "http://localhost/", "Files.ReadWrite offline_access", None);
        let tokens = s
            .redeem_auth_code("app", &code, Some("http://localhost/"), None)
            .unwrap();
        let json = serde_json::to_string(&s.snapshot()).unwrap();
        let mut restarted = IdentityStore::new(s.settings.clone(), Vec::new());
        restarted.restore(serde_json::from_str(&json).unwrap());
        assert_eq!(
            restarted.access_token_state(&tokens.access_token),
            AccessTokenState::Valid
        );
        assert!(restarted
            .redeem_refresh_token("app", tokens.refresh_token.as_deref().unwrap(), None)
            .is_ok());
    }

    #[test]
    fn expired_access_token_is_reported_expired() {
        let mut s = store();
        let token = s.issue_access_token();
        s.expire_access_tokens();
        assert_eq!(s.access_token_state(&token), AccessTokenState::Expired);
        assert_eq!(s.access_token_state("nope"), AccessTokenState::Unknown);
    }
}
