use strata_kernel::{AggregateRoot, Error, Version};

use super::{Account, AccountId};

/// Why the Account aggregate refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// Suspending needs an active account.
    #[error("account is already suspended")]
    AlreadySuspended(AccountId),
    /// Reinstating needs a suspended account.
    #[error("account is active; only a suspended account can be reinstated")]
    NotSuspended(AccountId),
    /// A suspended account cannot change its password.
    #[error("account is suspended and cannot change its password")]
    Suspended(AccountId),
    /// The password changed after the current password was checked against
    /// it: the check no longer holds, so the change is refused as a conflict.
    #[error("the password changed concurrently")]
    PasswordChangedConcurrently {
        /// The account.
        id: AccountId,
        /// Its version now.
        current: Version,
    },
}

impl From<AccountError> for Error {
    fn from(error: AccountError) -> Self {
        let (id, reason) = match &error {
            AccountError::AlreadySuspended(id) => (id, "ACCOUNT_ALREADY_SUSPENDED"),
            AccountError::NotSuspended(id) => (id, "ACCOUNT_NOT_SUSPENDED"),
            AccountError::Suspended(id) => (id, "ACCOUNT_SUSPENDED"),
            AccountError::PasswordChangedConcurrently { id, current } => {
                return Self::VersionConflict {
                    kind: Account::KIND,
                    id: id.to_string(),
                    expected: None,
                    current: *current,
                };
            }
        };
        Self::FailedPrecondition {
            kind: Account::KIND,
            id: id.to_string(),
            reason,
            message: error.to_string(),
            metadata: Vec::new(),
        }
    }
}
