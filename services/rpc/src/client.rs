//! The client side: the one place where Strata processes make gRPC channels.
//!
//! [`channel`] turns a data service's address (`http://host:port`) into a
//! [`Channel`] that connects lazily (a caller can start before the data
//! service) and reconnects by itself, with a bounded connect time and HTTP/2
//! keep-alive, so that a dead peer is noticed instead of waited on.
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
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
};

use crate::X_REQUEST_ID;

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A channel to the data service at `address` (`http://host:port`); it
/// connects on first use.
///
/// # Errors
/// When `address` is not a URI.
pub fn channel(address: &str) -> Result<Channel, ClientError> {
    let endpoint = Endpoint::from_shared(address.to_owned()).map_err(|source| ClientError::Address {
        address: address.to_owned(),
        source,
    })?;
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .connect_lazy())
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

    /// The time left of the budget.
    #[must_use]
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// `message` as a request carrying the request id and the time this call may take.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(id) = &self.request_id {
            request.metadata_mut().insert(X_REQUEST_ID, id.clone());
        }
        request.set_timeout(self.timeout());
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
        let error = channel("not an address").unwrap_err();
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
    async fn a_call_that_never_answers_ends_at_the_deadline() {
        let call = Call::new("req", Duration::from_millis(50), Duration::from_secs(1));
        let status = call
            .run(std::future::pending::<Result<tonic::Response<()>, Status>>())
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    }
}
