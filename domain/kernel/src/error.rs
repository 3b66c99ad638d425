//! The error kinds every context shares.
//!
//! A context's own error enum converts into [`Error`]; [`crate::grpc`] maps
//! [`Error`] to a `tonic::Status` in one place, so every context answers the same
//! mistake with the same code and details.

use std::fmt;

use crate::Version;

/// A boxed infrastructure error kept as the `source` of [`Error::Unavailable`]
/// and [`Error::Internal`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One invalid field of a request: its name as the client spelt it and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    field: String,
    description: String,
}

impl FieldViolation {
    /// A violation of `field`, e.g. `("price.currency_code", "must be three upper-case letters")`.
    #[must_use]
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }

    /// The field's name, dotted for nested fields.
    #[must_use]
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    #[must_use]
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The same violation, its field name nested under `parent` (`price` + `amount_minor`).
    #[must_use]
    pub fn nested_in(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.description)
    }
}

impl std::error::Error for FieldViolation {}

/// Every way a command or query can fail, as a caller needs to tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed: gRPC `INVALID_ARGUMENT` with one field violation each.
    #[error("invalid request: {}", join(.0))]
    InvalidArgument(Vec<FieldViolation>),

    /// No aggregate of that kind has that id: `NOT_FOUND`.
    #[error("{kind} {id} not found")]
    NotFound {
        /// The aggregate kind, e.g. "product".
        kind: &'static str,
        /// The id that was asked for.
        id: String,
    },

    /// The aggregate changed since the client read it: `ABORTED`, with the current
    /// version in the details so the client can re-read and retry.
    #[error("{kind} {id} is at version {current}{}", expected_text(*.expected))]
    VersionConflict {
        /// The aggregate kind.
        kind: &'static str,
        /// Its id.
        id: String,
        /// The version the client sent as `expected_version`, if it sent one.
        expected: Option<Version>,
        /// The version it is at.
        current: Version,
    },

    /// The command is not allowed in the aggregate's current state (publishing a
    /// retired product): `FAILED_PRECONDITION`.
    #[error("{kind} {id}: {message}")]
    FailedPrecondition {
        /// The aggregate kind.
        kind: &'static str,
        /// Its id.
        id: String,
        /// A short machine-readable reason, e.g. `PRODUCT_RETIRED`.
        reason: &'static str,
        /// What the client asked for and why it cannot be done, for people.
        message: String,
        /// Facts a client acts on, sent as `ErrorInfo.metadata` (e.g.
        /// `available` = `3` when a reservation asks for more).
        metadata: Vec<(&'static str, String)>,
    },

    /// A value that must be unique is taken (a product's sku): `ALREADY_EXISTS`.
    #[error("a {kind} with this {field} already exists")]
    AlreadyExists {
        /// The aggregate kind.
        kind: &'static str,
        /// The field whose value is taken.
        field: &'static str,
    },

    /// The idempotency key was already used for a different command:
    /// `INVALID_ARGUMENT` on `request_id`.
    #[error("request_id {request_id} was already used for a different request")]
    RequestIdReused {
        /// The reused key.
        request_id: String,
    },

    /// The store cannot be reached or is overloaded: `UNAVAILABLE`; the client may retry.
    #[error("store unavailable")]
    Unavailable(#[source] BoxError),

    /// Work bounded on purpose (password hashing) is at its limit:
    /// `RESOURCE_EXHAUSTED` with a `RetryInfo` of `retry_after`; the client
    /// may retry after it.
    #[error("{what} is at capacity; retry later")]
    Busy {
        /// What is at capacity.
        what: &'static str,
        /// When a retry may find room.
        retry_after: std::time::Duration,
    },

    /// The store gave up on a statement that ran past its time limit:
    /// `DEADLINE_EXCEEDED`.
    #[error("the store did not answer in time")]
    DeadlineExceeded(#[source] BoxError),

    /// Concurrent commands kept colliding in the store (serialization failures
    /// or deadlocks) after the server retried them: `ABORTED`; the client may retry.
    #[error("too much contention on the store; retry")]
    Contention(#[source] BoxError),

    /// Anything unexpected: logged, and returned as an opaque `INTERNAL`.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

impl Error {
    /// One invalid field.
    #[must_use]
    pub fn invalid(violation: FieldViolation) -> Self {
        Self::InvalidArgument(vec![violation])
    }
}

impl From<FieldViolation> for Error {
    fn from(violation: FieldViolation) -> Self {
        Self::invalid(violation)
    }
}

fn expected_text(expected: Option<Version>) -> String {
    match expected {
        Some(expected) => format!(", not the expected {expected}"),
        None => ", changed by concurrent commands; re-read and retry".to_owned(),
    }
}

/// An error with its whole `source` chain, `outer: inner: innermost`, for logs.
#[derive(Debug)]
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

fn join(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Collects every field violation of a request, so the client learns of all its
/// mistakes at once rather than one per round trip.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// No violations yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the value of `result`, or records its violation and returns `None`.
    pub fn check<T>(&mut self, result: Result<T, FieldViolation>) -> Option<T> {
        result.map_err(|violation| self.0.push(violation)).ok()
    }

    /// Keeps the value of `result`, or records all its violations and returns `None`.
    pub fn check_all<T>(&mut self, result: Result<T, Vec<FieldViolation>>) -> Option<T> {
        result.map_err(|violations| self.0.extend(violations)).ok()
    }

    /// Records a violation.
    pub fn push(&mut self, violation: FieldViolation) {
        self.0.push(violation);
    }

    /// `Ok(value)` when nothing was recorded, else [`Error::InvalidArgument`] with
    /// every violation. `value` is built only when there were none.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when any violation was recorded.
    pub fn finish<T>(self, value: impl FnOnce() -> Option<T>) -> Result<T, Error> {
        if self.0.is_empty()
            && let Some(value) = value()
        {
            return Ok(value);
        }
        Err(Error::InvalidArgument(self.0))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn messages_say_what_went_wrong() {
        let conflict = |expected| Error::VersionConflict {
            kind: "product",
            id: "p1".into(),
            expected,
            current: Version::new(3),
        };
        assert_eq!(
            conflict(Some(Version::new(1))).to_string(),
            "product p1 is at version 3, not the expected 1"
        );
        assert_eq!(
            conflict(None).to_string(),
            "product p1 is at version 3, changed by concurrent commands; re-read and retry"
        );
        let invalid = Error::InvalidArgument(vec![
            FieldViolation::new("sku", "is required"),
            FieldViolation::new("name", "is blank"),
        ]);
        assert_eq!(
            invalid.to_string(),
            "invalid request: sku is required; name is blank"
        );
    }

    #[test]
    fn violations_keep_values_and_collect_every_mistake() {
        let mut violations = Violations::new();
        assert_eq!(violations.check(Ok::<_, FieldViolation>(7)), Some(7));
        assert_eq!(violations.check_all(Ok::<_, Vec<FieldViolation>>("x")), Some("x"));
        assert_eq!(
            Violations::new().finish(|| Some(1)).unwrap(),
            1,
            "no violation: the value"
        );
        assert_eq!(
            violations.check(Err::<u8, _>(FieldViolation::new("a", "bad"))),
            None
        );
        violations.push(FieldViolation::new("b", "bad"));
        assert_eq!(
            violations.check_all(Err::<u8, _>(vec![FieldViolation::new("c", "bad")])),
            None
        );
        let Err(Error::InvalidArgument(all)) = violations.finish(|| Some(1)) else {
            panic!("violations were recorded");
        };
        let fields: Vec<_> = all.iter().map(FieldViolation::field).collect();
        assert_eq!(fields, ["a", "b", "c"]);
    }
}
