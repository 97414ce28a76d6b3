//! The one request pipeline every Graph, download and upload call goes through: the reqwest client (rustls with
//! the system trust store, which honours `SSL_CERT_FILE`/`SSL_CERT_DIR` through rustls-native-certs; redirects
//! off; ISV User-Agent; connect and idle timeouts), the bearer token (Graph hosts only), the shared throttle gate
//! (429/503/509 pause *every* request of the client until `Retry-After`), exponential backoff with full jitter
//! on 500/502/504 and connection errors, and one refresh-and-retry on 401. Also [`redact`] for log lines.
//!
//! Shutdown: [`Pipeline::close`] (before the runtime that drives the connections is dropped) makes every request
//! that has not started fail at once, and a request whose connection breaks from then on fail without a retry;
//! both are logged at debug, not as failures: work cut short by a shutdown is neither retried nor reported.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode};
use tokio::time::Instant;
use url::Url;

use super::auth::TokenSource;
use super::endpoints::is_loopback_url;
use super::error::{parse_retry_after, GraphError};

/// `ISV|company|product/version`, the form Microsoft's throttling guidance asks for.
pub const USER_AGENT: &str = concat!("ISV|galleryfs|galleryfs/", env!("CARGO_PKG_VERSION"));

/// How the pipeline retries. Defaults suit the real service; tests shrink the delays.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Total attempts for 500/502/504 and connection errors/timeouts (1 = no retry).
    pub max_attempts: u32,
    /// First backoff ceiling; doubles per attempt (full jitter: a random wait in `0..=ceiling`).
    pub base_delay: Duration,
    /// Largest backoff ceiling.
    pub max_delay: Duration,
    /// Pause after 429/503/509 without `Retry-After` (doubles on repeats, capped by `max_throttle_wait`).
    pub default_throttle: Duration,
    /// How many throttling answers one request sits out before failing with `Throttled`.
    pub max_throttle_retries: u32,
    /// A `Retry-After` longer than this fails the request at once with `Throttled` (the gate still closes).
    pub max_throttle_wait: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout for metadata calls (not for streamed downloads and uploads).
    pub request_timeout: Duration,
    /// Idle timeout: a read that makes no progress for this long fails (applies to streamed bodies too).
    pub idle_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            default_throttle: Duration::from_secs(10),
            max_throttle_retries: 8,
            max_throttle_wait: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Full-jitter exponential backoff for the `attempt`-th failure (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max_delay);
        let ms = ceiling.as_millis() as u64;
        Duration::from_millis(if ms == 0 { 0 } else { rand::rng().random_range(0..=ms) })
    }
}

/// The longest the gate stays closed for one throttling answer: `Instant + Duration` and `DateTime + TimeDelta`
/// panic on overflow, and a `Retry-After` of 10^13 seconds is hostile, not advice.
pub const MAX_GATE_PAUSE: Duration = Duration::from_secs(24 * 3600);

/// Closed while the service has asked us to back off; every request waits on it.
#[derive(Debug, Default)]
pub struct ThrottleGate {
    until: Mutex<Option<(Instant, DateTime<Utc>)>>,
    /// Throttling answers received so far ([`ThrottleGate::answers`]).
    answers: std::sync::atomic::AtomicU64,
}

impl ThrottleGate {
    /// Closes the gate for at least `wait` from now (never shortens an existing pause). A longer wait than
    /// [`MAX_GATE_PAUSE`] (a hostile `Retry-After`) is cut to it.
    pub fn pause_for(&self, wait: Duration) {
        self.answers.fetch_add(1, Ordering::Relaxed);
        let wait = wait.min(MAX_GATE_PAUSE);
        let at = Instant::now() + wait;
        let wall = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_else(|_| chrono::Duration::zero());
        let mut g = self.until.lock();
        if g.is_none_or(|(cur, _)| cur < at) {
            *g = Some((at, wall));
        }
    }

