//! What the content cache has measured of the link to OneDrive's content servers: the latency of a ranged request
//! (call to first body byte) and the link's transfer rate once bytes flow (all parts streaming at once together:
//! a part's own rate times the parts sharing the link with it), as moving averages shared by every reader of one
//! cache. The prefetcher sizes how many parts it keeps in flight from them: enough parts that a new request's
//! latency is hidden behind the transfer of those already answered (the bandwidth-delay product, in parts).

use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Weight of a new sample in the moving averages.
const ALPHA: f64 = 0.3;
/// Transfers shorter than this say little about the rate (mostly scheduling noise).
const MIN_RATE_SAMPLE: u64 = 256 * 1024;

#[derive(Debug, Default, Clone, Copy)]
struct Averages {
    /// Seconds from the request to its first body byte.
    latency: Option<f64>,
    /// Bytes per second through the link while bodies stream (all parts together).
    rate: Option<f64>,
}

/// Link measurements shared by the readers of one content cache.
#[derive(Debug, Default)]
pub struct LinkStats {
    averages: Mutex<Averages>,
    /// Bodies streaming now (see [`LinkStats::streaming`]).
    streams: AtomicUsize,
}

/// One body streaming, from its first byte until [`Stream::finished`] or drop.
pub struct Stream<'a> {
    stats: &'a LinkStats,
    sharing_at_start: usize,
}

impl Stream<'_> {
    /// `bytes` streamed in `elapsed` since the first byte: a sample of the link's rate, this body's rate times the
    /// mean number of bodies that shared the link with it (counted at its start and at its end).
    pub fn finished(self, bytes: u64, elapsed: Duration) {
        let sharing_at_end = self.stats.streams.load(Ordering::Relaxed);
        let sharing = (self.sharing_at_start + sharing_at_end) as f64 / 2.0;
        self.stats.record_transfer(bytes, elapsed.div_f64(sharing.max(1.0)));
    }
}

impl Drop for Stream<'_> {
    fn drop(&mut self) {
        self.stats.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

fn blend(old: Option<f64>, sample: f64) -> f64 {
    match old {
        Some(old) => old + ALPHA * (sample - old),
        None => sample,
    }
}

impl LinkStats {
    /// A request's time to its first body byte.
    pub fn record_latency(&self, latency: Duration) {
        let mut a = self.averages.lock();
        a.latency = Some(blend(a.latency, latency.as_secs_f64()));
    }

    /// A body's first byte arrived: it shares the link with the others streaming until the returned guard ends.
    pub fn streaming(&self) -> Stream<'_> {
        let sharing_at_start = self.streams.fetch_add(1, Ordering::Relaxed) + 1;
        Stream {
            stats: self,
            sharing_at_start,
        }
    }

    /// `bytes` went through the link in `elapsed` (alone, or the share of the time that was theirs).
    pub fn record_transfer(&self, bytes: u64, elapsed: Duration) {
        if bytes < MIN_RATE_SAMPLE || elapsed.is_zero() {
            return;
        }
        let mut a = self.averages.lock();
        a.rate = Some(blend(a.rate, bytes as f64 / elapsed.as_secs_f64()));
    }

    /// The measured latency and rate (bytes per second), once known.
    pub fn latency_and_rate(&self) -> (Option<Duration>, Option<f64>) {
        let a = *self.averages.lock();
        (a.latency.map(Duration::from_secs_f64), a.rate)
    }

    /// Parts of `part_size` bytes to keep in flight ahead of a sequential reader: one streaming, plus as many as
    /// transfer while a request waits for its first byte, plus one spare; within `[min, max]`, `min` before
    /// anything is measured.
    pub fn parts_in_flight(&self, part_size: u64, min: usize, max: usize) -> usize {
        let a = *self.averages.lock();
        let (Some(latency), Some(rate)) = (a.latency, a.rate) else {
            return min;
        };
        let part_time = part_size as f64 / rate.max(1.0);
        let hidden = (latency / part_time).ceil();
        let wanted = if hidden.is_finite() { hidden as usize + 2 } else { max };
        wanted.clamp(min, max.max(min))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn parts_cover_the_latency_at_the_measured_rate() {
        let s = LinkStats::default();
        assert_eq!(s.parts_in_flight(8 * MIB, 4, 16), 4, "nothing measured yet");
        // 1 GiB/s: an 8 MiB part takes ~7.8 ms; 20 ms of latency hides behind 3 parts, + 2.
        s.record_latency(Duration::from_millis(20));
        s.record_transfer(1024 * MIB, Duration::from_secs(1));
        assert_eq!(s.parts_in_flight(8 * MIB, 4, 16), 5);
        assert_eq!(s.parts_in_flight(8 * MIB, 2, 16), 5);
        // A local link (0.2 ms): the minimum.
        let local = LinkStats::default();
        local.record_latency(Duration::from_micros(200));
        local.record_transfer(1024 * MIB, Duration::from_secs(1));
        assert_eq!(local.parts_in_flight(8 * MIB, 4, 16), 4);
        // 100 ms at 1 GiB/s: capped.
        let far = LinkStats::default();
        far.record_latency(Duration::from_millis(100));
        far.record_transfer(1024 * MIB, Duration::from_secs(1));
        assert_eq!(far.parts_in_flight(8 * MIB, 4, 16), 15);
        assert_eq!(far.parts_in_flight(8 * MIB, 4, 8), 8);
    }

    #[test]
    fn averages_move_towards_new_samples_and_ignore_tiny_transfers() {
        let s = LinkStats::default();
        s.record_latency(Duration::from_millis(10));
        s.record_latency(Duration::from_millis(20));
        let (latency, rate) = s.latency_and_rate();
        let ms = latency.unwrap().as_secs_f64() * 1000.0;
        assert!((ms - 13.0).abs() < 0.01, "{ms} ms");
        assert_eq!(rate, None);
        s.record_transfer(1000, Duration::from_millis(1));
        assert_eq!(
            s.latency_and_rate().1,
            None,
            "a 1000-byte transfer is not a rate sample"
        );
        s.record_transfer(100 * MIB, Duration::from_secs(1));
        assert_eq!(s.latency_and_rate().1, Some(100.0 * MIB as f64));
    }

    /// Four parts streaming at once at 250 MiB/s each is a 1 GiB/s link: sized from one part's rate, 20 ms of
    /// latency would look hidden behind a single part and the reader would keep too few in flight.
    #[test]
    fn parts_sharing_the_link_measure_the_link_not_the_part() {
        let s = LinkStats::default();
        s.record_latency(Duration::from_millis(20));
        let streams: Vec<_> = (0..4).map(|_| s.streaming()).collect();
        for stream in streams {
            stream.finished(256 * MIB, Duration::from_secs(1));
        }
        let rate = s.latency_and_rate().1.unwrap();
        // The first sample saw 4 at its start and at its end, the last 4 at its start and 1 at its end.
        assert!(
            rate > 600.0 * MIB as f64 && rate <= 1024.0 * MIB as f64,
            "{} MiB/s",
            rate / MIB as f64
        );
        assert!(s.parts_in_flight(8 * MIB, 2, 16) >= 4);
        assert_eq!(s.streams.load(Ordering::Relaxed), 0, "every stream ended");
    }
}
