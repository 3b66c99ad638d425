//! Inventory's store: its SQL and row mapping over the shared machinery of
//! [`strata_store`] (opening, migrations, the locked command write, the outbox
//! and idempotency records), on PostgreSQL or SQLite alike.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use strata_kernel::{
    AggregateRoot, Error, Fingerprint, Id, Recorded, RequestId, Version,
    execute::{Change, CommandStore, Decide, LockedCommandStore, SaveError, Verdict},
};
use strata_store::{
    Batched, ContextSchema, LockedDecision, LockedWrite, Migration, OpenError, Param, ReadByKey, RecordedRow,
    Row, Sql, Store, StoreConfig, StoreError,
    table::{self, AggregateTable},
    value::version_to,
};
use time::OffsetDateTime;

use crate::domain::{ReservationSnapshot, Sku, StockItem, StockItemSnapshot};
use crate::repository::{EventStream, StockItemRepository};

/// The context's name in configuration, schemas and migration tables.
pub const CONTEXT: &str = "inventory";

/// Inventory's own tables and migrations, per backend.
pub const SCHEMA: ContextSchema = ContextSchema {
    name: CONTEXT,
    postgres: &[Migration {
        version: 1,
        description: "create stock item",
        sql: include_str!("../../../migrations/inventory/postgres/0001_create_stock_item.sql"),
    }],
    sqlite: &[Migration {
        version: 1,
        description: "create stock item",
        sql: include_str!("../../../migrations/inventory/sqlite/0001_create_stock_item.sql"),
    }],
};

/// Opens inventory's store and brings its schema up to date.
///
/// # Errors
/// [`OpenError`] when the URL is unsupported, the store cannot be reached, or a
/// migration fails.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn StockItemRepository>, OpenError> {
    let store = Store::open(&SCHEMA, config).await?;
    Ok(Arc::new(StockItemStore {
        by_sku: store.batched(BY_SKU),
        store,
    }))
}

/// Stock items in the context's store.
#[derive(Debug, Clone)]
pub struct StockItemStore {
    store: Store,
    /// `get`: concurrent gets share a statement.
    by_sku: Batched<String>,
}

const SELECT_BY_ID: Sql = Sql::same(
    "select id, sku, on_hand, reservations, version, created_at, updated_at from stock_item where id = $1",
);
/// The locked command's read: the store holds the item already (PostgreSQL: an
/// advisory lock on it; SQLite: the file, from `BEGIN IMMEDIATE`).
const SELECT_FOR_UPDATE: Sql = SELECT_BY_ID;
/// One stock item by sku, concurrent reads batched into one statement (the
/// sku, column 1, matches rows to readers).
const BY_SKU: ReadByKey = ReadByKey {
    statement: Sql {
        postgres: "select id, sku, on_hand, reservations, version, created_at, updated_at from stock_item \
                   where sku = any($1)",
        sqlite: "select id, sku, on_hand, reservations, version, created_at, updated_at from stock_item \
                 where sku in (select value from json_each($1))",
    },
    key_column: 1,
};
/// Every sku of a JSON array in one statement, one round trip.
const SELECT_BY_SKUS: Sql = Sql {
    postgres: "select id, sku, on_hand, reservations, version, created_at, updated_at from stock_item \
               where sku in (select jsonb_array_elements_text($1)) order by sku",
    sqlite: "select id, sku, on_hand, reservations, version, created_at, updated_at from stock_item \
             where sku in (select value from json_each($1)) order by sku",
};
const EXPIRING: Sql =
    Sql::same("select sku from stock_item where next_expiry <= $1 order by next_expiry limit $2");
const INSERT: Sql = Sql::same(
    "insert into stock_item (id, sku, on_hand, reserved, reservations, next_expiry, version, created_at, \
     updated_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
);
const UPDATE: Sql = Sql::same(
    "update stock_item set on_hand = $3, reserved = $4, reservations = $5, next_expiry = $6, version = $7, \
     updated_at = $8 where id = $1 and version = $2",
);
const CURRENT_VERSION: Sql = Sql::same("select version from stock_item where id = $1");

/// The result an idempotency record keeps, versioned so that a record written
/// by an older release still replays: the item as the command left it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "v")]
enum RecordedStockItem {
    #[serde(rename = "1")]
    V1 { stock_item: StockItemSnapshot },
}

