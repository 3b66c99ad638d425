//! The PostgreSQL adapter of [`ProductRepository`]: the production store.
//!
//! The context's tables live in the `catalog` schema, which every pooled
//! connection has as its `search_path`, so the catalog can share a database with
//! other contexts without sharing a table with them.

use std::{str::FromStr, time::Duration};

use sqlx::{
    ConnectOptions, Connection, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::store::{CONTEXT, OpenError, migrator};

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

crate::store::product_repository!(PgProducts);
