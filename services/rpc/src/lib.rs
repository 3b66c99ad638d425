//! The RPC stack every Strata process shares: the server bootstrap, and the
//! client side ([`client`]: where channels are made, and the request id and
//! deadline every downstream call carries).
//!
//! [`Server`] serves a set of gRPC services together with `grpc.health.v1.Health`
//! (SERVING per hosted service) and gRPC reflection (v1 and v1alpha) that lists
//! exactly the hosted services, health and itself, and also describes the
//! `google.rpc` error details ([`GOOGLE_RPC_FILE_DESCRIPTOR_SET`]).
//! [`Server::serve`] takes the listener, so tests bind `127.0.0.1:0` and own the
//! port, and a shutdown future: when it completes, health turns NOT_SERVING, the
//! server deregisters from etcd (when registered, [`registry`]), keeps serving
//! for the shutdown grace, then stops accepting, ends open response streams
//! (UNAVAILABLE) and drains in-flight calls for a bounded time.
//!
//! Every call is logged once, when it ends (method, status code, latency and the
//! request id a handler records with [`record_request_id`]); [`telemetry::init`]
//! installs the subscriber every process uses, as text or JSON.
//!
//! Layout: `lib.rs` the server; `call_log.rs` the layer that logs each call;
//! `shutdown.rs` the signal and the layer that ends open streams at shutdown;
//! `client.rs` channels and per-call metadata and deadlines; `admission.rs`
//! service-to-service authentication and load shedding; `metrics.rs` the
//! Prometheus registry and `/metrics`; `registry.rs` registration and discovery
//! on etcd; `retry.rs` and `breaker.rs` the client's retries and breakers;
//! `telemetry.rs` the log subscriber and format; `trace.rs` trace context
//! across processes; `tls.rs` TLS and client certificates.

pub mod admission;
pub mod breaker;
mod call_log;
pub mod client;
pub mod deferred;
pub mod metrics;
pub mod registry;
pub mod retry;
mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod trace;
mod wire;

pub use call_log::{X_REQUEST_ID, record_request_id};
pub use shutdown::shutdown_signal;

use std::{convert::Infallible, future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tonic::{
    body::Body,
    server::NamedService,
    service::{Routes, RoutesBuilder},
    transport::server::TcpIncoming,
};
use tonic_health::{ServingStatus, server::HealthReporter};

/// How long in-flight calls may take to finish after shutdown begins, by default.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The name of the health service, as clients ask reflection for it.
pub const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

/// The encoded `FileDescriptorSet` of `google/rpc/status.proto` and
/// `google/rpc/error_details.proto` (with their imports): the types of the rich
/// error details every Strata service returns (`ErrorInfo`, `BadRequest`, …).
/// Reflection serves it so that clients can decode those details.
pub const GOOGLE_RPC_FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/google_rpc_descriptor.bin"));

/// Who may call a server and how many at once (see [`admission`]). Its
/// `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Admission {
    /// The service token callers must present, allowing everything; `None`
    /// (and no `callers`): anyone may call.
    pub service_token: Option<String>,
    /// Callers with tokens of their own, each kept to its scope.
    pub callers: Vec<admission::Caller>,
    /// Whether health and reflection need the token too.
    pub protect_health: bool,
    /// The most calls in flight before new ones are refused; `None`: no limit.
    pub max_concurrent_calls: Option<usize>,
    /// The longest a call may run before it is ended (CANCELLED); `None`: no
    /// limit. A response stream is bounded until its first answer only.
    pub call_timeout: Option<Duration>,
    /// The most calls one HTTP/2 connection may have open at once.
    pub max_streams: u32,
    /// How long a connection may live before the server ends it gracefully
    /// (GOAWAY; calls in flight finish), so that callers connect again and
    /// spread over replicas added since, whatever balances them (kube-proxy
    /// balances connections, not calls); `None`: for ever.
    pub max_connection_age: Option<Duration>,
}

/// The default bound on one call.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The default bound on the calls of one connection.
pub const DEFAULT_MAX_STREAMS: u32 = 200;

/// The default age past which a caller's connection is ended gracefully.
pub const DEFAULT_MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);

/// The default limit of calls in flight.
pub const DEFAULT_MAX_CONCURRENT_CALLS: usize = 1024;

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("service_token", &self.service_token.as_ref().map(|_| "***"))
            .field("callers", &self.callers)
            .field("protect_health", &self.protect_health)
            .field("max_concurrent_calls", &self.max_concurrent_calls)
            .field("call_timeout", &self.call_timeout)
            .field("max_streams", &self.max_streams)
            .field("max_connection_age", &self.max_connection_age)
            .finish()
    }
}

