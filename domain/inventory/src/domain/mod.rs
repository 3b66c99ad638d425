//! The pure domain model of inventory: the [`StockItem`] aggregate (on-hand
//! stock and the reservations against it), its value objects and events.
//!
//! **Architecture invariant:** nothing in this module does I/O or imports sqlx,
//! tonic, prost, axum or tokio. Time comes in as an argument, so expiry is a
//! plain function of the clock's reading.

mod error;
mod event;
mod stock_item;
mod value;

pub use error::StockItemError;
pub use event::{ReleaseCause, StockItemEvent};
pub use stock_item::{
    MAX_CLOSED_KEPT, MAX_QUANTITY, Reservation, ReservationSnapshot, ReservationStatus, StockItem,
    StockItemId, StockItemSnapshot,
};
pub use value::{Reason, ReservationId, Sku};
