//! The PostgreSQL backend: each context in its own schema (every pooled
//! connection has it as `search_path`), so contexts can share a database
//! without sharing a table.
//!
//! A command is one statement of data-modifying CTEs — the aggregate row, the
//! idempotency record and the outbox rows — so it is atomic without an explicit
//! transaction and costs one round trip.
//!
//! **Event positions a reader never skips.** A sequence value is taken at
//! insert and becomes visible at commit, so with overlapping writers a reader
//! could see position 11 commit before 10 and skip 10 for good. Instead, an
//! event's position is derived from its transaction's id: `xid × 1024 + n` for
//! the n-th event of the transaction (`POSITIONS_PER_TRANSACTION`). Every
//! transaction still running has an id at or above the oldest running one
//! (`pg_snapshot_xmin`), so a reader serves only events below `xmin × 1024`:
//! all of them have committed, and every event that commits later has a higher
//! position. Writers take no lock and commit concurrently; the price is paid by
//! readers, who wait while a transaction older than an event is still running
//! (a long transaction anywhere on the server holds the stream back, never
//! reorders it). Followers are woken by one watcher per store that polls the
//! outbox's highest position while anybody follows; `NOTIFY` would have taken
//! PostgreSQL's database-wide commit lock on every write.

use std::{str::FromStr, sync::Arc, time::Duration};

use sqlx::{
    ConnectOptions, Connection, Postgres,
    postgres::{PgArguments, PgConnectOptions, PgPoolOptions},
    query::Query,
};
use time::OffsetDateTime;
use tokio::{sync::watch, task::JoinHandle};
use uuid::Uuid;

use strata_kernel::RequestId;

use crate::{
    ContextSchema, LockedDecision, OpenError, Param, RecordedRow, Row, STORE_POSTGRES, StoreConfig,
    StoreError, Write, Written, connections::Connections, error::classify, held_row_changed, locked_write,
    migrator, recorded_from, value::version_to,
};

/// A context's PostgreSQL connections. Every statement runs on a
/// [`crate::connections::Lease`], released when it ran to its end.
#[derive(Debug, Clone)]
pub(crate) struct Pg {
    connections: Arc<Connections>,
    /// The context's name, which scopes its aggregate locks.
    context: &'static str,
}

impl Pg {
    /// Connections open, and of those how many are idle (for usage figures).
    pub(crate) fn usage(&self) -> (u32, usize) {
        (self.connections.pool().size(), self.connections.idle())
    }
}

