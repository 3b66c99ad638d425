//! Retries, with a policy derived from the method rather than configured:
//!
//! - queries (`Get*`, `BatchGet*`, `List*`, `VerifyCredentials`,
//!   `StreamEvents`, health `Check`) are retried;
//! - commands are retried only when they carry an idempotency key (the
//!   `idempotency-key` metadata [`Call::request`](crate::client::Call::request)
//!   adds for every message with a `request_id`): the context answers a retry
//!   with the first result, so a retry never has a second effect; without a key
//!   a command fails fast;
//! - anything else (reflection, unknown methods) is sent once.
//!
//! A call is retried when it failed before the server answered (a transport
//! error: connection refused or reset) or was answered UNAVAILABLE or
//! RESOURCE_EXHAUSTED (shed: not processed) in a Trailers-Only response; an
//! answer that carried a message is never retried. Between attempts: an
//! exponential pause with full jitter, never past the call's deadline
//! (`grpc-timeout`); at most [`MAX_ATTEMPTS`] attempts; and a retry budget
//! (tower's `TpsBudget`: retries may add at most a fifth to the calls made, so
//! a failing downstream is not buried under retries).
//!
//! Reads (`Get*`, `BatchGet*`, `List*`, health `Check`) and commands with an
//! idempotency key are also **hedged**: when an attempt
//! has not answered after the 95th percentile of that method's recent
//! latencies (the last [`LATENCY_SAMPLES`] answers on this channel, once there
//! are at least [`MIN_SAMPLES`]), a second one is sent, to whichever endpoint
//! the balancer picks, and a third after another such wait (at most
//! [`MAX_HEDGED`]); the first good answer wins, and the others run on,
//! detached, to their end or the deadline, so that the breakers learn how
//! they ended (see `hedged`).
//! Hedges draw on the same budget as retries, so a slow downstream gets at
//! most a fifth more calls, and they are counted in
//! `strata_rpc_client_hedges_total`. A keyed command sent twice has one
//! effect: the kernel answers a retry that races the first attempt with the
//! first attempt's result. Without hedging, a command in flight to a replica
//! that stopped answering (a black hole) waited out its whole deadline:
//! `make test-cluster`'s edge-cut fault failed 13 checkouts and ships so.
//! The commands that hash a password (`RegisterAccount`, `ChangePassword`)
//! are not hedged: a hash is expensive by design.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use tokio::time::Instant;
use tonic::body::Body;
use tower::{
    ServiceExt as _,
    retry::budget::{Budget as _, TpsBudget},
};

use crate::wire::{IDEMPOTENCY_KEY, deadline};

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct DownstreamLabels {
    downstream: String,
}

type Counters<L> =
    prometheus_client::metrics::family::Family<L, prometheus_client::metrics::counter::Counter>;

/// What this module counts.
struct Metrics {
    /// Each call as its caller waited for it, retries and hedges included.
    duration: prometheus_client::metrics::family::Family<
        crate::metrics::MethodLabels,
        prometheus_client::metrics::histogram::Histogram,
        fn() -> prometheus_client::metrics::histogram::Histogram,
    >,
    retries: Counters<crate::metrics::MethodLabels>,
    hedges: Counters<crate::metrics::MethodLabels>,
    rate_limited: Counters<DownstreamLabels>,
}

static METRICS: std::sync::LazyLock<Metrics> = std::sync::LazyLock::new(|| {
    let metrics = Metrics {
        retries: Counters::default(),
        hedges: Counters::default(),
        rate_limited: Counters::default(),
        duration: prometheus_client::metrics::family::Family::new_with_constructor(
            crate::metrics::latency_histogram,
        ),
    };
    crate::metrics::register(
        "rpc_client_call_duration_seconds",
        "How long calls took as their caller waited for them (retries and hedges included), by method: \
         set against the server's own duration, the difference is the way there and back",
        metrics.duration.clone(),
    );
    crate::metrics::register(
        "rpc_client_retries",
        "Calls sent again, by service and method",
        metrics.retries.clone(),
    );
    crate::metrics::register(
        "rpc_client_hedges",
        "Reads sent a second time because the first was slower than the method's 95th percentile",
        metrics.hedges.clone(),
    );
    crate::metrics::register(
        "rpc_client_rate_limited",
        "Calls refused by the caller's own rate limit for a downstream, never sent",
        metrics.rate_limited.clone(),
    );
    metrics
});

