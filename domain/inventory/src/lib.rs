//! The inventory bounded context: how much of each sku the shop holds and who
//! it is promised to, from proto to database.
//!
//! # Layout
//! - [`domain`]: the pure model — the [`domain::StockItem`] aggregate root (one
//!   per sku; its reservations are entities inside it), value objects, events
//!   and errors. No I/O.
//! - [`service`]: the use cases ([`service::Inventory`]), each a method of the
//!   aggregate run through the kernel's *locked* command path
//!   (`execute::modify_locked`), and the expiry sweep.
//! - [`repository`]: the store port ([`repository::StockItemRepository`]).
//! - [`store`]: its implementation — inventory's SQL and row mapping over the
//!   shared [`strata_store::Store`], on PostgreSQL or SQLite.
//! - [`grpc`]: the adapter serving `strata.inventory.v1.StockItemService`, the
//!   only gRPC surface of the context.
//!
//! A process hosts the context with [`mount`] (or [`mount_with`]).

pub mod domain;
pub mod grpc;
pub mod repository;
pub mod service;
pub mod store;

use std::{sync::Arc, time::Duration};

pub use store::CONTEXT;

use strata_kernel::{Clock, SystemClock};
use strata_proto::inventory::v1::stock_item_service_server::{SERVICE_NAME, StockItemServiceServer};
use strata_store::{OpenError, StoreConfig};

/// The fully-qualified name of the context's one gRPC service.
pub const GRPC_SERVICE: &str = SERVICE_NAME;

/// How often the background sweep looks for expired reservations by default.
pub const DEFAULT_SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// How the context runs besides its store.
#[derive(Debug, Clone)]
pub struct Options {
    /// How often the background sweep releases expired reservations.
    pub sweep_period: Duration,
    /// Where time comes from (a `ManualClock` in tests).
    pub clock: Arc<dyn Clock>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sweep_period: DEFAULT_SWEEP_PERIOD,
            clock: Arc::new(SystemClock),
        }
    }
}

/// Opens the store (migrating it), starts the expiry sweep, and returns the
/// context's gRPC service, ready to be added to a server.
///
/// # Errors
/// [`OpenError`] when the store cannot be opened or migrated.
pub async fn mount(store: StoreConfig) -> Result<StockItemServiceServer<grpc::StockItemGrpc>, OpenError> {
    mount_with(store, Options::default()).await
}

/// [`mount`] with these options. The sweep runs on the current runtime until
/// it stops.
///
/// # Errors
/// [`OpenError`] when the store cannot be opened or migrated.
pub async fn mount_with(
    store: StoreConfig,
    options: Options,
) -> Result<StockItemServiceServer<grpc::StockItemGrpc>, OpenError> {
    let items = store::open(&store).await?;
    let inventory = service::Inventory::with_clock(items, options.clock);
    let sweeping = inventory.clone();
    strata_store::spawn_sweep(CONTEXT, "expired reservations", options.sweep_period, move || {
        let inventory = sweeping.clone();
        async move { inventory.sweep_expired().await }
    });
    Ok(StockItemServiceServer::new(grpc::StockItemGrpc::new(inventory)))
}
