use std::fmt;

use serde::{Deserialize, Serialize};
use strata_kernel::{AggregateRoot, FieldViolation, Id, Version};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::{Reason, ReleaseCause, ReservationId, Sku, StockItemError, StockItemEvent};

/// The id of a [`StockItem`]: a UUIDv5 of its sku, so that every process and
/// deployment derives the same id from the natural key.
pub type StockItemId = Id<StockItem>;

/// The namespace of stock item ids (a fixed random UUID; never change it).
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c1f_0c3e_5b7a_4d2e_9a41_3f0e_8b2d_7c55);

/// The largest quantity anywhere in a stock item: stores keep signed 64-bit
/// integers.
pub const MAX_QUANTITY: u64 = i64::MAX.unsigned_abs();

/// How long a closed reservation is remembered, so that a late retry of a
/// release or a commit is answered as a no-op rather than NOT_FOUND.
const CLOSED_KEPT: Duration = Duration::days(7);

/// How many closed reservations are remembered at most: the item row is
/// rewritten by every command, so its size must not grow with its sales.
pub const MAX_CLOSED_KEPT: usize = 1_000;

/// Where a reservation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Open; expires at its `expires_at` unless confirmed.
    Held,
    /// Open; confirmed, held until committed or released.
    Firm,
    /// Closed by its holder.
    Released,
    /// Closed by its time to live.
    Expired,
    /// Closed: its goods left.
    Committed,
}

impl ReservationStatus {
    /// Whether it still holds stock.
    #[must_use]
    pub const fn is_open(self) -> bool {
        matches!(self, Self::Held | Self::Firm)
    }
}

impl fmt::Display for ReservationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Held => "held",
            Self::Firm => "firm",
            Self::Released => "released",
            Self::Expired => "expired",
            Self::Committed => "committed",
        })
    }
}

/// Stock promised to one caller; an entity of the [`StockItem`] aggregate,
/// reached only through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    id: ReservationId,
    quantity: u64,
    status: ReservationStatus,
    expires_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
    closed_at: Option<OffsetDateTime>,
}

impl Reservation {
    /// Its caller-chosen id.
    #[must_use]
    pub fn id(&self) -> &ReservationId {
        &self.id
    }
    /// How many units it holds.
    #[must_use]
    pub fn quantity(&self) -> u64 {
        self.quantity
    }
    /// Where it is in its life.
    #[must_use]
    pub fn status(&self) -> ReservationStatus {
        self.status
    }
    /// When a held reservation expires.
    #[must_use]
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        self.expires_at
    }
    /// When it was made.
    #[must_use]
    pub fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }
}

/// The inventory's aggregate root: the stock of one sku.
///
/// Invariants, kept by its methods and checked by [`StockItem::restore`]:
/// reserved (the sum of the open reservations) never exceeds on-hand, so
/// available = on-hand − reserved ≥ 0; every quantity is at most
/// [`MAX_QUANTITY`] and no arithmetic overflows; a held reservation has an
/// expiry, other states none; reservation ids are unique; every change
/// increments the version once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockItem {
    id: StockItemId,
    sku: Sku,
    on_hand: u64,
    reservations: Vec<Reservation>,
    version: Version,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl AggregateRoot for StockItem {
    type Event = StockItemEvent;
    const KIND: &'static str = "stock_item";

    fn id(&self) -> StockItemId {
        self.id
    }

    fn version(&self) -> Version {
        self.version
    }
}

impl StockItem {
    /// The id of the item with this sku.
    #[must_use]
    pub fn id_of(sku: &Sku) -> StockItemId {
        Id::from_uuid(Uuid::new_v5(&ID_NAMESPACE, sku.as_str().as_bytes()))
    }

