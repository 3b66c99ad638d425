//! Identity's store: its SQL and its row mapping, over the shared machinery of
//! [`strata_store`] (opening, migrations, the atomic command write, the outbox
//! and idempotency records), on PostgreSQL or SQLite alike.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use strata_kernel::{
    AggregateRoot, Error, Id, Recorded, RequestId,
    execute::{Change, CommandStore, SaveError},
};
use strata_store::{
    Batched, ContextSchema, Migration, OpenError, Param, ReadByKey, Row, Sql, Store, StoreConfig, StoreError,
    table::{self, AggregateTable},
    value::version_to,
};

use crate::domain::{Account, AccountId, AccountSnapshot, Email, Role};
use crate::repository::{AccountRepository, EventStream};

/// The context's name in configuration, schemas and migration tables.
pub const CONTEXT: &str = "identity";

/// Identity's own tables and migrations, per backend.
pub const SCHEMA: ContextSchema = ContextSchema {
    name: CONTEXT,
    postgres: &[Migration {
        version: 1,
        description: "create account",
        sql: include_str!("../../../migrations/identity/postgres/0001_create_account.sql"),
    }],
    sqlite: &[Migration {
        version: 1,
        description: "create account",
        sql: include_str!("../../../migrations/identity/sqlite/0001_create_account.sql"),
    }],
};

/// The unique constraint on the normalized email, as PostgreSQL names it and
/// as SQLite names its column.
const EMAIL_KEY: (&str, &str) = ("account_email_key", "account.email");

/// Opens identity's store and brings its schema up to date.
///
/// # Errors
/// [`OpenError`] when the URL is unsupported, the store cannot be reached, or a
/// migration fails.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn AccountRepository>, OpenError> {
    let store = Store::open(&SCHEMA, config).await?;
    Ok(Arc::new(AccountStore {
        by_id: store.batched(BY_ID),
        store,
    }))
}

/// Accounts in the context's store.
#[derive(Debug, Clone)]
pub struct AccountStore {
    store: Store,
    /// `get`: concurrent gets share a statement.
    by_id: Batched<uuid::Uuid>,
}

// The statements, the same text on both backends.
const SELECT_BY_ID: Sql = Sql::same(
    "select id, email, display_name, roles, password_hash, status, suspension_reason, version, created_at, \
     updated_at from account where id = $1",
);
/// One account by id, concurrent reads batched into one statement.
const BY_ID: ReadByKey = ReadByKey {
    statement: Sql {
        postgres: "select id, email, display_name, roles, password_hash, status, suspension_reason, version, \
                   created_at, updated_at from account where id = any($1)",
        sqlite: "select id, email, display_name, roles, password_hash, status, suspension_reason, version, \
                 created_at, updated_at from account where id in (select unhex(value) from json_each($1))",
    },
    key_column: 0,
};
// Served by the unique index of `account_email_key`.
const SELECT_BY_EMAIL: Sql = Sql::same(
    "select id, email, display_name, roles, password_hash, status, suspension_reason, version, created_at, \
     updated_at from account where email = $1",
);
const INSERT: Sql = Sql::same(
    "insert into account (id, email, display_name, roles, password_hash, status, suspension_reason, version, \
     created_at, updated_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
);
const UPDATE: Sql = Sql::same(
    "update account set display_name = $3, roles = $4, password_hash = $5, status = $6, suspension_reason = $7, \
     version = $8, updated_at = $9 where id = $1 and version = $2",
);
const CURRENT_VERSION: Sql = Sql::same("select version from account where id = $1");

/// The result an idempotency record keeps, versioned so that a record written
/// by an older release still replays: the account as the command left it,
/// without its password hash (see [`AccountSnapshot::without_password_hash`]).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "v")]
enum RecordedAccount {
    #[serde(rename = "1")]
    V1 { account: AccountSnapshot },
}

fn account_from(row: &Row) -> Result<Account, StoreError> {
    let roles = row
        .opt_json(3)?
        .ok_or_else(|| StoreError::corrupt("account row: no roles"))?;
    let roles: Vec<Role> =
        serde_json::from_value(roles).map_err(|e| StoreError::corrupt(format_args!("account row: {e}")))?;
    let version = row.int(7)?;
    let snapshot = AccountSnapshot {
        id: row.uuid(0)?,
        email: row.text(1)?,
        display_name: row.text(2)?,
        roles,
        password_hash: Some(row.text(4)?),
        status: row.text(5)?,
        suspension_reason: row.get::<Option<String>>(6)?,
        version: u64::try_from(version).map_err(|e| StoreError::corrupt(format_args!("account row: {e}")))?,
        created_at: row.time(8)?,
        updated_at: row.time(9)?,
    };
    Account::restore(snapshot).map_err(|e| StoreError::corrupt(format_args!("account row: {e}")))
}

