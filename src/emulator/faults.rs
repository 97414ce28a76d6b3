//! Emulator fault injection: 429/503 with Retry-After, 500/502/504, connection reset mid-body, truncated bodies,
//! latency, answers delivered late, and hangs, chosen by rules that tests set through the control API (or
//! [`Faults`] methods in-process).
//!
//! A rule = kind + how often (`count`: the next N matching requests; `probability`: each matching request with
//! chance p, from a seeded generator so runs repeat) + filters (method, path substring, host `api`/`content`).
//! Rules are tried in the order they were added; the first that matches and fires applies. Every 429/503 records
//! a throttle window `[start, start + Retry-After)` so tests can check that no request arrived inside it (times
//! are milliseconds of [`crate::emulator::request_log::emulator_clock_ms`], the clock of the request log).

use crate::emulator::media::raster::SplitMix64;
use crate::emulator::request_log::emulator_clock_ms;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// What a rule does to a request.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer `status` (429, 503, 500, 502, 504, …) with a Graph error body instead of the real answer.
    /// `retry_after_secs`: the `Retry-After` header; absent → 1 s for 429/503 and none otherwise; 0 → no header.
    Status {
        status: u16,
        #[serde(default)]
        retry_after_secs: Option<u64>,
    },
    /// Send the first `after_bytes` bytes of the real body (fewer than it has), then drop the connection.
    Reset { after_bytes: u64 },
    /// Declare the full `Content-Length`, send only `after_bytes` bytes, then close.
    Truncate { after_bytes: u64 },
    /// Wait `ms` milliseconds, then answer normally.
    Latency { ms: u64 },
    /// Answer normally, but deliver the answer `ms` milliseconds after it was made (a slow link: what it says
    /// may be out of date when it arrives).
    SlowAnswer { ms: u64 },
    /// Never answer until the rules are cleared; then answer normally.
    Hang,
}

/// Which listener a rule applies to.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FaultHost {
    Api,
    Content,
    #[default]
    Any,
}

/// One fault rule, as set by a test.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FaultRule {
    /// Assigned when added.
    #[serde(default)]
    pub id: u64,
    #[serde(flatten)]
    pub kind: FaultKind,
    /// Fire for the next N matching requests, then the rule is removed.
    #[serde(default)]
    pub count: Option<u64>,
    /// Fire for each matching request with this chance (seeded generator).
    #[serde(default)]
    pub probability: Option<f64>,
    /// Only requests with this method (case-insensitive).
    #[serde(default)]
    pub method: Option<String>,
    /// Only requests whose path and query contain this.
    #[serde(default)]
    pub path_contains: Option<String>,
    #[serde(default)]
    pub host: FaultHost,
}

impl FaultRule {
    /// A rule of `kind` firing for every matching request until removed.
    pub fn new(kind: FaultKind) -> Self {
        Self {
            id: 0,
            kind,
            count: None,
            probability: None,
            method: None,
            path_contains: None,
            host: FaultHost::Any,
        }
    }

    pub fn count(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }

    pub fn probability(mut self, p: f64) -> Self {
        self.probability = Some(p);
        self
    }

    pub fn method(mut self, m: &str) -> Self {
        self.method = Some(m.to_string());
        self
    }

    pub fn path_contains(mut self, s: &str) -> Self {
        self.path_contains = Some(s.to_string());
        self
    }

    pub fn host(mut self, h: FaultHost) -> Self {
        self.host = h;
        self
    }

    fn matches(&self, method: &Method, path: &str, host: &str) -> bool {
        let host_ok = match self.host {
            FaultHost::Any => true,
            FaultHost::Api => host == "api",
            FaultHost::Content => host == "content",
        };
        host_ok
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
            && self.path_contains.as_deref().is_none_or(|s| path.contains(s))
    }
}

/// A period during which a client was told (429/503 + Retry-After) to send nothing.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ThrottleWindow {
    pub host: String,
    pub status: u16,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// What `GET /_emulator/faults` shows.
