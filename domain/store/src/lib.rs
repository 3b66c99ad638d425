//! The sqlx machinery every Strata bounded context shares, so that a context's
//! own store code is its SQL and its row mapping, nothing else.
//!
//! # Layout
//! - [`config`]: [`StoreConfig`] (URL, pool size, idempotency retention,
//!   statement timeout) and [`StoreUrl`], which never prints its password.
//! - [`value`]: [`Param`] and [`Row`]: a context writes its statements once and
//!   binds and reads values the same way on both backends.
//! - [`error`]: [`StoreError`] and the one classification of driver errors;
//!   `retry`: a statement that failed on contention runs again, a bounded
//!   number of times.
//! - [`Store`] (here): open a context's store from its URL (its own PostgreSQL
//!   schema or its own SQLite file) and run its migrations, then the command
//!   path (a consistent read of the aggregate with its idempotency record; an
//!   atomic write of the aggregate, its outbox rows and the record; for rows
//!   under heavy contention, [`Store::write_locked`]: the same write decided
//!   inside one transaction that holds the row), the event stream, and
//!   idempotency retention.
//! - [`batch`]: reads by key that concurrent callers share ([`Batched`], built
//!   with [`Store::batched`] from a [`ReadByKey`]): a lone read goes out at
//!   once; reads that arrive while one is in flight go together in the next
//!   statement. The idempotency-record lookup ([`Store::recorded`]) is one.
//! - [`table`]: the command path of an aggregate kept in one row, written once
//!   over [`table::AggregateTable`].
//! - `postgres`, `sqlite`: the two backends; nothing outside this crate sees
//!   them. `connections`: PostgreSQL connections passed from one statement to
//!   the next without sqlx's release ping.
//!
//! **API boundary:** contexts call [`Store`]; the shared tables (`outbox`,
//! `idempotency`) and their migrations are this crate's. A context's migrations
//! create only its own tables.

pub mod batch;
pub mod config;
mod connections;
pub mod error;
mod postgres;
mod retry;
mod sqlite;
pub mod table;
pub mod value;

use std::{sync::Arc, time::Duration};

use sqlx::migrate::{Migration as SqlxMigration, MigrationType, Migrator};
use strata_kernel::{Fingerprint, OutboxMessage, RequestId, Version};
use time::OffsetDateTime;
use tokio::{sync::watch, task::JoinHandle};
use tokio_stream::wrappers::ReceiverStream;
use uuid::Uuid;

pub use batch::{Batched, ReadByKey};
pub use config::{StoreConfig, StoreUrl};
pub use error::StoreError;
use retry::retrying;
pub use value::{Param, Row};

/// How often a statement that failed on contention (serialization failure,
/// deadlock, SQLite busy) is run again inside the server before the caller gets
/// ABORTED.
pub const CONTENTION_RETRIES: u32 = 3;

/// How long a read that does not follow waits for committed events held back
/// by an older running transaction before it ends without them.
const HOLD_BACK_WAIT: Duration = Duration::from_secs(1);

/// How many events one read of the outbox returns at most.
const EVENT_PAGE: u32 = 256;

/// One migration of a context or of the shared tables.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Applied in increasing order; never reused.
    pub version: i64,
    /// What it does, for the migrations table.
    pub description: &'static str,
    /// The SQL, usually `include_str!`'d from `migrations/<context>/<backend>/`.
    pub sql: &'static str,
}

/// What a context tells the shared store about itself.
#[derive(Debug, Clone, Copy)]
pub struct ContextSchema {
    /// Its name: the PostgreSQL schema, the SQLite file name.
    pub name: &'static str,
    /// Its own migrations on PostgreSQL.
    pub postgres: &'static [Migration],
    /// Its own migrations on SQLite.
    pub sqlite: &'static [Migration],
}

/// A statement, per backend where the dialects differ.
#[derive(Debug, Clone, Copy)]
pub struct Sql {
    /// The PostgreSQL text.
    pub postgres: &'static str,
    /// The SQLite text.
    pub sqlite: &'static str,
}

impl Sql {
    /// The same text on both backends (`$n` placeholders work on both).
    #[must_use]
    pub const fn same(text: &'static str) -> Self {
        Self {
            postgres: text,
            sqlite: text,
        }
    }
}

