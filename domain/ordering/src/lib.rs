//! The ordering bounded context: orders buyers place, from proto to database.
//!
//! # Layout
//! - [`domain`]: the pure model — the [`domain::Order`] aggregate root with its
//!   lines, its value objects, events and errors, expiry included. No I/O.
//! - [`service`]: the use cases ([`service::Ordering`]), each a method of the
//!   aggregate run through the kernel's command machinery, and the expiry sweep.
//! - [`repository`]: the store port ([`repository::OrderRepository`]).
//! - [`store`]: its implementation — the context's SQL and row mapping over the
//!   shared [`strata_store::Store`], on PostgreSQL or SQLite; an order's lines
//!   are a JSON column of its row.
//! - [`grpc`]: the adapter serving `strata.ordering.v1.OrderService`, the only
//!   gRPC surface of the context.
//! - [`settings`]: the context's settings (`STRATA_ORDERING_*`).
//!
//! A process hosts the context with [`mount`].

pub mod domain;
pub mod grpc;
pub mod repository;
pub mod service;
pub mod settings;
pub mod store;

use std::sync::Arc;

pub use settings::{SettingError, Settings};
pub use store::CONTEXT;

use strata_kernel::{Clock, SystemClock};
use strata_proto::ordering::v1::order_service_server::{OrderServiceServer, SERVICE_NAME};
use strata_store::{OpenError, StoreConfig};

/// The fully-qualified name of the context's one gRPC service.
pub const GRPC_SERVICE: &str = SERVICE_NAME;

/// Why the context could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// A setting has a bad value; the message names its variable.
    #[error("ordering setting {0}")]
    Setting(#[from] SettingError),
    /// The store could not be opened or migrated.
    #[error(transparent)]
    Open(#[from] OpenError),
}

/// Reads the context's settings from the environment, opens the store
/// (migrating it), starts the expiry sweep and returns the context's gRPC
/// service, ready to be added to a server. The sweep stops when the service is
/// dropped.
///
/// # Errors
/// [`MountError::Setting`] naming the variable with a bad value, or
/// [`MountError::Open`].
pub async fn mount(store: StoreConfig) -> Result<OrderServiceServer<grpc::OrderGrpc>, MountError> {
    let settings = Settings::from_env()?;
    mount_with(store, settings, Arc::new(SystemClock)).await
}

/// [`mount`] with explicit settings and clock (tests use a `ManualClock`).
///
/// # Errors
/// [`MountError::Open`].
pub async fn mount_with(
    store: StoreConfig,
    settings: Settings,
    clock: Arc<dyn Clock>,
) -> Result<OrderServiceServer<grpc::OrderGrpc>, MountError> {
    let orders = store::open(&store).await?;
    let ordering = service::Ordering::with_clock(orders, clock, settings.pending_ttl());
    let sweeper = ordering.clone();
    let sweep = strata_store::spawn_sweep(
        CONTEXT,
        "expired pending orders",
        settings.sweep_period,
        move || {
            let ordering = sweeper.clone();
            async move { ordering.expire_due().await }
        },
    );
    Ok(OrderServiceServer::new(
        grpc::OrderGrpc::new(ordering, settings.max_lines).owning(sweep),
    ))
}
