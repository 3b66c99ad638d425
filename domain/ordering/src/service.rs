//! The ordering use cases: each command runs through the kernel's command
//! machinery ([`strata_kernel::execute`]) with a method of the `Order`
//! aggregate; expiry runs the same way, lazily when an order is touched and in
//! the background sweep ([`Ordering::expire_due`]). Transport-neutral: the
//! gRPC adapter parses requests into these calls and maps the results back.

use std::sync::Arc;

use strata_kernel::{AggregateRoot, Clock, CommandMeta, Error, SystemClock, execute};
use time::Duration;

use crate::domain::{BuyerId, CancelReason, Order, OrderCommand, OrderId, OrderLines};
use crate::repository::{EventStream, OrderCursor, OrderQuery, OrderRepository};

/// How many due orders one sweep statement fetches at a time.
const SWEEP_BATCH: u32 = 100;

/// Whether the sweep fetches another batch after one of `fetched` due orders
/// of which `expired` could be expired: only after a full batch that made
/// progress. A short batch was the last; a batch where nothing could be
/// expired would only be fetched again.
fn sweep_again(fetched: usize, expired: usize) -> bool {
    fetched >= SWEEP_BATCH as usize && expired > 0
}

/// The prefix of the request ids the context uses for its own commands;
/// clients may not use it (see [`is_reserved_request_id`]).
pub const RESERVED_REQUEST_ID_PREFIX: &str = "strata.ordering/";

/// Whether a request id is the context's own: a client that took the expiry
/// key of an order for another command would keep the sweep from expiring it.
#[must_use]
pub fn is_reserved_request_id(request_id: &str) -> bool {
    request_id.starts_with(RESERVED_REQUEST_ID_PREFIX)
}

/// The request id under which the context itself expires an order: one per
/// order, so that the sweep and a lazy expiry racing it write it once.
fn expiry_request_id(id: OrderId) -> String {
    format!("{RESERVED_REQUEST_ID_PREFIX}expire/{id}")
}

/// One page of a listing.
#[derive(Debug, Clone)]
pub struct OrderPage {
    /// The orders on this page, newest first.
    pub orders: Vec<Order>,
    /// Where the next page starts, when more may follow.
    pub next_after: Option<OrderCursor>,
}

/// The ordering use cases over an [`OrderRepository`].
#[derive(Debug, Clone)]
pub struct Ordering {
    orders: Arc<dyn OrderRepository>,
    clock: Arc<dyn Clock>,
    pending_ttl: Duration,
}

impl Ordering {
    /// The use cases over this store, on the system clock; a pending order
    /// expires `pending_ttl` after it was placed.
    #[must_use]
    pub fn new(orders: Arc<dyn OrderRepository>, pending_ttl: Duration) -> Self {
        Self::with_clock(orders, Arc::new(SystemClock), pending_ttl)
    }

    /// The use cases over this store and clock.
    #[must_use]
    pub fn with_clock(
        orders: Arc<dyn OrderRepository>,
        clock: Arc<dyn Clock>,
        pending_ttl: Duration,
    ) -> Self {
        Self {
            orders,
            clock,
            pending_ttl,
        }
    }

    /// The order; one past its deadline is expired first (and returned
    /// cancelled), like any other touch.
    ///
    /// # Errors
    /// [`Error::NotFound`], or the store's failure.
    pub async fn get(&self, id: OrderId) -> Result<Order, Error> {
        let order = self.orders.get(id).await?.ok_or_else(|| Error::NotFound {
            kind: Order::KIND,
            id: id.to_string(),
        })?;
        if !order.is_due(self.clock.now()) {
            return Ok(order);
        }
        match self.expire(id).await {
            Ok(expired) => Ok(expired),
            // Someone changed it first (confirmed it, or expired it under
            // another key): what is stored now is the answer.
            Err(Error::FailedPrecondition { .. } | Error::VersionConflict { .. }) => {
                self.orders.get(id).await?.ok_or_else(|| Error::NotFound {
                    kind: Order::KIND,
                    id: id.to_string(),
                })
            }
            Err(error) => Err(error),
        }
    }

    /// Lists orders, newest first; `query.limit` orders at most.
    ///
    /// # Errors
    /// The store's failure.
    pub async fn list(&self, mut query: OrderQuery) -> Result<OrderPage, Error> {
        let limit = query.limit as usize;
        // One more than asked tells whether another page follows.
        query.limit = query.limit.saturating_add(1);
        let mut orders = self.orders.list(&query).await?;
        let next_after = if orders.len() > limit {
            orders.truncate(limit);
            orders.last().map(|order| OrderCursor {
                created_at: order.created_at(),
                id: order.id(),
            })
        } else {
            None
        };
        Ok(OrderPage { orders, next_after })
    }

