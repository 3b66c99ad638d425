//! A statement that failed on contention (a serialization failure, a deadlock,
//! SQLite busy) runs again at once, inside the server, a bounded number of
//! times ([`CONTENTION_RETRIES`]) before the caller gets ABORTED.

use std::time::Duration;

use crate::{CONTENTION_RETRIES, StoreError};

/// Runs `attempt` again, a bounded number of times with a short growing pause,
/// while it fails on contention; then [`StoreError::Contention`].
pub(crate) async fn retrying<T, F, Fut>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(StoreError::Contention(error)) if tries < CONTENTION_RETRIES => {
                tracing::debug!(%error, tries, "contention; running the statement again");
                tokio::time::sleep(Duration::from_millis(2 << tries)).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicU32, Ordering},
        time::Instant,
    };

    use super::*;

    /// Runs `retrying` over an attempt that fails with `failure` its first
    /// `failing` times, then succeeds; returns the outcome and how many
    /// attempts ran.
    /// Ends within 5 s, or the retries are unbounded and the test fails.
    async fn run(failing: u32, failure: fn() -> StoreError) -> (Result<u32, StoreError>, u32) {
        let attempts = AtomicU32::new(0);
        let outcome = tokio::time::timeout(
            Duration::from_secs(5),
            retrying(|| async {
                let attempt = attempts.fetch_add(1, Ordering::SeqCst) + 1;
                if attempt <= failing {
                    Err(failure())
                } else {
                    Ok(attempt)
                }
            }),
        )
        .await;
        let attempts = attempts.load(Ordering::SeqCst);
        let Ok(outcome) = outcome else {
            panic!("still retrying after 5 s and {attempts} attempts");
        };
        (outcome, attempts)
    }

    fn contention() -> StoreError {
        StoreError::Contention(sqlx::Error::PoolTimedOut)
    }

    #[tokio::test]
    async fn contention_is_retried_up_to_the_bound_then_reported() {
        assert_eq!(CONTENTION_RETRIES, 3);
        // Succeeds at the last attempt allowed.
        let (outcome, attempts) = run(CONTENTION_RETRIES - 1, contention).await;
        assert_eq!(outcome.unwrap(), CONTENTION_RETRIES);
        assert_eq!(attempts, CONTENTION_RETRIES);
        // Contention every time: the caller gets it after exactly that many.
        let (outcome, attempts) = run(u32::MAX, contention).await;
        assert!(matches!(outcome, Err(StoreError::Contention(_))), "{outcome:?}");
        assert_eq!(attempts, CONTENTION_RETRIES);
    }

    #[tokio::test]
    async fn anything_else_is_answered_at_once() {
        let (outcome, attempts) = run(0, contention).await;
        assert_eq!(outcome.unwrap(), 1);
        assert_eq!(attempts, 1);
        for failure in [
            || StoreError::Unavailable(sqlx::Error::PoolTimedOut),
            || StoreError::Timeout(sqlx::Error::PoolTimedOut),
            || StoreError::RequestAlreadyRecorded,
        ] {
            let (outcome, attempts) = run(u32::MAX, failure).await;
            assert!(outcome.is_err());
            assert_eq!(attempts, 1, "{outcome:?}");
        }
    }

    #[tokio::test]
    async fn the_pause_between_attempts_grows() {
        // 4 ms after the first attempt, 8 ms after the second: a statement
        // that collided is not run again while its rival still holds the rows.
        let started = Instant::now();
        let (outcome, _) = run(u32::MAX, contention).await;
        assert!(outcome.is_err());
        assert!(
            started.elapsed() >= Duration::from_millis(12),
            "{:?}",
            started.elapsed()
        );
    }
}
