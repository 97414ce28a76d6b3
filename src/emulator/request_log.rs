//! Emulator request log: every request a client made (method, path without secrets, status, whether it carried
//! an Authorization header, time), for tests that check what a client sent.

use axum::Router;
use std::sync::Arc;

/// One request as the emulator saw it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LoggedRequest {
    /// Milliseconds since the emulator started.
    pub at_ms: u64,
    /// `api` or `content`.
    pub host: String,
    pub method: String,
    /// Path and query with pre-authentication tokens, codes and secrets redacted.
    pub path: String,
    pub status: u16,
    pub had_authorization: bool,
    /// `Range` or `Content-Range` header, when present.
    pub range: Option<String>,
}

/// The log of requests. (Placeholder: owned by the request-log work.)
#[derive(Debug, Default)]
pub struct RequestLog {}

impl RequestLog {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn entries(&self) -> Vec<LoggedRequest> {
        Vec::new()
    }
}

/// Wraps `router` so every request is logged. `host` names the listener (`api`, `content`).
pub fn layer(router: Router, log: Arc<RequestLog>, host: &'static str) -> Router {
    let _ = (log, host);
    router
}

/// Control routes, mounted by the server at `/_emulator/log`.
pub fn control_router(log: Arc<RequestLog>) -> Router {
    let _ = log;
    Router::new()
}
