use strata_kernel::{AggregateRoot, Error};
use time::OffsetDateTime;

use super::{Order, OrderId, OrderStatus};

/// Why the Order aggregate refused a command. Every variant is a
/// FAILED_PRECONDITION for the client, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// Only a pending order can be confirmed (or expire).
    #[error("only a pending order can be confirmed; this one is {status}")]
    NotPending {
        /// The order.
        id: OrderId,
        /// Its current status.
        status: OrderStatus,
    },
    /// Only a confirmed order can be shipped.
    #[error("only a confirmed order can be shipped; this one is {status}")]
    NotConfirmed {
        /// The order.
        id: OrderId,
        /// Its current status.
        status: OrderStatus,
    },
    /// The order is cancelled already (a retry of that very cancellation
    /// replays instead).
    #[error("the order is already cancelled")]
    AlreadyCancelled(OrderId),
    /// A shipped order can no longer be cancelled.
    #[error("the order is shipped and can no longer be cancelled")]
    Shipped(OrderId),
    /// The order was not confirmed by its deadline: the command's write
    /// cancelled it instead.
    #[error("the order was not confirmed by {deadline} and has expired (cancelled)")]
    Expired {
        /// The order.
        id: OrderId,
        /// When it expired.
        deadline: OffsetDateTime,
    },
    /// A pending order before its deadline does not expire (the sweep raced a
    /// change of the deadline's order: nothing to do).
    #[error("the order is not due to expire before {deadline}")]
    NotDue {
        /// The order.
        id: OrderId,
        /// When it will be due.
        deadline: OffsetDateTime,
    },
}

impl From<OrderError> for Error {
    fn from(error: OrderError) -> Self {
        let (id, reason, metadata) = match &error {
            OrderError::NotPending { id, status } => {
                (id, "ORDER_NOT_PENDING", vec![("status", status.to_string())])
            }
            OrderError::NotConfirmed { id, status } => {
                (id, "ORDER_NOT_CONFIRMED", vec![("status", status.to_string())])
            }
            OrderError::AlreadyCancelled(id) => (
                id,
                "ORDER_ALREADY_CANCELLED",
                vec![("status", "cancelled".into())],
            ),
            OrderError::Shipped(id) => (id, "ORDER_SHIPPED", vec![("status", "shipped".into())]),
            OrderError::Expired { id, .. } => (id, "ORDER_EXPIRED", vec![("status", "cancelled".into())]),
            OrderError::NotDue { id, .. } => (id, "ORDER_NOT_DUE", vec![("status", "pending".into())]),
        };
        Self::FailedPrecondition {
            kind: Order::KIND,
            id: id.to_string(),
            reason,
            message: error.to_string(),
            metadata,
        }
    }
}
