//! Distributed traces: OpenTelemetry spans, exported over OTLP, with the W3C
//! trace context (`traceparent`, `tracestate`) carried from process to process
//! in HTTP headers and gRPC metadata, so that one shopper's request is one
//! trace across the edge and every data service it reaches.
//!
//! Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set: [`telemetry::init`](crate::telemetry::init)
//! then adds no layer, and [`continue_trace`] and [`inject`] return after
//! reading one flag. When on, the spans a process already has become
//! OpenTelemetry spans (tracing-opentelemetry): an edge's `http` span and a
//! server's `grpc` span, each a SERVER span continuing the caller's trace,
//! named `POST /v1/orders` or `strata.ordering.v1.OrderService/PlaceOrder`;
//! the events logged inside them become their span events. A caller's
//! downstream calls carry the context of its current span, so every call an
//! edge request makes is a child of the request's span.
//!
//! Spans are batched and exported by OpenTelemetry's batch processor, set by
//! its standard variables (`OTEL_BSP_SCHEDULE_DELAY`, 5 s by default, …) and
//! by the OTLP exporter's (`OTEL_EXPORTER_OTLP_TIMEOUT`, `…_HEADERS`);
//! `OTEL_SERVICE_NAME` replaces the process's own name and
//! `OTEL_RESOURCE_ATTRIBUTES` adds to its resource; `OTEL_TRACES_SAMPLER`
//! chooses the sampler (parent-based, always on, by default).

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::{
    KeyValue,
    propagation::{Extractor, Injector, TextMapPropagator as _},
    trace::TracerProvider as _,
};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The variable whose presence turns traces on: where the OTLP/gRPC collector listens.
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The same, for traces only (it wins over [`ENDPOINT_VAR`]).
pub const TRACES_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";

/// The span field that names a span in OpenTelemetry (tracing-opentelemetry's).
pub const NAME_FIELD: &str = "otel.name";

/// The span field that gives a span's kind (tracing-opentelemetry's).
pub const KIND_FIELD: &str = "otel.kind";

/// Whether this process exports traces: set by `telemetry::init` once the
/// layer that exports them is installed.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns [`continue_trace`] and [`inject`] on: the exporting layer is installed.
pub(crate) fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether this process exports traces.
#[must_use]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether the environment asks for traces: an OTLP endpoint is set.
#[must_use]
pub fn requested() -> bool {
    [TRACES_ENDPOINT_VAR, ENDPOINT_VAR]
        .iter()
        .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()))
}

/// The tracer provider of a process named `service` that exports over
/// OTLP/gRPC (the workspace's tonic) to the endpoint the environment names,
/// through a batch processor. Must be called within a Tokio runtime (the
/// exporter's channel runs on it); the processor exports from a thread of its
/// own, so the runtime must outlive [`SdkTracerProvider::shutdown`], which
/// flushes what is left.
///
/// # Errors
/// When the exporter cannot be built from the environment (a malformed endpoint).
pub(crate) fn exporter(service: &str) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?;
    let mut resource =
        Resource::builder().with_attribute(KeyValue::new("process.pid", i64::from(std::process::id())));
    // OTEL_SERVICE_NAME, read by the resource's own detector, wins.
    if std::env::var_os("OTEL_SERVICE_NAME").is_none_or(|v| v.is_empty()) {
        resource = resource.with_service_name(service.to_owned());
    }
    let provider = SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_batch_exporter(exporter)
        .build();
    Ok(provider)
}

/// The tracer the tracing layer turns spans into OpenTelemetry spans with.
pub(crate) fn tracer(provider: &SdkTracerProvider) -> opentelemetry_sdk::trace::Tracer {
    provider.tracer("strata")
}

/// Makes `span` (a server's span for one incoming request or call, not yet
/// entered, declaring the fields [`NAME_FIELD`] and [`KIND_FIELD`]) a SERVER
/// span named `name` that continues the trace of the caller's `traceparent` /
/// `tracestate` in `headers` (a new trace when there is none or it is malformed).
/// Does nothing while traces are off.
pub fn continue_trace(span: &Span, name: impl std::fmt::Display, headers: &http::HeaderMap) {
    if enabled() {
        set_parent(span, name, headers);
    }
}

