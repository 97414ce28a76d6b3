//! Fault injection and the request log over real HTTP: a small router wrapped the way the emulator server
//! wraps its listeners (`request_log::layer(faults::layer(router))`, controls merged outside both).

use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use galleryfs::emulator::faults::{self, FaultHost, FaultKind, FaultRule, Faults};
use galleryfs::emulator::request_log::{self, RequestLog};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BODY_LEN: usize = 100_000;

fn body_bytes() -> Vec<u8> {
    (0..BODY_LEN).map(|i| (i % 251) as u8).collect()
}

struct Server {
    base: String,
    addr: std::net::SocketAddr,
    faults: Arc<Faults>,
    log: Arc<RequestLog>,
    http: reqwest::Client,
}

async fn start(host: &'static str) -> Server {
    let faults = Faults::new();
    let log = RequestLog::new();
    let app = Router::new().route("/v1.0/data", get(|| async { body_bytes() })).route(
        "/v1.0/stream",
        get(|| async {
            let chunks = body_bytes()
                .chunks(10_000)
                .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>();
            Response::builder()
                .header(header::CONTENT_LENGTH, BODY_LEN)
                .body(Body::from_stream(futures::stream::iter(chunks)))
                .unwrap()
        }),
    );
    let app = request_log::layer(faults::layer(app, faults.clone(), host), log.clone(), host)
        .nest("/_emulator/faults", faults::control_router(faults.clone()))
        .nest("/_emulator/log", request_log::control_router(log.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        base: format!("http://{addr}"),
        addr,
        faults,
        log,
        http: reqwest::Client::new(),
    }
}

impl Server {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(format!("{}{path}", self.base)).send().await.unwrap()
    }

    async fn report(&self) -> Value {
        self.get("/_emulator/faults").await.json().await.unwrap()
    }

    async fn add_rule(&self, rule: Value) {
        let r = self
            .http
            .post(format!("{}/_emulator/faults/rules", self.base))
            .json(&rule)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    /// A raw HTTP/1.1 GET: the declared Content-Length and the body bytes that arrived before the close.
    async fn raw_get(&self, path: &str) -> (usize, usize) {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw)).await;
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        let declared = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .expect("Content-Length declared");
        (declared, raw.len() - split)
    }
}

#[tokio::test]
async fn throttling_answers_graph_429_with_retry_after_and_records_windows() {
    let s = start("api").await;
    s.add_rule(serde_json::json!({"kind": "status", "status": 429, "retry_after_secs": 2, "count": 2}))
        .await;
    for _ in 0..2 {
        let r = s.get("/v1.0/data").await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "2");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "activityLimitReached");
        assert_eq!(body["error"]["innerError"]["code"], "throttledRequest");
    }
    assert_eq!(s.get("/v1.0/data").await.status(), 200);
    let report = s.report().await;
    assert_eq!(report["counts"]["status_429"], 2);
    let windows = report["throttle_windows"].as_array().unwrap();
    assert_eq!(windows.len(), 2);
    assert_eq!(
        windows[0]["end_ms"].as_u64().unwrap() - windows[0]["start_ms"].as_u64().unwrap(),
        2000
    );
    // The second and third requests came at once, inside the first window.
    assert!(report["requests_during_throttle"].as_u64().unwrap() >= 2, "{report}");
    assert!(report["rules"].as_array().unwrap().is_empty(), "count rule used up");
}

#[tokio::test]
async fn service_unavailable_defaults_to_one_second_retry_after() {
    let s = start("api").await;
    s.faults.add_rule(
        FaultRule::new(FaultKind::Status {
            status: 503,
            retry_after_secs: None,
        })
        .count(1),
    );
    let r = s.get("/v1.0/data").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "serviceNotAvailable");
    s.faults.add_rule(
        FaultRule::new(FaultKind::Status {
            status: 500,
            retry_after_secs: None,
        })
        .count(1),
    );
    let r = s.get("/v1.0/data").await;
    assert_eq!(r.status(), 500);
    assert!(r.headers().get("retry-after").is_none());
}

#[tokio::test]
async fn faults_on_identity_endpoints_answer_in_the_identity_platform_shape() {
    let s = start("api").await;
    s.faults.add_rule(
        FaultRule::new(FaultKind::Status {
            status: 503,
            retry_after_secs: Some(3),
        })
        .count(1),
    );
    let r = s.get("/consumers/oauth2/v2.0/token").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "3");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(body["error_codes"].is_array() && body["trace_id"].is_string(), "{body}");
}

