//! The socket.io change-notification channel of OneDrive
//! (<https://learn.microsoft.com/en-us/onedrive/developer/rest-api/api/subscriptions_socketio>): `GET /me/drive/root/subscriptions/
//! socketIo` gives `{id, notificationUrl, expirationDateTime}`; [`NotificationChannel::run`] connects a websocket
//! to `{scheme}://{host}/socket.io/?EIO=4&transport=websocket&{query of notificationUrl}` (AB's raw recipe of the
//! documented "split at `/callback?`"), joins the default namespace, the URL's path as namespace and
//! `/notifications` (`40`, `40/notifications,`), answers Engine.IO pings (`2` → `3`) and reports every `notification` event. It fetches a
//! fresh endpoint [`ChannelSettings::renew_before`] ahead of `expirationDateTime` and reconnects, reconnects with
//! backoff when the socket closes or stays silent for `pingInterval + pingTimeout`, and reports
//! [`ChannelEvent::Unavailable`] (then retries rarely) when the service does not offer the channel.
//!
//! The notificationUrl's query is a credential: it is never logged (only scheme and host are), and `ws://` is
//! accepted for loopback hosts only (`wss://` otherwise, rustls with the system's roots).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde::Deserialize;
use thiserror::Error;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use super::endpoints::is_loopback_url;
use super::error::GraphError;
use super::graph::GraphClient;
use super::http::{redact, UrlKind};

/// The namespace AB's recipe joins (see the module note).
pub const DEFAULT_NAMESPACE: &str = "/notifications";

/// What `GET …/root/subscriptions/socketIo` answers. `Debug` hides the URL's query.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SocketIoEndpoint {
    pub id: String,
    pub notification_url: String,
    #[serde(default)]
    pub expiration_date_time: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for SocketIoEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketIoEndpoint")
            .field("id", &self.id)
            .field(
                "notification_url",
                &redact(&self.notification_url, UrlKind::PreAuthenticated),
            )
            .field("expiration_date_time", &self.expiration_date_time)
            .finish()
    }
}

#[derive(Debug, Error)]
pub enum NotifyError {
    #[error("the service does not offer socket.io notifications: {0}")]
    NotOffered(GraphError),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error("unusable notification URL: {0}")]
    BadUrl(String),
    #[error("websocket: {0}")]
    Socket(String),
    #[error("socket.io handshake: {0}")]
    Handshake(String),
}

/// Where the endpoint comes from (the Graph client; tests may substitute).
#[async_trait]
pub trait EndpointSource: Send + Sync {
    async fn socket_io_endpoint(&self) -> Result<SocketIoEndpoint, GraphError>;
}

#[async_trait]
impl EndpointSource for GraphClient {
    async fn socket_io_endpoint(&self) -> Result<SocketIoEndpoint, GraphError> {
        self.call_json(&self.graph_request(Method::GET, "/me/drive/root/subscriptions/socketIo"))
            .await
    }
}

/// Whether an error of the endpoint request means "this service does not offer the channel" (as opposed to
/// offline, throttled or signed out, which are retried).
pub fn is_not_offered(e: &GraphError) -> bool {
    match e {
        GraphError::NotFound { .. } | GraphError::InvalidName { .. } => true,
        GraphError::Service { status, .. } => matches!(status, 400 | 403 | 405 | 501),
        _ => false,
    }
}

/// What the channel reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelEvent {
    /// A (re)connection is up; changes made while disconnected were not notified.
    Connected,
    /// Something changed on the drive: run delta.
    Notification,
    /// The service does not offer the channel (polling alone must do).
    Unavailable,
}

/// Timings of the channel.
#[derive(Clone, Debug)]
pub struct ChannelSettings {
    /// Fetch a new endpoint this long before `expirationDateTime` (AB: 120 s).
    pub renew_before: Duration,
    /// First reconnection delay after a failure; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// After [`ChannelEvent::Unavailable`], ask again after this long.
    pub unavailable_retry: Duration,
    /// Connecting and receiving the Engine.IO open packet.
    pub handshake_timeout: Duration,
    /// Renew after this long when the endpoint has no `expirationDateTime`.
    pub renew_without_expiry: Duration,
}