    /// The item created by its first receipt, at version 1.
    ///
    /// # Errors
    /// [`StockItemError::TooMuchStock`] when `quantity` exceeds [`MAX_QUANTITY`].
    pub fn receive_first(
        sku: Sku,
        quantity: u64,
        now: OffsetDateTime,
    ) -> Result<(Self, StockItemEvent), StockItemError> {
        if quantity > MAX_QUANTITY {
            return Err(StockItemError::TooMuchStock {
                sku: sku.as_str().to_owned(),
                max: MAX_QUANTITY,
            });
        }
        let event = StockItemEvent::Received {
            sku: sku.as_str().to_owned(),
            quantity,
            on_hand: quantity,
        };
        let item = Self {
            id: Self::id_of(&sku),
            sku,
            on_hand: quantity,
            reservations: Vec::new(),
            version: Version::INITIAL,
            created_at: now,
            updated_at: now,
        };
        Ok((item, event))
    }

    /// The sweep's command: closes every held reservation whose time to live
    /// has run out at `now`; no events (and no change) when there is none.
    pub fn release_expired(&mut self, now: OffsetDateTime) -> Vec<StockItemEvent> {
        let events = self.expire(now);
        self.changed(events, now)
    }

    /// Closes every held reservation whose time to live has run out at `now`
    /// (its quantity goes back to available), and returns the release events.
    /// Every command calls it first. Does not change the version: the command
    /// that records the events does.
    fn expire(&mut self, now: OffsetDateTime) -> Vec<StockItemEvent> {
        let sku = self.sku.as_str().to_owned();
        self.reservations
            .iter_mut()
            .filter(|r| r.status == ReservationStatus::Held && r.expires_at.is_some_and(|at| at <= now))
            .map(|r| {
                r.status = ReservationStatus::Expired;
                r.expires_at = None;
                r.closed_at = Some(now);
                StockItemEvent::Released {
                    sku: sku.clone(),
                    reservation_id: r.id.as_str().to_owned(),
                    quantity: r.quantity,
                    cause: ReleaseCause::Expired,
                }
            })
            .collect()
    }

    /// Adds received goods. Returns the events (expiries first).
    ///
    /// # Errors
    /// [`StockItemError::TooMuchStock`] when on-hand would exceed [`MAX_QUANTITY`].
    pub fn receive(
        &mut self,
        quantity: u64,
        now: OffsetDateTime,
    ) -> Result<Vec<StockItemEvent>, StockItemError> {
        let mut events = self.expire(now);
        let on_hand = self
            .on_hand
            .checked_add(quantity)
            .filter(|q| *q <= MAX_QUANTITY)
            .ok_or_else(|| self.too_much())?;
        self.on_hand = on_hand;
        events.push(StockItemEvent::Received {
            sku: self.sku.as_str().to_owned(),
            quantity,
            on_hand,
        });
        Ok(self.changed(events, now))
    }

    /// Corrects on-hand by `delta`, never below what is reserved.
    ///
    /// # Errors
    /// [`StockItemError::BelowReserved`] or [`StockItemError::TooMuchStock`].
    pub fn adjust(
        &mut self,
        delta: i64,
        reason: &Reason,
        now: OffsetDateTime,
    ) -> Result<Vec<StockItemEvent>, StockItemError> {
        let mut events = self.expire(now);
        let reserved = self.reserved();
        let target = i128::from(self.on_hand) + i128::from(delta);
        if target < i128::from(reserved) {
            return Err(StockItemError::BelowReserved {
                sku: self.sku.as_str().to_owned(),
                on_hand: self.on_hand,
                reserved,
                delta,
            });
        }
        let on_hand = u64::try_from(target)
            .ok()
            .filter(|q| *q <= MAX_QUANTITY)
            .ok_or_else(|| self.too_much())?;
        self.on_hand = on_hand;
        events.push(StockItemEvent::Adjusted {
            sku: self.sku.as_str().to_owned(),
            delta,
            reason: reason.as_str().to_owned(),
            on_hand,
        });
        Ok(self.changed(events, now))
    }

