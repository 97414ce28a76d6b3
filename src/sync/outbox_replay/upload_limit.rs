//! [`UploadLimit`]: how many uploads the [`super::OutboxReplayer`] keeps in flight at once, additive increase /
//! multiplicative decrease (the congestion control of TCP): the width halves (never below one) when the service
//! answered a request with throttling (429/503, counted by [`crate::remote::drive_api::DriveApi::throttle_answers`],
//! whether the request pipeline sat the pause out itself or gave up), and grows by `1 / width` per upload that
//! went through without one (about one more upload in flight per window of successes), up to a ceiling. The
//! pause a `Retry-After` asks for is still honoured by the pipeline's throttle gate, for every request; the
//! width only decides how many uploads queue behind it.

/// The in-flight bound of parallel uploads.
#[derive(Clone, Debug)]
pub(super) struct UploadLimit {
    width: f64,
    max: f64,
    /// The throttle count seen at the last adjustment.
    seen_throttles: u64,
}

impl UploadLimit {
    /// Starts at `start` uploads in flight, at most `max` (both at least 1).
    pub(super) fn new(start: usize, max: usize) -> Self {
        let max = max.max(1) as f64;
        Self {
            width: (start.max(1) as f64).min(max),
            max,
            seen_throttles: 0,
        }
    }

    /// How many uploads may be in flight now.
    pub(super) fn width(&self) -> usize {
        self.width.floor().max(1.0) as usize
    }

    /// Records one finished upload (`ok`: it went through) given the service's throttle count now: halves the
    /// width once when the count moved since the last adjustment (one burst of 429s answered to parallel uploads
    /// is one signal), else grows it after a success. Returns whether it halved.
    pub(super) fn finished(&mut self, ok: bool, throttles: u64) -> bool {
        if throttles != self.seen_throttles {
            self.seen_throttles = throttles;
            self.width = (self.width / 2.0).max(1.0);
            return true;
        }
        if ok {
            self.width = (self.width + 1.0 / self.width).min(self.max);
        }
        false
    }

    /// Takes the service's throttle count as the baseline (at the start of a pass: throttling of other requests
    /// between passes does not narrow the uploads of this one).
    pub(super) fn rebase(&mut self, throttles: u64) {
        self.seen_throttles = throttles;
    }
}

#[cfg(test)]
mod tests {
    use super::UploadLimit;

    #[test]
    fn halves_on_throttling_and_grows_slowly_on_success() {
        let mut l = UploadLimit::new(4, 8);
        assert_eq!(l.width(), 4);
        // One throttled burst halves once.
        assert!(l.finished(true, 3));
        assert_eq!(l.width(), 2);
        assert!(!l.finished(true, 3));
        // Growth: about one more per window of successes.
        for _ in 0..2 {
            l.finished(true, 3);
        }
        assert_eq!(l.width(), 3);
        // Never below one.
        for t in 4..20 {
            l.finished(false, t);
        }
        assert_eq!(l.width(), 1);
        // A ceiling.
        for _ in 0..1000 {
            l.finished(true, 19);
        }
        assert_eq!(l.width(), 8);
        // A failure without throttling neither grows nor shrinks it.
        assert!(!l.finished(false, 19));
        assert_eq!(l.width(), 8);
    }

    #[test]
    fn rebase_ignores_throttling_before_the_pass() {
        let mut l = UploadLimit::new(4, 8);
        l.rebase(10);
        assert!(!l.finished(true, 10));
        assert!(l.width() >= 4);
    }
}
