//! Emulator request log: every request a client made (method, path without secrets, status, whether it carried
//! an Authorization header, Range, time), for tests that check what a client sent. Bounded (the last
//! [`LOG_CAPACITY`] requests). Also the emulator clock ([`emulator_clock_ms`]) that log entries and fault
//! throttle windows share.

use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// How many requests the log keeps (the oldest are dropped first).
pub const LOG_CAPACITY: usize = 100_000;

/// Milliseconds since the first emulator of this process started (the clock of `at_ms` and throttle windows).
pub fn emulator_clock_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// One request as the emulator saw it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LoggedRequest {
    /// Milliseconds since the emulator started ([`emulator_clock_ms`]), when the request arrived.
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
    /// Position in the log since the emulator started (entries are numbered when their answer is ready).
    pub seq: u64,
    /// Milliseconds from arrival to the answer's headers.
    pub duration_ms: u64,
}

#[derive(Debug, Default)]
struct LogState {
    entries: VecDeque<LoggedRequest>,
    next_seq: u64,
}

/// The log of requests.
#[derive(Debug, Default)]
pub struct RequestLog {
    state: Mutex<LogState>,
}

impl RequestLog {
    pub fn new() -> Arc<Self> {
        emulator_clock_ms();
        Arc::new(Self::default())
    }

    pub fn entries(&self) -> Vec<LoggedRequest> {
        self.state.lock().entries.iter().cloned().collect()
    }

    /// Entries numbered `seq` or later.
    pub fn entries_since(&self, seq: u64) -> Vec<LoggedRequest> {
        let s = self.state.lock();
        s.entries.iter().filter(|e| e.seq >= seq).cloned().collect()
    }

    /// The number the next entry will get (pass it to [`RequestLog::entries_since`] later).
    pub fn next_seq(&self) -> u64 {
        self.state.lock().next_seq
    }

    /// Empties the log (numbering goes on).
    pub fn clear(&self) {
        self.state.lock().entries.clear();
    }

    fn push(&self, mut entry: LoggedRequest) {
        let mut s = self.state.lock();
        entry.seq = s.next_seq;
        s.next_seq += 1;
        if s.entries.len() >= LOG_CAPACITY {
            s.entries.pop_front();
        }
        s.entries.push_back(entry);
    }
}

/// Query parameters whose values are secrets (OAuth codes and tokens, signatures of pre-authenticated URLs).
const SECRET_PARAMS: &[&str] = &[
    "code",
    "device_code",
    "refresh_token",
    "access_token",
    "id_token",
    "client_secret",
    "code_verifier",
    "assertion",
    "client_assertion",
    "sig",
    "signature",
    "tempauth",
    "authkey",
];

/// Redacts secrets from a path and query: the values of [`SECRET_PARAMS`] (and of `token` on the content host,
/// where it would be a pre-authentication token), and on the content host every opaque path segment of 20 or
/// more characters (the token of a download or upload URL).
pub fn redact(path_and_query: &str, host: &str) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let content_host = host == "content";
    let path = if content_host {
        path.split('/')
            .map(|seg| {
                if seg.len() >= 20 && !seg.bytes().all(|b| b.is_ascii_digit()) {
                    "REDACTED"
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    } else {
        path.to_string()
    };
    let Some(query) = query else { return path };
    let query = query
        .split('&')
        .map(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            let decoded = percent_encoding::percent_decode_str(name)
                .decode_utf8_lossy()
                .to_ascii_lowercase();
            let secret = SECRET_PARAMS.contains(&decoded.as_str()) || (content_host && decoded == "token");
            if secret && pair.contains('=') {
                format!("{name}=REDACTED")
            } else {
                pair.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{path}?{query}")
}

/// Wraps `router` so every request is logged. `host` names the listener (`api`, `content`).
pub fn layer(router: Router, log: Arc<RequestLog>, host: &'static str) -> Router {
    router.layer(axum::middleware::from_fn_with_state((log, host), record))
}

async fn record(State((log, host)): State<(Arc<RequestLog>, &'static str)>, req: Request, next: Next) -> Response {
    let at_ms = emulator_clock_ms();
    let started = Instant::now();
    let method = req.method().to_string();
    let path = redact(req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"), host);
    let had_authorization = req.headers().contains_key(header::AUTHORIZATION);
    let range = req
        .headers()
        .get(header::RANGE)
        .or_else(|| req.headers().get(header::CONTENT_RANGE))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let response = next.run(req).await;
    log.push(LoggedRequest {
        at_ms,
        host: host.to_string(),
        method,
        path,
        status: response.status().as_u16(),
        had_authorization,
        range,
        seq: 0,
        duration_ms: started.elapsed().as_millis() as u64,
    });
    response
}

#[derive(serde::Deserialize)]
struct SinceQuery {
    since: Option<u64>,
}

/// Control routes, mounted by the server at `/_emulator/log`: `GET /?since=N` → JSON array of
/// [`LoggedRequest`] numbered N or later (all without `since`); `DELETE /` empties the log.
pub fn control_router(log: Arc<RequestLog>) -> Router {
    Router::new()
        .route(
            "/",
            get(
                |State(log): State<Arc<RequestLog>>, Query(q): Query<SinceQuery>| async move {
                    Json(log.entries_since(q.since.unwrap_or(0)))
                },
            )
            .delete(|State(log): State<Arc<RequestLog>>| async move {
                log.clear();
                StatusCode::NO_CONTENT
            }),
        )
        .with_state(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_the_rest_kept() {
        assert_eq!(
            redact("/download/Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA?x=1", "content"),
            "/download/REDACTED?x=1"
        );
        assert_eq!(
            redact("/thumbnails/12/3/c256x256_Crop?sig=abcdef0123", "content"),
            "/thumbnails/12/3/c256x256_Crop?sig=REDACTED"
        );
        assert_eq!(
            redact("/cb?code=SECRETCODE&state=s1&session_state=x", "api"),
            "/cb?code=REDACTED&state=s1&session_state=x"
        );
        assert_eq!(
            redact("/v1.0/me/drive/root/delta?token=latest", "api"),
            "/v1.0/me/drive/root/delta?token=latest"
        );
        assert_eq!(redact("/upload/x?token=abc", "content"), "/upload/x?token=REDACTED");
        assert_eq!(redact("/a?refresh%5Ftoken=zzz", "api"), "/a?refresh%5Ftoken=REDACTED");
    }

    #[test]
    fn log_is_bounded_and_numbered() {
        let log = RequestLog::default();
        for i in 0..(LOG_CAPACITY + 5) {
            log.push(LoggedRequest {
                at_ms: 0,
                host: "api".into(),
                method: "GET".into(),
                path: format!("/{i}"),
                status: 200,
                had_authorization: false,
                range: None,
                seq: 0,
                duration_ms: 0,
            });
        }
        let entries = log.entries();
        assert_eq!(entries.len(), LOG_CAPACITY);
        assert_eq!(entries[0].path, "/5");
        assert_eq!(entries.last().unwrap().seq, (LOG_CAPACITY + 4) as u64);
        assert_eq!(log.entries_since((LOG_CAPACITY + 3) as u64).len(), 2);
        log.clear();
        assert!(log.entries().is_empty());
        assert_eq!(log.next_seq(), (LOG_CAPACITY + 5) as u64);
    }
}