    /// Holds `quantity` for `id` until `now + time_to_live`. The same id open
    /// with the same quantity is a no-op (no events, unless expiries).
    ///
    /// # Errors
    /// [`StockItemError::InsufficientStock`] (with what is available),
    /// [`StockItemError::ReservationMismatch`] when the id is open with another
    /// quantity, [`StockItemError::ReservationClosed`] when it was closed.
    pub fn reserve(
        &mut self,
        id: ReservationId,
        quantity: u64,
        time_to_live: Duration,
        now: OffsetDateTime,
    ) -> Result<Vec<StockItemEvent>, StockItemError> {
        let mut events = self.expire(now);
        if let Some(existing) = self.reservations.iter().find(|r| r.id == id) {
            if !existing.status.is_open() {
                return Err(self.closed(existing));
            }
            if existing.quantity != quantity {
                return Err(StockItemError::ReservationMismatch {
                    sku: self.sku.as_str().to_owned(),
                    reservation_id: id.as_str().to_owned(),
                    held: existing.quantity,
                    requested: quantity,
                });
            }
            return Ok(self.changed(events, now));
        }
        let available = self.available();
        if quantity > available {
            return Err(StockItemError::InsufficientStock {
                sku: self.sku.as_str().to_owned(),
                requested: quantity,
                available,
            });
        }
        let expires_at = now.checked_add(time_to_live).unwrap_or(now);
        events.push(StockItemEvent::Reserved {
            sku: self.sku.as_str().to_owned(),
            reservation_id: id.as_str().to_owned(),
            quantity,
            expires_at,
        });
        self.reservations.push(Reservation {
            id,
            quantity,
            status: ReservationStatus::Held,
            expires_at: Some(expires_at),
            created_at: now,
            closed_at: None,
        });
        Ok(self.changed(events, now))
    }

    /// Makes a held reservation firm; a firm one is left as it is.
    ///
    /// # Errors
    /// [`StockItemError::UnknownReservation`], or
    /// [`StockItemError::ReservationClosed`] (an expired one included).
    pub fn confirm(
        &mut self,
        id: &ReservationId,
        now: OffsetDateTime,
    ) -> Result<Vec<StockItemEvent>, StockItemError> {
        let mut events = self.expire(now);
        let sku = self.sku.as_str().to_owned();
        let at = self.find(id)?;
        let reservation = &self.reservations[at];
        match reservation.status {
            ReservationStatus::Firm => {}
            ReservationStatus::Held => {
                let reservation = &mut self.reservations[at];
                reservation.status = ReservationStatus::Firm;
                reservation.expires_at = None;
                events.push(StockItemEvent::Confirmed {
                    sku,
                    reservation_id: id.as_str().to_owned(),
                });
            }
            _ => return Err(self.closed(reservation)),
        }
        Ok(self.changed(events, now))
    }

    /// Gives an open reservation's quantity back; a released or expired one is
    /// left as it is.
    ///
    /// # Errors
    /// [`StockItemError::UnknownReservation`], or
    /// [`StockItemError::ReservationClosed`] when it was committed.
    pub fn release(
        &mut self,
        id: &ReservationId,
        now: OffsetDateTime,
    ) -> Result<Vec<StockItemEvent>, StockItemError> {
        let mut events = self.expire(now);
        let sku = self.sku.as_str().to_owned();
        let at = self.find(id)?;
        let reservation = &self.reservations[at];
        match reservation.status {
            ReservationStatus::Released | ReservationStatus::Expired => {}
            ReservationStatus::Committed => return Err(self.closed(reservation)),
            ReservationStatus::Held | ReservationStatus::Firm => {
                let reservation = &mut self.reservations[at];
                reservation.status = ReservationStatus::Released;
                reservation.expires_at = None;
                reservation.closed_at = Some(now);
                events.push(StockItemEvent::Released {
                    sku,
                    reservation_id: id.as_str().to_owned(),
                    quantity: reservation.quantity,
                    cause: ReleaseCause::Released,
                });
            }
        }
        Ok(self.changed(events, now))
    }

