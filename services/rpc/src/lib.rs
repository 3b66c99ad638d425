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
pub mod metrics;
pub mod registry;
pub mod retry;
mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod trace;

pub use call_log::{X_REQUEST_ID, record_request_id};
pub use shutdown::shutdown_signal;

use std::{convert::Infallible, future::Future, net::SocketAddr, time::Duration};

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
    /// The service token callers must present; `None`: anyone may call.
    pub service_token: Option<String>,
    /// Whether health and reflection need the token too.
    pub protect_health: bool,
    /// The most calls in flight before new ones are refused; `None`: no limit.
    pub max_concurrent_calls: Option<usize>,
    /// The longest a call may run before it is ended (CANCELLED); `None`: no
    /// limit. A response stream is bounded until its first answer only.
    pub call_timeout: Option<Duration>,
    /// The most calls one HTTP/2 connection may have open at once.
    pub max_streams: u32,
}

/// The default bound on one call.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The default bound on the calls of one connection.
pub const DEFAULT_MAX_STREAMS: u32 = 200;

/// The default limit of calls in flight.
pub const DEFAULT_MAX_CONCURRENT_CALLS: usize = 1024;

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("service_token", &self.service_token.as_ref().map(|_| "***"))
            .field("protect_health", &self.protect_health)
            .field("max_concurrent_calls", &self.max_concurrent_calls)
            .field("call_timeout", &self.call_timeout)
            .field("max_streams", &self.max_streams)
            .finish()
    }
}

impl Default for Admission {
    fn default() -> Self {
        Self {
            service_token: None,
            protect_health: false,
            max_concurrent_calls: Some(DEFAULT_MAX_CONCURRENT_CALLS),
            call_timeout: Some(DEFAULT_CALL_TIMEOUT),
            max_streams: DEFAULT_MAX_STREAMS,
        }
    }
}

/// A gRPC server under construction: the services it hosts, by name.
#[derive(Debug)]
pub struct Server {
    routes: RoutesBuilder,
    names: Vec<&'static str>,
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

impl Server {
    /// A server hosting nothing yet.
    #[must_use]
    pub fn new() -> Self {
        Self {
            routes: RoutesBuilder::default(),
            names: Vec::new(),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            shutdown_grace: Duration::ZERO,
            admission: Admission::default(),
            registrar: None,
            tls: None,
        }
    }

    /// Hosts `service`; health reports it SERVING under its fully-qualified name.
    #[must_use]
    pub fn host<S>(mut self, service: S) -> Self
    where
        S: tower_service::Service<http::Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum_core::response::IntoResponse,
        S::Future: Send + 'static,
    {
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
        let (health, health_service) = tonic_health::server::health_reporter();
        set_status(&health, &self.names, ServingStatus::Serving).await;

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
                admission::ServiceAuthLayer::new(
                    self.admission.service_token.as_deref(),
                    self.admission.protect_health,
                )
                .client_certificate(self.tls.as_ref().is_some_and(tls::ServerTls::verifies_clients)),
            )
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

        tokio::select! {
            result = &mut server => return result.map_err(ServeError::Transport),
            () = shutdown => {}
        }
        tracing::info!(grace = ?self.shutdown_grace, "shutting down: reporting NOT_SERVING, deregistering, then draining");
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
