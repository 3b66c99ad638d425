//! Logs and traces: the subscriber every Strata process installs, writing logs
//! as text for people or as JSON for a log collector, filtered by `RUST_LOG`
//! (default `info`), and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, exporting
//! the same spans as OpenTelemetry traces ([`crate::trace`]).
//!
//! Every gRPC call a [`Server`](crate::Server) serves runs in a span named `grpc`
//! with the fields `grpc.method` (the full path, `/package.Service/Method`) and
//! `request_id` (empty until the handler calls
//! [`record_request_id`](crate::record_request_id)) and `x_request_id` (the
//! edge request the call serves, from the `x-request-id` metadata a caller
//! passes on; see [`client`](crate::client)), and ends with one event
//! from the target `strata_rpc::call_log` carrying `grpc.code` (the status
//! code's name, e.g. `OK`, `NOT_FOUND`) and `latency_ms`. In JSON the event's
//! fields are top-level keys and the span's are under `span`:
//!
//! ```text
//! {"timestamp":"…","level":"INFO","message":"call ended","grpc.code":"OK","latency_ms":1.9,
//!  "target":"strata_rpc::call_log","span":{"grpc.method":"/strata.catalog.v1.ProductService/ChangePrice",
//!  "request_id":"0199…","name":"grpc"}}
//! ```
//!
//! When traces are exported, these spans also carry `otel.name` and
//! `otel.kind` (what names them in a trace; see [`crate::trace`]).
//!
//! To keep the call lines out of the log: `RUST_LOG=info,strata_rpc::call_log=warn`
//! (server-side faults, `INTERNAL`, `UNKNOWN` and `DATA_LOSS`, are logged at WARN).

use std::{fmt, io::IsTerminal as _, str::FromStr};

use tracing::Subscriber;
use tracing_subscriber::{EnvFilter, fmt::MakeWriter, layer::SubscriberExt as _, registry::LookupSpan};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One line per event for people to read; colours only on a terminal.
    #[default]
    Text,
    /// One JSON object per line, for a log collector.
    Json,
}

impl LogFormat {
    /// Every format, as named on the command line.
    pub const ALL: &[Self] = &[Self::Text, Self::Json];

    /// Its name: `text` or `json`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|format| format.name() == raw)
            .ok_or_else(|| UnknownLogFormat(raw.to_owned()))
    }
}

/// A log format name that is neither `text` nor `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a log format; use text or json")]
pub struct UnknownLogFormat(String);

/// Installs the process-wide subscriber of the process named `service`
/// (`data-service`, `storefront`: its OpenTelemetry `service.name`): `format`
/// on stderr, filtered by `RUST_LOG` (default `info`), with ANSI colours only
/// when stderr is a terminal and `NO_COLOR` is not set; and, when an OTLP
/// endpoint is set ([`crate::trace`]), the layer that exports spans as traces.
/// Must be called within a Tokio runtime; keep what it returns and call
/// [`Telemetry::shutdown`] before the process exits, so the last spans are sent.
///
/// # Errors
/// When a global subscriber is already installed, or the exporter cannot be
/// built from the environment.
pub fn init(service: &str, format: LogFormat) -> Result<Telemetry, InitError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let provider = if crate::trace::requested() {
        Some(crate::trace::exporter(service).map_err(InitError::Exporter)?)
    } else {
        None
    };
    let tracer = provider.as_ref().map(crate::trace::tracer);
    tracing::subscriber::set_global_default(traced_subscriber(format, filter, ansi, std::io::stderr, tracer))
        .map_err(InitError::Subscriber)?;
    if provider.is_some() {
        crate::trace::enable();
    }
    Ok(Telemetry { provider })
}

/// What [`init`] set up that needs an end: the trace exporter, if any.
#[derive(Debug)]
#[must_use = "call shutdown before exiting, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans not yet exported and stops the exporter, waiting at
    /// most 5 s (OpenTelemetry's bound: an unreachable collector does not
    /// hold the exit longer); nothing to do when traces are off.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // Blocks until the batch is sent, which the runtime's tasks carry.
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(error)) = flushed {
            tracing::warn!(%error, "cannot send the last spans");
        }
    }
}

/// Why [`init`] failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Another subscriber was installed first.
    #[error(transparent)]
    Subscriber(tracing::subscriber::SetGlobalDefaultError),
    /// The OTLP exporter's settings are unusable.
    #[error("cannot export traces (OTEL_EXPORTER_OTLP_*): {0}")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
}

/// The subscriber [`init`] installs, writing to `writer` instead of stderr (tests
/// capture their logs with it). `ansi` applies to [`LogFormat::Text`] only: JSON
/// is never coloured.
#[must_use]
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    ansi: bool,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync + 'static>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    traced_subscriber(format, filter, ansi, writer, None)
}

/// [`subscriber`], exporting its spans with `tracer` when there is one.
fn traced_subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    ansi: bool,
    writer: W,
    tracer: Option<opentelemetry_sdk::trace::Tracer>,
) -> Box<dyn Subscriber + Send + Sync + 'static>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => with_traces(builder.with_ansi(ansi).finish(), tracer),
        LogFormat::Json => with_traces(
            builder
                .with_ansi(false)
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
            tracer,
        ),
    }
}

/// `logs` with the OpenTelemetry layer on top when there is a tracer. The
/// layer sees only what `RUST_LOG` lets through (the filter is global), and
/// no layer at all is added while traces are off.
fn with_traces<S>(
    logs: S,
    tracer: Option<opentelemetry_sdk::trace::Tracer>,
) -> Box<dyn Subscriber + Send + Sync + 'static>
where
    S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync + 'static,
{
    match tracer {
        None => Box::new(logs),
        Some(tracer) => Box::new(
            logs.with(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    // Busy and idle times per span: a cost per poll that
                    // the spans' own durations make unneeded here.
                    .with_tracked_inactivity(false),
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_by_name_only() {
        for format in LogFormat::ALL {
            assert_eq!(format.name().parse::<LogFormat>(), Ok(*format));
        }
        let err = "JSON".parse::<LogFormat>().unwrap_err();
        assert_eq!(err.to_string(), "\"JSON\" is not a log format; use text or json");
    }
}
