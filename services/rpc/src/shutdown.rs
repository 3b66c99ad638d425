//! Graceful shutdown: the process signal, and ending open response streams when
//! the server starts draining.
//!
//! A server-streaming call (a health `Watch`, a followed event stream) never ends
//! by itself, so without help it would hold the drain until its timeout. The
//! layer here wraps every response body: once shutdown has begun and the body has
//! nothing ready to send, it ends the stream with the trailers `grpc-status`
//! UNAVAILABLE, "server shutting down" (clients retry elsewhere or later). What
//! the stream had ready is sent first. Unary calls are untouched: their handler
//! runs before the response exists, and their body is never pending.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::watch;

/// Ends every stream of an [`EndStreamsLayer`] when told to, or when dropped.
#[derive(Debug)]
pub(crate) struct StopStreams(watch::Sender<bool>);

impl StopStreams {
    /// From now on, a wrapped response body that is waiting ends instead.
    pub(crate) fn stop(&self) {
        self.0.send_replace(true);
    }
}

/// A layer whose response bodies end when its [`StopStreams`] says so, and the
/// handle that says so.
pub(crate) fn end_streams() -> (StopStreams, EndStreamsLayer) {
    let (stop, stopping) = watch::channel(false);
    (StopStreams(stop), EndStreamsLayer { stopping })
}

/// Wraps a service so that its open response streams end at shutdown.
#[derive(Debug, Clone)]
pub(crate) struct EndStreamsLayer {
    stopping: watch::Receiver<bool>,
}

impl<S> tower_layer::Layer<S> for EndStreamsLayer {
    type Service = EndStreams<S>;

    fn layer(&self, inner: S) -> Self::Service {
        EndStreams {
            inner,
            stopping: self.stopping.clone(),
        }
    }
}

/// See [`EndStreamsLayer`].
#[derive(Debug, Clone)]
pub(crate) struct EndStreams<S> {
    inner: S,
    stopping: watch::Receiver<bool>,
}

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for EndStreams<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes> + Unpin,
{
    type Response = http::Response<EndingBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let response = self.inner.call(request);
        let stopping = self.stopping.clone();
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|inner| EndingBody {
                inner: Some(inner),
                stopping,
                stopped: None,
            }))
        })
    }
}

/// A response body that ends with UNAVAILABLE when shutdown has begun and it has
/// nothing ready.
pub(crate) struct EndingBody<B> {
    /// `None` once ended by shutdown (its trailers sent).
    inner: Option<B>,
    stopping: watch::Receiver<bool>,
    /// Completes when shutdown begins; made the first time the body is pending,
    /// so a body that never waits (every unary response) costs nothing more.
    stopped: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl<B: std::fmt::Debug> std::fmt::Debug for EndingBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndingBody")
            .field("inner", &self.inner)
            .field("stopping", &*self.stopping.borrow())
            .finish_non_exhaustive()
    }
}

impl<B> Body for EndingBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(None);
        };
        // What the stream has ready goes first (a health watch's NOT_SERVING).
        let polled = Pin::new(inner).poll_frame(cx);
        if polled.is_ready() {
            return polled;
        }
        let stopping = &this.stopping;
        let stopped = this.stopped.get_or_insert_with(|| {
            let mut stopping = stopping.clone();
            Box::pin(async move {
                // An error means the sender is gone: the server is no more.
                let _ = stopping.wait_for(|stopping| *stopping).await;
            })
        });
        if stopped.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        // Dropping the inner body drops the handler's stream.
        this.inner = None;
        this.stopped = None;
        Poll::Ready(Some(Ok(Frame::trailers(shutting_down()))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

/// The trailers of a stream ended by shutdown: UNAVAILABLE.
fn shutting_down() -> HeaderMap {
    let mut trailers = HeaderMap::with_capacity(2);
    trailers.insert("grpc-status", HeaderValue::from_static("14"));
    trailers.insert("grpc-message", HeaderValue::from_static("server shutting down"));
    trailers
}

/// Completes on SIGINT or SIGTERM (on non-Unix, Ctrl-C only).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    // The handlers are installed here, when this is called, not when the
    // future is first polled: a SIGTERM that arrives once the server answers
    // calls must find them (the default action would kill the process).
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let handlers =
            signal(SignalKind::interrupt()).and_then(|i| Ok((i, signal(SignalKind::terminate())?)));
        async move {
            match handlers {
                Ok((mut interrupt, mut terminate)) => tokio::select! {
                    _ = interrupt.recv() => tracing::info!("received SIGINT"),
                    _ = terminate.recv() => tracing::info!("received SIGTERM"),
                },
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGINT and SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("received Ctrl-C");
    }
}
