//! Per-client rate limiting (governor's keyed GCRA limiter): each client gets
//! `per_second` requests a second with bursts up to `burst`, keyed by the
//! token's subject when the request is authenticated, else by the client's
//! address. Over the limit: 429 with `Retry-After`.

use std::{
    net::{IpAddr, SocketAddr},
    num::NonZeroU32,
    sync::Arc,
    time::Duration,
};

use axum::{
    extract::{ConnectInfo, Request, State},
    middleware::Next,
    response::{IntoResponse as _, Response},
};
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock as _, DefaultClock},
};
use http::StatusCode;

use crate::{auth::Principal, problem::Problem};

/// Who a limit applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Client {
    /// An authenticated account.
    Account(uuid::Uuid),
    /// An anonymous client, by address.
    Address(IpAddr),
}

/// The limiter shared by every request of a service.
#[derive(Debug, Clone)]
pub struct Limiter {
    limiter: Arc<DefaultKeyedRateLimiter<Client>>,
}

impl Limiter {
    /// `per_second` requests a second per client, bursts up to `burst`; forgets
    /// idle clients every minute (the task stops with the runtime).
    #[must_use]
    pub fn new(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        let limiter = Arc::new(RateLimiter::keyed(
            Quota::per_second(per_second).allow_burst(burst),
        ));
        let weak = Arc::downgrade(&limiter);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(limiter) = weak.upgrade() else { return };
                limiter.retain_recent();
            }
        });
        Self { limiter }
    }

    /// Whether `client` may make a request now; if not, how long to wait.
    ///
    /// # Errors
    /// The time until the next request is allowed.
    pub fn check(&self, client: &Client) -> Result<(), Duration> {
        self.limiter
            .check_key(client)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// The middleware; it runs after authentication, so that it can key by account.
pub async fn layer(State(limiter): State<Limiter>, request: Request, next: Next) -> Response {
    let client = match request.extensions().get::<Principal>() {
        Some(principal) => Some(Client::Account(principal.account_id)),
        None => request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| Client::Address(address.ip())),
    };
    if let Some(Err(wait)) = client.map(|client| limiter.check(&client)) {
        // Whole seconds, rounded up: a client that waits that long gets in.
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Problem::new(StatusCode::TOO_MANY_REQUESTS, "too many requests; slow down")
            .retry_after(seconds.max(1))
            .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_client_has_its_own_allowance() {
        let limiter = Limiter::new(NonZeroU32::new(1).unwrap(), NonZeroU32::new(2).unwrap());
        let a = Client::Account(uuid::Uuid::now_v7());
        let b = Client::Address(IpAddr::from([127, 0, 0, 1]));
        assert!(limiter.check(&a).is_ok());
        assert!(limiter.check(&a).is_ok());
        let wait = limiter.check(&a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(limiter.check(&b).is_ok(), "another client is not held back");
    }
}
