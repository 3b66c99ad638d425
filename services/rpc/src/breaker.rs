//! A circuit breaker per endpoint, outermost in the client stack, so that it
//! judges a call by its final outcome (after retries) and an open breaker
//! fails calls at once without retrying them.
//!
//! - It enforces the call's deadline (`grpc-timeout`) itself, so a downstream
//!   that hangs costs each caller its deadline and no more, and counts as a
//!   failure.
//! - A failure is a call that ended without an answer from the service: a
//!   transport error, UNAVAILABLE, or the deadline. Any other answer, an error
//!   code included, shows the endpoint works. Its own refusals are not
//!   failures: they never reach the endpoint.
//! - After [`FAILURES_TO_OPEN`] failures in a row, or at once when nothing
//!   listens at the endpoint (connection refused), it opens: calls are refused
//!   at once with UNAVAILABLE and the reason ("breaker open for
//!   http://10.0.0.3:50051 since 16:10:03Z after 5 failures"). After a pause
//!   ([`FIRST_OPEN`], doubling up to [`LONGEST_OPEN`]) one call goes through as
//!   a probe: its success closes the breaker, its failure opens it again.
//! - Every change of state is logged and shown in `/metrics` as
//!   `strata_rpc_client_breaker_state{endpoint}` (0 closed, 1 open, 2
//!   half-open), with `strata_rpc_client_breaker_refusals_total{endpoint}`.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, LazyLock, Mutex, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};
use tokio::time::Instant;
use tonic::Status;

/// The header that marks a refusal of the breakers (so it is not retried).
pub const BREAKER_OPEN: &str = "x-strata-breaker-open";

/// Failures in a row that open the breaker.
pub const FAILURES_TO_OPEN: u32 = 5;
/// How long it first stays open before a probe.
pub const FIRST_OPEN: Duration = Duration::from_secs(1);
/// The longest it stays open before a probe.
pub const LONGEST_OPEN: Duration = Duration::from_secs(30);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    endpoint: String,
    method: String,
    code: &'static str,
}

struct BreakerMetrics {
    state: Family<EndpointLabels, Gauge>,
    refusals: Family<EndpointLabels, Counter>,
    calls: Family<CallLabels, Counter>,
}

static METRICS: LazyLock<BreakerMetrics> = LazyLock::new(|| {
    let metrics = BreakerMetrics {
        state: Family::default(),
        refusals: Family::default(),
        calls: Family::default(),
    };
    crate::metrics::register(
        "rpc_client_calls",
        "Calls made downstream, by endpoint, method and how they ended (after retries)",
        metrics.calls.clone(),
    );
    crate::metrics::register(
        "rpc_client_breaker_state",
        "Circuit breaker per endpoint: 0 closed, 1 open, 2 half-open",
        metrics.state.clone(),
    );
    crate::metrics::register(
        "rpc_client_breaker_refusals",
        "Calls refused at once because the endpoint's breaker was open",
        metrics.refusals.clone(),
    );
    metrics
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        since: time::OffsetDateTime,
        until: Instant,
        open_for: Duration,
        failures: u32,
    },
    HalfOpen {
        open_for: Duration,
    },
}

/// The breaker of one endpoint, shared by every clone of its stack.
#[derive(Debug)]
struct Shared {
    endpoint: String,
    state: Mutex<State>,
    /// The `strata_rpc_client_calls_total` counters of this endpoint, by
    /// method path and code, so that counting a call allocates no labels.
    /// (A few methods times a few codes: a short list, searched without
    /// allocating.)
    counters: std::sync::RwLock<Vec<(Box<str>, &'static str, Counter)>>,
}

impl Shared {
    /// Counts a call to `path` that ended with `code`.
    fn count(&self, path: &str, code: &'static str) {
        let known = self
            .counters
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(p, c, _)| &**p == path && *c == code)
            .map(|(_, _, counter)| counter.clone());
        let counter = known.unwrap_or_else(|| {
            let counter = METRICS
                .calls
                .get_or_create(&CallLabels {
                    endpoint: self.endpoint.clone(),
                    method: crate::metrics::method_labels(path).method,
                    code,
                })
                .clone();
            self.counters
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .push((path.into(), code, counter.clone()));
            counter
        });
        counter.inc();
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn show(&self, state: State) {
        let value = match state {
            State::Closed { .. } => 0,
            State::Open { .. } => 1,
            State::HalfOpen { .. } => 2,
        };
        METRICS
            .state
            .get_or_create(&EndpointLabels {
                endpoint: self.endpoint.clone(),
            })
            .set(value);
    }

