//! The transactional outbox.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::{AggregateRoot, DomainEvent, Version};

/// One domain event as it is written to a context's outbox table, in the same
/// transaction as the aggregate change that produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    /// Unique per event (UUIDv7), for consumers that deduplicate.
    pub event_id: Uuid,
    /// The aggregate that changed.
    pub aggregate_id: Uuid,
    /// Its version after the change.
    pub aggregate_version: Version,
    /// The event's stable name ([`DomainEvent::event_type`]).
    pub event_type: &'static str,
    /// The event, as JSON.
    pub payload: serde_json::Value,
    /// When the change was made.
    pub occurred_at: OffsetDateTime,
}

impl OutboxMessage {
    /// The messages for the events an aggregate recorded in one change.
    ///
    /// # Errors
    /// Only if an event cannot be serialized to JSON, which a derived
    /// `Serialize` on plain data never does.
    pub fn for_events<A: AggregateRoot>(
        aggregate: &A,
        events: &[A::Event],
        occurred_at: OffsetDateTime,
    ) -> Result<Vec<Self>, serde_json::Error> {
        events
            .iter()
            .map(|event| {
                Ok(Self {
                    event_id: Uuid::now_v7(),
                    aggregate_id: aggregate.id().as_uuid(),
                    aggregate_version: aggregate.version(),
                    event_type: event.event_type(),
                    payload: serde_json::to_value(event)?,
                    occurred_at,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde::Serialize;
    use time::OffsetDateTime;

    use super::*;
    use crate::Id;

    #[derive(Debug, Serialize)]
    struct Renamed {
        name: &'static str,
    }

    impl DomainEvent for Renamed {
        fn event_type(&self) -> &'static str {
            "test.thing.renamed"
        }
    }

    struct Thing(Id<Thing>);

    impl AggregateRoot for Thing {
        type Event = Renamed;
        const KIND: &'static str = "thing";
        fn id(&self) -> Id<Self> {
            self.0
        }
        fn version(&self) -> Version {
            Version::new(4)
        }
    }

    #[test]
    fn one_message_per_event_with_the_aggregate_and_the_time() {
        let thing = Thing(Id::generate());
        let at = OffsetDateTime::UNIX_EPOCH;
        let messages =
            OutboxMessage::for_events(&thing, &[Renamed { name: "a" }, Renamed { name: "b" }], at).unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].aggregate_id, thing.0.as_uuid());
        assert_eq!(messages[0].aggregate_version, Version::new(4));
        assert_eq!(messages[0].event_type, "test.thing.renamed");
        assert_eq!(messages[1].payload, serde_json::json!({"name": "b"}));
        assert_eq!(messages[0].occurred_at, at);
        assert_ne!(messages[0].event_id, messages[1].event_id);
    }
}
