//! PostgreSQL connections handed from one statement to the next without
//! sqlx's release ping.
//!
//! sqlx's pool tests every connection that comes back to it: dropping a
//! `PoolConnection` spawns a task that sends `Sync` and waits for
//! `ReadyForQuery` before the connection can be acquired again (sqlx 0.9,
//! `return_to_pool`, unconditional). That is a second round trip, a task and
//! a wake of the backend for every statement. Measured with the bench (one
//! round of 5 s per point, `BENCH_CONTENDERS=pgbench,strata`), before and
//! after this module: gets at concurrency 1 went from 2.8 k to 4.5 k req/s
//! (p50 0.35 to 0.19 ms) and the database's CPU per get from 98 to 36 ms per
//! 1 000 (pgbench's: 40); updates at concurrency 16 from 2.2 k to 3.3 k req/s,
//! the service's CPU per update from 271 to 163 ms per 1 000.
//!
//! So a statement that ran to its end hands its connection to a short list
//! kept here ([`Lease::release`]), and the next statement takes the most
//! recently used one from it. A connection whose statement did *not* end
//! cleanly — an error, or a future dropped mid-statement (a deadline, a
//! cancelled or hedged call) — is dropped into sqlx as before, whose ping
//! flushes what was left half-done (a pending rollback, unread rows) or closes
//! it. sqlx still opens the connections, bounds how many are open and applies
//! its lifetime and idle limits: a connection goes back through sqlx once it
//! has been out of it for [`RECYCLE`], or idle here for [`IDLE`] (looked at
//! whenever a statement takes or keeps one; a store with no traffic at all
//! still runs its idempotency purge at least every 15 minutes).

use std::{
    collections::VecDeque,
    ops::{Deref, DerefMut},
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::{PgConnection, PgPool, Postgres, pool::PoolConnection};
use tokio::sync::Notify;

use crate::{StoreError, error::classify};

/// How long a connection stays out of sqlx's pool before it goes back through
/// it once (ping, lifetime check), to be handed out again.
const RECYCLE: Duration = Duration::from_secs(60);

/// How long a connection may sit unused here before it goes back to sqlx's
/// pool, whose idle limit then applies (so the pool shrinks after a burst).
const IDLE: Duration = Duration::from_secs(10);

/// A context's PostgreSQL connections: sqlx's pool and those kept from it.
///
/// `out` counts the connections taken from sqlx's pool and not given back
/// (lent to a statement or kept here), and the ones being taken. A caller
/// asks sqlx only while `out` is below the pool's size, so it never waits in
/// sqlx's queue for a connection that is kept here (sqlx would not know it is
/// free), and never gives up a connection sqlx is opening for it because a
/// kept one came first (a connection opened and thrown away costs the server
/// a backend process).
#[derive(Debug)]
pub(crate) struct Connections {
    pool: PgPool,
    max: u32,
    out: AtomicU32,
    /// Kept connections, most recently used last.
    kept: Mutex<VecDeque<Kept>>,
    /// Wakes a caller waiting for a connection when one is kept or given back.
    returned: Notify,
}

#[derive(Debug)]
struct Kept {
    connection: PoolConnection<Postgres>,
    /// When it came out of sqlx's pool.
    taken: Instant,
    /// When its last statement ended.
    idle_since: Instant,
}

/// A connection lent to one statement (or one transaction). Dropped, it goes
/// back to sqlx's pool, which flushes or closes it; [`Lease::release`] hands
/// it to the next statement instead.
#[derive(Debug)]
pub(crate) struct Lease<'a> {
    connection: PoolConnection<Postgres>,
    taken: Instant,
    /// Dropped after the connection, so a waiter woken by it finds sqlx's
    /// pool with the connection back.
    out: Out<'a>,
}

/// One of [`Connections::out`]: given back when dropped, unless the
/// connection it stands for was kept.
#[derive(Debug)]
struct Out<'a> {
    home: &'a Connections,
    kept: bool,
}

impl<'a> Out<'a> {
    /// A place already counted in `home.out`.
    fn held(home: &'a Connections) -> Self {
        Self { home, kept: false }
    }
}