/// A caller's own limit on the calls it makes to one downstream.
struct RateLimit {
    limiter: governor::DefaultDirectRateLimiter,
    refusal: String,
    counted: prometheus_client::metrics::counter::Counter,
}

/// How many recent answers per method the hedging delay is taken from.
pub const LATENCY_SAMPLES: usize = 128;
/// How many answers a method needs before its reads are hedged.
pub const MIN_SAMPLES: usize = 32;
/// The shortest hedging delay.
pub const MIN_HEDGE_DELAY: Duration = Duration::from_millis(1);

/// The most attempts one call gets, the first included.
pub const MAX_ATTEMPTS: u32 = 4;

/// The first pause between attempts (then doubling, with full jitter).
pub const FIRST_PAUSE: Duration = Duration::from_millis(25);

/// What to do with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Retry it on a retryable failure.
    Retry,
    /// Send it once.
    Once,
}

/// Whether `method` (a method's name, `GetProduct`) reads by the naming rule
/// every context's proto follows: `Get*`, `BatchGet*`, `List*`.
fn reads(method: &str) -> bool {
    ["Get", "BatchGet", "List"].iter().any(|p| method.starts_with(p))
}

/// The policy of the call to `path` (`/pkg.Service/Method`) with `headers`.
#[must_use]
pub fn policy(path: &str, headers: &http::HeaderMap) -> Policy {
    let method = path.rsplit('/').next().unwrap_or_default();
    let query = reads(method) || matches!(method, "VerifyCredentials" | "StreamEvents" | "Check");
    let idempotent = headers.get(IDEMPOTENCY_KEY).is_some_and(|k| !k.is_empty());
    let strata = path.starts_with("/strata.") || path.starts_with("/grpc.health.");
    if strata && (query || idempotent) {
        Policy::Retry
    } else {
        Policy::Once
    }
}

/// Whether the call to `path` may be hedged: a read, or a command with an
/// idempotency key (`keyed`): sending it twice costs a little load and no
/// effect. (Not `VerifyCredentials`, `RegisterAccount` or `ChangePassword`:
/// a password hash is expensive by design.)
fn hedgeable(path: &str, keyed: bool) -> bool {
    let method = path.rsplit('/').next().unwrap_or_default();
    // A health check is a read too: an edge's /readyz asks one per
    // downstream, and a balancer gives it 2 s. Unhedged, a check that p2c
    // sent to a black-holed replica hung past that, and both storefronts
    // were taken out of the balancer at once (`make test-cluster`, edge-cut).
    path == "/grpc.health.v1.Health/Check"
        || (path.starts_with("/strata.")
            && (reads(method) || (keyed && !matches!(method, "RegisterAccount" | "ChangePassword"))))
}

/// Recent answer times of one method: a ring of samples, and the delay after
/// which a read is hedged (their 95th percentile), worked out again every
/// sixteenth sample rather than on every call.
#[derive(Debug)]
struct Recent {
    samples: Vec<Duration>,
    next: usize,
    since_update: usize,
    delay: Option<Duration>,
}

impl Recent {
    fn new() -> Self {
        Self {
            samples: Vec::with_capacity(LATENCY_SAMPLES),
            next: 0,
            since_update: 0,
            delay: None,
        }
    }

    fn record(&mut self, latency: Duration) {
        if self.samples.len() < LATENCY_SAMPLES {
            self.samples.push(latency);
        } else {
            self.samples[self.next] = latency;
        }
        self.next = (self.next + 1) % LATENCY_SAMPLES;
        self.since_update += 1;
        if self.samples.len() >= MIN_SAMPLES && (self.since_update >= 16 || self.delay.is_none()) {
            self.since_update = 0;
            let mut sorted = self.samples.clone();
            let at = (sorted.len() * 95).div_ceil(100) - 1;
            let (_, p95, _) = sorted.select_nth_unstable(at);
            self.delay = Some((*p95).max(MIN_HEDGE_DELAY));
        }
    }
}

/// The hedging delays of one channel, per method path.
#[derive(Debug, Default)]
struct Latencies(std::sync::Mutex<std::collections::HashMap<String, Recent>>);