/// An idempotency record read back: the command's fingerprint and its result,
/// as the context stored it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRow {
    /// What the command asked for.
    pub fingerprint: Fingerprint,
    /// Its result, in the versioned form the context wrote.
    pub result: serde_json::Value,
}

/// One atomic write of a command: the context's statement on its aggregate row
/// (an insert, or an update guarded by the version it replaces), the
/// idempotency record and the outbox rows — all or nothing.
#[derive(Debug)]
pub struct Write<'a> {
    /// The aggregate statement, without `returning` (the store adds it).
    pub statement: Sql,
    /// Its parameters, `$1` to `$n`.
    pub params: Vec<Param>,
    /// The command's idempotency key.
    pub request_id: &'a RequestId,
    /// What the command asked for.
    pub fingerprint: &'a Fingerprint,
    /// The result to replay to a retry, in a versioned form of the context's.
    pub result: serde_json::Value,
    /// The events of the change.
    pub outbox: &'a [OutboxMessage],
    /// When the command was carried out.
    pub at: OffsetDateTime,
}

/// What a locked command decided to write (see [`Store::write_locked`]): the
/// aggregate statement and its parameters, the idempotency record's fingerprint
/// and result, and the outbox rows. Owned, since it is built inside the
/// transaction from what was read there.
#[derive(Debug)]
pub struct LockedWrite {
    /// The aggregate statement, without `returning`.
    pub statement: Sql,
    /// Its parameters, `$1` to `$n`.
    pub params: Vec<Param>,
    /// What the command asked for.
    pub fingerprint: Fingerprint,
    /// The result to replay to a retry, in a versioned form of the context's.
    pub result: serde_json::Value,
    /// The events of the change.
    pub outbox: Vec<OutboxMessage>,
    /// When the command was carried out.
    pub at: OffsetDateTime,
}

/// What a locked command decided, holding the aggregate row exclusively.
#[derive(Debug)]
pub enum LockedDecision<T> {
    /// Write this, commit, then answer `T`.
    Write(LockedWrite, T),
    /// Write nothing (a replay, a refusal, a no-op) and answer `T`.
    Answer(T),
}

/// What a [`Write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The aggregate row, the record and the events were written.
    Applied,
    /// The aggregate statement matched no row (its version guard failed, or the
    /// aggregate does not exist): nothing was written.
    NothingMatched,
}

/// An outbox row as stored, with its position in the context's event stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Increases in commit order, with gaps.
    pub position: u64,
    /// Unique per event.
    pub event_id: Uuid,
    /// The aggregate that changed.
    pub aggregate_id: Uuid,
    /// Its version after the change.
    pub aggregate_version: Version,
    /// The event's stable name.
    pub event_type: String,
    /// The event as JSON.
    pub payload: serde_json::Value,
    /// When it happened.
    pub occurred_at: OffsetDateTime,
}

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL is neither `postgres://` nor `sqlite://`.
    #[error("unsupported database URL: expected postgres://… or sqlite://…")]
    UnsupportedUrl,
    /// The URL does not parse.
    #[error("invalid database URL")]
    InvalidUrl(#[source] sqlx::Error),
    /// The store did not answer.
    #[error("cannot connect to the database")]
    Connect(#[source] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("migrating the {context} schema failed")]
    Migrate {
        /// The context.
        context: &'static str,
        /// The migrator's error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

/// A context's store: a pool on its own PostgreSQL schema or SQLite file, with
/// its migrations applied. Cheap to clone; the background tasks (idempotency
/// retention, the event watcher) stop when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Its entry in [`OPEN`].
    id: u64,
    backend: Backend,
    context: &'static str,
    /// Bumped after every commit that wrote events, so followers read again.
    feed: watch::Sender<u64>,
    watcher: tokio::sync::OnceCell<JoinHandle<()>>,
    purge: JoinHandle<()>,
    /// Idempotency records by request id, batched.
    recorded: Batched<String>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        OPEN.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|open| open.id != self.id);
        self.purge.abort();
        if let Some(watcher) = self.watcher.get() {
            watcher.abort();
        }
    }
}

#[derive(Debug, Clone)]
enum Backend {
    Postgres(postgres::Pg),
    Sqlite(sqlx::SqlitePool),
}

