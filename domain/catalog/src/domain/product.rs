use std::fmt;

use serde::{Deserialize, Serialize};
use strata_kernel::{AggregateRoot, FieldViolation, Id, Version};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Description, Money, ProductError, ProductEvent, ProductName, Sku};

/// The id of a [`Product`].
pub type ProductId = Id<Product>;

/// Where a product is in its life: draft → published → retired (a draft may also
/// be retired directly). Only published products are sellable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProductStatus {
    /// Being prepared; not visible to shoppers.
    Draft,
    /// Sellable.
    Published,
    /// Withdrawn for good.
    Retired,
}

impl ProductStatus {
    /// The stored name: `draft`, `published` or `retired`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Published => "published",
            Self::Retired => "retired",
        }
    }

    /// Reads a stored name back.
    #[must_use]
    pub fn from_stored(name: &str) -> Option<Self> {
        [Self::Draft, Self::Published, Self::Retired]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

impl fmt::Display for ProductStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The catalog's aggregate root: something the shop sells.
///
/// Invariants, kept by its methods: the sku never changes; the price is positive;
/// the status only moves draft → published → retired (or draft → retired); a
/// retired product never changes again; every change increments the version.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    id: ProductId,
    sku: Sku,
    name: ProductName,
    description: Description,
    price: Money,
    status: ProductStatus,
    version: Version,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl AggregateRoot for Product {
    type Event = ProductEvent;
    const KIND: &'static str = "product";

    fn id(&self) -> ProductId {
        self.id
    }

    fn version(&self) -> Version {
        self.version
    }
}

impl Product {
    /// A new draft product at version 1, and the event that records it.
    #[must_use]
    pub fn create(
        id: ProductId,
        sku: Sku,
        name: ProductName,
        description: Description,
        price: Money,
        now: OffsetDateTime,
    ) -> (Self, ProductEvent) {
        let event = ProductEvent::Created {
            sku: sku.as_str().to_owned(),
            name: name.as_str().to_owned(),
            description: description.as_str().to_owned(),
            price_minor: price.amount_minor(),
            currency: price.currency().to_string(),
        };
        let product = Self {
            id,
            sku,
            name,
            description,
            price,
            status: ProductStatus::Draft,
            version: Version::INITIAL,
            created_at: now,
            updated_at: now,
        };
        (product, event)
    }

    /// Renames and/or re-describes the product; `None` keeps that detail.
    ///
    /// # Errors
    /// [`ProductError::Retired`] when the product is retired.
    pub fn update_details(
        &mut self,
        name: Option<ProductName>,
        description: Option<Description>,
        now: OffsetDateTime,
    ) -> Result<ProductEvent, ProductError> {
        self.ensure_not_retired()?;
        if let Some(name) = name {
            self.name = name;
        }
        if let Some(description) = description {
            self.description = description;
        }
        let event = ProductEvent::DetailsUpdated {
            name: self.name.as_str().to_owned(),
            description: self.description.as_str().to_owned(),
        };
        Ok(self.changed(event, now))
    }

    /// Sets a new price.
    ///
    /// # Errors
    /// [`ProductError::Retired`] when the product is retired.
    pub fn change_price(&mut self, price: Money, now: OffsetDateTime) -> Result<ProductEvent, ProductError> {
        self.ensure_not_retired()?;
        let event = ProductEvent::PriceChanged {
            price_minor: price.amount_minor(),
            currency: price.currency().to_string(),
        };
        self.price = price;
        Ok(self.changed(event, now))
    }

    /// Makes a draft sellable.
    ///
    /// # Errors
    /// [`ProductError::NotDraft`] unless the product is a draft.
    pub fn publish(&mut self, now: OffsetDateTime) -> Result<ProductEvent, ProductError> {
        if self.status != ProductStatus::Draft {
            return Err(ProductError::NotDraft {
                id: self.id,
                status: self.status,
            });
        }
        self.status = ProductStatus::Published;
        Ok(self.changed(ProductEvent::Published, now))
    }

    /// Withdraws the product for good.
    ///
    /// # Errors
    /// [`ProductError::Retired`] when it already is.
    pub fn retire(&mut self, now: OffsetDateTime) -> Result<ProductEvent, ProductError> {
        self.ensure_not_retired()?;
        self.status = ProductStatus::Retired;
        Ok(self.changed(ProductEvent::Retired, now))
    }

    fn ensure_not_retired(&self) -> Result<(), ProductError> {
        if self.status == ProductStatus::Retired {
            return Err(ProductError::Retired(self.id));
        }
        Ok(())
    }

    fn changed(&mut self, event: ProductEvent, now: OffsetDateTime) -> ProductEvent {
        self.version = self.version.next();
        self.updated_at = now;
        event
    }

    /// The stock keeping unit.
    #[must_use]
    pub fn sku(&self) -> &Sku {
        &self.sku
    }

    /// The display name.
    #[must_use]
    pub fn name(&self) -> &ProductName {
        &self.name
    }

    /// The description.
    #[must_use]
    pub fn description(&self) -> &Description {
        &self.description
    }

    /// The price.
    #[must_use]
    pub fn price(&self) -> Money {
        self.price
    }

    /// The life-cycle status.
    #[must_use]
    pub fn status(&self) -> ProductStatus {
        self.status
    }

    /// When it was created.
    #[must_use]
    pub fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }

    /// When it last changed.
    #[must_use]
    pub fn updated_at(&self) -> OffsetDateTime {
        self.updated_at
    }

    /// The plain-data form stores keep.
    #[must_use]
    pub fn snapshot(&self) -> ProductSnapshot {
        ProductSnapshot {
            id: self.id.as_uuid(),
            sku: self.sku.as_str().to_owned(),
            name: self.name.as_str().to_owned(),
            description: self.description.as_str().to_owned(),
            price_minor: self.price.amount_minor(),
            currency: self.price.currency().to_string(),
            status: self.status,
            version: self.version.get(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// Rebuilds a product from what a store kept, checking the aggregate's
    /// invariants (a sku and a name, a positive price in a currency, a version
    /// of at least 1) — not today's input rules, so that a rule that tightens
    /// later never makes a stored product, or the replay of an old command,
    /// unreadable. A corrupted row is an error rather than an aggregate that
    /// breaks its invariants.
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn restore(snapshot: ProductSnapshot) -> Result<Self, FieldViolation> {
        let price = Money::parse(&snapshot.currency, snapshot.price_minor)
            .map_err(|mut violations| violations.remove(0).nested_in("price"))?;
        if snapshot.version < 1 {
            return Err(FieldViolation::new("version", "is below 1"));
        }
        Ok(Self {
            id: ProductId::from_uuid(snapshot.id),
            sku: Sku::from_stored(snapshot.sku)?,
            name: ProductName::from_stored(snapshot.name)?,
            description: Description::from_stored(snapshot.description),
            price,
            status: snapshot.status,
            version: Version::new(snapshot.version),
            created_at: snapshot.created_at,
            updated_at: snapshot.updated_at,
        })
    }
}

/// A product as plain data: what stores write and read, and what the idempotency
/// record keeps as the result of a command. Only [`Product::restore`] turns it
/// back into an aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct ProductSnapshot {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price_minor: i64,
    pub currency: String,
    pub status: ProductStatus,
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> Product {
        let (product, _) = Product::create(
            ProductId::generate(),
            Sku::parse("MUG-1").unwrap(),
            ProductName::parse("Mug").unwrap(),
            Description::default(),
            Money::parse("EUR", 1200).unwrap(),
            OffsetDateTime::UNIX_EPOCH,
        );
        product
    }

    fn later() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::hours(1)
    }

    #[test]
    fn a_new_product_is_a_draft_at_version_one() {
        let product = draft();
        assert_eq!(product.status(), ProductStatus::Draft);
        assert_eq!(product.version(), Version::INITIAL);
    }

    #[test]
    fn every_change_increments_the_version_and_records_an_event() {
        let mut product = draft();
        let event = product
            .change_price(Money::parse("EUR", 1500).unwrap(), later())
            .unwrap();
        assert_eq!(
            event,
            ProductEvent::PriceChanged {
                price_minor: 1500,
                currency: "EUR".into()
            }
        );
        assert_eq!(product.version(), Version::new(2));
        assert_eq!(product.updated_at(), later());
        assert_eq!(product.created_at(), OffsetDateTime::UNIX_EPOCH);
        product.publish(later()).unwrap();
        assert_eq!(product.version(), Version::new(3));
        assert_eq!(product.status(), ProductStatus::Published);
    }

    #[test]
    fn only_a_draft_can_be_published() {
        let mut product = draft();
        product.publish(later()).unwrap();
        let err = product.publish(later()).unwrap_err();
        assert!(matches!(
            err,
            ProductError::NotDraft {
                status: ProductStatus::Published,
                ..
            }
        ));
        assert_eq!(
            product.version(),
            Version::new(2),
            "a refused command changes nothing"
        );
    }

    #[test]
    fn a_retired_product_never_changes_again() {
        let mut product = draft();
        product.retire(later()).unwrap();
        let before = product.clone();
        assert!(matches!(
            product.publish(later()),
            Err(ProductError::NotDraft { .. })
        ));
        assert!(matches!(product.retire(later()), Err(ProductError::Retired(_))));
        assert!(matches!(
            product.change_price(Money::parse("EUR", 1).unwrap(), later()),
            Err(ProductError::Retired(_))
        ));
        assert!(matches!(
            product.update_details(ProductName::parse("x").ok(), None, later()),
            Err(ProductError::Retired(_))
        ));
        assert_eq!(product, before);
    }

    #[test]
    fn snapshots_round_trip() {
        let mut product = draft();
        product.publish(later()).unwrap();
        let json = serde_json::to_string(&product.snapshot()).unwrap();
        let back = Product::restore(serde_json::from_str(&json).unwrap()).unwrap();
        assert_eq!(back, product);
    }

    #[test]
    fn details_not_given_are_kept() {
        let mut product = draft();
        let description = Description::parse("Stoneware").unwrap();
        product
            .update_details(None, Some(description.clone()), later())
            .unwrap();
        let event = product
            .update_details(ProductName::parse("Big mug").ok(), None, later())
            .unwrap();
        assert_eq!(product.name().as_str(), "Big mug");
        assert_eq!(product.description(), &description, "omitting it keeps it");
        assert_eq!(
            event,
            ProductEvent::DetailsUpdated {
                name: "Big mug".into(),
                description: "Stoneware".into()
            }
        );
    }

    #[test]
    fn a_stored_product_reads_back_after_an_input_rule_tightens() {
        // Stored when names could be longer than today's 200 characters and
        // skus could hold a space: the invariants still hold, so it restores.
        let mut snapshot = draft().snapshot();
        snapshot.name = "n".repeat(250);
        snapshot.sku = "OLD SKU".into();
        let product = Product::restore(snapshot).unwrap();
        assert_eq!(product.name().as_str().len(), 250);
    }

    #[test]
    fn a_corrupt_snapshot_is_refused() {
        let mut snapshot = draft().snapshot();
        snapshot.price_minor = 0;
        assert_eq!(
            Product::restore(snapshot).unwrap_err().field(),
            "price.amount_minor"
        );
    }
}
