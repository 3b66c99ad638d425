//! The catalog's use cases: each command loads the product, lets the aggregate
//! decide, and saves the result with its events and idempotency record in one
//! transaction. Transport-neutral: the gRPC adapter parses requests into these
//! calls and maps the results back.

use std::sync::Arc;

use strata_kernel::{AggregateRoot, Error, Fingerprint, OutboxMessage, RequestId, Version};
use time::OffsetDateTime;

use crate::domain::{Description, Money, Product, ProductError, ProductEvent, ProductId, ProductName, Sku};
use crate::repository::{ProductChange, ProductQuery, ProductRepository, RecordedCommand, StoreError};

/// How often a command without `expected_version` is retried when a concurrent
/// writer changes the product between its read and its write.
const CONFLICT_RETRIES: usize = 3;

/// What every mutating command carries besides its own fields.
#[derive(Debug, Clone)]
pub struct CommandMeta {
    /// The idempotency key.
    pub request_id: RequestId,
    /// What the command asked for, to detect a reused key.
    pub fingerprint: Fingerprint,
    /// The version the client last saw, if it wants optimistic concurrency.
    pub expected_version: Option<Version>,
}

/// The fields of a new product, already validated.
#[derive(Debug, Clone)]
pub struct NewProduct {
    /// Its sku.
    pub sku: Sku,
    /// Its name.
    pub name: ProductName,
    /// Its description.
    pub description: Description,
    /// Its price.
    pub price: Money,
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct ProductPage {
    /// The products on this page.
    pub products: Vec<Product>,
    /// The last id of this page when more may follow.
    pub next_after: Option<ProductId>,
}

/// The catalog's use cases over a [`ProductRepository`].
#[derive(Debug, Clone)]
pub struct Catalog {
    products: Arc<dyn ProductRepository>,
}

impl Catalog {
    /// The use cases over this store.
    #[must_use]
    pub fn new(products: Arc<dyn ProductRepository>) -> Self {
        Self { products }
    }

    /// # Errors
    /// [`Error::NotFound`], or the store's failure.
    pub async fn get(&self, id: ProductId) -> Result<Product, Error> {
        self.products
            .get(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| not_found(id))
    }

    /// Lists products; `query.limit` products at most.
    ///
    /// # Errors
    /// The store's failure.
    pub async fn list(&self, mut query: ProductQuery) -> Result<ProductPage, Error> {
        let limit = query.limit as usize;
        // One more than asked tells whether another page follows.
        query.limit += 1;
        let mut products = self.products.list(&query).await.map_err(store_error)?;
        let next_after = if products.len() > limit {
            products.truncate(limit);
            products.last().map(AggregateRoot::id)
        } else {
            None
        };
        Ok(ProductPage { products, next_after })
    }

    /// Creates a draft product.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] when the sku is taken, [`Error::RequestIdReused`],
    /// or the store's failure.
    pub async fn create(&self, meta: &CommandMeta, new: NewProduct) -> Result<Product, Error> {
        if let Some(product) = self.replay(meta).await? {
            return Ok(product);
        }
        let now = now();
        let (product, event) = Product::create(
            ProductId::generate(),
            new.sku,
            new.name,
            new.description,
            new.price,
            now,
        );
        match self.save(meta, &product, None, event, now).await {
            Ok(()) => Ok(product),
            Err(StoreError::DuplicateSku) => match self.replay(meta).await? {
                // A concurrent retry of this create took the sku first.
                Some(product) => Ok(product),
                None => Err(Error::AlreadyExists {
                    kind: Product::KIND,
                    field: "sku",
                }),
            },
            Err(error) => self.after_failed_save(meta, error).await,
        }
    }

    /// # Errors
    /// See [`Catalog::modify`].
    pub async fn update_details(
        &self,
        meta: &CommandMeta,
        id: ProductId,
        name: ProductName,
        description: Description,
    ) -> Result<Product, Error> {
        self.modify(meta, id, |product, now| {
            product.update_details(name.clone(), description.clone(), now)
        })
        .await
    }

    /// # Errors
    /// See [`Catalog::modify`].
    pub async fn change_price(
        &self,
        meta: &CommandMeta,
        id: ProductId,
        price: Money,
    ) -> Result<Product, Error> {
        self.modify(meta, id, |product, now| product.change_price(price, now))
            .await
    }

    /// # Errors
    /// See [`Catalog::modify`].
    pub async fn publish(&self, meta: &CommandMeta, id: ProductId) -> Result<Product, Error> {
        self.modify(meta, id, Product::publish).await
    }

