//! The PostgreSQL adapter of [`ProductRepository`]: the production store.
//!
//! The context's tables live in the `catalog` schema, which every pooled
//! connection has as its `search_path`, so the catalog can share a database with
//! other contexts without sharing a table with them.

use std::{str::FromStr, time::Duration};

use async_trait::async_trait;
use sqlx::{
    ConnectOptions, Connection, PgPool, Row,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use strata_kernel::RequestId;

use crate::domain::{Product, ProductId};
use crate::repository::{
    ProductChange, ProductQuery, ProductRepository, RecordedCommand, StoreError, StoredEvent,
};
use crate::store::{
    CONTEXT, OpenError, classify, event_from_row, migrator, product_columns, product_from_result,
    product_from_row, result_json, version_from, version_to,
};

const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "create product",
    include_str!("../../../migrations/catalog/postgres/0001_create_product.sql"),
)];

/// Products in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgProducts {
    pool: PgPool,
}

impl PgProducts {
    /// Connects to `url`, creates the `catalog` schema if needed and applies the
    /// context's migrations (tracked in `catalog._strata_migrations`).
    ///
    /// # Errors
    /// [`OpenError`] when the URL is invalid, the server does not answer or a
    /// migration fails.
    pub async fn connect(url: &str) -> Result<Self, OpenError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(OpenError::InvalidUrl)?
            .options([("search_path", CONTEXT)]);
        // One plain connection first: the pool would report any failure as a
        // time-out, this names the cause (refused, unknown host, bad password).
        options
            .connect()
            .await
            .map_err(OpenError::Connect)?
            .close()
            .await
            .map_err(OpenError::Connect)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            // A broken connection surfaces as UNAVAILABLE on first use and is then
            // dropped; a ping before every acquire would cost a round trip per request.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(OpenError::Connect)?;
        let mut migrator = migrator(MIGRATIONS, "catalog._strata_migrations");
        migrator.create_schema(CONTEXT);
        migrator.run(&pool).await.map_err(OpenError::Migrate)?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl ProductRepository for PgProducts {
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
            " from product where ($1::text is null or status = $1) and ($2::uuid is null or id > $2)",
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

    async fn recorded(&self, request_id: &RequestId) -> Result<Option<RecordedCommand>, StoreError> {
        let row = sqlx::query("select fingerprint, result::text from idempotency where request_id = $1")
            .bind(request_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        let Some(row) = row else { return Ok(None) };
        let fingerprint: Vec<u8> = row.try_get(0).map_err(classify)?;
        let result: &str = row.try_get(1).map_err(classify)?;
        Ok(Some(RecordedCommand {
            fingerprint: strata_kernel::Fingerprint::new(fingerprint),
            product: product_from_result(result)?,
        }))
    }

    async fn save(&self, change: ProductChange<'_>) -> Result<(), StoreError> {
        let product = change.product;
        let snapshot = product.snapshot();
        let version = version_to(strata_kernel::AggregateRoot::version(product))?;
        let mut tx = self.pool.begin().await.map_err(classify)?;

        // The idempotency record first: a concurrent retry of the same command
        // blocks here on the key and then finds it taken.
        let recorded = sqlx::query(
            "insert into idempotency (request_id, fingerprint, result, created_at) \
             values ($1, $2, $3::jsonb, $4) on conflict (request_id) do nothing",
        )
        .bind(change.request_id.as_str())
        .bind(change.fingerprint.as_bytes())
        .bind(result_json(product)?)
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
                 values ($1, $2, $3, $4::jsonb, $5)",
            )
            .bind(message.aggregate_id)
            .bind(version_to(message.aggregate_version)?)
            .bind(message.event_type)
            .bind(message.payload.to_string())
            .bind(message.occurred_at)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)
    }

    async fn events_after(&self, position: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = sqlx::query(
            "select position, aggregate_id, aggregate_version, event_type, payload::text from outbox \
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