fn set_parent(span: &Span, name: impl std::fmt::Display, headers: &http::HeaderMap) {
    span.record(NAME_FIELD, tracing::field::display(name));
    span.record(KIND_FIELD, "server");
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    // Fails only when the span is disabled (filtered out) or already entered:
    // then it simply starts a trace of its own.
    let _ = span.set_parent(parent);
}

/// Adds the trace context of the current span to a call's `metadata`, so that
/// the server's span of the call is a child of it. Does nothing while traces
/// are off or outside any span.
pub fn inject(metadata: &mut MetadataMap) {
    if enabled() {
        inject_current(metadata);
    }
}

fn inject_current(metadata: &mut MetadataMap) {
    let context = Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut MetadataInjector(metadata));
}

/// Records how a served gRPC call ended on its span: `rpc.grpc.status_code`,
/// and an error status for the codes that are the server's failure (as
/// OpenTelemetry's conventions for gRPC servers say: UNKNOWN,
/// DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS).
pub(crate) fn record_grpc_status(span: &Span, code: tonic::Code) {
    if !enabled() {
        return;
    }
    span.set_attribute("rpc.grpc.status_code", i64::from(code as i32));
    use tonic::Code::{DataLoss, DeadlineExceeded, Internal, Unavailable, Unimplemented, Unknown};
    if matches!(
        code,
        Unknown | DeadlineExceeded | Unimplemented | Internal | Unavailable | DataLoss
    ) {
        span.set_status(opentelemetry::trace::Status::error(crate::wire::code_name(code)));
    }
}

/// Records an edge request's answer on its span: `http.response.status_code`,
/// and an error status for a 5xx.
pub fn record_http_status(span: &Span, status: http::StatusCode) {
    if !enabled() {
        return;
    }
    span.set_attribute("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.set_status(opentelemetry::trace::Status::error(status.to_string()));
    }
}

/// Reads `traceparent` / `tracestate` from HTTP headers (gRPC metadata are HTTP/2 headers).
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes `traceparent` / `tracestate` into a call's metadata.
struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_w3c_context_reads_from_headers_and_writes_to_metadata() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        headers.insert("tracestate", http::HeaderValue::from_static("vendor=x"));
        let context = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
        let mut metadata = MetadataMap::new();
        TraceContextPropagator::new().inject_context(&context, &mut MetadataInjector(&mut metadata));
        assert_eq!(
            metadata.get("traceparent").unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(metadata.get("tracestate").unwrap(), "vendor=x");
    }

    #[test]
    fn a_server_span_continues_the_callers_trace_and_its_calls_carry_it_on() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::layer::SubscriberExt::with(
            tracing_subscriber::registry(),
            tracing_opentelemetry::layer().with_tracer(tracer(&provider)),
        );
        let _guard = tracing::subscriber::set_default(subscriber);
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let span = tracing::info_span!(
            "grpc",
            otel.name = tracing::field::Empty,
            otel.kind = tracing::field::Empty
        );
        set_parent(&span, "strata.test.v1.TestService/Get", &headers);
        let mut metadata = MetadataMap::new();
        span.in_scope(|| inject_current(&mut metadata));
        let sent = metadata.get("traceparent").unwrap().to_str().unwrap();
        let parts: Vec<_> = sent.split('-').collect();
        assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "{sent}");
        assert_ne!(
            parts[2], "00f067aa0ba902b7",
            "the call's parent is this span: {sent}"
        );
        assert_eq!(parts[3], "01", "{sent}");
    }

    #[test]
    fn while_off_nothing_is_injected() {
        // No test here turns traces on.
        assert!(!enabled());
        let mut metadata = MetadataMap::new();
        let span = tracing::info_span!("test");
        let _entered = span.enter();
        inject(&mut metadata);
        assert!(metadata.is_empty());
    }
}
