//! The client side: the one place where Strata processes make gRPC channels.
//!
//! [`channel`] turns a data service's address (`http://host:port`) into an
//! [`RpcChannel`] that connects lazily (a caller can start before the data
//! service) and reconnects by itself, with a bounded connect time and HTTP/2
//! keep-alive, so that a dead peer is noticed instead of waited on, and that
//! presents the service credential (`STRATA_SERVICE_TOKEN`) on every call.
//!
//! [`Call`] is what one caller's request needs on every call it makes: its
//! request id, passed on as `x-request-id` metadata (the data service logs it
//! with the call), and its deadline: each call gets the time left of the
//! caller's budget, capped per call, as its gRPC timeout, and the caller
//! stops waiting when it runs out.

use std::{future::Future, time::Duration};

use tokio::time::Instant;
use tonic::{
    Status,
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::Endpoint,
};

use crate::X_REQUEST_ID;

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How often an HTTP/2 ping goes out on a connection with calls in flight.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// How long a ping may go unanswered before the connection is dropped.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

pub use crate::wire::IDEMPOTENCY_KEY;

/// The environment variable of the service credential, on both sides.
pub const SERVICE_TOKEN_VAR: &str = "STRATA_SERVICE_TOKEN";

/// The value of the setting `var` from `env`, else the content of the file
/// that `<var>_FILE` names (its trailing whitespace trimmed): how secrets
/// reach a process as files (compose and Kubernetes secrets) rather than in
/// its environment. Empty counts as unset.
///
/// # Errors
/// `<var>_FILE: cannot read <path>: <why>`.
pub fn setting_or_file(var: &str, env: impl Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    if let Some(value) = env(var).filter(|v| !v.is_empty()) {
        return Ok(Some(value));
    }
    let file_var = format!("{var}_FILE");
    let Some(path) = env(&file_var).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let content =
        std::fs::read_to_string(&path).map_err(|e| format!("{file_var}: cannot read {path}: {e}"))?;
    let value = content.trim_end().to_owned();
    Ok((!value.is_empty()).then_some(value))
}

/// The stack under the retries: the balanced endpoints, behind a buffer
/// (so that it can be cloned), type-erased.
/// (Its error is a `Status`, not a `Box<dyn Error>`: rustc cannot prove the
/// generated clients' futures `Send` through a trait object in this bound.)
pub type Balanced = tower::util::BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    Status,
>;

/// What every Strata client calls through, outermost first: retries by the
/// method's policy ([`crate::retry`]), the breakers' guard (all endpoints
/// open: refused at once, and not retried), power-of-two-choices balancing over the
/// endpoints by calls in flight, and for each endpoint its circuit breaker
/// ([`crate::breaker`]), the service credential and its channel.
pub type RpcChannel = crate::retry::Retrying<crate::breaker::Breakers<Balanced>>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The service credential, added to every call as `authorization: Bearer …`.
#[derive(Clone, Default)]
pub struct ServiceToken(Option<MetadataValue<Ascii>>);

impl ServiceToken {
    /// `token`, or none.
    ///
    /// # Errors
    /// When the token is not printable ASCII.
    pub fn new(token: Option<&str>) -> Result<Self, ClientError> {
        token
            .map(|t| MetadataValue::try_from(format!("Bearer {t}")).map_err(|_| ClientError::Token))
            .transpose()
            .map(Self)
    }

    /// The token in `STRATA_SERVICE_TOKEN`, else in the file
    /// `STRATA_SERVICE_TOKEN_FILE` names, if either is set.
    ///
    /// # Errors
    /// When it is not printable ASCII, or the file cannot be read.
    pub fn from_env() -> Result<Self, ClientError> {
        let token = setting_or_file(SERVICE_TOKEN_VAR, |var| std::env::var(var).ok())
            .map_err(ClientError::TokenFile)?;
        Self::new(token.as_deref())
    }
}

impl std::fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.write_str(if self.0.is_some() {
            "ServiceToken(***)"
        } else {
            "ServiceToken(none)"
        })
    }
}

/// What a caller presents and trusts: the service token, and TLS settings for
/// `https://` addresses ([`crate::tls`]).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// Sent on every call.
    pub token: ServiceToken,
    /// For `https://` addresses; without it such an address is refused.
    pub tls: Option<crate::tls::ClientTls>,
}

impl From<ServiceToken> for Credentials {
    fn from(token: ServiceToken) -> Self {
        Self { token, tls: None }
    }
}

impl Interceptor for ServiceToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert("authorization", token.clone());
        }
        Ok(request)
    }
}

