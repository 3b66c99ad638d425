//! The ordering store: its SQL and its row mapping, over the shared machinery
//! of [`strata_store`] (opening, migrations, the atomic command write, the
//! outbox and idempotency records), on PostgreSQL or SQLite alike.
//!
//! An order and its lines are one row: the lines are a JSON column, so a load
//! reads them with the order, a command writes them in its one statement, and
//! the order's version guards them too.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use strata_kernel::{
    AggregateRoot, Error, Id, Recorded, RequestId, Version,
    execute::{Change, CommandStore, SaveError},
};
use strata_store::{
    Batched, ContextSchema, Migration, OpenError, Param, ReadByKey, Row, Sql, Store, StoreConfig, StoreError,
    table::{self, AggregateTable},
    value::version_to,
};
use time::OffsetDateTime;

use crate::domain::{LineSnapshot, Order, OrderId, OrderSnapshot, OrderStatus};
use crate::repository::{EventStream, OrderQuery, OrderRepository};

/// The context's name in configuration, schemas and migration tables.
pub const CONTEXT: &str = "ordering";

/// The ordering context's own tables and migrations, per backend.
pub const SCHEMA: ContextSchema = ContextSchema {
    name: CONTEXT,
    postgres: &[Migration {
        version: 1,
        description: "create purchase order",
        sql: include_str!("../../../migrations/ordering/postgres/0001_create_purchase_order.sql"),
    }],
    sqlite: &[Migration {
        version: 1,
        description: "create purchase order",
        sql: include_str!("../../../migrations/ordering/sqlite/0001_create_purchase_order.sql"),
    }],
};

/// Opens the ordering store and brings its schema up to date.
///
/// # Errors
/// [`OpenError`] when the URL is unsupported, the store cannot be reached, or a
/// migration fails.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn OrderRepository>, OpenError> {
    let store = Store::open(&SCHEMA, config).await?;
    Ok(Arc::new(OrderStore {
        by_id: store.batched(BY_ID),
        store,
    }))
}

/// Orders in the context's store.
#[derive(Debug, Clone)]
pub struct OrderStore {
    store: Store,
    /// `get`: concurrent gets share a statement.
    by_id: Batched<uuid::Uuid>,
}

// The statements, the same text on both backends. Keyset pages have one
// statement per filter combination, with no `$1 is null or …` predicate, so
// that a generic plan uses an index (named beside each; see the migration).
const SELECT_BY_ID: Sql = Sql::same(
    "select id, buyer_id, status, lines, total_minor, currency, cancellation, cancel_reason, \
     version, created_at, updated_at, expires_at from purchase_order where id = $1",
);
/// One order by id, concurrent reads batched into one statement.
const BY_ID: ReadByKey = ReadByKey {
    statement: Sql {
        postgres: "select id, buyer_id, status, lines, total_minor, currency, cancellation, cancel_reason, \
                   version, created_at, updated_at, expires_at from purchase_order where id = any($1)",
        sqlite: "select id, buyer_id, status, lines, total_minor, currency, cancellation, cancel_reason, \
                 version, created_at, updated_at, expires_at from purchase_order \
                 where id in (select unhex(value) from json_each($1))",
    },
    key_column: 0,
};
// purchase_order_created_idx
const LIST_ALL: Sql = Sql::same(
    "select id, buyer_id, status, lines, total_minor, currency, cancellation, cancel_reason, \
     version, created_at, updated_at, expires_at from purchase_order \
     where (created_at, id) < ($1, $2) order by created_at desc, id desc limit $3",
);
// purchase_order_buyer_created_idx
const LIST_BY_BUYER: Sql = Sql::same(
    "select id, buyer_id, status, lines, total_minor, currency, cancellation, cancel_reason, \
     version, created_at, updated_at, expires_at from purchase_order \
     where buyer_id = $1 and (created_at, id) < ($2, $3) order by created_at desc, id desc limit $4",
);
// purchase_order_status_created_idx
const LIST_BY_STATUS: Sql = Sql::same(
    "select id, buyer_id, status, lines, total_minor, currency, cancellation, cancel_reason, \
     version, created_at, updated_at, expires_at from purchase_order \
     where status = $1 and (created_at, id) < ($2, $3) order by created_at desc, id desc limit $4",
);
// purchase_order_buyer_status_created_idx
const LIST_BY_BUYER_AND_STATUS: Sql = Sql::same(
    "select id, buyer_id, status, lines, total_minor, currency, cancellation, cancel_reason, \
     version, created_at, updated_at, expires_at from purchase_order \
     where buyer_id = $1 and status = $2 and (created_at, id) < ($3, $4) \
     order by created_at desc, id desc limit $5",
);
// purchase_order_pending_expiry_idx (partial: `status = 'pending'` is literal
// so that every plan can use it).
const DUE: Sql = Sql::same(
    "select id from purchase_order where status = 'pending' and expires_at <= $1 \
     order by expires_at limit $2",
);
/// A query that must be planned on an index, with the index it is written
/// for (see the migration); the PostgreSQL contract test checks the generic
/// plan of each.
#[derive(Debug, Clone, Copy)]
pub struct IndexedQuery {
    /// What it serves.
    pub name: &'static str,
    /// The index its generic plan uses.
    pub index: &'static str,
    /// The statement.
    pub sql: Sql,
}

