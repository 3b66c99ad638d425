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

/// Registers the edge's metric families, at startup rather than within the
/// first request. They appear on `/metrics` with their first series, i.e.
/// after the first request: prometheus-client renders nothing for a family
/// without one.
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

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse as _;
    use tower_service::Service as _;

    use super::*;

    const BUDGET: Budget = Budget {
        request: Duration::from_secs(5),
        call: Duration::from_secs(1),
    };

    /// `GET /items/{id}` through the layer, sending `X-Request-Id: sent` when
    /// given: the status, the `X-Request-Id` answered and the one the
    /// handler's [`Ctx`] carried.
    async fn call(path: &str, sent: Option<&str>) -> (u16, String, String) {
        let mut app = axum::Router::new()
            .route(
                "/items/{id}",
                axum::routing::get(|ctx: Ctx| async move {
                    assert!(ctx.call.remaining() <= BUDGET.request);
                    assert!(ctx.call.remaining() > Duration::ZERO);
                    ctx.id.to_string()
                }),
            )
            .route(
                "/failing",
                axum::routing::get(|| async { Problem::internal().into_response() }),
            )
            .layer(axum::middleware::from_fn_with_state(BUDGET, layer));
        let mut request = http::Request::get(path);
        if let Some(sent) = sent {
            request = request.header(X_REQUEST_ID, sent);
        }
        let response = app
            .call(request.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answered = response.headers()[X_REQUEST_ID].to_str().unwrap().to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, answered, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn a_usable_request_id_is_kept_and_any_other_replaced() {
        let longest = "r".repeat(MAX_REQUEST_ID_LEN);
        for kept in [
            "abc-123",
            "0195f3a4-7c1e-7d2a-9b3c-4d5e6f708192",
            "~!",
            longest.as_str(),
        ] {
            let (status, answered, seen) = call("/items/1", Some(kept)).await;
            assert_eq!(status, 200);
            assert_eq!(answered, kept);
            assert_eq!(seen, kept, "the handler's Ctx carries it");
        }
        let too_long = "r".repeat(MAX_REQUEST_ID_LEN + 1);
        for replaced in [
            None,
            Some(""),
            Some("has space"),
            Some("tab\there"),
            Some(too_long.as_str()),
        ] {
            let (status, answered, seen) = call("/items/1", replaced).await;
            assert_eq!(status, 200);
            let id = uuid::Uuid::parse_str(&answered).unwrap_or_else(|_| panic!("{replaced:?}: {answered}"));
            assert_eq!(id.get_version_num(), 7, "{replaced:?}");
            assert_eq!(seen, answered, "{replaced:?}");
        }
        // Two requests without one get two ids.
        assert_ne!(call("/items/1", None).await.1, call("/items/1", None).await.1);
        // Every answer carries it, a failure too.
        let (status, answered, _) = call("/failing", Some("req-500")).await;
        assert_eq!((status, answered.as_str()), (500, "req-500"));
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_template_never_by_path() {
        let (status, _, _) = call("/items/0195f3a4-7c1e-7d2a-9b3c-4d5e6f708192", None).await;
        assert_eq!(status, 200);
        let (status, _, _) = call("/no/such/route", None).await;
        assert_eq!(status, 404);
        let metrics = strata_rpc::metrics::render();
        assert!(
            metrics.contains(r#"http_requests_total{route="/items/{id}",method="GET",status="200"}"#),
            "{metrics}"
        );
        assert!(
            metrics.contains(r#"http_requests_total{route="unmatched",method="GET",status="404"}"#),
            "{metrics}"
        );
        assert!(!metrics.contains("0195f3a4-7c1e"), "{metrics}");
        assert!(
            metrics.contains(r#"http_request_duration_seconds_count{route="/items/{id}",method="GET"}"#),
            "{metrics}"
        );
    }

    #[tokio::test]
    async fn a_failing_call_is_answered_as_its_status_maps() {
        let ctx = Ctx {
            id: "req-1".into(),
            call: Call::new("req-1", BUDGET.request, BUDGET.call),
        };
        let problem = ctx
            .run::<()>("order", async { Err(tonic::Status::not_found("gone")) })
            .await
            .unwrap_err();
        assert_eq!((problem.status, problem.detail.as_str()), (404, "no such order"));
        let value = ctx
            .run("order", async { Ok(tonic::Response::new(7)) })
            .await
            .unwrap();
        assert_eq!(value, 7);
    }

    #[tokio::test]
    async fn a_router_without_the_layer_is_a_fault_of_ours() {
        let mut app = axum::Router::new().route("/", axum::routing::get(|_: Ctx| async { "ok" }));
        let response = app
            .call(http::Request::get("/").body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
    }
}
