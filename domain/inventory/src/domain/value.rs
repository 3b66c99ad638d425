use strata_kernel::{FieldViolation, TextRule};

pub use strata_kernel::Sku;

/// A reservation's id, chosen by the caller (an order line, say): 1 to 128
/// printable ASCII characters without spaces, unique within its stock item.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReservationId(String);

const RESERVATION_ID: TextRule = TextRule::single_line("reservation_id", 1, 128);

impl ReservationId {
    /// Validates a client-supplied id.
    ///
    /// # Errors
    /// A violation on `reservation_id`.
    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        let value = RESERVATION_ID.parse(raw)?;
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(FieldViolation::new(
                RESERVATION_ID.field(),
                "must be printable ASCII without spaces",
            ));
        }
        Ok(Self(value))
    }

    /// A stored id: only non-empty is checked.
    ///
    /// # Errors
    /// A violation on `reservation_id`.
    pub fn from_stored(value: String) -> Result<Self, FieldViolation> {
        if value.is_empty() {
            return Err(FieldViolation::new("reservation_id", "is empty"));
        }
        Ok(Self(value))
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why stock was adjusted, for people: 1 to 200 characters on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(String);

const REASON: TextRule = TextRule::single_line("reason", 1, 200);

impl Reason {
    /// Validates a client-supplied reason.
    ///
    /// # Errors
    /// A violation on `reason`.
    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        REASON.parse(raw).map(Self)
    }

    /// The reason as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_keep_only_their_invariants() {
        assert_eq!(Sku::from_stored(String::new()).unwrap_err().field(), "sku");
        assert_eq!(Sku::from_stored("MUG\u{1}".into()).unwrap_err().field(), "sku");
        assert!(Sku::from_stored("an older, looser sku".into()).is_ok());
        assert_eq!(
            Reason::parse("damaged in transit").unwrap().as_str(),
            "damaged in transit"
        );
    }

    #[test]
    fn reservation_ids_and_reasons_are_checked() {
        assert!(ReservationId::parse("order-42/line-1").is_ok());
        assert!(ReservationId::parse("has space").is_err());
        assert!(ReservationId::parse("").is_err());
        assert!(Reason::parse("cycle count").is_ok());
        assert!(Reason::parse("bad\u{7}").is_err());
        assert!(Reason::parse(" ").is_err());
    }
}
