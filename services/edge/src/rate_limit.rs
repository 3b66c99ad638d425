//! Per-client rate limiting (governor's keyed GCRA limiter): each client gets
//! `per_second` requests a second with bursts up to `burst`, keyed by the
//! token's subject when the request is authenticated, else by the client's
//! address ([`crate::client`]: behind trusted proxies, the address they
//! forward; an IPv6 client by its /64). Over the limit: 429 with
//! `Retry-After`. The layer also puts the client's [`ClientAddress`] in the
//! request, for the handlers that throttle by it.

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

use crate::{auth::Principal, client::TrustedProxies, problem::Problem};

/// Who a limit applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Client {
    /// An authenticated account.
    Account(uuid::Uuid),
    /// An anonymous client, by address (an IPv6 one by its /64).
    Address(IpAddr),
}

/// The address of the client a request came from, as [`crate::client`]
/// decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddress {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().copied().ok_or_else(|| {
            tracing::error!(
                "the rate limit layer is missing from the router, or the server gives no peer address"
            );
            Problem::internal()
        })
    }
}

/// The limiter shared by every request of a service.
#[derive(Debug, Clone)]
pub struct Limiter {
    limiter: Arc<DefaultKeyedRateLimiter<Client>>,
    proxies: TrustedProxies,
}

impl Limiter {
    /// `per_second` requests a second per client, bursts up to `burst`; forgets
    /// idle clients every minute (the task stops with the runtime).
    #[must_use]
    pub fn new(per_second: NonZeroU32, burst: NonZeroU32, proxies: TrustedProxies) -> Self {
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
        Self { limiter, proxies }
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
pub async fn layer(State(limiter): State<Limiter>, mut request: Request, next: Next) -> Response {
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| limiter.proxies.client(*peer, request.headers()));
    if let Some(address) = address {
        request.extensions_mut().insert(ClientAddress(address));
    }
    let client = match request.extensions().get::<Principal>() {
        Some(principal) => Some(Client::Account(principal.account_id)),
        None => address.map(|address| Client::Address(crate::client::key(address))),
    };
    if let Some(Err(wait)) = client.map(|client| limiter.check(&client)) {
        return Problem::new(StatusCode::TOO_MANY_REQUESTS, "too many requests; slow down")
            .retry_after(retry_after(wait))
            .into_response();
    }
    next.run(request).await
}

/// `Retry-After` for a client that may come back after `wait`: whole seconds,
/// rounded up, so that a client that waits that long gets in; at least 1.
pub(crate) fn retry_after(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_client_has_its_own_allowance() {
        let limiter = Limiter::new(
            NonZeroU32::new(1).unwrap(),
            NonZeroU32::new(2).unwrap(),
            TrustedProxies::default(),
        );
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

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        for (wait, seconds) in [
            (Duration::ZERO, 1),
            (Duration::from_millis(1), 1),
            (Duration::from_millis(200), 1),
            (Duration::from_secs(1), 1),
            (Duration::from_millis(1_001), 2),
            (Duration::from_secs(2), 2),
            (Duration::from_millis(2_500), 3),
        ] {
            assert_eq!(retry_after(wait), seconds, "{wait:?}");
        }
    }

    /// A request from `address` (as the server's connect info says), signed
    /// in as `account` when given, through the limiter's layer.
    async fn call(limiter: &Limiter, address: Option<[u8; 4]>, account: Option<uuid::Uuid>) -> Response {
        use tower_service::Service as _;

        let mut app = axum::Router::new()
            .route("/", axum::routing::get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(limiter.clone(), layer));
        let mut request = Request::new(axum::body::Body::empty());
        if let Some(address) = address {
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::from((address, 40_000))));
        }
        if let Some(account_id) = account {
            request.extensions_mut().insert(Principal {
                account_id,
                roles: Vec::new(),
            });
        }
        app.call(request).await.unwrap()
    }

    #[tokio::test]
    async fn over_its_allowance_a_client_gets_429_with_retry_after() {
        let limiter = Limiter::new(
            NonZeroU32::new(1).unwrap(),
            NonZeroU32::new(1).unwrap(),
            TrustedProxies::default(),
        );
        let address = [192, 0, 2, 1];
        assert_eq!(call(&limiter, Some(address), None).await.status(), 200);
        let refused = call(&limiter, Some(address), None).await;
        assert_eq!(refused.status(), 429);
        assert_eq!(refused.headers()[http::header::RETRY_AFTER], "1");
        assert_eq!(
            refused.headers()[http::header::CONTENT_TYPE],
            crate::problem::PROBLEM_JSON
        );
        // Another address has its own allowance.
        assert_eq!(call(&limiter, Some([192, 0, 2, 2]), None).await.status(), 200);
        // A signed-in client is counted by account, wherever it comes from.
        let account = uuid::Uuid::now_v7();
        assert_eq!(call(&limiter, Some(address), Some(account)).await.status(), 200);
        assert_eq!(
            call(&limiter, Some([192, 0, 2, 3]), Some(account)).await.status(),
            429
        );
        // A request with neither (no connect info) is not limited.
        assert_eq!(call(&limiter, None, None).await.status(), 200);
        assert_eq!(call(&limiter, None, None).await.status(), 200);
    }
}
