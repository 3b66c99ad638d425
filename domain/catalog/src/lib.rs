//! The catalog bounded context: products the shop sells, from proto to database.
//!
//! # Layout
//! - [`domain`]: the pure model — the [`domain::Product`] aggregate root, its value
//!   objects, events and errors. No I/O.
//! - [`service`]: the use cases ([`service::Catalog`]): load, let the aggregate
//!   decide, save with outbox and idempotency record in one transaction.
//! - [`repository`]: the store port ([`repository::ProductRepository`]).
//! - [`postgres`], [`sqlite`]: its two adapters; [`store`]: what they share and
//!   [`store::open`], which picks one from a URL and migrates it.
//! - [`grpc`]: the adapter serving `strata.catalog.v1.ProductService`, the only
//!   gRPC surface of the context.
//!
//! A process hosts the context with [`mount`].

pub mod domain;
pub mod grpc;
pub mod postgres;
pub mod repository;
pub mod service;
pub mod sqlite;
pub mod store;

pub use store::CONTEXT;

use strata_proto::catalog::v1::product_service_server::{ProductServiceServer, SERVICE_NAME};

/// The fully-qualified name of the context's one gRPC service.
pub const GRPC_SERVICE: &str = SERVICE_NAME;

/// Opens the store (migrating it) and returns the context's gRPC service, ready
/// to be added to a server.
///
/// # Errors
/// [`store::OpenError`] when the store cannot be opened or migrated.
pub async fn mount(
    store: &store::StoreConfig,
) -> Result<ProductServiceServer<grpc::ProductGrpc>, store::OpenError> {
    let products = store::open(store).await?;
    Ok(ProductServiceServer::new(grpc::ProductGrpc::new(
        service::Catalog::new(products),
    )))
}
