use serde::{Deserialize, Serialize};
use strata_kernel::DomainEvent;
use time::OffsetDateTime;
use uuid::Uuid;

use super::LineSnapshot;

/// What happened to an order. Serialized as the outbox payload; fields added
/// later carry `#[serde(default)]` so that older events still read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OrderEvent {
    /// A pending order was placed.
    Placed {
        /// The buyer.
        buyer_id: Uuid,
        /// Its lines, with their totals.
        lines: Vec<LineSnapshot>,
        /// The order total in minor units.
        total_minor: i64,
        /// The order's currency.
        currency: String,
        /// When it expires unless confirmed.
        #[serde(with = "time::serde::rfc3339")]
        expires_at: OffsetDateTime,
    },
    /// The order was confirmed.
    Confirmed,
    /// The order was cancelled, on request or because it expired unconfirmed.
    Cancelled {
        /// The reason given; `expired` when it expired.
        reason: String,
        /// Whether it expired unconfirmed.
        #[serde(default)]
        expired: bool,
    },
    /// The order was shipped.
    Shipped,
}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Placed { .. } => "ordering.order.placed",
            Self::Confirmed => "ordering.order.confirmed",
            Self::Cancelled { .. } => "ordering.order.cancelled",
            Self::Shipped => "ordering.order.shipped",
        }
    }
}