    /// When it is open, until when.
    fn open_until(&self) -> Option<Instant> {
        match *self.state() {
            State::Open { until, .. } if Instant::now() < until => Some(until),
            _ => None,
        }
    }

    /// The refusal a call gets now, if the breaker is open.
    fn refusal(&self) -> Option<Status> {
        match *self.state() {
            State::Open {
                since,
                until,
                failures,
                ..
            } if Instant::now() < until => Some(self.open_refusal(since, failures)),
            _ => None,
        }
    }

    fn open_refusal(&self, since: time::OffsetDateTime, failures: u32) -> Status {
        METRICS
            .refusals
            .get_or_create(&EndpointLabels {
                endpoint: self.endpoint.clone(),
            })
            .inc();
        Status::unavailable(format!(
            "breaker open for {} since {} after {failures} failure{}",
            self.endpoint,
            since
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            if failures == 1 { "" } else { "s" }
        ))
    }

    /// Whether a call may go now: `Ok(probe?)`, or the refusal.
    fn admit(&self) -> Result<bool, Status> {
        let mut state = self.state();
        match *state {
            State::Closed { .. } => Ok(false),
            State::Open {
                since,
                until,
                open_for,
                failures,
            } => {
                if Instant::now() >= until {
                    *state = State::HalfOpen { open_for };
                    self.show(*state);
                    tracing::info!(endpoint = %self.endpoint, "breaker half-open: probing with one call");
                    Ok(true)
                } else {
                    Err(self.open_refusal(since, failures))
                }
            }
            // One probe at a time: the others are refused as if open.
            State::HalfOpen { .. } => Err(Status::unavailable(format!(
                "breaker half-open for {}: a probe is in flight",
                self.endpoint
            ))),
        }
    }

    fn record(&self, verdict: Verdict, probe: bool) {
        let mut state = self.state();
        let failed = verdict != Verdict::Works;
        let next = match (*state, failed) {
            // Nothing listens: no point in four more tries.
            (State::Closed { failures }, true) if verdict == Verdict::Down => open(FIRST_OPEN, failures + 1),
            (State::Closed { .. }, false) => State::Closed { failures: 0 },
            (State::Closed { failures }, true) if failures + 1 < FAILURES_TO_OPEN => State::Closed {
                failures: failures + 1,
            },
            (State::Closed { failures }, true) => open(FIRST_OPEN, failures + 1),
            (State::HalfOpen { .. }, false) if probe => State::Closed { failures: 0 },
            (State::HalfOpen { open_for }, true) if probe => {
                open((open_for * 2).min(LONGEST_OPEN), FAILURES_TO_OPEN)
            }
            // A call admitted before the breaker opened ends now: it changes nothing.
            (current, _) => current,
        };
        if std::mem::discriminant(&next) != std::mem::discriminant(&*state) {
            match next {
                State::Open {
                    open_for, failures, ..
                } => {
                    tracing::warn!(endpoint = %self.endpoint, failures, ?open_for, "breaker opened");
                }
                State::Closed { .. } => {
                    tracing::info!(endpoint = %self.endpoint, "breaker closed: the endpoint answers again")
                }
                State::HalfOpen { .. } => {}
            }
            self.show(next);
        }
        *state = next;
    }
}

fn open(open_for: Duration, failures: u32) -> State {
    State::Open {
        since: time::OffsetDateTime::now_utc(),
        until: Instant::now() + open_for,
        open_for,
        failures,
    }
}

/// How an outcome judges the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// It answered.
    Works,
    /// It failed this call (counts towards opening).
    Failed,
    /// Nothing listens there: refused connection. Opens at once.
    Down,
}

/// How an outcome judges the endpoint (see the module docs).
fn verdict<B>(outcome: &Result<http::Response<B>, BoxError>) -> Verdict {
    match outcome {
        Err(error) if refused(error.as_ref()) => Verdict::Down,
        other if failed(other) => Verdict::Failed,
        _ => Verdict::Works,
    }
}