impl Default for ChannelSettings {
    fn default() -> Self {
        ChannelSettings {
            renew_before: Duration::from_secs(120),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            unavailable_retry: Duration::from_secs(3600),
            handshake_timeout: Duration::from_secs(15),
            renew_without_expiry: Duration::from_secs(3600),
        }
    }
}

/// The websocket URL and Socket.IO namespace of a notificationUrl.
#[derive(Clone, PartialEq, Eq)]
pub struct WebsocketTarget {
    pub url: Url,
    /// The URL's path before `/callback` (`/notifications`), or none for the default namespace only.
    pub namespace: Option<String>,
}

impl std::fmt::Debug for WebsocketTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebsocketTarget")
            .field("url", &redact(self.url.as_str(), UrlKind::PreAuthenticated))
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// Splits a notificationUrl at `/callback?` into the websocket URL (`…/socket.io/?EIO=4&transport=websocket&…`)
/// and the namespace; `http` only for loopback hosts.
pub fn websocket_target(notification_url: &str) -> Result<WebsocketTarget, NotifyError> {
    let (base, query) = match notification_url.split_once("/callback?") {
        Some((b, q)) => (b, q),
        None => match notification_url.split_once('?') {
            Some((b, q)) => (b.trim_end_matches("/callback"), q),
            None => (notification_url, ""),
        },
    };
    let base = Url::parse(base).map_err(|e| NotifyError::BadUrl(format!("not a URL ({e})")))?;
    let scheme = match base.scheme() {
        "https" | "wss" => "wss",
        "http" | "ws" if is_loopback_url(&base) => "ws",
        "http" | "ws" => {
            return Err(NotifyError::BadUrl(
                "plain http is accepted only for loopback hosts".into(),
            ))
        }
        other => return Err(NotifyError::BadUrl(format!("unsupported scheme {other}"))),
    };
    let host = base.host_str().ok_or_else(|| NotifyError::BadUrl("no host".into()))?;
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let port = base.port().map(|p| format!(":{p}")).unwrap_or_default();
    let mut ws = format!("{scheme}://{host}{port}/socket.io/?EIO=4&transport=websocket");
    if !query.is_empty() {
        ws.push('&');
        ws.push_str(query);
    }
    let url = Url::parse(&ws).map_err(|e| NotifyError::BadUrl(format!("websocket URL ({e})")))?;
    let path = base.path().trim_end_matches('/');
    Ok(WebsocketTarget {
        url,
        namespace: (!path.is_empty()).then(|| path.to_string()),
    })
}

/// One Engine.IO / Socket.IO text frame, as far as a notification client cares.
#[derive(Clone, Debug, PartialEq)]
pub enum Packet {
    Open {
        ping_interval: Duration,
        ping_timeout: Duration,
    },
    Close,
    Ping,
    Pong,
    Connected {
        namespace: String,
    },
    Disconnected {
        namespace: String,
    },
    ConnectError {
        namespace: String,
    },
    Event {
        namespace: String,
        name: Option<String>,
    },
    Other,
}

/// Parses a text frame (`0{…}`, `2`, `40/ns,{…}`, `42/ns,["notification","…"]`, `42["…"]`, …).
pub fn parse_packet(text: &str) -> Packet {
    let mut chars = text.chars();
    match chars.next() {
        Some('0') => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Open {
                ping_interval: Option<u64>,
                ping_timeout: Option<u64>,
            }
            let open: Option<Open> = serde_json::from_str(&text[1..]).ok();
            Packet::Open {
                ping_interval: Duration::from_millis(open.as_ref().and_then(|o| o.ping_interval).unwrap_or(25_000)),
                ping_timeout: Duration::from_millis(open.as_ref().and_then(|o| o.ping_timeout).unwrap_or(20_000)),
            }
        }
        Some('1') => Packet::Close,
        Some('2') => Packet::Ping,
        Some('3') => Packet::Pong,
        Some('4') => {
            let kind = chars.next();
            let rest = &text[text.len().min(2)..];
            let (namespace, rest) = match rest.strip_prefix('/') {
                Some(_) => match rest.split_once(',') {
                    Some((ns, r)) => (ns.to_string(), r),
                    None => (rest.to_string(), ""),
                },
                None => ("/".to_string(), rest),
            };
            match kind {
                Some('0') => Packet::Connected { namespace },
                Some('1') => Packet::Disconnected { namespace },
                Some('4') => Packet::ConnectError { namespace },
                Some('2') => {
                    let payload = rest.trim_start_matches(|c: char| c.is_ascii_digit());
                    let name = serde_json::from_str::<Vec<serde_json::Value>>(payload)
                        .ok()
                        .and_then(|v| v.first().and_then(|n| n.as_str()).map(str::to_string));
                    Packet::Event { namespace, name }
                }
                _ => Packet::Other,
            }
        }
        _ => Packet::Other,
    }
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SessionEnd {
    /// Time to fetch a new endpoint (expiry near).
    Renew,
    /// Closed by the service or the network.
    Closed,
    /// Nothing heard for pingInterval + pingTimeout.
    Silent,
}

