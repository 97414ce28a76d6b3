//! Where the service lives: the Graph base URL, the identity-platform base URL, tenant and client id.
//! Defaults are Microsoft's real endpoints; plain `http://` is accepted only for loopback hosts.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use url::Url;

pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com/v1.0";
pub const DEFAULT_LOGIN_URL: &str = "https://login.microsoftonline.com";
pub const DEFAULT_TENANT: &str = "consumers";
/// galleryfs' public-client application id. Users may register their own app and pass `--client-id`
/// (see README: "Registering your own app").
pub const DEFAULT_CLIENT_ID: &str = "b6d2a1b4-6e54-4c59-9c5e-6a1f0a9f2d31";
/// Delegated scopes: read/write the user's files, and a refresh token.
pub const SCOPES: &[&str] = &["Files.ReadWrite", "offline_access"];

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Endpoints {
    /// e.g. `https://graph.microsoft.com/v1.0` (no trailing slash).
    pub graph_url: String,
    /// e.g. `https://login.microsoftonline.com` (no trailing slash).
    pub login_url: String,
    pub tenant: String,
    pub client_id: String,
}

impl Default for Endpoints {
    fn default() -> Self {
        Self {
            graph_url: DEFAULT_GRAPH_URL.into(),
            login_url: DEFAULT_LOGIN_URL.into(),
            tenant: DEFAULT_TENANT.into(),
            client_id: DEFAULT_CLIENT_ID.into(),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error("{url} is not a valid URL: {reason}")]
    Invalid { url: String, reason: String },
    #[error("{url}: plain http is accepted only for loopback hosts (127.0.0.0/8, ::1, localhost); use https")]
    InsecureHttp { url: String },
    #[error("{url}: only https (or http on loopback) URLs are accepted")]
    BadScheme { url: String },
}

impl Endpoints {
    /// Normalises (no trailing `/`) and checks both base URLs.
    pub fn validated(mut self) -> Result<Self, EndpointError> {
        self.graph_url = check_base_url(&self.graph_url)?;
        self.login_url = check_base_url(&self.login_url)?;
        Ok(self)
    }

    /// `{login}/{tenant}/oauth2/v2.0/{leaf}` for `devicecode`, `token`, `authorize`.
    pub fn identity_url(&self, leaf: &str) -> String {
        format!("{}/{}/oauth2/v2.0/{}", self.login_url, self.tenant, leaf)
    }

    /// `{graph}{path}` where `path` starts with `/`.
    pub fn graph(&self, path: &str) -> String {
        format!("{}{}", self.graph_url, path)
    }
}

/// Accepts `https://…` anywhere and `http://…` on loopback only; strips a trailing `/`.
pub fn check_base_url(raw: &str) -> Result<String, EndpointError> {
    let url = Url::parse(raw).map_err(|e| EndpointError::Invalid {
        url: raw.into(),
        reason: e.to_string(),
    })?;
    match url.scheme() {
        "https" => {}
        "http" => {
            if !is_loopback_url(&url) {
                return Err(EndpointError::InsecureHttp { url: raw.into() });
            }
        }
        _ => return Err(EndpointError::BadScheme { url: raw.into() }),
    }
    Ok(raw.trim_end_matches('/').to_string())
}

/// True for 127.0.0.0/8, ::1 and `localhost`.
pub fn is_loopback_url(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_http_only() {
        assert!(check_base_url("http://127.0.0.1:8080/v1.0/").is_ok());
        assert!(check_base_url("http://127.5.0.1/v1.0").is_ok());
        assert!(check_base_url("http://[::1]:9/v1.0").is_ok());
        assert!(check_base_url("http://localhost:1/").is_ok());
        assert_eq!(
            check_base_url("http://graph.microsoft.com/v1.0"),
            Err(EndpointError::InsecureHttp {
                url: "http://graph.microsoft.com/v1.0".into()
            })
        );
        assert!(matches!(
            check_base_url("ftp://x"),
            Err(EndpointError::BadScheme { .. })
        ));
        assert_eq!(
            check_base_url("https://graph.microsoft.com/v1.0/").unwrap(),
            "https://graph.microsoft.com/v1.0"
        );
    }

    #[test]
    fn identity_urls() {
        let e = Endpoints::default();
        assert_eq!(
            e.identity_url("devicecode"),
            "https://login.microsoftonline.com/consumers/oauth2/v2.0/devicecode"
        );
    }
}