    /// The goods of an open reservation leave: on-hand and reserved both fall
    /// by its quantity. A committed one is left as it is.
    ///
    /// # Errors
    /// [`StockItemError::UnknownReservation`], or
    /// [`StockItemError::ReservationClosed`] when it was released or expired.
    pub fn commit(
        &mut self,
        id: &ReservationId,
        now: OffsetDateTime,
    ) -> Result<Vec<StockItemEvent>, StockItemError> {
        let mut events = self.expire(now);
        let sku = self.sku.as_str().to_owned();
        let at = self.find(id)?;
        let reservation = &self.reservations[at];
        match reservation.status {
            ReservationStatus::Committed => {}
            ReservationStatus::Released | ReservationStatus::Expired => return Err(self.closed(reservation)),
            ReservationStatus::Held | ReservationStatus::Firm => {
                let quantity = reservation.quantity;
                // reserved ≤ on_hand and this quantity is part of reserved.
                let on_hand = self
                    .on_hand
                    .checked_sub(quantity)
                    .ok_or_else(|| self.too_much())?;
                let reservation = &mut self.reservations[at];
                reservation.status = ReservationStatus::Committed;
                reservation.expires_at = None;
                reservation.closed_at = Some(now);
                self.on_hand = on_hand;
                events.push(StockItemEvent::Committed {
                    sku,
                    reservation_id: id.as_str().to_owned(),
                    quantity,
                    on_hand,
                });
            }
        }
        Ok(self.changed(events, now))
    }

    fn find(&self, id: &ReservationId) -> Result<usize, StockItemError> {
        self.reservations
            .iter()
            .position(|r| &r.id == id)
            .ok_or_else(|| StockItemError::UnknownReservation {
                sku: self.sku.as_str().to_owned(),
                reservation_id: id.as_str().to_owned(),
            })
    }

    fn closed(&self, reservation: &Reservation) -> StockItemError {
        StockItemError::ReservationClosed {
            sku: self.sku.as_str().to_owned(),
            reservation_id: reservation.id.as_str().to_owned(),
            status: reservation.status,
        }
    }

    fn too_much(&self) -> StockItemError {
        StockItemError::TooMuchStock {
            sku: self.sku.as_str().to_owned(),
            max: MAX_QUANTITY,
        }
    }

    /// A command's end: with events, one new version, and closed reservations
    /// past their memory forgotten; without, nothing changed at all.
    fn changed(&mut self, events: Vec<StockItemEvent>, now: OffsetDateTime) -> Vec<StockItemEvent> {
        if !events.is_empty() {
            self.version = self.version.next();
            self.updated_at = now;
            self.reservations
                .retain(|r| r.closed_at.is_none_or(|closed| closed + CLOSED_KEPT > now));
            // Reservations are kept in the order they were made: the oldest
            // closed ones are forgotten first.
            let closed = self.reservations.iter().filter(|r| !r.status.is_open()).count();
            let mut excess = closed.saturating_sub(MAX_CLOSED_KEPT);
            self.reservations.retain(|r| {
                let forget = excess > 0 && !r.status.is_open();
                if forget {
                    excess -= 1;
                }
                !forget
            });
        }
        events
    }

    /// The sku.
    #[must_use]
    pub fn sku(&self) -> &Sku {
        &self.sku
    }

    /// Physically held.
    #[must_use]
    pub fn on_hand(&self) -> u64 {
        self.on_hand
    }

    /// Promised to open reservations (never more than on-hand).
    #[must_use]
    pub fn reserved(&self) -> u64 {
        self.open_reservations()
            .map(Reservation::quantity)
            .fold(0, u64::saturating_add)
    }

    /// What can still be reserved: on-hand − reserved.
    #[must_use]
    pub fn available(&self) -> u64 {
        self.on_hand.saturating_sub(self.reserved())
    }

