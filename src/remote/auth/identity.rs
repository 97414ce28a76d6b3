//! The identity platform as the `oauth2` crate sees it: the HTTP client (redirects disabled, as oauth2 requires),
//! the typed oauth2 client for our [`Endpoints`], the platform's error body (`error`, `error_description`,
//! `error_codes`) and how those errors become [`AuthError`]s. No secrets are ever put into an error or a log line.

use super::token_store::StoredTokens;
use super::AuthError;
use crate::remote::endpoints::SCOPES;
use crate::remote::Endpoints;
use oauth2::basic::{BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenResponse};
use oauth2::{
    AuthUrl, ClientId, DeviceAuthorizationUrl, EndpointNotSet, EndpointSet, HttpClientError, RequestTokenError, Scope,
    StandardRevocableToken, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Lifetime assumed when a token response carries no `expires_in` (the platform always sends it).
const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(3600);

/// The oauth2 client with authorize, device-authorization and token endpoints set.
pub type IdentityClient = oauth2::Client<
    IdentityErrorResponse,
    BasicTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The error an oauth2 request made with [`http_client`] returns.
pub type IdentityRequestError = RequestTokenError<HttpClientError<reqwest::Error>, IdentityErrorResponse>;

/// A reqwest client for the identity platform: rustls with the system roots, **no redirects** (oauth2's SSRF
/// advice), bounded timeouts.
pub fn http_client() -> Result<reqwest::Client, AuthError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(15))
        .timeout(Duration::from_secs(60))
        .user_agent(concat!("galleryfs/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| AuthError::Other(format!("cannot build the HTTP client: {e}")))
}

/// The oauth2 client for `endpoints` (a public client: no secret, `client_id` in the request body).
pub fn identity_client(endpoints: &Endpoints) -> Result<IdentityClient, AuthError> {
    let bad = |what: &str, e: url::ParseError| AuthError::Other(format!("invalid {what} URL: {e}"));
    Ok(oauth2::Client::new(ClientId::new(endpoints.client_id.clone()))
        .set_auth_type(oauth2::AuthType::RequestBody)
        .set_auth_uri(AuthUrl::new(endpoints.identity_url("authorize")).map_err(|e| bad("authorize", e))?)
        .set_device_authorization_url(
            DeviceAuthorizationUrl::new(endpoints.identity_url("devicecode")).map_err(|e| bad("devicecode", e))?,
        )
        .set_token_uri(TokenUrl::new(endpoints.identity_url("token")).map_err(|e| bad("token", e))?))
}

/// The scopes we ask for, as oauth2 values.
pub fn scopes() -> impl Iterator<Item = Scope> {
    SCOPES.iter().map(|s| Scope::new((*s).to_string()))
}

/// The identity platform's error body (ENTRA v2-oauth2-auth-code-flow.md, "Error response"). Unknown fields
/// (`timestamp`, `trace_id`, `correlation_id`, `error_uri`) are ignored.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct IdentityErrorResponse {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_codes: Vec<i64>,
}

impl IdentityErrorResponse {
    /// The first line of `error_description` (the rest is trace and correlation ids).
    pub fn short_description(&self) -> String {
        self.error_description
            .as_deref()
            .and_then(|d| d.lines().next())
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// `AADSTS<n>` from `error_codes`, else from the description, if any.
    pub fn aadsts(&self) -> Option<String> {
        if let Some(code) = self.error_codes.first() {
            return Some(format!("AADSTS{code}"));
        }
        let desc = self.error_description.as_deref()?;
        let start = desc.find("AADSTS")?;
        let digits: String = desc[start + 6..].chars().take_while(|c| c.is_ascii_digit()).collect();
        (!digits.is_empty()).then(|| format!("AADSTS{digits}"))
    }
}

impl std::fmt::Display for IdentityErrorResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let desc = self.short_description();
        if desc.is_empty() {
            write!(f, "{}", self.error)
        } else {
            write!(f, "{}: {desc}", self.error)
        }
    }
}

impl oauth2::ErrorResponse for IdentityErrorResponse {}

/// Maps a token-endpoint error body to an [`AuthError`]. `invalid_grant` (whatever its AADSTS number),
/// `interaction_required` and `consent_required` mean only an interactive sign-in helps.
pub fn map_error_response(resp: &IdentityErrorResponse, account: Option<&str>) -> AuthError {
    match resp.error.as_str() {
        "invalid_grant" | "interaction_required" | "consent_required" => AuthError::SignInAgain {
            account: account.map(str::to_string),
            reason: match resp.aadsts() {
                Some(n) => format!("the identity platform refused the saved sign-in: {} {n}", resp.error),
                None => format!("the identity platform refused the saved sign-in: {}", resp.error),
            },
        },
        "temporarily_unavailable" | "server_error" => {
            AuthError::Network(format!("the identity platform is temporarily unavailable ({resp})"))
        }
        _ => AuthError::Service {
            code: resp.error.clone(),
            description: resp.short_description(),
        },
    }
}

