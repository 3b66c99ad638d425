//! The DDD building blocks every Strata bounded context shares.
//!
//! # Layout
//! - [`id`]: typed aggregate ids ([`Id<T>`]), UUIDv7 so that they sort by creation.
//! - [`version`]: the optimistic-concurrency [`Version`] every aggregate carries.
//! - [`aggregate`]: the [`AggregateRoot`] and [`DomainEvent`] traits.
//! - [`command`]: what every mutating command carries: a [`RequestId`]
//!   (idempotency key) and an optional expected version.
//! - [`outbox`]: the [`OutboxMessage`] written in the same transaction as the aggregate.
//! - [`error`]: the error kinds every context maps its failures to.
//! - [`grpc`]: the one mapping of those kinds to `tonic::Status`, with rich details.
//!
//! Everything but [`grpc`] is pure: no I/O, no database, no RPC types.

pub mod aggregate;
pub mod command;
pub mod error;
pub mod grpc;
pub mod id;
pub mod outbox;
pub mod version;

pub use aggregate::{AggregateRoot, DomainEvent};
pub use command::{Fingerprint, RequestId};
pub use error::{Error, FieldViolation};
pub use id::Id;
pub use outbox::OutboxMessage;
pub use version::Version;