impl Latencies {
    fn delay(&self, path: &str) -> Option<Duration> {
        let recent = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        recent.get(path).and_then(|r| r.delay)
    }

    fn record(&self, path: &str, latency: Duration) {
        let mut recent = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match recent.get_mut(path) {
            Some(r) => r.record(latency),
            None => recent
                .entry(path.to_owned())
                .or_insert_with(Recent::new)
                .record(latency),
        }
    }
}

/// Whether an attempt's outcome may be retried: it failed before an answer,
/// or was answered UNAVAILABLE or RESOURCE_EXHAUSTED without a message.
fn retryable<B, E>(outcome: &Result<http::Response<B>, E>) -> bool {
    match outcome {
        Err(_) => true,
        // Every endpoint's breaker is open: it would be refused again.
        Ok(response) if response.headers().contains_key(crate::wire::BREAKER_OPEN) => false,
        Ok(response) => matches!(
            response
                .headers()
                .get("grpc-status")
                .map(http::HeaderValue::as_bytes),
            Some(b"14" | b"8")
        ),
    }
}

/// The pause before attempt `attempt + 1`: full jitter over an exponential ceiling.
fn pause(attempt: u32) -> Duration {
    let ceiling = FIRST_PAUSE.saturating_mul(1 << attempt.min(10));
    ceiling.mul_f64(fastrand::f64())
}

/// Retries calls by their [`policy`] (see the module docs).
#[derive(Clone)]
pub struct Retrying<S> {
    inner: S,
    budget: Arc<TpsBudget>,
    latencies: Arc<Latencies>,
    limit: Option<Arc<RateLimit>>,
}

impl<S> std::fmt::Debug for Retrying<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retrying").finish_non_exhaustive()
    }
}

impl<S> Retrying<S> {
    /// `inner`, with retries and a budget of its own.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            // Retries may add a fifth to the calls of the last ten seconds, and
            // ten a second in any case.
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2)),
            latencies: Arc::new(Latencies::default()),
            limit: None,
        }
    }

    /// At most `per_second` calls a second to `downstream` (bursts of as many
    /// within a second): a call past it is refused at once, never sent, with
    /// RESOURCE_EXHAUSTED ("client rate limit for inventory: 500 calls/s"),
    /// and counted in `strata_rpc_client_rate_limited_total{downstream}`.
    /// Retries and hedges are not counted against it (the retry budget bounds
    /// them).
    #[must_use]
    pub fn rate_limited(mut self, downstream: &str, per_second: std::num::NonZeroU32) -> Self {
        let labels = DownstreamLabels {
            downstream: downstream.to_owned(),
        };
        self.limit = Some(Arc::new(RateLimit {
            limiter: governor::RateLimiter::direct(governor::Quota::per_second(per_second)),
            refusal: format!("client rate limit for {downstream}: {per_second} calls/s"),
            counted: METRICS.rate_limited.get_or_create(&labels).clone(),
        }));
        self
    }
}

impl<S> tower_service::Service<http::Request<Body>> for Retrying<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>, Error = tonic::Status>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = tonic::Status;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, tonic::Status>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let duration = METRICS
            .duration
            .get_or_create(&crate::metrics::method_labels(request.uri().path()))
            .clone();
        let started = Instant::now();
        let call = self.call_timed(request);
        Box::pin(async move {
            let outcome = call.await;
            duration.observe(started.elapsed().as_secs_f64());
            outcome
        })
    }
}

