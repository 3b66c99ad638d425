use std::fmt;

use serde::{Deserialize, Serialize};
use strata_kernel::{AggregateRoot, FieldViolation, Id, Version};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{AccountError, AccountEvent, DisplayName, Email, PasswordHash, Role, Roles, SuspensionReason};

/// The id of an [`Account`].
pub type AccountId = Id<Account>;

/// Whether an account may sign in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountStatus {
    /// It may.
    Active,
    /// It may not, for this reason.
    Suspended(SuspensionReason),
}

impl AccountStatus {
    /// The stored name: `active` or `suspended`.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended(_) => "suspended",
        }
    }
}

impl fmt::Display for AccountStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity's aggregate root: someone who can sign in.
///
/// Invariants, kept by its methods: the email (normalized) never changes; there
/// is always at least one role; the password is only ever held as a hash;
/// status moves active ⇄ suspended, a suspended account always has a reason;
/// every change increments the version.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    id: AccountId,
    email: Email,
    display_name: DisplayName,
    roles: Roles,
    password_hash: PasswordHash,
    status: AccountStatus,
    version: Version,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl AggregateRoot for Account {
    type Event = AccountEvent;
    const KIND: &'static str = "account";

    fn id(&self) -> AccountId {
        self.id
    }

    fn version(&self) -> Version {
        self.version
    }
}

impl Account {
    /// A new active account at version 1, and the event that records it.
    #[must_use]
    pub fn register(
        id: AccountId,
        email: Email,
        display_name: DisplayName,
        roles: Roles,
        password_hash: PasswordHash,
        now: OffsetDateTime,
    ) -> (Self, AccountEvent) {
        let event = AccountEvent::Registered {
            email: email.as_str().to_owned(),
            display_name: display_name.as_str().to_owned(),
            roles: roles.as_slice().to_vec(),
        };
        let account = Self {
            id,
            email,
            display_name,
            roles,
            password_hash,
            status: AccountStatus::Active,
            version: Version::INITIAL,
            created_at: now,
            updated_at: now,
        };
        (account, event)
    }

    /// Replaces the password hash. `checked_against` is the hash the current
    /// password was verified against (outside, since hashing is slow): if the
    /// account's hash is no longer that one, the check is stale.
    ///
    /// # Errors
    /// [`AccountError::Suspended`] when suspended;
    /// [`AccountError::PasswordChangedConcurrently`] when the hash changed since
    /// the check.
    pub fn change_password(
        &mut self,
        checked_against: &PasswordHash,
        new_hash: PasswordHash,
        now: OffsetDateTime,
    ) -> Result<AccountEvent, AccountError> {
        if matches!(self.status, AccountStatus::Suspended(_)) {
            return Err(AccountError::Suspended(self.id));
        }
        if &self.password_hash != checked_against {
            return Err(AccountError::PasswordChangedConcurrently {
                id: self.id,
                current: self.version,
            });
        }
        self.password_hash = new_hash;
        Ok(self.changed(AccountEvent::PasswordChanged, now))
    }

    /// Stops the account from signing in.
    ///
    /// # Errors
    /// [`AccountError::AlreadySuspended`] when it is suspended.
    pub fn suspend(
        &mut self,
        reason: SuspensionReason,
        now: OffsetDateTime,
    ) -> Result<AccountEvent, AccountError> {
        if matches!(self.status, AccountStatus::Suspended(_)) {
            return Err(AccountError::AlreadySuspended(self.id));
        }
        let event = AccountEvent::Suspended {
            reason: reason.as_str().to_owned(),
        };
        self.status = AccountStatus::Suspended(reason);
        Ok(self.changed(event, now))
    }

