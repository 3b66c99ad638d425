use strata_kernel::Error;

use super::{ReservationStatus, StockItem};
use strata_kernel::AggregateRoot;

/// Why the StockItem aggregate refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StockItemError {
    /// No stock item has this sku (it has never been received).
    #[error("no stock item with sku {0}")]
    UnknownSku(String),
    /// The item has no reservation with this id.
    #[error("stock item {sku} has no reservation {reservation_id}")]
    UnknownReservation {
        /// The item.
        sku: String,
        /// The reservation asked for.
        reservation_id: String,
    },
    /// Not enough is available for the reservation.
    #[error("{requested} requested but only {available} available")]
    InsufficientStock {
        /// The item.
        sku: String,
        /// What was asked for.
        requested: u64,
        /// What is available.
        available: u64,
    },
    /// An adjustment would take on-hand below what is reserved (or below 0).
    #[error("on-hand {on_hand} adjusted by {delta} would fall below the {reserved} reserved")]
    BelowReserved {
        /// The item.
        sku: String,
        /// On-hand now.
        on_hand: u64,
        /// Reserved now.
        reserved: u64,
        /// The adjustment.
        delta: i64,
    },
    /// On-hand would pass the largest quantity a store keeps.
    #[error("on-hand would exceed {max}")]
    TooMuchStock {
        /// The item.
        sku: String,
        /// The largest on-hand.
        max: u64,
    },
    /// The reservation id is open with another quantity.
    #[error("reservation {reservation_id} already holds {held}, not {requested}")]
    ReservationMismatch {
        /// The item.
        sku: String,
        /// The reservation.
        reservation_id: String,
        /// What it holds.
        held: u64,
        /// What was asked for now.
        requested: u64,
    },
    /// The reservation is closed (released, expired or committed) and cannot
    /// do what was asked.
    #[error("reservation {reservation_id} is {status}")]
    ReservationClosed {
        /// The item.
        sku: String,
        /// The reservation.
        reservation_id: String,
        /// How it was closed.
        status: ReservationStatus,
    },
}

impl From<StockItemError> for Error {
    fn from(error: StockItemError) -> Self {
        let message = error.to_string();
        let (sku, reason, metadata) = match error {
            StockItemError::UnknownSku(sku) => {
                return Self::NotFound {
                    kind: StockItem::KIND,
                    id: sku,
                };
            }
            StockItemError::UnknownReservation { reservation_id, .. } => {
                return Self::NotFound {
                    kind: "reservation",
                    id: reservation_id,
                };
            }
            StockItemError::InsufficientStock {
                sku,
                requested,
                available,
            } => (
                sku,
                "INSUFFICIENT_STOCK",
                vec![
                    ("available", available.to_string()),
                    ("requested", requested.to_string()),
                ],
            ),
            StockItemError::BelowReserved { sku, reserved, .. } => {
                (sku, "BELOW_RESERVED", vec![("reserved", reserved.to_string())])
            }
            StockItemError::TooMuchStock { sku, .. } => (sku, "ON_HAND_LIMIT", Vec::new()),
            StockItemError::ReservationMismatch { sku, held, .. } => {
                (sku, "RESERVATION_MISMATCH", vec![("held", held.to_string())])
            }
            StockItemError::ReservationClosed { sku, status, .. } => (
                sku,
                match status {
                    ReservationStatus::Expired => "RESERVATION_EXPIRED",
                    ReservationStatus::Committed => "RESERVATION_COMMITTED",
                    _ => "RESERVATION_RELEASED",
                },
                Vec::new(),
            ),
        };
        Self::FailedPrecondition {
            kind: StockItem::KIND,
            id: sku,
            reason,
            message,
            metadata,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_reservation_says_how_it_was_closed() {
        for (status, reason) in [
            (ReservationStatus::Expired, "RESERVATION_EXPIRED"),
            (ReservationStatus::Committed, "RESERVATION_COMMITTED"),
            (ReservationStatus::Released, "RESERVATION_RELEASED"),
        ] {
            let error = Error::from(StockItemError::ReservationClosed {
                sku: "MUG".into(),
                reservation_id: "r".into(),
                status,
            });
            assert!(
                matches!(error, Error::FailedPrecondition { reason: r, .. } if r == reason),
                "{status:?}: {error:?}"
            );
        }
    }
}