/// Maps an oauth2 request failure. Bodies are never copied into the error (they may hold tokens).
pub fn map_request_error(err: IdentityRequestError, account: Option<&str>) -> AuthError {
    match err {
        RequestTokenError::ServerResponse(resp) => map_error_response(&resp, account),
        RequestTokenError::Request(e) => AuthError::Network(describe_http_error(e)),
        RequestTokenError::Parse(e, _body) => AuthError::Service {
            code: "invalid_response".into(),
            description: format!(
                "the identity platform sent a response galleryfs cannot read ({})",
                e.path()
            ),
        },
        RequestTokenError::Other(msg) => AuthError::Service {
            code: "invalid_response".into(),
            description: msg,
        },
    }
}

fn describe_http_error(e: HttpClientError<reqwest::Error>) -> String {
    match e {
        HttpClientError::Reqwest(inner) => describe_reqwest_error(*inner),
        other => other.to_string(),
    }
}

/// A reqwest error without its URL's query string (our token URLs carry none, but be safe) and with its cause.
pub fn describe_reqwest_error(mut e: reqwest::Error) -> String {
    if let Some(url) = e.url_mut() {
        url.set_query(None);
    }
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// Tokens to store from a successful token response; `previous_refresh` is kept when the response carries no
/// new refresh token, `previous_scope` when it carries no `scope`.
pub fn tokens_from_response(
    resp: &BasicTokenResponse,
    previous_refresh: Option<&str>,
    previous_scope: Option<&str>,
) -> StoredTokens {
    let lifetime = resp.expires_in().unwrap_or(DEFAULT_EXPIRES_IN);
    let scope = match resp.scopes() {
        Some(s) if !s.is_empty() => s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "),
        _ => previous_scope.map(str::to_string).unwrap_or_else(|| SCOPES.join(" ")),
    };
    StoredTokens {
        access_token: resp.access_token().secret().clone(),
        expires_at: chrono::Utc::now()
            + chrono::Duration::from_std(lifetime).unwrap_or_else(|_| chrono::Duration::seconds(3600)),
        refresh_token: resp
            .refresh_token()
            .map(|r| r.secret().clone())
            .or_else(|| previous_refresh.map(str::to_string)),
        scope,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aadsts_from_codes_or_description() {
        let body: IdentityErrorResponse = serde_json::from_str(
            r#"{"error":"invalid_grant","error_description":"AADSTS70008: The provided authorization code or refresh token has expired due to inactivity.\r\nTrace ID: x\r\nCorrelation ID: y","error_codes":[70008],"timestamp":"2016-01-09 02:02:12Z","trace_id":"x","correlation_id":"y"}"#,
        )
        .unwrap();
        assert_eq!(body.aadsts().as_deref(), Some("AADSTS70008"));
        assert_eq!(
            body.short_description(),
            "AADSTS70008: The provided authorization code or refresh token has expired due to inactivity."
        );
        let no_codes = IdentityErrorResponse {
            error: "invalid_grant".into(),
            error_description: Some("AADSTS50173: The provided grant has expired".into()),
            error_codes: vec![],
        };
        assert_eq!(no_codes.aadsts().as_deref(), Some("AADSTS50173"));
    }

    #[test]
    fn invalid_grant_means_sign_in_again_whatever_the_number() {
        for code in [70008, 50173, 700082, 65001, 12345] {
            let body = IdentityErrorResponse {
                error: "invalid_grant".into(),
                error_description: Some(format!("AADSTS{code}: something")),
                error_codes: vec![code],
            };
            let err = map_error_response(&body, Some("work"));
            let msg = err.to_string();
            assert!(
                msg.starts_with("sign in again: galleryfs login --account work ("),
                "{msg}"
            );
            assert!(msg.contains(&format!("AADSTS{code}")), "{msg}");
        }
        let other = IdentityErrorResponse {
            error: "invalid_client".into(),
            error_description: Some("AADSTS7000218: public client flows".into()),
            error_codes: vec![7000218],
        };
        assert!(matches!(map_error_response(&other, None), AuthError::Service { .. }));
    }
}
