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
//!   listens at the endpoint (connection refused) or the service says it
//!   cannot serve there (`x-strata-not-serving`: its store does not answer),
//!   it opens: calls are refused
//!   at once with UNAVAILABLE and the reason ("breaker open for
//!   http://10.0.0.3:50051 since 16:10:03Z after 5 failures"). After a pause
//!   ([`FIRST_OPEN`], doubling up to [`LONGEST_OPEN`]) one call goes through as
//!   a probe: its success closes the breaker, its failure opens it again (a
//!   probe cancelled by its caller opens it again for the same pause).
//! - While open, and while its probe is in flight, the endpoint is not ready:
//!   a balancer passes it over and sends the calls elsewhere. (It used to be
//!   ready while probing and refuse the calls a balancer gave it; against a
//!   black-holed endpoint, whose probe waits out its deadline, the balancer
//!   gave it half the calls, since instant refusals left it the fewest in
//!   flight: `make test-cluster`'s edge-cut fault failed 569 requests.)
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

pub use crate::wire::BREAKER_OPEN;

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
    /// Woken when a probe ends (the endpoint may be ready again).
    probe_ended: Arc<tokio::sync::Notify>,
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

    /// Whether a probe is in flight.
    fn probing(&self) -> bool {
        matches!(*self.state(), State::HalfOpen { .. })
    }

    /// Why a call is refused now, if the breaker takes none: open, or
    /// half-open with its probe in flight. (Counted only once a call is
    /// refused with it: [`Shared::refuse`].)
    fn refusing(&self) -> Option<String> {
        match *self.state() {
            State::Open {
                since,
                until,
                failures,
                ..
            } if Instant::now() < until => Some(open_reason(&self.endpoint, since, failures)),
            State::HalfOpen { .. } => Some(probing_reason(&self.endpoint)),
            _ => None,
        }
    }

    /// A call refused for `reason`, counted in the refusals metric.
    fn refuse(&self, reason: String) -> Status {
        METRICS
            .refusals
            .get_or_create(&EndpointLabels {
                endpoint: self.endpoint.clone(),
            })
            .inc();
        Status::unavailable(reason)
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
                    Err(self.refuse(open_reason(&self.endpoint, since, failures)))
                }
            }
            // One probe at a time: the others are refused as if open.
            State::HalfOpen { .. } => Err(self.refuse(probing_reason(&self.endpoint))),
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
            // Cancelled by its caller: it says nothing of the endpoint.
            (State::HalfOpen { open_for }, true) if probe && verdict == Verdict::Cancelled => {
                open(open_for, FAILURES_TO_OPEN)
            }
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
        let probe_ended = matches!(*state, State::HalfOpen { .. }) && !matches!(next, State::HalfOpen { .. });
        *state = next;
        drop(state);
        if probe_ended {
            self.probe_ended.notify_waiters();
        }
    }
}

/// Records a probe's end if its call is dropped before it ended (its caller
/// cancelled it): else the breaker would stay half-open, and not ready, for
/// good.
struct ProbeGuard {
    shared: Arc<Shared>,
    armed: bool,
}

impl ProbeGuard {
    /// The probe ended: its outcome is recorded by the caller.
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        if self.armed {
            self.shared.record(Verdict::Cancelled, true);
        }
    }
}

fn open_reason(endpoint: &str, since: time::OffsetDateTime, failures: u32) -> String {
    format!(
        "breaker open for {endpoint} since {} after {failures} failure{}",
        since
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        if failures == 1 { "" } else { "s" }
    )
}

fn probing_reason(endpoint: &str) -> String {
    format!("breaker half-open for {endpoint}: a probe is in flight")
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
    /// The caller went away before an outcome (only a probe records it).
    Cancelled,
}