/// A channel to `downstream` (what it is called in logs, errors and metrics:
/// `inventory`) at `addresses`, presenting `credentials` (a [`ServiceToken`]
/// will do); it connects on first use. The addresses are one of:
/// - `http://host:port` (`https://` for TLS), or several separated by commas
///   (replicas, balanced);
/// - `dns://host:port`: every address the name resolves to, resolved again
///   every [`DNS_REFRESH`];
/// - `etcd://host:port[,host:port…][/name]`: the instances registered in etcd
///   under `name` (default: `downstream`), followed as they come and go.
///
/// Each endpoint's breaker is named `downstream@address`. Must be called
/// within a Tokio runtime (the balancer's buffer runs as a task).
///
/// # Errors
/// When an address is not a URI, or there is none, or an `https://` address
/// comes without TLS settings.
pub fn channel(
    downstream: &str,
    addresses: &str,
    credentials: impl Into<Credentials>,
) -> Result<RpcChannel, ClientError> {
    let token = credentials.into();
    if let Some(name) = addresses.trim().strip_prefix("dns://") {
        return dns_channel(downstream, name, token);
    }
    if addresses.trim().starts_with("etcd://") {
        return etcd_channel(downstream, addresses.trim(), token);
    }
    let mut breakers = Vec::new();
    for address in addresses.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        breakers.push(endpoint(downstream, address, &token)?);
    }
    if breakers.is_empty() {
        return Err(ClientError::NoAddress(downstream.to_owned()));
    }
    let guard: Vec<_> = breakers.iter().collect();
    let guard = crate::breaker::Breakers::new(&guard, ());
    let endpoints: Vec<_> = breakers.into_iter().map(loaded).collect();
    let balance = tower::balance::p2c::Balance::new(tower::discover::ServiceList::new(endpoints));
    Ok(crate::retry::Retrying::new(guard.around(buffered(balance))))
}

/// One endpoint's stack: its breaker, the service credential, its channel.
type EndpointStack = crate::breaker::Breaker<InterceptedService<tonic::transport::Channel, ServiceToken>>;

fn endpoint(
    downstream: &str,
    address: &str,
    credentials: &Credentials,
) -> Result<EndpointStack, ClientError> {
    let malformed = |source| ClientError::Address {
        address: address.to_owned(),
        source,
    };
    let mut endpoint = Endpoint::from_shared(address.to_owned()).map_err(malformed)?;
    if endpoint.uri().scheme_str() == Some("https") {
        let tls = credentials
            .tls
            .as_ref()
            .ok_or_else(|| ClientError::NoTls(address.to_owned()))?;
        endpoint = endpoint.tls_config(tls.config()).map_err(malformed)?;
    }
    let channel = endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        // A peer that stops answering without closing the connection (a
        // black hole) is noticed within 15 s, and the channel connects
        // again; at 30 + 10 s, calls and breaker probes kept going into the
        // dead connection for 40 s after the path was back.
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .connect_lazy();
    Ok(crate::breaker::Breaker::new(
        &format!("{downstream}@{address}"),
        InterceptedService::new(channel, credentials.token.clone()),
    ))
}

/// An endpoint with its load measure: calls in flight.
fn loaded(endpoint: EndpointStack) -> tower::load::PendingRequests<EndpointStack> {
    tower::load::PendingRequests::new(endpoint, tower::load::CompleteOnResponse::default())
}

/// The balancer behind a buffer (so that it can be cloned), type-erased.
fn buffered<S>(balance: S) -> Balanced
where
    S: tower_service::Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + Sync,
{
    Balanced::new(tower::util::MapErr::new(
        tower::buffer::Buffer::new(balance, 1024),
        transport_failure,
    ))
}

/// What a caller is told when a call failed below gRPC (connecting, TLS,
/// HTTP/2) and no service answered: UNAVAILABLE, as gRPC's status codes say
/// of transport failures (tonic says UNKNOWN "transport error"), with the
/// cause in the message.
fn transport_failure(error: BoxError) -> Status {
    let status = Status::from_error(error);
    if status.code() != tonic::Code::Unknown {
        return status;
    }
    let cause =
        std::error::Error::source(&status).map_or_else(|| status.message().to_owned(), crate::error_chain);
    Status::unavailable(cause)
}

/// How often a DNS name is resolved again.
pub const DNS_REFRESH: Duration = Duration::from_secs(5);

