//! What a store can do wrong, sorted so that a context acts on it: a unique
//! value taken, a retry that raced its first attempt, contention, a timeout, an
//! unreachable store, or a bug.

use std::sync::Arc;

use sqlx::error::ErrorKind;
use strata_kernel::{Error, error::BoxError, execute::SaveError};

/// Why a store refused or failed a statement.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write. PostgreSQL names the constraint;
    /// SQLite names the columns (`product.sku`), see [`StoreError::is_unique`].
    #[error("unique constraint {} refused the write", .constraint.as_deref().or(.columns.as_deref()).unwrap_or("?"))]
    UniqueViolation {
        /// The constraint's name (PostgreSQL).
        constraint: Option<String>,
        /// `table.column`, comma-separated (SQLite).
        columns: Option<String>,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A command with this request id was already recorded (by a concurrent retry).
    #[error("request id already recorded")]
    RequestAlreadyRecorded,
    /// Serialization failures or deadlocks persisted after the bounded retries.
    #[error("contention persisted after retries")]
    Contention(#[source] sqlx::Error),
    /// A statement ran past its time limit and was cancelled.
    #[error("statement timed out")]
    Timeout(#[source] sqlx::Error),
    /// The store cannot be reached or is overloaded; retrying may help.
    #[error("store unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A stored value does not read back as expected: a bug or a corrupt row.
    #[error("corrupt stored data")]
    Corrupt(#[source] BoxError),
    /// Anything else the driver reported.
    #[error("store failure")]
    Other(#[source] sqlx::Error),
    /// The failure of a statement that served several callers (a batched
    /// read, see [`crate::batch`]): each of them gets this same error.
    #[error(transparent)]
    Shared(Arc<StoreError>),
}

impl StoreError {
    /// Whether this is a unique violation of the constraint named `constraint`
    /// (PostgreSQL) whose columns are `columns` (`"product.sku"`, SQLite).
    #[must_use]
    pub fn is_unique(&self, constraint: &str, columns: &str) -> bool {
        match self {
            Self::UniqueViolation {
                constraint: named,
                columns: on,
                ..
            } => named.as_deref() == Some(constraint) || on.as_deref() == Some(columns),
            _ => false,
        }
    }

    /// Whether retrying the whole statement or transaction may succeed at once:
    /// a serialization failure (40001) or a deadlock (40P01), or SQLite busy.
    pub(crate) fn is_contention(error: &sqlx::Error) -> bool {
        match error {
            sqlx::Error::Database(db) => {
                matches!(db.code().as_deref(), Some("40001" | "40P01"))
                    || db.code().as_deref().and_then(sqlite_primary_code) == Some(SQLITE_BUSY)
            }
            _ => false,
        }
    }
}

const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;

/// SQLite's codes are short numbers (the extended ones carry the primary code
/// in their low byte); PostgreSQL's are always five characters.
fn sqlite_primary_code(code: &str) -> Option<i32> {
    (code.len() < 5)
        .then(|| code.parse::<i32>().ok())
        .flatten()
        .map(|c| c & 0xff)
}

/// Sorts a driver error. `idempotency_pkey` / `idempotency.request_id` is the
/// shared idempotency table's key: a concurrent retry recorded the command first.
pub(crate) fn classify(error: sqlx::Error) -> StoreError {
    if StoreError::is_contention(&error) {
        return StoreError::Contention(error);
    }
    match &error {
        sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation => {
            let constraint = db.constraint().map(str::to_owned);
            // SQLite: "UNIQUE constraint failed: product.sku"
            let columns = db
                .message()
                .strip_prefix("UNIQUE constraint failed: ")
                .map(|columns| columns.replace(' ', ""));
            if constraint.as_deref() == Some("idempotency_pkey")
                || columns.as_deref() == Some("idempotency.request_id")
            {
                return StoreError::RequestAlreadyRecorded;
            }
            StoreError::UniqueViolation {
                constraint,
                columns,
                source: error,
            }
        }
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            if code == "57014" {
                StoreError::Timeout(error)
            } else if (code.len() == 5 && ["08", "53", "57P"].iter().any(|class| code.starts_with(class)))
                || sqlite_primary_code(code) == Some(SQLITE_LOCKED)
            {
                // Connection exceptions, insufficient resources, operator
                // intervention (the server shutting down), a locked SQLite file.
                StoreError::Unavailable(error)
            } else {
                StoreError::Other(error)
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error),
        _ => StoreError::Other(error),
    }
}

impl From<StoreError> for Error {
    /// A failure a caller sees unrefined (a context turns the refusals it
    /// understands, such as a unique value taken, into its own errors first).
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(source) => Self::Unavailable(source.into()),
            StoreError::Timeout(source) => Self::DeadlineExceeded(source.into()),
            StoreError::Contention(source) => Self::Contention(source.into()),
            // The same kind as the failure itself, the shared error as source.
            StoreError::Shared(shared) => match *shared {
                StoreError::Unavailable(_) => Self::Unavailable(Box::new(shared)),
                StoreError::Timeout(_) => Self::DeadlineExceeded(Box::new(shared)),
                StoreError::Contention(_) => Self::Contention(Box::new(shared)),
                _ => Self::Internal(Box::new(shared)),
            },
            other => Self::Internal(other.into()),
        }
    }
}

impl From<StoreError> for SaveError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::RequestAlreadyRecorded => Self::RequestAlreadyRecorded,
            other => Self::Failed(other.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use strata_kernel::Error;

    use super::StoreError;

    #[test]
    fn a_shared_failure_keeps_its_kind() {
        let shared = |error| Error::from(StoreError::Shared(Arc::new(error)));
        assert!(matches!(
            shared(StoreError::Unavailable(sqlx::Error::PoolTimedOut)),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            shared(StoreError::Timeout(sqlx::Error::PoolTimedOut)),
            Error::DeadlineExceeded(_)
        ));
        assert!(matches!(
            shared(StoreError::Contention(sqlx::Error::PoolTimedOut)),
            Error::Contention(_)
        ));
        assert!(matches!(
            shared(StoreError::Corrupt("bad row".into())),
            Error::Internal(_)
        ));
        // It reads as the failure itself.
        let error = StoreError::Shared(Arc::new(StoreError::Timeout(sqlx::Error::PoolTimedOut)));
        assert_eq!(error.to_string(), "statement timed out");
    }
}