    /// The open (held or firm) reservations, oldest first.
    pub fn open_reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.reservations.iter().filter(|r| r.status.is_open())
    }

    /// When the next held reservation expires, if any: what the sweep's index
    /// is kept on.
    #[must_use]
    pub fn next_expiry(&self) -> Option<OffsetDateTime> {
        self.open_reservations().filter_map(|r| r.expires_at).min()
    }

    /// The item as it stands at `now`: expired reservations shown released,
    /// for reads (the sweep, or the next command, records their events).
    #[must_use]
    pub fn as_of(mut self, now: OffsetDateTime) -> Self {
        self.expire(now);
        self
    }

    /// When it was created.
    #[must_use]
    pub fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }

    /// When it last changed.
    #[must_use]
    pub fn updated_at(&self) -> OffsetDateTime {
        self.updated_at
    }

    /// The plain-data form stores keep.
    #[must_use]
    pub fn snapshot(&self) -> StockItemSnapshot {
        StockItemSnapshot {
            id: self.id.as_uuid(),
            sku: self.sku.as_str().to_owned(),
            on_hand: self.on_hand,
            reservations: self
                .reservations
                .iter()
                .map(|r| ReservationSnapshot {
                    id: r.id.as_str().to_owned(),
                    quantity: r.quantity,
                    status: r.status,
                    expires_at: r.expires_at,
                    created_at: r.created_at,
                    closed_at: r.closed_at,
                })
                .collect(),
            version: self.version.get(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// Rebuilds an item from what a store kept, checking the aggregate's
    /// invariants (not today's input rules): quantities in range, reserved ≤
    /// on-hand, unique reservation ids, an expiry exactly on held reservations,
    /// a version of at least 1, the id derived from the sku.
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn restore(snapshot: StockItemSnapshot) -> Result<Self, FieldViolation> {
        if snapshot.version < 1 {
            return Err(FieldViolation::new("version", "is below 1"));
        }
        if snapshot.on_hand > MAX_QUANTITY {
            return Err(FieldViolation::new("on_hand", "is out of range"));
        }
        let sku = Sku::from_stored(snapshot.sku)?;
        let id = Self::id_of(&sku);
        if id.as_uuid() != snapshot.id {
            return Err(FieldViolation::new("id", "is not the id of its sku"));
        }
        let mut reservations: Vec<Reservation> = Vec::with_capacity(snapshot.reservations.len());
        let mut reserved: u64 = 0;
        for r in snapshot.reservations {
            let id = ReservationId::from_stored(r.id)?;
            if reservations.iter().any(|seen| seen.id == id) {
                return Err(FieldViolation::new("reservations", "repeat an id"));
            }
            if (r.status == ReservationStatus::Held) != r.expires_at.is_some() || r.quantity == 0 {
                return Err(FieldViolation::new(
                    "reservations",
                    "hold a malformed reservation",
                ));
            }
            if r.status.is_open() {
                reserved = reserved
                    .checked_add(r.quantity)
                    .ok_or_else(|| FieldViolation::new("reservations", "overflow"))?;
            }
            reservations.push(Reservation {
                id,
                quantity: r.quantity,
                status: r.status,
                expires_at: r.expires_at,
                created_at: r.created_at,
                closed_at: r.closed_at,
            });
        }
        if reserved > snapshot.on_hand {
            return Err(FieldViolation::new("reserved", "exceeds on_hand"));
        }
        Ok(Self {
            id,
            sku,
            on_hand: snapshot.on_hand,
            reservations,
            version: Version::new(snapshot.version),
            created_at: snapshot.created_at,
            updated_at: snapshot.updated_at,
        })
    }
}

/// A stock item as plain data: what stores write (the reservations as one
/// JSON column) and what idempotency records keep. Only
/// [`StockItem::restore`] turns it back into an aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct StockItemSnapshot {
    pub id: Uuid,
    pub sku: String,
    pub on_hand: u64,
    pub reservations: Vec<ReservationSnapshot>,
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A reservation as plain data, inside a [`StockItemSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct ReservationSnapshot {
    pub id: String,
    pub quantity: u64,
    pub status: ReservationStatus,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub closed_at: Option<OffsetDateTime>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(minutes: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::minutes(minutes)
    }

    fn item(on_hand: u64) -> StockItem {
        StockItem::receive_first(Sku::parse("MUG").unwrap(), on_hand, at(0))
            .unwrap()
            .0
    }

    fn rid(id: &str) -> ReservationId {
        ReservationId::parse(id).unwrap()
    }

    #[test]
    fn ids_derive_from_the_sku() {
        let mug = Sku::parse("MUG").unwrap();
        assert_eq!(StockItem::id_of(&mug), StockItem::id_of(&mug));
        assert_ne!(
            StockItem::id_of(&mug),
            StockItem::id_of(&Sku::parse("CUP").unwrap())
        );
        assert_eq!(StockItem::id_of(&mug).as_uuid().get_version_num(), 5);
    }

    #[test]
    fn reservations_never_exceed_on_hand() {
        let mut item = item(3);
        item.reserve(rid("a"), 2, Duration::minutes(5), at(1)).unwrap();
        let refused = item
            .reserve(rid("b"), 2, Duration::minutes(5), at(1))
            .unwrap_err();
        assert!(matches!(
            refused,
            StockItemError::InsufficientStock {
                available: 1,
                requested: 2,
                ..
            }
        ));
        assert!(matches!(
            item.adjust(-2, &Reason::parse("count").unwrap(), at(1))
                .unwrap_err(),
            StockItemError::BelowReserved { reserved: 2, .. }
        ));
        item.adjust(-1, &Reason::parse("count").unwrap(), at(1)).unwrap();
        assert_eq!((item.on_hand(), item.reserved(), item.available()), (2, 2, 0));
        item.commit(&rid("a"), at(2)).unwrap();
        assert_eq!((item.on_hand(), item.reserved(), item.available()), (0, 0, 0));
    }

    #[test]
    fn no_client_value_overflows() {
        let mut item = item(MAX_QUANTITY);
        assert!(matches!(
            item.receive(1, at(1)),
            Err(StockItemError::TooMuchStock { .. })
        ));
        assert!(matches!(
            item.adjust(i64::MAX, &Reason::parse("x").unwrap(), at(1)),
            Err(StockItemError::TooMuchStock { .. })
        ));
        assert!(matches!(
            item.adjust(i64::MIN, &Reason::parse("x").unwrap(), at(1)),
            Err(StockItemError::BelowReserved { .. })
        ));
        assert!(
            item.adjust(-i64::MAX, &Reason::parse("x").unwrap(), at(1))
                .is_ok()
        );
        assert_eq!(item.on_hand(), 0);
        assert!(item.reserve(rid("a"), u64::MAX, Duration::MAX, at(1)).is_err());
        assert!(StockItem::receive_first(Sku::parse("X").unwrap(), u64::MAX, at(0)).is_err());
    }

    #[test]
    fn reservation_commands_are_idempotent_by_reservation_id() {
        let mut item = item(5);
        assert_eq!(
            item.reserve(rid("a"), 2, Duration::minutes(5), at(1))
                .unwrap()
                .len(),
            1
        );
        assert!(
            item.reserve(rid("a"), 2, Duration::minutes(9), at(2))
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            item.reserve(rid("a"), 3, Duration::minutes(5), at(2)),
            Err(StockItemError::ReservationMismatch { held: 2, .. })
        ));
        assert_eq!(item.confirm(&rid("a"), at(3)).unwrap().len(), 1);
        assert!(item.confirm(&rid("a"), at(3)).unwrap().is_empty());
        assert_eq!(item.release(&rid("a"), at(4)).unwrap().len(), 1);
        assert!(item.release(&rid("a"), at(4)).unwrap().is_empty());
        assert!(matches!(
            item.commit(&rid("a"), at(5)),
            Err(StockItemError::ReservationClosed {
                status: ReservationStatus::Released,
                ..
            })
        ));
        assert!(matches!(
            item.reserve(rid("a"), 2, Duration::minutes(5), at(5)),
            Err(StockItemError::ReservationClosed { .. })
        ));
        item.reserve(rid("b"), 1, Duration::minutes(5), at(5)).unwrap();
        assert_eq!(item.commit(&rid("b"), at(6)).unwrap().len(), 1);
        assert!(item.commit(&rid("b"), at(6)).unwrap().is_empty());
        assert_eq!(item.on_hand(), 4);
    }

    #[test]
    fn held_reservations_expire_and_firm_ones_do_not() {
        let mut item = item(5);
        item.reserve(rid("held"), 2, Duration::minutes(10), at(0))
            .unwrap();
        item.reserve(rid("firm"), 1, Duration::minutes(10), at(0))
            .unwrap();
        item.confirm(&rid("firm"), at(1)).unwrap();
        assert_eq!(item.next_expiry(), Some(at(10)));
        assert!(item.release_expired(at(9)).is_empty());
        assert_eq!(
            item.version(),
            Version::new(4),
            "nothing expired, nothing changed"
        );
        let events = item.release_expired(at(10));
        assert_eq!(item.version(), Version::new(5));
        assert_eq!(events.len(), 1);
        assert!(matches!(
            &events[0],
            StockItemEvent::Released {
                cause: ReleaseCause::Expired,
                quantity: 2,
                ..
            }
        ));
        assert_eq!(
            (item.reserved(), item.available(), item.next_expiry()),
            (1, 4, None)
        );
        assert!(matches!(
            item.commit(&rid("held"), at(11)),
            Err(StockItemError::ReservationClosed {
                status: ReservationStatus::Expired,
                ..
            })
        ));
    }

    #[test]
    fn closed_reservations_are_forgotten_after_a_while_or_beyond_a_count() {
        let mut item = item(2_000);
        item.reserve(rid("old"), 1, Duration::minutes(5), at(0)).unwrap();
        item.release(&rid("old"), at(1)).unwrap();
        assert!(item.release(&rid("old"), at(2)).unwrap().is_empty(), "remembered");
        item.receive(1, at(1 + 7 * 24 * 60)).unwrap();
        assert!(matches!(
            item.release(&rid("old"), at(1 + 7 * 24 * 60)),
            Err(StockItemError::UnknownReservation { .. })
        ));
        for n in 0..=MAX_CLOSED_KEPT {
            let id = rid(&format!("r{n}"));
            item.reserve(id.clone(), 1, Duration::minutes(5), at(20_000))
                .unwrap();
            item.commit(&id, at(20_000)).unwrap();
        }
        assert_eq!(item.snapshot().reservations.len(), MAX_CLOSED_KEPT);
        assert!(
            item.commit(&rid("r0"), at(20_000)).is_err(),
            "the oldest is forgotten"
        );
        assert!(item.commit(&rid("r1"), at(20_000)).unwrap().is_empty());
    }

    #[test]
    fn restore_checks_invariants() {
        let mut item = item(5);
        item.reserve(rid("a"), 2, Duration::minutes(10), at(0)).unwrap();
        assert_eq!(StockItem::restore(item.snapshot()).unwrap(), item);
        let mut broken = item.snapshot();
        broken.on_hand = 1;
        assert_eq!(StockItem::restore(broken).unwrap_err().field(), "reserved");
        let mut broken = item.snapshot();
        broken.sku = "OTHER".into();
        assert_eq!(StockItem::restore(broken).unwrap_err().field(), "id");
    }

    #[test]
    fn restore_takes_on_hand_up_to_the_limit_and_refuses_malformed_reservations() {
        let mut item = item(5);
        item.reserve(rid("a"), 2, Duration::minutes(10), at(0)).unwrap();
        // A held reservation keeps its expiry, through a restore too.
        let restored = StockItem::restore(item.snapshot()).unwrap();
        let held: Vec<_> = restored
            .open_reservations()
            .map(Reservation::expires_at)
            .collect();
        assert_eq!(held, [Some(at(10))]);

        let mut limit = item.snapshot();
        limit.on_hand = MAX_QUANTITY;
        assert!(StockItem::restore(limit).is_ok(), "the limit itself is in range");
        let mut beyond = item.snapshot();
        beyond.on_hand = MAX_QUANTITY + 1;
        assert_eq!(StockItem::restore(beyond).unwrap_err().field(), "on_hand");

        let mut no_expiry = item.snapshot();
        no_expiry.reservations[0].expires_at = None;
        assert_eq!(
            StockItem::restore(no_expiry).unwrap_err().field(),
            "reservations",
            "held without expiry"
        );
        let mut empty = item.snapshot();
        empty.reservations[0].quantity = 0;
        assert_eq!(
            StockItem::restore(empty).unwrap_err().field(),
            "reservations",
            "a quantity of 0"
        );
    }
}
