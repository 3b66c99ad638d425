use std::fmt;

use serde::{Deserialize, Serialize};
use strata_kernel::{AggregateRoot, FieldViolation, Id, Version};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::{BuyerId, CancelReason, LineSnapshot, Money, OrderError, OrderEvent, OrderLine, OrderLines};

/// The id of an [`Order`].
pub type OrderId = Id<Order>;

/// Where an order is in its life: pending → confirmed → shipped; pending or
/// confirmed → cancelled. Shipped and cancelled are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Placed, waiting for confirmation until its deadline.
    Pending,
    /// Confirmed; waiting to ship.
    Confirmed,
    /// Shipped, for good.
    Shipped,
    /// Cancelled (on request, or expired unconfirmed), for good.
    Cancelled,
}

impl OrderStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [Self; 4] = [Self::Pending, Self::Confirmed, Self::Shipped, Self::Cancelled];

    /// The stored name: `pending`, `confirmed`, `shipped` or `cancelled`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Shipped => "shipped",
            Self::Cancelled => "cancelled",
        }
    }

    /// Reads a stored name back.
    #[must_use]
    pub fn from_stored(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a cancelled order was cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancellation {
    /// Someone asked, with this reason.
    Requested(CancelReason),
    /// It was not confirmed by its deadline.
    Expired,
}

impl Cancellation {
    /// The reason as clients see it: the one given, or `expired`.
    #[must_use]
    pub fn reason(&self) -> &str {
        match self {
            Self::Requested(reason) => reason.as_str(),
            Self::Expired => Order::EXPIRED_REASON,
        }
    }
}

/// A command on an existing order, as the service runs it (see
/// [`Order::handle`] and [`Order::answer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCommand {
    /// Confirm a pending order.
    Confirm,
    /// Cancel a pending or confirmed order.
    Cancel(CancelReason),
    /// Ship a confirmed order.
    Ship,
}

/// The ordering context's aggregate root: an order and its lines, one
/// consistency boundary.
///
/// Invariants, kept by its methods: the lines never change after the order is
/// placed and their totals always match them; the status only moves pending →
/// confirmed → shipped or pending/confirmed → cancelled; a cancelled order has
/// a cancellation and no other has; a pending order is no longer pending once
/// it is touched at or after its deadline; every change increments the version.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    id: OrderId,
    buyer: BuyerId,
    lines: OrderLines,
    status: OrderStatus,
    cancellation: Option<Cancellation>,
    version: Version,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    expires_at: OffsetDateTime,
}

impl AggregateRoot for Order {
    type Event = OrderEvent;
    const KIND: &'static str = "order";

    fn id(&self) -> OrderId {
        self.id
    }

    fn version(&self) -> Version {
        self.version
    }
}

impl Order {
    /// The cancel reason of an order that expired unconfirmed.
    pub const EXPIRED_REASON: &'static str = "expired";

    /// A new pending order at version 1, due to expire `pending_ttl` after
    /// `now` unless confirmed, and the event that records it.
    #[must_use]
    pub fn place(
        id: OrderId,
        buyer: BuyerId,
        lines: OrderLines,
        pending_ttl: Duration,
        now: OffsetDateTime,
    ) -> (Self, OrderEvent) {
        let expires_at = now.saturating_add(pending_ttl);
        let total = lines.total();
        let event = OrderEvent::Placed {
            buyer_id: buyer.as_uuid(),
            lines: lines.snapshot(),
            total_minor: total.amount_minor(),
            currency: total.currency().to_string(),
            expires_at,
        };
        let order = Self {
            id,
            buyer,
            lines,
            status: OrderStatus::Pending,
            cancellation: None,
            version: Version::INITIAL,
            created_at: now,
            updated_at: now,
            expires_at,
        };
        (order, event)
    }

    /// Whether the order is pending and past its deadline at `now`: the next
    /// write on it must be its expiry.
    #[must_use]
    pub fn is_due(&self, now: OffsetDateTime) -> bool {
        self.status == OrderStatus::Pending && now >= self.expires_at
    }

    /// Runs `command` at `now`. An order past its deadline expires instead,
    /// lazily: the expiry is the one change this command writes, and
    /// [`Order::answer`] then refuses the command.
    ///
    /// # Errors
    /// The command's refusal (nothing changes).
    pub fn handle(
        &mut self,
        command: &OrderCommand,
        now: OffsetDateTime,
    ) -> Result<Vec<OrderEvent>, OrderError> {
        if self.is_due(now) {
            return self.expire(now).map(|event| vec![event]);
        }
        let event = match command {
            OrderCommand::Confirm => self.confirm(now),
            OrderCommand::Cancel(reason) => self.cancel(reason.clone(), now),
            OrderCommand::Ship => self.ship(now),
        }?;
        Ok(vec![event])
    }