#[derive(Clone, Debug, Serialize)]
pub struct FaultsReport {
    pub seed: u64,
    pub latency_ms: u64,
    pub rules: Vec<FaultRule>,
    /// Faults injected so far, by kind (`status_429`, `reset`, `truncate`, `latency`, `hang`, …).
    pub counts: BTreeMap<String, u64>,
    pub throttle_windows: Vec<ThrottleWindow>,
    /// Requests (outside the controls) that arrived while a throttle window of their host was open.
    pub requests_during_throttle: u64,
}

#[derive(Debug)]
struct FaultState {
    seed: u64,
    rng: SplitMix64Debug,
    latency_ms: u64,
    next_id: u64,
    rules: Vec<FaultRule>,
    counts: BTreeMap<String, u64>,
    windows: Vec<ThrottleWindow>,
    requests_during_throttle: u64,
}

/// The seeded generator (a wrapper so the state can derive Debug).
struct SplitMix64Debug(SplitMix64);

impl std::fmt::Debug for SplitMix64Debug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SplitMix64")
    }
}

impl FaultState {
    fn new(seed: u64) -> Self {
        Self {
            seed,
            rng: SplitMix64Debug(SplitMix64::new(seed)),
            latency_ms: 0,
            next_id: 1,
            rules: Vec::new(),
            counts: BTreeMap::new(),
            windows: Vec::new(),
            requests_during_throttle: 0,
        }
    }
}

