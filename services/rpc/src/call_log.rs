//! One log line per gRPC call, when the call ends: a tower layer, so no handler
//! logs its own calls.
//!
//! The layer opens the call's span (`grpc`, with `grpc.method` and an empty
//! `request_id`) and keeps it entered while the handler runs and while the
//! response body is polled, so every event of the call carries those fields.
//! The status code is read where gRPC puts it: in the response headers of a
//! Trailers-Only response (how tonic returns an error), else in the trailers at
//! the end of the body. A call whose response never ends (the client went away,
//! or the server dropped it) is logged as `CANCELLED` when it is dropped, and so
//! is one whose client reset the stream while its request was being read (a
//! hedged read whose twin answered first): tonic answers those INTERNAL, to
//! nobody, which is not a fault of the server.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tonic::Code;
use tracing::{Instrument as _, Span};

/// The field a handler fills with [`record_request_id`].
const REQUEST_ID: &str = "request_id";

/// The metadata key under which callers pass on the id of the edge (HTTP)
/// request a call serves, so one request can be followed through every log.
pub const X_REQUEST_ID: &str = "x-request-id";

/// The span field that carries it.
const X_REQUEST_ID_FIELD: &str = "x_request_id";

/// Records the command's `request_id` (its idempotency key) on the span of the
/// gRPC call being served, so that the call's log line and every event logged
/// during the call carry it.
///
/// Call it from the handler, once the request is parsed. It records on the
/// current span, so call it where the call's span is current: in the handler
/// itself, not inside a span the handler entered (nor in a task it spawned).
/// Outside a call it does nothing.
pub fn record_request_id(request_id: &str) {
    Span::current().record(REQUEST_ID, request_id);
}

/// Wraps a service so that each of its calls is logged once, when it ends.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CallLogLayer;

impl<S> tower_layer::Layer<S> for CallLogLayer {
    type Service = CallLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallLog { inner }
    }
}

/// See [`CallLogLayer`].
#[derive(Debug, Clone)]
pub(crate) struct CallLog<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for CallLog<S>
where
    S: tower_service::Service<http::Request<WatchedBody<ReqBody>>, Response = http::Response<ResBody>>,
    ReqBody: Body<Data = Bytes> + Unpin,
    S::Future: Send + 'static,
    S::Error: std::fmt::Display + Send + 'static,
    ResBody: Body<Data = Bytes> + Unpin + Send + 'static,
{
    type Response = http::Response<LoggedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let mut call = Call::start(request.uri().path());
        // Before the span is first entered: its trace is fixed from then on.
        crate::trace::continue_trace(
            &call.span,
            request.uri().path().trim_start_matches('/'),
            request.headers(),
        );
        // The edge request this call serves, when the caller passed it on.
        if let Some(edge) = request.headers().get(X_REQUEST_ID).and_then(|v| v.to_str().ok()) {
            call.span
                .record(X_REQUEST_ID_FIELD, tracing::field::display(edge));
        }
        let span = call.span.clone();
        let request = request.map(|inner| WatchedBody {
            inner,
            reset: Arc::clone(&call.reset),
        });
        // Entered for `call` too: a service may do its work there, not only in
        // the future it returns.
        let response = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                match response.await {
                    Ok(response) => {
                        call.code = grpc_status(response.headers());
                        if response.extensions().get::<crate::admission::Refused>().is_some() {
                            // Refused before routing: the path is the caller's
                            // to invent, so it is no label value.
                            call.labels = Some(crate::metrics::MethodLabels::unknown());
                        }
                        Ok(response.map(|inner| LoggedBody {
                            inner,
                            call: Some(call),
                        }))
                    }
                    Err(error) => {
                        // The transport resets the stream; clients see INTERNAL.
                        call.code = Some(Code::Internal);
                        tracing::warn!(parent: &call.span, %error, "the service failed");
                        drop(call);
                        Err(error)
                    }
                }
            }
            .instrument(span),
        )
    }
}

/// A request body that notes when reading it failed: the client reset the
/// stream (or the connection broke) before sending all of it.
#[derive(Debug)]
pub(crate) struct WatchedBody<B> {
    inner: B,
    reset: Arc<AtomicBool>,
}

impl<B> Body for WatchedBody<B>
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
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            this.reset.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that logs its call when it ends or is dropped.
#[derive(Debug)]
pub(crate) struct LoggedBody<B> {
    inner: B,
    /// `None` once the call has been logged.
    call: Option<Call>,
}

impl<B> Body for LoggedBody<B>
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
        let polled = {
            // A streaming handler does its work here, as the body is polled.
            let _entered = this.call.as_ref().map(|call| call.span.enter());
            Pin::new(&mut this.inner).poll_frame(cx)
        };
        let ended = match &polled {
            Poll::Pending => false,
            Poll::Ready(Some(Ok(frame))) => match frame.trailers_ref() {
                Some(trailers) => {
                    if let Some(call) = &mut this.call {
                        call.code = grpc_status(trailers);
                    }
                    true
                }
                None => false,
            },
            Poll::Ready(Some(Err(_)) | None) => true,
        };
        if ended && let Some(mut call) = this.call.take() {
            call.ended = true;
            drop(call);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One call being served; logged when dropped.
#[derive(Debug)]
struct Call {
    span: Span,
    /// The call's service and method, for the metrics.
    labels: Option<crate::metrics::MethodLabels>,
    start: Instant,
    /// The status code, once the response has carried it.
    code: Option<Code>,
    /// Whether the response reached its end (with or without a status).
    ended: bool,
    /// Set when reading the request failed: the client went away.
    reset: Arc<AtomicBool>,
}

impl Call {
    fn start(method: &str) -> Self {
        crate::metrics::SERVER.in_flight.inc();
        Self {
            span: tracing::info_span!(
                "grpc",
                grpc.method = %method,
                request_id = tracing::field::Empty,
                x_request_id = tracing::field::Empty,
                // Filled only when traces are exported (crate::trace).
                otel.name = tracing::field::Empty,
                otel.kind = tracing::field::Empty
            ),
            labels: Some(crate::metrics::method_labels(method)),
            start: Instant::now(),
            code: None,
            ended: false,
            reset: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let code = match (self.code, self.ended) {
            // The client reset the stream before its request was read: tonic's
            // INTERNAL then goes to nobody; the call was cancelled.
            (Some(Code::Internal), _) if self.reset.load(Ordering::Relaxed) => Code::Cancelled,
            (Some(code), _) => code,
            // A response that ended without a status is an error for the client.
            (None, true) => Code::Unknown,
            (None, false) => Code::Cancelled,
        };
        // Whole microseconds, so that the number reads as written (0.883, not
        // 0.8832409999999999).
        let took = self.start.elapsed();
        let latency_ms = took.as_micros() as f64 / 1000.0;
        let name = crate::wire::code_name(code);
        crate::trace::record_grpc_status(&self.span, code);
        if let Some(labels) = self.labels.take() {
            crate::metrics::record_call(labels, name, took);
        }
        crate::metrics::SERVER.in_flight.dec();
        if matches!(code, Code::Unknown | Code::Internal | Code::DataLoss) {
            tracing::warn!(parent: &self.span, grpc.code = %name, latency_ms, "call ended");
        } else {
            tracing::info!(parent: &self.span, grpc.code = %name, latency_ms, "call ended");
        }
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|value| Code::from_bytes(value.as_bytes()))
}
