//! Values in and out of statements, whichever the backend: a context writes its
//! SQL once and binds [`Param`]s; it reads columns from a [`Row`].

use sqlx::{Decode, Postgres, Row as _, Sqlite, Type, postgres::PgRow, sqlite::SqliteRow, types::Json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::StoreError;

/// One statement parameter. Options bind SQL `NULL` of their type.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// A UUID (`uuid` on PostgreSQL, a 16-byte blob on SQLite).
    Uuid(Uuid),
    /// Text.
    Text(String),
    /// Text or `NULL`.
    OptText(Option<String>),
    /// A 64-bit integer.
    Int(i64),
    /// A 64-bit integer or `NULL`.
    OptInt(Option<i64>),
    /// A point in time (`timestamptz`; RFC 3339 text on SQLite).
    Time(OffsetDateTime),
    /// Bytes.
    Bytes(Vec<u8>),
    /// JSON (`jsonb`; text on SQLite).
    Json(serde_json::Value),
    /// A list of UUIDs, for `= any($n)` on PostgreSQL (`uuid[]`) and
    /// `in (select unhex(value) from json_each($n))` on SQLite (a JSON array of
    /// hex strings), so that a batch read is one statement on both.
    Uuids(Vec<Uuid>),
    /// A list of texts, for `= any($n)` on PostgreSQL (`text[]`) and
    /// `in (select value from json_each($n))` on SQLite (a JSON array).
    Texts(Vec<String>),
}

impl Param {
    pub(crate) fn bind_pg<'q>(
        self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        match self {
            Self::Uuid(v) => query.bind(v),
            Self::Text(v) => query.bind(v),
            Self::OptText(v) => query.bind(v),
            Self::Int(v) => query.bind(v),
            Self::OptInt(v) => query.bind(v),
            Self::Time(v) => query.bind(v),
            Self::Bytes(v) => query.bind(v),
            Self::Json(v) => query.bind(Json(v)),
            Self::Uuids(v) => query.bind(v),
            Self::Texts(v) => query.bind(v),
        }
    }

    pub(crate) fn bind_sqlite<'q>(
        self,
        query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
        match self {
            Self::Uuid(v) => query.bind(v),
            Self::Text(v) => query.bind(v),
            Self::OptText(v) => query.bind(v),
            Self::Int(v) => query.bind(v),
            Self::OptInt(v) => query.bind(v),
            Self::Time(v) => query.bind(v),
            Self::Bytes(v) => query.bind(v),
            Self::Json(v) => query.bind(Json(v)),
            Self::Uuids(v) => query.bind(
                serde_json::Value::from(v.iter().map(|id| id.simple().to_string()).collect::<Vec<_>>())
                    .to_string(),
            ),
            Self::Texts(v) => query.bind(serde_json::Value::from(v).to_string()),
        }
    }
}

/// A row read back, whichever the backend; columns by position.
#[derive(Debug)]
pub enum Row {
    /// From PostgreSQL.
    Postgres(PgRow),
    /// From SQLite.
    Sqlite(SqliteRow),
}

/// A type both backends decode.
pub trait Column:
    for<'r> Decode<'r, Postgres> + Type<Postgres> + for<'r> Decode<'r, Sqlite> + Type<Sqlite>
{
}

impl<T> Column for T where
    T: for<'r> Decode<'r, Postgres> + Type<Postgres> + for<'r> Decode<'r, Sqlite> + Type<Sqlite>
{
}

impl Row {
    /// Column `index` as any type both backends decode.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when it is missing or of another type.
    pub fn get<T: Column>(&self, index: usize) -> Result<T, StoreError> {
        match self {
            Self::Postgres(row) => row.try_get::<T, _>(index),
            Self::Sqlite(row) => row.try_get::<T, _>(index),
        }
        .map_err(|error| StoreError::Corrupt(error.into()))
    }

    /// Column `index` as a UUID.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when it is missing, `NULL` or of another type.
    pub fn uuid(&self, index: usize) -> Result<Uuid, StoreError> {
        self.get::<Uuid>(index)
    }