/// Every listing statement and the expiry sweep's, with their indexes.
pub const INDEXED_QUERIES: &[IndexedQuery] = &[
    IndexedQuery {
        name: "list",
        index: "purchase_order_created_idx",
        sql: LIST_ALL,
    },
    IndexedQuery {
        name: "list by buyer",
        index: "purchase_order_buyer_created_idx",
        sql: LIST_BY_BUYER,
    },
    IndexedQuery {
        name: "list by status",
        index: "purchase_order_status_created_idx",
        sql: LIST_BY_STATUS,
    },
    IndexedQuery {
        name: "list by buyer and status",
        index: "purchase_order_buyer_status_created_idx",
        sql: LIST_BY_BUYER_AND_STATUS,
    },
    IndexedQuery {
        name: "due",
        index: "purchase_order_pending_expiry_idx",
        sql: DUE,
    },
];

const INSERT: Sql = Sql::same(
    "insert into purchase_order (id, buyer_id, status, lines, total_minor, currency, cancellation, \
     cancel_reason, version, created_at, updated_at, expires_at) \
     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
);
// Lines and totals never change after an order is placed: an update writes
// only what a command can change, guarded by the version it replaces.
const UPDATE: Sql = Sql::same(
    "update purchase_order set status = $3, cancellation = $4, cancel_reason = $5, version = $6, \
     updated_at = $7 where id = $1 and version = $2",
);
const CURRENT_VERSION: Sql = Sql::same("select version from purchase_order where id = $1");

/// The lines column, versioned so that a later release can change its shape and
/// still read what this one wrote.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "v")]
enum StoredLines {
    #[serde(rename = "1")]
    V1 { lines: Vec<LineSnapshot> },
}

/// The result an idempotency record keeps, versioned so that a record written
/// by an older release still replays: the order as the command left it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "v")]
enum RecordedOrder {
    #[serde(rename = "1")]
    V1 { order: OrderSnapshot },
}

const CANCELLATION_REQUESTED: &str = "requested";
const CANCELLATION_EXPIRED: &str = "expired";

