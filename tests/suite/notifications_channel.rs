//! The socket.io notification channel, both sides: the emulator's endpoint and Engine.IO/Socket.IO framing seen
//! by a raw websocket client, expiry and refusals; the client ([`NotificationChannel`]) reporting notifications,
//! reconnecting after a dropped or silent connection, renewing before expiry and staying quiet when the channel
//! is not offered; and the sync side: a notification wakes the engine (no polling), and the periodic full
//! re-list removes a deletion delta left out, keeping local-only rows.

use futures::{SinkExt, StreamExt};
use galleryfs::emulator::media::Content;
use galleryfs::emulator::notification_hub::DropMode;
use galleryfs::emulator::{self, EmulatorConfig, EmulatorHandle};
use galleryfs::remote::auth::StaticToken;
use galleryfs::remote::drive_api::DriveApi;
use galleryfs::remote::graph_drive_api::GraphDrive;
use galleryfs::remote::notifications::{
    websocket_target, ChannelEvent, ChannelSettings, EndpointSource, NotificationChannel,
};
use galleryfs::remote::{Endpoints, GraphClient, RetryPolicy};
use galleryfs::store::{ItemKind, NewItem, Store, ROOT_INO};
use galleryfs::sync::engine::{SyncEngine, SyncSettings};
use galleryfs::sync::notification_listener::NotificationListener;
use parking_lot::Mutex;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn emulator(seed: usize) -> EmulatorHandle {
    emulator::start(EmulatorConfig {
        seed_gallery: seed,
        ..Default::default()
    })
    .await
    .expect("emulator starts")
}

fn client(emu: &EmulatorHandle) -> GraphClient {
    let endpoints = Endpoints {
        graph_url: emu.graph_url(),
        ..Default::default()
    };
    GraphClient::new(
        endpoints,
        Arc::new(StaticToken(emu.test_token())),
        RetryPolicy::default(),
    )
    .unwrap()
}