impl Drop for Out<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.home.out.fetch_sub(1, Ordering::AcqRel);
            self.home.returned.notify_one();
        }
    }
}

impl Connections {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self {
            max: pool.options().get_max_connections(),
            pool,
            out: AtomicU32::new(0),
            kept: Mutex::new(VecDeque::new()),
            returned: Notify::new(),
        }
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Connections open and not lent out: sqlx's idle ones and those kept here.
    pub(crate) fn idle(&self) -> usize {
        self.pool.num_idle() + self.kept().len()
    }

    /// A connection for one statement: a kept one if any, else one from sqlx's
    /// pool while fewer than its size are out, else the next one kept or
    /// given back (at most the pool's acquire timeout in all).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when none came in time, or sqlx's error
    /// opening one.
    pub(crate) async fn acquire(&self) -> Result<Lease<'_>, StoreError> {
        let timeout = self.pool.options().get_acquire_timeout();
        tokio::time::timeout(timeout, self.wait_for_one())
            .await
            .unwrap_or_else(|_| Err(classify(sqlx::Error::PoolTimedOut)))
    }

    async fn wait_for_one(&self) -> Result<Lease<'_>, StoreError> {
        loop {
            // Registered before looking, so a connection kept or given back
            // in between wakes us.
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Some(kept) = self.take_kept() {
                return Ok(Lease {
                    connection: kept.connection,
                    taken: kept.taken,
                    out: Out::held(self),
                });
            }
            if let Some(out) = self.reserve() {
                // Dropped on an error, `out` gives the place back.
                let connection = self.pool.acquire().await.map_err(classify)?;
                return Ok(Lease {
                    connection,
                    taken: Instant::now(),
                    out,
                });
            }
            returned.await;
        }
    }

    /// A place among the `max` connections out, if one is free.
    fn reserve(&self) -> Option<Out<'_>> {
        self.out
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |out| {
                (out < self.max).then_some(out + 1)
            })
            .ok()
            .map(|_| Out::held(self))
    }

    /// The most recently used kept connection that is not due back in sqlx.
    /// Its place among those out stays taken: the caller's lease holds it.
    fn take_kept(&self) -> Option<Kept> {
        let mut kept = self.kept();
        while let Some(newest) = kept.pop_back() {
            if newest.taken.elapsed() < RECYCLE {
                return Some(newest);
            }
            self.give_back(newest);
        }
        None
    }

    /// Keeps a connection whose statement ended, for the next statement.
    fn keep(&self, connection: PoolConnection<Postgres>, taken: Instant) {
        let now = Instant::now();
        {
            let mut kept = self.kept();
            while let Some(oldest) = kept.pop_front() {
                if now.duration_since(oldest.idle_since) < IDLE {
                    kept.push_front(oldest);
                    break;
                }
                self.give_back(oldest);
            }
            kept.push_back(Kept {
                connection,
                taken,
                idle_since: now,
            });
        }
        self.returned.notify_one();
    }

    /// Gives a kept connection back to sqlx's pool, and its place.
    fn give_back(&self, kept: Kept) {
        drop(kept.connection);
        drop(Out::held(self));
    }

    fn kept(&self) -> MutexGuard<'_, VecDeque<Kept>> {
        // The list is whole after every operation, so a panic elsewhere
        // while it was locked leaves nothing half-done.
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Connections {
    fn drop(&mut self) {
        // Back to sqlx, each in a task of its own; without a runtime to run
        // those, just close the sockets.
        if tokio::runtime::Handle::try_current().is_err() {
            for kept in self.kept().drain(..) {
                drop(kept.connection.leak());
            }
        }
    }
}

impl Lease<'_> {
    /// Hands the connection to the next statement: call it once the
    /// statement (or transaction) has run to its end, nothing left unread and
    /// no transaction open.
    pub(crate) fn release(self) {
        let Lease {
            connection,
            taken,
            mut out,
        } = self;
        if taken.elapsed() < RECYCLE {
            out.kept = true;
            out.home.keep(connection, taken);
        } else {
            // Back to sqlx, then its place (which wakes a waiter).
            drop(connection);
            drop(out);
        }
    }
}

impl Deref for Lease<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.connection
    }
}

impl DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.connection
    }
}
