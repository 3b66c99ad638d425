//! The stock keeping unit, the one key two contexts share: catalog's
//! product names it, inventory's stock item is keyed by it, and the shop joins
//! them on it, so both read it by the same rules.

use crate::FieldViolation;

/// A stock keeping unit: 1 to 64 characters of `A-Z a-z 0-9 - _ .`, unique
/// across the catalog and the key of inventory's stock items.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sku(String);

fn sku_chars(value: &str) -> bool {
    value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl Sku {
    /// The longest sku accepted, in characters.
    pub const MAX_LEN: usize = 64;

    /// Validates a client-supplied sku. Nothing is trimmed: a space is not
    /// one of a sku's characters, as the edges' OpenAPI patterns say.
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
        if raw.is_empty() {
            return Err(FieldViolation::new(field, "is required"));
        }
        if !sku_chars(raw) {
            return Err(FieldViolation::new(
                field,
                "must contain only A-Z, a-z, 0-9, '-', '_' or '.'",
            ));
        }
        if raw.len() > Self::MAX_LEN {
            return Err(FieldViolation::new(field, "must be at most 64 characters"));
        }
        Ok(Self(raw.to_owned()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sku_is_one_to_sixty_four_letters_digits_dashes_underscores_or_dots() {
        assert_eq!(Sku::parse("MUG-1_a.b").unwrap().as_str(), "MUG-1_a.b");
        assert!(Sku::parse(&"A".repeat(Sku::MAX_LEN)).is_ok());
        for bad in [
            "",
            "   ",
            " MUG",
            "MUG 1",
            "MUG/1",
            "MÜG",
            &"A".repeat(Sku::MAX_LEN + 1),
        ] {
            assert_eq!(Sku::parse(bad).unwrap_err().field(), "sku", "{bad:?}");
        }
        assert_eq!(Sku::parse_as("skus[3]", "a b").unwrap_err().field(), "skus[3]");
    }

    #[test]
    fn a_stored_sku_is_read_by_the_invariant_only() {
        assert_eq!(
            Sku::from_stored("old sku".to_owned()).unwrap().as_str(),
            "old sku"
        );
        assert!(Sku::from_stored(String::new()).is_err());
        assert!(Sku::from_stored("a\nb".to_owned()).is_err());
    }
}
