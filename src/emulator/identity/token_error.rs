//! The identity platform's error answers: the token-endpoint JSON body (`error`, `error_description`,
//! `error_codes`, `timestamp`, `trace_id`, `correlation_id`, `error_uri`) as ENTRA reference-error-codes.md
//! documents it, with the AADSTS numbers of that page.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// One documented identity-platform error: the OAuth `error` string, the AADSTS number and its description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    pub status: StatusCode,
    pub error: &'static str,
    pub aadsts: u32,
    pub description: String,
}

impl TokenError {
    fn new(error: &'static str, aadsts: u32, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error,
            aadsts,
            description: description.into(),
        }
    }

    pub fn missing_parameter(name: &str) -> Self {
        Self::new(
            "invalid_request",
            900144,
            format!("The request body must contain the following parameter: '{name}'."),
        )
    }

    pub fn invalid_tenant(tenant: &str) -> Self {
        Self::new(
            "invalid_request",
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into \
                 the correct cloud."
            ),
        )
    }

    pub fn unknown_client(client_id: &str) -> Self {
        Self::new(
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory. This can happen if the \
                 application has not been installed by the administrator of the tenant or consented to by any user \
                 in the tenant."
            ),
        )
    }

    pub fn public_client_with_secret() -> Self {
        let mut e = Self::new(
            "invalid_client",
            700025,
            "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
        );
        e.status = StatusCode::UNAUTHORIZED;
        e
    }

    pub fn client_secret_missing() -> Self {
        let mut e = Self::new(
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
        e.status = StatusCode::UNAUTHORIZED;
        e
    }

    pub fn client_secret_wrong() -> Self {
        let mut e = Self::new(
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value.",
        );
        e.status = StatusCode::UNAUTHORIZED;
        e
    }

    pub fn unsupported_grant_type(grant_type: &str) -> Self {
        Self::new(
            "unsupported_grant_type",
            70003,
            format!("The provided value for the input parameter 'grant_type' is not valid: '{grant_type}'."),
        )
    }

    pub fn invalid_scope(scope: &str) -> Self {
        Self::new(
            "invalid_scope",
            70011,
            format!(
                "The provided value for the input parameter 'scope' is not valid. The scope '{scope}' is not valid."
            ),
        )
    }

    pub fn authorization_pending() -> Self {
        Self::new(
            "authorization_pending",
            70016,
            "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
        )
    }

    pub fn slow_down() -> Self {
        Self::new(
            "slow_down",
            70016,
            "OAuth 2.0 device flow error. The client polled faster than the interval; add 5 seconds to it.",
        )
    }

    pub fn authorization_declined() -> Self {
        Self::new(
            "authorization_declined",
            65004,
            "UserDeclinedConsent - User declined to consent to access the app.",
        )
    }

    pub fn bad_verification_code() -> Self {
        Self::new(
            "bad_verification_code",
            70018,
            "The provided value for the input parameter 'device_code' is not valid.",
        )
    }

    pub fn expired_device_code() -> Self {
        Self::new("expired_token", 70019, "Verification code expired.")
    }

    pub fn device_code_used() -> Self {
        Self::new(
            "invalid_grant",
            70000,
            "The provided value for the input parameter 'device_code' is not valid: it was already redeemed.",
        )
    }

    pub fn bad_auth_code() -> Self {
        Self::new(
            "invalid_grant",
            70000,
            "The provided authorization code or refresh token has expired due to inactivity or is invalid.",
        )
    }

    pub fn auth_code_redeemed() -> Self {
        Self::new(
            "invalid_grant",
            54005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing \
             refresh token.",
        )
    }

    pub fn auth_code_expired() -> Self {
        Self::new(
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity.",
        )
    }

    pub fn redirect_uri_mismatch() -> Self {
        Self::new(
            "invalid_grant",
            50011,
            "The redirect URI specified in the request does not match the redirect URI of the authorization request.",
        )
    }

    pub fn pkce_mismatch() -> Self {
        Self::new(
            "invalid_grant",
            501481,
            "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
        )
    }

    pub fn bad_refresh_token() -> Self {
        Self::new(
            "invalid_grant",
            9002313,
            "Invalid request. Request is malformed or invalid: the refresh token is not valid.",
        )
    }

    pub fn refresh_token_revoked() -> Self {
        Self::new(
            "invalid_grant",
            50173,
            "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might \
             have changed or reset their password.",
        )
    }

    pub fn refresh_token_inactive() -> Self {
        Self::new(
            "invalid_grant",
            700082,
            "The refresh token has expired due to inactivity. The token was issued a long time ago and was \
             inactive for longer than its lifetime.",
        )
    }

    pub fn scope_not_consented(scope: &str) -> Self {
        Self::new(
            "invalid_grant",
            65001,
            format!("The user or administrator has not consented to use the application for scope '{scope}'."),
        )
    }

    /// The documented JSON body.
    pub fn body(&self) -> serde_json::Value {
        let now = chrono::Utc::now();
        let timestamp = now.format("%Y-%m-%d %H:%M:%SZ").to_string();
        let trace_id = uuid::Uuid::new_v4().to_string();
        let correlation_id = uuid::Uuid::new_v4().to_string();
        json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {}",
                self.aadsts,
                self.description,
                now.format("%Y-%m-%d %H:%M:%S%.3fZ")
            ),
            "error_codes": [self.aadsts],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.aadsts),
        })
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        (
            self.status,
            [
                (header::CONTENT_TYPE, "application/json; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store, no-cache"),
                (header::PRAGMA, "no-cache"),
            ],
            body,
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_every_documented_field() {
        let body = TokenError::authorization_pending().body();
        for field in [
            "error",
            "error_description",
            "error_codes",
            "timestamp",
            "trace_id",
            "correlation_id",
            "error_uri",
        ] {
            assert!(body.get(field).is_some(), "missing {field}");
        }
        assert_eq!(body["error"], "authorization_pending");
        assert_eq!(body["error_codes"][0], 70016);
        assert!(body["error_description"].as_str().unwrap().starts_with("AADSTS70016: "));
    }
}
