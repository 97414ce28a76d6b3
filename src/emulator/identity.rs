//! Emulator identity platform: `/{tenant}/oauth2/v2.0/{devicecode,token,authorize}` as the Microsoft identity
//! platform documents them, the access and refresh tokens it issued, and the controls tests use (approve or
//! decline a device code, expire or revoke tokens).

use axum::response::{IntoResponse, Response};
use axum::Router;
use std::sync::Arc;

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

/// The emulated identity platform. (Placeholder: owned by the identity work.)
#[derive(Debug)]
pub struct Identity {
    pub config: IdentityConfig,
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
        (axum::http::StatusCode::UNAUTHORIZED, "unauthenticated").into_response()
    }
}

impl Identity {
    pub fn new(config: IdentityConfig) -> Arc<Self> {
        Arc::new(Self { config })
    }

    /// `/{tenant}/oauth2/v2.0/{devicecode,token,authorize}` and the device-login page.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
    }

    /// Control routes, mounted by the server at `/_emulator/identity`.
    pub fn control_router(self: &Arc<Self>) -> Router {
        Router::new()
    }

    /// Checks the `Authorization` header value of a Graph request.
    pub fn check_bearer(&self, authorization: Option<&str>) -> Result<(), BearerError> {
        match authorization {
            None => Err(BearerError::Missing),
            Some(_) => Ok(()),
        }
    }

    /// Issues a valid access token without a sign-in flow (for tests).
    pub fn issue_test_token(&self) -> String {
        "test-token".into()
    }
}
