//! Where services read the time from.
//!
//! Production reads the system clock. Tests and the demo read a simulated clock:
//! either fixed (moved by hand) or accelerated, where simulated time runs `speed`
//! times faster than real time from a shared real-time epoch, so several processes
//! started with the same settings agree on "now".

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::{ConfigError, Env};

/// A source of the current instant.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant in this clock's time.
    fn now(&self) -> DateTime<Utc>;

    /// How long to wait in real time until this clock reads `at` (zero if past).
    fn real_wait_until(&self, at: DateTime<Utc>) -> Duration {
        (at - self.now()).to_std().unwrap_or(Duration::ZERO)
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until told to move.
#[derive(Debug, Clone)]
pub struct FixedClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl FixedClock {
    /// A clock reading `at`.
    pub fn new(at: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(at)),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: TimeDelta) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn real_wait_until(&self, _at: DateTime<Utc>) -> Duration {
        // Time only moves when a test moves it; waiting in real time would not help.
        Duration::ZERO
    }
}

/// Simulated time running `speed` times faster than real time.
///
/// Reads `start + (real_now - epoch) * speed`: every process given the same
/// `start`, `epoch` and `speed` reads the same simulated instant.
#[derive(Debug, Clone, Copy)]
pub struct AcceleratedClock {
    start: DateTime<Utc>,
    epoch: DateTime<Utc>,
    speed: f64,
}

impl AcceleratedClock {
    /// Simulated `start` at real instant `epoch`, running `speed` times faster.
    pub fn new(start: DateTime<Utc>, epoch: DateTime<Utc>, speed: f64) -> Self {
        Self {
            start,
            epoch,
            speed,
        }
    }

    fn at_real(&self, real: DateTime<Utc>) -> DateTime<Utc> {
        let elapsed_ms = (real - self.epoch).num_milliseconds() as f64;
        self.start + TimeDelta::milliseconds((elapsed_ms * self.speed) as i64)
    }
}

impl Clock for AcceleratedClock {
    fn now(&self) -> DateTime<Utc> {
        self.at_real(Utc::now())
    }

    fn real_wait_until(&self, at: DateTime<Utc>) -> Duration {
        self.real_wait_from(Utc::now(), at)
    }
}

impl AcceleratedClock {
    /// The real wait, from real instant `real_now`, until this clock reads `at`.
    fn real_wait_from(&self, real_now: DateTime<Utc>, at: DateTime<Utc>) -> Duration {
        let simulated_ms = (at - self.at_real(real_now)).num_milliseconds().max(0) as f64;
        Duration::from_millis((simulated_ms / self.speed) as u64)
    }
}

/// Which clock a service runs on, from `TOUCHPOINT_CLOCK`.
#[derive(Debug, Clone, PartialEq)]
pub enum ClockConfig {
    /// `system` (the default).
    System,
    /// `fixed`: reads `TOUCHPOINT_CLOCK_START` until moved.
    Fixed {
        /// The instant the clock reads.
        at: DateTime<Utc>,
    },
    /// `accelerated`: `TOUCHPOINT_CLOCK_START` at real `TOUCHPOINT_CLOCK_EPOCH`
    /// (default: now), `TOUCHPOINT_CLOCK_SPEED` times faster.
    Accelerated {
        /// Simulated instant at the epoch.
        start: DateTime<Utc>,
        /// Real instant the simulation started.
        epoch: DateTime<Utc>,
        /// Simulated seconds per real second.
        speed: f64,
    },
}

impl ClockConfig {
    /// Reads `TOUCHPOINT_CLOCK` and its companions.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mode = env.string("TOUCHPOINT_CLOCK", "system");
        let start = || {
            env.instant("TOUCHPOINT_CLOCK_START")?
                .ok_or_else(|| ConfigError {
                    var: "TOUCHPOINT_CLOCK_START".into(),
                    reason: "required by a fixed or accelerated clock".into(),
                })
        };
        match mode.as_str() {
            "system" => Ok(ClockConfig::System),
            "fixed" => Ok(ClockConfig::Fixed { at: start()? }),
            "accelerated" => {
                let speed: f64 =
                    env.parse("TOUCHPOINT_CLOCK_SPEED", 60.0, "a speed factor above 0")?;
                if !(speed.is_finite() && speed > 0.0) {
                    return Err(ConfigError {
                        var: "TOUCHPOINT_CLOCK_SPEED".into(),
                        reason: "expected a speed factor above 0".into(),
                    });
                }
                Ok(ClockConfig::Accelerated {
                    start: start()?,
                    epoch: env
                        .instant("TOUCHPOINT_CLOCK_EPOCH")?
                        .unwrap_or_else(Utc::now),
                    speed,
                })
            }
            _ => Err(ConfigError {
                var: "TOUCHPOINT_CLOCK".into(),
                reason: "expected system, fixed or accelerated".into(),
            }),
        }
    }

    /// Builds the clock.
    pub fn build(&self) -> SharedClock {
        match self {
            ClockConfig::System => Arc::new(SystemClock),
            ClockConfig::Fixed { at } => Arc::new(FixedClock::new(*at)),
            ClockConfig::Accelerated {
                start,
                epoch,
                speed,
            } => Arc::new(AcceleratedClock::new(*start, *epoch, *speed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instant(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let clock = FixedClock::new(instant("2026-03-01T12:00:00Z"));
        assert_eq!(clock.now(), instant("2026-03-01T12:00:00Z"));
        clock.advance(TimeDelta::days(2));
        assert_eq!(clock.now(), instant("2026-03-03T12:00:00Z"));
    }

    #[test]
    fn accelerated_clocks_with_the_same_settings_agree() {
        let start = instant("2026-01-05T09:00:00Z");
        let epoch = instant("2026-11-22T10:00:00Z");
        let a = AcceleratedClock::new(start, epoch, 3600.0);
        let b = AcceleratedClock::new(start, epoch, 3600.0);
        // Ten real seconds after the epoch is ten simulated hours after the start.
        let real = instant("2026-11-22T10:00:10Z");
        assert_eq!(a.at_real(real), instant("2026-01-05T19:00:00Z"));
        assert_eq!(a.at_real(real), b.at_real(real));
    }

    #[test]
    fn accelerated_wait_is_scaled_down() {
        let start = instant("2026-01-05T09:00:00Z");
        let epoch = instant("2026-11-22T10:00:00Z");
        let clock = AcceleratedClock::new(start, epoch, 1000.0);
        // At the epoch, 1000 simulated seconds away is one real second away.
        let wait = clock.real_wait_from(epoch, start + TimeDelta::seconds(1000));
        assert_eq!(wait, Duration::from_secs(1));
        // A past instant needs no wait.
        assert_eq!(
            clock.real_wait_from(epoch, start - TimeDelta::seconds(5)),
            Duration::ZERO
        );
    }

    #[test]
    fn clock_config_reads_accelerated_settings() -> Result<(), ConfigError> {
        let env = Env::from_pairs([
            ("TOUCHPOINT_CLOCK", "accelerated"),
            ("TOUCHPOINT_CLOCK_START", "2026-01-05T09:00:00Z"),
            ("TOUCHPOINT_CLOCK_EPOCH", "2026-11-22T10:00:00Z"),
            ("TOUCHPOINT_CLOCK_SPEED", "600"),
        ]);
        assert_eq!(
            ClockConfig::from_env(&env)?,
            ClockConfig::Accelerated {
                start: instant("2026-01-05T09:00:00Z"),
                epoch: instant("2026-11-22T10:00:00Z"),
                speed: 600.0
            }
        );
        Ok(())
    }
}
