//! Time as a port, so that rules with a deadline (reservations and unconfirmed
//! orders that expire) are tested by moving a clock, not by waiting.

use std::{
    fmt,
    sync::{Mutex, PoisonError},
};

use time::{Duration, OffsetDateTime};

/// Where the current time comes from.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time, at the precision every store keeps (microseconds), so
    /// that an aggregate returned by a command equals the one read back later.
    fn now(&self) -> OffsetDateTime;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        truncate_to_micros(OffsetDateTime::now_utc())
    }
}

/// A clock that stands still until a test moves it.
#[derive(Debug)]
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    /// A clock showing `at` (truncated to microseconds).
    #[must_use]
    pub fn new(at: OffsetDateTime) -> Self {
        Self(Mutex::new(truncate_to_micros(at)))
    }

    /// Shows `at` from now on.
    pub fn set(&self, at: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = truncate_to_micros(at);
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *now = truncate_to_micros(*now + by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `at` without its sub-microsecond digits.
#[must_use]
pub fn truncate_to_micros(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(at.nanosecond() / 1_000 * 1_000)
        .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_keeps_microseconds() {
        assert_eq!(SystemClock.now().nanosecond() % 1_000, 0);
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = OffsetDateTime::UNIX_EPOCH + Duration::nanoseconds(1_500);
        let clock = ManualClock::new(start);
        assert_eq!(
            clock.now(),
            OffsetDateTime::UNIX_EPOCH + Duration::microseconds(1)
        );
        clock.advance(Duration::minutes(15));
        assert_eq!(
            clock.now(),
            OffsetDateTime::UNIX_EPOCH + Duration::microseconds(1) + Duration::minutes(15)
        );
        clock.set(OffsetDateTime::UNIX_EPOCH);
        assert_eq!(clock.now(), OffsetDateTime::UNIX_EPOCH);
    }
}
