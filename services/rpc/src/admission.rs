//! Who may call a server, and how many at once: two tower layers every Strata
//! server applies before its services.
//!
//! - [`ServiceAuthLayer`]: service-to-service authentication. With service
//!   tokens configured (`STRATA_SERVICE_TOKEN`, or one per caller, each with
//!   its [`Scope`]), a call must carry `authorization: Bearer <token>` of one
//!   of them (compared in constant time), else it is refused with
//!   UNAUTHENTICATED before any handler runs; a method outside the caller's
//!   scope is PERMISSION_DENIED, and the [`CallerScope`] goes with the call,
//!   for grants a service checks itself ([`caller_may`]). When the server
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

/// What a caller's credential allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every method, and every grant.
    Everything,
    /// These methods (`pkg.Service/Method`) and grants (names a service
    /// checks itself, such as identity's right to give roles), no others.
    Only(&'static [&'static str]),
}

impl Scope {
    /// Whether it allows `what` (a method `pkg.Service/Method`, or a grant).
    #[must_use]
    pub fn allows(&self, what: &str) -> bool {
        match self {
            Self::Everything => true,
            Self::Only(list) => list.contains(&what),
        }
    }
}

/// One caller of a server: its name, the token it presents, what it may do.
#[derive(Clone, PartialEq, Eq)]
pub struct Caller {
    name: &'static str,
    expected: Arc<[u8]>,
    scope: Scope,
}

impl Caller {
    /// `name`, presenting `token`, allowed `scope`.
    #[must_use]
    pub fn new(name: &'static str, token: &str, scope: Scope) -> Self {
        Self {
            name,
            expected: Arc::from(format!("Bearer {token}").into_bytes()),
            scope,
        }
    }
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("name", &self.name)
            .field("token", &"***")
            .field("scope", &self.scope)
            .finish()
    }
}

/// Who made a call, as admission identified it; in the request's extensions,
/// so that a service can check a grant ([`caller_may`]).
#[derive(Debug, Clone, Copy)]
pub struct CallerScope {
    /// The caller's name.
    pub name: &'static str,
    /// What it may do.
    pub scope: Scope,
}

/// Whether the caller of a request whose extensions are `extensions` may do
/// `what`. A call admitted without identifying its caller (no credentials
/// configured) may.
#[must_use]
pub fn caller_may(extensions: &http::Extensions, what: &str) -> bool {
    extensions
        .get::<CallerScope>()
        .is_none_or(|caller| caller.scope.allows(what))
}

/// Requires a service credential on every call, and keeps each caller to its
/// scope (see the module docs).
#[derive(Debug, Clone)]
pub struct ServiceAuthLayer {
    callers: Arc<[Caller]>,
    client_certificate: bool,
    protect_infrastructure: bool,
}