    /// Lets a suspended account sign in again.
    ///
    /// # Errors
    /// [`AccountError::NotSuspended`] when it is active.
    pub fn reinstate(&mut self, now: OffsetDateTime) -> Result<AccountEvent, AccountError> {
        if self.status == AccountStatus::Active {
            return Err(AccountError::NotSuspended(self.id));
        }
        self.status = AccountStatus::Active;
        Ok(self.changed(AccountEvent::Reinstated, now))
    }

    fn changed(&mut self, event: AccountEvent, now: OffsetDateTime) -> AccountEvent {
        self.version = self.version.next();
        self.updated_at = now;
        event
    }

    /// The normalized email.
    #[must_use]
    pub fn email(&self) -> &Email {
        &self.email
    }

    /// The display name.
    #[must_use]
    pub fn display_name(&self) -> &DisplayName {
        &self.display_name
    }

    /// The roles.
    #[must_use]
    pub fn roles(&self) -> &Roles {
        &self.roles
    }

    /// The password hash (for the hasher and the store only).
    #[must_use]
    pub fn password_hash(&self) -> &PasswordHash {
        &self.password_hash
    }

    /// Whether it may sign in, and if not, why.
    #[must_use]
    pub fn status(&self) -> &AccountStatus {
        &self.status
    }