    /// How many throttling answers (429/503/509) closed the gate so far: callers that run requests in parallel
    /// watch it to narrow their parallelism.
    pub fn answers(&self) -> u64 {
        self.answers.load(Ordering::Relaxed)
    }

    /// Time left before the gate opens.
    pub fn remaining(&self) -> Duration {
        match *self.until.lock() {
            Some((at, _)) => at.saturating_duration_since(Instant::now()),
            None => Duration::ZERO,
        }
    }

    /// When the current pause ends, if one is in force.
    pub fn throttled_until(&self) -> Option<DateTime<Utc>> {
        let g = self.until.lock();
        match *g {
            Some((at, wall)) if at > Instant::now() => Some(wall),
            _ => None,
        }
    }

    /// Waits until the gate is open (re-checking: the pause may be extended while we sleep).
    pub async fn wait(&self) {
        loop {
            let at = match *self.until.lock() {
                Some((at, _)) if at > Instant::now() => at,
                _ => return,
            };
            tokio::time::sleep_until(at).await;
        }
    }
}

/// Who a URL belongs to: Graph (bearer token, full path in logs) or a pre-authenticated download/upload/thumbnail
/// host (never a token; only scheme and host in logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UrlKind {
    Graph,
    PreAuthenticated,
}

/// Logs-safe form of a URL: scheme+host(+port)+path for Graph URLs, scheme+host(+port) only for the rest.
/// Query strings (tokens, skiptokens, signatures) are always dropped.
pub fn redact(url: &str, kind: UrlKind) -> String {
    match Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("?");
            let origin = match u.port() {
                Some(p) => format!("{}://{}:{}", u.scheme(), host, p),
                None => format!("{}://{}", u.scheme(), host),
            };
            match kind {
                UrlKind::Graph => format!("{origin}{}", u.path()),
                UrlKind::PreAuthenticated => format!("{origin}/…"),
            }
        }
        Err(_) => "<unparsable url>".into(),
    }
}

/// Whole-request timeout (metadata) or idle-only (streamed bodies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    Whole,
    IdleOnly,
}

/// One request, re-sendable as often as the policy requires.
#[derive(Clone, Debug)]
pub struct ApiRequest {
    pub method: Method,
    pub url: String,
    pub kind: UrlKind,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<Bytes>,
    pub timeout: Timeout,
}

impl ApiRequest {
    pub fn new(method: Method, url: impl Into<String>, kind: UrlKind) -> Self {
        Self {
            method,
            url: url.into(),
            kind,
            headers: Vec::new(),
            body: None,
            timeout: Timeout::Whole,
        }
    }
    pub fn header(mut self, name: HeaderName, value: &str) -> Result<Self, GraphError> {
        let v = HeaderValue::from_str(value).map_err(|_| GraphError::Invalid(format!("bad {name} header value")))?;
        self.headers.push((name, v));
        Ok(self)
    }
    pub fn json_body(mut self, value: &serde_json::Value) -> Self {
        self.headers.push((
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ));
        self.body = Some(Bytes::from(value.to_string()));
        self
    }
    pub fn bytes_body(mut self, body: Bytes, content_type: &'static str) -> Self {
        self.headers
            .push((reqwest::header::CONTENT_TYPE, HeaderValue::from_static(content_type)));
        self.body = Some(body);
        self
    }
    pub fn streaming(mut self) -> Self {
        self.timeout = Timeout::IdleOnly;
        self
    }
}

/// A fully read response.
#[derive(Debug)]
pub struct FullResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The shared pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<PipelineInner>,
}

struct PipelineInner {
    client: reqwest::Client,
    tokens: Arc<dyn TokenSource>,
    policy: RetryPolicy,
    gate: ThrottleGate,
    /// `scheme://host:port` of the Graph base URL: the only origin that ever sees the bearer token.
    graph_origin: url::Origin,
    /// Set by [`Pipeline::close`].
    closed: AtomicBool,
}