fn params_of(account: &Account, replaces: Option<strata_kernel::Version>) -> Result<Vec<Param>, StoreError> {
    let s = account.snapshot();
    let version = version_to(account.version())?;
    let roles = serde_json::to_value(&s.roles).map_err(|e| StoreError::Corrupt(e.into()))?;
    // An account restored from an idempotency record has no hash; it is only
    // ever returned, never saved.
    let hash = s
        .password_hash
        .ok_or_else(|| StoreError::Corrupt("an account without its password hash cannot be saved".into()))?;
    Ok(match replaces {
        None => vec![
            Param::Uuid(s.id),
            Param::Text(s.email),
            Param::Text(s.display_name),
            Param::Json(roles),
            Param::Text(hash),
            Param::Text(s.status),
            Param::OptText(s.suspension_reason),
            Param::Int(version),
            Param::Time(s.created_at),
            Param::Time(s.updated_at),
        ],
        Some(replaces) => vec![
            Param::Uuid(s.id),
            Param::Int(version_to(replaces)?),
            Param::Text(s.display_name),
            Param::Json(roles),
            Param::Text(hash),
            Param::Text(s.status),
            Param::OptText(s.suspension_reason),
            Param::Int(version),
            Param::Time(s.updated_at),
        ],
    })
}

/// The identity table, for the shared command path.
impl AggregateTable for AccountStore {
    type Aggregate = Account;
    const SELECT_BY_ID: Sql = SELECT_BY_ID;
    const INSERT: Sql = INSERT;
    const UPDATE: Sql = UPDATE;
    const CURRENT_VERSION: Sql = CURRENT_VERSION;

    fn store(&self) -> &Store {
        &self.store
    }

    fn from_row(row: &Row) -> Result<Account, StoreError> {
        account_from(row)
    }

    fn params(
        aggregate: &Account,
        replaces: Option<strata_kernel::Version>,
    ) -> Result<Vec<Param>, StoreError> {
        params_of(aggregate, replaces)
    }

    fn to_recorded(aggregate: &Account) -> Result<serde_json::Value, StoreError> {
        serde_json::to_value(RecordedAccount::V1 {
            account: aggregate.snapshot().without_password_hash(),
        })
        .map_err(|e| StoreError::Corrupt(e.into()))
    }

    fn from_recorded(result: serde_json::Value) -> Result<Account, Error> {
        let RecordedAccount::V1 { account } = serde_json::from_value(result)
            .map_err(|e| Error::Internal(format!("unreadable idempotency record: {e}").into()))?;
        Account::restore(account)
            .map_err(|v| Error::Internal(format!("corrupt idempotency record: {v}").into()))
    }

    fn refusal(error: &StoreError) -> Option<SaveError> {
        error
            .is_unique(EMAIL_KEY.0, EMAIL_KEY.1)
            .then_some(SaveError::Refused(Error::AlreadyExists {
                kind: Account::KIND,
                field: "email",
            }))
    }
}

#[async_trait]
impl CommandStore<Account> for AccountStore {
    async fn load_for_command(
        &self,
        id: Id<Account>,
        request_id: &RequestId,
    ) -> Result<(Option<Recorded<Account>>, Option<Account>), Error> {
        table::load_for_command(self, id, request_id).await
    }

    async fn recorded(&self, request_id: &RequestId) -> Result<Option<Recorded<Account>>, Error> {
        table::recorded(self, request_id).await
    }

    async fn save(&self, change: Change<'_, Account>) -> Result<(), SaveError> {
        table::save(self, change).await
    }
}

#[async_trait]
impl AccountRepository for AccountStore {
    async fn get(&self, id: AccountId) -> Result<Option<Account>, Error> {
        Ok(self.by_id.get(id.as_uuid(), account_from).await?)
    }

    async fn find_by_email(&self, email: &Email) -> Result<Option<Account>, Error> {
        let row = self
            .store
            .fetch_optional(SELECT_BY_EMAIL, vec![Param::Text(email.as_str().to_owned())])
            .await?;
        Ok(row.as_ref().map(account_from).transpose()?)
    }

    async fn events(&self, position: u64, follow: bool) -> Result<EventStream, Error> {
        Ok(self.store.follow(position, follow).await?)
    }
}
