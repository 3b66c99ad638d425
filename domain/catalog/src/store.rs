//! What the PostgreSQL and SQLite adapters share: opening a store from a URL,
//! migrations, row mapping and error classification.

use std::{path::Path, sync::Arc};

use sqlx::{
    ColumnIndex, Decode, Row, SqlSafeStr, Type,
    error::ErrorKind,
    migrate::{Migration, MigrationType, Migrator},
};
use strata_kernel::error::BoxError;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{Product, ProductSnapshot, ProductStatus};
use crate::repository::{ProductRepository, RecordedCommand, StoreError, StoredEvent};

/// The context's name in configuration, schemas and migration tables.
pub const CONTEXT: &str = "catalog";

/// The columns every product query selects, in [`product_from_row`]'s order, as a
/// literal so that queries stay `&'static str` (`concat!(…, product_columns!(), …)`).
macro_rules! product_columns {
    () => {
        "id, sku, name, description, price_minor, currency, status, version, created_at, updated_at"
    };
}
pub(crate) use product_columns;

/// Where a context's data lives and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// `postgres://…` or `sqlite://…`.
    pub url: String,
    /// Most connections a PostgreSQL pool opens; `None`: eight per core.
    pub max_connections: Option<u32>,
}

impl StoreConfig {
    /// The store at `url`, with default pool settings.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: None,
        }
    }
}

/// Opens the store `config` names and brings its schema up to date.
///
/// # Errors
/// When the URL has another scheme, the store cannot be reached, or a migration fails.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn ProductRepository>, OpenError> {
    let url = config.url.as_str();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(
            crate::postgres::PgProducts::connect(url, config.max_connections).await?,
        ))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(crate::sqlite::SqliteProducts::connect(url).await?))
    } else {
        Err(OpenError::UnsupportedUrl)
    }
}

/// The SQLite URL of the catalog's embedded database file in `data_dir`.
#[must_use]
pub fn embedded_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join(format!("{CONTEXT}.db")).display())
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
    #[error("migrating the {CONTEXT} schema failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// The context's migrations for one backend, embedded in the binary, tracked in
/// a migrations table of the context's own.
pub(crate) fn migrator(sources: &[(i64, &'static str, &'static str)], table: &'static str) -> Migrator {
    let migrations = sources
        .iter()
        .map(|&(version, description, sql)| {
            Migration::new(
                version,
                description.into(),
                MigrationType::Simple,
                SqlSafeStr::into_sql_str(sql),
                false,
            )
        })
        .collect();
    let mut migrator = Migrator::with_migrations(migrations);
    migrator.dangerous_set_table_name(table);
    migrator
}

/// Reads a product row selected with [`product_columns!`], whatever the backend.
pub(crate) fn product_from_row<'r, R>(row: &'r R) -> Result<Product, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    Uuid: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    &'r str: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    OffsetDateTime: Decode<'r, R::Database> + Type<R::Database>,
{
    let status: &str = row.try_get(6).map_err(other)?;
    let version: i64 = row.try_get(7).map_err(other)?;
    let snapshot = ProductSnapshot {
        id: row.try_get(0).map_err(other)?,
        sku: row.try_get(1).map_err(other)?,
        name: row.try_get(2).map_err(other)?,
        description: row.try_get(3).map_err(other)?,
        price_minor: row.try_get(4).map_err(other)?,
        currency: row.try_get(5).map_err(other)?,
        status: ProductStatus::from_stored(status)
            .ok_or_else(|| StoreError::Other(format!("unknown product status {status:?}").into()))?,
        version: u64::try_from(version).map_err(other)?,
        created_at: row.try_get(8).map_err(other)?,
        updated_at: row.try_get(9).map_err(other)?,
    };
    Product::restore(snapshot)
        .map_err(|violation| StoreError::Other(format!("corrupt product row: {violation}").into()))
}

/// Reads an outbox row selected as `position, aggregate_id, aggregate_version,
/// event_type, payload`, whatever the backend.
pub(crate) fn event_from_row<'r, R>(row: &'r R) -> Result<StoredEvent, StoreError>
where
    R: Row,
    usize: ColumnIndex<R>,
    Uuid: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    sqlx::types::Json<serde_json::Value>: Decode<'r, R::Database> + Type<R::Database>,
{
    let payload: sqlx::types::Json<serde_json::Value> = row.try_get(4).map_err(other)?;
    Ok(StoredEvent {
        position: row.try_get(0).map_err(other)?,
        aggregate_id: row.try_get(1).map_err(other)?,
        aggregate_version: version_from(row.try_get(2).map_err(other)?)?,
        event_type: row.try_get(3).map_err(other)?,
        payload: payload.0,
    })
}

/// An idempotency record read back: the command's fingerprint and the product
/// it left, re-checked like any stored product.
pub(crate) fn recorded_command(
    fingerprint: Vec<u8>,
    result: ProductSnapshot,
) -> Result<RecordedCommand, StoreError> {
    Ok(RecordedCommand {
        fingerprint: strata_kernel::Fingerprint::new(fingerprint),
        product: Product::restore(result)
            .map_err(|v| StoreError::Other(format!("corrupt idempotency record: {v}").into()))?,
    })
}

