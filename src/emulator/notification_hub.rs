//! [`SocketIoHub`]: the state of the socket.io notification channel (see [`super::socketio`]): whether it is
//! offered, the subscriptions issued, the change and drop signals the live connections follow, and counters.

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// How a control drops the live connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropMode {
    /// Close the TCP connection at once (no close frame).
    Close,
    /// Keep the connection open but send nothing more (no pings, no events): a silent network.
    Silence,
}

#[derive(Clone, Debug)]
pub(crate) struct Subscription {
    pub(crate) id: String,
    pub(crate) expires: DateTime<Utc>,
}

/// The channel's state, kept in the emulator's state.
pub struct SocketIoHub {
    pub(crate) enabled: AtomicBool,
    pub(crate) lifetime: Mutex<Duration>,
    pub(crate) ping: Mutex<(Duration, Duration)>,
    /// `snthgk` → subscription.
    pub(crate) subscriptions: Mutex<HashMap<String, Subscription>>,
    /// Journal sequence of the last change seen.
    pub(crate) changes: watch::Sender<u64>,
    /// Bumped (with the mode) to drop every live connection.
    pub(crate) drops: watch::Sender<(u64, DropMode)>,
    pub(crate) connections: AtomicUsize,
    pub(crate) notifications_sent: AtomicU64,
}

impl Default for SocketIoHub {
    fn default() -> Self {
        SocketIoHub {
            enabled: AtomicBool::new(true),
            lifetime: Mutex::new(Duration::from_secs(24 * 3600)),
            ping: Mutex::new((Duration::from_millis(25_000), Duration::from_millis(20_000))),
            subscriptions: Mutex::new(HashMap::new()),
            changes: watch::channel(0).0,
            drops: watch::channel((0, DropMode::Close)).0,
            connections: AtomicUsize::new(0),
            notifications_sent: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for SocketIoHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketIoHub")
            .field("enabled", &self.enabled.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl SocketIoHub {
    /// Offers or withdraws the channel; withdrawing closes the live connections.
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::SeqCst);
        if !enabled {
            self.drop_connections(DropMode::Close);
        }
    }
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }
    /// Lifetime of subscriptions issued from now on.
    pub fn set_lifetime(&self, lifetime: Duration) {
        *self.lifetime.lock() = lifetime;
    }
    /// Engine.IO heartbeat of connections opened from now on.
    pub fn set_ping(&self, interval: Duration, timeout: Duration) {
        *self.ping.lock() = (interval, timeout);
    }
    pub fn drop_connections(&self, mode: DropMode) {
        self.drops.send_modify(|(n, m)| {
            *n += 1;
            *m = mode;
        });
    }
    /// Live websocket connections.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
    /// `notification` events sent so far (all connections).
    pub fn notifications_sent(&self) -> u64 {
        self.notifications_sent.load(Ordering::SeqCst)
    }
    /// Subscriptions issued so far (expired ones included until pruned).
    pub fn subscriptions_issued(&self) -> usize {
        self.subscriptions.lock().len()
    }

    pub(crate) fn issue(&self) -> (String, Subscription) {
        let token = format!("{:04x}-{:024x}", rand::random::<u16>(), rand::random::<u128>() >> 32);
        let lifetime = chrono::Duration::from_std(*self.lifetime.lock()).unwrap_or_default();
        let sub = Subscription {
            id: format!("opaqueId-{:032x}", rand::random::<u128>()),
            expires: Utc::now() + lifetime,
        };
        let mut subs = self.subscriptions.lock();
        let now = Utc::now();
        subs.retain(|_, s| s.expires > now);
        subs.insert(token.clone(), sub.clone());
        (token, sub)
    }

    pub(crate) fn live_subscription(&self, token: &str) -> Option<Subscription> {
        self.subscriptions
            .lock()
            .get(token)
            .filter(|s| s.expires > Utc::now())
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_expire_and_are_pruned() {
        let hub = SocketIoHub::default();
        hub.set_lifetime(Duration::from_secs(0));
        let (old, _) = hub.issue();
        assert!(
            hub.live_subscription(&old).is_none(),
            "a zero lifetime is expired at once"
        );
        hub.set_lifetime(Duration::from_secs(60));
        let (token, sub) = hub.issue();
        assert_eq!(hub.live_subscription(&token).map(|s| s.id), Some(sub.id));
        assert_eq!(hub.subscriptions_issued(), 1, "the expired one was pruned");
        assert!(hub.live_subscription("nope").is_none());
    }

    #[test]
    fn disabling_drops_connections() {
        let hub = SocketIoHub::default();
        let mut drops = hub.drops.subscribe();
        drops.mark_unchanged();
        hub.set_enabled(false);
        assert!(!hub.enabled());
        assert!(drops.has_changed().unwrap());
        assert_eq!(drops.borrow().1, DropMode::Close);
    }
}
