//! [`NotificationListener`]: turns the socket.io channel's events ([`crate::remote::notifications`]) into
//! [`SyncEngine::wake`] calls, so a change made on OneDrive reaches the mount within seconds instead of at the
//! next poll. Throttled: the first event of a quiet period wakes the engine at once, further events within
//! [`DEBOUNCE`] become one more wake at its end (so the last change of a burst is never missed). Each
//! (re)connection also wakes the engine once, as changes made while disconnected were not notified. When the
//! service does not offer the channel nothing happens: the engine's polling goes on as before.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::engine::SyncEngine;
use crate::remote::notifications::{ChannelEvent, NotificationChannel};

/// At most one wake per this long (plus a trailing one for a burst).
pub const DEBOUNCE: Duration = Duration::from_secs(1);

/// What the listener calls to make the engine poll.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// Counters for `status` and tests.
#[derive(Debug, Default)]
pub struct ListenerStats {
    pub notifications: AtomicU64,
    pub wakes: AtomicU64,
    pub connections: AtomicU64,
    /// The service said it does not offer the channel (most recent answer).
    pub unavailable: AtomicBool,
}

/// The running listener; [`NotificationListener::stop`] (or drop) ends it.
pub struct NotificationListener {
    channel_task: JoinHandle<()>,
    wake_task: JoinHandle<()>,
    stats: Arc<ListenerStats>,
}

impl NotificationListener {
    /// Starts listening and waking `engine` (see the module note). Needs a tokio runtime.
    pub fn start(channel: NotificationChannel, engine: Arc<SyncEngine>) -> NotificationListener {
        NotificationListener::start_with(channel, Arc::new(move || engine.wake()), DEBOUNCE)
    }

    /// As [`NotificationListener::start`] with any wake action and throttle period.
    pub fn start_with(channel: NotificationChannel, wake: Wake, debounce: Duration) -> NotificationListener {
        let stats = Arc::new(ListenerStats::default());
        let pending = Arc::new(Notify::new());
        let hook = {
            let (stats, pending) = (stats.clone(), pending.clone());
            Arc::new(move |event: ChannelEvent| match event {
                ChannelEvent::Notification => {
                    stats.notifications.fetch_add(1, Ordering::SeqCst);
                    pending.notify_one();
                }
                ChannelEvent::Connected => {
                    stats.connections.fetch_add(1, Ordering::SeqCst);
                    stats.unavailable.store(false, Ordering::SeqCst);
                    pending.notify_one();
                }
                ChannelEvent::Unavailable => stats.unavailable.store(true, Ordering::SeqCst),
            })
        };
        let channel_task = tokio::spawn(async move { channel.run(hook).await });
        let wake_task = spawn_throttled_waker(pending, wake, debounce, stats.clone());
        NotificationListener {
            channel_task,
            wake_task,
            stats,
        }
    }

    pub fn stats(&self) -> Arc<ListenerStats> {
        self.stats.clone()
    }

    /// Closes the channel and stops waking.
    pub fn stop(&self) {
        self.channel_task.abort();
        self.wake_task.abort();
    }
}

impl Drop for NotificationListener {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Calls `wake` at once for the first `pending` signal, then at most once per `debounce` (see the module note).
fn spawn_throttled_waker(
    pending: Arc<Notify>,
    wake: Wake,
    debounce: Duration,
    stats: Arc<ListenerStats>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            pending.notified().await;
            stats.wakes.fetch_add(1, Ordering::SeqCst);
            wake();
            // Signals during this pause leave one permit: one trailing wake for the whole burst.
            tokio::time::sleep(debounce).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::error::GraphError;
    use crate::remote::notifications::{ChannelSettings, EndpointSource, SocketIoEndpoint};
    use async_trait::async_trait;

    struct NotOffered;
    #[async_trait]
    impl EndpointSource for NotOffered {
        async fn socket_io_endpoint(&self) -> Result<SocketIoEndpoint, GraphError> {
            Err(GraphError::Service {
                status: 501,
                codes: Default::default(),
                message: "no".into(),
            })
        }
    }

    #[tokio::test]
    async fn a_burst_wakes_at_once_and_once_more_at_the_end() {
        let wakes = Arc::new(AtomicU64::new(0));
        let w = wakes.clone();
        let pending = Arc::new(Notify::new());
        let stats = Arc::new(ListenerStats::default());
        let task = spawn_throttled_waker(
            pending.clone(),
            Arc::new(move || {
                w.fetch_add(1, Ordering::SeqCst);
            }),
            Duration::from_millis(200),
            stats.clone(),
        );
        pending.notify_one();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(wakes.load(Ordering::SeqCst), 1, "the first signal wakes at once");
        for _ in 0..10 {
            pending.notify_one();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            wakes.load(Ordering::SeqCst),
            1,
            "the burst waits for the throttle period"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(wakes.load(Ordering::SeqCst), 2, "one trailing wake for the whole burst");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(wakes.load(Ordering::SeqCst), 2, "quiet afterwards");
        assert_eq!(stats.wakes.load(Ordering::SeqCst), 2);
        task.abort();
    }

    #[tokio::test]
    async fn a_service_without_the_channel_never_wakes_the_engine() {
        let wakes = Arc::new(AtomicU64::new(0));
        let w = wakes.clone();
        let listener = NotificationListener::start_with(
            NotificationChannel::new(Arc::new(NotOffered), ChannelSettings::default()),
            Arc::new(move || {
                w.fetch_add(1, Ordering::SeqCst);
            }),
            Duration::from_millis(10),
        );
        let stats = listener.stats();
        for _ in 0..100 {
            if stats.unavailable.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(stats.unavailable.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(wakes.load(Ordering::SeqCst), 0);
        listener.stop();
    }
}
