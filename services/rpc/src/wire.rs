//! What every layer of a call reads off the wire: the header names Strata's
//! layers set for each other, the `grpc-timeout` header's deadline and the
//! names of the status codes. A leaf: it imports no other module of this
//! crate, so each layer (retry, breaker, call log, trace) reads downward only.

use std::time::Duration;

use tokio::time::Instant;
use tonic::Code;

/// The header that marks a refusal of the breakers (so it is not retried).
pub const BREAKER_OPEN: &str = "x-strata-breaker-open";

/// The metadata that carries a command's idempotency key (its `request_id`).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The deadline a call's `grpc-timeout` header sets, if any.
pub(crate) fn deadline(headers: &http::HeaderMap) -> Option<Instant> {
    let raw = headers.get("grpc-timeout")?.to_str().ok()?;
    let (value, unit) = raw.split_at(raw.len().checked_sub(1)?);
    let value: u64 = value.parse().ok()?;
    let timeout = match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    };
    Some(Instant::now() + timeout)
}

/// The code's name as the gRPC specification spells it.
pub(crate) const fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
