//! The one mapping of [`Error`] to `tonic::Status`, with rich error details
//! (`google.rpc.BadRequest`, `ErrorInfo`, `ResourceInfo`, `PreconditionFailure`)
//! that any gRPC client can decode.
//!
//! | [`Error`] | code | details |
//! |---|---|---|
//! | `InvalidArgument` | INVALID_ARGUMENT | BadRequest, one field violation each |
//! | `RequestIdReused` | INVALID_ARGUMENT | BadRequest on `request_id`, ErrorInfo `REQUEST_ID_REUSED` |
//! | `NotFound` | NOT_FOUND | ResourceInfo |
//! | `VersionConflict` | ABORTED | ErrorInfo `VERSION_CONFLICT`, metadata `current_version` and (when the client sent one) `expected_version` |
//! | `Contention` | ABORTED | ErrorInfo `CONTENTION`; the source is logged |
//! | `DeadlineExceeded` | DEADLINE_EXCEEDED | none; the source is logged |
//! | `FailedPrecondition` | FAILED_PRECONDITION | PreconditionFailure with the reason, ErrorInfo with the reason and the error's metadata |
//! | `AlreadyExists` | ALREADY_EXISTS | ErrorInfo `ALREADY_EXISTS`, metadata `field` |
//! | `Unavailable` | UNAVAILABLE | none; the source is logged |
//! | `Busy` | RESOURCE_EXHAUSTED | RetryInfo with the delay |
//! | `Internal` | INTERNAL | none; the source is logged with its whole chain, the message is opaque |

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation as PbFieldViolation, PreconditionViolation, StatusExt};

use crate::{CommandMeta, Error, error::Chain};

/// The `ErrorInfo.domain` of every Strata error.
pub const ERROR_DOMAIN: &str = "strata";

/// The `ErrorInfo.metadata` key that carries the current version of an aggregate
/// on ABORTED.
pub const CURRENT_VERSION: &str = "current_version";

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        to_status(error)
    }
}

/// Maps an error to the status a client sees. Infrastructure errors are logged
/// here, once, with their source chain; the client gets no internals.
#[must_use]
pub fn to_status(error: Error) -> Status {
    let message = error.to_string();
    match error {
        Error::InvalidArgument(violations) => {
            let violations: Vec<_> = violations
                .iter()
                .map(|v| PbFieldViolation::new(v.field(), v.description()))
                .collect();
            Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request(violations),
            )
        }
        Error::RequestIdReused { .. } => {
            let mut details = ErrorDetails::with_bad_request_violation(
                "request_id",
                "was already used for a different request; use a new request_id",
            );
            details.set_error_info("REQUEST_ID_REUSED", ERROR_DOMAIN, HashMap::new());
            Status::with_error_details(Code::InvalidArgument, message, details)
        }
        Error::NotFound { kind, ref id } => Status::with_error_details(
            Code::NotFound,
            message.clone(),
            ErrorDetails::with_resource_info(kind, id.clone(), "", message),
        ),
        Error::VersionConflict {
            expected, current, ..
        } => {
            let mut metadata = HashMap::from([(CURRENT_VERSION.to_owned(), current.to_string())]);
            if let Some(expected) = expected {
                metadata.insert("expected_version".to_owned(), expected.to_string());
            }
            Status::with_error_details(
                Code::Aborted,
                message,
                ErrorDetails::with_error_info("VERSION_CONFLICT", ERROR_DOMAIN, metadata),
            )
        }
        Error::Contention(source) => {
            tracing::warn!(error = %Chain(&*source), "contention persisted after retries");
            Status::with_error_details(
                Code::Aborted,
                message,
                ErrorDetails::with_error_info("CONTENTION", ERROR_DOMAIN, HashMap::new()),
            )
        }
        Error::DeadlineExceeded(source) => {
            tracing::warn!(error = %Chain(&*source), "store statement timed out");
            Status::deadline_exceeded(message)
        }
        Error::FailedPrecondition {
            kind,
            ref id,
            reason,
            ref metadata,
            ..
        } => {
            let mut details = ErrorDetails::with_precondition_failure(vec![PreconditionViolation::new(
                reason,
                format!("{kind}/{id}"),
                message.clone(),
            )]);
            let metadata: HashMap<String, String> = metadata
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect();
            details.set_error_info(reason, ERROR_DOMAIN, metadata);
            Status::with_error_details(Code::FailedPrecondition, message, details)
        }
        Error::AlreadyExists { field, .. } => Status::with_error_details(
            Code::AlreadyExists,
            message,
            ErrorDetails::with_error_info(
                "ALREADY_EXISTS",
                ERROR_DOMAIN,
                HashMap::from([("field".to_owned(), field.to_owned())]),
            ),
        ),
        Error::Busy { retry_after, .. } => Status::with_error_details(
            Code::ResourceExhausted,
            message,
            ErrorDetails::with_retry_info(Some(retry_after)),
        ),
        Error::Unavailable(source) => {
            tracing::warn!(error = %Chain(&*source), "store unavailable");
            Status::unavailable("store unavailable, retry later")
        }
        Error::Internal(source) => {
            tracing::error!(error = %Chain(&*source), "internal error");
            Status::internal("internal error")
        }
    }
}

