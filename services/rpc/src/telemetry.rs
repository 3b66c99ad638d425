//! Logs: the subscriber every Strata process installs, as text for people or as
//! JSON for a log collector, filtered by `RUST_LOG` (default `info`).
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
//! To keep the call lines out of the log: `RUST_LOG=info,strata_rpc::call_log=warn`
//! (server-side faults, `INTERNAL`, `UNKNOWN` and `DATA_LOSS`, are logged at WARN).

use std::{fmt, io::IsTerminal as _, str::FromStr};

use tracing::Subscriber;
use tracing_subscriber::{EnvFilter, fmt::MakeWriter};

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

/// Installs the process-wide subscriber: `format` on stderr, filtered by
/// `RUST_LOG` (default `info`), with ANSI colours only when stderr is a terminal
/// and `NO_COLOR` is not set.
///
/// # Errors
/// When a global subscriber is already installed.
pub fn init(format: LogFormat) -> Result<(), tracing::subscriber::SetGlobalDefaultError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing::subscriber::set_global_default(subscriber(format, filter, ansi, std::io::stderr))
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(
            builder
                .with_ansi(false)
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
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
