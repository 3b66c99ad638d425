//! The pure domain model of the catalog: the [`Product`] aggregate, its value
//! objects and events.
//!
//! **Architecture invariant:** nothing in this module does I/O or imports sqlx,
//! tonic, prost or axum; the architecture test checks it. Time comes in as an
//! argument, so every rule here is a plain function of its inputs.

mod error;
mod event;
mod product;
mod value;

pub use error::ProductError;
pub use event::ProductEvent;
pub use product::{Product, ProductId, ProductSnapshot, ProductStatus};
pub use strata_kernel::money::{Currency, Money};
pub use value::{Description, ProductName, Sku};