/// Whether the connection was refused, somewhere in the error's chain.
fn refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        next = error.source();
    }
    false
}

/// Whether an outcome shows the endpoint failing (see the module docs).
fn failed<B>(outcome: &Result<http::Response<B>, BoxError>) -> bool {
    match outcome {
        Err(_) => true,
        Ok(response) => matches!(
            response
                .headers()
                .get("grpc-status")
                .map(http::HeaderValue::as_bytes),
            Some(b"14" | b"4")
        ),
    }
}

/// How an attempt ended, as a metric label: the gRPC code of a Trailers-Only
/// answer, `OK` for an answer with a message (its trailers come later), or
/// `TRANSPORT` when nothing came back.
fn code_of<B>(outcome: &Result<http::Response<B>, BoxError>) -> &'static str {
    match outcome {
        Err(_) => "TRANSPORT",
        Ok(response) => match response.headers().get("grpc-status") {
            None => "OK",
            Some(code) => crate::call_log::code_name(tonic::Code::from_bytes(code.as_bytes())),
        },
    }
}

/// The breaker of the endpoint `endpoint`, around its stack `inner`. While
/// open it is not ready, so a balancer passes it over until its pause ends.
pub struct Breaker<S> {
    inner: S,
    shared: Arc<Shared>,
    /// Wakes the task that found it open when the pause ends.
    wake: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S: Clone> Clone for Breaker<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            wake: None,
        }
    }
}

/// The breakers of every endpoint of one downstream, around the balanced
/// stack: when all of them are open, a call is refused at once, with the
/// reason, instead of waiting for an endpoint until its deadline.
#[derive(Clone)]
pub struct Breakers<S> {
    inner: S,
    /// The endpoints' breakers, kept up to date as discovery adds and removes
    /// endpoints.
    all: Arc<Mutex<Vec<Arc<Shared>>>>,
}

impl<S> std::fmt::Debug for Breakers<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let all = self.all.lock().unwrap_or_else(PoisonError::into_inner);
        let endpoints: Vec<&str> = all.iter().map(|b| b.endpoint.as_str()).collect();
        f.debug_struct("Breakers")
            .field("endpoints", &endpoints)
            .finish_non_exhaustive()
    }
}

impl<S> Breakers<S> {
    /// `inner`, guarded by the breakers of `endpoints`.
    pub fn new<E>(endpoints: &[&Breaker<E>], inner: S) -> Self {
        Self {
            inner,
            all: Arc::new(Mutex::new(endpoints.iter().map(|b| b.shared.clone()).collect())),
        }
    }

    /// Adds the breaker of an endpoint discovery found.
    pub fn add<E>(&self, endpoint: &Breaker<E>) {
        self.all
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(endpoint.shared.clone());
    }

    /// Forgets the breaker of the endpoint named `name` (gone from discovery).
    pub fn remove(&self, name: &str) {
        self.all
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|b| b.endpoint != name);
    }

    /// The same breakers around another stack.
    pub fn around<T>(self, inner: T) -> Breakers<T> {
        Breakers { inner, all: self.all }
    }
}

impl<S, ReqBody> tower_service::Service<http::Request<ReqBody>> for Breakers<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        // Every endpoint open: the first one's refusal (no allocation unless so).
        let every_refusal = {
            let all = self.all.lock().unwrap_or_else(PoisonError::into_inner);
            let mut first = None;
            for breaker in all.iter() {
                match breaker.refusal() {
                    Some(refusal) => {
                        first.get_or_insert(refusal);
                    }
                    None => {
                        first = None;
                        break;
                    }
                }
            }
            first
        };
        if let Some(refusal) = every_refusal {
            let mut refused = refusal.into_http::<tonic::body::Body>();
            // Sending it again would meet the same open breakers.
            refused
                .headers_mut()
                .insert(BREAKER_OPEN, http::HeaderValue::from_static("1"));
            return Box::pin(async move { Ok(refused) });
        }
        Box::pin(self.inner.call(request))
    }
}

impl<S> std::fmt::Debug for Breaker<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("endpoint", &self.shared.endpoint)
            .finish_non_exhaustive()
    }
}

