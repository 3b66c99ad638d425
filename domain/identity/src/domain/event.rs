use serde::{Deserialize, Serialize};
use strata_kernel::DomainEvent;

use super::Role;

/// What happened to an account. Serialized as the outbox payload; fields added
/// later carry `#[serde(default)]` so that older events still read back.
///
/// No event carries a password or a password hash: the stream leaves the
/// context, the password never does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AccountEvent {
    /// An active account was registered.
    Registered {
        /// Its normalized email.
        email: String,
        /// Its display name.
        display_name: String,
        /// Its roles.
        roles: Vec<Role>,
    },
    /// The password changed.
    PasswordChanged,
    /// The account may no longer sign in.
    Suspended {
        /// Why.
        reason: String,
    },
    /// The account may sign in again.
    Reinstated,
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Registered { .. } => "identity.account.registered",
            Self::PasswordChanged => "identity.account.password_changed",
            Self::Suspended { .. } => "identity.account.suspended",
            Self::Reinstated => "identity.account.reinstated",
        }
    }
}
