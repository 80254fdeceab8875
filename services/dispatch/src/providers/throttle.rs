//! A provider's pace: a token bucket of so many messages a second (a 10DLC number
//! takes about one, a toll-free number three, a short code a hundred). The sender
//! asks before it marks an attempt `sending`; an attempt without a token stays
//! queued until one is due, so a backlog waits in the table, never in a hand-off
//! and never dropped.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock as _, MonotonicClock};
use governor::{DefaultDirectRateLimiter, Quota};

/// A token bucket shared by every hand-off to one provider.
#[derive(Clone)]
pub struct Throttle {
    limiter: Arc<DefaultDirectRateLimiter>,
    clock: MonotonicClock,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle").finish_non_exhaustive()
    }
}

impl Throttle {
    /// At most `per_second` messages a second, in bursts of as many.
    pub fn per_second(per_second: NonZeroU32) -> Self {
        Self {
            limiter: Arc::new(DefaultDirectRateLimiter::direct(Quota::per_second(
                per_second,
            ))),
            clock: MonotonicClock,
        }
    }

    /// Takes a token, or says how long until one is due.
    pub fn admit(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_the_rate_passes_and_the_next_waits() {
        let throttle = Throttle::per_second(NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN));
        assert!(throttle.admit().is_ok());
        assert!(throttle.admit().is_ok());
        let wait = throttle.admit().err();
        assert!(
            wait.is_some_and(|w| w > Duration::ZERO && w <= Duration::from_millis(500)),
            "{wait:?}"
        );
    }
}
