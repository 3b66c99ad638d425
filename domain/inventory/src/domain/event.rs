use serde::{Deserialize, Serialize};
use strata_kernel::DomainEvent;
use time::OffsetDateTime;

/// Why a reservation's quantity went back to available.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseCause {
    /// Its holder released it.
    Released,
    /// Its time to live ran out before it was confirmed.
    Expired,
}

/// What happened to a stock item. Serialized as the outbox payload; fields
/// added later carry `#[serde(default)]` so that older events still read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StockItemEvent {
    /// Goods were received (the first receipt creates the item).
    Received {
        /// The item's sku.
        sku: String,
        /// How many.
        quantity: u64,
        /// On-hand afterwards.
        on_hand: u64,
    },
    /// On-hand was corrected.
    Adjusted {
        /// The item's sku.
        sku: String,
        /// By how much.
        delta: i64,
        /// Why.
        reason: String,
        /// On-hand afterwards.
        on_hand: u64,
    },
    /// A quantity was reserved.
    Reserved {
        /// The item's sku.
        sku: String,
        /// The caller's reservation id.
        reservation_id: String,
        /// How many.
        quantity: u64,
        /// When it expires unless confirmed.
        #[serde(with = "time::serde::rfc3339")]
        expires_at: OffsetDateTime,
    },
    /// A reservation became firm.
    Confirmed {
        /// The item's sku.
        sku: String,
        /// The reservation.
        reservation_id: String,
    },
    /// A reservation's quantity went back to available.
    Released {
        /// The item's sku.
        sku: String,
        /// The reservation.
        reservation_id: String,
        /// How many.
        quantity: u64,
        /// Released by its holder or expired.
        cause: ReleaseCause,
    },
    /// A reservation's goods left.
    Committed {
        /// The item's sku.
        sku: String,
        /// The reservation.
        reservation_id: String,
        /// How many.
        quantity: u64,
        /// On-hand afterwards.
        on_hand: u64,
    },
}

impl DomainEvent for StockItemEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Received { .. } => "inventory.stock_item.received",
            Self::Adjusted { .. } => "inventory.stock_item.adjusted",
            Self::Reserved { .. } => "inventory.stock_item.reserved",
            Self::Confirmed { .. } => "inventory.stock_item.reservation_confirmed",
            Self::Released { .. } => "inventory.stock_item.reservation_released",
            Self::Committed { .. } => "inventory.stock_item.reservation_committed",
        }
    }
}
