use serde::Serialize;
use strata_kernel::DomainEvent;

/// What happened to a product. Serialized as the outbox payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProductEvent {
    /// A draft product was created.
    Created {
        /// Its sku.
        sku: String,
        /// Its name.
        name: String,
        /// Its price in minor units.
        price_minor: i64,
        /// The price's currency.
        currency: String,
    },
    /// Name or description changed.
    DetailsUpdated {
        /// The new name.
        name: String,
        /// The new description.
        description: String,
    },
    /// The price changed.
    PriceChanged {
        /// The new price in minor units.
        price_minor: i64,
        /// The new currency.
        currency: String,
    },
    /// The product became sellable.
    Published,
    /// The product was withdrawn for good.
    Retired,
}

impl DomainEvent for ProductEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Created { .. } => "catalog.product.created",
            Self::DetailsUpdated { .. } => "catalog.product.details_updated",
            Self::PriceChanged { .. } => "catalog.product.price_changed",
            Self::Published => "catalog.product.published",
            Self::Retired => "catalog.product.retired",
        }
    }
}
