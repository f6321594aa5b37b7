//! Owns the arrival-rate estimate by which the two group commits (the
//! ledger's writer and the decision log's) decide whether waiting for more
//! work is worth it: only while it arrives fast.

use std::time::{Duration, Instant};

/// Below this mean time between arrivals traffic counts as fast, and a
/// group commit may wait for more.
pub const FAST_BELOW_GAP: Duration = Duration::from_micros(2_500);

/// The mean time between arrivals (an exponentially weighted average).
#[derive(Debug, Default)]
pub struct Arrivals {
    last: Option<Instant>,
    gap: Option<Duration>,
}

impl Arrivals {
    /// Counts one arrival at `at` (times may come slightly out of order:
    /// the latest seen is kept).
    pub fn arrived(&mut self, at: Instant) {
        if let Some(last) = self.last {
            // A pause longer than a second counts as one second, so one
            // quiet spell does not take long to forget.
            let gap = at
                .saturating_duration_since(last)
                .min(Duration::from_secs(1));
            self.gap = Some(match self.gap {
                None => gap,
                Some(g) => g.mul_f64(0.9) + gap.mul_f64(0.1),
            });
        }
        if self.last.is_none_or(|l| at > l) {
            self.last = Some(at);
        }
    }

    /// Whether arrivals are fast ([`FAST_BELOW_GAP`]); not before two
    /// arrivals were seen.
    pub fn fast(&self) -> bool {
        self.gap.is_some_and(|g| g < FAST_BELOW_GAP)
    }
}
