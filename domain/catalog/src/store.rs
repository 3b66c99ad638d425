//! The catalog's store: its SQL and its row mapping, over the shared machinery
//! of [`strata_store`] (opening, migrations, the atomic command write, the
//! outbox and idempotency records), on PostgreSQL or SQLite alike.

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

use crate::domain::{Product, ProductId, ProductSnapshot, ProductStatus};
use crate::repository::{EventStream, ProductQuery, ProductRepository};

/// The context's name in configuration, schemas and migration tables.
pub const CONTEXT: &str = "catalog";

/// The catalog's own tables and migrations, per backend.
pub const SCHEMA: ContextSchema = ContextSchema {
    name: CONTEXT,
    postgres: &[Migration {
        version: 1,
        description: "create product",
        sql: include_str!("../../../migrations/catalog/postgres/0001_create_product.sql"),
    }],
    sqlite: &[Migration {
        version: 1,
        description: "create product",
        sql: include_str!("../../../migrations/catalog/sqlite/0001_create_product.sql"),
    }],
};

/// Opens the catalog's store and brings its schema up to date.
///
/// # Errors
/// [`OpenError`] when the URL is unsupported, the store cannot be reached, or a
/// migration fails.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn ProductRepository>, OpenError> {
    let store = Store::open(&SCHEMA, config).await?;
    Ok(Arc::new(ProductStore {
        by_id: store.batched(BY_ID),
        store,
    }))
}

/// Products in the context's store.
#[derive(Debug, Clone)]
pub struct ProductStore {
    store: Store,
    /// `get`: concurrent gets share a statement.
    by_id: Batched<uuid::Uuid>,
}

// The statements, the same text on both backends. Keyset pages have one
// statement per filter, with no `$1 is null or …` predicate, so that a generic
// plan uses an index: `product_status_id_idx` with a status, the primary key
// without.
const SELECT_BY_ID: Sql = Sql::same(
    "select id, sku, name, description, price_minor, currency, status, version, created_at, updated_at \
     from product where id = $1",
);
const SELECT_MANY: Sql = Sql {
    postgres: "select id, sku, name, description, price_minor, currency, status, version, created_at, \
               updated_at from product where id = any($1)",
    sqlite: "select id, sku, name, description, price_minor, currency, status, version, created_at, \
             updated_at from product where id in (select unhex(value) from json_each($1))",
};
/// One product by id, concurrent reads batched into one `SELECT_MANY`.
const BY_ID: ReadByKey = ReadByKey {
    statement: SELECT_MANY,
    key_column: 0,
};
const LIST_ALL: Sql = Sql::same(
    "select id, sku, name, description, price_minor, currency, status, version, created_at, updated_at \
     from product where id > $1 order by id limit $2",
);
const LIST_BY_STATUS: Sql = Sql::same(
    "select id, sku, name, description, price_minor, currency, status, version, created_at, updated_at \
     from product where status = $1 and id > $2 order by id limit $3",
);
const INSERT: Sql = Sql::same(
    "insert into product (id, sku, name, description, price_minor, currency, status, version, \
     created_at, updated_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
);
const UPDATE: Sql = Sql::same(
    "update product set name = $3, description = $4, price_minor = $5, currency = $6, status = $7, \
     version = $8, updated_at = $9 where id = $1 and version = $2",
);
const CURRENT_VERSION: Sql = Sql::same("select version from product where id = $1");

/// The smallest UUID: "after" it is every product.
const BEFORE_ALL: uuid::Uuid = uuid::Uuid::nil();

/// The result an idempotency record keeps, versioned so that a record written
/// by an older release still replays: the product as the command left it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "v")]
enum RecordedProduct {
    #[serde(rename = "1")]
    V1 { product: ProductSnapshot },
}