/// Callback for [`ChannelEvent`]s.
pub type EventHook = Arc<dyn Fn(ChannelEvent) + Send + Sync>;

/// The notification channel (see the module note).
pub struct NotificationChannel {
    source: Arc<dyn EndpointSource>,
    settings: ChannelSettings,
}

impl NotificationChannel {
    pub fn new(source: Arc<dyn EndpointSource>, settings: ChannelSettings) -> NotificationChannel {
        NotificationChannel { source, settings }
    }

    /// Runs until the task is aborted: fetch the endpoint, connect, report events, renew, reconnect.
    pub async fn run(&self, on_event: EventHook) {
        let mut failures: u32 = 0;
        loop {
            let endpoint = match self.source.socket_io_endpoint().await {
                Ok(e) => e,
                Err(e) if is_not_offered(&e) => {
                    tracing::info!(error = %e, "OneDrive offers no socket.io notifications; polling only");
                    on_event(ChannelEvent::Unavailable);
                    tokio::time::sleep(self.settings.unavailable_retry).await;
                    continue;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let wait = self.backoff(failures);
                    tracing::debug!(error = %e, wait_ms = wait.as_millis() as u64, "cannot get the notification endpoint");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            match self.session(&endpoint, &on_event).await {
                Ok((end, connected)) => {
                    if connected {
                        failures = 0;
                    }
                    if end != SessionEnd::Renew {
                        failures = failures.saturating_add(1);
                        let wait = self.backoff(failures);
                        tracing::info!(reason = ?end, wait_ms = wait.as_millis() as u64, "notification channel lost; reconnecting");
                        tokio::time::sleep(wait).await;
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let wait = self.backoff(failures);
                    tracing::info!(error = %e, wait_ms = wait.as_millis() as u64, "notification channel failed; reconnecting");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        self.settings
            .min_backoff
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
            .min(self.settings.max_backoff)
    }

    /// When to fetch a new endpoint: `renew_before` ahead of expiry, or halfway there when the lifetime is short.
    fn renew_at(&self, endpoint: &SocketIoEndpoint) -> Instant {
        let remaining = match endpoint.expiration_date_time {
            Some(exp) => (exp - Utc::now()).to_std().unwrap_or_default(),
            None => return Instant::now() + self.settings.renew_without_expiry,
        };
        let wait = if remaining > self.settings.renew_before * 2 {
            remaining - self.settings.renew_before
        } else {
            remaining / 2
        };
        Instant::now() + wait.max(Duration::from_millis(500))
    }

    /// One websocket connection; returns how it ended and whether the Socket.IO connect succeeded.
    async fn session(
        &self,
        endpoint: &SocketIoEndpoint,
        on_event: &EventHook,
    ) -> Result<(SessionEnd, bool), NotifyError> {
        let target = websocket_target(&endpoint.notification_url)?;
        let shown = redact(target.url.as_str(), UrlKind::PreAuthenticated);
        let renew = self.renew_at(endpoint);
        let connect = tokio_tungstenite::connect_async(target.url.as_str());
        let (mut ws, _) = tokio::time::timeout(self.settings.handshake_timeout, connect)
            .await
            .map_err(|_| NotifyError::Socket("connect timed out".into()))?
            .map_err(|e| NotifyError::Socket(describe_ws_error(&e)))?;
        let first = tokio::time::timeout(self.settings.handshake_timeout, ws.next())
            .await
            .map_err(|_| NotifyError::Handshake("no Engine.IO open packet".into()))?;
        let (ping_interval, ping_timeout) = match first {
            Some(Ok(Message::Text(t))) => match parse_packet(&t) {
                Packet::Open {
                    ping_interval,
                    ping_timeout,
                } => (ping_interval, ping_timeout),
                _ => {
                    return Err(NotifyError::Handshake(
                        "the first frame is not an Engine.IO open packet".into(),
                    ))
                }
            },
            Some(Ok(_)) => return Err(NotifyError::Handshake("unexpected first frame".into())),
            Some(Err(e)) => return Err(NotifyError::Socket(describe_ws_error(&e))),
            None => return Err(NotifyError::Handshake("closed before the open packet".into())),
        };
        let silence = ping_interval + ping_timeout;
        // The default namespace, the URL's path as the documented socket.io client would, and `/notifications`
        // as AB's recipe does (a namespace the service does not have is refused with `44`, which is harmless).
        let mut joins = vec!["40".to_string()];
        for ns in target.namespace.iter().map(String::as_str).chain([DEFAULT_NAMESPACE]) {
            let join = format!("40{ns},");
            if !joins.contains(&join) {
                joins.push(join);
            }
        }
        for j in joins {
            ws.send(Message::Text(j.into()))
                .await
                .map_err(|e| NotifyError::Socket(describe_ws_error(&e)))?;
        }
        tracing::debug!(url = %shown, ping_ms = ping_interval.as_millis() as u64, "notification websocket open");
        let mut connected = false;
        loop {
            let frame = tokio::select! {
                f = tokio::time::timeout(silence, ws.next()) => f,
                _ = tokio::time::sleep_until(renew) => {
                    let _ = ws.close(None).await;
                    tracing::debug!("renewing the notification endpoint");
                    return Ok((SessionEnd::Renew, connected));
                }
            };
            let text = match frame {
                Err(_) => return Ok((SessionEnd::Silent, connected)),
                Ok(None) | Ok(Some(Ok(Message::Close(_)))) => return Ok((SessionEnd::Closed, connected)),
                Ok(Some(Err(e))) => {
                    tracing::debug!(error = %describe_ws_error(&e), "notification websocket error");
                    return Ok((SessionEnd::Closed, connected));
                }
                Ok(Some(Ok(Message::Text(t)))) => t,
                Ok(Some(Ok(_))) => continue,
            };
            match parse_packet(&text) {
                Packet::Ping => {
                    if ws.send(Message::Text("3".into())).await.is_err() {
                        return Ok((SessionEnd::Closed, connected));
                    }
                }
                Packet::Close => return Ok((SessionEnd::Closed, connected)),
                Packet::Connected { namespace } => {
                    if !connected {
                        connected = true;
                        tracing::info!(url = %shown, namespace = %namespace, "notification channel connected");
                        on_event(ChannelEvent::Connected);
                    }
                }
                Packet::Disconnected { namespace } => {
                    tracing::debug!(namespace = %namespace, "the service closed the notification namespace");
                    return Ok((SessionEnd::Closed, connected));
                }
                Packet::ConnectError { namespace } => {
                    tracing::debug!(namespace = %namespace, "namespace refused");
                }
                Packet::Event { name, .. } => {
                    if name.as_deref() == Some("notification") {
                        tracing::debug!("change notification");
                        on_event(ChannelEvent::Notification);
                    }
                }
                Packet::Open { .. } | Packet::Pong | Packet::Other => {}
            }
        }
    }
}

/// A websocket error without any URL (the query is a credential).
fn describe_ws_error(e: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::Http(resp) => format!("HTTP {}", resp.status()),
        E::Url(_) => "bad websocket URL".into(),
        E::Io(io) => format!("I/O: {io}"),
        E::Tls(t) => format!("TLS: {t}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_documented_notification_url() {
        let t = websocket_target("https://f3hb0mpua.svc.ms/zbaehwg/callback?snthgk=1ff3-2345672zz831837523").unwrap();
        assert_eq!(
            t.url.as_str(),
            "wss://f3hb0mpua.svc.ms/socket.io/?EIO=4&transport=websocket&snthgk=1ff3-2345672zz831837523"
        );
        assert_eq!(t.namespace.as_deref(), Some("/zbaehwg"));
        let t = websocket_target("http://127.0.0.1:8080/notifications/callback?snthgk=ab").unwrap();
        assert_eq!(
            t.url.as_str(),
            "ws://127.0.0.1:8080/socket.io/?EIO=4&transport=websocket&snthgk=ab"
        );
        assert_eq!(t.namespace.as_deref(), Some("/notifications"));
        assert!(matches!(
            websocket_target("http://example.com/n/callback?snthgk=ab"),
            Err(NotifyError::BadUrl(_))
        ));
        assert!(!format!("{t:?}").contains("snthgk"), "Debug hides the credential");
    }

    #[test]
    fn parses_engine_io_and_socket_io_frames() {
        assert_eq!(
            parse_packet(r#"0{"sid":"x","upgrades":[],"pingInterval":300,"pingTimeout":200}"#),
            Packet::Open {
                ping_interval: Duration::from_millis(300),
                ping_timeout: Duration::from_millis(200)
            }
        );
        assert_eq!(parse_packet("2"), Packet::Ping);
        assert_eq!(parse_packet("1"), Packet::Close);
        assert_eq!(
            parse_packet(r#"40{"sid":"a"}"#),
            Packet::Connected { namespace: "/".into() }
        );
        assert_eq!(
            parse_packet(r#"40/notifications,{"sid":"a"}"#),
            Packet::Connected {
                namespace: "/notifications".into()
            }
        );
        assert_eq!(
            parse_packet(r#"42/notifications,["notification","{\"a\":1}"]"#),
            Packet::Event {
                namespace: "/notifications".into(),
                name: Some("notification".into())
            }
        );
        assert_eq!(
            parse_packet(r#"4212["notification",{}]"#),
            Packet::Event {
                namespace: "/".into(),
                name: Some("notification".into())
            }
        );
        assert_eq!(
            parse_packet("41/notifications,"),
            Packet::Disconnected {
                namespace: "/notifications".into()
            }
        );
    }

    #[test]
    fn renews_ahead_of_expiry() {
        let channel = NotificationChannel::new(Arc::new(NoSource), ChannelSettings::default());
        let mut ep = SocketIoEndpoint {
            id: "i".into(),
            notification_url: "http://127.0.0.1:1/n/callback?snthgk=x".into(),
            expiration_date_time: Some(Utc::now() + chrono::Duration::seconds(3600)),
        };
        let wait = channel.renew_at(&ep) - Instant::now();
        assert!(
            wait > Duration::from_secs(3470) && wait <= Duration::from_secs(3480),
            "{wait:?}"
        );
        ep.expiration_date_time = Some(Utc::now() + chrono::Duration::seconds(10));
        let wait = channel.renew_at(&ep) - Instant::now();
        assert!(
            wait > Duration::from_secs(4) && wait <= Duration::from_secs(5),
            "{wait:?}"
        );
        assert!(!format!("{ep:?}").contains("snthgk"));
    }

    #[test]
    fn not_offered_is_told_from_transient_failures() {
        use crate::remote::error::ErrorCodes;
        let svc = |status| GraphError::Service {
            status,
            codes: ErrorCodes(vec!["notSupported".into()]),
            message: String::new(),
        };
        assert!(is_not_offered(&svc(501)));
        assert!(is_not_offered(&svc(400)));
        assert!(!is_not_offered(&svc(500)));
        assert!(!is_not_offered(&GraphError::Network("down".into())));
    }

    #[tokio::test]
    async fn wss_goes_through_rustls_and_fails_cleanly_on_a_non_tls_peer() {
        // A peer that accepts and hangs up: the TLS client is built (ring provider, native roots) and the
        // handshake fails as an error, not a panic.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                drop(s);
            }
        });
        let url = format!("wss://localhost:{port}/socket.io/?EIO=4&transport=websocket");
        let err = tokio_tungstenite::connect_async(url).await.unwrap_err();
        assert!(!describe_ws_error(&err).contains("EIO"), "errors never carry the URL");
    }

    struct NoSource;
    #[async_trait]
    impl EndpointSource for NoSource {
        async fn socket_io_endpoint(&self) -> Result<SocketIoEndpoint, GraphError> {
            Err(GraphError::Network("none".into()))
        }
    }
}