/// A stored version read back as a domain [`strata_kernel::Version`].
pub(crate) fn version_from(value: i64) -> Result<strata_kernel::Version, StoreError> {
    u64::try_from(value)
        .map(strata_kernel::Version::new)
        .map_err(other)
}

/// A domain version as the signed integer stores keep.
pub(crate) fn version_to(version: strata_kernel::Version) -> Result<i64, StoreError> {
    i64::try_from(version.get()).map_err(other)
}

fn other(error: impl Into<BoxError>) -> StoreError {
    StoreError::Other(error.into())
}

/// Sorts a driver error into what the context can act on: a unique violation of
/// the sku or the request id, a store that cannot be reached, or anything else.
pub(crate) fn classify(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation => {
            // PostgreSQL names the constraint; SQLite names the column in the message.
            let on_sku = db.constraint() == Some("product_sku_key") || db.message().contains("product.sku");
            let on_request = db.constraint() == Some("idempotency_pkey")
                || db.message().contains("idempotency.request_id");
            if on_sku {
                StoreError::DuplicateSku
            } else if on_request {
                StoreError::RequestAlreadyRecorded
            } else {
                StoreError::Other(error.into())
            }
        }
        sqlx::Error::Database(db) if is_transient(db.code().as_deref()) => {
            StoreError::Unavailable(error.into())
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error.into()),
        _ => StoreError::Other(error.into()),
    }
}

/// Database error codes that mean "try again later" rather than "this is wrong":
/// PostgreSQL connection exceptions (08…), insufficient resources (53…), operator
/// intervention (57P…), serialization failures and deadlocks (40…); SQLite's
/// BUSY (5) and LOCKED (6), with or without extended codes.
fn is_transient(code: Option<&str>) -> bool {
    let Some(code) = code else { return false };
    (code.len() == 5 && ["08", "53", "57P", "40"].iter().any(|class| code.starts_with(class)))
        // SQLite's codes are short numbers; PostgreSQL's are always five characters.
        || (code.len() < 5 && code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6)))
}

/// The [`ProductRepository`] implementation both adapters share: the reads are
/// the same statement text on both backends (`$n` placeholders, JSON through
/// `sqlx::types::Json`), so they are written once and expanded per pool type.
/// The command path differs and each adapter writes it as inherent methods:
/// `read_for_command` (the idempotency record and the product) and `write`
/// (the atomic change).
macro_rules! product_repository {
    ($store:ident) => {
        mod product_repository {
            use sqlx::Row;
            use strata_kernel::RequestId;
            use $crate::domain::{Product, ProductId};
            use $crate::repository::{
                ProductChange, ProductQuery, ProductRepository, RecordedCommand, StoreError, StoredEvent,
            };
            use $crate::store::{
                classify, event_from_row, product_columns, product_from_row, recorded_command,
            };

            #[async_trait::async_trait]
            impl ProductRepository for super::$store {
                async fn get(&self, id: ProductId) -> Result<Option<Product>, StoreError> {
                    let row = sqlx::query(concat!(
                        "select ",
                        product_columns!(),
                        " from product where id = $1"
                    ))
                    .bind(id.as_uuid())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(classify)?;
                    row.as_ref().map(product_from_row).transpose()
                }

                async fn list(&self, query: &ProductQuery) -> Result<Vec<Product>, StoreError> {
                    let rows = sqlx::query(concat!(
                        "select ",
                        product_columns!(),
                        " from product where ($1 is null or status = $1) and ($2 is null or id > $2)",
                        " order by id limit $3"
                    ))
                    .bind(query.status.map(|s| s.as_str()))
                    .bind(query.after.map(|id| id.as_uuid()))
                    .bind(i64::from(query.limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(classify)?;
                    rows.iter().map(product_from_row).collect()
                }

                async fn recorded(
                    &self,
                    request_id: &RequestId,
                ) -> Result<Option<RecordedCommand>, StoreError> {
                    let row =
                        sqlx::query("select fingerprint, result from idempotency where request_id = $1")
                            .bind(request_id.as_str())
                            .fetch_optional(&self.pool)
                            .await
                            .map_err(classify)?;
                    let Some(row) = row else { return Ok(None) };
                    let fingerprint: Vec<u8> = row.try_get(0).map_err(classify)?;
                    let result: sqlx::types::Json<$crate::domain::ProductSnapshot> =
                        row.try_get(1).map_err(classify)?;
                    recorded_command(fingerprint, result.0).map(Some)
                }

                async fn load_for_command(
                    &self,
                    id: ProductId,
                    request_id: &RequestId,
                ) -> Result<(Option<RecordedCommand>, Option<Product>), StoreError> {
                    self.read_for_command(id, request_id).await
                }

                async fn save(&self, change: ProductChange<'_>) -> Result<(), StoreError> {
                    self.write(change).await
                }

                async fn events_after(
                    &self,
                    position: i64,
                    limit: u32,
                ) -> Result<Vec<StoredEvent>, StoreError> {
                    let rows = sqlx::query(
                        "select position, aggregate_id, aggregate_version, event_type, payload from outbox \
                     where position > $1 order by position limit $2",
                    )
                    .bind(position)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(classify)?;
                    rows.iter().map(event_from_row).collect()
                }
            }
        }
    };
}
pub(crate) use product_repository;
