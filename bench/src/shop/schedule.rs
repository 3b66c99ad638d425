//! The open loop: requests start on a fixed schedule, whatever the answers do,
//! and each one's latency counts from the instant it was due, not the instant
//! it was sent. A server that stalls therefore shows its stall in every
//! request that should have started meanwhile (no coordinated omission).

use std::{future::Future, sync::Arc, time::Duration};

use tokio::{sync::Semaphore, time::Instant};

/// What one open-loop run did besides its requests.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Run {
    /// Requests started.
    pub(crate) started: u64,
    /// Requests not started because `max_in_flight` were already waiting:
    /// the generator's own limit, reported, never hidden.
    pub(crate) skipped: u64,
}

/// Starts `make(n, due)` at `rate` per second for `duration`, at most
/// `max_in_flight` at once, and returns when every started request is done.
pub(crate) async fn open_loop<F, Fut>(rate: f64, duration: Duration, max_in_flight: usize, mut make: F) -> Run
where
    F: FnMut(u64, Instant) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let places = Arc::new(Semaphore::new(max_in_flight));
    let start = Instant::now();
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let mut run = Run::default();
    for n in 0..total {
        let due = start + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(due).await;
        let Ok(place) = places.clone().try_acquire_owned() else {
            run.skipped += 1;
            continue;
        };
        let request = make(n, due);
        run.started += 1;
        tokio::spawn(async move {
            request.await;
            drop(place);
        });
    }
    // Every place back: every request answered (or timed out by its client).
    let _all = places.acquire_many(max_in_flight as u32).await;
    run
}

/// Microseconds since `due`, for a histogram.
pub(crate) fn since_us(due: Instant) -> u64 {
    due.elapsed().as_micros().max(1) as u64
}

/// A latency histogram in µs from 1 µs to 5 minutes, 3 significant digits.
/// (`Histogram::new` starts at a 2 048 µs ceiling; a saturating record
/// would clamp every slower answer to it.)
pub(crate) fn histogram() -> Result<hdrhistogram::Histogram<u64>, hdrhistogram::CreationError> {
    hdrhistogram::Histogram::new_with_bounds(1, 300_000_000, 3)
}
