//! Inventory's use cases: each command runs through the kernel's locked
//! command path ([`execute::modify_locked`]) with a method of the `StockItem`
//! aggregate, so that commands on one sku queue on its row and none is lost or
//! refused for contention (two hundred buyers of the last fifty mugs get fifty
//! reservations and a hundred and fifty clear refusals, never ABORTED).
//! Transport-neutral: the gRPC adapter parses requests into these calls.

use std::sync::Arc;

use strata_kernel::{
    AggregateRoot, Clock, CommandMeta, Error, SystemClock,
    execute::{self, Outcome},
};
use time::{Duration, OffsetDateTime};

use crate::domain::{Reason, ReservationId, Sku, StockItem, StockItemError, StockItemEvent};
use crate::repository::{EventStream, StockItemRepository};

/// How many items one pass of the sweep releases at most.
pub const SWEEP_BATCH: u32 = 100;

/// Inventory's use cases over a [`StockItemRepository`].
#[derive(Debug, Clone)]
pub struct Inventory {
    items: Arc<dyn StockItemRepository>,
    clock: Arc<dyn Clock>,
}

/// A command's events as the kernel's outcome: none means nothing changed.
fn outcome(item: StockItem, events: Vec<StockItemEvent>) -> Outcome<StockItem> {
    if events.is_empty() {
        Outcome::Unchanged(item)
    } else {
        Outcome::Changed(item, events)
    }
}

fn existing(item: Option<StockItem>, sku: &Sku) -> Result<StockItem, StockItemError> {
    item.ok_or_else(|| StockItemError::UnknownSku(sku.as_str().to_owned()))
}

impl Inventory {
    /// The use cases over this store, on the system clock.
    #[must_use]
    pub fn new(items: Arc<dyn StockItemRepository>) -> Self {
        Self::with_clock(items, Arc::new(SystemClock))
    }

    /// The use cases over this store and clock.
    #[must_use]
    pub fn with_clock(items: Arc<dyn StockItemRepository>, clock: Arc<dyn Clock>) -> Self {
        Self { items, clock }
    }

    /// The item as it stands now (reservations past their time shown released).
    ///
    /// # Errors
    /// [`Error::NotFound`], or the store's failure.
    pub async fn get(&self, sku: &Sku) -> Result<StockItem, Error> {
        let item = self.items.get(sku).await?.ok_or_else(|| Error::NotFound {
            kind: StockItem::KIND,
            id: sku.as_str().to_owned(),
        })?;
        Ok(item.as_of(self.clock.now()))
    }

    /// The items of these skus that exist, as they stand now, in sku order.
    ///
    /// # Errors
    /// The store's failure.
    pub async fn batch_get(&self, skus: &[Sku]) -> Result<Vec<StockItem>, Error> {
        let now = self.clock.now();
        let items = self.items.batch_get(skus).await?;
        Ok(items.into_iter().map(|item| item.as_of(now)).collect())
    }

    /// Adds received goods; the first receipt of a sku creates its item.
    ///
    /// # Errors
    /// See [`execute::modify_locked`]; FAILED_PRECONDITION `ON_HAND_LIMIT`.
    pub async fn receive(&self, meta: &CommandMeta, sku: &Sku, quantity: u64) -> Result<StockItem, Error> {
        execute::modify_locked(
            &*self.items,
            &*self.clock,
            meta,
            StockItem::id_of(sku),
            |item, now| match item {
                None => StockItem::receive_first(sku.clone(), quantity, now)
                    .map(|(item, event)| Outcome::Changed(item, vec![event])),
                Some(mut item) => item.receive(quantity, now).map(|events| outcome(item, events)),
            },
        )
        .await
    }

    /// Corrects on-hand by `delta`.
    ///
    /// # Errors
    /// See [`execute::modify_locked`]; NOT_FOUND; FAILED_PRECONDITION
    /// `BELOW_RESERVED` or `ON_HAND_LIMIT`.
    pub async fn adjust(
        &self,
        meta: &CommandMeta,
        sku: &Sku,
        delta: i64,
        reason: &Reason,
    ) -> Result<StockItem, Error> {
        self.on_item(meta, sku, |item, now| item.adjust(delta, reason, now))
            .await
    }