    /// # Errors
    /// See [`Catalog::modify`].
    pub async fn retire(&self, meta: &CommandMeta, id: ProductId) -> Result<Product, Error> {
        self.modify(meta, id, Product::retire).await
    }

    /// Runs one command on an existing product.
    ///
    /// A retried command (same request id, same fingerprint) returns the product
    /// as the first attempt left it, without a second effect.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::VersionConflict`] when `expected_version` is
    /// given and stale; [`Error::FailedPrecondition`] when the aggregate refuses;
    /// [`Error::RequestIdReused`]; the store's failure.
    async fn modify(
        &self,
        meta: &CommandMeta,
        id: ProductId,
        command: impl Fn(&mut Product, OffsetDateTime) -> Result<ProductEvent, ProductError>,
    ) -> Result<Product, Error> {
        // One read for the common case: was this command carried out already, and
        // if not, the product it acts on.
        let (recorded, product) = self
            .products
            .load_for_command(id, &meta.request_id)
            .await
            .map_err(store_error)?;
        if let Some(product) = check_replay(meta, recorded)? {
            return Ok(product);
        }
        let mut product = product.ok_or_else(|| not_found(id))?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let before = product.version();
            if let Some(expected) = meta.expected_version
                && expected != before
            {
                return Err(conflict(id, expected, before));
            }
            let now = now();
            let event = command(&mut product, now)?;
            match self.save(meta, &product, Some(before), event, now).await {
                Ok(()) => return Ok(product),
                Err(StoreError::VersionConflict { current }) => {
                    // A concurrent retry of this very command may be what changed
                    // the product: then its result is ours.
                    if let Some(product) = self.replay(meta).await? {
                        return Ok(product);
                    }
                    match meta.expected_version {
                        Some(expected) => return Err(conflict(id, expected, current)),
                        // Nobody asked for a version: re-read and decide again.
                        None if attempts < CONFLICT_RETRIES => product = self.get(id).await?,
                        None => return Err(conflict(id, before, current)),
                    }
                }
                Err(StoreError::NotFound) => return Err(not_found(id)),
                Err(error) => return self.after_failed_save(meta, error).await,
            }
        }
    }

    async fn save(
        &self,
        meta: &CommandMeta,
        product: &Product,
        replaces: Option<Version>,
        event: ProductEvent,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let outbox =
            OutboxMessage::for_events(product, &[event], now).map_err(|e| StoreError::Other(e.into()))?;
        self.products
            .save(ProductChange {
                product,
                replaces,
                outbox: &outbox,
                request_id: &meta.request_id,
                fingerprint: &meta.fingerprint,
            })
            .await
    }

    /// The first result of this command if it was already carried out.
    async fn replay(&self, meta: &CommandMeta) -> Result<Option<Product>, Error> {
        match self
            .products
            .recorded(&meta.request_id)
            .await
            .map_err(store_error)?
        {
            None => Ok(None),
            Some(recorded) if recorded.fingerprint == meta.fingerprint => Ok(Some(recorded.product)),
            Some(_) => Err(Error::RequestIdReused {
                request_id: meta.request_id.as_str().to_owned(),
            }),
        }
    }

    /// A concurrent retry of the same command may have recorded it first: then its
    /// result is ours too.
    async fn after_failed_save(&self, meta: &CommandMeta, error: StoreError) -> Result<Product, Error> {
        match error {
            StoreError::RequestAlreadyRecorded => self
                .replay(meta)
                .await?
                .ok_or_else(|| Error::Internal("request recorded but its record cannot be read".into())),
            other => Err(store_error(other)),
        }
    }
}

/// The current time at the precision every store keeps (microseconds), so that a
/// product returned by a command equals the one read back later.
fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}

/// The first result of a command already carried out under this key; an error
/// if the key was used for a different command.
fn check_replay(meta: &CommandMeta, recorded: Option<RecordedCommand>) -> Result<Option<Product>, Error> {
    match recorded {
        None => Ok(None),
        Some(recorded) if recorded.fingerprint == meta.fingerprint => Ok(Some(recorded.product)),
        Some(_) => Err(Error::RequestIdReused {
            request_id: meta.request_id.as_str().to_owned(),
        }),
    }
}

fn not_found(id: ProductId) -> Error {
    Error::NotFound {
        kind: Product::KIND,
        id: id.to_string(),
    }
}

fn conflict(id: ProductId, expected: Version, current: Version) -> Error {
    Error::VersionConflict {
        kind: Product::KIND,
        id: id.to_string(),
        expected,
        current,
    }
}

/// Store failures that reach a caller unrefined.
fn store_error(error: StoreError) -> Error {
    match error {
        StoreError::Unavailable(source) => Error::Unavailable(source),
        other => Error::Internal(other.into()),
    }
}