    /// Places a pending order, under `id` when the caller chose one.
    ///
    /// # Errors
    /// [`Error::RequestIdReused`]; [`Error::AlreadyExists`] when another order
    /// has `id`; or the store's failure.
    pub async fn place(
        &self,
        meta: &CommandMeta,
        id: Option<OrderId>,
        buyer: BuyerId,
        lines: OrderLines,
    ) -> Result<Order, Error> {
        let ttl = self.pending_ttl;
        execute::create(&*self.orders, &*self.clock, meta, |now| {
            let (order, event) = Order::place(id.unwrap_or_else(OrderId::generate), buyer, lines, ttl, now);
            (order, vec![event])
        })
        .await
    }

    /// Confirms a pending order.
    ///
    /// # Errors
    /// See [`Ordering::run`].
    pub async fn confirm(&self, meta: &CommandMeta, id: OrderId) -> Result<Order, Error> {
        self.run(meta, id, OrderCommand::Confirm).await
    }

    /// Cancels a pending or confirmed order.
    ///
    /// # Errors
    /// See [`Ordering::run`].
    pub async fn cancel(
        &self,
        meta: &CommandMeta,
        id: OrderId,
        reason: CancelReason,
    ) -> Result<Order, Error> {
        self.run(meta, id, OrderCommand::Cancel(reason)).await
    }

    /// Marks a confirmed order shipped.
    ///
    /// # Errors
    /// See [`Ordering::run`].
    pub async fn ship(&self, meta: &CommandMeta, id: OrderId) -> Result<Order, Error> {
        self.run(meta, id, OrderCommand::Ship).await
    }

    /// Runs a command on an order. An order past its deadline is expired by
    /// this command's write instead, and the command is refused; a retry of
    /// the command replays that refusal.
    ///
    /// # Errors
    /// [`execute::modify`]'s errors; FAILED_PRECONDITION `ORDER_EXPIRED` when
    /// the write was the expiry.
    pub async fn run(&self, meta: &CommandMeta, id: OrderId, command: OrderCommand) -> Result<Order, Error> {
        let order = execute::modify(&*self.orders, &*self.clock, meta, id, |order, now| {
            order.handle(&command, now)
        })
        .await?;
        Ok(order.answer()?)
    }

    /// Expires one pending order past its deadline, under the context's own
    /// request id for that order.
    ///
    /// # Errors
    /// FAILED_PRECONDITION (`ORDER_NOT_PENDING`, `ORDER_NOT_DUE`) when there is
    /// nothing to expire; [`execute::modify`]'s errors.
    pub async fn expire(&self, id: OrderId) -> Result<Order, Error> {
        let meta = CommandMeta::parse("ExpireOrder", &expiry_request_id(id), None, &id.to_string())
            .map_err(Error::InvalidArgument)?;
        execute::modify(&*self.orders, &*self.clock, &meta, id, |order, now| {
            order.expire(now).map(|event| vec![event])
        })
        .await
    }

    /// The background sweep: expires every pending order past its deadline
    /// (found through the store's index on pending deadlines); returns how many
    /// it expired. An order that changed meanwhile is left as it is now.
    ///
    /// # Errors
    /// The store's failure (the sweep stops there; the next run goes on).
    pub async fn expire_due(&self) -> Result<usize, Error> {
        let mut expired = 0;
        loop {
            let due = self.orders.due(self.clock.now(), SWEEP_BATCH).await?;
            let mut progress = 0;
            for id in &due {
                match self.expire(*id).await {
                    Ok(_) => progress += 1,
                    // Confirmed, cancelled or expired meanwhile: nothing to do.
                    Err(Error::FailedPrecondition { .. } | Error::VersionConflict { .. }) => {}
                    // Its expiry key was taken by another command (only
                    // possible before clients were refused the prefix): the
                    // order still expires when touched; the others go on.
                    Err(Error::RequestIdReused { request_id }) => {
                        tracing::warn!(%id, request_id, "the expiry key of this order is taken; not swept");
                    }
                    Err(error) => return Err(error),
                }
            }
            expired += progress;
            if !sweep_again(due.len(), progress) {
                return Ok(expired);
            }
        }
    }

    /// The context's events after `position`; with `follow`, then every event
    /// as it commits.
    ///
    /// # Errors
    /// The store's failure.
    pub async fn events(&self, position: u64, follow: bool) -> Result<EventStream, Error> {
        self.orders.events(position, follow).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_fetches_again_only_after_a_full_batch_that_made_progress() {
        let full = SWEEP_BATCH as usize;
        assert!(
            sweep_again(full, full),
            "a full batch, all expired: there may be more"
        );
        assert!(
            sweep_again(full, 1),
            "a full batch, some expired: there may be more"
        );
        assert!(
            !sweep_again(full, 0),
            "a full batch where nothing could be expired would come back"
        );
        assert!(!sweep_again(full - 1, full - 1), "a short batch was the last");
        assert!(!sweep_again(0, 0), "nothing due");
    }
}