async fn get_endpoint(emu: &EmulatorHandle, path: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(format!("{}{path}", emu.graph_url()))
        .bearer_auth(emu.test_token())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn ws_url(emu: &EmulatorHandle) -> String {
    let (status, body) = get_endpoint(emu, "/me/drive/root/subscriptions/socketIo").await;
    assert_eq!(status, 200, "{body}");
    websocket_target(body["notificationUrl"].as_str().unwrap())
        .unwrap()
        .url
        .to_string()
}

async fn next_text(ws: &mut Ws, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        match timeout(deadline.saturating_duration_since(Instant::now()), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(t.to_string()),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// Reads frames for `during`, answering pings, and returns the notification events seen.
async fn collect_events(ws: &mut Ws, during: Duration) -> Vec<String> {
    let deadline = Instant::now() + during;
    let mut events = Vec::new();
    while let Some(t) = next_text(ws, deadline.saturating_duration_since(Instant::now())).await {
        if t == "2" {
            ws.send(Message::Text("3".into())).await.unwrap();
        } else if t.starts_with("42") {
            events.push(t);
        }
    }
    events
}

async fn control(emu: &EmulatorHandle, path: &str, body: Value) -> Value {
    reqwest::Client::new()
        .post(format!("{}{path}", emu.control_url()))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()
}

#[tokio::test]
async fn endpoint_answers_the_documented_subscription_shape() {
    let emu = emulator(0).await;
    for path in [
        "/me/drive/root/subscriptions/socketIo".to_string(),
        format!("/drives/{}/root/subscriptions/socketIo", emu.drive_id()),
    ] {
        let (status, body) = get_endpoint(&emu, &path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body["id"].as_str().is_some_and(|s| !s.is_empty()));
        let url = body["notificationUrl"].as_str().unwrap();
        assert!(
            url.starts_with(&format!("{}/notifications/callback?snthgk=", emu.login_url())),
            "{url}"
        );
        let exp = chrono::DateTime::parse_from_rfc3339(body["expirationDateTime"].as_str().unwrap()).unwrap();
        assert!(exp > chrono::Utc::now() + chrono::Duration::hours(1));
    }
    // Only the drive root has the channel; no bearer, no channel.
    let (status, _) = get_endpoint(&emu, "/me/drive/special/photos/subscriptions/socketIo").await;
    assert!(status >= 400);
    let anonymous = reqwest::get(format!("{}/me/drive/root/subscriptions/socketIo", emu.graph_url()))
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    // A service that does not offer it.
    emu.state.socketio.set_enabled(false);
    let (status, body) = get_endpoint(&emu, "/me/drive/root/subscriptions/socketIo").await;
    assert_eq!(status, 501);
    assert_eq!(body["error"]["code"], "notSupported");
}

#[tokio::test]
async fn websocket_speaks_engine_io_v4_and_socket_io_and_notifies_changes_coalesced() {
    let emu = emulator(0).await;
    emu.state
        .socketio
        .set_ping(Duration::from_millis(300), Duration::from_millis(400));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&emu).await).await.unwrap();
    let open = next_text(&mut ws, Duration::from_secs(2)).await.unwrap();
    let meta: Value = serde_json::from_str(open.strip_prefix('0').expect("open packet")).unwrap();
    assert!(meta["sid"].is_string());
    assert_eq!(meta["pingInterval"], 300);
    assert_eq!(meta["pingTimeout"], 400);

    ws.send(Message::Text("40".into())).await.unwrap();
    let ack = next_text(&mut ws, Duration::from_secs(2)).await.unwrap();
    assert!(ack.starts_with("40{"), "{ack}");
    ws.send(Message::Text("40/notifications,".into())).await.unwrap();
    let ack = next_text(&mut ws, Duration::from_secs(2)).await.unwrap();
    assert!(ack.starts_with("40/notifications,{"), "{ack}");
    ws.send(Message::Text("40/other,".into())).await.unwrap();
    let refused = next_text(&mut ws, Duration::from_secs(2)).await.unwrap();
    assert!(refused.starts_with("44/other,"), "{refused}");

    // Heartbeat: the server pings within pingInterval.
    let ping = next_text(&mut ws, Duration::from_secs(1)).await.unwrap();
    assert_eq!(ping, "2");
    ws.send(Message::Text("3".into())).await.unwrap();

    // One change → one event on /notifications with a JSON string payload.
    emu.state
        .add_file(
            "/Pictures/Samsung Gallery/n1.jpg",
            Content::Bytes(bytes::Bytes::from_static(b"x")),
        )
        .unwrap();
    let events = collect_events(&mut ws, Duration::from_millis(1200)).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let array: Value = serde_json::from_str(events[0].strip_prefix("42/notifications,").unwrap()).unwrap();
    assert_eq!(array[0], "notification");
    let inner: Value = serde_json::from_str(array[1].as_str().expect("a JSON string")).unwrap();
    assert!(inner["subscriptionId"].is_string());

    // A burst of changes is coalesced (not one event per change), and the connection stays up meanwhile.
    for i in 0..10 {
        emu.state
            .add_file(
                &format!("/Pictures/Samsung Gallery/b{i}.jpg"),
                Content::Bytes(bytes::Bytes::from(vec![i])),
            )
            .unwrap();
    }
    let events = collect_events(&mut ws, Duration::from_millis(1500)).await;
    assert!((1..=2).contains(&events.len()), "{events:?}");
    assert_eq!(emu.state.socketio.connections(), 1);

    // A client that stops answering pings is closed after pingTimeout.
    let started = Instant::now();
    while let Some(t) = next_text(&mut ws, Duration::from_secs(3)).await {
        assert_ne!(t, "3");
    }
    assert!(started.elapsed() < Duration::from_secs(2), "closed for a missed pong");
}

#[tokio::test]
async fn websocket_refuses_bad_tokens_and_honours_expiry_and_disabling() {
    let emu = emulator(0).await;
    let good = ws_url(&emu).await;
    let forged = good.split("snthgk=").next().unwrap().to_string() + "snthgk=forged";
    let refused = tokio_tungstenite::connect_async(forged).await.unwrap_err();
    assert!(refused.to_string().contains("403"), "{refused}");
    let wrong_eio = good.replace("EIO=4", "EIO=3");
    assert!(tokio_tungstenite::connect_async(wrong_eio).await.is_err());

    // Expiry: the live connection is told 41 and closed; the token is refused afterwards.
    emu.state.socketio.set_lifetime(Duration::from_secs(1));
    let short = ws_url(&emu).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&short).await.unwrap();
    ws.send(Message::Text("40/notifications,".into())).await.unwrap();
    let mut frames = Vec::new();
    while let Some(t) = next_text(&mut ws, Duration::from_secs(3)).await {
        frames.push(t);
    }
    assert!(frames.iter().any(|f| f.starts_with("41/notifications")), "{frames:?}");
    assert!(tokio_tungstenite::connect_async(&short).await.is_err());

    // Disabling closes live connections and refuses new ones.
    emu.state.socketio.set_lifetime(Duration::from_secs(600));
    let url = ws_url(&emu).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert!(next_text(&mut ws, Duration::from_secs(1))
        .await
        .unwrap()
        .starts_with('0'));
    let stats = control(&emu, "/socketio", serde_json::json!({"enabled": false})).await;
    assert_eq!(stats["enabled"], false);
    assert!(next_text(&mut ws, Duration::from_secs(2)).await.is_none());
    assert!(tokio_tungstenite::connect_async(&url).await.is_err());
}

