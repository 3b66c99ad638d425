//! Identity's repository port: what the context needs from a store, whatever
//! the store is. [`crate::store::AccountStore`] implements it on PostgreSQL and
//! SQLite, and one contract test suite (`tests/contract.rs`) holds both to it.

use std::fmt::Debug;

use async_trait::async_trait;
use strata_kernel::{Error, execute::CommandStore};
use strata_store::{StoreError, StoredEvent};
use tokio_stream::wrappers::ReceiverStream;

use crate::domain::{Account, AccountId, Email};

/// The context's events from a position on, as [`strata_store::Store::follow`] serves them.
pub type EventStream = ReceiverStream<Result<StoredEvent, StoreError>>;

/// Where accounts live. The command path (`load_for_command`, `recorded`,
/// `save`) is the kernel's [`CommandStore`] port; `save` refuses a taken email
/// with [`Error::AlreadyExists`] on `email`.
///
/// # Errors
/// Every method returns the store's failure as an [`Error`]: `Unavailable`,
/// `DeadlineExceeded`, `Contention` or `Internal`.
#[async_trait]
pub trait AccountRepository: CommandStore<Account> + Debug + 'static {
    /// The account with this id, if any.
    async fn get(&self, id: AccountId) -> Result<Option<Account>, Error>;

    /// The account with this (normalized) email, if any.
    async fn find_by_email(&self, email: &Email) -> Result<Option<Account>, Error>;

    /// The context's events after `position`; with `follow`, then every event
    /// as it commits.
    async fn events(&self, position: u64, follow: bool) -> Result<EventStream, Error>;
}
