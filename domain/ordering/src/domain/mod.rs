//! The pure domain model of ordering: the [`Order`] aggregate root with its
//! lines, its value objects, events and errors.
//!
//! **Architecture invariant:** nothing in this module does I/O or imports sqlx,
//! tonic, prost or axum; the architecture test checks it. Time comes in as an
//! argument (the kernel's `Clock` is read by the service), so every rule here —
//! expiry included — is a plain function of its inputs.

mod error;
mod event;
mod line;
mod order;
mod value;

pub use error::OrderError;
pub use event::OrderEvent;
pub use line::{LineSnapshot, NewLine, OrderLine, OrderLines};
pub use order::{Cancellation, Order, OrderCommand, OrderId, OrderSnapshot, OrderStatus};
pub use strata_kernel::money::{Currency, Money};
pub use value::{BuyerId, CancelReason, LineSku, ProductRef, Quantity};
