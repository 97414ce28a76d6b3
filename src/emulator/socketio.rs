//! The socket.io change-notification channel (graph-api.md §13; GDC beta `subscriptions-socketio.md`; AB
//! `socketio.d`): `GET …/root/subscriptions/socketIo` issues `{id, notificationUrl, expirationDateTime}`, and a
//! websocket at `/socket.io/?EIO=4&transport=websocket&snthgk=…` speaks enough Engine.IO v4 and Socket.IO v5 for a
//! client: open packet `0{"sid","upgrades","pingInterval","pingTimeout","maxPayload"}`, namespace connects `40` /
//! `40/notifications,` answered `40{"sid"}` / `40/notifications,{"sid"}`, server pings `2` answered by pongs `3`,
//! and an event `42/notifications,["notification","<json string>"]` after every change of the drive (changes are
//! seen through the journal sequence every 100 ms and a burst is coalesced into one event).
//!
//! Emulator choices (the documentation does not say): the service's URL is `https://…`; here it is
//! `http://127.0.0.1:P/notifications/callback?snthgk=…` (no TLS on loopback). A disabled channel answers the GET
//! `501 notSupported` (the code Graph uses for "not supported by the system") and refuses websockets. An expired
//! or unknown `snthgk` is refused with Engine.IO's `403 {"code":4,"message":"Forbidden"}`; a connection whose
//! subscription expires is told `41/notifications,` and closed. The event's JSON string is shaped like a webhook
//! notification (`subscriptionId`, `resource`, `expirationDateTime`, `changeType`) — **UNCERTAIN**, clients must
//! treat any `notification` event as "run delta now".

use super::errors::{GraphError, GraphResult};
use super::notification_hub::{DropMode, Subscription};
use super::state::EmulatorState;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::watch;

/// The namespace the notifications are sent on (AB's recipe connects to it).
pub const NAMESPACE: &str = "/notifications";
/// How often the drive journal is looked at.
const CHANGE_CHECK: Duration = Duration::from_millis(100);
/// A burst of changes within this time becomes one notification.
const COALESCE: Duration = Duration::from_millis(250);

/// `GET …/root/subscriptions/socketIo`.
pub fn get_endpoint(state: &Arc<EmulatorState>) -> GraphResult<Response> {
    let hub = &state.socketio;
    if !hub.enabled() {
        return Err(GraphError::not_supported(
            "Socket.IO notifications are not available for this drive",
        ));
    }
    let (token, sub) = hub.issue();
    let url = format!("{}{NAMESPACE}/callback?snthgk={token}", state.login_url);
    Ok(Json(json!({
        "@odata.context": format!("{}/$metadata#subscriptions/$entity", state.graph_url),
        "id": sub.id,
        "notificationUrl": url,
        "expirationDateTime": super::render::time(sub.expires),
    }))
    .into_response())
}

/// Watches the drive journal and publishes its sequence number; ends with the emulator.
pub fn spawn_change_watcher(
    state: &Arc<EmulatorState>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    // Start from the current state: only later changes are notified.
    let seq = state.drive.lock().current_seq();
    state.socketio.changes.send_replace(seq);
    let weak: Weak<EmulatorState> = Arc::downgrade(state);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(CHANGE_CHECK) => {}
                _ = stop.wait_for(|v| *v) => return,
            }
            let Some(state) = weak.upgrade() else { return };
            let seq = state.drive.lock().current_seq();
            state.socketio.changes.send_if_modified(|s| {
                let changed = *s != seq;
                *s = seq;
                changed
            });
        }
    })
}

/// The websocket route and the controls under `/_emulator/socketio`.
pub fn router(state: Arc<EmulatorState>) -> Router {
    Router::new()
        .route("/socket.io", get(upgrade))
        .route("/socket.io/", get(upgrade))
        .route("/_emulator/socketio", get(stats).post(configure))
        .route("/_emulator/socketio/drop", post(drop_control))
        .with_state(state)
}

fn engine_error(status: StatusCode, code: u8, message: &str) -> Response {
    (status, Json(json!({"code": code, "message": message}))).into_response()
}

async fn upgrade(
    State(state): State<Arc<EmulatorState>>,
    Query(query): Query<HashMap<String, String>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if query.get("EIO").map(String::as_str) != Some("4") {
        return engine_error(StatusCode::BAD_REQUEST, 5, "Unsupported protocol version");
    }
    if query.get("transport").map(String::as_str) != Some("websocket") {
        return engine_error(StatusCode::BAD_REQUEST, 0, "Transport unknown");
    }
    let Ok(ws) = ws else {
        return engine_error(StatusCode::BAD_REQUEST, 3, "Bad request");
    };
    let sub = query.get("snthgk").and_then(|t| state.socketio.live_subscription(t));
    let (Some(sub), true) = (sub, state.socketio.enabled()) else {
        return engine_error(StatusCode::FORBIDDEN, 4, "Forbidden");
    };
    ws.on_upgrade(move |socket| async move {
        state.socketio.connections.fetch_add(1, Ordering::SeqCst);
        serve_connection(&state, socket, sub).await;
        state.socketio.connections.fetch_sub(1, Ordering::SeqCst);
    })
}

fn sid() -> String {
    format!("{:020x}", rand::random::<u128>() >> 48)
}

