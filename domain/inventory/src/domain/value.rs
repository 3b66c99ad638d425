use strata_kernel::{FieldViolation, TextRule};

/// A stock keeping unit, the natural key of a [`super::StockItem`]: 1 to 64
/// characters of `A-Z a-z 0-9 - _ .`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sku(String);

const SKU: TextRule = TextRule::single_line("sku", 1, 64);

fn sku_chars(value: &str) -> bool {
    value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Sku {
    /// Validates a client-supplied sku (surrounding spaces trimmed).
    ///
    /// # Errors
    /// A violation on `sku`.
    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        Self::parse_as("sku", raw)
    }

    /// Validates a sku given in a field with another name (`skus[3]`).
    ///
    /// # Errors
    /// A violation on `field`.
    pub fn parse_as(field: &str, raw: &str) -> Result<Self, FieldViolation> {
        let value = SKU
            .parse(raw)
            .map_err(|v| FieldViolation::new(field, v.description()))?;
        if !sku_chars(&value) {
            return Err(FieldViolation::new(
                field,
                "must contain only A-Z, a-z, 0-9, '-', '_' or '.'",
            ));
        }
        Ok(Self(value))
    }

    /// A stored sku: only the invariant (non-empty, no control character) is
    /// checked, so that a rule that tightens later never makes a row unreadable.
    ///
    /// # Errors
    /// A violation on `sku`.
    pub fn from_stored(value: String) -> Result<Self, FieldViolation> {
        if value.is_empty() || value.chars().any(char::is_control) {
            return Err(FieldViolation::new(
                "sku",
                "is empty or holds a control character",
            ));
        }
        Ok(Self(value))
    }

    /// The sku as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

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
    fn skus_are_checked() {
        assert_eq!(
            Sku::parse(" MUG-1.a_b ")
                .unwrap_or_else(|e| panic!("{e}"))
                .as_str(),
            "MUG-1.a_b"
        );
        assert_eq!(
            Sku::parse("").map_err(|e| e.field().to_owned()),
            Err("sku".to_owned())
        );
        assert!(Sku::parse("a b").is_err());
        assert!(Sku::parse("é").is_err());
        assert!(Sku::parse(&"x".repeat(65)).is_err());
        assert!(Sku::parse("a\u{0}").is_err());
        assert_eq!(
            Sku::parse_as("skus[2]", "?").map_err(|e| e.field().to_owned()),
            Err("skus[2]".to_owned())
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