/// Every store open in this process, for [`pool_usage`]; an entry leaves
/// with the last clone of its store.
static OPEN: std::sync::LazyLock<std::sync::Mutex<Vec<Open>>> =
    std::sync::LazyLock::new(|| std::sync::Mutex::new(Vec::new()));

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[derive(Debug)]
struct Open {
    id: u64,
    context: &'static str,
    backend: Backend,
    max: u32,
}

/// How one open store's connection pool is used, now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUsage {
    /// The context whose store it is.
    pub context: &'static str,
    /// Connections open.
    pub open: u32,
    /// Of those, how many are idle (the rest are in use).
    pub idle: u32,
    /// The most it may open.
    pub max: u32,
}

/// The pool usage of every store open in this process (for `/metrics`).
#[must_use]
pub fn pool_usage() -> Vec<PoolUsage> {
    OPEN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|open| {
            let (size, idle) = match &open.backend {
                Backend::Postgres(pg) => pg.usage(),
                Backend::Sqlite(pool) => (pool.size(), pool.num_idle()),
            };
            PoolUsage {
                context: open.context,
                open: size,
                idle: u32::try_from(idle).unwrap_or(u32::MAX),
                max: open.max,
            }
        })
        .collect()
}

/// Whether `error` is one of the database's (the driver's, or opening or
/// migrating a store), which may pass, rather than a setting's, which will
/// not. Look at each error of a chain: wrappers may hide the outer ones.
#[must_use]
pub fn is_store_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    error.is::<sqlx::Error>() || error.is::<OpenError>() || error.is::<sqlx::migrate::MigrateError>()
}

/// Whether the store of `context` open in this process answers: a statement
/// ran to its end within `within`, or `select 1` does now, within it. So a
/// busy store is not pinged, and one that stopped answering is found out
/// within `within`. `false` when no store of `context` is open.
pub async fn reachable(context: &str, within: std::time::Duration) -> bool {
    let backend = OPEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .rev()
        .find(|open| open.context == context)
        .map(|open| open.backend.clone());
    match backend {
        None => false,
        Some(Backend::Postgres(pg)) => pg.reachable(within).await,
        Some(Backend::Sqlite(pool)) => tokio::time::timeout(within, sqlx::query("select 1").fetch_one(&pool))
            .await
            .is_ok_and(|answered| answered.is_ok()),
    }
}

/// The SQLite URL of a context's embedded database file in `data_dir`.
#[must_use]
pub fn embedded_url(data_dir: &std::path::Path, context: &str) -> String {
    format!("sqlite://{}", data_dir.join(format!("{context}.db")).display())
}