impl<S> Breaker<S> {
    /// A closed breaker for `endpoint` (its address, as errors and metrics name it).
    pub fn new(endpoint: &str, inner: S) -> Self {
        let shared = Arc::new(Shared {
            endpoint: endpoint.to_owned(),
            state: Mutex::new(State::Closed { failures: 0 }),
            counters: std::sync::RwLock::default(),
        });
        shared.show(State::Closed { failures: 0 });
        Self {
            inner,
            shared,
            wake: None,
        }
    }
}

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for Breaker<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
    ReqBody: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Some(until) = self.shared.open_until() {
            let wake = self
                .wake
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
            if wake.deadline() != until {
                wake.as_mut().reset(until);
            }
            if wake.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.wake = None;
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let probe = match shared.admit() {
            Ok(probe) => probe,
            Err(refusal) => {
                let refused = refusal.into_http();
                return Box::pin(async move { Ok(refused) });
            }
        };
        let deadline = crate::retry::deadline(request.headers());
        let path = request.uri().clone();
        let call = inner.call(request);
        Box::pin(async move {
            let answered = |outcome: Result<http::Response<ResBody>, S::Error>| {
                outcome
                    .map(|response| response.map(tonic::body::Body::new))
                    .map_err(Into::into)
            };
            let late = || Ok(Status::deadline_exceeded("the call's deadline passed").into_http());
            let outcome = match deadline {
                None => answered(call.await),
                Some(deadline) => match tokio::time::timeout_at(deadline, call).await {
                    // The channel enforces the same deadline and may be first:
                    // its failure then says CANCELLED, which is not what happened.
                    Ok(Err(_)) if Instant::now() + Duration::from_millis(5) >= deadline => late(),
                    Ok(outcome) => answered(outcome),
                    Err(_) => late(),
                },
            };
            shared.record(verdict(&outcome), probe);
            shared.count(path.path(), code_of(&outcome));
            outcome
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared {
            endpoint: "http://test:1".into(),
            state: Mutex::new(State::Closed { failures: 0 }),
            counters: std::sync::RwLock::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_failures_in_a_row_refuses_then_probes_and_closes() {
        let breaker = shared();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            assert!(matches!(breaker.admit(), Ok(false)));
            breaker.record(Verdict::Failed, false);
        }
        // A success in between starts the count again.
        breaker.record(Verdict::Works, false);
        for _ in 0..FAILURES_TO_OPEN {
            assert!(matches!(breaker.admit(), Ok(false)));
            breaker.record(Verdict::Failed, false);
        }
        let refusal = breaker.admit().unwrap_err();
        assert!(
            refusal
                .message()
                .starts_with("breaker open for http://test:1 since "),
            "{refusal:?}"
        );
        assert!(
            refusal
                .message()
                .ends_with(&format!("after {FAILURES_TO_OPEN} failures")),
            "{refusal:?}"
        );
        tokio::time::advance(FIRST_OPEN).await;
        assert!(
            matches!(breaker.admit(), Ok(true)),
            "the first call after the pause probes"
        );
        assert!(breaker.admit().is_err(), "one probe at a time");
        breaker.record(Verdict::Failed, true);
        tokio::time::advance(FIRST_OPEN).await;
        assert!(breaker.admit().is_err(), "a failed probe opens it for longer");
        tokio::time::advance(FIRST_OPEN).await;
        assert!(matches!(breaker.admit(), Ok(true)));
        breaker.record(Verdict::Works, true);
        assert!(matches!(breaker.admit(), Ok(false)), "a good probe closes it");
        breaker.record(Verdict::Down, false);
        let refusal = breaker.admit().unwrap_err();
        assert!(
            refusal.message().ends_with("after 1 failure"),
            "nothing listens: open at once: {refusal:?}"
        );
    }

    #[test]
    fn a_refused_connection_is_found_in_the_chain() {
        let refused: BoxError = Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(verdict::<()>(&Err(refused)), Verdict::Down);
        let reset: BoxError = Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert_eq!(verdict::<()>(&Err(reset)), Verdict::Failed);
        assert_eq!(verdict(&Ok(http::Response::new(()))), Verdict::Works);
    }
}