impl<S> Retrying<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>, Error = tonic::Status>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    /// The call itself, retried and hedged by its policy.
    #[allow(clippy::type_complexity)]
    fn call_timed(
        &mut self,
        request: http::Request<Body>,
    ) -> Pin<Box<dyn Future<Output = Result<http::Response<Body>, tonic::Status>> + Send>> {
        // The readied service takes this call; a clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if let Some(limit) = &self.limit
            && limit.limiter.check().is_err()
        {
            limit.counted.inc();
            let refused = tonic::Status::resource_exhausted(limit.refusal.clone());
            return Box::pin(async move { Err(refused) });
        }
        let unary = unary(request.uri().path());
        if policy(request.uri().path(), request.headers()) == Policy::Once {
            // Not sent again, but an answer cut off is still UNAVAILABLE (no
            // answer), not the INTERNAL that tonic makes of a reset stream.
            let call = inner.call(request);
            return Box::pin(async move {
                let outcome = call.await;
                if unary { whole(outcome).await } else { outcome }
            });
        }
        let budget = self.budget.clone();
        let keyed = request
            .headers()
            .get(IDEMPOTENCY_KEY)
            .is_some_and(|k| !k.is_empty());
        let latencies = hedgeable(request.uri().path(), keyed).then(|| self.latencies.clone());
        Box::pin(async move {
            budget.deposit();
            let deadline = deadline(request.headers());
            let (parts, body) = request.into_parts();
            // A unary request is one small message: kept, to be sent again.
            let bytes = body.collect().await?.to_bytes();
            let mut attempt = 1;
            loop {
                let outcome = match &latencies {
                    None => inner.call(rebuild(&parts, bytes.clone())).await,
                    Some(latencies) => {
                        let started = Instant::now();
                        let delay = latencies.delay(parts.uri.path());
                        let outcome = match delay {
                            Some(delay) => hedged(&mut inner, &parts, &bytes, delay, deadline, &budget).await,
                            None => inner.call(rebuild(&parts, bytes.clone())).await,
                        };
                        if !retryable(&outcome) {
                            latencies.record(parts.uri.path(), started.elapsed());
                        }
                        outcome
                    }
                };
                let outcome = if unary { whole(outcome).await } else { outcome };
                if attempt >= MAX_ATTEMPTS || !retryable(&outcome) {
                    return outcome;
                }
                let wait = pause(attempt);
                if deadline.is_some_and(|d| Instant::now() + wait >= d) || !budget.withdraw() {
                    return outcome;
                }
                drop(outcome);
                tracing::debug!(path = %parts.uri.path(), attempt, ?wait, "retrying a call");
                METRICS
                    .retries
                    .get_or_create(&crate::metrics::method_labels(parts.uri.path()))
                    .inc();
                tokio::time::sleep(wait).await;
                inner.ready().await?;
                attempt += 1;
            }
        })
    }
}

/// Whether the method at `path` answers with one message: every method of
/// Strata's protos but `StreamEvents`, and health `Check`. (Any other is
/// passed through as it streams.)
fn unary(path: &str) -> bool {
    (path.starts_with("/strata.") && !path.ends_with("/StreamEvents"))
        || path == "/grpc.health.v1.Health/Check"
}

/// A unary answer read to its end before it is returned, so that an answer
/// cut off after its headers (the replica killed between its headers and its
/// message) is a transport failure, retried like any other, rather than an
/// error that surfaces only when the caller reads the body: a query to a
/// replica `kill -9`ed under load failed so, now and then (`h2 protocol
/// error: error reading a body from connection`). A unary answer is one
/// small message and its trailers.
async fn whole(
    outcome: Result<http::Response<Body>, tonic::Status>,
) -> Result<http::Response<Body>, tonic::Status> {
    let (parts, body) = outcome?.into_parts();
    match body.collect().await {
        Ok(collected) => {
            let trailers = collected.trailers().cloned();
            let full = http_body_util::Full::new(collected.to_bytes())
                .with_trailers(async move { trailers.map(Ok::<_, std::convert::Infallible>) });
            Ok(http::Response::from_parts(parts, Body::new(full)))
        }
        Err(cut) => Err(tonic::Status::unavailable(format!(
            "the answer was cut off: {cut}"
        ))),
    }
}

