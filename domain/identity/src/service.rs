//! Identity's use cases: each command runs through the kernel's command
//! machinery ([`strata_kernel::execute`]) with a method of the `Account`
//! aggregate; password hashes are made and checked by the [`PasswordHasher`]
//! port beforehand, since the aggregate's methods are plain functions.
//! Transport-neutral: the gRPC adapter parses requests into these calls and
//! maps the results back.

use std::sync::Arc;

use strata_kernel::{AggregateRoot, Clock, CommandMeta, Error, SystemClock, command::replay, execute};

use crate::domain::{
    Account, AccountId, AccountStatus, DisplayName, Email, Password, Role, Roles, SuspensionReason,
};
use crate::error::IdentityError;
use crate::password::PasswordHasher;
use crate::repository::{AccountRepository, EventStream};

/// The fields of a new account, already validated.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Its email.
    pub email: Email,
    /// Its password, hashed before it is kept.
    pub password: Password,
    /// Its display name.
    pub display_name: DisplayName,
    /// Its roles.
    pub roles: Roles,
}

/// Identity's use cases over an [`AccountRepository`] and a [`PasswordHasher`].
#[derive(Debug, Clone)]
pub struct Identity {
    accounts: Arc<dyn AccountRepository>,
    hasher: Arc<dyn PasswordHasher>,
    clock: Arc<dyn Clock>,
    /// A hash of a random password, made once with the hasher's parameters:
    /// an unknown email is checked against it, so that it costs what a wrong
    /// password costs.
    dummy: crate::domain::PasswordHash,
    /// Emails only a staff account may take ([`Identity::reserving`]).
    reserved: Arc<[Email]>,
}

impl Identity {
    /// The use cases over this store and hasher, on the system clock.
    ///
    /// # Errors
    /// When the hasher cannot make the dummy hash.
    pub async fn new(
        accounts: Arc<dyn AccountRepository>,
        hasher: Arc<dyn PasswordHasher>,
    ) -> Result<Self, Error> {
        Self::with_clock(accounts, hasher, Arc::new(SystemClock)).await
    }

    /// The use cases over this store, hasher and clock.
    ///
    /// # Errors
    /// When the hasher cannot make the dummy hash.
    pub async fn with_clock(
        accounts: Arc<dyn AccountRepository>,
        hasher: Arc<dyn PasswordHasher>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        // Which password it is does not matter: the result of verifying
        // against it is ignored; only its cost counts.
        let random = uuid::Uuid::now_v7().simple().to_string();
        let dummy = hasher
            .hash(&Password::given("password", &random).map_err(Error::from)?)
            .await?;
        Ok(Self {
            accounts,
            hasher,
            clock,
            dummy,
            reserved: Arc::from([]),
        })
    }

    /// Reserves `emails` for staff: registering one of them without the staff
    /// or admin role is refused as if it were taken, so that a shopper cannot
    /// squat the staff account's email before it is registered.
    #[must_use]
    pub fn reserving(mut self, emails: Vec<Email>) -> Self {
        self.reserved = emails.into();
        self
    }

    /// # Errors
    /// [`Error::NotFound`], or the store's failure.
    pub async fn get(&self, id: AccountId) -> Result<Account, Error> {
        self.accounts.get(id).await?.ok_or_else(|| not_found(id))
    }

    /// Registers an active account; the password is kept only as its hash.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] on `email` when the email is taken (or
    /// reserved for staff and the account would not be staff),
    /// [`Error::RequestIdReused`], hashing or the store's failure.
    pub async fn register(&self, meta: &CommandMeta, new: NewAccount) -> Result<Account, Error> {
        // A retry replays without hashing again.
        if let Some(done) = replay(meta, self.accounts.recorded(&meta.request_id).await?)? {
            return Ok(done);
        }
        let staff = new
            .roles
            .as_slice()
            .iter()
            .any(|r| matches!(r, Role::Staff | Role::Admin));
        if !staff && self.reserved.contains(&new.email) {
            return Err(Error::AlreadyExists {
                kind: Account::KIND,
                field: "email",
            });
        }
        let hash = self.hasher.hash(&new.password).await?;
        execute::create(&*self.accounts, &*self.clock, meta, |now| {
            let (account, event) = Account::register(
                AccountId::generate(),
                new.email,
                new.display_name,
                new.roles,
                hash,
                now,
            );
            (account, vec![event])
        })
        .await
    }

