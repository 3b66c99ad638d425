//! The command path of an aggregate kept in one row of its context's table,
//! written once: a context describes its table ([`AggregateTable`]: its
//! statements, its row mapping, the versioned result its idempotency records
//! keep) and its `CommandStore` implementation is three one-line calls to
//! [`load_for_command`], [`recorded`] and [`save`].

use strata_kernel::{
    AggregateRoot, Error, Id, Recorded, RequestId, Version,
    execute::{Change, SaveError},
};

use crate::{Param, RecordedRow, Row, Sql, Store, StoreError, Write, Written};

/// How a context's aggregate lives in its table.
pub trait AggregateTable: Send + Sync {
    /// The aggregate root.
    type Aggregate: AggregateRoot + Send + Sync;

    /// `select <columns> from <table> where id = $1`: what [`AggregateTable::from_row`] reads.
    const SELECT_BY_ID: Sql;
    /// The insert of a new aggregate; its parameters from [`AggregateTable::params`] with `None`.
    const INSERT: Sql;
    /// The update guarded by the version it replaces (`… where id = $1 and
    /// version = $2`); its parameters from [`AggregateTable::params`] with `Some`.
    const UPDATE: Sql;
    /// `select version from <table> where id = $1`.
    const CURRENT_VERSION: Sql;

    /// The context's store.
    fn store(&self) -> &Store;

    /// An aggregate from a row [`AggregateTable::SELECT_BY_ID`] selected,
    /// restored by checking its invariants.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the row breaks them.
    fn from_row(row: &Row) -> Result<Self::Aggregate, StoreError>;

    /// The parameters of [`AggregateTable::INSERT`] (`replaces` is `None`) or
    /// of [`AggregateTable::UPDATE`].
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when a value does not fit the table.
    fn params(aggregate: &Self::Aggregate, replaces: Option<Version>) -> Result<Vec<Param>, StoreError>;

    /// The result an idempotency record keeps, in a versioned form.
    ///
    /// # Errors
    /// When it cannot be serialized.
    fn to_recorded(aggregate: &Self::Aggregate) -> Result<serde_json::Value, StoreError>;

    /// The aggregate an idempotency record kept, in any form this release reads.
    ///
    /// # Errors
    /// [`Error::Internal`] when the record does not read back.
    fn from_recorded(result: serde_json::Value) -> Result<Self::Aggregate, Error>;

    /// What a failed write means to the command machinery, when it is not a
    /// plain failure: a unique value taken (`SaveError::Refused` with the
    /// context's client error), or an insert that lost to a concurrent insert
    /// of the same aggregate (`SaveError::VersionConflict`, decide again).
    fn refusal(_error: &StoreError) -> Option<SaveError> {
        None
    }
}

fn recorded_from<T: AggregateTable>(row: RecordedRow) -> Result<Recorded<T::Aggregate>, Error> {
    Ok(Recorded {
        fingerprint: row.fingerprint,
        result: T::from_recorded(row.result)?,
    })
}

/// `CommandStore::load_for_command`: the record and the aggregate in one statement.
///
/// # Errors
/// The store's failure, or a row or record that does not read back.
pub async fn load_for_command<T: AggregateTable>(
    table: &T,
    id: Id<T::Aggregate>,
    request_id: &RequestId,
) -> Result<(Option<Recorded<T::Aggregate>>, Option<T::Aggregate>), Error> {
    let (recorded, row) = table
        .store()
        .load_for_command(T::SELECT_BY_ID, vec![Param::Uuid(id.as_uuid())], request_id)
        .await?;
    let aggregate = row.as_ref().map(T::from_row).transpose()?;
    Ok((recorded.map(recorded_from::<T>).transpose()?, aggregate))
}

/// `CommandStore::recorded`.
///
/// # Errors
/// The store's failure, or a record that does not read back.
pub async fn recorded<T: AggregateTable>(
    table: &T,
    request_id: &RequestId,
) -> Result<Option<Recorded<T::Aggregate>>, Error> {
    table
        .store()
        .recorded(request_id)
        .await?
        .map(recorded_from::<T>)
        .transpose()
}

/// `CommandStore::save`: the aggregate's insert or version-guarded update, its
/// record and its events in one atomic write; when the guard fails, the
/// version read afresh says why.
///
/// # Errors
/// See `CommandStore::save`.
pub async fn save<T: AggregateTable>(table: &T, change: Change<'_, T::Aggregate>) -> Result<(), SaveError> {
    let aggregate = change.aggregate;
    let written = table
        .store()
        .write(Write {
            statement: if change.replaces.is_none() {
                T::INSERT
            } else {
                T::UPDATE
            },
            params: T::params(aggregate, change.replaces)?,
            request_id: &change.meta.request_id,
            fingerprint: &change.meta.fingerprint,
            result: T::to_recorded(aggregate)?,
            outbox: change.outbox,
            at: change.at,
        })
        .await;
    match written {
        Ok(Written::Applied) => Ok(()),
        Ok(Written::NothingMatched) => {
            let current = table
                .store()
                .fetch_optional(T::CURRENT_VERSION, vec![Param::Uuid(aggregate.id().as_uuid())])
                .await?;
            match current {
                None => Err(SaveError::NotFound),
                Some(row) => Err(SaveError::VersionConflict {
                    current: row.version(0)?,
                }),
            }
        }
        Err(error) => Err(T::refusal(&error).unwrap_or_else(|| error.into())),
    }
}