/// One attempt, hedged: sent to the (readied) `inner`; while none has
/// answered, another is sent to a fresh pick of the balancer after `delay`
/// and again after each further `delay`, up to [`MAX_HEDGED`] in all, budget
/// and deadline allowing. The first answer that is not a retryable failure
/// wins; when every attempt failed retryably, the last failure is returned
/// (and the call retried as any other).
///
/// The attempts that lost are not cancelled: they run on in the background
/// until they end or the call's deadline passes, so that their endpoint's
/// breaker learns how they ended and the balancer counts them as in flight
/// there meanwhile. A cancelled loser counted for nothing: against a
/// black-holed replica every read and keyed command was won by its hedge,
/// the replica's breaker saw no failure and opened only when HTTP/2
/// keep-alive gave the connection up, 19 s after the cut, and the balancer,
/// seeing nothing in flight there, kept sending it calls, some of whose
/// hedges went there too (`make test-cluster`, edge-cut: 9 x 504). A third
/// attempt covers the hedge that the balancer sent to the same dead replica
/// as the first (it had as little in flight as the live one).
async fn hedged<S, ResBody>(
    inner: &mut S,
    parts: &http::request::Parts,
    bytes: &Bytes,
    delay: Duration,
    deadline: Option<Instant>,
    budget: &TpsBudget,
) -> Result<http::Response<ResBody>, tonic::Status>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<ResBody>, Error = tonic::Status>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ResBody: Send + 'static,
{
    use futures_util::StreamExt as _;

    type Attempt<R> = Pin<Box<dyn Future<Output = Result<http::Response<R>, tonic::Status>> + Send>>;
    let mut attempts = futures_util::stream::FuturesUnordered::<Attempt<ResBody>>::new();
    attempts.push(Box::pin(inner.call(rebuild(parts, bytes.clone()))));
    // A moment past the deadline: the breaker ends an attempt at the deadline
    // itself (and counts it), which must come first.
    let until = deadline.map_or_else(|| Instant::now() + LOSER_AT_MOST, |d| d + Duration::from_secs(1));
    let mut next = Some(Instant::now() + delay);
    let mut sent = 1;
    loop {
        let hedge_at = next.unwrap_or(until);
        tokio::select! {
            Some(outcome) = attempts.next() => {
                if !retryable(&outcome) || attempts.is_empty() {
                    for loser in attempts {
                        run_on(loser, until);
                    }
                    return outcome;
                }
            }
            () = tokio::time::sleep_until(hedge_at), if next.is_some() => {
                if deadline.is_some_and(|d| Instant::now() >= d) || !budget.withdraw() {
                    next = None;
                    continue;
                }
                METRICS
                    .hedges
                    .get_or_create(&crate::metrics::method_labels(parts.uri.path()))
                    .inc();
                tracing::debug!(path = %parts.uri.path(), ?delay, "hedging a call");
                let mut other = inner.clone();
                let request = rebuild(parts, bytes.clone());
                attempts.push(Box::pin(async move {
                    other.ready().await?;
                    other.call(request).await
                }));
                sent += 1;
                next = (sent < MAX_HEDGED).then(|| Instant::now() + delay);
            }
        }
    }
}

/// The most attempts one hedged attempt sends at once, the first included.
pub const MAX_HEDGED: usize = 3;

/// How long an attempt that lost to its hedge may run on when its call has
/// no deadline.
const LOSER_AT_MOST: Duration = Duration::from_secs(30);

/// Lets the attempt that lost run on, detached, until `until` at the latest.
fn run_on<F>(attempt: F, until: Instant)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(async move {
        let _ = tokio::time::timeout_at(until, attempt).await;
    });
}

