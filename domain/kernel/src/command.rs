//! What every mutating command carries.

use crate::error::FieldViolation;

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

    /// The bytes to store.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_validated() {
        assert!(RequestId::parse("order-42/try-1").is_ok());
        assert_eq!(RequestId::parse("").unwrap_err().field(), "request_id");
        assert!(RequestId::parse("has space").is_err());
        assert!(RequestId::parse(&"x".repeat(129)).is_err());
        assert!(RequestId::parse(&"x".repeat(128)).is_ok());
    }
}