#[derive(Default)]
struct Events(Mutex<Vec<ChannelEvent>>);
impl Events {
    fn count(&self, e: ChannelEvent) -> usize {
        self.0.lock().iter().filter(|x| **x == e).count()
    }
}

fn start_channel(
    source: Arc<dyn EndpointSource>,
    settings: ChannelSettings,
) -> (Arc<Events>, tokio::task::JoinHandle<()>) {
    let events = Arc::new(Events::default());
    let e = events.clone();
    let channel = NotificationChannel::new(source, settings);
    let task = tokio::spawn(async move { channel.run(Arc::new(move |ev| e.0.lock().push(ev))).await });
    (events, task)
}

async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    cond()
}

fn fast() -> ChannelSettings {
    ChannelSettings {
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        ..ChannelSettings::default()
    }
}

#[tokio::test]
async fn client_reports_notifications_and_reconnects_after_a_drop_and_after_silence() {
    let emu = emulator(0).await;
    emu.state
        .socketio
        .set_ping(Duration::from_millis(300), Duration::from_millis(300));
    let (events, task) = start_channel(Arc::new(client(&emu)), fast());
    assert!(wait_for(Duration::from_secs(5), || events.count(ChannelEvent::Connected) == 1).await);
    emu.state
        .add_file(
            "/Pictures/Samsung Gallery/c1.jpg",
            Content::Bytes(bytes::Bytes::from_static(b"1")),
        )
        .unwrap();
    assert!(wait_for(Duration::from_secs(3), || events.count(ChannelEvent::Notification) >= 1).await);

    emu.state.socketio.drop_connections(DropMode::Close);
    assert!(wait_for(Duration::from_secs(5), || events.count(ChannelEvent::Connected) == 2).await);
    let before = events.count(ChannelEvent::Notification);
    emu.state
        .add_file(
            "/Pictures/Samsung Gallery/c2.jpg",
            Content::Bytes(bytes::Bytes::from_static(b"2")),
        )
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(3), || events.count(ChannelEvent::Notification)
            > before)
        .await
    );

    // A silent connection (no pings, no events) is given up after pingInterval + pingTimeout.
    let silenced = Instant::now();
    emu.state.socketio.drop_connections(DropMode::Silence);
    assert!(wait_for(Duration::from_secs(5), || events.count(ChannelEvent::Connected) == 3).await);
    assert!(
        silenced.elapsed() >= Duration::from_millis(500),
        "{:?}",
        silenced.elapsed()
    );
    let before = events.count(ChannelEvent::Notification);
    emu.state
        .add_file(
            "/Pictures/Samsung Gallery/c3.jpg",
            Content::Bytes(bytes::Bytes::from_static(b"3")),
        )
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(3), || events.count(ChannelEvent::Notification)
            > before)
        .await
    );
    assert_eq!(events.count(ChannelEvent::Unavailable), 0);
    task.abort();
}