/// The reason given for requests ended by [`Pipeline::close`].
pub const CLOSED_REASON: &str = "galleryfs is shutting down";

enum Outcome {
    Done(Response),
    Retry(Duration),
}

impl Pipeline {
    pub fn new(graph_base: &str, tokens: Arc<dyn TokenSource>, policy: RetryPolicy) -> Result<Self, GraphError> {
        let base = Url::parse(graph_base).map_err(|e| GraphError::Invalid(format!("graph URL: {e}")))?;
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(policy.connect_timeout)
            .read_timeout(policy.idle_timeout);
        if is_loopback_url(&base) {
            // A local emulator: an http_proxy from the environment must not capture loopback traffic.
            builder = builder.no_proxy();
        }
        let client = builder
            .build()
            .map_err(|e| GraphError::Invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(PipelineInner {
                client,
                tokens,
                policy,
                gate: ThrottleGate::default(),
                graph_origin: base.origin(),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// The process is shutting down: requests not yet started fail at once, and failures from now on are
    /// neither retried nor logged as warnings (see the module note). Call before dropping the runtime.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
    }

    fn closed(&self, req: &ApiRequest) -> bool {
        let closed = self.inner.closed.load(Ordering::SeqCst);
        if closed {
            tracing::debug!(method = %req.method, url = %redact(&req.url, req.kind), "request ended by shutdown");
        }
        closed
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.inner.policy
    }

    /// When the service-imposed pause ends, if one is in force (for `status`).
    pub fn throttled_until(&self) -> Option<DateTime<Utc>> {
        self.inner.gate.throttled_until()
    }

    pub fn gate(&self) -> &ThrottleGate {
        &self.inner.gate
    }

    /// Sends `req` and reads its whole body, retrying per policy (including body-read failures).
    /// Non-success statuses (≥ 400) become `GraphError`; 2xx and 3xx are returned.
    pub async fn send_full(&self, req: &ApiRequest) -> Result<FullResponse, GraphError> {
        let mut read_failures = 0;
        loop {
            let resp = self.send(req).await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            match resp.bytes().await {
                Ok(body) => return Ok(FullResponse { status, headers, body }),
                Err(e) => {
                    read_failures += 1;
                    if read_failures >= self.inner.policy.max_attempts || self.closed(req) {
                        return Err(GraphError::Network(describe_reqwest_error(&e)));
                    }
                    let wait = self.inner.policy.backoff(read_failures);
                    tracing::warn!(method = %req.method, url = %redact(&req.url, req.kind), wait_ms = wait.as_millis() as u64,
                        "response body interrupted; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Sends `req`, retrying per policy; returns the response with its body unread (for streaming).
    /// Statuses ≥ 400 become `GraphError` (after reading the error body).
    pub async fn send(&self, req: &ApiRequest) -> Result<Response, GraphError> {
        let policy = &self.inner.policy;
        let mut failures = 0u32;
        let mut throttles = 0u32;
        let mut refreshed: Option<String> = None;
        let mut rejected_once = false;
        loop {
            if self.closed(req) {
                return Err(GraphError::Network(CLOSED_REASON.into()));
            }
            let remaining = self.inner.gate.remaining();
            if remaining > policy.max_throttle_wait {
                return Err(GraphError::Throttled {
                    until: self.inner.gate.throttled_until(),
                });
            }
            self.inner.gate.wait().await;

            let bearer = if self.wants_bearer(req) {
                Some(match &refreshed {
                    Some(t) => t.clone(),
                    None => self.inner.tokens.access_token().await?,
                })
            } else {
                None
            };
            // Getting the token may have taken a while (a refresh): a pause that began meanwhile holds this request
            // too. (What is left is the moment between this check and the bytes leaving.)
            self.inner.gate.wait().await;
            let sent = self.build(req, bearer.as_deref()).send().await;
            let outcome = match sent {
                Err(e) => {
                    failures += 1;
                    let reason = describe_reqwest_error(&e);
                    if self.closed(req) {
                        return Err(GraphError::Network(format!("{CLOSED_REASON} ({reason})")));
                    }
                    if failures >= policy.max_attempts {
                        tracing::warn!(method = %req.method, url = %redact(&req.url, req.kind), attempts = failures,
                            error = %reason, "request failed");
                        return Err(GraphError::Network(reason));
                    }
                    let wait = policy.backoff(failures);
                    tracing::warn!(method = %req.method, url = %redact(&req.url, req.kind), error = %reason,
                        wait_ms = wait.as_millis() as u64, "connection failed; retrying");
                    Outcome::Retry(wait)
                }
                Ok(resp) => {
                    let status = resp.status();
                    if status.as_u16() < 400 {
                        Outcome::Done(resp)
                    } else if status == StatusCode::UNAUTHORIZED && bearer.is_some() && !rejected_once {
                        rejected_once = true;
                        tracing::info!(method = %req.method, url = %redact(&req.url, req.kind),
                            "401 from Graph; refreshing the access token once");
                        let rejected = bearer.unwrap_or_default();
                        refreshed = Some(self.inner.tokens.refresh_after_rejection(&rejected).await?);
                        Outcome::Retry(Duration::ZERO)
                    } else if matches!(status.as_u16(), 429 | 503 | 509) {
                        throttles += 1;
                        let asked = resp
                            .headers()
                            .get(RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| parse_retry_after(v, Utc::now()));
                        let wait = asked.unwrap_or_else(|| {
                            policy
                                .default_throttle
                                .saturating_mul(1u32 << (throttles - 1).min(10))
                                .min(policy.max_throttle_wait)
                        });
                        self.inner.gate.pause_for(wait);
                        tracing::warn!(method = %req.method, url = %redact(&req.url, req.kind), status = status.as_u16(),
                            wait_ms = wait.as_millis() as u64, retry_after = asked.is_some(),
                            "throttled; pausing all requests");
                        if throttles > policy.max_throttle_retries || wait > policy.max_throttle_wait {
                            return Err(GraphError::Throttled {
                                until: self.inner.gate.throttled_until(),
                            });
                        }
                        Outcome::Retry(Duration::ZERO)
                    } else if matches!(status.as_u16(), 500 | 502 | 504) {
                        failures += 1;
                        if failures >= policy.max_attempts {
                            return Err(error_from(resp).await);
                        }
                        let wait = policy.backoff(failures);
                        tracing::warn!(method = %req.method, url = %redact(&req.url, req.kind), status = status.as_u16(),
                            wait_ms = wait.as_millis() as u64, "server error; retrying");
                        Outcome::Retry(wait)
                    } else {
                        return Err(error_from(resp).await);
                    }
                }
            };
            match outcome {
                Outcome::Done(resp) => return Ok(resp),
                Outcome::Retry(wait) => {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
    }

    fn wants_bearer(&self, req: &ApiRequest) -> bool {
        req.kind == UrlKind::Graph && Url::parse(&req.url).is_ok_and(|u| u.origin() == self.inner.graph_origin)
    }

    fn build(&self, req: &ApiRequest, bearer: Option<&str>) -> reqwest::RequestBuilder {
        let mut b = self.inner.client.request(req.method.clone(), &req.url);
        for (name, value) in &req.headers {
            b = b.header(name, value);
        }
        if let Some(token) = bearer {
            b = b.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        match &req.body {
            Some(body) => b = b.body(body.clone()),
            None if req.method == Method::PUT || req.method == Method::POST => {
                b = b.header(reqwest::header::CONTENT_LENGTH, "0");
            }
            None => {}
        }
        if req.timeout == Timeout::Whole {
            b = b.timeout(self.inner.policy.request_timeout);
        }
        b
    }
}

async fn error_from(resp: Response) -> GraphError {
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap_or_default();
    GraphError::from_response(status, &headers, &body)
}

/// A reqwest error without its URL (which may be pre-authenticated).
pub fn describe_reqwest_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "body interrupted"
    } else if e.is_request() {
        "request failed"
    } else {
        "transport error"
    };
    let mut detail = String::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        detail = s.to_string();
        src = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_only_safe_parts() {
        assert_eq!(
            redact(
                "https://graph.microsoft.com/v1.0/me/drive/root/delta?token=abc",
                UrlKind::Graph
            ),
            "https://graph.microsoft.com/v1.0/me/drive/root/delta"
        );
        let r = redact(
            "https://public.bn.files.1drv.com/y4mSECRET/photo.jpg?psid=1&sig=SECRET",
            UrlKind::PreAuthenticated,
        );
        assert_eq!(r, "https://public.bn.files.1drv.com/…");
        assert!(!r.contains("SECRET"));
        assert_eq!(
            redact("http://127.0.0.1:8080/up/abc?x", UrlKind::PreAuthenticated),
            "http://127.0.0.1:8080/…"
        );
    }

    #[test]
    fn backoff_is_bounded_full_jitter() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            ..Default::default()
        };
        for attempt in 1..10 {
            let ceiling = (100u64 << (attempt - 1)).min(350);
            for _ in 0..50 {
                assert!(p.backoff(attempt).as_millis() as u64 <= ceiling);
            }
        }
    }

    /// A server that accepts connections, holds each until `release` is notified, then drops it unanswered;
    /// returns its URL and the count of connections accepted.
    async fn dropping_server(release: Arc<tokio::sync::Notify>) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1.0", listener.local_addr().unwrap());
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let release = release.clone();
                tokio::spawn(async move {
                    release.notified().await;
                    drop(socket);
                });
            }
        });
        (url, accepted)
    }

    fn quick_policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_closed_pipeline_neither_starts_nor_retries_requests() {
        let release = Arc::new(tokio::sync::Notify::new());
        let (url, accepted) = dropping_server(release.clone()).await;
        let tokens: Arc<dyn TokenSource> = Arc::new(crate::remote::auth::StaticToken("t".into()));
        let pipeline = Pipeline::new(&url, tokens, quick_policy()).unwrap();
        let req = ApiRequest::new(Method::GET, format!("{url}/me/drive"), UrlKind::Graph);

        // Open: a connection torn down is retried up to the policy's attempts.
        release.notify_waiters();
        let releasing = {
            let release = release.clone();
            tokio::spawn(async move {
                loop {
                    release.notify_waiters();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        assert!(pipeline.send(&req).await.is_err());
        releasing.abort();
        assert_eq!(accepted.load(Ordering::SeqCst), 4, "retried while open");

        // Closed while a request waits for its answer: the torn-down connection is not retried.
        accepted.store(0, Ordering::SeqCst);
        let in_flight = {
            let (pipeline, req) = (pipeline.clone(), req.clone());
            tokio::spawn(async move { pipeline.send(&req).await })
        };
        while accepted.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        pipeline.close();
        release.notify_waiters();
        let err = in_flight.await.unwrap().unwrap_err();
        assert!(err.to_string().contains(CLOSED_REASON), "{err}");
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "not retried once closed");

        // Closed: a new request is not sent at all.
        let err = pipeline.send(&req).await.unwrap_err();
        assert!(err.to_string().contains(CLOSED_REASON), "{err}");
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "nothing sent once closed");
    }

    #[tokio::test]
    async fn gate_extends_but_never_shortens() {
        let g = ThrottleGate::default();
        assert!(g.throttled_until().is_none());
        g.pause_for(Duration::from_millis(300));
        g.pause_for(Duration::from_millis(10));
        assert!(g.remaining() > Duration::from_millis(200));
        assert!(g.throttled_until().is_some());
        let t = Instant::now();
        g.wait().await;
        assert!(t.elapsed() >= Duration::from_millis(280));
        assert!(g.throttled_until().is_none());
    }
}