impl Store {
    /// Opens the store `config` names for `context`, creates its schema (or
    /// file) if needed, and applies the context's migrations, then the shared
    /// tables' (each set tracked in its own table).
    ///
    /// # Errors
    /// [`OpenError`] when the URL has another scheme or is invalid, the store
    /// cannot be reached, or a migration fails.
    pub async fn open(context: &ContextSchema, config: &StoreConfig) -> Result<Self, OpenError> {
        let backend = if config.url.is_postgres() {
            Backend::Postgres(postgres::Pg::open(context, config).await?)
        } else if config.url.is_sqlite() {
            Backend::Sqlite(sqlite::open(context, config).await?)
        } else {
            return Err(OpenError::UnsupportedUrl);
        };
        let purge = tokio::spawn(purge_loop(
            backend.clone(),
            context.name,
            config.idempotency_retention,
        ));
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        OPEN.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Open {
                id,
                context: context.name,
                backend: backend.clone(),
                max: config.max_connections,
            });
        Ok(Self {
            inner: Arc::new(Inner {
                id,
                recorded: Batched::new(backend.clone(), RECORDED_BY_REQUEST_ID),
                backend,
                context: context.name,
                feed: watch::channel(0).0,
                watcher: tokio::sync::OnceCell::new(),
                purge,
            }),
        })
    }

    /// The context this store belongs to.
    #[must_use]
    pub fn context(&self) -> &'static str {
        self.inner.context
    }

    /// The one row `sql` selects, if any.
    ///
    /// # Errors
    /// The classified driver error.
    pub async fn fetch_optional(&self, sql: Sql, params: Vec<Param>) -> Result<Option<Row>, StoreError> {
        retrying(|| async {
            match &self.inner.backend {
                Backend::Postgres(pg) => pg.fetch_optional(sql.postgres, params.clone()).await,
                Backend::Sqlite(pool) => sqlite::fetch_optional(pool, sql.sqlite, params.clone()).await,
            }
        })
        .await
    }

    /// Every row `sql` selects.
    ///
    /// # Errors
    /// The classified driver error.
    pub async fn fetch_all(&self, sql: Sql, params: Vec<Param>) -> Result<Vec<Row>, StoreError> {
        fetch_all(&self.inner.backend, sql, params).await
    }

    /// A read by key whose concurrent callers share statements (see
    /// [`batch`]): build it once per statement, when the store is opened, and
    /// keep it beside the store. It holds the store's pool, not the store, so
    /// it does not keep the store's background tasks running.
    #[must_use]
    pub fn batched<K: batch::Key>(&self, read: ReadByKey) -> Batched<K> {
        Batched::new(self.inner.backend.clone(), read)
    }

    /// What a command needs to start, in one statement (so one snapshot on
    /// both backends): the idempotency record of `request_id`, if any, and the
    /// row `select` finds (`$1` to `$n` are `params`), if any. A command that
    /// committed is therefore seen with its record or not at all.
    ///
    /// # Errors
    /// The classified driver error.
    pub async fn load_for_command(
        &self,
        select: Sql,
        params: Vec<Param>,
        request_id: &RequestId,
    ) -> Result<(Option<RecordedRow>, Option<Row>), StoreError> {
        let key = params.len() + 1;
        let compose = |select: &str| {
            format!(
                "select a.*, i.fingerprint, i.result from (select 1) as one \
                 left join ({select}) as a on true \
                 left join idempotency as i on i.request_id = ${key}"
            )
        };
        let mut params = params;
        params.push(Param::Text(request_id.as_str().to_owned()));
        let row = retrying(|| async {
            match &self.inner.backend {
                Backend::Postgres(pg) => pg.fetch_one(&compose(select.postgres), params.clone()).await,
                Backend::Sqlite(pool) => {
                    sqlite::fetch_one(pool, &compose(select.sqlite), params.clone()).await
                }
            }
        })
        .await?;
        let columns = row.len();
        let recorded = recorded_from(&row, columns - 2)?;
        // The joined row is absent when its first column (its key) is NULL.
        let found = !row.is_null(0)?;
        Ok((recorded, found.then_some(row)))
    }

    /// The idempotency record of `request_id`, if that command was carried
    /// out. Concurrent lookups share statements (see [`batch`]).
    ///
    /// # Errors
    /// The classified driver error.
    pub async fn recorded(&self, request_id: &RequestId) -> Result<Option<RecordedRow>, StoreError> {
        self.inner
            .recorded
            .get(request_id.as_str().to_owned(), |row| recorded_from(row, 1))
            .await
            .map(Option::flatten)
    }

    /// Writes a command atomically: the aggregate statement, the idempotency
    /// record and the outbox rows (at most 1023 events). Event positions are
    /// such that a reader never finds an event below one it has already seen
    /// (see `postgres`).
    ///
    /// # Errors
    /// [`StoreError::RequestAlreadyRecorded`] when the request id is taken,
    /// [`StoreError::UniqueViolation`] when the aggregate statement breaks a
    /// unique constraint, or the classified driver error. Nothing is written.
    pub async fn write(&self, write: Write<'_>) -> Result<Written, StoreError> {
        if write.outbox.len() as i64 >= postgres::POSITIONS_PER_TRANSACTION {
            return Err(StoreError::Corrupt(
                format!(
                    "a command records at most 1023 events, not {}",
                    write.outbox.len()
                )
                .into(),
            ));
        }
        let written = retrying(|| async {
            match &self.inner.backend {
                Backend::Postgres(pg) => pg.write(&write).await,
                Backend::Sqlite(pool) => sqlite::write(pool, &write).await,
            }
        })
        .await?;
        if written == Written::Applied && !write.outbox.is_empty() {
            // Followers in this process learn of it at once; on PostgreSQL, the
            // watcher also sees other processes' commits.
            self.inner.feed.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(written)
    }

    /// Runs a command holding its aggregate row exclusively, in one
    /// transaction: reads the row `select` finds (`$1` to `$n` are `params`;
    /// PostgreSQL first takes an advisory lock on the aggregate those params
    /// identify, SQLite holds the whole file from `BEGIN IMMEDIATE`) and then the idempotency record of
    /// `request_id`, lets `decide` choose from both, and writes what it chose
    /// (aggregate statement, idempotency record, outbox rows, with positions
    /// exactly as [`Store::write`] gives them) before committing. Concurrent commands on the same aggregate therefore queue
    /// on the row instead of failing a version check: none is lost and none
    /// is refused for contention, at the price of holding the row for the
    /// transaction (five round trips on PostgreSQL: begin, the locked read,
    /// the record, the write, commit).
    ///
    /// `decide` may run more than once when the transaction fails on
    /// contention and is run again (bounded, [`CONTENTION_RETRIES`]); it must
    /// decide from its arguments only.
    ///
    /// # Errors
    /// [`StoreError::RequestAlreadyRecorded`] when a concurrent retry recorded
    /// `request_id` first, [`StoreError::UniqueViolation`] when the statement
    /// breaks a unique constraint (an insert that lost to a concurrent insert),
    /// or the classified driver error. Nothing is written.
    pub async fn write_locked<T, F>(
        &self,
        select: Sql,
        params: Vec<Param>,
        request_id: &RequestId,
        decide: F,
    ) -> Result<T, StoreError>
    where
        T: Send,
        F: Fn(Option<RecordedRow>, Option<Row>) -> Result<LockedDecision<T>, StoreError> + Send + Sync,
    {
        let (answer, wrote_events) = retrying(|| async {
            match &self.inner.backend {
                Backend::Postgres(pg) => {
                    pg.write_locked(select.postgres, params.clone(), request_id, &decide)
                        .await
                }
                Backend::Sqlite(pool) => {
                    sqlite::write_locked(pool, select.sqlite, params.clone(), request_id, &decide).await
                }
            }
        })
        .await?;
        if wrote_events {
            self.inner.feed.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(answer)
    }

    /// Up to `limit` events after `position`, in position order. No event
    /// that commits later has a position below the last one returned.
    ///
    /// # Errors
    /// The classified driver error.
    pub async fn events_after(&self, position: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        let after = i64::try_from(position).unwrap_or(i64::MAX);
        let limit = i64::from(limit);
        let rows =
            retrying(|| async {
                match &self.inner.backend {
                    Backend::Postgres(pg) => pg.events_after(after, limit).await,
                    Backend::Sqlite(pool) => sqlite::fetch_all(
                        pool,
                        "select position, event_id, aggregate_id, aggregate_version, event_type, payload, \
                         occurred_at from outbox where position > $1 order by position limit $2",
                        vec![Param::Int(after), Param::Int(limit)],
                    )
                    .await,
                }
            })
            .await?;
        rows.iter().map(event_from).collect()
    }

    /// Whether events after `position` have committed but are not served yet,
    /// because a transaction older than them is still running (PostgreSQL).
    async fn held_back(&self, position: u64) -> Result<bool, StoreError> {
        match &self.inner.backend {
            Backend::Postgres(pg) => pg.held_back(i64::try_from(position).unwrap_or(i64::MAX)).await,
            Backend::Sqlite(_) => Ok(false),
        }
    }

    /// The events after `position`, in order, then — with `follow` — every
    /// event as it commits, until the receiver is dropped. One watcher per
    /// store wakes every follower (the writes of this process at once; on
    /// PostgreSQL also a look at the outbox every 100 ms while anybody
    /// follows); a follower reads only when woken, or while events it could
    /// not be served yet are held back by an older running transaction.
    ///
    /// # Errors
    /// Starting the PostgreSQL watcher fails; later failures end the stream
    /// with the error as its last item.
    pub async fn follow(
        &self,
        position: u64,
        follow: bool,
    ) -> Result<ReceiverStream<Result<StoredEvent, StoreError>>, StoreError> {
        if follow {
            self.ensure_watcher().await?;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(EVENT_PAGE as usize);
        let store = self.clone();
        tokio::spawn(async move {
            let mut feed = store.inner.feed.subscribe();
            let mut position = position;
            let mut held = Duration::from_millis(5);
            let mut waited = Duration::ZERO;
            loop {
                // Mark the feed seen before reading: a commit after this point
                // wakes the wait below even if the read missed it.
                feed.borrow_and_update();
                let events = match store.events_after(position, EVENT_PAGE).await {
                    Ok(events) => events,
                    Err(error) => {
                        let _ = tx.send(Err(error)).await;
                        return;
                    }
                };
                let full = events.len() == EVENT_PAGE as usize;
                for event in events {
                    position = event.position;
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                if full {
                    continue;
                }
                match store.held_back(position).await {
                    // Committed events wait for an older transaction: look
                    // again shortly, sooner at first. Without `follow`, wait
                    // for them a bounded time, so that a reader gets what had
                    // committed when it asked unless a transaction older than
                    // those events runs on for more than a second.
                    Ok(true) if follow || waited < HOLD_BACK_WAIT => {
                        waited += held;
                        tokio::select! {
                            () = tokio::time::sleep(held) => {}
                            () = tx.closed() => return,
                        }
                        held = (held * 2).min(Duration::from_millis(200));
                        continue;
                    }
                    Ok(true) => return,
                    Ok(false) if !follow => return,
                    Ok(false) => {
                        held = Duration::from_millis(5);
                        waited = Duration::ZERO;
                    }
                    Err(error) => {
                        let _ = tx.send(Err(error)).await;
                        return;
                    }
                }
                tokio::select! {
                    changed = feed.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }

    async fn ensure_watcher(&self) -> Result<(), StoreError> {
        let Backend::Postgres(pg) = &self.inner.backend else {
            return Ok(());
        };
        self.inner
            .watcher
            .get_or_try_init(|| pg.watch(self.inner.context, self.inner.feed.clone()))
            .await
            .map(|_| ())
    }

    /// Deletes the idempotency records created before `cutoff`; returns how many.
    ///
    /// # Errors
    /// The classified driver error.
    pub async fn purge_idempotency(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
        purge(&self.inner.backend, cutoff).await
    }
}

/// A context's `StreamEvents` response stream: each stored event mapped to the
/// context's own message by `to_proto`, each failure through the kernel's one
/// mapping to `tonic::Status`.
pub type GrpcEvents<T> = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, tonic::Status>> + Send>>;

/// The stream [`Store::follow`] gives, as a gRPC server stream of `T`.
pub fn grpc_events<T: Send + 'static>(
    events: ReceiverStream<Result<StoredEvent, StoreError>>,
    to_proto: fn(StoredEvent) -> Result<T, strata_kernel::Error>,
) -> GrpcEvents<T> {
    use tokio_stream::StreamExt as _;
    Box::pin(events.map(move |event| match event {
        Ok(event) => to_proto(event).map_err(tonic::Status::from),
        Err(error) => Err(tonic::Status::from(strata_kernel::Error::from(error))),
    }))
}

/// Runs a context's background sweep (expired reservations, orders never
/// confirmed) every `period` on the current runtime, until the runtime stops:
/// `sweep` returns how many aggregates it changed. Failures are logged and the
/// sweep runs again at the next period.
pub fn spawn_sweep<F, Fut>(
    context: &'static str,
    what: &'static str,
    period: Duration,
    sweep: F,
) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<usize, strata_kernel::Error>> + Send,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match sweep().await {
                Ok(0) => {}
                Ok(changed) => tracing::info!(context, what, changed, "swept"),
                Err(error) => {
                    tracing::warn!(context, what, error = %strata_kernel::error::Chain(&error), "sweep failed")
                }
            }
        }
    })
}

/// Idempotency records by request id, for [`Store::recorded`].
const RECORDED_BY_REQUEST_ID: ReadByKey = ReadByKey {
    statement: Sql {
        postgres: "select request_id, fingerprint, result from idempotency where request_id = any($1)",
        sqlite: "select request_id, fingerprint, result from idempotency \
                 where request_id in (select value from json_each($1))",
    },
    key_column: 0,
};

/// Every row `sql` selects, on `backend`.
async fn fetch_all(backend: &Backend, sql: Sql, params: Vec<Param>) -> Result<Vec<Row>, StoreError> {
    retrying(|| async {
        match backend {
            Backend::Postgres(pg) => pg.fetch_all(sql.postgres, params.clone()).await,
            Backend::Sqlite(pool) => sqlite::fetch_all(pool, sql.sqlite, params.clone()).await,
        }
    })
    .await
}

/// What both backends do once `decide` has chosen inside the transaction.
pub(crate) fn locked_write<'a>(write: &'a LockedWrite, request_id: &'a RequestId) -> Write<'a> {
    Write {
        statement: write.statement,
        params: write.params.clone(),
        request_id,
        fingerprint: &write.fingerprint,
        result: write.result.clone(),
        outbox: &write.outbox,
        at: write.at,
    }
}

/// A locked statement's row guard failed although the row is held: a bug.
pub(crate) fn held_row_changed() -> StoreError {
    StoreError::Corrupt("the locked aggregate statement matched no row".into())
}

pub(crate) fn recorded_from(row: &Row, first: usize) -> Result<Option<RecordedRow>, StoreError> {
    let fingerprint = row.opt_bytes(first)?;
    let result = row.opt_json(first + 1)?;
    Ok(fingerprint.zip(result).map(|(fingerprint, result)| RecordedRow {
        fingerprint: Fingerprint::new(fingerprint),
        result,
    }))
}

fn event_from(row: &Row) -> Result<StoredEvent, StoreError> {
    let position = row.int(0)?;
    Ok(StoredEvent {
        position: u64::try_from(position)
            .map_err(|_| StoreError::Corrupt(format!("negative event position {position}").into()))?,
        event_id: row.uuid(1)?,
        aggregate_id: row.uuid(2)?,
        aggregate_version: row.version(3)?,
        event_type: row.text(4)?,
        payload: row
            .opt_json(5)?
            .ok_or_else(|| StoreError::Corrupt("event without a payload".into()))?,
        occurred_at: row.time(6)?,
    })
}

/// The migrations of `sources`, tracked in `table`.
fn migrator(sources: &[Migration], table: &str) -> Migrator {
    let migrations = sources
        .iter()
        .map(|m| {
            SqlxMigration::new(
                m.version,
                m.description.into(),
                MigrationType::Simple,
                sqlx::SqlSafeStr::into_sql_str(m.sql),
                false,
            )
        })
        .collect();
    let mut migrator = Migrator::with_migrations(migrations);
    migrator.dangerous_set_table_name(table.to_owned());
    migrator
}

/// The shared tables' migrations, per backend.
const STORE_POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        description: "outbox and idempotency",
        sql: include_str!("../../../migrations/store/postgres/0001_outbox_and_idempotency.sql"),
    },
    Migration {
        version: 2,
        description: "event id and retention index",
        sql: include_str!("../../../migrations/store/postgres/0002_event_id_and_retention.sql"),
    },
    Migration {
        version: 3,
        description: "positions from transaction ids",
        sql: include_str!("../../../migrations/store/postgres/0003_positions_from_transaction_ids.sql"),
    },
];
const STORE_SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        description: "outbox and idempotency",
        sql: include_str!("../../../migrations/store/sqlite/0001_outbox_and_idempotency.sql"),
    },
    Migration {
        version: 2,
        description: "event id and retention index",
        sql: include_str!("../../../migrations/store/sqlite/0002_event_id_and_retention.sql"),
    },
];

