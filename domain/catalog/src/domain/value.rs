//! Value objects: validated on construction, immutable after.

use strata_kernel::{FieldViolation, TextRule};

pub use strata_kernel::Sku;

/// A product's display name: 1 to 200 characters on one line, surrounding
/// spaces trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductName(String);

impl ProductName {
    /// The input rule.
    pub const RULE: TextRule = TextRule::single_line("name", 1, 200);

    /// # Errors
    /// A violation on `name` when blank, too long or holding control characters.
    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        Self::RULE.parse(raw).map(Self)
    }

    /// A stored name, checked only against the invariant (not blank).
    ///
    /// # Errors
    /// A violation on `name` when blank.
    pub fn from_stored(stored: String) -> Result<Self, FieldViolation> {
        if stored.trim().is_empty() {
            return Err(FieldViolation::new("name", "is blank"));
        }
        Ok(Self(stored))
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A product's description: at most 5000 characters, possibly empty, line
/// breaks allowed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Description(String);

impl Description {
    /// The input rule.
    pub const RULE: TextRule = TextRule::multi_line("description", 0, 5000);

    /// # Errors
    /// A violation on `description` when too long or holding control characters.
    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        Self::RULE.parse(raw).map(Self)
    }

    /// A stored description: any text is a description.
    #[must_use]
    pub fn from_stored(stored: String) -> Self {
        Self(stored)
    }

    /// The description as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sku_rules() {
        assert!(Sku::parse("TSHIRT-RED_L.2").is_ok());
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse("has space").is_err());
        assert!(Sku::parse(&"a".repeat(65)).is_err());
        assert!(
            Sku::parse(&"a".repeat(64)).is_ok(),
            "64 characters is the limit, not past it"
        );
    }

    #[test]
    fn control_characters_are_refused() {
        assert_eq!(ProductName::parse("Mug\u{0}").unwrap_err().field(), "name");
        assert_eq!(Description::parse("a\u{0}").unwrap_err().field(), "description");
        assert!(Description::parse("two\nlines").is_ok());
    }

    #[test]
    fn names_are_trimmed_and_required() {
        assert_eq!(ProductName::parse("  Mug ").map(|n| n.0), Ok("Mug".to_owned()));
        assert_eq!(ProductName::parse("   ").unwrap_err().field(), "name");
        assert!(ProductName::parse(&"é".repeat(200)).is_ok());
        assert!(ProductName::parse(&"é".repeat(201)).is_err());
    }
}
