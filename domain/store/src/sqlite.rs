//! The SQLite backend: the embedded store, one database file per context, so
//! the whole system runs with no server installed. SQLite has one writer at a
//! time, so event positions are handed out in commit order by construction;
//! followers are woken by the writes of this process (an embedded file has no
//! other writer).

use std::{str::FromStr, time::Duration};

use sqlx::{
    Sqlite, SqliteConnection, SqlitePool,
    query::Query,
    sqlite::{
        SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    },
};
use time::OffsetDateTime;

use strata_kernel::RequestId;

use crate::{
    ContextSchema, LockedDecision, OpenError, Param, RecordedRow, Row, STORE_SQLITE, StoreConfig, StoreError,
    Write, Written, error::classify, held_row_changed, locked_write, migrator, recorded_from,
    value::version_to,
};

fn query(sql: &str, params: Vec<Param>) -> Query<'_, Sqlite, SqliteArguments> {
    params
        .into_iter()
        .fold(sqlx::query(sqlx::AssertSqlSafe(sql)), |q, p| p.bind_sqlite(q))
}

pub(crate) async fn open(context: &ContextSchema, config: &StoreConfig) -> Result<SqlitePool, OpenError> {
    let options = SqliteConnectOptions::from_str(config.url.expose())
        .map_err(OpenError::InvalidUrl)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(config.max_connections.max(1))
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(OpenError::Connect)?;
    let migrate = |source| OpenError::Migrate {
        context: context.name,
        source,
    };
    migrator(context.sqlite, "_strata_migrations")
        .run(&pool)
        .await
        .map_err(migrate)?;
    migrator(STORE_SQLITE, "_strata_store_migrations")
        .run(&pool)
        .await
        .map_err(migrate)?;
    Ok(pool)
}

pub(crate) async fn fetch_optional(
    pool: &SqlitePool,
    sql: &str,
    params: Vec<Param>,
) -> Result<Option<Row>, StoreError> {
    let row = query(sql, params).fetch_optional(pool).await.map_err(classify)?;
    Ok(row.map(Row::Sqlite))
}

pub(crate) async fn fetch_one(pool: &SqlitePool, sql: &str, params: Vec<Param>) -> Result<Row, StoreError> {
    let row = query(sql, params).fetch_one(pool).await.map_err(classify)?;
    Ok(Row::Sqlite(row))
}

pub(crate) async fn fetch_all(
    pool: &SqlitePool,
    sql: &str,
    params: Vec<Param>,
) -> Result<Vec<Row>, StoreError> {
    let rows = query(sql, params).fetch_all(pool).await.map_err(classify)?;
    Ok(rows.into_iter().map(Row::Sqlite).collect())
}

/// One transaction: the idempotency record first (so a concurrent retry of the
/// same command finds the key taken), then the aggregate statement, then the
/// outbox rows. Dropping the transaction on any early return rolls it back.
pub(crate) async fn write(pool: &SqlitePool, write: &Write<'_>) -> Result<Written, StoreError> {
    let mut tx = pool.begin().await.map_err(classify)?;
    let written = write_on(&mut tx, write).await?;
    if written == Written::Applied {
        tx.commit().await.map_err(classify)?;
    }
    Ok(written)
}

/// The locked command path (see `Store::write_locked`): `BEGIN IMMEDIATE`
/// takes the file's write lock before the read (a plain `BEGIN` would read
/// under a shared lock and fail to upgrade it when another writer got there
/// first), so the read, the decision and the write see no concurrent writer;
/// waiting for the lock is bounded by the busy timeout.
pub(crate) async fn write_locked<T, F>(
    pool: &SqlitePool,
    select: &str,
    params: Vec<Param>,
    request_id: &RequestId,
    decide: &F,
) -> Result<(T, bool), StoreError>
where
    F: Fn(Option<RecordedRow>, Option<Row>) -> Result<LockedDecision<T>, StoreError>,
{
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
    let row = query(select, params)
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?
        .map(Row::Sqlite);
    let record = sqlx::query("select fingerprint, result from idempotency where request_id = $1")
        .bind(request_id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?
        .map(Row::Sqlite);
    let recorded = match record {
        Some(record) => recorded_from(&record, 0)?,
        None => None,
    };
    match decide(recorded, row)? {
        LockedDecision::Answer(answer) => {
            tx.rollback().await.map_err(classify)?;
            Ok((answer, false))
        }
        LockedDecision::Write(write, answer) => {
            let written = write_on(&mut tx, &locked_write(&write, request_id)).await?;
            if written == Written::NothingMatched {
                return Err(held_row_changed());
            }
            tx.commit().await.map_err(classify)?;
            Ok((answer, !write.outbox.is_empty()))
        }
    }
}

/// The three steps of a write inside the caller's transaction; the caller
/// commits only when they were [`Written::Applied`].
async fn write_on(tx: &mut SqliteConnection, write: &Write<'_>) -> Result<Written, StoreError> {
    let recorded = sqlx::query(
        "insert into idempotency (request_id, fingerprint, result, created_at) \
         values ($1, $2, $3, $4) on conflict (request_id) do nothing",
    )
    .bind(write.request_id.as_str())
    .bind(write.fingerprint.as_bytes())
    .bind(sqlx::types::Json(&write.result))
    .bind(write.at)
    .execute(&mut *tx)
    .await
    .map_err(classify)?;
    if recorded.rows_affected() == 0 {
        return Err(StoreError::RequestAlreadyRecorded);
    }
    let changed = query(write.statement.sqlite, write.params.clone())
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    if changed.rows_affected() == 0 {
        return Ok(Written::NothingMatched);
    }
    for message in write.outbox {
        sqlx::query(
            "insert into outbox (event_id, aggregate_id, aggregate_version, event_type, payload, occurred_at) \
             values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(message.event_id)
        .bind(message.aggregate_id)
        .bind(version_to(message.aggregate_version)?)
        .bind(message.event_type)
        .bind(sqlx::types::Json(&message.payload))
        .bind(message.occurred_at)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    }
    Ok(Written::Applied)
}

pub(crate) async fn purge_batch(
    pool: &SqlitePool,
    cutoff: OffsetDateTime,
    batch: i64,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "delete from idempotency where rowid in \
         (select rowid from idempotency where created_at < $1 limit $2)",
    )
    .bind(cutoff)
    .bind(batch)
    .execute(pool)
    .await
    .map_err(classify)?;
    Ok(done.rows_affected())
}
