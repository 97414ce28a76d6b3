//! [`Foreground`]: whether a user is waiting for OneDrive right now (an app reading an original that is not on
//! this device), so that background work (the thumbnail pass) gives way.
//!
//! The read path holds a [`ForegroundGuard`] while it fetches; the guard's drop stamps the time. Background work
//! asks [`Foreground::is_busy`]: true while a guard is held and for [`Foreground::linger`] after the last one went
//! (a video player reads in bursts; the pause between two reads is not the end of the stream). Lock-free: two
//! atomics.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How long after the last foreground read background work still counts the user as busy.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(1_500);

/// The foreground signal of one mount. Share it as `Arc<Foreground>`.
#[derive(Debug)]
pub struct Foreground {
    active: AtomicUsize,
    /// Milliseconds since [`epoch`] when the last guard was dropped (0: never).
    last_end_ms: AtomicU64,
    linger: Duration,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

impl Default for Foreground {
    fn default() -> Self {
        Foreground::new(DEFAULT_LINGER)
    }
}

impl Foreground {
    pub fn new(linger: Duration) -> Foreground {
        epoch();
        Foreground {
            active: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
            linger,
        }
    }

    /// Marks foreground work until the guard is dropped.
    pub fn enter(self: &Arc<Self>) -> ForegroundGuard {
        self.active.fetch_add(1, Ordering::SeqCst);
        ForegroundGuard(self.clone())
    }

    /// Whether foreground work runs now or ended less than the linger time ago.
    pub fn is_busy(&self) -> bool {
        if self.active.load(Ordering::SeqCst) > 0 {
            return true;
        }
        let last = self.last_end_ms.load(Ordering::SeqCst);
        last != 0 && now_ms().saturating_sub(last) < self.linger.as_millis() as u64
    }
}

/// Held by the read path while it waits for OneDrive.
#[derive(Debug)]
pub struct ForegroundGuard(Arc<Foreground>);

impl Drop for ForegroundGuard {
    fn drop(&mut self) {
        self.0.last_end_ms.store(now_ms(), Ordering::SeqCst);
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_while_held_and_for_the_linger_after() {
        let f = Arc::new(Foreground::new(Duration::from_millis(100)));
        assert!(!f.is_busy());
        let g = f.enter();
        let h = f.enter();
        assert!(f.is_busy());
        drop(g);
        assert!(f.is_busy(), "one reader still reads");
        drop(h);
        assert!(f.is_busy(), "within the linger");
        std::thread::sleep(Duration::from_millis(150));
        assert!(!f.is_busy());
    }
}