/// How an outcome judges the endpoint (see the module docs).
fn verdict<B>(outcome: &Result<http::Response<B>, BoxError>) -> Verdict {
    match outcome {
        Err(error) if refused(error.as_ref()) => Verdict::Down,
        // The service cannot serve there now (its store does not answer).
        Ok(response) if response.headers().contains_key(crate::admission::NOT_SERVING) => Verdict::Down,
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
            Some(code) => crate::wire::code_name(tonic::Code::from_bytes(code.as_bytes())),
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
    /// Wakes the task that found its probe in flight when the probe ends.
    probe_end: Option<Pin<Box<tokio::sync::futures::OwnedNotified>>>,
}

impl<S: Clone> Clone for Breaker<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            wake: None,
            probe_end: None,
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
        // Every endpoint refusing: the first one's refusal, counted against
        // it alone (an endpoint that takes calls was counted for none).
        let every_refusal = {
            let all = self.all.lock().unwrap_or_else(PoisonError::into_inner);
            let mut first: Option<(&Arc<Shared>, String)> = None;
            for breaker in all.iter() {
                match breaker.refusing() {
                    Some(reason) => {
                        first.get_or_insert((breaker, reason));
                    }
                    None => {
                        first = None;
                        break;
                    }
                }
            }
            first.map(|(breaker, reason)| breaker.refuse(reason))
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
            probe_ended: Arc::default(),
        });
        shared.show(State::Closed { failures: 0 });
        Self {
            inner,
            shared,
            wake: None,
            probe_end: None,
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
        while self.shared.probing() {
            let probe_end = self
                .probe_end
                .get_or_insert_with(|| Box::pin(self.shared.probe_ended.clone().notified_owned()));
            // Registered before the state is read again, so that a probe
            // ending in between still wakes this task.
            probe_end.as_mut().enable();
            if !self.shared.probing() {
                self.probe_end = None;
                break;
            }
            if probe_end.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.probe_end = None;
        }
        if self.shared.open_until().is_some() {
            // The probe failed: open again. Wait for the new pause's end.
            return self.poll_ready(cx);
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
        let deadline = crate::wire::deadline(request.headers());
        let path = request.uri().clone();
        let call = inner.call(request);
        let mut guard = ProbeGuard {
            shared: shared.clone(),
            armed: probe,
        };
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
            guard.disarm();
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
            probe_ended: Arc::default(),
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
        let not_serving = http::Response::builder()
            .header("grpc-status", "14")
            .header(crate::admission::NOT_SERVING, "1")
            .body(())
            .unwrap();
        assert_eq!(verdict(&Ok(not_serving)), Verdict::Down, "opens at once");
    }

    /// An endpoint whose calls wait until let go, then answer OK.
    fn gated(
        gate: Arc<tokio::sync::Notify>,
    ) -> Breaker<
        impl tower_service::Service<
            http::Request<()>,
            Response = http::Response<tonic::body::Body>,
            Error = BoxError,
            Future = impl Future + Send,
        > + Clone
        + Send
        + 'static,
    > {
        Breaker::new(
            "http://test:2",
            tower::service_fn(move |_: http::Request<()>| {
                let gate = gate.clone();
                async move {
                    gate.notified().await;
                    Ok::<_, BoxError>(http::Response::new(tonic::body::Body::empty()))
                }
            }),
        )
    }

    fn ready_now<S: tower_service::Service<http::Request<()>>>(service: &mut S) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        service.poll_ready(&mut cx).is_ready()
    }

    #[tokio::test(start_paused = true)]
    async fn while_its_probe_is_in_flight_the_endpoint_is_not_ready_and_a_cancelled_probe_reopens_it() {
        use tower_service::Service as _;
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut breaker = gated(gate.clone());
        let mut other = breaker.clone();
        *breaker.shared.state() = open(FIRST_OPEN, FAILURES_TO_OPEN);
        assert!(!ready_now(&mut breaker), "open: not ready");
        tokio::time::advance(FIRST_OPEN).await;
        assert!(ready_now(&mut breaker), "the pause is over: ready for a probe");
        let probe = breaker.call(http::Request::new(()));
        assert!(!ready_now(&mut other), "a probe is in flight: not ready");
        assert!(
            breaker.shared.refusing().is_some(),
            "and the guard refuses for it"
        );
        // The probe's caller gives up: open again for the same pause.
        drop(probe);
        assert!(
            breaker.shared.open_until().is_some(),
            "a cancelled probe opens it again"
        );
        assert!(!ready_now(&mut other));
        tokio::time::advance(FIRST_OPEN).await;
        assert!(ready_now(&mut breaker));
        let probe = tokio::spawn(breaker.call(http::Request::new(())));
        tokio::task::yield_now().await;
        // A caller waiting for readiness is woken by the probe's end.
        let waiting = tokio::spawn(async move { std::future::poll_fn(|cx| other.poll_ready(cx)).await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "not ready while the probe is in flight");
        gate.notify_one();
        probe.await.unwrap().unwrap();
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("the probe's end wakes the caller waiting for readiness")
            .unwrap()
            .unwrap();
        assert!(matches!(*breaker.shared.state(), State::Closed { failures: 0 }));
    }
}