    /// What a client is answered once [`Order::handle`] has been written (or
    /// replayed): the order, unless the write was its expiry, which no command
    /// asks for. A command that succeeded never leaves the order expired, so an
    /// expired result means this command's write was the expiry — also when it
    /// is replayed from the idempotency record, which answers the same.
    ///
    /// # Errors
    /// [`OrderError::Expired`].
    pub fn answer(self) -> Result<Self, OrderError> {
        if self.cancellation == Some(Cancellation::Expired) {
            return Err(OrderError::Expired {
                id: self.id,
                deadline: self.expires_at,
            });
        }
        Ok(self)
    }

    /// Cancels a pending order past its deadline, with the reason `expired`.
    ///
    /// # Errors
    /// [`OrderError::NotPending`] unless pending, [`OrderError::NotDue`] before
    /// the deadline.
    pub fn expire(&mut self, now: OffsetDateTime) -> Result<OrderEvent, OrderError> {
        self.ensure_pending()?;
        if now < self.expires_at {
            return Err(OrderError::NotDue {
                id: self.id,
                deadline: self.expires_at,
            });
        }
        self.status = OrderStatus::Cancelled;
        self.cancellation = Some(Cancellation::Expired);
        Ok(self.changed(
            OrderEvent::Cancelled {
                reason: Self::EXPIRED_REASON.to_owned(),
                expired: true,
            },
            now,
        ))
    }

    fn confirm(&mut self, now: OffsetDateTime) -> Result<OrderEvent, OrderError> {
        self.ensure_pending()?;
        self.status = OrderStatus::Confirmed;
        Ok(self.changed(OrderEvent::Confirmed, now))
    }

    fn cancel(&mut self, reason: CancelReason, now: OffsetDateTime) -> Result<OrderEvent, OrderError> {
        match self.status {
            OrderStatus::Pending | OrderStatus::Confirmed => {}
            OrderStatus::Cancelled => return Err(OrderError::AlreadyCancelled(self.id)),
            OrderStatus::Shipped => return Err(OrderError::Shipped(self.id)),
        }
        let event = OrderEvent::Cancelled {
            reason: reason.as_str().to_owned(),
            expired: false,
        };
        self.status = OrderStatus::Cancelled;
        self.cancellation = Some(Cancellation::Requested(reason));
        Ok(self.changed(event, now))
    }

    fn ship(&mut self, now: OffsetDateTime) -> Result<OrderEvent, OrderError> {
        if self.status != OrderStatus::Confirmed {
            return Err(OrderError::NotConfirmed {
                id: self.id,
                status: self.status,
            });
        }
        self.status = OrderStatus::Shipped;
        Ok(self.changed(OrderEvent::Shipped, now))
    }

    fn ensure_pending(&self) -> Result<(), OrderError> {
        if self.status != OrderStatus::Pending {
            return Err(OrderError::NotPending {
                id: self.id,
                status: self.status,
            });
        }
        Ok(())
    }

    fn changed(&mut self, event: OrderEvent, now: OffsetDateTime) -> OrderEvent {
        self.version = self.version.next();
        self.updated_at = now;
        event
    }

    /// The buyer.
    #[must_use]
    pub fn buyer(&self) -> BuyerId {
        self.buyer
    }

    /// The lines, in the order they were given.
    #[must_use]
    pub fn lines(&self) -> &[OrderLine] {
        self.lines.lines()
    }

    /// The sum of the line totals.
    #[must_use]
    pub fn total(&self) -> Money {
        self.lines.total()
    }

    /// The life-cycle status.
    #[must_use]
    pub fn status(&self) -> OrderStatus {
        self.status
    }

    /// Why it was cancelled; `None` unless cancelled.
    #[must_use]
    pub fn cancellation(&self) -> Option<&Cancellation> {
        self.cancellation.as_ref()
    }

