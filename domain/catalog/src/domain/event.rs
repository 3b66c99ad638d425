use serde::{Deserialize, Serialize};
use strata_kernel::DomainEvent;

/// What happened to a product. Serialized as the outbox payload; fields added
/// later carry `#[serde(default)]` so that older events still read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProductEvent {
    /// A draft product was created.
    Created {
        /// Its sku.
        sku: String,
        /// Its name.
        name: String,
        /// Its description.
        #[serde(default)]
        description: String,
        /// Its price in minor units.
        price_minor: i64,
        /// The price's currency.
        currency: String,
    },
    /// Name or description changed; both as they are now.
    DetailsUpdated {
        /// The name.
        name: String,
        /// The description.
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
