//! The catalog's use cases: each command runs through the kernel's command
//! machinery ([`strata_kernel::execute`]) with a method of the `Product`
//! aggregate. Transport-neutral: the gRPC adapter parses requests into these
//! calls and maps the results back.

use std::sync::Arc;

use strata_kernel::{AggregateRoot, Clock, CommandMeta, Error, SystemClock, execute};

use crate::domain::{Description, Money, Product, ProductId, ProductName, Sku};
use crate::repository::{EventStream, ProductQuery, ProductRepository};

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
    clock: Arc<dyn Clock>,
}

impl Catalog {
    /// The use cases over this store, on the system clock.
    #[must_use]
    pub fn new(products: Arc<dyn ProductRepository>) -> Self {
        Self::with_clock(products, Arc::new(SystemClock))
    }

    /// The use cases over this store and clock.
    #[must_use]
    pub fn with_clock(products: Arc<dyn ProductRepository>, clock: Arc<dyn Clock>) -> Self {
        Self { products, clock }
    }

    /// # Errors
    /// [`Error::NotFound`], or the store's failure.
    pub async fn get(&self, id: ProductId) -> Result<Product, Error> {
        self.products.get(id).await?.ok_or_else(|| Error::NotFound {
            kind: Product::KIND,
            id: id.to_string(),
        })
    }

    /// The products with these ids that exist, in the order of `ids` (each once).
    ///
    /// # Errors
    /// The store's failure.
    pub async fn get_many(&self, ids: &[ProductId]) -> Result<Vec<Product>, Error> {
        let found = self.products.get_many(ids).await?;
        let mut ordered: Vec<Product> = Vec::with_capacity(found.len());
        for id in ids {
            if ordered.iter().any(|p| p.id() == *id) {
                continue;
            }
            if let Some(product) = found.iter().find(|p| p.id() == *id) {
                ordered.push(product.clone());
            }
        }
        Ok(ordered)
    }

    /// Lists products; `query.limit` products at most.
    ///
    /// # Errors
    /// The store's failure.
    pub async fn list(&self, mut query: ProductQuery) -> Result<ProductPage, Error> {
        let limit = query.limit as usize;
        // One more than asked tells whether another page follows.
        query.limit = query.limit.saturating_add(1);
        let mut products = self.products.list(&query).await?;
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
        execute::create(&*self.products, &*self.clock, meta, |now| {
            let (product, event) = Product::create(
                ProductId::generate(),
                new.sku,
                new.name,
                new.description,
                new.price,
                now,
            );
            (product, vec![event])
        })
        .await
    }

    /// Changes the details given; `None` keeps that detail.
    ///
    /// # Errors
    /// See [`execute::modify`].
    pub async fn update_details(
        &self,
        meta: &CommandMeta,
        id: ProductId,
        name: Option<ProductName>,
        description: Option<Description>,
    ) -> Result<Product, Error> {
        execute::modify(&*self.products, &*self.clock, meta, id, |product, now| {
            product
                .update_details(name.clone(), description.clone(), now)
                .map(|event| vec![event])
        })
        .await
    }

    /// # Errors
    /// See [`execute::modify`].
    pub async fn change_price(
        &self,
        meta: &CommandMeta,
        id: ProductId,
        price: Money,
    ) -> Result<Product, Error> {
        execute::modify(&*self.products, &*self.clock, meta, id, |product, now| {
            product.change_price(price, now).map(|event| vec![event])
        })
        .await
    }

    /// # Errors
    /// See [`execute::modify`].
    pub async fn publish(&self, meta: &CommandMeta, id: ProductId) -> Result<Product, Error> {
        execute::modify(&*self.products, &*self.clock, meta, id, |product, now| {
            product.publish(now).map(|event| vec![event])
        })
        .await
    }

    /// # Errors
    /// See [`execute::modify`].
    pub async fn retire(&self, meta: &CommandMeta, id: ProductId) -> Result<Product, Error> {
        execute::modify(&*self.products, &*self.clock, meta, id, |product, now| {
            product.retire(now).map(|event| vec![event])
        })
        .await
    }

    /// The context's events after `position`; with `follow`, then every event
    /// as it commits.
    ///
    /// # Errors
    /// The store's failure.
    pub async fn events(&self, position: u64, follow: bool) -> Result<EventStream, Error> {
        self.products.events(position, follow).await
    }
}