fn quantity_from(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::corrupt(format!("negative quantity {value}")))
}

fn quantity_to(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::corrupt(format!("quantity {value} does not fit a store")))
}

fn micros(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

fn stock_item_from(row: &Row) -> Result<StockItem, StoreError> {
    let reservations = row
        .opt_json(3)?
        .ok_or_else(|| StoreError::corrupt("stock item without reservations"))?;
    let reservations: Vec<ReservationSnapshot> =
        serde_json::from_value(reservations).map_err(|e| StoreError::Corrupt(e.into()))?;
    let snapshot = StockItemSnapshot {
        id: row.uuid(0)?,
        sku: row.text(1)?,
        on_hand: quantity_from(row.int(2)?)?,
        reservations,
        version: row.version(4)?.get(),
        created_at: row.time(5)?,
        updated_at: row.time(6)?,
    };
    StockItem::restore(snapshot)
        .map_err(|violation| StoreError::corrupt(format!("corrupt stock item row: {violation}")))
}

fn recorded_from(row: RecordedRow) -> Result<Recorded<StockItem>, Error> {
    Ok(Recorded {
        fingerprint: row.fingerprint,
        result: <StockItemStore as AggregateTable>::from_recorded(row.result)?,
    })
}

fn params_of(item: &StockItem, replaces: Option<Version>) -> Result<Vec<Param>, StoreError> {
    let s = item.snapshot();
    let reservations = serde_json::to_value(&s.reservations).map_err(|e| StoreError::Corrupt(e.into()))?;
    let on_hand = Param::Int(quantity_to(item.on_hand())?);
    let reserved = Param::Int(quantity_to(item.reserved())?);
    let next_expiry = Param::OptInt(item.next_expiry().map(micros));
    let version = Param::Int(version_to(item.version())?);
    Ok(match replaces {
        None => vec![
            Param::Uuid(s.id),
            Param::Text(s.sku),
            on_hand,
            reserved,
            Param::Json(reservations),
            next_expiry,
            version,
            Param::Time(s.created_at),
            Param::Time(s.updated_at),
        ],
        Some(replaces) => vec![
            Param::Uuid(s.id),
            Param::Int(version_to(replaces)?),
            on_hand,
            reserved,
            Param::Json(reservations),
            next_expiry,
            version,
            Param::Time(s.updated_at),
        ],
    })
}

fn recorded_result(item: &StockItem) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(RecordedStockItem::V1 {
        stock_item: item.snapshot(),
    })
    .map_err(|e| StoreError::Corrupt(e.into()))
}

/// An insert that lost to a concurrent insert of the same item.
fn lost_insert(error: &StoreError) -> bool {
    error.is_unique("stock_item_pkey", "stock_item.id")
        || error.is_unique("stock_item_sku_key", "stock_item.sku")
}

impl StockItemStore {
    fn decide_locked(
        recorded: Option<RecordedRow>,
        row: Option<Row>,
        fingerprint: &Fingerprint,
        decide: &Decide<'_, StockItem>,
    ) -> Result<LockedDecision<Result<StockItem, SaveError>>, StoreError> {
        let current = row.as_ref().map(stock_item_from).transpose()?;
        let recorded = match recorded.map(recorded_from).transpose() {
            Ok(recorded) => recorded,
            Err(error) => return Ok(LockedDecision::Answer(Err(SaveError::Failed(error)))),
        };
        Ok(match decide(recorded, current) {
            Verdict::Answer(Ok(item)) => LockedDecision::Answer(Ok(item)),
            Verdict::Answer(Err(refusal)) => LockedDecision::Answer(Err(SaveError::Refused(refusal))),
            Verdict::Write(change) => {
                let write = LockedWrite {
                    statement: if change.replaces.is_none() { INSERT } else { UPDATE },
                    params: params_of(&change.aggregate, change.replaces)?,
                    fingerprint: fingerprint.clone(),
                    result: recorded_result(&change.aggregate)?,
                    outbox: change.outbox,
                    at: change.at,
                };
                LockedDecision::Write(write, Ok(change.aggregate))
            }
        })
    }
}