fn product_from(row: &Row) -> Result<Product, StoreError> {
    let status = row.text(6)?;
    let version = row.int(7)?;
    let snapshot = ProductSnapshot {
        id: row.uuid(0)?,
        sku: row.text(1)?,
        name: row.text(2)?,
        description: row.text(3)?,
        price_minor: row.int(4)?,
        currency: row.text(5)?,
        status: ProductStatus::from_stored(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown product status {status:?}").into()))?,
        version: u64::try_from(version).map_err(|e| StoreError::Corrupt(e.into()))?,
        created_at: row.time(8)?,
        updated_at: row.time(9)?,
    };
    Product::restore(snapshot)
        .map_err(|violation| StoreError::Corrupt(format!("corrupt product row: {violation}").into()))
}

/// The product table, for the shared command path.
impl AggregateTable for ProductStore {
    type Aggregate = Product;
    const SELECT_BY_ID: Sql = SELECT_BY_ID;
    const INSERT: Sql = INSERT;
    const UPDATE: Sql = UPDATE;
    const CURRENT_VERSION: Sql = CURRENT_VERSION;

    fn store(&self) -> &Store {
        &self.store
    }

    fn from_row(row: &Row) -> Result<Product, StoreError> {
        product_from(row)
    }

    fn params(product: &Product, replaces: Option<Version>) -> Result<Vec<Param>, StoreError> {
        params_of(product, replaces)
    }

    fn to_recorded(product: &Product) -> Result<serde_json::Value, StoreError> {
        serde_json::to_value(RecordedProduct::V1 {
            product: product.snapshot(),
        })
        .map_err(|e| StoreError::Corrupt(e.into()))
    }

    fn from_recorded(result: serde_json::Value) -> Result<Product, Error> {
        // Records written before results were versioned hold the bare snapshot.
        let snapshot = match serde_json::from_value::<RecordedProduct>(result.clone()) {
            Ok(RecordedProduct::V1 { product }) => product,
            Err(_) => serde_json::from_value::<ProductSnapshot>(result)
                .map_err(|e| Error::Internal(format!("unreadable idempotency record: {e}").into()))?,
        };
        Product::restore(snapshot)
            .map_err(|v| Error::Internal(format!("corrupt idempotency record: {v}").into()))
    }

    fn refusal(error: &StoreError) -> Option<SaveError> {
        error
            .is_unique("product_sku_key", "product.sku")
            .then_some(SaveError::Refused(Error::AlreadyExists {
                kind: Product::KIND,
                field: "sku",
            }))
    }
}

fn params_of(product: &Product, replaces: Option<Version>) -> Result<Vec<Param>, StoreError> {
    let s = product.snapshot();
    let version = version_to(product.version())?;
    Ok(match replaces {
        None => vec![
            Param::Uuid(s.id),
            Param::Text(s.sku),
            Param::Text(s.name),
            Param::Text(s.description),
            Param::Int(s.price_minor),
            Param::Text(s.currency),
            Param::Text(s.status.as_str().to_owned()),
            Param::Int(version),
            Param::Time(s.created_at),
            Param::Time(s.updated_at),
        ],
        Some(replaces) => vec![
            Param::Uuid(s.id),
            Param::Int(version_to(replaces)?),
            Param::Text(s.name),
            Param::Text(s.description),
            Param::Int(s.price_minor),
            Param::Text(s.currency),
            Param::Text(s.status.as_str().to_owned()),
            Param::Int(version),
            Param::Time(s.updated_at),
        ],
    })
}

#[async_trait]
impl CommandStore<Product> for ProductStore {
    async fn load_for_command(
        &self,
        id: Id<Product>,
        request_id: &RequestId,
    ) -> Result<(Option<Recorded<Product>>, Option<Product>), Error> {
        table::load_for_command(self, id, request_id).await
    }

    async fn recorded(&self, request_id: &RequestId) -> Result<Option<Recorded<Product>>, Error> {
        table::recorded(self, request_id).await
    }

    async fn save(&self, change: Change<'_, Product>) -> Result<(), SaveError> {
        table::save(self, change).await
    }
}

#[async_trait]
impl ProductRepository for ProductStore {
    async fn get(&self, id: ProductId) -> Result<Option<Product>, Error> {
        Ok(self.by_id.get(id.as_uuid(), product_from).await?)
    }

    async fn get_many(&self, ids: &[ProductId]) -> Result<Vec<Product>, Error> {
        let ids = ids.iter().map(|id| id.as_uuid()).collect();
        let rows = self.store.fetch_all(SELECT_MANY, vec![Param::Uuids(ids)]).await?;
        Ok(rows.iter().map(product_from).collect::<Result<_, _>>()?)
    }

    async fn list(&self, query: &ProductQuery) -> Result<Vec<Product>, Error> {
        let after = Param::Uuid(query.after.map_or(BEFORE_ALL, |id| id.as_uuid()));
        let limit = Param::Int(i64::from(query.limit));
        let rows = match query.status {
            None => self.store.fetch_all(LIST_ALL, vec![after, limit]).await?,
            Some(status) => {
                let status = Param::Text(status.as_str().to_owned());
                self.store
                    .fetch_all(LIST_BY_STATUS, vec![status, after, limit])
                    .await?
            }
        };
        Ok(rows.iter().map(product_from).collect::<Result<_, _>>()?)
    }

    async fn events(&self, position: u64, follow: bool) -> Result<EventStream, Error> {
        Ok(self.store.follow(position, follow).await?)
    }
}
