//! Who may call a server, and how many at once: two tower layers every Strata
//! server applies before its services.
//!
//! - [`ServiceAuthLayer`]: service-to-service authentication. With a service
//!   token configured (`STRATA_SERVICE_TOKEN`), a call must carry
//!   `authorization: Bearer <token>` (compared in constant time), else it is
//!   refused with UNAUTHENTICATED before any handler runs. When the server
//!   verifies client certificates ([`crate::tls`]), a call must also have come
//!   on a connection that presented one. Health and reflection stay open to
//!   orchestrators unless told otherwise.
//! - [`ShedLayer`]: a concurrency limit that sheds load. Past the configured
//!   number of calls in flight, a new call is refused at once with
//!   RESOURCE_EXHAUSTED instead of queueing without bound. A call holds its
//!   place until its handler has answered (a response stream, such as a
//!   followed `StreamEvents`, does not hold it while it stays open). Health
//!   and reflection are never shed.
//!
//! Both are written against the HTTP request rather than with tower's
//! `ConcurrencyLimit` + `LoadShed`: those signal overload through `poll_ready`
//! for every route alike, while here health must pass and the refusal must be
//! a gRPC status the caller can act on.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use subtle::ConstantTimeEq as _;
use tokio::sync::Semaphore;
use tonic::Status;

/// Paths of the services orchestrators call: health and reflection.
fn is_infrastructure(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Marks a response refused here, before the call reached a service: its
/// path was never checked against what the server hosts, so the metrics do
/// not take it as a label (a caller could invent paths without bound).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refused;

/// The answer to a refused call: `status`, marked [`Refused`].
fn refused<B: Default>(status: Status) -> http::Response<B> {
    let mut response = status.into_http();
    response.extensions_mut().insert(Refused);
    response
}

/// Requires the service token on every call (see the module docs).
#[derive(Debug, Clone)]
pub struct ServiceAuthLayer {
    expected: Option<Arc<[u8]>>,
    client_certificate: bool,
    protect_infrastructure: bool,
}

impl ServiceAuthLayer {
    /// Calls must carry `token` (none: every call is let through); health and
    /// reflection too when `protect_infrastructure`.
    #[must_use]
    pub fn new(token: Option<&str>, protect_infrastructure: bool) -> Self {
        Self {
            expected: token.map(|t| Arc::from(format!("Bearer {t}").into_bytes())),
            client_certificate: false,
            protect_infrastructure,
        }
    }

    /// Why `request` is refused, if it is: no client certificate when one is
    /// required, or a token missing or wrong.
    fn refusal<B>(&self, request: &http::Request<B>) -> Option<&'static str> {
        if self.client_certificate && !crate::tls::has_client_certificate(request) {
            return Some(
                "this service needs a client certificate signed by its client CA (STRATA_TLS_CLIENT_CERT)",
            );
        }
        let expected = self.expected.as_ref()?;
        let presented = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map_or(&[][..], http::HeaderValue::as_bytes);
        // Constant time in the length of the expected value: a wrong token
        // says nothing about how much of it was right.
        if bool::from(presented.ct_eq(expected)) {
            None
        } else if presented.is_empty() {
            Some("this service needs a service credential (authorization: Bearer <STRATA_SERVICE_TOKEN>)")
        } else {
            Some("the service credential is not valid")
        }
    }

    /// Calls must also come on a connection that presented a client
    /// certificate (the TLS handshake verified it against the client CA).
    #[must_use]
    pub fn client_certificate(mut self, required: bool) -> Self {
        self.client_certificate = required;
        self
    }
}

impl<S> tower_layer::Layer<S> for ServiceAuthLayer {
    type Service = ServiceAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServiceAuth {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`ServiceAuthLayer`].
#[derive(Debug, Clone)]
pub struct ServiceAuth<S> {
    inner: S,
    layer: ServiceAuthLayer,
}

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for ServiceAuth<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let checked = (self.layer.expected.is_some() || self.layer.client_certificate)
            && (self.layer.protect_infrastructure || !is_infrastructure(request.uri().path()));
        if checked && let Some(refusal) = self.layer.refusal(&request) {
            let refused = refused(Status::unauthenticated(refusal));
            return Box::pin(async move { Ok(refused) });
        }
        Box::pin(self.inner.call(request))
    }
}

/// Refuses calls past a number in flight (see the module docs).
#[derive(Debug, Clone)]
pub struct ShedLayer {
    permits: Option<Arc<Semaphore>>,
    limit: usize,
}

impl ShedLayer {
    /// At most `limit` calls in flight (`None`: no limit).
    #[must_use]
    pub fn new(limit: Option<usize>) -> Self {
        Self {
            permits: limit.map(|n| Arc::new(Semaphore::new(n))),
            limit: limit.unwrap_or(0),
        }
    }
}

impl<S> tower_layer::Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Shed {
            inner,
            layer: self.clone(),
        }
    }
}

/// See [`ShedLayer`].
#[derive(Debug, Clone)]
pub struct Shed<S> {
    inner: S,
    layer: ShedLayer,
}

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for Shed<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let Some(permits) = &self.layer.permits else {
            return Box::pin(self.inner.call(request));
        };
        if is_infrastructure(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let response = self.inner.call(request);
                Box::pin(async move {
                    let response = response.await;
                    drop(permit);
                    response
                })
            }
            Err(_) => {
                let limit = self.layer.limit;
                crate::metrics::SERVER.shed.inc();
                tracing::warn!(limit, "shedding a call: too many in flight");
                let refused = refused(Status::resource_exhausted(format!(
                    "overloaded: {limit} calls in flight already; retry with backoff"
                )));
                Box::pin(async move { Ok(refused) })
            }
        }
    }
}
