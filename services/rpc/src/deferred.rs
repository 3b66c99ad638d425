//! A service hosted before it can serve: [`Deferred`] answers UNAVAILABLE
//! until [`Deferred::ready`] hands it the real one, then passes every call
//! on. The data service hosts a context this way while the context's store
//! cannot be reached at start, so that the other contexts serve meanwhile and
//! callers get a clean, retryable answer rather than UNIMPLEMENTED.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
};

use axum_core::response::{IntoResponse, Response};
use tonic::{body::Body, server::NamedService};

/// See the module docs.
pub struct Deferred<S> {
    service: Arc<OnceLock<S>>,
    what: &'static str,
}

impl<S> Deferred<S> {
    /// A service that, until ready, answers UNAVAILABLE saying `what` (the
    /// context) cannot serve yet.
    #[must_use]
    pub fn new(what: &'static str) -> Self {
        Self {
            service: Arc::new(OnceLock::new()),
            what,
        }
    }

    /// From now on, calls go to `service` (a second call changes nothing).
    pub fn ready(&self, service: S) {
        let _ = self.service.set(service);
    }

    /// Whether [`Deferred::ready`] has been called.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.service.get().is_some()
    }
}

impl<S> Clone for Deferred<S> {
    fn clone(&self) -> Self {
        Self {
            service: Arc::clone(&self.service),
            what: self.what,
        }
    }
}

impl<S> std::fmt::Debug for Deferred<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deferred")
            .field("what", &self.what)
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl<S: NamedService> NamedService for Deferred<S> {
    const NAME: &'static str = S::NAME;
}

impl<S: crate::Hostable> tower_service::Service<http::Request<Body>> for Deferred<S> {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Generated services are always ready; the clone below is polled in call.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match self.service.get() {
            Some(service) => {
                let mut service = service.clone();
                Box::pin(async move {
                    std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
                    Ok(service.call(request).await?.into_response())
                })
            }
            None => {
                let status = tonic::Status::unavailable(format!(
                    "the {} context cannot reach its store yet; retry later",
                    self.what
                ));
                Box::pin(async move { Ok(status.into_http::<Body>().into_response()) })
            }
        }
    }
}