impl Default for Admission {
    fn default() -> Self {
        Self {
            service_token: None,
            callers: Vec::new(),
            protect_health: false,
            max_concurrent_calls: Some(DEFAULT_MAX_CONCURRENT_CALLS),
            call_timeout: Some(DEFAULT_CALL_TIMEOUT),
            max_streams: DEFAULT_MAX_STREAMS,
            max_connection_age: Some(DEFAULT_MAX_CONNECTION_AGE),
        }
    }
}

/// What a server can host: a gRPC service as tonic generates them (named,
/// cloneable, answering every request). Written once, for [`Server::host`]
/// and for whoever hands it services.
pub trait Hostable:
    tower_service::Service<
        http::Request<Body>,
        Error = Infallible,
        Response: axum_core::response::IntoResponse,
        Future: Send + 'static,
    > + NamedService
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> Hostable for S where
    S: tower_service::Service<
            http::Request<Body>,
            Error = Infallible,
            Response: axum_core::response::IntoResponse,
            Future: Send + 'static,
        > + NamedService
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// Whether a hosted service can serve now (its store answers, say): asked
/// every [`HEALTH_PERIOD`]; an answer that takes longer counts as no.
pub type Probe = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// How often the services' probes are asked.
pub const HEALTH_PERIOD: Duration = Duration::from_secs(1);

