//! The catalog's repository port: what the context needs from a store, whatever
//! the store is. [`crate::postgres`] and [`crate::sqlite`] implement it, and one
//! contract test suite (`tests/contract.rs`) runs against both.

use std::fmt::Debug;

use async_trait::async_trait;
use strata_kernel::{Fingerprint, OutboxMessage, RequestId, Version, error::BoxError};

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

/// A command that was carried out, as its idempotency record keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCommand {
    /// What the command asked for.
    pub fingerprint: Fingerprint,
    /// The product as the command left it: the result to return again.
    pub product: Product,
}

/// One change to write atomically: the product, its outbox messages and the
/// idempotency record of the command that made it.
#[derive(Debug)]
pub struct ProductChange<'a> {
    /// The product after the change.
    pub product: &'a Product,
    /// `None` to insert a new product; else the version it had before the change,
    /// which must still be the stored one.
    pub replaces: Option<Version>,
    /// The events of the change.
    pub outbox: &'a [OutboxMessage],
    /// The command's idempotency key.
    pub request_id: &'a RequestId,
    /// What the command asked for.
    pub fingerprint: &'a Fingerprint,
}

/// An outbox row as stored, with its position in the context's event stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Increases with every event the context records.
    pub position: i64,
    /// The aggregate that changed.
    pub aggregate_id: uuid::Uuid,
    /// Its version after the change.
    pub aggregate_version: Version,
    /// The event's stable name.
    pub event_type: String,
    /// The event as JSON.
    pub payload: serde_json::Value,
}

/// Why a store refused or failed a write or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stored product is no longer at the version the change replaces.
    #[error("product is at version {current}")]
    VersionConflict {
        /// The stored version.
        current: Version,
    },
    /// The product to update does not exist.
    #[error("product not found")]
    NotFound,
    /// Another product has this sku.
    #[error("sku already exists")]
    DuplicateSku,
    /// A command with this request id was already recorded (by a concurrent retry).
    #[error("request id already recorded")]
    RequestAlreadyRecorded,
    /// The store cannot be reached, timed out or is overloaded; retrying may help.
    #[error("store unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else: a bug or a corrupt row.
    #[error("store failure")]
    Other(#[source] BoxError),
}

/// Where products live.
///
/// # Errors
/// Every method returns [`StoreError::Unavailable`] when the store cannot be
/// reached and [`StoreError::Other`] for anything unexpected; `save` also returns
/// the refusals documented on it.
#[async_trait]
pub trait ProductRepository: Send + Sync + Debug + 'static {
    /// The product with this id, if any.
    async fn get(&self, id: ProductId) -> Result<Option<Product>, StoreError>;

    /// Products matching `query`, in id order.
    async fn list(&self, query: &ProductQuery) -> Result<Vec<Product>, StoreError>;

    /// The command recorded under this idempotency key, if any.
    async fn recorded(&self, request_id: &RequestId) -> Result<Option<RecordedCommand>, StoreError>;

    /// What a command on product `id` needs to start: the record of `request_id`
    /// if that command was already carried out, and the product — in one round
    /// trip where the store can (PostgreSQL does; SQLite reads its file twice).
    async fn load_for_command(
        &self,
        id: ProductId,
        request_id: &RequestId,
    ) -> Result<(Option<RecordedCommand>, Option<Product>), StoreError>;

    /// Writes the product, its outbox messages and the idempotency record
    /// atomically: all or nothing.
    ///
    /// # Errors
    /// [`StoreError::RequestAlreadyRecorded`] when the request id is taken,
    /// [`StoreError::DuplicateSku`] when inserting a product whose sku is taken,
    /// [`StoreError::NotFound`] when updating a product that does not exist,
    /// [`StoreError::VersionConflict`] when it is no longer at `replaces`.
    async fn save(&self, change: ProductChange<'_>) -> Result<(), StoreError>;

    /// Up to `limit` outbox events after `position`, in order.
    async fn events_after(&self, position: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError>;
}
