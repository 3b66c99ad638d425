//! Throttling the routes that hash a password (sign-in, sign-up): each costs a
//! data service tens of milliseconds and 19 MiB, so they get a budget of
//! their own, whatever token the request carries.
//!
//! - **Per address** (its IPv4 address or IPv6 /64, see [`crate::client`]):
//!   `--sign-in-per-minute` attempts, sign-ups included, in bursts of as many.
//! - **Per account**: after [`FREE_FAILURES`] wrong passwords in a row for one
//!   email, each further attempt must wait 1 s, then 2 s, 4 s … up to
//!   [`MAX_BACKOFF`], counted from the last failure; a success clears it.
//!
//! The trade-off: guessing one account is slowed to one try per
//! [`MAX_BACKOFF`] from anywhere, yet nobody can lock its owner out for longer
//! than that: there is no lock-out, only a wait that never exceeds
//! [`MAX_BACKOFF`]. Waiting attempts are refused before identity is asked, so
//! they cost no hash.

use std::{
    collections::HashMap,
    net::IpAddr,
    num::NonZeroU32,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock as _};
use http::StatusCode;

use crate::problem::Problem;

/// Wrong passwords in a row for one email before attempts must wait.
pub const FREE_FAILURES: u32 = 5;

/// The longest an attempt for one email ever has to wait.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How many emails with recent failures are remembered at most; past it, the
/// oldest are forgotten first.
const REMEMBERED: usize = 100_000;

/// The sign-in and sign-up throttle shared by every request of an edge.
#[derive(Debug, Clone)]
pub struct SignInThrottle {
    by_address: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    failures: Arc<Mutex<HashMap<String, Failures>>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    /// Until when the next attempt must wait, if it must.
    fn wait_until(self) -> Option<Instant> {
        let over = self.count.checked_sub(FREE_FAILURES)?;
        let backoff = Duration::from_secs(1_u64 << over.min(16)).min(MAX_BACKOFF);
        Some(self.last + backoff)
    }
}

impl SignInThrottle {
    /// `per_minute` attempts per address a minute.
    #[must_use]
    pub fn new(per_minute: NonZeroU32) -> Self {
        Self {
            by_address: Arc::new(RateLimiter::keyed(
                Quota::per_minute(per_minute).allow_burst(per_minute),
            )),
            failures: Arc::default(),
        }
    }

    /// Whether an attempt from `address` (for `email`, when signing in) may
    /// go ahead now.
    ///
    /// # Errors
    /// 429 with `Retry-After` when it must wait.
    pub fn admit(&self, address: IpAddr, email: Option<&str>) -> Result<(), Problem> {
        if let Some(email) = email {
            let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(until) = failures.get(&normalized(email)).and_then(|f| f.wait_until()) {
                let wait = until.saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    return Err(too_many(
                        "too many failed sign-ins for this account; wait and try again",
                        wait,
                    ));
                }
            }
        }
        self.by_address
            .check_key(&crate::client::key(address))
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
                too_many(
                    "too many sign-in attempts from this address; wait and try again",
                    wait,
                )
            })
    }

    /// Notes how an attempt for `email` ended.
    pub fn record(&self, email: &str, succeeded: bool) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let email = normalized(email);
        if succeeded {
            failures.remove(&email);
            return;
        }
        if failures.len() >= REMEMBERED && !failures.contains_key(&email) {
            let horizon = Instant::now().checked_sub(MAX_BACKOFF * 4);
            failures.retain(|_, f| horizon.is_none_or(|horizon| f.last > horizon));
            if failures.len() >= REMEMBERED {
                let oldest = failures
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    failures.remove(&oldest);
                }
            }
        }
        let entry = failures.entry(email).or_insert(Failures {
            count: 0,
            last: Instant::now(),
        });
        entry.count = entry.count.saturating_add(1);
        entry.last = Instant::now();
    }
}

/// An email as the throttle keys it (identity compares them case-blind).
fn normalized(email: &str) -> String {
    email.trim().to_lowercase()
}

fn too_many(detail: &str, wait: Duration) -> Problem {
    Problem::new(StatusCode::TOO_MANY_REQUESTS, detail).retry_after(crate::rate_limit::retry_after(wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn each_address_has_its_budget_of_attempts() {
        let throttle = SignInThrottle::new(NonZeroU32::new(3).unwrap());
        for _ in 0..3 {
            assert!(throttle.admit(address(1), None).is_ok());
        }
        let refused = throttle.admit(address(1), Some("a@example.com")).unwrap_err();
        assert_eq!(refused.status, 429);
        assert!(refused.detail.contains("address"), "{}", refused.detail);
        assert!(
            throttle.admit(address(2), None).is_ok(),
            "another address is not held back"
        );
        // One IPv6 /64 is one client.
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        for i in 0..3 {
            assert!(throttle.admit(v6(&format!("2001:db8::{i}")), None).is_ok());
        }
        assert!(throttle.admit(v6("2001:db8::ffff"), None).is_err());
        assert!(throttle.admit(v6("2001:db8:0:1::1"), None).is_ok());
    }

    #[test]
    fn failures_for_one_email_back_off_from_every_address_and_a_success_clears_them() {
        let throttle = SignInThrottle::new(NonZeroU32::new(1000).unwrap());
        for _ in 0..FREE_FAILURES {
            assert!(throttle.admit(address(1), Some("Victim@Example.com")).is_ok());
            throttle.record("victim@example.com", false);
        }
        // The next attempt waits, whichever address and spelling it comes with.
        let refused = throttle
            .admit(address(9), Some(" VICTIM@example.com"))
            .unwrap_err();
        assert_eq!(refused.status, 429);
        assert!(refused.detail.contains("account"), "{}", refused.detail);
        assert!(
            throttle.admit(address(9), Some("other@example.com")).is_ok(),
            "other accounts are not held back"
        );
        throttle.record("victim@example.com", true);
        assert!(throttle.admit(address(9), Some("victim@example.com")).is_ok());
    }

    #[test]
    fn the_wait_doubles_and_never_exceeds_the_maximum() {
        let at = Instant::now();
        let wait = |count| Failures { count, last: at }.wait_until().map(|until| until - at);
        assert_eq!(wait(FREE_FAILURES - 1), None);
        assert_eq!(wait(FREE_FAILURES), Some(Duration::from_secs(1)));
        assert_eq!(wait(FREE_FAILURES + 1), Some(Duration::from_secs(2)));
        assert_eq!(wait(FREE_FAILURES + 3), Some(Duration::from_secs(8)));
        assert_eq!(wait(FREE_FAILURES + 10), Some(MAX_BACKOFF));
        assert_eq!(wait(u32::MAX), Some(MAX_BACKOFF));
    }

    #[test]
    fn memory_is_bounded() {
        let throttle = SignInThrottle::new(NonZeroU32::new(1).unwrap());
        for i in 0..(REMEMBERED + 10) {
            throttle.record(&format!("{i}@example.com"), false);
        }
        assert!(throttle.failures.lock().unwrap().len() <= REMEMBERED);
    }
}