/// The fault rules in force.
#[derive(Debug)]
pub struct Faults {
    state: Mutex<FaultState>,
    /// Bumped whenever rules are cleared: hung requests wake up and go on.
    release: tokio::sync::watch::Sender<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        emulator_clock_ms();
        Self {
            state: Mutex::new(FaultState::new(0)),
            release: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Faults {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Adds a rule; returns its id.
    pub fn add_rule(&self, mut rule: FaultRule) -> u64 {
        let mut s = self.state.lock();
        rule.id = s.next_id;
        s.next_id += 1;
        let id = rule.id;
        s.rules.push(rule);
        id
    }

    /// Removes one rule; false when there was none with this id.
    pub fn remove_rule(&self, id: u64) -> bool {
        let removed = {
            let mut s = self.state.lock();
            let before = s.rules.len();
            s.rules.retain(|r| r.id != id);
            s.rules.len() != before
        };
        if removed {
            self.release.send_modify(|g| *g += 1);
        }
        removed
    }

    /// Removes every rule and releases hung requests (counts, windows and latency stay).
    pub fn clear_rules(&self) {
        self.state.lock().rules.clear();
        self.release.send_modify(|g| *g += 1);
    }

    /// Back to the start: no rules, no latency, counts and windows emptied, generator reseeded.
    pub fn reset(&self) {
        {
            let mut s = self.state.lock();
            let seed = s.seed;
            *s = FaultState::new(seed);
        }
        self.release.send_modify(|g| *g += 1);
    }

    /// Reseeds the generator deciding probabilistic rules.
    pub fn set_seed(&self, seed: u64) {
        let mut s = self.state.lock();
        s.seed = seed;
        s.rng = SplitMix64Debug(SplitMix64::new(seed));
    }

    /// Latency added to every request (benchmarks).
    pub fn set_global_latency(&self, ms: u64) {
        self.state.lock().latency_ms = ms;
    }

    pub fn rules(&self) -> Vec<FaultRule> {
        self.state.lock().rules.clone()
    }

    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.state.lock().counts.clone()
    }

    pub fn throttle_windows(&self) -> Vec<ThrottleWindow> {
        self.state.lock().windows.clone()
    }

    pub fn report(&self) -> FaultsReport {
        let s = self.state.lock();
        FaultsReport {
            seed: s.seed,
            latency_ms: s.latency_ms,
            rules: s.rules.clone(),
            counts: s.counts.clone(),
            throttle_windows: s.windows.clone(),
            requests_during_throttle: s.requests_during_throttle,
        }
    }

    /// Decides the fault for one request (consuming counts) and notes requests inside throttle windows.
    fn decide(&self, method: &Method, path: &str, host: &str) -> (u64, Option<FaultKind>) {
        let now = emulator_clock_ms();
        let mut s = self.state.lock();
        if s.windows
            .iter()
            .any(|w| w.host == host && w.start_ms <= now && now < w.end_ms)
        {
            s.requests_during_throttle += 1;
        }
        let latency = s.latency_ms;
        let mut chosen = None;
        for i in 0..s.rules.len() {
            if !s.rules[i].matches(method, path, host) {
                continue;
            }
            if let Some(p) = s.rules[i].probability {
                let draw = (s.rng.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                if draw >= p {
                    continue;
                }
            }
            chosen = Some(s.rules[i].kind.clone());
            if let Some(n) = s.rules[i].count.as_mut() {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    s.rules.remove(i);
                }
            }
            break;
        }
        (latency, chosen)
    }

    fn count(&self, key: &str) {
        *self.state.lock().counts.entry(key.to_string()).or_default() += 1;
    }

    fn record_window(&self, host: &str, status: u16, secs: u64) {
        let start_ms = emulator_clock_ms();
        self.state.lock().windows.push(ThrottleWindow {
            host: host.to_string(),
            status,
            start_ms,
            end_ms: start_ms + secs * 1000,
        });
    }

    async fn hang_until_released(&self) {
        let mut rx = self.release.subscribe();
        let start = *rx.borrow_and_update();
        while *rx.borrow_and_update() == start {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Wraps `router` so its requests are subject to the fault rules. `host` names the listener (`api`, `content`).
/// Paths under `/_emulator/` are never faulted.
pub fn layer(router: Router, faults: Arc<Faults>, host: &'static str) -> Router {
    router.layer(axum::middleware::from_fn_with_state((faults, host), inject))
}

async fn inject(State((faults, host)): State<(Arc<Faults>, &'static str)>, req: Request, next: Next) -> Response {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    if path.starts_with("/_emulator/") || path == "/_emulator" {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let (latency, fault) = faults.decide(&method, &path, host);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    match fault {
        None => next.run(req).await,
        Some(FaultKind::Latency { ms }) => {
            faults.count("latency");
            tokio::time::sleep(Duration::from_millis(ms)).await;
            next.run(req).await
        }
        Some(FaultKind::SlowAnswer { ms }) => {
            faults.count("slow_answer");
            let response = next.run(req).await;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            response
        }
        Some(FaultKind::Hang) => {
            faults.count("hang");
            tracing::debug!(target: "emulator::faults", %method, host, "request hung");
            faults.hang_until_released().await;
            next.run(req).await
        }
        Some(FaultKind::Status {
            status,
            retry_after_secs,
        }) => {
            faults.count(&format!("status_{status}"));
            // The request is read before it is refused, as a service does: answering while a client still sends
            // an upload fragment makes it see a broken pipe instead of the status (and its Retry-After).
            let _ = axum::body::to_bytes(req.into_body(), usize::MAX).await;
            let throttling = status == 429 || status == 503;
            let retry_after = match retry_after_secs {
                Some(0) => None,
                Some(s) => Some(s),
                None if throttling => Some(1),
                None => None,
            };
            if let (true, Some(secs)) = (throttling, retry_after) {
                faults.record_window(host, status, secs);
            }
            tracing::debug!(target: "emulator::faults", %method, host, status, "status fault injected");
            if path.contains("/oauth2/v2.0/") {
                identity_status_response(status, retry_after)
            } else {
                status_response(status, retry_after)
            }
        }
        Some(FaultKind::Reset { after_bytes }) => {
            let response = next.run(req).await;
            cut_body(&faults, response, after_bytes, true, method == Method::HEAD)
        }
        Some(FaultKind::Truncate { after_bytes }) => {
            let response = next.run(req).await;
            cut_body(&faults, response, after_bytes, false, method == Method::HEAD)
        }
    }
}

/// A Graph error answer for an injected status (graph-api.md §10).
pub fn status_response(status: u16, retry_after_secs: Option<u64>) -> Response {
    let (code, message) = match status {
        429 => ("activityLimitReached", "The request has been throttled."),
        503 => (
            "serviceNotAvailable",
            "The service is temporarily unavailable. Try again later.",
        ),
        507 => ("quotaLimitReached", "Insufficient Space Available"),
        _ => ("generalException", "An unspecified error has occurred."),
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut inner = serde_json::json!({
        "date": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
        "request-id": request_id,
        "client-request-id": request_id,
    });
    if status == 429 || status == 503 {
        inner["code"] = "throttledRequest".into();
    }
    let body = serde_json::json!({"error": {"code": code, "message": message, "innerError": inner}});
    let mut response = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Some(secs) = retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// The identity platform's answer for an injected status on its endpoints: its own error body
/// (reference-error-codes.md: `temporarily_unavailable`, `server_error`), not Graph's.
pub fn identity_status_response(status: u16, retry_after_secs: Option<u64>) -> Response {
    use crate::emulator::identity::token_error::TokenError;
    let (error, aadsts, description) = match status {
        429 => (
            "temporarily_unavailable",
            90055,
            "TenantThrottlingError - There are too many incoming requests.",
        ),
        503 => (
            "temporarily_unavailable",
            90006,
            "ExternalServerRetryableError - The service is temporarily unavailable.",
        ),
        _ => (
            "server_error",
            50000,
            "TokenIssuanceError - There's an issue with the sign-in service.",
        ),
    };
    let mut response = TokenError {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        error,
        aadsts,
        description: description.to_string(),
    }
    .into_response();
    if let Some(secs) = retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// Sends only the first `after_bytes` bytes of `response`'s body (fewer than it has), declaring its full
/// length; then `reset` ends the stream with an error (hyper drops the connection) or else just ends it
/// (the client sees a body shorter than Content-Length).
fn cut_body(faults: &Faults, response: Response, after_bytes: u64, reset: bool, head: bool) -> Response {
    let (mut parts, body) = response.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| axum::body::HttpBody::size_hint(&body).exact());
    if head || declared == Some(0) {
        return Response::from_parts(parts, body);
    }
    faults.count(if reset { "reset" } else { "truncate" });
    // Always leave at least one byte unsent so the fault is observable.
    let limit = match declared {
        Some(len) => after_bytes.min(len - 1),
        None => after_bytes,
    };
    if let Some(len) = declared {
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    // Without a declared length a clean early end would look complete: end with an error instead.
    let error_at_end = reset || declared.is_none();
    let stream = futures::stream::unfold(
        (body.into_data_stream(), limit, false),
        move |(mut inner, remaining, finished)| async move {
            if finished {
                return None;
            }
            if remaining == 0 {
                // Let hyper flush what was sent (it writes when the body is pending) before the cut.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return if error_at_end {
                    let err = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected connection reset");
                    Some((Err(err), (inner, 0, true)))
                } else {
                    None
                };
            }
            match inner.next().await {
                Some(Ok(chunk)) => {
                    let take = (chunk.len() as u64).min(remaining) as usize;
                    let piece: Bytes = chunk.slice(..take);
                    Some((Ok(piece), (inner, remaining - take as u64, false)))
                }
                Some(Err(e)) => Some((Err(std::io::Error::other(e)), (inner, 0, true))),
                None => None,
            }
        },
    );
    tracing::debug!(target: "emulator::faults", reset, "body cut");
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Control routes, mounted by the server at `/_emulator/faults`:
/// `GET /` → [`FaultsReport`]; `DELETE /` → [`Faults::reset`]; `POST /rules` (a [`FaultRule`] as JSON, e.g.
/// `{"kind":"status","status":429,"retry_after_secs":2,"count":3,"path_contains":"/children","host":"api"}`)
/// → `{"id"}`; `DELETE /rules` clears them (releasing hangs); `DELETE /rules/{id}`;
/// `POST /seed` `{"seed"}`; `POST /latency` `{"ms"}`.
pub fn control_router(faults: Arc<Faults>) -> Router {
    Router::new()
        .route("/", get(control_report).delete(control_reset))
        .route("/rules", post(control_add).delete(control_clear))
        .route("/rules/{id}", delete(control_remove))
        .route("/seed", post(control_seed))
        .route("/latency", post(control_latency))
        .with_state(faults)
}

async fn control_report(State(faults): State<Arc<Faults>>) -> Json<FaultsReport> {
    Json(faults.report())
}

async fn control_reset(State(faults): State<Arc<Faults>>) -> StatusCode {
    faults.reset();
    StatusCode::NO_CONTENT
}

async fn control_add(State(faults): State<Arc<Faults>>, Json(rule): Json<FaultRule>) -> Response {
    if let Some(p) = rule.probability {
        if !(0.0..=1.0).contains(&p) {
            return (StatusCode::BAD_REQUEST, "probability must be within 0..=1").into_response();
        }
    }
    let id = faults.add_rule(rule);
    (StatusCode::CREATED, Json(serde_json::json!({ "id": id }))).into_response()
}

async fn control_clear(State(faults): State<Arc<Faults>>) -> StatusCode {
    faults.clear_rules();
    StatusCode::NO_CONTENT
}

async fn control_remove(State(faults): State<Arc<Faults>>, Path(id): Path<u64>) -> StatusCode {
    if faults.remove_rule(id) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

#[derive(Deserialize)]
struct SeedBody {
    seed: u64,
}

async fn control_seed(State(faults): State<Arc<Faults>>, Json(body): Json<SeedBody>) -> StatusCode {
    faults.set_seed(body.seed);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct LatencyBody {
    ms: u64,
}

async fn control_latency(State(faults): State<Arc<Faults>>, Json(body): Json<LatencyBody>) -> StatusCode {
    faults.set_global_latency(body.ms);
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_rules_fire_n_times_then_vanish() {
        let f = Faults::default();
        f.add_rule(
            FaultRule::new(FaultKind::Status {
                status: 503,
                retry_after_secs: None,
            })
            .count(2)
            .method("get")
            .path_contains("/children")
            .host(FaultHost::Api),
        );
        let get = Method::GET;
        assert!(f.decide(&get, "/v1.0/me/drive/root/children", "content").1.is_none());
        assert!(f
            .decide(&Method::POST, "/v1.0/me/drive/root/children", "api")
            .1
            .is_none());
        assert!(f.decide(&get, "/v1.0/me/drive", "api").1.is_none());
        assert!(f.decide(&get, "/v1.0/me/drive/root/children", "api").1.is_some());
        assert!(f.decide(&get, "/v1.0/me/drive/root/children", "api").1.is_some());
        assert!(f.decide(&get, "/v1.0/me/drive/root/children", "api").1.is_none());
        assert!(f.rules().is_empty());
    }

    #[test]
    fn probability_is_reproducible_with_a_seed() {
        let draws = |seed| {
            let f = Faults::default();
            f.set_seed(seed);
            f.add_rule(FaultRule::new(FaultKind::Latency { ms: 1 }).probability(0.3));
            (0..200)
                .map(|_| f.decide(&Method::GET, "/x", "api").1.is_some())
                .collect::<Vec<_>>()
        };
        let a = draws(5);
        assert_eq!(a, draws(5));
        assert_ne!(a, draws(6));
        let fired = a.iter().filter(|x| **x).count();
        assert!((30..90).contains(&fired), "{fired} of 200 at p=0.3");
    }

    #[test]
    fn rules_deserialise_from_the_documented_json() {
        let rule: FaultRule = serde_json::from_str(
            r#"{"kind":"status","status":429,"retry_after_secs":2,"count":3,"path_contains":"/children","host":"api"}"#,
        )
        .unwrap();
        assert_eq!(
            rule.kind,
            FaultKind::Status {
                status: 429,
                retry_after_secs: Some(2)
            }
        );
        assert_eq!((rule.count, rule.host), (Some(3), FaultHost::Api));
        let hang: FaultRule = serde_json::from_str(r#"{"kind":"hang"}"#).unwrap();
        assert_eq!(hang.kind, FaultKind::Hang);
    }
}