/// `dns://host:port`: every address the name resolves to (A and AAAA) is an
/// endpoint, resolved again every [`DNS_REFRESH`]. A failed resolution keeps
/// the set it had and is tried again. With TLS settings, the endpoints are
/// called over TLS and their certificate must name `host`.
fn dns_channel(
    downstream: &str,
    name: &str,
    mut credentials: Credentials,
) -> Result<RpcChannel, ClientError> {
    let (host, port) = name
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host.to_owned(), port.parse::<u16>().ok()?)))
        .ok_or_else(|| ClientError::NoAddress(format!("{downstream}: dns://{name} needs host:port")))?;
    let scheme = match credentials.tls.take() {
        Some(tls) => {
            credentials.tls = Some(tls.for_name(&host));
            "https"
        }
        None => "http",
    };
    let (sets, found) = tokio::sync::mpsc::channel(1);
    let name = downstream.to_owned();
    tokio::spawn(async move {
        loop {
            match tokio::net::lookup_host((host.as_str(), port)).await {
                Ok(addresses) => {
                    let set = addresses.map(|a| format!("{scheme}://{a}")).collect();
                    if sets.send(set).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(downstream = name, host, %error, "cannot resolve; keeping the endpoints known");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(DNS_REFRESH) => {}
                // Nobody balances over them any more: stop resolving.
                () = sets.closed() => return,
            }
        }
    });
    Ok(discovered(downstream, "DNS", found, credentials))
}

/// `etcd://host:port[,host:port…][/name]`: the instances registered in etcd
/// for `name` (by default the downstream's own name, e.g. `inventory`),
/// followed with a watch ([`crate::registry`]).
fn etcd_channel(downstream: &str, url: &str, token: Credentials) -> Result<RpcChannel, ClientError> {
    let (members, context) = match url.strip_prefix("etcd://").and_then(|rest| rest.split_once('/')) {
        Some((members, context)) if !context.is_empty() => (format!("etcd://{members}"), context),
        _ => (url.to_owned(), downstream),
    };
    let etcd = crate::registry::Etcd::new(&members).map_err(ClientError::Registry)?;
    let found = crate::registry::discover(etcd, context);
    Ok(discovered(downstream, "etcd", found, token))
}

/// A channel over the endpoints a discovery task finds: each set it sends is
/// compared with the endpoints known, those that appear are added to the
/// balancer (each with its breaker), those that disappear removed.
fn discovered(
    downstream: &str,
    source: &'static str,
    mut found: tokio::sync::mpsc::Receiver<std::collections::BTreeSet<String>>,
    token: Credentials,
) -> RpcChannel {
    let (changes, discovered) = tokio::sync::mpsc::channel(64);
    let guard = crate::breaker::Breakers::new::<()>(&[], ());
    let registry = guard.clone();
    let downstream = downstream.to_owned();
    tokio::spawn(async move {
        // Address → its breaker's name.
        let mut known: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        while let Some(set) = found.recv().await {
            let gone: Vec<String> = known.keys().filter(|a| !set.contains(*a)).cloned().collect();
            for address in gone {
                if let Some(name) = known.remove(&address) {
                    registry.remove(&name);
                }
                tracing::info!(%downstream, %address, source, "endpoint gone");
                let removed = tower::discover::Change::Remove(address);
                if changes
                    .send(Ok::<_, std::convert::Infallible>(removed))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let new: Vec<String> = set.into_iter().filter(|a| !known.contains_key(a)).collect();
            for address in new {
                let stack = match endpoint(&downstream, &address, &token) {
                    Ok(stack) => stack,
                    Err(error) => {
                        tracing::warn!(%downstream, source, %error, "ignoring an endpoint that is not an address");
                        continue;
                    }
                };
                registry.add(&stack);
                known.insert(address.clone(), format!("{downstream}@{address}"));
                tracing::info!(%downstream, %address, source, "endpoint found");
                let inserted = tower::discover::Change::Insert(address, loaded(stack));
                if changes.send(Ok(inserted)).await.is_err() {
                    return;
                }
            }
        }
    });
    let balance = tower::balance::p2c::Balance::new(tokio_stream::wrappers::ReceiverStream::new(discovered));
    crate::retry::Retrying::new(guard.around(buffered(balance)))
}

/// Why a channel could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address does not parse.
    #[error("{address:?} is not an address like http://127.0.0.1:50051: {source}")]
    Address {
        /// What was given.
        address: String,
        /// Why it does not parse.
        #[source]
        source: tonic::transport::Error,
    },
    /// No address was given.
    #[error("no address for {0}")]
    NoAddress(String),
    /// An `https://` address, and no CA to trust.
    #[error("{0} is https:// and no CA is configured to verify it ({ca})", ca = crate::tls::CA_VAR)]
    NoTls(String),
    /// The registry address is malformed.
    #[error(transparent)]
    Registry(crate::registry::RegistryError),
    /// The file of the service token cannot be read.
    #[error("{0}")]
    TokenFile(String),
    /// The service token cannot be sent as a header.
    #[error("{SERVICE_TOKEN_VAR} must be printable ASCII")]
    Token,
}

/// The request id and deadline of one caller's request, for every call it
/// makes downstream.
#[derive(Debug, Clone)]
pub struct Call {
    request_id: Option<MetadataValue<tonic::metadata::Ascii>>,
    deadline: Instant,
    per_call: Duration,
}