/// A gRPC server under construction: the services it hosts, by name.
pub struct Server {
    routes: RoutesBuilder,
    names: Vec<&'static str>,
    probes: Vec<(&'static str, Probe)>,
    drain_timeout: Duration,
    shutdown_grace: Duration,
    admission: Admission,
    registrar: Option<registry::Registrar>,
    tls: Option<tls::ServerTls>,
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("names", &self.names)
            .field(
                "probed",
                &self.probes.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
            )
            .field("drain_timeout", &self.drain_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("admission", &self.admission)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server hosting nothing yet.
    #[must_use]
    pub fn new() -> Self {
        Self {
            routes: RoutesBuilder::default(),
            names: Vec::new(),
            probes: Vec::new(),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            shutdown_grace: Duration::ZERO,
            admission: Admission::default(),
            registrar: None,
            tls: None,
        }
    }

    /// Health follows `probe` for the hosted service `name`: SERVING while
    /// it answers yes, NOT_SERVING while it answers no or not within
    /// [`HEALTH_PERIOD`]; the server as a whole (the empty name) is SERVING
    /// while every probed service is.
    #[must_use]
    pub fn health_probe(mut self, name: &'static str, probe: Probe) -> Self {
        self.probes.push((name, probe));
        self
    }

    /// Hosts `service`; health reports it SERVING under its fully-qualified name.
    #[must_use]
    pub fn host<S: Hostable>(mut self, service: S) -> Self {
        self.routes.add_service(service);
        self.names.push(S::NAME);
        self
    }

    /// Bounds how long in-flight calls may take to finish after shutdown begins.
    #[must_use]
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// How long to keep serving, NOT_SERVING, once shutdown begins, before
    /// the server stops accepting: time for balancers and orchestrators that
    /// watch health to take it out of rotation (zero by default).
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Registers the server in etcd once it serves, and deregisters it first
    /// thing at shutdown ([`registry`]).
    #[must_use]
    pub fn registrar(mut self, registrar: Option<registry::Registrar>) -> Self {
        self.registrar = registrar;
        self
    }

    /// Serves TLS only, when given ([`tls`]); with a client CA, callers need a
    /// certificate it signed (health and reflection as [`Admission`] says).
    #[must_use]
    pub fn tls(mut self, tls: Option<tls::ServerTls>) -> Self {
        self.tls = tls;
        self
    }

    /// Who may call and how many at once.
    #[must_use]
    pub fn admission(mut self, admission: Admission) -> Self {
        self.admission = admission;
        self
    }

    /// The fully-qualified names of the hosted services.
    #[must_use]
    pub fn hosted(&self) -> &[&'static str] {
        &self.names
    }

    /// Serves on `listener` (registered in etcd when a [`registry::Registrar`]
    /// was given) until `shutdown` completes, then reports NOT_SERVING,
    /// deregisters, keeps serving for the shutdown grace, stops accepting, ends the open response streams (a health `Watch`, any
    /// server-streaming call) with UNAVAILABLE once they have sent what they had
    /// ready, and lets in-flight unary calls finish, for at most the drain
    /// timeout.
    ///
    /// # Errors
    /// When the reflection service cannot be built from the descriptor sets or the
    /// transport fails.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let local: Option<SocketAddr> = listener.local_addr().ok();
        let health = HealthReporter::new();
        let health_service = tonic_health::pb::health_server::HealthServer::new(MarkedHealth(
            tonic_health::server::HealthService::from_health_reporter(health.clone()),
        ));
        set_status(&health, &self.names, ServingStatus::Serving).await;
        // Probed services start as their probe's first answer says.
        let not_serving = Arc::new(admission::NotServingSet::default());
        let first = ask(&self.probes).await;
        report(
            &health,
            &not_serving,
            &self.probes,
            &mut vec![None; first.len()],
            first,
        )
        .await;

        // Reflection lists exactly what this server hosts: the hosted services,
        // health, and (per protocol version) itself. It also describes the
        // google.rpc error details, which no listed service names but every
        // error may carry.
        let reflection = |itself: &str| {
            let builder = tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(strata_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(GOOGLE_RPC_FILE_DESCRIPTOR_SET)
                .with_service_name(HEALTH_SERVICE)
                .with_service_name(itself);
            self.names
                .iter()
                .fold(builder, |builder, name| builder.with_service_name(*name))
        };
        let reflection_v1 = reflection(tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME)
            .build_v1()
            .map_err(ServeError::Reflection)?;
        let reflection_v1alpha =
            reflection(tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME)
                .build_v1alpha()
                .map_err(ServeError::Reflection)?;

        let mut routes = self.routes;
        routes
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        let routes: Routes = routes.routes();

        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
        let (stop_streams, end_streams) = shutdown::end_streams();
        let mut builder = tonic::transport::Server::builder()
            .max_concurrent_streams(Some(self.admission.max_streams))
            .http2_max_header_list_size(Some(16 * 1024));
        if let Some(limit) = self.admission.call_timeout {
            builder = builder.timeout(limit);
        }
        if let Some(age) = self.admission.max_connection_age {
            builder = builder.max_connection_age(age);
        }
        let builder = match &self.tls {
            Some(tls) => builder.tls_config(tls.config()).map_err(ServeError::Transport)?,
            None => builder,
        };
        let server = builder
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            // Outermost: the call log sees the status the stream ended with,
            // refusals included.
            .layer(call_log::CallLogLayer)
            .layer(end_streams)
            // Authentication before the limit: a refused caller takes no place.
            .layer(
                admission::ServiceAuthLayer::with_callers(
                    self.admission
                        .service_token
                        .iter()
                        .map(|token| admission::Caller::new("service", token, admission::Scope::Everything))
                        .chain(self.admission.callers.iter().cloned())
                        .collect(),
                    self.admission.protect_health,
                )
                .client_certificate(self.tls.as_ref().is_some_and(tls::ServerTls::verifies_clients)),
            )
            // A service that cannot serve here (its store does not answer)
            // refuses at once, before taking a place.
            .layer(admission::NotServingLayer::new(not_serving.clone()))
            .layer(admission::ShedLayer::new(self.admission.max_concurrent_calls))
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = drain_rx.await;
                // Stopped here, as the server stops accepting in the same poll:
                // a client that sees its stream ended cannot connect again.
                stop_streams.stop();
            });
        tokio::pin!(server);
        tracing::info!(address = ?local, services = ?self.names, tls = self.tls.is_some(), "serving");
        let registration = self.registrar.map(registry::Registrar::start);
        let watching = (!self.probes.is_empty())
            .then(|| tokio::spawn(follow_probes(health.clone(), not_serving, self.probes)));

        tokio::select! {
            result = &mut server => return result.map_err(ServeError::Transport),
            () = shutdown => {}
        }
        tracing::info!(grace = ?self.shutdown_grace, "shutting down: reporting NOT_SERVING, deregistering, then draining");
        if let Some(watching) = watching {
            watching.abort();
        }
        set_status(&health, &self.names, ServingStatus::NotServing).await;
        // Out of the registry before anything else, so that callers stop
        // picking this instance while it still serves what they send.
        if let Some(registration) = registration {
            registration.deregister().await;
        }
        if !self.shutdown_grace.is_zero() {
            // Still accepting and serving, so that whoever watches health
            // stops sending here before connections are refused.
            tokio::select! {
                result = &mut server => return result.map_err(ServeError::Transport),
                () = tokio::time::sleep(self.shutdown_grace) => {}
            }
        }
        let _ = drain_tx.send(());
        match tokio::time::timeout(self.drain_timeout, &mut server).await {
            Ok(result) => result.map_err(ServeError::Transport),
            Err(_) => {
                tracing::warn!(timeout = ?self.drain_timeout, "drain timed out; dropping remaining calls");
                Ok(())
            }
        }
    }
}