/// How many records one purge statement deletes at most, so that a large
/// backlog is removed in short transactions.
const PURGE_BATCH: i64 = 5_000;

async fn purge(backend: &Backend, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let deleted = match backend {
            Backend::Postgres(pg) => pg.purge_batch(cutoff, PURGE_BATCH).await?,
            Backend::Sqlite(pool) => sqlite::purge_batch(pool, cutoff, PURGE_BATCH).await?,
        };
        total += deleted;
        if deleted < PURGE_BATCH.unsigned_abs() {
            return Ok(total);
        }
    }
}

/// Purges expired idempotency records now and then: every 1/24 of the
/// retention window, between once a second and once every 15 minutes.
async fn purge_loop(backend: Backend, context: &'static str, retention: Duration) {
    let every = (retention / 24).clamp(Duration::from_secs(1), Duration::from_secs(15 * 60));
    // The first purge one period after the store opens, not at once: a
    // starting service has better uses for its connections, and the contract
    // suites, whose clock stamps records in 2023, had the purge of a store
    // just opened delete a record the suite had written a moment later
    // (now and then, when the purge's statement ran late on a busy machine).
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let cutoff = OffsetDateTime::now_utc() - retention;
        match purge(&backend, cutoff).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(context, deleted, "purged expired idempotency records"),
            Err(error) => {
                tracing::warn!(context, error = %strata_kernel::error::Chain(&error), "purging idempotency records failed")
            }
        }
    }
}