/// A transaction-level advisory lock key for the aggregate `params` identify
/// in `context` (FNV-1a of both).
fn aggregate_lock_key(context: &str, params: &[Param]) -> i64 {
    let hash = format!("{context}:{params:?}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// How many events one transaction may record: positions are `xid × this + n`.
pub(crate) const POSITIONS_PER_TRANSACTION: i64 = 1024;

/// Events below this position belong to transactions that have all ended.
const HORIZON: &str = "pg_snapshot_xmin(pg_current_snapshot())::text::int8 * 1024";

/// How often the watcher looks for new events while anybody follows.
const WATCH_EVERY: Duration = Duration::from_millis(100);

fn query(sql: &str, params: Vec<Param>) -> Query<'_, Postgres, PgArguments> {
    params
        .into_iter()
        .fold(sqlx::query(sqlx::AssertSqlSafe(sql)), |q, p| p.bind_pg(q))
}

impl Pg {
    pub(crate) async fn open(context: &ContextSchema, config: &StoreConfig) -> Result<Self, OpenError> {
        let timeout_ms = config.statement_timeout.as_millis().to_string();
        let options = PgConnectOptions::from_str(config.url.expose())
            .map_err(OpenError::InvalidUrl)?
            .options([
                ("search_path", context.name),
                ("statement_timeout", timeout_ms.as_str()),
                // `create … if not exists` on every start is expected, not news.
                ("client_min_messages", "warning"),
                // Every statement is a lookup by key or a keyed write: one plan
                // fits all values. Left to choose, PostgreSQL planned the batched
                // read `id = any($1)` again on most executions (its custom plan
                // for an array of one looks cheaper than the generic one), 18 µs
                // of planning for 16 µs of execution (BENCH_STATEMENTS=1).
                ("plan_cache_mode", "force_generic_plan"),
            ]);
        // One plain connection first: the pool would report any failure as a
        // time-out, this names the cause (refused, unknown host, bad password).
        // Bounded: a host that drops packets would otherwise hold the start
        // for the kernel's SYN retries (minutes).
        let first = tokio::time::timeout(config.connect_timeout, options.connect())
            .await
            .map_err(|_| {
                OpenError::Connect(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {:?}", config.connect_timeout),
                )))
            })?
            .map_err(OpenError::Connect)?;
        first.close().await.map_err(OpenError::Connect)?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            // A broken connection surfaces as UNAVAILABLE on first use and is then
            // dropped; a ping before every acquire would cost a round trip per request.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(OpenError::Connect)?;
        let migrate = |source| OpenError::Migrate {
            context: context.name,
            source,
        };
        let mut own = migrator(context.postgres, &format!("{}._strata_migrations", context.name));
        own.create_schema(context.name);
        own.run(&pool).await.map_err(migrate)?;
        migrator(
            STORE_POSTGRES,
            &format!("{}._strata_store_migrations", context.name),
        )
        .run(&pool)
        .await
        .map_err(migrate)?;
        Ok(Self {
            connections: Arc::new(Connections::new(pool)),
            context: context.name,
        })
    }

    /// Whether the database answers: a statement ran to its end within
    /// `within`, or `select 1` does now, within it.
    pub(crate) async fn reachable(&self, within: Duration) -> bool {
        if self.connections.succeeded_within(within) {
            return true;
        }
        tokio::time::timeout(within, self.fetch_one("select 1", Vec::new()))
            .await
            .is_ok_and(|answered| answered.is_ok())
    }

    pub(crate) async fn fetch_optional(
        &self,
        sql: &str,
        params: Vec<Param>,
    ) -> Result<Option<Row>, StoreError> {
        let mut lease = self.connections.acquire().await?;
        let row = query(sql, params)
            .fetch_optional(&mut *lease)
            .await
            .map_err(classify)?;
        lease.release();
        Ok(row.map(Row::Postgres))
    }

    pub(crate) async fn fetch_one(&self, sql: &str, params: Vec<Param>) -> Result<Row, StoreError> {
        let mut lease = self.connections.acquire().await?;
        let row = query(sql, params)
            .fetch_one(&mut *lease)
            .await
            .map_err(classify)?;
        lease.release();
        Ok(Row::Postgres(row))
    }

    pub(crate) async fn fetch_all(&self, sql: &str, params: Vec<Param>) -> Result<Vec<Row>, StoreError> {
        let mut lease = self.connections.acquire().await?;
        let rows = query(sql, params)
            .fetch_all(&mut *lease)
            .await
            .map_err(classify)?;
        lease.release();
        Ok(rows.into_iter().map(Row::Postgres).collect())
    }

    pub(crate) async fn write(&self, write: &Write<'_>) -> Result<Written, StoreError> {
        let mut lease = self.connections.acquire().await?;
        let written = self.write_on(&mut *lease, write).await?;
        lease.release();
        Ok(written)
    }

    /// The locked command path (see `Store::write_locked`): a transaction-level
    /// advisory lock on the aggregate, then its row, then the record (a
    /// statement of its own, so it sees a retry that committed while this one
    /// waited), then the same one-statement write as [`Pg::write`], inside one
    /// transaction. An advisory lock, not `select … for update`: locking a row
    /// gives the transaction its id at once, while it may still queue behind
    /// others, and positions follow transaction ids (see the module docs); a
    /// transaction that takes its id only once it holds the aggregate gets a
    /// higher one than every earlier holder, so one aggregate's events stay in
    /// version order.
    pub(crate) async fn write_locked<T, F>(
        &self,
        select: &str,
        params: Vec<Param>,
        request_id: &RequestId,
        decide: &F,
    ) -> Result<(T, bool), StoreError>
    where
        F: Fn(Option<RecordedRow>, Option<Row>) -> Result<LockedDecision<T>, StoreError>,
    {
        let mut lease = self.connections.acquire().await?;
        let mut tx = lease.begin().await.map_err(classify)?;
        sqlx::query("select pg_advisory_xact_lock($1)")
            .bind(aggregate_lock_key(self.context, &params))
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        let row = query(select, params)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?
            .map(Row::Postgres);
        let record = sqlx::query("select fingerprint, result from idempotency where request_id = $1")
            .bind(request_id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?
            .map(Row::Postgres);
        let recorded = match record {
            Some(record) => recorded_from(&record, 0)?,
            None => None,
        };
        match decide(recorded, row)? {
            LockedDecision::Answer(answer) => {
                // Release the row now rather than when the connection is reused.
                tx.rollback().await.map_err(classify)?;
                lease.release();
                Ok((answer, false))
            }
            LockedDecision::Write(write, answer) => {
                let written = self.write_on(&mut *tx, &locked_write(&write, request_id)).await?;
                if written == Written::NothingMatched {
                    return Err(held_row_changed());
                }
                tx.commit().await.map_err(classify)?;
                lease.release();
                Ok((answer, !write.outbox.is_empty()))
            }
        }
    }

    async fn write_on<'e, E>(&self, executor: E, write: &Write<'_>) -> Result<Written, StoreError>
    where
        E: sqlx::Executor<'e, Database = Postgres>,
    {
        let n = write.params.len();
        let p = |k: usize| n + k;
        let statement = format!(
            "with changed as ({aggregate} returning 1), \
             recorded as ( \
               insert into idempotency (request_id, fingerprint, result, created_at) \
               select ${r}, ${f}, ${res}, ${at} from changed \
             ), events as ( \
               insert into outbox (position, event_id, aggregate_id, aggregate_version, event_type, payload, \
                 occurred_at) \
               select pg_current_xact_id()::text::int8 * {per_tx} + e.n, e.event_id, e.aggregate_id, \
                 e.aggregate_version, e.event_type, e.payload::jsonb, e.occurred_at \
               from changed, \
                 unnest(${e1}::uuid[], ${e2}::uuid[], ${e3}::int8[], ${e4}::text[], ${e5}::text[], ${e6}::timestamptz[]) \
                 with ordinality as e(event_id, aggregate_id, aggregate_version, event_type, payload, occurred_at, n) \
             ) select count(*) from changed",
            aggregate = write.statement.postgres,
            r = p(1),
            f = p(2),
            res = p(3),
            at = p(4),
            e1 = p(5),
            e2 = p(6),
            e3 = p(7),
            e4 = p(8),
            e5 = p(9),
            e6 = p(10),
            per_tx = POSITIONS_PER_TRANSACTION,
        );
        let outbox = write.outbox;
        let versions = outbox
            .iter()
            .map(|m| version_to(m.aggregate_version))
            .collect::<Result<Vec<_>, _>>()?;
        let query = query(&statement, write.params.clone())
            .bind(write.request_id.as_str())
            .bind(write.fingerprint.as_bytes())
            .bind(sqlx::types::Json(&write.result))
            .bind(write.at)
            .bind(outbox.iter().map(|m| m.event_id).collect::<Vec<Uuid>>())
            .bind(outbox.iter().map(|m| m.aggregate_id).collect::<Vec<Uuid>>())
            .bind(versions)
            .bind(outbox.iter().map(|m| m.event_type).collect::<Vec<&str>>())
            .bind(
                outbox
                    .iter()
                    .map(|m| m.payload.to_string())
                    .collect::<Vec<String>>(),
            )
            .bind(
                outbox
                    .iter()
                    .map(|m| m.occurred_at)
                    .collect::<Vec<OffsetDateTime>>(),
            );
        let row = query.fetch_one(executor).await.map_err(classify)?;
        let written: i64 = sqlx::Row::try_get(&row, 0).map_err(|e| StoreError::Corrupt(e.into()))?;
        Ok(if written == 1 {
            Written::Applied
        } else {
            Written::NothingMatched
        })
    }

    /// Up to `limit` events after `position`, all below the visibility horizon.
    pub(crate) async fn events_after(&self, position: i64, limit: i64) -> Result<Vec<Row>, StoreError> {
        let sql = format!(
            "select position, event_id, aggregate_id, aggregate_version, event_type, payload, occurred_at \
             from outbox where position > $1 and position < {HORIZON} order by position limit $2"
        );
        self.fetch_all(&sql, vec![Param::Int(position), Param::Int(limit)])
            .await
    }

    /// Whether events after `position` have committed but are held back by an
    /// older transaction still running.
    pub(crate) async fn held_back(&self, position: i64) -> Result<bool, StoreError> {
        let sql =
            format!("select exists (select 1 from outbox where position > $1 and position >= {HORIZON})");
        let row = self.fetch_one(&sql, vec![Param::Int(position)]).await?;
        row.get::<bool>(0)
    }

    /// Starts the context's one watcher: a task that looks at the outbox's
    /// highest position every `WATCH_EVERY` and bumps `feed` when it moved (any
    /// process may have written).
    pub(crate) async fn watch(
        &self,
        context: &'static str,
        feed: watch::Sender<u64>,
    ) -> Result<JoinHandle<()>, StoreError> {
        let highest = "select coalesce(max(position), 0) from outbox";
        let mut seen = self.fetch_one(highest, Vec::new()).await?.int(0)?;
        let pg = self.clone();
        Ok(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(WATCH_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match pg.fetch_one(highest, Vec::new()).await.and_then(|row| row.int(0)) {
                    Ok(now) if now != seen => {
                        seen = now;
                        feed.send_modify(|n| *n = n.wrapping_add(1));
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(context, %error, "event watcher cannot read the outbox"),
                }
            }
        }))
    }

    pub(crate) async fn purge_batch(&self, cutoff: OffsetDateTime, batch: i64) -> Result<u64, StoreError> {
        let mut lease = self.connections.acquire().await?;
        let done = sqlx::query(
            "delete from idempotency where request_id in \
             (select request_id from idempotency where created_at < $1 limit $2)",
        )
        .bind(cutoff)
        .bind(batch)
        .execute(&mut *lease)
        .await
        .map_err(classify)?;
        lease.release();
        Ok(done.rows_affected())
    }
}
