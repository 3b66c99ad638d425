//! The SQLite adapter of [`ProductRepository`]: the embedded store, one database
//! file per context, so the whole system runs with no server installed.
//!
//! It mirrors [`crate::postgres`] statement for statement; only the dialect
//! differs (placeholders, column types), and the contract suite holds both to the
//! same behaviour.

use std::{str::FromStr, time::Duration};

use sqlx::{
    SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use strata_kernel::RequestId;

use crate::domain::{Product, ProductId};
use crate::repository::{ProductChange, ProductRepository, RecordedCommand, StoreError};
use crate::store::{OpenError, classify, migrator, version_from, version_to};

const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "create product",
    include_str!("../../../migrations/catalog/sqlite/0001_create_product.sql"),
)];

/// Products in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteProducts {
    pool: SqlitePool,
}

impl SqliteProducts {
    /// Opens (creating if needed) the database file named by `url` and applies the
    /// context's migrations (tracked in `_strata_migrations`).
    ///
    /// # Errors
    /// [`OpenError`] when the URL is invalid, the file cannot be opened or a
    /// migration fails.
    pub async fn connect(url: &str) -> Result<Self, OpenError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(OpenError::InvalidUrl)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(OpenError::Connect)?;
        migrator(MIGRATIONS, "_strata_migrations")
            .run(&pool)
            .await
            .map_err(OpenError::Migrate)?;
        Ok(Self { pool })
    }
}

impl SqliteProducts {
    async fn read_for_command(
        &self,
        id: ProductId,
        request_id: &RequestId,
    ) -> Result<(Option<RecordedCommand>, Option<Product>), StoreError> {
        // Two reads of a local file: nothing to gain from folding them.
        Ok((self.recorded(request_id).await?, self.get(id).await?))
    }

    /// One transaction: idempotency record first (so a concurrent retry of the
    /// same command finds the key taken), then the version-checked change of the
    /// product, then its outbox rows.
    async fn write(&self, change: ProductChange<'_>) -> Result<(), StoreError> {
        let product = change.product;
        let snapshot = product.snapshot();
        let version = version_to(strata_kernel::AggregateRoot::version(product))?;
        let mut tx = self.pool.begin().await.map_err(classify)?;

        // The idempotency record first: a concurrent retry of the same command
        // blocks here on the key and then finds it taken.
        let recorded = sqlx::query(
            "insert into idempotency (request_id, fingerprint, result, created_at) \
             values ($1, $2, $3, $4) on conflict (request_id) do nothing",
        )
        .bind(change.request_id.as_str())
        .bind(change.fingerprint.as_bytes())
        .bind(sqlx::types::Json(product.snapshot()))
        .bind(snapshot.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        if recorded.rows_affected() == 0 {
            return Err(StoreError::RequestAlreadyRecorded);
        }

        match change.replaces {
            None => {
                sqlx::query(
                    "insert into product (id, sku, name, description, price_minor, currency, status, version, \
                     created_at, updated_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(snapshot.id)
                .bind(&snapshot.sku)
                .bind(&snapshot.name)
                .bind(&snapshot.description)
                .bind(snapshot.price_minor)
                .bind(&snapshot.currency)
                .bind(snapshot.status.as_str())
                .bind(version)
                .bind(snapshot.created_at)
                .bind(snapshot.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            }
            Some(replaces) => {
                let updated = sqlx::query(
                    "update product set name = $3, description = $4, price_minor = $5, currency = $6, \
                     status = $7, version = $8, updated_at = $9 where id = $1 and version = $2",
                )
                .bind(snapshot.id)
                .bind(version_to(replaces)?)
                .bind(&snapshot.name)
                .bind(&snapshot.description)
                .bind(snapshot.price_minor)
                .bind(&snapshot.currency)
                .bind(snapshot.status.as_str())
                .bind(version)
                .bind(snapshot.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
                if updated.rows_affected() == 0 {
                    let current: Option<i64> =
                        sqlx::query_scalar("select version from product where id = $1")
                            .bind(snapshot.id)
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(classify)?;
                    return Err(match current {
                        None => StoreError::NotFound,
                        Some(current) => StoreError::VersionConflict {
                            current: version_from(current)?,
                        },
                    });
                }
            }
        }

        for message in change.outbox {
            sqlx::query(
                "insert into outbox (aggregate_id, aggregate_version, event_type, payload, occurred_at) \
                 values ($1, $2, $3, $4, $5)",
            )
            .bind(message.aggregate_id)
            .bind(version_to(message.aggregate_version)?)
            .bind(message.event_type)
            .bind(sqlx::types::Json(&message.payload))
            .bind(message.occurred_at)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)
    }
}

crate::store::product_repository!(SqliteProducts);
