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
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::{PgConnection, PgPool, Postgres, pool::PoolConnection};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::{StoreError, error::classify};

/// How long a connection stays out of sqlx's pool before it goes back through
/// it once (ping, lifetime check), to be handed out again.
const RECYCLE: Duration = Duration::from_secs(60);

/// How long a connection may sit unused here before it goes back to sqlx's
/// pool, whose idle limit then applies (so the pool shrinks after a burst).
const IDLE: Duration = Duration::from_secs(10);

/// A context's PostgreSQL connections: sqlx's pool and those kept from it.
///
/// Every connection taken from sqlx's pool (lent to a statement or kept here)
/// holds one of `places`, as many as the pool's size. A caller asks sqlx only
/// once it holds a place, so it never waits in sqlx's queue for a connection
/// that is kept here (sqlx would not know it is free), and never gives up a
/// connection sqlx is opening for it because a kept one came first (a
/// connection opened and thrown away costs the server a backend process).
#[derive(Debug)]
pub(crate) struct Connections {
    pool: PgPool,
    places: Arc<Semaphore>,
    /// Kept connections, most recently used last.
    kept: Mutex<VecDeque<Kept>>,
    /// Wakes a caller waiting for a connection when one is kept.
    returned: Notify,
    /// When a statement last ran to its end, in milliseconds after
    /// `created`: while statements succeed, the store needs no probing.
    created: Instant,
    last_ok_ms: AtomicU64,
}

/// A connection out of sqlx's pool. Fields drop in order: the connection goes
/// back to sqlx before its place is freed, so a caller woken by the place
/// finds it there.
#[derive(Debug)]
struct Out {
    connection: PoolConnection<Postgres>,
    _place: OwnedSemaphorePermit,
    /// When it came out of sqlx's pool.
    taken: Instant,
}

#[derive(Debug)]
struct Kept {
    out: Out,
    /// When its last statement ended.
    idle_since: Instant,
}

/// A connection lent to one statement (or one transaction). Dropped, it goes
/// back to sqlx's pool, which flushes or closes it, and frees its place;
/// [`Lease::release`] hands it to the next statement instead.
#[derive(Debug)]
pub(crate) struct Lease<'a> {
    out: Out,
    home: &'a Connections,
}

impl Connections {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self {
            places: Arc::new(Semaphore::new(pool.options().get_max_connections() as usize)),
            pool,
            kept: Mutex::new(VecDeque::new()),
            returned: Notify::new(),
            created: Instant::now(),
            last_ok_ms: AtomicU64::new(0),
        }
    }

    /// Whether a statement ran to its end within `within` before now.
    pub(crate) fn succeeded_within(&self, within: Duration) -> bool {
        let last = Duration::from_millis(self.last_ok_ms.load(Ordering::Relaxed));
        last > Duration::ZERO && self.created.elapsed().saturating_sub(last) < within
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Connections open and not lent out: sqlx's idle ones and those kept here.
    pub(crate) fn idle(&self) -> usize {
        self.pool.num_idle() + self.kept().len()
    }

    /// A connection for one statement: a kept one if any, else one from sqlx's
    /// pool once a place is free, whichever comes first (at most the pool's
    /// acquire timeout in all).
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
        let place = loop {
            // Registered before looking, so a connection kept in between wakes us.
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Some(kept) = self.take_kept() {
                return Ok(Lease {
                    out: kept.out,
                    home: self,
                });
            }
            tokio::select! {
                place = Arc::clone(&self.places).acquire_owned() => {
                    break place.map_err(|_| classify(sqlx::Error::PoolClosed))?;
                }
                () = returned => {}
            }
        };
        // Not raced against anything: a connection sqlx opens is used. On an
        // error, the place is freed.
        let connection = self.pool.acquire().await.map_err(classify)?;
        Ok(Lease {
            out: Out {
                connection,
                _place: place,
                taken: Instant::now(),
            },
            home: self,
        })
    }

    /// The most recently used kept connection that is not due back in sqlx.
    fn take_kept(&self) -> Option<Kept> {
        let mut kept = self.kept();
        while let Some(newest) = kept.pop_back() {
            if newest.out.taken.elapsed() < RECYCLE {
                return Some(newest);
            }
            // Dropped: back to sqlx, and its place freed.
        }
        None
    }

    /// Keeps a connection whose statement ended, for the next statement;
    /// those idle here for [`IDLE`] go back to sqlx.
    fn keep(&self, out: Out) {
        let now = Instant::now();
        {
            let mut kept = self.kept();
            while kept
                .front()
                .is_some_and(|oldest| now.duration_since(oldest.idle_since) >= IDLE)
            {
                kept.pop_front();
            }
            kept.push_back(Kept { out, idle_since: now });
        }
        self.returned.notify_one();
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
                drop(kept.out.connection.leak());
            }
        }
    }
}

impl Lease<'_> {
    /// Hands the connection to the next statement: call it once the
    /// statement (or transaction) has run to its end, nothing left unread and
    /// no transaction open. One out of sqlx for [`RECYCLE`] goes back to it.
    pub(crate) fn release(self) {
        let ok_ms = u64::try_from(self.home.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.home.last_ok_ms.store(ok_ms.max(1), Ordering::Relaxed);
        if self.out.taken.elapsed() < RECYCLE {
            self.home.keep(self.out);
        }
    }
}

impl Deref for Lease<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.out.connection
    }
}

impl DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.out.connection
    }
}