    /// When it was registered.
    #[must_use]
    pub fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }

    /// When it last changed.
    #[must_use]
    pub fn updated_at(&self) -> OffsetDateTime {
        self.updated_at
    }

    /// The plain-data form stores keep, hash included.
    #[must_use]
    pub fn snapshot(&self) -> AccountSnapshot {
        AccountSnapshot {
            id: self.id.as_uuid(),
            email: self.email.as_str().to_owned(),
            display_name: self.display_name.as_str().to_owned(),
            roles: self.roles.as_slice().to_vec(),
            password_hash: self.password_hash.phc().map(str::to_owned),
            status: self.status.as_str().to_owned(),
            suspension_reason: match &self.status {
                AccountStatus::Active => None,
                AccountStatus::Suspended(reason) => Some(reason.as_str().to_owned()),
            },
            version: self.version.get(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// Rebuilds an account from what a store kept, checking the aggregate's
    /// invariants (an email, a display name, at least one role, a known status
    /// with a reason when suspended, a version of at least 1) — not today's
    /// input rules, so that a rule that tightens later never makes a stored
    /// account, or the replay of an old command, unreadable. A snapshot without
    /// a hash (an idempotency record keeps none) restores with the hash
    /// withheld.
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn restore(snapshot: AccountSnapshot) -> Result<Self, FieldViolation> {
        if snapshot.version < 1 {
            return Err(FieldViolation::new("version", "is below 1"));
        }
        let status = match (snapshot.status.as_str(), snapshot.suspension_reason) {
            ("active", None) => AccountStatus::Active,
            ("suspended", Some(reason)) => AccountStatus::Suspended(SuspensionReason::from_stored(reason)),
            (status, _) => {
                return Err(FieldViolation::new(
                    "status",
                    format!("{status:?} with or without a reason does not hold"),
                ));
            }
        };
        let password_hash = match snapshot.password_hash {
            Some(phc) => PasswordHash::from_phc(phc)?,
            None => PasswordHash::withheld(),
        };
        Ok(Self {
            id: AccountId::from_uuid(snapshot.id),
            email: Email::from_stored(snapshot.email)?,
            display_name: DisplayName::from_stored(snapshot.display_name)?,
            roles: Roles::new(snapshot.roles)?,
            password_hash,
            status,
            version: Version::new(snapshot.version),
            created_at: snapshot.created_at,
            updated_at: snapshot.updated_at,
        })
    }
}

/// An account as plain data: what stores write and read. Only
/// [`Account::restore`] turns it back into an aggregate. Its `Debug` hides the
/// hash.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct AccountSnapshot {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub roles: Vec<Role>,
    /// `None` in an idempotency record, which keeps no hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    pub status: String,
    #[serde(default)]
    pub suspension_reason: Option<String>,
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl fmt::Debug for AccountSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountSnapshot")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("roles", &self.roles)
            .field("status", &self.status)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl AccountSnapshot {
    /// The snapshot without its password hash: what an idempotency record
    /// keeps. A replay only answers the client, which never sees the hash, and
    /// a record must not keep an old hash alive for the retention window after
    /// the password changed.
    #[must_use]
    pub fn without_password_hash(mut self) -> Self {
        self.password_hash = None;
        self
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn hash(n: u8) -> PasswordHash {
        PasswordHash::from_phc(format!("$argon2id$v=19$m=8,t=1,p=1$c2FsdA${n}")).unwrap()
    }

    fn active() -> Account {
        Account::register(
            AccountId::generate(),
            Email::parse("ada@example.com").unwrap(),
            DisplayName::parse("Ada").unwrap(),
            Roles::new([Role::Customer]).unwrap(),
            hash(1),
            OffsetDateTime::UNIX_EPOCH,
        )
        .0
    }

    fn later() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::hours(1)
    }

    fn reason() -> SuspensionReason {
        SuspensionReason::parse("chargebacks").unwrap()
    }

    #[test]
    fn a_new_account_is_active_at_version_one() {
        let account = active();
        assert_eq!(account.status(), &AccountStatus::Active);
        assert_eq!(account.version(), Version::INITIAL);
    }

    #[test]
    fn suspend_and_reinstate_alternate() {
        let mut account = active();
        assert_eq!(
            account.suspend(reason(), later()).unwrap(),
            AccountEvent::Suspended {
                reason: "chargebacks".into()
            }
        );
        assert!(matches!(
            account.suspend(reason(), later()),
            Err(AccountError::AlreadySuspended(_))
        ));
        assert_eq!(account.version(), Version::new(2), "a refusal changes nothing");
        account.reinstate(later()).unwrap();
        assert!(matches!(
            account.reinstate(later()),
            Err(AccountError::NotSuspended(_))
        ));
        assert_eq!(account.version(), Version::new(3));
        assert_eq!(account.updated_at(), later());
    }

    #[test]
    fn a_password_change_needs_an_active_account_and_a_fresh_check() {
        let mut account = active();
        assert!(matches!(
            account.change_password(&hash(9), hash(2), later()),
            Err(AccountError::PasswordChangedConcurrently { .. })
        ));
        assert_eq!(
            account.change_password(&hash(1), hash(2), later()).unwrap(),
            AccountEvent::PasswordChanged
        );
        assert_eq!(account.password_hash(), &hash(2));
        account.suspend(reason(), later()).unwrap();
        assert!(matches!(
            account.change_password(&hash(2), hash(3), later()),
            Err(AccountError::Suspended(_))
        ));
    }

    #[test]
    fn snapshots_round_trip_and_records_keep_no_hash() {
        let mut account = active();
        account.suspend(reason(), later()).unwrap();
        let json = serde_json::to_string(&account.snapshot()).unwrap();
        assert_eq!(
            Account::restore(serde_json::from_str(&json).unwrap()).unwrap(),
            account
        );
        let record = serde_json::to_string(&account.snapshot().without_password_hash()).unwrap();
        assert!(!record.contains("argon2"), "{record}");
        let replayed = Account::restore(serde_json::from_str(&record).unwrap()).unwrap();
        assert_eq!(replayed.password_hash().phc(), None);
        assert!(!format!("{:?}", account.snapshot()).contains("argon2"));
        assert!(!format!("{account:?}").contains("argon2"));
    }

    #[test]
    fn a_corrupt_snapshot_is_refused() {
        let mut snapshot = active().snapshot();
        snapshot.status = "suspended".into();
        assert_eq!(Account::restore(snapshot).unwrap_err().field(), "status");
        let mut snapshot = active().snapshot();
        snapshot.roles.clear();
        assert_eq!(Account::restore(snapshot).unwrap_err().field(), "roles");
    }
}
