//! The catalog bounded context: products the shop sells, from proto to database.
//!
//! # Layout
//! - [`domain`]: the pure model — the [`domain::Product`] aggregate root, its value
//!   objects, events and errors. No I/O.
//! - [`service`]: the use cases ([`service::Catalog`]), each a method of the
//!   aggregate run through the kernel's command machinery.
//! - [`repository`]: the store port ([`repository::ProductRepository`]).
//! - [`store`]: its implementation — the catalog's SQL and row mapping over the
//!   shared [`strata_store::Store`], on PostgreSQL or SQLite.
//! - [`grpc`]: the adapter serving `strata.catalog.v1.ProductService`, the only
//!   gRPC surface of the context.
//!
//! A process hosts the context with [`mount`].

pub mod domain;
pub mod grpc;
pub mod repository;
pub mod service;
pub mod store;

pub use store::CONTEXT;

use strata_proto::catalog::v1::product_service_server::{ProductServiceServer, SERVICE_NAME};
use strata_store::{OpenError, StoreConfig};

/// The fully-qualified name of the context's one gRPC service.
pub const GRPC_SERVICE: &str = SERVICE_NAME;

/// Opens the store (migrating it) and returns the context's gRPC service, ready
/// to be added to a server.
///
/// # Errors
/// [`OpenError`] when the store cannot be opened or migrated.
pub async fn mount(store: StoreConfig) -> Result<ProductServiceServer<grpc::ProductGrpc>, OpenError> {
    let products = store::open(&store).await?;
    Ok(ProductServiceServer::new(grpc::ProductGrpc::new(
        service::Catalog::new(products),
    )))
}
