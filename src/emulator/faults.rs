//! Emulator fault injection: 429/503 with Retry-After, connection reset mid-body, truncated bodies, latency and
//! hangs, chosen by rules that tests set through the control API.

use axum::Router;
use std::sync::Arc;

/// The fault rules in force. (Placeholder: owned by the faults work.)
#[derive(Debug, Default)]
pub struct Faults {}

impl Faults {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
}

/// Wraps `router` so its requests are subject to the fault rules. `host` names the listener (`api`, `content`).
pub fn layer(router: Router, faults: Arc<Faults>, host: &'static str) -> Router {
    let _ = (faults, host);
    router
}

/// Control routes, mounted by the server at `/_emulator/faults`.
pub fn control_router(faults: Arc<Faults>) -> Router {
    let _ = faults;
    Router::new()
}
