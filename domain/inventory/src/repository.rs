//! Inventory's repository port: what the context needs from a store, whatever
//! the store is. [`crate::store::StockItemStore`] implements it on PostgreSQL
//! and SQLite, and one contract test suite (`tests/contract.rs`) holds both to
//! it.

use std::fmt::Debug;

use async_trait::async_trait;
use strata_kernel::{Error, execute::LockedCommandStore};
use strata_store::{StoreError, StoredEvent};
use time::OffsetDateTime;
use tokio_stream::wrappers::ReceiverStream;

use crate::domain::{Sku, StockItem};

/// The context's events from a position on, as [`strata_store::Store::follow`] serves them.
pub type EventStream = ReceiverStream<Result<StoredEvent, StoreError>>;

/// Where stock items live. The command path is the kernel's locked one
/// ([`LockedCommandStore`], with the optimistic [`strata_kernel::execute::CommandStore`]
/// under it): every command on an item holds the item's row.
///
/// # Errors
/// Every method returns the store's failure as an [`Error`]: `Unavailable`,
/// `DeadlineExceeded`, `Contention` or `Internal`.
#[async_trait]
pub trait StockItemRepository: LockedCommandStore<StockItem> + Debug + 'static {
    /// The item with this sku, if any, as stored.
    async fn get(&self, sku: &Sku) -> Result<Option<StockItem>, Error>;

    /// The items with these skus that exist, in sku order, in one round trip.
    async fn batch_get(&self, skus: &[Sku]) -> Result<Vec<StockItem>, Error>;

    /// Up to `limit` skus with a held reservation expired at `now`, soonest
    /// first (through the `next_expiry` index).
    async fn expiring(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<Sku>, Error>;

    /// The context's events after `position`; with `follow`, then every event
    /// as it commits.
    async fn events(&self, position: u64, follow: bool) -> Result<EventStream, Error>;
}
