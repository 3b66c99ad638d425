//! The DDD building blocks every Strata bounded context shares.
//!
//! # Layout
//! - [`id`]: typed aggregate ids ([`Id<T>`]), UUIDv7 so that they sort by creation.
//! - [`version`]: the optimistic-concurrency [`Version`] every aggregate carries.
//! - [`aggregate`]: the [`AggregateRoot`] and [`DomainEvent`] traits.
//! - [`command`]: what every mutating command carries ([`CommandMeta`]: a
//!   [`RequestId`] idempotency key, the command's [`Fingerprint`] and an optional
//!   expected version) and the replay decision ([`command::replay`]).
//! - [`execute`]: the command machinery every context runs its commands
//!   through (replay, optimistic concurrency, bounded retry), over the
//!   [`execute::CommandStore`] port.
//! - [`clock`]: the [`Clock`] port, with the system clock and a [`ManualClock`] for tests.
//! - [`text`]: [`TextRule`], the check every free-text field shares (no control characters).
//! - [`money`]: [`Money`] and [`Currency`], with checked arithmetic.
//! - [`paging`]: page sizes and opaque page tokens bound to their filter.
//! - [`outbox`]: the [`OutboxMessage`] written in the same transaction as the aggregate.
//! - [`error`]: the error kinds every context maps its failures to.
//! - [`grpc`]: the one mapping of those kinds to `tonic::Status`, with rich details.
//!
//! Everything but [`grpc`] is pure: no I/O, no database, no RPC types
//! ([`execute`] only calls its port).

pub mod aggregate;
pub mod clock;
pub mod command;
pub mod error;
pub mod execute;
pub mod grpc;
pub mod id;
pub mod money;
pub mod outbox;
pub mod paging;
pub mod sku;
pub mod text;
pub mod version;

pub use aggregate::{AggregateRoot, DomainEvent};
pub use clock::{Clock, ManualClock, SystemClock};
pub use command::{CommandMeta, Fingerprint, Recorded, RequestId};
pub use error::{Error, FieldViolation};
pub use id::Id;
pub use money::{Currency, Money};
pub use outbox::OutboxMessage;
pub use sku::Sku;
pub use text::TextRule;
pub use version::Version;
