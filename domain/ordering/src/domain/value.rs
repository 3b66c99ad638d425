//! Value objects: validated on construction, immutable after.

use std::fmt;

use strata_kernel::{FieldViolation, TextRule};
use uuid::Uuid;

/// The buyer of an order: an account id of the identity context. Contexts refer
/// to each other by id only, so this is a UUID and nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BuyerId(Uuid);

impl BuyerId {
    /// # Errors
    /// A violation on `field` when empty or not a UUID.
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldViolation> {
        parse_uuid(field, raw).map(Self)
    }

    /// Wraps a stored id.
    #[must_use]
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID inside.
    #[must_use]
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for BuyerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A product ordered: a product id of the catalog context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProductRef(Uuid);

impl ProductRef {
    /// # Errors
    /// A violation on `product_id` when empty or not a UUID.
    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        parse_uuid("product_id", raw).map(Self)
    }

    /// Wraps a stored id.
    #[must_use]
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID inside.
    #[must_use]
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

fn parse_uuid(field: &str, raw: &str) -> Result<Uuid, FieldViolation> {
    if raw.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    Uuid::parse_str(raw).map_err(|_| FieldViolation::new(field, "must be a UUID"))
}

/// The sku of an ordered product as the caller snapshot it from the catalog:
/// 1 to 64 characters on one line. Not the catalog's own sku rule: ordering
/// keeps what it was given, it does not own skus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineSku(String);

impl LineSku {
    /// The input rule.
    pub const RULE: TextRule = TextRule::single_line("sku", 1, 64);

    /// # Errors
    /// A violation on `sku` when blank, too long or holding control characters.
    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        Self::RULE.parse(raw).map(Self)
    }

    /// A stored sku, checked only against the invariant (not blank).
    ///
    /// # Errors
    /// A violation on `sku` when blank.
    pub fn from_stored(stored: String) -> Result<Self, FieldViolation> {
        if stored.trim().is_empty() {
            return Err(FieldViolation::new("sku", "is blank"));
        }
        Ok(Self(stored))
    }

    /// The sku as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How many of a product a line orders: at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(u32);

impl Quantity {
    /// # Errors
    /// A violation on `quantity` when 0.
    pub fn parse(raw: u32) -> Result<Self, FieldViolation> {
        if raw == 0 {
            return Err(FieldViolation::new("quantity", "must be at least 1"));
        }
        Ok(Self(raw))
    }

    /// The number inside.
    #[must_use]
    pub const fn get(self) -> u32 {
        self.0
    }
}

/// Why an order was cancelled, as the caller said it: 1 to 500 characters on
/// one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelReason(String);

impl CancelReason {
    /// The input rule.
    pub const RULE: TextRule = TextRule::single_line("reason", 1, 500);

    /// # Errors
    /// A violation on `reason` when blank, too long or holding control characters.
    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        Self::RULE.parse(raw).map(Self)
    }

    /// A stored reason, checked only against the invariant (not blank).
    ///
    /// # Errors
    /// A violation on `cancel_reason` when blank.
    pub fn from_stored(stored: String) -> Result<Self, FieldViolation> {
        if stored.trim().is_empty() {
            return Err(FieldViolation::new("cancel_reason", "is blank"));
        }
        Ok(Self(stored))
    }

    /// The reason as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn values_refuse_what_they_must() {
        assert_eq!(Quantity::parse(0).unwrap_err().field(), "quantity");
        assert_eq!(Quantity::parse(3).map(Quantity::get), Ok(3));
        assert_eq!(ProductRef::parse("x").unwrap_err().field(), "product_id");
        assert_eq!(
            BuyerId::parse("buyer_id", "").unwrap_err().description(),
            "is required"
        );
        assert_eq!(LineSku::parse(" MUG-1 ").map(|s| s.0), Ok("MUG-1".to_owned()));
        assert_eq!(LineSku::parse("a\u{7}").unwrap_err().field(), "sku");
        assert_eq!(CancelReason::parse("no\u{0}").unwrap_err().field(), "reason");
        assert_eq!(CancelReason::parse("  ").unwrap_err().field(), "reason");
        assert!(CancelReason::parse(&"é".repeat(500)).is_ok());
        assert!(CancelReason::parse(&"é".repeat(501)).is_err());
    }
}
