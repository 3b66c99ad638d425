//! The identity bounded context: accounts that sign in, from proto to database.
//!
//! # Layout
//! - [`domain`]: the pure model — the [`domain::Account`] aggregate root, its
//!   value objects (the [`domain::Password`] that never prints, its
//!   [`domain::PasswordHash`]), events and errors. No I/O.
//! - [`password`]: the [`password::PasswordHasher`] port and its argon2id
//!   implementation, with parameters from the environment
//!   ([`password::PasswordPolicy`]).
//! - [`service`]: the use cases ([`service::Identity`]), each command a method
//!   of the aggregate run through the kernel's command machinery.
//! - [`error`]: [`error::IdentityError`], the kernel's errors plus
//!   UNAUTHENTICATED and PERMISSION_DENIED, and their mapping to `tonic::Status`.
//! - [`repository`]: the store port ([`repository::AccountRepository`]).
//! - [`store`]: its implementation — identity's SQL and row mapping over the
//!   shared [`strata_store::Store`], on PostgreSQL or SQLite.
//! - [`grpc`]: the adapter serving `strata.identity.v1.AccountService`, the only
//!   gRPC surface of the context.
//!
//! A process hosts the context with [`mount`].
//!
//! **Architecture invariant:** a password and its hash never leave the context:
//! no response, event, error message, log line or idempotency record (its
//! fingerprint or its result) carries either.

pub mod domain;
pub mod error;
pub mod grpc;
pub mod password;
pub mod repository;
pub mod service;
pub mod store;

use std::sync::Arc;

pub use store::CONTEXT;

use strata_proto::identity::v1::account_service_server::{AccountServiceServer, SERVICE_NAME};
use strata_store::{OpenError, StoreConfig};

/// The fully-qualified name of the context's one gRPC service.
pub const GRPC_SERVICE: &str = SERVICE_NAME;

/// Why the context could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// A password setting is not usable; the message names its variable.
    #[error(transparent)]
    Policy(#[from] password::PolicyError),
    /// The store cannot be opened or migrated.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The dummy hash for unknown emails could not be made.
    #[error("preparing password verification failed")]
    Start(#[source] strata_kernel::Error),
}

/// Reads the password settings from the environment
/// ([`password::PasswordPolicy::from_env`]), opens the store (migrating it)
/// and returns the context's gRPC service, ready to be added to a server.
///
/// # Errors
/// [`MountError`]: a bad password setting (naming its variable), the store, or
/// the hasher.
pub async fn mount(store: StoreConfig) -> Result<AccountServiceServer<grpc::AccountGrpc>, MountError> {
    mount_configured(store, |var| std::env::var(var).ok()).await
}

/// [`mount`] with the password settings read from `lookup` (a variable's
/// value, if set) rather than from the process environment.
///
/// # Errors
/// See [`mount`].
pub async fn mount_configured(
    store: StoreConfig,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<AccountServiceServer<grpc::AccountGrpc>, MountError> {
    let policy = password::PasswordPolicy::from_lookup(&lookup)?;
    let reserved = reserved_emails(lookup(RESERVED_EMAILS).as_deref())?;
    mount_reserving(store, policy, reserved).await
}

/// The grant a caller needs to register an account with any role but
/// `customer` (see `strata_rpc::admission::Scope`): without it,
/// `RegisterAccount` with other roles is PERMISSION_DENIED.
pub const GRANT_ROLES: &str = "strata.identity.v1.AccountService/RegisterAccount#roles";

/// The variable naming the emails reserved for staff (comma-separated), such
/// as the first staff account's `STRATA_ADMIN_EMAIL`: see
/// [`service::Identity::reserving`].
pub const RESERVED_EMAILS: &str = "STRATA_IDENTITY_RESERVED_EMAILS";

/// The reserved emails, each normalized as an account's email is.
///
/// # Errors
/// [`password::PolicyError`] naming [`RESERVED_EMAILS`] and the entry that is
/// not an email.
pub fn reserved_emails(list: Option<&str>) -> Result<Vec<domain::Email>, password::PolicyError> {
    list.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            domain::Email::parse(entry).map_err(|violation| password::PolicyError {
                var: RESERVED_EMAILS,
                problem: format!("{entry:?}: {}", violation.description()),
            })
        })
        .collect()
}

/// [`mount`] with the password settings given rather than read from the
/// environment (tests use cheap ones).
///
/// # Errors
/// See [`mount`].
pub async fn mount_with(
    store: StoreConfig,
    policy: password::PasswordPolicy,
) -> Result<AccountServiceServer<grpc::AccountGrpc>, MountError> {
    mount_reserving(store, policy, Vec::new()).await
}

async fn mount_reserving(
    store: StoreConfig,
    policy: password::PasswordPolicy,
    reserved: Vec<domain::Email>,
) -> Result<AccountServiceServer<grpc::AccountGrpc>, MountError> {
    let hasher = Arc::new(password::Argon2Hasher::new(&policy)?);
    let accounts = store::open(&store).await?;
    let identity = service::Identity::new(accounts, hasher)
        .await
        .map_err(MountError::Start)?
        .reserving(reserved);
    Ok(AccountServiceServer::new(grpc::AccountGrpc::new(
        identity,
        policy.min_password_chars,
    )))
}