#[tokio::test]
async fn reset_drops_the_connection_mid_body() {
    let s = start("content").await;
    for path in ["/v1.0/data", "/v1.0/stream"] {
        s.faults.add_rule(
            FaultRule::new(FaultKind::Reset { after_bytes: 25_000 })
                .count(1)
                .host(FaultHost::Content),
        );
        let r = s.get(path).await;
        assert_eq!(r.status(), 200);
        assert!(r.bytes().await.is_err(), "{path}: the body must fail");
    }
    assert_eq!(s.faults.counts()["reset"], 2);
    // The next download is whole again.
    assert_eq!(s.get("/v1.0/data").await.bytes().await.unwrap().len(), BODY_LEN);
}

#[tokio::test]
async fn truncate_declares_the_full_length_and_sends_less() {
    let s = start("content").await;
    for path in ["/v1.0/data", "/v1.0/stream"] {
        s.faults
            .add_rule(FaultRule::new(FaultKind::Truncate { after_bytes: 30_000 }).count(1));
        let (declared, received) = s.raw_get(path).await;
        assert_eq!(declared, BODY_LEN, "{path}");
        assert_eq!(received, 30_000, "{path}");
    }
    s.faults
        .add_rule(FaultRule::new(FaultKind::Truncate { after_bytes: 30_000 }).count(1));
    assert!(
        s.get("/v1.0/data").await.bytes().await.is_err(),
        "reqwest notices the short body"
    );
    assert_eq!(s.faults.counts()["truncate"], 3);
}

#[tokio::test]
async fn host_method_and_path_filters_limit_a_rule() {
    let s = start("api").await;
    s.add_rule(serde_json::json!({"kind": "status", "status": 502, "host": "content"}))
        .await;
    s.add_rule(serde_json::json!({"kind": "status", "status": 504, "method": "POST"}))
        .await;
    s.add_rule(serde_json::json!({"kind": "status", "status": 500, "path_contains": "/stream"}))
        .await;
    assert_eq!(s.get("/v1.0/data").await.status(), 200);
    assert_eq!(s.get("/v1.0/stream").await.status(), 500);
}

#[tokio::test]
async fn latency_and_hang_delay_answers() {
    let s = start("api").await;
    s.faults
        .add_rule(FaultRule::new(FaultKind::Latency { ms: 300 }).count(1));
    let t = Instant::now();
    assert_eq!(s.get("/v1.0/data").await.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    s.add_rule(serde_json::json!({"kind": "hang", "path_contains": "/data"}))
        .await;
    let url = format!("{}/v1.0/data", s.base);
    let http = s.http.clone();
    let hung = tokio::spawn(async move { http.get(url).send().await.unwrap().status() });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!hung.is_finished(), "a hung request must not be answered");
    let r = s
        .http
        .delete(format!("{}/_emulator/faults/rules", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let status = tokio::time::timeout(Duration::from_secs(5), hung)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(s.faults.counts()["hang"], 1);

    let r = s
        .http
        .post(format!("{}/_emulator/faults/latency", s.base))
        .json(&serde_json::json!({"ms": 200}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let t = Instant::now();
    s.get("/v1.0/data").await;
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert_eq!(s.report().await["latency_ms"], 200);
}

#[tokio::test]
async fn request_log_records_requests_without_secrets() {
    let s = start("content").await;
    let start_seq = s.log.next_seq();
    s.http
        .get(format!("{}/v1.0/data?sig=SECRET1&x=1", s.base))
        .header("authorization", "Bearer SECRET2")
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    s.http
        .get(format!("{}/v1.0/missing/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", s.base))
        .send()
        .await
        .unwrap();
    let log: Vec<Value> = s
        .get(&format!("/_emulator/log?since={start_seq}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(log.len(), 2, "controls are not logged: {log:?}");
    let text = serde_json::to_string(&log).unwrap();
    assert!(!text.contains("SECRET"), "{text}");
    assert_eq!(log[0]["path"], "/v1.0/data?sig=REDACTED&x=1");
    assert_eq!(log[0]["method"], "GET");
    assert_eq!(log[0]["status"], 200);
    assert_eq!(log[0]["had_authorization"], true);
    assert_eq!(log[0]["range"], "bytes=0-99");
    assert_eq!(log[0]["host"], "content");
    assert_eq!(log[1]["path"], "/v1.0/missing/REDACTED");
    assert_eq!(log[1]["status"], 404);
    assert_eq!(log[1]["had_authorization"], false);
    assert!(log[1]["seq"].as_u64().unwrap() > log[0]["seq"].as_u64().unwrap());
    let later: Vec<Value> = s
        .get(&format!("/_emulator/log?since={}", log[1]["seq"]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(later.len(), 1);

    let r = s.http.delete(format!("{}/_emulator/log", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(s.log.entries().is_empty());
}
