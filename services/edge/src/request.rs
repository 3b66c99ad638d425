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

/// The middleware: request id, span, log line, deadline.
pub async fn layer(State(budget): State<Budget>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id: Arc<str> = request
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID_LEN && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::now_v7().to_string().into(), Into::into);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path().to_owned(), |p| p.as_str().to_owned());
    let span = tracing::info_span!("http", method = %request.method(), route = %route, request_id = %id);
    request.extensions_mut().insert(Ctx {
        id: id.clone(),
        call: Call::new(&id, budget.request, budget.call),
    });
    async move {
        let mut response = next.run(request).await;
        let status = response.status();
        let latency_ms = started.elapsed().as_micros() as f64 / 1000.0;
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