    /// When it was placed.
    #[must_use]
    pub fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }

    /// When it last changed.
    #[must_use]
    pub fn updated_at(&self) -> OffsetDateTime {
        self.updated_at
    }

    /// When it expires if still pending.
    #[must_use]
    pub fn expires_at(&self) -> OffsetDateTime {
        self.expires_at
    }

    /// The plain-data form stores keep.
    #[must_use]
    pub fn snapshot(&self) -> OrderSnapshot {
        let total = self.lines.total();
        OrderSnapshot {
            id: self.id.as_uuid(),
            buyer_id: self.buyer.as_uuid(),
            lines: self.lines.snapshot(),
            total_minor: total.amount_minor(),
            currency: total.currency().to_string(),
            status: self.status,
            cancel_reason: match &self.cancellation {
                Some(Cancellation::Requested(reason)) => Some(reason.as_str().to_owned()),
                _ => None,
            },
            expired: self.cancellation == Some(Cancellation::Expired),
            version: self.version.get(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            expires_at: self.expires_at,
        }
    }

    /// Rebuilds an order from what a store kept, checking the aggregate's
    /// invariants (lines and totals that match, a cancellation exactly when
    /// cancelled, a version of at least 1) — not today's input rules, so that
    /// a rule that tightens later (fewer lines allowed, a shorter reason) never
    /// makes a stored order, or the replay of an old command, unreadable.
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn restore(snapshot: OrderSnapshot) -> Result<Self, FieldViolation> {
        let total = Money::parse(&snapshot.currency, snapshot.total_minor)
            .map_err(|mut violations| violations.remove(0).nested_in("total"))?;
        let lines = OrderLines::restore(snapshot.lines, total)?;
        if snapshot.version < 1 {
            return Err(FieldViolation::new("version", "is below 1"));
        }
        let cancellation = match (snapshot.status, snapshot.cancel_reason, snapshot.expired) {
            (OrderStatus::Cancelled, None, true) => Some(Cancellation::Expired),
            (OrderStatus::Cancelled, Some(reason), false) => {
                Some(Cancellation::Requested(CancelReason::from_stored(reason)?))
            }
            (OrderStatus::Cancelled, _, _) => {
                return Err(FieldViolation::new(
                    "cancel_reason",
                    "a cancelled order has either a reason or expired",
                ));
            }
            (_, None, false) => None,
            (_, _, _) => {
                return Err(FieldViolation::new(
                    "cancel_reason",
                    "is set on an order not cancelled",
                ));
            }
        };
        Ok(Self {
            id: OrderId::from_uuid(snapshot.id),
            buyer: BuyerId::from_uuid(snapshot.buyer_id),
            lines,
            status: snapshot.status,
            cancellation,
            version: Version::new(snapshot.version),
            created_at: snapshot.created_at,
            updated_at: snapshot.updated_at,
            expires_at: snapshot.expires_at,
        })
    }
}

