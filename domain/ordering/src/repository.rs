//! The ordering repository port: what the context needs from a store, whatever
//! the store is. [`crate::store::OrderStore`] implements it on PostgreSQL and
//! SQLite, and one contract test suite (`tests/contract.rs`) holds both to it.

use std::fmt::Debug;

use async_trait::async_trait;
use strata_kernel::{Error, execute::CommandStore};
use strata_store::{StoreError, StoredEvent};
use time::OffsetDateTime;
use tokio_stream::wrappers::ReceiverStream;

use crate::domain::{BuyerId, Order, OrderId, OrderStatus};

/// Where a page of a listing starts: after the order placed at `created_at`
/// with id `id`, in (created_at, id) descending order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderCursor {
    /// The last order's creation time.
    pub created_at: OffsetDateTime,
    /// The last order's id (the tie-breaker).
    pub id: OrderId,
}

/// A page of orders, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderQuery {
    /// Only this buyer's orders; `None` for every buyer.
    pub buyer: Option<BuyerId>,
    /// Only orders in this status; `None` for all.
    pub status: Option<OrderStatus>,
    /// Only orders after this one (keyset pagination).
    pub after: Option<OrderCursor>,
    /// At most this many.
    pub limit: u32,
}

/// The context's events from a position on, as [`strata_store::Store::follow`] serves them.
pub type EventStream = ReceiverStream<Result<StoredEvent, StoreError>>;

/// Where orders live. The command path (`load_for_command`, `recorded`,
/// `save`) is the kernel's [`CommandStore`] port.
///
/// # Errors
/// Every method returns the store's failure as an [`Error`]: `Unavailable`,
/// `DeadlineExceeded`, `Contention` or `Internal`.
#[async_trait]
pub trait OrderRepository: CommandStore<Order> + Debug + 'static {
    /// The order with this id, if any.
    async fn get(&self, id: OrderId) -> Result<Option<Order>, Error>;

    /// Orders matching `query`, newest first: by `created_at`, then id,
    /// descending.
    async fn list(&self, query: &OrderQuery) -> Result<Vec<Order>, Error>;

    /// The ids of up to `limit` pending orders whose deadline is at or before
    /// `now`, earliest deadline first.
    async fn due(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<OrderId>, Error>;

    /// The context's events after `position`; with `follow`, then every event
    /// as it commits.
    async fn events(&self, position: u64, follow: bool) -> Result<EventStream, Error>;
}
