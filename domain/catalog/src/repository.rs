//! The catalog's repository port: what the context needs from a store, whatever
//! the store is. [`crate::store::ProductStore`] implements it on PostgreSQL and
//! SQLite, and one contract test suite (`tests/contract.rs`) holds both to it.

use std::fmt::Debug;

use async_trait::async_trait;
use strata_kernel::{Error, execute::CommandStore};
use strata_store::{StoreError, StoredEvent};
use tokio_stream::wrappers::ReceiverStream;

use crate::domain::{Product, ProductId, ProductStatus};

/// A page of products in id (that is, creation) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductQuery {
    /// Only products in this status; `None` for all.
    pub status: Option<ProductStatus>,
    /// Only products whose id is greater than this one (keyset pagination).
    pub after: Option<ProductId>,
    /// At most this many.
    pub limit: u32,
}

/// The context's events from a position on, as [`strata_store::Store::follow`] serves them.
pub type EventStream = ReceiverStream<Result<StoredEvent, StoreError>>;

/// Where products live. The command path (`load_for_command`, `recorded`,
/// `save`) is the kernel's [`CommandStore`] port.
///
/// # Errors
/// Every method returns the store's failure as an [`Error`]: `Unavailable`,
/// `DeadlineExceeded`, `Contention` or `Internal`.
#[async_trait]
pub trait ProductRepository: CommandStore<Product> + Debug + 'static {
    /// The product with this id, if any.
    async fn get(&self, id: ProductId) -> Result<Option<Product>, Error>;

    /// The products with these ids that exist, in no particular order; one
    /// round trip to the store.
    async fn get_many(&self, ids: &[ProductId]) -> Result<Vec<Product>, Error>;

    /// Products matching `query`, in id order.
    async fn list(&self, query: &ProductQuery) -> Result<Vec<Product>, Error>;

    /// The context's events after `position`; with `follow`, then every event
    /// as it commits.
    async fn events(&self, position: u64, follow: bool) -> Result<EventStream, Error>;
}