    /// Column `index` as a UUID, `None` when `NULL`.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when it is missing or of another type.
    pub fn opt_uuid(&self, index: usize) -> Result<Option<Uuid>, StoreError> {
        self.get::<Option<Uuid>>(index)
    }

    /// Column `index` as text.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when it is missing, `NULL` or of another type.
    pub fn text(&self, index: usize) -> Result<String, StoreError> {
        self.get::<String>(index)
    }

    /// Column `index` as a 64-bit integer.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when it is missing, `NULL` or of another type.
    pub fn int(&self, index: usize) -> Result<i64, StoreError> {
        self.get::<i64>(index)
    }

    /// Column `index` as a 64-bit integer, `None` when `NULL`.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when it is missing or of another type.
    pub fn opt_int(&self, index: usize) -> Result<Option<i64>, StoreError> {
        self.get::<Option<i64>>(index)
    }

    /// Column `index` as a point in time.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when it is missing, `NULL` or of another type.
    pub fn time(&self, index: usize) -> Result<OffsetDateTime, StoreError> {
        self.get::<OffsetDateTime>(index)
    }

    /// Column `index` as bytes, `None` when `NULL`.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when it is missing or of another type.
    pub fn opt_bytes(&self, index: usize) -> Result<Option<Vec<u8>>, StoreError> {
        self.get::<Option<Vec<u8>>>(index)
    }

    /// Column `index` as JSON, `None` when `NULL`.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when it is missing or not JSON.
    pub fn opt_json(&self, index: usize) -> Result<Option<serde_json::Value>, StoreError> {
        self.get::<Option<Json<serde_json::Value>>>(index)
            .map(|json| json.map(|Json(value)| value))
    }

    /// Whether column `index` is `NULL`.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when there is no such column.
    pub fn is_null(&self, index: usize) -> Result<bool, StoreError> {
        match self {
            Self::Postgres(row) => row.try_get_raw(index).map(|v| sqlx::ValueRef::is_null(&v)),
            Self::Sqlite(row) => row.try_get_raw(index).map(|v| sqlx::ValueRef::is_null(&v)),
        }
        .map_err(|error| StoreError::Corrupt(error.into()))
    }

    /// How many columns it has.
    #[must_use]
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Postgres(row) => row.len(),
            Self::Sqlite(row) => row.len(),
        }
    }

    /// A version column read back as a [`strata_kernel::Version`].
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when it is not a positive integer.
    pub fn version(&self, index: usize) -> Result<strata_kernel::Version, StoreError> {
        version_from(self.int(index)?)
    }
}

/// A stored version read back.
///
/// # Errors
/// [`StoreError::Corrupt`] when it is below 1.
pub fn version_from(value: i64) -> Result<strata_kernel::Version, StoreError> {
    u64::try_from(value)
        .ok()
        .filter(|v| *v >= 1)
        .map(strata_kernel::Version::new)
        .ok_or_else(|| StoreError::Corrupt(format!("stored version {value} is not positive").into()))
}