/// An order as plain data: what stores write and read, and what the
/// idempotency record keeps as the result of a command. Only
/// [`Order::restore`] turns it back into an aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct OrderSnapshot {
    pub id: Uuid,
    pub buyer_id: Uuid,
    pub lines: Vec<LineSnapshot>,
    pub total_minor: i64,
    pub currency: String,
    pub status: OrderStatus,
    /// The reason of a cancellation someone asked for.
    #[serde(default)]
    pub cancel_reason: Option<String>,
    /// Set when the order expired unconfirmed.
    #[serde(default)]
    pub expired: bool,
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::domain::{LineSku, NewLine, ProductRef, Quantity};

    const TTL: Duration = Duration::minutes(15);

    fn start() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH
    }

    fn pending() -> Order {
        let lines = OrderLines::new(vec![NewLine {
            product: ProductRef::from_uuid(Uuid::now_v7()),
            sku: LineSku::parse("MUG-1").unwrap(),
            quantity: Quantity::parse(2).unwrap(),
            unit_price: Money::parse("EUR", 1290).unwrap(),
        }])
        .unwrap();
        Order::place(
            OrderId::generate(),
            BuyerId::from_uuid(Uuid::now_v7()),
            lines,
            TTL,
            start(),
        )
        .0
    }

    fn reason() -> CancelReason {
        CancelReason::parse("changed my mind").unwrap()
    }

    fn soon() -> OffsetDateTime {
        start() + Duration::minutes(1)
    }

    #[test]
    fn the_life_cycle_moves_forward_only() {
        let mut order = pending();
        assert_eq!(
            (order.status(), order.version()),
            (OrderStatus::Pending, Version::INITIAL)
        );
        assert_eq!(order.expires_at(), start() + TTL);
        assert_eq!(
            order.handle(&OrderCommand::Confirm, soon()).unwrap(),
            [OrderEvent::Confirmed]
        );
        assert_eq!(
            (order.status(), order.version()),
            (OrderStatus::Confirmed, Version::new(2))
        );
        assert_eq!(
            order.handle(&OrderCommand::Ship, soon()).unwrap(),
            [OrderEvent::Shipped]
        );
        assert_eq!(order.status(), OrderStatus::Shipped);
    }

    #[test]
    fn illegal_transitions_are_refused_and_change_nothing() {
        let mut order = pending();
        assert!(matches!(
            order.handle(&OrderCommand::Ship, soon()),
            Err(OrderError::NotConfirmed {
                status: OrderStatus::Pending,
                ..
            })
        ));
        order.handle(&OrderCommand::Cancel(reason()), soon()).unwrap();
        let cancelled = order.clone();
        assert!(matches!(
            order.handle(&OrderCommand::Confirm, soon()),
            Err(OrderError::NotPending {
                status: OrderStatus::Cancelled,
                ..
            })
        ));
        assert!(matches!(
            order.handle(&OrderCommand::Cancel(reason()), soon()),
            Err(OrderError::AlreadyCancelled(_))
        ));
        assert!(matches!(
            order.handle(&OrderCommand::Ship, soon()),
            Err(OrderError::NotConfirmed { .. })
        ));
        assert_eq!(order, cancelled);

        let mut shipped = pending();
        shipped.handle(&OrderCommand::Confirm, soon()).unwrap();
        shipped.handle(&OrderCommand::Ship, soon()).unwrap();
        assert!(matches!(
            shipped.handle(&OrderCommand::Cancel(reason()), soon()),
            Err(OrderError::Shipped(_))
        ));
        assert!(matches!(
            shipped.handle(&OrderCommand::Confirm, soon()),
            Err(OrderError::NotPending { .. })
        ));
    }

    #[test]
    fn a_confirmed_order_can_be_cancelled_with_its_reason() {
        let mut order = pending();
        order.handle(&OrderCommand::Confirm, soon()).unwrap();
        let events = order.handle(&OrderCommand::Cancel(reason()), soon()).unwrap();
        assert_eq!(
            events,
            [OrderEvent::Cancelled {
                reason: "changed my mind".into(),
                expired: false
            }]
        );
        assert_eq!(
            order.cancellation().map(Cancellation::reason),
            Some("changed my mind")
        );
        assert!(order.answer().is_ok());
    }

    #[test]
    fn a_command_past_the_deadline_writes_the_expiry_and_is_refused() {
        for command in [
            OrderCommand::Confirm,
            OrderCommand::Cancel(reason()),
            OrderCommand::Ship,
        ] {
            let mut order = pending();
            let events = order.handle(&command, start() + TTL).unwrap();
            assert_eq!(
                events,
                [OrderEvent::Cancelled {
                    reason: "expired".into(),
                    expired: true
                }],
                "{command:?}"
            );
            assert_eq!(
                (order.status(), order.version()),
                (OrderStatus::Cancelled, Version::new(2))
            );
            assert!(matches!(order.answer(), Err(OrderError::Expired { .. })));
        }
        // Just before the deadline the command runs.
        let mut order = pending();
        order
            .handle(&OrderCommand::Confirm, start() + TTL - Duration::microseconds(1))
            .unwrap();
        assert_eq!(order.status(), OrderStatus::Confirmed);
        assert!(!order.is_due(start() + TTL * 10), "only pending orders fall due");
    }

    #[test]
    fn expiry_needs_a_pending_order_past_its_deadline() {
        let mut order = pending();
        assert!(matches!(order.expire(soon()), Err(OrderError::NotDue { .. })));
        order.expire(start() + TTL).unwrap();
        assert!(matches!(
            order.expire(start() + TTL),
            Err(OrderError::NotPending { .. })
        ));
    }

    #[test]
    fn snapshots_round_trip_and_corruption_is_refused() {
        let mut order = pending();
        let json = serde_json::to_string(&order.snapshot()).unwrap();
        assert_eq!(
            Order::restore(serde_json::from_str(&json).unwrap()).unwrap(),
            order
        );
        order.handle(&OrderCommand::Cancel(reason()), soon()).unwrap();
        assert_eq!(Order::restore(order.snapshot()).unwrap(), order);
        let mut expired = pending();
        expired.expire(start() + TTL).unwrap();
        assert_eq!(Order::restore(expired.snapshot()).unwrap(), expired);

        let mut corrupt = order.snapshot();
        corrupt.cancel_reason = None;
        assert_eq!(Order::restore(corrupt).unwrap_err().field(), "cancel_reason");
        let mut corrupt = pending().snapshot();
        corrupt.total_minor += 1;
        assert_eq!(Order::restore(corrupt).unwrap_err().field(), "total");
        let mut old = order.snapshot();
        old.cancel_reason = Some("r".repeat(900));
        assert!(
            Order::restore(old).is_ok(),
            "a reason longer than today's rule still reads back"
        );
    }
}
