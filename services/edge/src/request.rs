//! What every edge request gets before its handler runs: an `X-Request-Id`
//! (the client's when it sent a usable one, else a new UUID) on the request and
//! on the response, a span carrying it so every log line of the request names
//! it, one log line when it ends (method, route, status, latency), and its
//! deadline: [`Ctx`] hands the handler the request id and the budget left for
//! the calls it makes downstream.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    extract::{FromRequestParts, MatchedPath, Request, State},
    middleware::Next,
    response::Response,
};
use http::{HeaderValue, request::Parts};
use strata_rpc::client::Call;
use tracing::Instrument as _;

use crate::problem::Problem;

/// The header that carries the request id, both ways.
pub const X_REQUEST_ID: &str = "x-request-id";

/// The longest client request id kept; a longer or non-printable one is replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// How long a request may take in all, and each call it makes downstream.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// The whole request.
    pub request: Duration,
    /// One downstream call (never more than what is left of the request's).
    pub call: Duration,
}

/// The request's id and its deadline for downstream calls.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The request id (as in `X-Request-Id`).
    pub id: Arc<str>,
    /// Carries the id and the time left to every downstream call.
    pub call: Call,
}

impl Ctx {
    /// Makes one downstream call within the request's budget; a failure is the
    /// answer for it, `what` naming what was asked for (`product`, `order`) in
    /// a 404.
    ///
    /// # Errors
    /// The problem the call's status maps to ([`Problem::from_status`]).
    pub async fn run<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, Problem> {
        self.call
            .run(call)
            .await
            .map_err(|status| Problem::from_status(&status, what))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            tracing::error!("the request layer is missing from the router");
            Problem::internal()
        })
    }
}

/// The edge's own metrics: requests by route template (never the raw path,
/// whose ids would grow the metrics without bound), method and status.
struct HttpMetrics {
    requests: prometheus_client::metrics::family::Family<
        RequestLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    duration: prometheus_client::metrics::family::Family<
        RouteLabels,
        prometheus_client::metrics::histogram::Histogram,
        fn() -> prometheus_client::metrics::histogram::Histogram,
    >,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

static METRICS: std::sync::LazyLock<HttpMetrics> = std::sync::LazyLock::new(|| {
    let metrics = HttpMetrics {
        requests: prometheus_client::metrics::family::Family::default(),
        duration: prometheus_client::metrics::family::Family::new_with_constructor(
            strata_rpc::metrics::latency_histogram,
        ),
    };
    strata_rpc::metrics::register(
        "http_requests",
        "HTTP requests answered, by route, method and status",
        metrics.requests.clone(),
    );
    strata_rpc::metrics::register(
        "http_request_duration_seconds",
        "How long HTTP requests took, by route and method",
        metrics.duration.clone(),
    );
    metrics
});

/// Makes sure the edge's metric families are registered (and rendered, as
/// zero, before the first request).
pub fn register_metrics() {
    std::sync::LazyLock::force(&METRICS);
}

/// The middleware: request id, span, log line, deadline.
pub async fn layer(State(budget): State<Budget>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id: Arc<str> = request
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID_LEN && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::now_v7().to_string().into(), Into::into);
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let route = matched.clone().unwrap_or_else(|| request.uri().path().to_owned());
    let method = request.method().as_str().to_owned();
    let span = tracing::info_span!(
        "http",
        method = %request.method(),
        route = %route,
        request_id = %id,
        // Filled only when traces are exported (strata_rpc::trace).
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty
    );
    // A client's `traceparent` makes this request part of its trace; every
    // call the handler makes downstream is then a child of this span.
    // Named by its route template, never by a raw path (whose ids would make
    // every name unique).
    match matched.as_deref() {
        Some(template) => {
            strata_rpc::trace::continue_trace(&span, format_args!("{method} {template}"), request.headers())
        }
        None => strata_rpc::trace::continue_trace(&span, &method, request.headers()),
    }
    request.extensions_mut().insert(Ctx {
        id: id.clone(),
        call: Call::new(&id, budget.request, budget.call),
    });
    async move {
        let mut response = next.run(request).await;
        let status = response.status();
        strata_rpc::trace::record_http_status(&tracing::Span::current(), status);
        let took = started.elapsed();
        let latency_ms = took.as_micros() as f64 / 1000.0;
        let route = matched.unwrap_or_else(|| "unmatched".to_owned());
        METRICS
            .duration
            .get_or_create(&RouteLabels {
                route: route.clone(),
                method: method.clone(),
            })
            .observe(took.as_secs_f64());
        METRICS
            .requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status: status.as_u16(),
            })
            .inc();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), latency_ms, "request ended");
        } else {
            tracing::info!(status = status.as_u16(), latency_ms, "request ended");
        }
        if let Ok(value) = HeaderValue::try_from(&*id) {
            response.headers_mut().insert(X_REQUEST_ID, value);
        }
        response
    }
    .instrument(span)
    .await
}
