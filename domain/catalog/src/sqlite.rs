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

use crate::store::{OpenError, migrator};

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

crate::store::product_repository!(SqliteProducts);
