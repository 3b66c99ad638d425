//! Aggregates and their events.

use serde::Serialize;

use crate::{Id, Version};

/// An aggregate root: the only entry point to a consistency boundary. It changes
/// only through its own methods, each of which keeps its invariants and records
/// the [`DomainEvent`]s that happened.
pub trait AggregateRoot {
    /// The domain events this aggregate records.
    type Event: DomainEvent;

    /// The aggregate type's name, as used in outbox messages and errors ("product").
    const KIND: &'static str;

    /// Its identity.
    fn id(&self) -> Id<Self>;

    /// Its current version.
    fn version(&self) -> Version;
}

/// Something that happened to an aggregate, published through the outbox.
pub trait DomainEvent: Serialize {
    /// A stable name for consumers, e.g. `catalog.product.price_changed`.
    fn event_type(&self) -> &'static str;
}