impl Call {
    /// A caller's request with `budget` left in all, each call bounded by `per_call`.
    #[must_use]
    pub fn new(request_id: &str, budget: Duration, per_call: Duration) -> Self {
        Self {
            // A request id that is not valid metadata is simply not passed on.
            request_id: MetadataValue::try_from(request_id).ok(),
            deadline: Instant::now() + budget,
            per_call,
        }
    }

    /// The calls of one step of a sequence, when `steps` steps (this one
    /// included) are still to run: each call may take the time left divided by
    /// the steps left (and no more than the cap per call), so that a slow
    /// early step leaves time for the later ones; the last step gets all that
    /// remains. The request id and the overall deadline are the same.
    #[must_use]
    pub fn share(&self, steps: u32) -> Self {
        Self {
            per_call: self.per_call.min(self.remaining() / steps.max(1)),
            ..self.clone()
        }
    }

    /// The time left of the budget.
    #[must_use]
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// `message` as a request carrying the request id and the time this call
    /// may take; a command (a message with a `request_id`) also carries its
    /// idempotency key as `idempotency-key` metadata, which is what lets the
    /// client stack retry it.
    pub fn request<T: 'static>(&self, message: T) -> tonic::Request<T> {
        let key = strata_proto::request_id_of(&message)
            .filter(|k| !k.is_empty())
            .and_then(|k| MetadataValue::try_from(k).ok());
        let mut request = tonic::Request::new(message);
        if let Some(id) = &self.request_id {
            request.metadata_mut().insert(X_REQUEST_ID, id.clone());
        }
        if let Some(key) = key {
            request.metadata_mut().insert(IDEMPOTENCY_KEY, key);
        }
        request.set_timeout(self.timeout());
        crate::trace::inject(request.metadata_mut());
        request
    }

    /// Runs one call, giving up with DEADLINE_EXCEEDED when its time runs out
    /// (also when the peer never answers at all).
    ///
    /// # Errors
    /// The call's own status, or DEADLINE_EXCEEDED.
    pub async fn run<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, Status> {
        match tokio::time::timeout(self.timeout(), call).await {
            Ok(result) => result.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded("the call's deadline passed")),
        }
    }

    fn timeout(&self) -> Duration {
        self.remaining().min(self.per_call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_address_is_named() {
        let error = channel("test", "not an address", ServiceToken::default()).unwrap_err();
        assert!(error.to_string().contains("\"not an address\""), "{error}");
    }

    #[tokio::test]
    async fn a_request_carries_the_id_and_the_time_left() {
        let call = Call::new("req-1", Duration::from_secs(3), Duration::from_secs(1));
        let request = call.request(());
        assert_eq!(request.metadata().get(X_REQUEST_ID).unwrap(), "req-1");
        let timeout = request.metadata().get("grpc-timeout").unwrap().to_str().unwrap();
        assert!(timeout.ends_with('u') || timeout.ends_with('m'), "{timeout}");
        let short = Call::new("req-2", Duration::from_millis(10), Duration::from_secs(1));
        assert!(short.remaining() <= Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sequence_of_steps_shares_the_time_left() {
        let call = Call::new("req", Duration::from_secs(6), Duration::from_secs(4));
        assert_eq!(call.share(3).timeout(), Duration::from_secs(2), "a third of 6 s");
        assert_eq!(
            call.share(1).timeout(),
            Duration::from_secs(4),
            "the cap per call still holds"
        );
        assert_eq!(
            call.share(0).timeout(),
            Duration::from_secs(4),
            "no steps is one step"
        );
        // The first step was slow: the next of two gets half of what is left.
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(call.share(2).timeout(), Duration::from_secs(1));
        assert_eq!(
            call.share(1).timeout(),
            Duration::from_secs(2),
            "the last gets the rest"
        );
        let shared = call.share(2);
        assert_eq!(shared.remaining(), call.remaining(), "the same overall deadline");
        assert_eq!(shared.request(()).metadata().get(X_REQUEST_ID).unwrap(), "req");
    }

    #[test]
    fn the_token_is_sent_but_never_shown() {
        let mut token = ServiceToken::new(Some("s3cret")).unwrap();
        assert_eq!(format!("{token:?}"), "ServiceToken(***)");
        let request = token.call(tonic::Request::new(())).unwrap();
        assert_eq!(request.metadata().get("authorization").unwrap(), "Bearer s3cret");
        assert!(ServiceToken::new(Some("bad\ntoken")).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_never_answers_ends_at_the_deadline() {
        let call = Call::new("req", Duration::from_millis(50), Duration::from_secs(1));
        let status = call
            .run(std::future::pending::<Result<tonic::Response<()>, Status>>())
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    }
}