/// Why a call is refused.
enum Refusal {
    Unauthenticated(&'static str),
    NotAllowed(&'static str),
}

impl ServiceAuthLayer {
    /// Calls must carry `token` (none: every call is let through); health and
    /// reflection too when `protect_infrastructure`.
    #[must_use]
    pub fn new(token: Option<&str>, protect_infrastructure: bool) -> Self {
        Self::with_callers(
            token
                .map(|t| Caller::new("service", t, Scope::Everything))
                .into_iter()
                .collect(),
            protect_infrastructure,
        )
    }

    /// Calls must carry the token of one of `callers` (none: every call is
    /// let through), and stay within its scope.
    #[must_use]
    pub fn with_callers(callers: Vec<Caller>, protect_infrastructure: bool) -> Self {
        Self {
            callers: callers.into(),
            client_certificate: false,
            protect_infrastructure,
        }
    }

    /// Who sent `request`, or why it is refused: no client certificate when
    /// one is required, a token missing or wrong, a method out of the
    /// caller's scope.
    fn admit<B>(
        &self,
        request: &http::Request<B>,
        infrastructure: bool,
    ) -> Result<Option<CallerScope>, Refusal> {
        if self.client_certificate && !crate::tls::has_client_certificate(request) {
            return Err(Refusal::Unauthenticated(
                "this service needs a client certificate signed by its client CA (STRATA_TLS_CLIENT_CERT)",
            ));
        }
        if self.callers.is_empty() {
            return Ok(None);
        }
        let presented = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map_or(&[][..], http::HeaderValue::as_bytes);
        // Constant time in the length of each expected value, and every one
        // compared: a wrong token says nothing about how much of it was
        // right, or whose it nearly was.
        let mut found = None;
        for caller in self.callers.iter() {
            if bool::from(presented.ct_eq(&caller.expected)) {
                found = Some(caller);
            }
        }
        let Some(caller) = found else {
            return Err(Refusal::Unauthenticated(if presented.is_empty() {
                "this service needs a service credential (authorization: Bearer <STRATA_SERVICE_TOKEN>)"
            } else {
                "the service credential is not valid"
            }));
        };
        let method = request.uri().path().trim_start_matches('/');
        if !infrastructure && !caller.scope.allows(method) {
            return Err(Refusal::NotAllowed(caller.name));
        }
        Ok(Some(CallerScope {
            name: caller.name,
            scope: caller.scope,
        }))
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

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let infrastructure = is_infrastructure(request.uri().path());
        if infrastructure && !self.layer.protect_infrastructure {
            return Box::pin(self.inner.call(request));
        }
        match self.layer.admit(&request, infrastructure) {
            Ok(caller) => {
                if let Some(caller) = caller {
                    request.extensions_mut().insert(caller);
                }
                Box::pin(self.inner.call(request))
            }
            Err(Refusal::Unauthenticated(why)) => {
                let refused = refused(Status::unauthenticated(why));
                Box::pin(async move { Ok(refused) })
            }
            Err(Refusal::NotAllowed(caller)) => {
                let why = format!(
                    "the {caller} credential may not call {}",
                    request.uri().path().trim_start_matches('/')
                );
                let refused = refused(Status::permission_denied(why));
                Box::pin(async move { Ok(refused) })
            }
        }
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

/// The header that marks a call refused because its service cannot serve on
/// this instance (its store does not answer): callers' breakers open at once
/// on it, as on a refused connection, and their retries go elsewhere.
pub const NOT_SERVING: &str = "x-strata-not-serving";

/// The hosted services whose health probe says no right now, shared by the
/// probe follower (which writes it) and [`NotServingLayer`] (which reads it).
#[derive(Debug, Default)]
pub struct NotServingSet(std::sync::RwLock<Vec<&'static str>>);

impl NotServingSet {
    /// Notes whether `service` (a fully-qualified name) can serve.
    pub fn set(&self, service: &'static str, serving: bool) {
        let mut down = self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        down.retain(|s| *s != service);
        if !serving {
            down.push(service);
        }
    }

    /// The service of `path` (`/pkg.Service/Method`), if it cannot serve.
    fn refusing(&self, path: &str) -> Option<&'static str> {
        let service = path.strip_prefix('/')?.split('/').next()?;
        let down = self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        down.iter().copied().find(|s| *s == service)
    }
}

/// Refuses at once, with UNAVAILABLE and [`NOT_SERVING`], every call to a
/// service whose health probe says no (its store cannot be reached from this
/// instance), instead of letting it wait on the store until its deadline:
/// the caller's retry goes to another replica.
#[derive(Debug, Clone)]
pub struct NotServingLayer {
    down: Arc<NotServingSet>,
}

impl NotServingLayer {
    /// Refuses what `down` names.
    #[must_use]
    pub fn new(down: Arc<NotServingSet>) -> Self {
        Self { down }
    }
}

impl<S> tower_layer::Layer<S> for NotServingLayer {
    type Service = NotServingService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        NotServingService {
            inner,
            down: self.down.clone(),
        }
    }
}

/// See [`NotServingLayer`].
#[derive(Debug, Clone)]
pub struct NotServingService<S> {
    inner: S,
    down: Arc<NotServingSet>,
}

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for NotServingService<S>
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
        let Some(service) = self.down.refusing(request.uri().path()) else {
            return Box::pin(self.inner.call(request));
        };
        let mut response: http::Response<ResBody> = Status::unavailable(format!(
            "{service} cannot serve on this instance now: its store does not answer"
        ))
        .into_http();
        response
            .headers_mut()
            .insert(NOT_SERVING, http::HeaderValue::from_static("1"));
        Box::pin(async move { Ok(response) })
    }
}

#[cfg(test)]
mod not_serving_tests {
    use super::*;

    #[tokio::test]
    async fn a_service_that_cannot_serve_is_refused_at_once_and_the_others_pass() {
        use tower_layer::Layer as _;
        use tower_service::Service as _;
        let down = Arc::new(NotServingSet::default());
        let inner = tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::from("served")))
        });
        let mut service = NotServingLayer::new(down.clone()).layer(inner);
        let call = |path: &str| http::Request::builder().uri(path).body(()).unwrap();
        down.set("strata.catalog.v1.ProductService", false);
        let refused = service
            .call(call("/strata.catalog.v1.ProductService/GetProduct"))
            .await
            .unwrap();
        assert_eq!(refused.headers()["grpc-status"], "14");
        assert_eq!(refused.headers()[NOT_SERVING], "1");
        let passed = service
            .call(call("/strata.inventory.v1.StockItemService/GetStockItem"))
            .await
            .unwrap();
        assert_eq!(passed.into_body(), "served");
        down.set("strata.catalog.v1.ProductService", true);
        let passed = service
            .call(call("/strata.catalog.v1.ProductService/GetProduct"))
            .await
            .unwrap();
        assert_eq!(passed.into_body(), "served", "serving again");
    }
}
