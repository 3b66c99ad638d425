//! What every mutating command carries, and the idempotency decision: a
//! command whose `request_id` was already carried out returns its first result;
//! the same key with a different command is refused.

use serde::Serialize;

use crate::{Error, Version, error::FieldViolation};

/// The longest idempotency key accepted.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A client-chosen idempotency key. A command retried with the same key returns
/// the first result and has no second effect; the same key with a different
/// command is rejected.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// Validates a client-supplied key: 1 to 128 printable ASCII characters.
    ///
    /// # Errors
    /// A [`FieldViolation`] on `request_id` otherwise.
    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        const FIELD: &str = "request_id";
        if raw.is_empty() {
            return Err(FieldViolation::new(FIELD, "is required"));
        }
        if raw.len() > MAX_REQUEST_ID_LEN {
            return Err(FieldViolation::new(FIELD, "must be at most 128 characters"));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(FieldViolation::new(
                FIELD,
                "must be printable ASCII without spaces",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The key as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a command asked for, in a canonical encoding, stored beside its
/// [`RequestId`] so that a reused key with a different command is detected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(Vec<u8>);

impl Fingerprint {
    /// Wraps the canonical encoding of a command (operation name included).
    #[must_use]
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The fingerprint of a validated command: its operation name and the JSON
    /// of its validated values (field order is the struct's, so the encoding is
    /// canonical). Built from what was validated, not from the wire bytes, so an
    /// unknown field or a different encoding of the same request is the same
    /// command, and a trimmed name equals the untrimmed one.
    #[must_use]
    pub fn of(operation: &str, command: &impl Serialize) -> Self {
        let mut bytes = Vec::with_capacity(operation.len() + 64);
        bytes.extend_from_slice(operation.as_bytes());
        bytes.push(0);
        // Serializing plain data into a Vec cannot fail; should it ever, the
        // operation name alone still tells different operations apart.
        let _ = serde_json::to_writer(&mut bytes, command);
        Self(bytes)
    }

    /// The bytes to store.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// What every mutating command carries besides its own fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandMeta {
    /// The idempotency key.
    pub request_id: RequestId,
    /// What the command asked for, to detect a reused key.
    pub fingerprint: Fingerprint,
    /// The version the client last saw, when it wants optimistic concurrency.
    pub expected_version: Option<Version>,
}

impl CommandMeta {
    /// Validates the key and the expected version of a command whose validated
    /// values are `command`, for operation `operation` (`"ChangePrice"`). The
    /// expected version is part of the fingerprint: the same key with another
    /// expected version is another command.
    ///
    /// # Errors
    /// A violation on `request_id`, or on `expected_version` when it is 0.
    pub fn parse(
        operation: &str,
        request_id: &str,
        expected_version: Option<u64>,
        command: &impl Serialize,
    ) -> Result<Self, Vec<FieldViolation>> {
        let request_id = RequestId::parse(request_id);
        let expected_version = match expected_version {
            Some(0) => Err(FieldViolation::new(
                "expected_version",
                "must be at least 1 when given",
            )),
            other => Ok(other.map(Version::new)),
        };
        match (request_id, expected_version) {
            (Ok(request_id), Ok(expected_version)) => Ok(Self {
                fingerprint: Fingerprint::of(operation, &(expected_version.map(Version::get), command)),
                request_id,
                expected_version,
            }),
            (request_id, expected_version) => Err([request_id.err(), expected_version.err()]
                .into_iter()
                .flatten()
                .collect()),
        }
    }
}

/// A command that was carried out, as its idempotency record keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded<R> {
    /// What the command asked for.
    pub fingerprint: Fingerprint,
    /// Its first result, returned again to a retry.
    pub result: R,
}

/// The idempotency decision: `Ok(Some(result))` when this command was already
/// carried out (return its first result, do nothing), `Ok(None)` when it is new.
///
/// # Errors
/// [`Error::RequestIdReused`] when the key was used for a different command.
pub fn replay<R>(meta: &CommandMeta, recorded: Option<Recorded<R>>) -> Result<Option<R>, Error> {
    match recorded {
        None => Ok(None),
        Some(recorded) if recorded.fingerprint == meta.fingerprint => Ok(Some(recorded.result)),
        Some(_) => Err(Error::RequestIdReused {
            request_id: meta.request_id.as_str().to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Rename<'a> {
        name: &'a str,
    }

    fn meta(key: &str, expected: Option<u64>, name: &str) -> CommandMeta {
        CommandMeta::parse("Rename", key, expected, &Rename { name }).unwrap()
    }

    #[test]
    fn a_fingerprint_covers_operation_values_and_expected_version() {
        assert_eq!(meta("k", None, "a").fingerprint, meta("k", None, "a").fingerprint);
        assert_ne!(meta("k", None, "a").fingerprint, meta("k", None, "b").fingerprint);
        assert_ne!(
            meta("k", None, "a").fingerprint,
            meta("k", Some(1), "a").fingerprint
        );
        let other_op = CommandMeta::parse("Retitle", "k", None, &Rename { name: "a" }).unwrap();
        assert_ne!(other_op.fingerprint, meta("k", None, "a").fingerprint);
    }

    #[test]
    fn a_fingerprint_is_the_operation_then_the_values() {
        assert_eq!(Fingerprint::new(b"raw".to_vec()).as_bytes(), b"raw");
        let fingerprint = meta("k", None, "a").fingerprint;
        assert_eq!(fingerprint.as_bytes(), b"Rename\0[null,{\"name\":\"a\"}]");
    }

    #[test]
    fn meta_reports_every_violation() {
        let errors = CommandMeta::parse("Rename", "", Some(0), &Rename { name: "a" }).unwrap_err();
        let fields: Vec<_> = errors.iter().map(FieldViolation::field).collect();
        assert_eq!(fields, ["request_id", "expected_version"]);
    }

    #[test]
    fn replay_returns_the_first_result_or_refuses_a_reused_key() {
        let first = meta("k", None, "a");
        assert_eq!(replay::<u8>(&first, None).unwrap(), None);
        let recorded = Recorded {
            fingerprint: first.fingerprint.clone(),
            result: 7,
        };
        assert_eq!(replay(&first, Some(recorded.clone())).unwrap(), Some(7));
        let other = meta("k", None, "b");
        assert!(matches!(
            replay(&other, Some(recorded)),
            Err(Error::RequestIdReused { request_id }) if request_id == "k"
        ));
    }

    #[test]
    fn request_ids_are_validated() {
        assert!(RequestId::parse("order-42/try-1").is_ok());
        assert_eq!(RequestId::parse("").unwrap_err().field(), "request_id");
        assert!(RequestId::parse("has space").is_err());
        assert!(RequestId::parse(&"x".repeat(129)).is_err());
        assert!(RequestId::parse(&"x".repeat(128)).is_ok());
    }
}
