//! The pure domain model of identity: the [`Account`] aggregate, its value
//! objects and events.
//!
//! **Architecture invariant:** nothing in this module does I/O or imports sqlx,
//! tonic, prost or axum; the architecture test checks it. Time comes in as an
//! argument and password hashes are made outside (by the
//! [`crate::password::PasswordHasher`] port), so every rule here is a plain
//! function of its inputs.

mod account;
mod error;
mod event;
mod value;

pub use account::{Account, AccountId, AccountSnapshot, AccountStatus};
pub use error::AccountError;
pub use event::AccountEvent;
pub use value::{
    DisplayName, Email, MAX_PASSWORD_CHARS, Password, PasswordHash, Role, Roles, SuspensionReason,
};