/// A version as the signed integer stores keep.
///
/// # Errors
/// [`StoreError::Corrupt`] when it does not fit (above `i64::MAX`).
pub fn version_to(version: strata_kernel::Version) -> Result<i64, StoreError> {
    i64::try_from(version.get())
        .map_err(|_| StoreError::Corrupt(format!("version {version} does not fit a store").into()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sqlx::Connection as _;
    use time::macros::datetime;

    use super::*;

    /// The one row `sql` selects from an in-memory SQLite database, with
    /// `params` bound as every statement of a context binds them.
    async fn select(sql: &str, params: Vec<Param>) -> Row {
        let mut connection = sqlx::SqliteConnection::connect("sqlite::memory:").await.unwrap();
        let query = params
            .into_iter()
            .fold(sqlx::query(sqlx::AssertSqlSafe(sql)), |q, p| p.bind_sqlite(q));
        Row::Sqlite(query.fetch_one(&mut connection).await.unwrap())
    }

    #[tokio::test]
    async fn every_value_reads_back_as_it_was_bound() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let at = datetime!(2026-11-25 15:01:23.5 UTC);
        let json = serde_json::json!({"v": 1, "name": "Lamp"});
        let row = select(
            "select $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13",
            vec![
                Param::Uuid(id),
                Param::Text("Lamp".to_owned()),
                Param::OptText(None),
                Param::Int(-42),
                Param::OptInt(Some(7)),
                Param::OptInt(None),
                Param::Time(at),
                Param::Bytes(vec![1, 2, 3]),
                Param::Json(json.clone()),
                Param::Uuid(id),
                Param::Int(3),
                Param::Int(0),
                Param::OptText(Some("x".to_owned())),
            ],
        )
        .await;
        assert_eq!(row.len(), 13);
        assert_eq!(row.uuid(0).unwrap(), id);
        assert_eq!(row.opt_uuid(0).unwrap(), Some(id));
        assert_eq!(row.opt_uuid(2).unwrap(), None);
        assert_eq!(row.text(1).unwrap(), "Lamp");
        assert_eq!(row.get::<Option<String>>(2).unwrap(), None);
        assert_eq!(row.get::<Option<String>>(12).unwrap().as_deref(), Some("x"));
        assert_eq!(row.int(3).unwrap(), -42);
        assert_eq!(row.opt_int(4).unwrap(), Some(7));
        assert_eq!(row.opt_int(5).unwrap(), None);
        assert_eq!(row.time(6).unwrap(), at);
        assert_eq!(row.opt_bytes(7).unwrap(), Some(vec![1, 2, 3]));
        assert_eq!(row.opt_bytes(2).unwrap(), None);
        assert_eq!(row.opt_json(8).unwrap(), Some(json));
        assert_eq!(row.opt_json(2).unwrap(), None);
        assert_eq!(row.version(10).unwrap(), strata_kernel::Version::new(3));
        assert!(row.is_null(2).unwrap());
        assert!(!row.is_null(1).unwrap());
        assert!(!row.is_null(11).unwrap(), "0 is not NULL");
    }

    #[tokio::test]
    async fn a_column_that_is_missing_or_of_another_type_is_corrupt() {
        let row = select(
            "select $1, $2",
            vec![Param::Text("Lamp".to_owned()), Param::OptText(None)],
        )
        .await;
        assert!(matches!(row.int(0), Err(StoreError::Corrupt(_))));
        assert!(
            matches!(row.text(2), Err(StoreError::Corrupt(_))),
            "no such column"
        );
        assert!(
            matches!(row.uuid(1), Err(StoreError::Corrupt(_))),
            "NULL is not a UUID"
        );
        assert!(matches!(row.is_null(2), Err(StoreError::Corrupt(_))));
    }

    #[tokio::test]
    async fn lists_bind_as_one_parameter_each_element_read_back() {
        let ids = [Uuid::from_u128(1), Uuid::from_u128(u128::MAX)];
        let row = select(
            "select (select group_concat(hex(unhex(value)), ',') from json_each($1)), \
                    (select group_concat(value, ',') from json_each($2))",
            vec![
                Param::Uuids(ids.to_vec()),
                Param::Texts(vec!["a b".to_owned(), "\"c\"".to_owned()]),
            ],
        )
        .await;
        let hex: Vec<String> = ids
            .iter()
            .map(|id| id.simple().to_string().to_uppercase())
            .collect();
        assert_eq!(row.text(0).unwrap(), hex.join(","));
        assert_eq!(row.text(1).unwrap(), "a b,\"c\"");
    }

    #[test]
    fn a_stored_version_is_positive() {
        assert_eq!(version_from(1).unwrap(), strata_kernel::Version::new(1));
        assert_eq!(version_from(42).unwrap(), strata_kernel::Version::new(42));
        for corrupt in [0, -1, i64::MIN] {
            assert!(
                matches!(version_from(corrupt), Err(StoreError::Corrupt(_))),
                "{corrupt}"
            );
        }
        assert_eq!(version_to(strata_kernel::Version::new(42)).unwrap(), 42);
        assert_eq!(
            version_to(strata_kernel::Version::new(i64::MAX as u64)).unwrap(),
            i64::MAX
        );
        assert!(matches!(
            version_to(strata_kernel::Version::new(u64::MAX)),
            Err(StoreError::Corrupt(_))
        ));
    }
}