/// The stock item table, for the shared command path.
impl AggregateTable for StockItemStore {
    type Aggregate = StockItem;
    const SELECT_BY_ID: Sql = SELECT_BY_ID;
    const INSERT: Sql = INSERT;
    const UPDATE: Sql = UPDATE;
    const CURRENT_VERSION: Sql = CURRENT_VERSION;

    fn store(&self) -> &Store {
        &self.store
    }

    fn from_row(row: &Row) -> Result<StockItem, StoreError> {
        stock_item_from(row)
    }

    fn params(item: &StockItem, replaces: Option<Version>) -> Result<Vec<Param>, StoreError> {
        params_of(item, replaces)
    }

    fn to_recorded(item: &StockItem) -> Result<serde_json::Value, StoreError> {
        recorded_result(item)
    }

    fn from_recorded(result: serde_json::Value) -> Result<StockItem, Error> {
        let RecordedStockItem::V1 { stock_item } = serde_json::from_value(result)
            .map_err(|e| Error::Internal(format!("unreadable idempotency record: {e}").into()))?;
        StockItem::restore(stock_item)
            .map_err(|v| Error::Internal(format!("corrupt idempotency record: {v}").into()))
    }

    fn refusal(error: &StoreError) -> Option<SaveError> {
        // A first receipt that lost to a concurrent one decides again.
        lost_insert(error).then_some(SaveError::VersionConflict {
            current: Version::INITIAL,
        })
    }
}

#[async_trait]
impl CommandStore<StockItem> for StockItemStore {
    async fn load_for_command(
        &self,
        id: Id<StockItem>,
        request_id: &RequestId,
    ) -> Result<(Option<Recorded<StockItem>>, Option<StockItem>), Error> {
        table::load_for_command(self, id, request_id).await
    }

    async fn recorded(&self, request_id: &RequestId) -> Result<Option<Recorded<StockItem>>, Error> {
        table::recorded(self, request_id).await
    }

    async fn save(&self, change: Change<'_, StockItem>) -> Result<(), SaveError> {
        table::save(self, change).await
    }
}

#[async_trait]
impl LockedCommandStore<StockItem> for StockItemStore {
    async fn save_locked(
        &self,
        id: Id<StockItem>,
        request_id: &RequestId,
        fingerprint: &Fingerprint,
        decide: &Decide<'_, StockItem>,
    ) -> Result<StockItem, SaveError> {
        let answer = self
            .store
            .write_locked(
                SELECT_FOR_UPDATE,
                vec![Param::Uuid(id.as_uuid())],
                request_id,
                |recorded, row| Self::decide_locked(recorded, row, fingerprint, decide),
            )
            .await;
        match answer {
            Ok(answer) => answer,
            // Two first receipts raced: the loser decides again, now on the row.
            Err(error) if lost_insert(&error) => Err(SaveError::VersionConflict {
                current: Version::INITIAL,
            }),
            Err(error) => Err(error.into()),
        }
    }
}

#[async_trait]
impl StockItemRepository for StockItemStore {
    async fn get(&self, sku: &Sku) -> Result<Option<StockItem>, Error> {
        Ok(self.by_sku.get(sku.as_str().to_owned(), stock_item_from).await?)
    }

    async fn batch_get(&self, skus: &[Sku]) -> Result<Vec<StockItem>, Error> {
        if skus.is_empty() {
            return Ok(Vec::new());
        }
        let skus = serde_json::Value::Array(
            skus.iter()
                .map(|sku| serde_json::Value::String(sku.as_str().to_owned()))
                .collect(),
        );
        let rows = self
            .store
            .fetch_all(SELECT_BY_SKUS, vec![Param::Json(skus)])
            .await?;
        Ok(rows.iter().map(stock_item_from).collect::<Result<_, _>>()?)
    }

    async fn expiring(&self, now: OffsetDateTime, limit: u32) -> Result<Vec<Sku>, Error> {
        let rows = self
            .store
            .fetch_all(
                EXPIRING,
                vec![Param::Int(micros(now)), Param::Int(i64::from(limit))],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Sku::from_stored(row.text(0)?)
                    .map_err(|v| Error::from(StoreError::corrupt(format!("corrupt sku: {v}"))))
            })
            .collect()
    }

    async fn events(&self, position: u64, follow: bool) -> Result<EventStream, Error> {
        Ok(self.store.follow(position, follow).await?)
    }
}