fn order_from(row: &Row) -> Result<Order, StoreError> {
    let status = row.text(2)?;
    let lines = row
        .opt_json(3)?
        .ok_or_else(|| StoreError::corrupt("an order without lines"))?;
    let StoredLines::V1 { lines } = serde_json::from_value(lines)
        .map_err(|e| StoreError::corrupt(format!("unreadable order lines: {e}")))?;
    let cancellation: Option<String> = row.get(6)?;
    let snapshot = OrderSnapshot {
        id: row.uuid(0)?,
        buyer_id: row.uuid(1)?,
        lines,
        total_minor: row.int(4)?,
        currency: row.text(5)?,
        status: OrderStatus::from_stored(&status)
            .ok_or_else(|| StoreError::corrupt(format!("unknown order status {status:?}")))?,
        cancel_reason: row.get(7)?,
        expired: match cancellation.as_deref() {
            None | Some(CANCELLATION_REQUESTED) => false,
            Some(CANCELLATION_EXPIRED) => true,
            Some(other) => return Err(StoreError::corrupt(format!("unknown cancellation {other:?}"))),
        },
        version: row.version(8)?.get(),
        created_at: row.time(9)?,
        updated_at: row.time(10)?,
        expires_at: row.time(11)?,
    };
    Order::restore(snapshot)
        .map_err(|violation| StoreError::corrupt(format!("corrupt order row: {violation}")))
}

fn params_of(order: &Order, replaces: Option<Version>) -> Result<Vec<Param>, StoreError> {
    let s = order.snapshot();
    let version = version_to(order.version())?;
    let cancellation = match (s.status, s.expired) {
        (OrderStatus::Cancelled, true) => Some(CANCELLATION_EXPIRED.to_owned()),
        (OrderStatus::Cancelled, false) => Some(CANCELLATION_REQUESTED.to_owned()),
        _ => None,
    };
    Ok(match replaces {
        None => {
            let lines = serde_json::to_value(StoredLines::V1 { lines: s.lines })
                .map_err(|e| StoreError::Corrupt(e.into()))?;
            vec![
                Param::Uuid(s.id),
                Param::Uuid(s.buyer_id),
                Param::Text(s.status.as_str().to_owned()),
                Param::Json(lines),
                Param::Int(s.total_minor),
                Param::Text(s.currency),
                Param::OptText(cancellation),
                Param::OptText(s.cancel_reason),
                Param::Int(version),
                Param::Time(s.created_at),
                Param::Time(s.updated_at),
                Param::Time(s.expires_at),
            ]
        }
        Some(replaces) => vec![
            Param::Uuid(s.id),
            Param::Int(version_to(replaces)?),
            Param::Text(s.status.as_str().to_owned()),
            Param::OptText(cancellation),
            Param::OptText(s.cancel_reason),
            Param::Int(version),
            Param::Time(s.updated_at),
        ],
    })
}

/// The ordering table, for the shared command path.
impl AggregateTable for OrderStore {
    type Aggregate = Order;
    const SELECT_BY_ID: Sql = SELECT_BY_ID;
    const INSERT: Sql = INSERT;
    const UPDATE: Sql = UPDATE;
    const CURRENT_VERSION: Sql = CURRENT_VERSION;

    fn store(&self) -> &Store {
        &self.store
    }

    fn from_row(row: &Row) -> Result<Order, StoreError> {
        order_from(row)
    }

    fn params(aggregate: &Order, replaces: Option<strata_kernel::Version>) -> Result<Vec<Param>, StoreError> {
        params_of(aggregate, replaces)
    }

    fn to_recorded(aggregate: &Order) -> Result<serde_json::Value, StoreError> {
        serde_json::to_value(RecordedOrder::V1 {
            order: aggregate.snapshot(),
        })
        .map_err(|e| StoreError::Corrupt(e.into()))
    }

    fn from_recorded(result: serde_json::Value) -> Result<Order, Error> {
        let RecordedOrder::V1 { order } = serde_json::from_value(result)
            .map_err(|e| Error::Internal(format!("unreadable idempotency record: {e}").into()))?;
        Order::restore(order).map_err(|v| Error::Internal(format!("corrupt idempotency record: {v}").into()))
    }