    /// Holds `quantity` for `reservation` until `time_to_live` has passed.
    ///
    /// # Errors
    /// See [`execute::modify_locked`]; NOT_FOUND; FAILED_PRECONDITION
    /// `INSUFFICIENT_STOCK` (with `available`), `RESERVATION_MISMATCH`, or the
    /// reservation's closed state.
    pub async fn reserve(
        &self,
        meta: &CommandMeta,
        sku: &Sku,
        reservation: &ReservationId,
        quantity: u64,
        time_to_live: Duration,
    ) -> Result<StockItem, Error> {
        self.on_item(meta, sku, |item, now| {
            item.reserve(reservation.clone(), quantity, time_to_live, now)
        })
        .await
    }

    /// Makes a held reservation firm.
    ///
    /// # Errors
    /// See [`execute::modify_locked`]; NOT_FOUND; FAILED_PRECONDITION when closed.
    pub async fn confirm(
        &self,
        meta: &CommandMeta,
        sku: &Sku,
        reservation: &ReservationId,
    ) -> Result<StockItem, Error> {
        self.on_item(meta, sku, |item, now| item.confirm(reservation, now))
            .await
    }

    /// Releases a reservation.
    ///
    /// # Errors
    /// See [`execute::modify_locked`]; NOT_FOUND; FAILED_PRECONDITION when committed.
    pub async fn release(
        &self,
        meta: &CommandMeta,
        sku: &Sku,
        reservation: &ReservationId,
    ) -> Result<StockItem, Error> {
        self.on_item(meta, sku, |item, now| item.release(reservation, now))
            .await
    }

    /// Commits a reservation: its goods leave.
    ///
    /// # Errors
    /// See [`execute::modify_locked`]; NOT_FOUND; FAILED_PRECONDITION when
    /// released or expired.
    pub async fn commit(
        &self,
        meta: &CommandMeta,
        sku: &Sku,
        reservation: &ReservationId,
    ) -> Result<StockItem, Error> {
        self.on_item(meta, sku, |item, now| item.commit(reservation, now))
            .await
    }

    /// Releases the expired reservations of up to [`SWEEP_BATCH`] items, each
    /// in its own locked command (with its release events); returns how many
    /// items changed. What [`crate::mount`] runs in the background.
    ///
    /// # Errors
    /// The first failure; the items before it are released.
    pub async fn sweep_expired(&self) -> Result<usize, Error> {
        let due = self.items.expiring(self.clock.now(), SWEEP_BATCH).await?;
        let mut changed = 0;
        for sku in due {
            // A request id of its own per pass: the sweep is not retried by a client.
            let meta = CommandMeta::parse(
                "ReleaseExpired",
                &format!("sweep-{}", uuid::Uuid::now_v7()),
                None,
                &sku.as_str(),
            )
            .map_err(Error::InvalidArgument)?;
            let before = self.items.get(&sku).await?.map(|item| item.version());
            let after = self
                .on_item(&meta, &sku, |item, now| Ok(item.release_expired(now)))
                .await?;
            if Some(after.version()) != before {
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// The context's events after `position`; with `follow`, then every event
    /// as it commits.
    ///
    /// # Errors
    /// The store's failure.
    pub async fn events(&self, position: u64, follow: bool) -> Result<EventStream, Error> {
        self.items.events(position, follow).await
    }

    /// A command on an item that must exist.
    async fn on_item(
        &self,
        meta: &CommandMeta,
        sku: &Sku,
        command: impl Fn(&mut StockItem, OffsetDateTime) -> Result<Vec<StockItemEvent>, StockItemError>
        + Send
        + Sync,
    ) -> Result<StockItem, Error> {
        execute::modify_locked(
            &*self.items,
            &*self.clock,
            meta,
            StockItem::id_of(sku),
            |item, now| {
                let mut item = existing(item, sku)?;
                command(&mut item, now).map(|events| outcome(item, events))
            },
        )
        .await
    }
}