#[tokio::test]
async fn client_renews_the_endpoint_before_it_expires() {
    let emu = emulator(0).await;
    emu.state.socketio.set_lifetime(Duration::from_secs(2));
    let fetches = || {
        emu.state
            .log
            .entries()
            .iter()
            .filter(|e| e.path.ends_with("/subscriptions/socketIo"))
            .count()
    };
    let (events, task) = start_channel(Arc::new(client(&emu)), fast());
    assert!(wait_for(Duration::from_secs(5), || events.count(ChannelEvent::Connected) >= 1).await);
    // Past several lifetimes the channel still delivers: it renewed (halfway, as the lifetime is short) and
    // never sat on an expired subscription.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(fetches() >= 4, "endpoint fetched {} times", fetches());
    let before = events.count(ChannelEvent::Notification);
    emu.state
        .add_file(
            "/Pictures/Samsung Gallery/r.jpg",
            Content::Bytes(bytes::Bytes::from_static(b"r")),
        )
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(3), || events.count(ChannelEvent::Notification)
            > before)
        .await
    );
    task.abort();
}

#[tokio::test]
async fn a_service_without_the_channel_is_reported_unavailable_once() {
    let emu = emulator(0).await;
    emu.state.socketio.set_enabled(false);
    let (events, task) = start_channel(Arc::new(client(&emu)), fast());
    assert!(wait_for(Duration::from_secs(5), || events.count(ChannelEvent::Unavailable) == 1).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        events.0.lock().clone(),
        vec![ChannelEvent::Unavailable],
        "no retry storm, no connection"
    );
    task.abort();
}

#[tokio::test]
async fn notifications_wake_the_engine_and_the_full_relist_repairs_a_missed_deletion() {
    let emu = emulator(4).await;
    let graph = client(&emu);
    let drive: Arc<dyn DriveApi> = Arc::new(GraphDrive::new(graph.clone()));
    let store = Arc::new(Store::open_in_memory().unwrap());
    let mut settings = SyncSettings::new("test");
    settings.poll_interval = Duration::from_secs(300);
    let engine = Arc::new(SyncEngine::new(store.clone(), drive, settings));
    engine.initial_sync().await.unwrap();
    let count_before = store.item_count().unwrap();
    let runner = tokio::spawn(engine.clone().run());
    let listener = NotificationListener::start(NotificationChannel::new(Arc::new(graph), fast()), engine.clone());
    let stats = listener.stats();
    assert!(
        wait_for(Duration::from_secs(5), || stats
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
            == 1)
        .await
    );

    // A remote add reaches the store within seconds although the poll interval is 300 s.
    let id = emu
        .state
        .add_file(
            "/Pictures/Samsung Gallery/pushed.jpg",
            Content::Bytes(bytes::Bytes::from_static(b"pushed")),
        )
        .unwrap();
    let started = Instant::now();
    assert!(wait_for(Duration::from_secs(5), || store.get_by_item_id(&id).unwrap().is_some()).await);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(store.item_count().unwrap(), count_before + 1);

    // A deletion delta leaves out: the woken poll does not remove it …
    let local = store
        .insert(&NewItem::local(ROOT_INO, "local-only.jpg", ItemKind::File, 0))
        .unwrap();
    let ok = control(&emu, "/drop-next-delta-deletion", serde_json::json!({})).await;
    assert_eq!(ok["ok"], true);
    emu.state.delete_item(&id).unwrap();
    let polled = stats.wakes.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        wait_for(Duration::from_secs(5), || stats
            .wakes
            .load(std::sync::atomic::Ordering::SeqCst)
            > polled)
        .await
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        store.get_by_item_id(&id).unwrap().is_some(),
        "delta did not report the deletion"
    );
    // … the full re-list does, and keeps the local-only row.
    let outcome = engine.full_relist().await.unwrap();
    assert!(!outcome.changes.removed.is_empty());
    assert!(store.get_by_item_id(&id).unwrap().is_none());
    assert!(
        store.get(local).unwrap().is_some(),
        "local-only rows survive a full re-list"
    );
    listener.stop();
    engine.stop();
    let _ = timeout(Duration::from_secs(5), runner).await;
}

#[test]
fn full_relist_interval_is_12_polls_or_6_hours() {
    let mut s = SyncSettings::new("a");
    assert_eq!(s.full_relist_interval(), Some(Duration::from_secs(12 * 30)));
    s.poll_interval = Duration::from_secs(3600);
    assert_eq!(s.full_relist_interval(), Some(Duration::from_secs(6 * 3600)));
    s.full_relist_polls = 0;
    assert_eq!(s.full_relist_interval(), None);
}