/// The request again, from its parts and body bytes.
fn rebuild(parts: &http::request::Parts, body: Bytes) -> http::Request<Body> {
    let mut request = http::Request::new(Body::new(http_body_util::Full::new(body)));
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_follows_the_method() {
        let none = http::HeaderMap::new();
        let mut keyed = http::HeaderMap::new();
        keyed.insert(IDEMPOTENCY_KEY, http::HeaderValue::from_static("r-1"));
        let cases = [
            (
                "/strata.catalog.v1.ProductService/GetProduct",
                &none,
                Policy::Retry,
            ),
            (
                "/strata.catalog.v1.ProductService/BatchGetProducts",
                &none,
                Policy::Retry,
            ),
            (
                "/strata.ordering.v1.OrderService/ListOrders",
                &none,
                Policy::Retry,
            ),
            (
                "/strata.identity.v1.AccountService/VerifyCredentials",
                &none,
                Policy::Retry,
            ),
            ("/grpc.health.v1.Health/Check", &none, Policy::Retry),
            (
                "/strata.catalog.v1.ProductService/ChangePrice",
                &none,
                Policy::Once,
            ),
            (
                "/strata.catalog.v1.ProductService/ChangePrice",
                &keyed,
                Policy::Retry,
            ),
            (
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                &none,
                Policy::Once,
            ),
            ("/other.Service/GetThing", &none, Policy::Once),
        ];
        for (path, headers, want) in cases {
            assert_eq!(policy(path, headers), want, "{path}");
        }
    }

    #[test]
    fn only_failures_without_an_answer_are_retried() {
        let answered = |status: &'static str| {
            let mut response = http::Response::new(());
            response
                .headers_mut()
                .insert("grpc-status", http::HeaderValue::from_static(status));
            Ok::<_, ()>(response)
        };
        assert!(retryable(&answered("14")));
        assert!(retryable(&answered("8")));
        assert!(!retryable(&answered("0")));
        assert!(!retryable(&answered("13")));
        assert!(
            !retryable(&Ok::<_, ()>(http::Response::new(()))),
            "a message: never again"
        );
        assert!(retryable(&Err::<http::Response<()>, _>(())));
        let mut refused = http::Response::new(());
        refused
            .headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("14"));
        refused
            .headers_mut()
            .insert(crate::wire::BREAKER_OPEN, http::HeaderValue::from_static("1"));
        assert!(
            !retryable(&Ok::<_, ()>(refused)),
            "the breakers' refusal is final"
        );
    }

    #[test]
    fn reads_are_hedged_after_the_95th_percentile_of_recent_answers() {
        assert!(hedgeable("/strata.catalog.v1.ProductService/GetProduct", false));
        assert!(hedgeable(
            "/strata.catalog.v1.ProductService/BatchGetProducts",
            false
        ));
        assert!(hedgeable("/strata.ordering.v1.OrderService/ListOrders", false));
        assert!(!hedgeable(
            "/strata.identity.v1.AccountService/VerifyCredentials",
            false
        ));
        assert!(!hedgeable("/strata.catalog.v1.ProductService/ChangePrice", false));
        assert!(
            hedgeable("/strata.catalog.v1.ProductService/ChangePrice", true),
            "keyed"
        );
        assert!(
            hedgeable("/strata.inventory.v1.StockItemService/Reserve", true),
            "keyed"
        );
        assert!(!hedgeable(
            "/strata.identity.v1.AccountService/RegisterAccount",
            true
        ));
        assert!(!hedgeable(
            "/strata.identity.v1.AccountService/ChangePassword",
            true
        ));
        assert!(!hedgeable(
            "/strata.catalog.v1.ProductService/StreamEvents",
            false
        ));
        assert!(
            hedgeable("/grpc.health.v1.Health/Check", false),
            "a health check is a read"
        );
        assert!(!hedgeable("/grpc.health.v1.Health/Watch", false));

        let latencies = Latencies::default();
        let path = "/strata.catalog.v1.ProductService/GetProduct";
        for ms in 1..MIN_SAMPLES as u64 {
            latencies.record(path, Duration::from_millis(ms));
        }
        assert_eq!(latencies.delay(path), None, "too few answers to judge");
        latencies.record(path, Duration::from_millis(MIN_SAMPLES as u64));
        // 1..=32 ms: the 95th percentile is the 31st value.
        assert_eq!(latencies.delay(path), Some(Duration::from_millis(31)));
        // The ring keeps the latest LATENCY_SAMPLES: after as many fast
        // answers, the slow past is forgotten.
        for _ in 0..LATENCY_SAMPLES {
            latencies.record(path, Duration::from_micros(100));
        }
        assert_eq!(
            latencies.delay(path),
            Some(MIN_HEDGE_DELAY),
            "never below the floor"
        );
        assert_eq!(latencies.delay("/strata.x.v1.S/GetOther"), None, "per method");
    }

    #[test]
    fn pauses_grow_and_deadlines_are_read() {
        for attempt in 1..6 {
            assert!(pause(attempt) <= FIRST_PAUSE * (1 << attempt));
        }
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-timeout", http::HeaderValue::from_static("250m"));
        let left = deadline(&headers).unwrap() - Instant::now();
        assert!(
            left <= Duration::from_millis(250) && left > Duration::from_millis(200),
            "{left:?}"
        );
        headers.insert("grpc-timeout", http::HeaderValue::from_static("junk"));
        assert!(deadline(&headers).is_none());
    }
}
