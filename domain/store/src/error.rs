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
    /// A stored value that does not read back as expected, saying what.
    pub fn corrupt(what: impl std::fmt::Display) -> Self {
        Self::Corrupt(what.to_string().into())
    }

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
    use std::{borrow::Cow, sync::Arc};

    use sqlx::error::{DatabaseError, ErrorKind};
    use strata_kernel::{Error, execute::SaveError};

    use super::{StoreError, classify};

    /// A driver's database error as PostgreSQL or SQLite report it: a code, a
    /// kind, a message and, on PostgreSQL, the constraint's name.
    #[derive(Debug)]
    struct Db {
        code: &'static str,
        unique: bool,
        message: &'static str,
        constraint: Option<&'static str>,
    }

    impl std::fmt::Display for Db {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.message)
        }
    }

    impl std::error::Error for Db {}

    impl DatabaseError for Db {
        fn message(&self) -> &str {
            self.message
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.code))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn constraint(&self) -> Option<&str> {
            self.constraint
        }
        fn kind(&self) -> ErrorKind {
            if self.unique {
                ErrorKind::UniqueViolation
            } else {
                ErrorKind::Other
            }
        }
    }

    /// A database error with `code` and nothing else.
    fn code(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(Db {
            code,
            unique: false,
            message: "failed",
            constraint: None,
        }))
    }

    /// A unique violation, of the PostgreSQL constraint `constraint` or, with
    /// `None`, as SQLite reports it (`message` names the columns).
    fn unique(code: &'static str, constraint: Option<&'static str>, message: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(Db {
            code,
            unique: true,
            message,
            constraint,
        }))
    }

    fn kind(error: &StoreError) -> &'static str {
        match error {
            StoreError::UniqueViolation { .. } => "unique",
            StoreError::RequestAlreadyRecorded => "recorded",
            StoreError::Contention(_) => "contention",
            StoreError::Timeout(_) => "timeout",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Corrupt(_) => "corrupt",
            StoreError::Other(_) => "other",
            StoreError::Shared(_) => "shared",
        }
    }

    #[test]
    fn driver_errors_are_sorted_by_what_a_context_does_about_them() {
        for (error, expected) in [
            // Retried at once: serialization failure, deadlock, SQLite busy
            // (also its extended codes, whose low byte is 5).
            (code("40001"), "contention"),
            (code("40P01"), "contention"),
            (code("5"), "contention"),
            (code("261"), "contention"),
            (code("517"), "contention"),
            // PostgreSQL cancelled the statement at its time limit.
            (code("57014"), "timeout"),
            // Connection exceptions, insufficient resources, the server
            // shutting down, a locked SQLite file: retrying later may help.
            (code("08006"), "unavailable"),
            (code("53300"), "unavailable"),
            (code("57P01"), "unavailable"),
            (code("6"), "unavailable"),
            (code("262"), "unavailable"),
            (sqlx::Error::PoolTimedOut, "unavailable"),
            (sqlx::Error::PoolClosed, "unavailable"),
            (sqlx::Error::WorkerCrashed, "unavailable"),
            (
                sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into()),
                "unavailable",
            ),
            // Anything else is a failure: a foreign key, a permission refused
            // (42501: five digits whose low byte is SQLite's busy code, 5), a
            // syntax error, a class merely starting like another (0800 is not
            // a PostgreSQL code), a row that is not there.
            (code("23503"), "other"),
            (code("42501"), "other"),
            (code("42601"), "other"),
            (code("0800"), "other"),
            (code("1"), "other"),
            (sqlx::Error::RowNotFound, "other"),
        ] {
            let shown = format!("{error:?}");
            assert_eq!(kind(&classify(error)), expected, "{shown}");
        }
    }

    #[test]
    fn a_unique_violation_names_its_constraint_or_its_columns() {
        let postgres = classify(unique(
            "23505",
            Some("product_sku_key"),
            "duplicate key value violates unique constraint \"product_sku_key\"",
        ));
        assert_eq!(kind(&postgres), "unique");
        assert!(postgres.is_unique("product_sku_key", "product.sku"));
        assert!(!postgres.is_unique("account_email_key", "account.email"));

        let sqlite = classify(unique("2067", None, "UNIQUE constraint failed: product.sku"));
        assert_eq!(kind(&sqlite), "unique");
        assert!(sqlite.is_unique("product_sku_key", "product.sku"));
        assert!(!sqlite.is_unique("account_email_key", "account.email"));
        // SQLite lists the columns of a composite key with ", ".
        let composite = classify(unique(
            "2067",
            None,
            "UNIQUE constraint failed: stock.sku, stock.warehouse",
        ));
        assert!(composite.is_unique("stock_key", "stock.sku,stock.warehouse"));

        // A unique violation of the shared idempotency table: a concurrent
        // retry recorded the command first.
        for recorded in [
            unique("23505", Some("idempotency_pkey"), "duplicate key value"),
            unique("1555", None, "UNIQUE constraint failed: idempotency.request_id"),
        ] {
            assert_eq!(kind(&classify(recorded)), "recorded");
        }

        // Nothing else is a unique violation.
        assert!(!StoreError::Other(sqlx::Error::RowNotFound).is_unique("product_sku_key", "product.sku"));
        assert!(!classify(code("23505")).is_unique("product_sku_key", "product.sku"));
    }

    #[test]
    fn only_contention_is_retried_at_once() {
        for contention in ["40001", "40P01", "5", "261"] {
            assert!(StoreError::is_contention(&code(contention)), "{contention}");
        }
        for other in ["57014", "08006", "6", "42501", "23505"] {
            assert!(!StoreError::is_contention(&code(other)), "{other}");
        }
        assert!(!StoreError::is_contention(&sqlx::Error::PoolTimedOut));
    }

    #[test]
    fn a_callers_error_keeps_the_kind_a_client_acts_on() {
        assert!(matches!(
            Error::from(StoreError::Unavailable(sqlx::Error::PoolTimedOut)),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            Error::from(StoreError::Timeout(code("57014"))),
            Error::DeadlineExceeded(_)
        ));
        assert!(matches!(
            Error::from(StoreError::Contention(code("40001"))),
            Error::Contention(_)
        ));
        assert!(matches!(
            Error::from(StoreError::Other(code("42601"))),
            Error::Internal(_)
        ));
        assert!(matches!(
            SaveError::from(StoreError::RequestAlreadyRecorded),
            SaveError::RequestAlreadyRecorded
        ));
        assert!(matches!(
            SaveError::from(StoreError::Timeout(code("57014"))),
            SaveError::Failed(Error::DeadlineExceeded(_))
        ));
    }

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