/// The idempotency key, fingerprint and expected version of a command whose
/// validated values are `values` (see [`CommandMeta::parse`]), and the request
/// id named in the current call's log span (`strata_rpc`'s call log declares
/// the field).
///
/// # Errors
/// Violations on `request_id` and `expected_version`.
pub fn command_meta(
    operation: &str,
    request_id: &str,
    expected_version: Option<u64>,
    values: &impl serde::Serialize,
) -> Result<CommandMeta, Vec<crate::FieldViolation>> {
    let meta = CommandMeta::parse(operation, request_id, expected_version, values)?;
    tracing::Span::current().record("request_id", meta.request_id.as_str());
    Ok(meta)
}

/// For commands that carry nothing but the aggregate's `id`: the id (its
/// violation named `id`) and the command's meta, every violation reported.
///
/// # Errors
/// [`Error::InvalidArgument`] with every violation.
pub fn id_and_meta<T: ?Sized>(
    operation: &str,
    id: &str,
    request_id: &str,
    expected_version: Option<u64>,
) -> Result<(crate::Id<T>, CommandMeta), Error> {
    let mut violations = crate::error::Violations::new();
    let id = violations.check(crate::Id::<T>::parse("id", id));
    let meta = violations.check_all(command_meta(
        operation,
        request_id,
        expected_version,
        &id.map(|id| id.to_string()),
    ));
    violations.finish(|| Some((id?, meta?)))
}

/// A point in time as a protobuf `Timestamp`.
#[must_use]
pub fn timestamp(at: time::OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.unix_timestamp(),
        // Always below 10^9, so it fits.
        nanos: i32::try_from(at.nanosecond()).unwrap_or(0),
    }
}

/// A required money field of a request (`strata.type.v1.Money`, given as its
/// two fields, `None` when absent): violations are named `<field>.…`.
pub fn money(
    violations: &mut crate::error::Violations,
    field: &str,
    given: Option<(&str, i64)>,
) -> Option<crate::Money> {
    let Some((currency_code, amount_minor)) = given else {
        violations.push(crate::FieldViolation::new(field, "is required"));
        return None;
    };
    match crate::Money::parse(currency_code, amount_minor) {
        Ok(money) => Some(money),
        Err(errors) => {
            for violation in errors {
                violations.push(violation.nested_in(field));
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FieldViolation, Version};

    #[test]
    fn invalid_argument_names_every_field() {
        let status = to_status(Error::InvalidArgument(vec![
            FieldViolation::new("sku", "is required"),
            FieldViolation::new("price.amount_minor", "must be greater than zero"),
        ]));
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad = status.get_details_bad_request().expect("bad request details");
        let fields: Vec<_> = bad.field_violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["sku", "price.amount_minor"]);
    }

    #[test]
    fn version_conflict_carries_the_current_version() {
        let status = to_status(Error::VersionConflict {
            kind: "product",
            id: "x".into(),
            expected: Some(Version::new(1)),
            current: Version::new(3),
        });
        assert_eq!(status.code(), Code::Aborted);
        let info = status.get_details_error_info().expect("error info");
        assert_eq!(info.metadata.get(CURRENT_VERSION).map(String::as_str), Some("3"));
        assert_eq!(
            info.metadata.get("expected_version").map(String::as_str),
            Some("1")
        );
    }

    #[test]
    fn timestamps_keep_seconds_and_nanoseconds() {
        let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
            + time::Duration::microseconds(123_456);
        let ts = timestamp(at);
        assert_eq!((ts.seconds, ts.nanos), (1_700_000_000, 123_456_000));
    }

    #[test]
    fn money_fields_are_parsed_and_named() {
        let mut violations = crate::error::Violations::new();
        let price = money(&mut violations, "price", Some(("EUR", 1290))).unwrap();
        assert_eq!((price.amount_minor(), price.currency().as_str()), (1290, "EUR"));
        assert!(money(&mut violations, "price", Some(("eur", 0))).is_none());
        assert!(money(&mut violations, "total", None).is_none());
        let Err(Error::InvalidArgument(all)) = violations.finish(|| Some(())) else {
            panic!("violations were recorded");
        };
        let fields: Vec<_> = all.iter().map(FieldViolation::field).collect();
        assert_eq!(fields, ["price.currency_code", "price.amount_minor", "total"]);
    }

    #[test]
    fn a_chain_names_every_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("saving the product")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::other(
            "invalid byte sequence for encoding \"UTF8\": 0x00",
        ));
        assert_eq!(
            Chain(&error).to_string(),
            "saving the product: invalid byte sequence for encoding \"UTF8\": 0x00"
        );
    }

    #[test]
    fn internal_errors_are_opaque() {
        let status = to_status(Error::Internal("password=hunter2 in connection string".into()));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("hunter2"));
    }
}