/// One Engine.IO session until it closes, fails its heartbeat, expires or is dropped.
async fn serve_connection(state: &Arc<EmulatorState>, mut socket: WebSocket, sub: Subscription) {
    let hub = &state.socketio;
    let (ping_interval, ping_timeout) = *hub.ping.lock();
    let open = json!({
        "sid": sid(),
        "upgrades": [],
        "pingInterval": ping_interval.as_millis() as u64,
        "pingTimeout": ping_timeout.as_millis() as u64,
        "maxPayload": 1_000_000,
    });
    if socket.send(Message::Text(format!("0{open}").into())).await.is_err() {
        return;
    }
    let mut changes = hub.changes.subscribe();
    changes.mark_unchanged();
    let mut drops = hub.drops.subscribe();
    drops.mark_unchanged();
    let mut joined_default = false;
    let mut joined_notifications = false;
    let mut next_ping = tokio::time::Instant::now() + ping_interval;
    let mut pong_due: Option<tokio::time::Instant> = None;
    let expiry = tokio::time::Instant::now() + (sub.expires - Utc::now()).to_std().unwrap_or_default();
    loop {
        let heartbeat = pong_due.unwrap_or(next_ping);
        tokio::select! {
            msg = socket.recv() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                let reply = match text.as_str() {
                    "3" => { pong_due = None; None }
                    "2" => Some("3".to_string()),
                    "1" => return,
                    t if t == "40" || t.starts_with("40{") => {
                        joined_default = true;
                        Some(format!("40{}", json!({"sid": sid()})))
                    }
                    t if t.starts_with("40/") => {
                        let ns = t[2..].split(',').next().unwrap_or("");
                        if ns == NAMESPACE {
                            joined_notifications = true;
                            Some(format!("40{NAMESPACE},{}", json!({"sid": sid()})))
                        } else {
                            Some(format!("44{ns},{}", json!({"message": "Invalid namespace"})))
                        }
                    }
                    t if t.starts_with("41") => {
                        if t.starts_with(&format!("41{NAMESPACE}")) { joined_notifications = false } else { joined_default = false }
                        None
                    }
                    _ => None,
                };
                if let Some(r) = reply {
                    if socket.send(Message::Text(r.into())).await.is_err() { return; }
                }
            }
            _ = tokio::time::sleep_until(heartbeat) => {
                if pong_due.is_some() {
                    tracing::debug!("socket.io client missed its pong; closing");
                    return;
                }
                if socket.send(Message::Text("2".into())).await.is_err() { return; }
                pong_due = Some(tokio::time::Instant::now() + ping_timeout);
                next_ping = tokio::time::Instant::now() + ping_interval;
            }
            _ = tokio::time::sleep_until(expiry) => {
                let _ = socket.send(Message::Text(format!("41{NAMESPACE},").into())).await;
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            r = changes.changed() => {
                if r.is_err() { return; }
                tokio::time::sleep(COALESCE).await;
                changes.mark_unchanged();
                let payload = json!({
                    "subscriptionId": sub.id,
                    "changeType": "updated",
                    "resource": format!("drives/{}/root", state.drive.lock().drive_id),
                    "expirationDateTime": super::render::time(sub.expires),
                    "clientState": Value::Null,
                }).to_string();
                let event = json!(["notification", payload]);
                let frame = if joined_notifications {
                    format!("42{NAMESPACE},{event}")
                } else if joined_default {
                    format!("42{event}")
                } else {
                    continue;
                };
                if socket.send(Message::Text(frame.into())).await.is_err() { return; }
                hub.notifications_sent.fetch_add(1, Ordering::SeqCst);
            }
            r = drops.changed() => {
                if r.is_err() { return; }
                let mode = drops.borrow_and_update().1;
                match mode {
                    DropMode::Close => return,
                    DropMode::Silence => {
                        // Hold the socket open and say nothing until the client gives up.
                        while let Some(Ok(m)) = socket.recv().await {
                            if matches!(m, Message::Close(_)) { break; }
                        }
                        return;
                    }
                }
            }
        }
    }
}

async fn stats(State(s): State<Arc<EmulatorState>>) -> Json<Value> {
    let hub = &s.socketio;
    Json(json!({
        "enabled": hub.enabled(),
        "connections": hub.connections(),
        "notificationsSent": hub.notifications_sent(),
        "subscriptions": hub.subscriptions_issued(),
    }))
}

/// `POST /_emulator/socketio {"enabled"?, "lifetime_secs"?, "ping_interval_ms"?, "ping_timeout_ms"?}`.
async fn configure(State(s): State<Arc<EmulatorState>>, body: axum::body::Bytes) -> Response {
    let b: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return GraphError::invalid(format!("Invalid JSON body: {e}")).into_response(),
        }
    };
    let hub = &s.socketio;
    if let Some(e) = b.get("enabled").and_then(Value::as_bool) {
        hub.set_enabled(e);
    }
    if let Some(secs) = b.get("lifetime_secs").and_then(Value::as_u64) {
        hub.set_lifetime(Duration::from_secs(secs));
    }
    let (mut interval, mut timeout) = *hub.ping.lock();
    if let Some(ms) = b.get("ping_interval_ms").and_then(Value::as_u64) {
        interval = Duration::from_millis(ms);
    }
    if let Some(ms) = b.get("ping_timeout_ms").and_then(Value::as_u64) {
        timeout = Duration::from_millis(ms);
    }
    hub.set_ping(interval, timeout);
    stats(State(s)).await.into_response()
}

/// `POST /_emulator/socketio/drop {"mode": "close" | "silence"}`.
async fn drop_control(State(s): State<Arc<EmulatorState>>, body: axum::body::Bytes) -> Response {
    let mode = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("mode").and_then(Value::as_str).map(str::to_string));
    let mode = match mode.as_deref() {
        None | Some("close") => DropMode::Close,
        Some("silence") => DropMode::Silence,
        Some(other) => return GraphError::invalid(format!("unknown mode '{other}'")).into_response(),
    };
    s.socketio.drop_connections(mode);
    Json(json!({"ok": true})).into_response()
}