    /// The active account these credentials belong to.
    ///
    /// Every path verifies exactly one hash, so that an unknown email costs
    /// what a wrong password costs and the time of the answer does not tell
    /// them apart; only when the password is right is a suspension told.
    ///
    /// # Errors
    /// [`IdentityError::BadCredentials`] for an unknown email or a wrong
    /// password alike; [`IdentityError::Suspended`] when they are right but the
    /// account is suspended; hashing or the store's failure.
    pub async fn verify_credentials(
        &self,
        email: &Email,
        password: &Password,
    ) -> Result<Account, IdentityError> {
        let Some(account) = self.accounts.find_by_email(email).await? else {
            let _ = self.hasher.verify(password, &self.dummy).await?;
            return Err(IdentityError::BadCredentials);
        };
        if !self.hasher.verify(password, account.password_hash()).await? {
            return Err(IdentityError::BadCredentials);
        }
        match account.status() {
            AccountStatus::Active => Ok(account),
            AccountStatus::Suspended(_) => Err(IdentityError::Suspended(account.id())),
        }
    }

    /// Replaces the password of an active account, given its current one.
    ///
    /// # Errors
    /// [`IdentityError::BadCredentials`] when `current` is wrong;
    /// [`Error::NotFound`]; [`Error::VersionConflict`] when `expected_version`
    /// is stale or the password changed meanwhile; `FAILED_PRECONDITION` when
    /// the account is suspended; [`Error::RequestIdReused`]; hashing or the
    /// store's failure.
    pub async fn change_password(
        &self,
        meta: &CommandMeta,
        id: AccountId,
        current: &Password,
        new: &Password,
    ) -> Result<Account, IdentityError> {
        // A retry replays first: after the change, `current` no longer verifies.
        if let Some(done) = replay(meta, self.accounts.recorded(&meta.request_id).await?)? {
            return Ok(done);
        }
        let account = self.get(id).await?;
        // Checked before the slow verification, so that a stale command fails
        // at once; `execute::modify` checks it again against what it writes.
        if let Some(expected) = meta.expected_version
            && expected != account.version()
        {
            return Err(Error::VersionConflict {
                kind: Account::KIND,
                id: id.to_string(),
                expected: Some(expected),
                current: account.version(),
            }
            .into());
        }
        let checked_against = account.password_hash().clone();
        if !self.hasher.verify(current, &checked_against).await? {
            return Err(IdentityError::BadCredentials);
        }
        let new_hash = self.hasher.hash(new).await?;
        // The aggregate refuses if the hash is no longer the one just checked.
        Ok(
            execute::modify(&*self.accounts, &*self.clock, meta, id, |account, now| {
                account
                    .change_password(&checked_against, new_hash.clone(), now)
                    .map(|event| vec![event])
            })
            .await?,
        )
    }

    /// Stops an active account from signing in.
    ///
    /// # Errors
    /// See [`execute::modify`]; `FAILED_PRECONDITION` when already suspended.
    pub async fn suspend(
        &self,
        meta: &CommandMeta,
        id: AccountId,
        reason: SuspensionReason,
    ) -> Result<Account, Error> {
        execute::modify(&*self.accounts, &*self.clock, meta, id, |account, now| {
            account.suspend(reason.clone(), now).map(|event| vec![event])
        })
        .await
    }

    /// Lets a suspended account sign in again.
    ///
    /// # Errors
    /// See [`execute::modify`]; `FAILED_PRECONDITION` when it is active.
    pub async fn reinstate(&self, meta: &CommandMeta, id: AccountId) -> Result<Account, Error> {
        execute::modify(&*self.accounts, &*self.clock, meta, id, |account, now| {
            account.reinstate(now).map(|event| vec![event])
        })
        .await
    }

    /// The context's events after `position`; with `follow`, then every event
    /// as it commits.
    ///
    /// # Errors
    /// The store's failure.
    pub async fn events(&self, position: u64, follow: bool) -> Result<EventStream, Error> {
        self.accounts.events(position, follow).await
    }
}

fn not_found(id: AccountId) -> Error {
    Error::NotFound {
        kind: Account::KIND,
        id: id.to_string(),
    }
}