    fn refusal(error: &StoreError) -> Option<SaveError> {
        // A caller-chosen id another order has.
        error
            .is_unique("purchase_order_pkey", "purchase_order.id")
            .then_some(SaveError::Refused(Error::AlreadyExists {
                kind: Order::KIND,
                field: "id",
            }))
    }
}

#[async_trait]
impl CommandStore<Order> for OrderStore {
    async fn load_for_command(
        &self,
        id: Id<Order>,
        request_id: &RequestId,
    ) -> Result<(Option<Recorded<Order>>, Option<Order>), Error> {
        table::load_for_command(self, id, request_id).await
    }

    async fn recorded(&self, request_id: &RequestId) -> Result<Option<Recorded<Order>>, Error> {
        table::recorded(self, request_id).await
    }

    async fn save(&self, change: Change<'_, Order>) -> Result<(), SaveError> {
        table::save(self, change).await
    }
}

/// Days from 1970-01-01 to 9999-12-31, the last day both stores keep alike.
const LAST_DAY: i64 = 2_932_896;

/// The keyset position before every order, newest first: later than any time
/// an order is placed at, and the largest id.
fn before_all() -> (OffsetDateTime, uuid::Uuid) {
    (
        OffsetDateTime::UNIX_EPOCH + time::Duration::days(LAST_DAY),
        uuid::Uuid::max(),
    )
}

#[async_trait]
impl OrderRepository for OrderStore {
    async fn get(&self, id: OrderId) -> Result<Option<Order>, Error> {
        Ok(self.by_id.get(id.as_uuid(), order_from).await?)
    }

    async fn list(&self, query: &OrderQuery) -> Result<Vec<Order>, Error> {
        let (created_at, id) = query
            .after
            .map_or_else(before_all, |cursor| (cursor.created_at, cursor.id.as_uuid()));
        let mut params = Vec::with_capacity(5);
        let statement = match (query.buyer, query.status) {
            (None, None) => LIST_ALL,
            (Some(buyer), None) => {
                params.push(Param::Uuid(buyer.as_uuid()));
                LIST_BY_BUYER
            }
            (None, Some(status)) => {
                params.push(Param::Text(status.as_str().to_owned()));
                LIST_BY_STATUS
            }
            (Some(buyer), Some(status)) => {
                params.push(Param::Uuid(buyer.as_uuid()));
                params.push(Param::Text(status.as_str().to_owned()));
                LIST_BY_BUYER_AND_STATUS
            }
        };
        params.extend([
            Param::Time(created_at),
            Param::Uuid(id),
            Param::Int(i64::from(query.limit)),
        ]);
        let rows = self.store.fetch_all(statement, params).await?;
        Ok(rows.iter().map(order_from).collect::<Result<_, _>>()?)
    }

    async fn due(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<OrderId>, Error> {
        let rows = self
            .store
            .fetch_all(DUE, vec![Param::Time(now), Param::Int(i64::from(limit))])
            .await?;
        Ok(rows
            .iter()
            .map(|row| row.uuid(0).map(OrderId::from_uuid))
            .collect::<Result<_, _>>()?)
    }

    async fn events(&self, position: u64, follow: bool) -> Result<EventStream, Error> {
        Ok(self.store.follow(position, follow).await?)
    }
}

#[cfg(test)]
mod tests {
    /// The columns `order_from` reads, by position.
    const COLUMNS: &str = "id, buyer_id, status, lines, total_minor, currency, cancellation, cancel_reason, \
                           version, created_at, updated_at, expires_at";

    #[test]
    fn every_select_reads_the_same_columns() {
        for sql in [
            super::SELECT_BY_ID,
            super::BY_ID.statement,
            super::LIST_ALL,
            super::LIST_BY_BUYER,
            super::LIST_BY_STATUS,
            super::LIST_BY_BUYER_AND_STATUS,
        ] {
            for text in [sql.postgres, sql.sqlite] {
                assert!(text.starts_with(&format!("select {COLUMNS} from")), "{text}");
            }
        }
    }
}