/// Where this machine reaches a server listening on `listen`: the same port
/// on loopback when it listens on every address (`0.0.0.0`, `[::]`). What a
/// process's `health` subcommand calls.
#[must_use]
pub fn local_address(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::from(([127, 0, 0, 1], listen.port())),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, listen.port()))
        }
        _ => listen,
    }
}

/// An error with its sources, one after the other: tonic's own message for a
/// transport failure is only "transport error".
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Asks every probe each [`HEALTH_PERIOD`] and reports what changed.
async fn follow_probes(
    health: HealthReporter,
    not_serving: Arc<admission::NotServingSet>,
    probes: Vec<(&'static str, Probe)>,
) {
    let mut serving: Vec<Option<bool>> = vec![None; probes.len()];
    let mut tick = tokio::time::interval(HEALTH_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let answers = ask(&probes).await;
        report(&health, &not_serving, &probes, &mut serving, answers).await;
    }
}

/// Every probe's answer, each within [`HEALTH_PERIOD`] (else no).
async fn ask(probes: &[(&'static str, Probe)]) -> Vec<bool> {
    futures_util::future::join_all(probes.iter().map(|(_, probe)| async move {
        tokio::time::timeout(HEALTH_PERIOD, probe())
            .await
            .unwrap_or(false)
    }))
    .await
}

/// Sets the health of each probed service whose answer changed from
/// `serving`, and of the server as a whole (SERVING while all are); a
/// NOT_SERVING service's calls are refused at once (`not_serving`).
async fn report(
    health: &HealthReporter,
    not_serving: &admission::NotServingSet,
    probes: &[(&'static str, Probe)],
    serving: &mut [Option<bool>],
    answers: Vec<bool>,
) {
    let mut changed = false;
    for (((name, _), was), now) in probes.iter().zip(serving.iter_mut()).zip(answers) {
        if *was == Some(now) {
            continue;
        }
        changed = true;
        not_serving.set(name, now);
        if now {
            tracing::info!(service = name, "SERVING: its probe answers");
            health.set_service_status(name, ServingStatus::Serving).await;
        } else {
            tracing::warn!(service = name, "NOT_SERVING: its probe does not answer");
            health.set_service_status(name, ServingStatus::NotServing).await;
        }
        *was = Some(now);
    }
    if changed {
        let all = if serving.iter().all(|s| *s == Some(true)) {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        health.set_service_status("", all).await;
    }
}

/// gRPC health, whose NOT_SERVING answers carry [`admission::NOT_SERVING`]
/// as the refusals of a service that cannot serve do: a caller's breaker then
/// passes this endpoint over (it opens at once) without waiting for the
/// registry to drop it. With etcd down, a replica shutting down stays
/// registered, and a readiness check that asked it again and again through the
/// balancer found its downstream not ready though the other replica served:
/// `make test-cluster`'s etcd fault, with a replica restarted during the
/// outage, took both storefronts out of the load balancer (133 x 503).
struct MarkedHealth(tonic_health::server::HealthService);

#[tonic::async_trait]
impl tonic_health::pb::health_server::Health for MarkedHealth {
    async fn check(
        &self,
        request: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status> {
        let mut response = self.0.check(request).await?;
        if response.get_ref().status != tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        {
            response.metadata_mut().insert(
                admission::NOT_SERVING,
                tonic::metadata::MetadataValue::from_static("1"),
            );
        }
        Ok(response)
    }

    type WatchStream = tonic_health::server::WatchStream;

    async fn watch(
        &self,
        request: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        self.0.watch(request).await
    }
}

async fn set_status(health: &HealthReporter, names: &[&'static str], status: ServingStatus) {
    for name in names {
        health.set_service_status(*name, status).await;
    }
    // The empty name stands for the server as a whole.
    health.set_service_status("", status).await;
}

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The descriptor sets do not describe the hosted services.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[source] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("gRPC transport error: {0}")]
    Transport(#[source] tonic::transport::Error),
}
