//! The errors of identity's use cases: the kernel's [`Error`] plus the two
//! outcomes of checking credentials that the kernel has no kind for
//! (UNAUTHENTICATED, PERMISSION_DENIED), and their one mapping to
//! `tonic::Status`, which hands every kernel error to the kernel's mapping.

use std::collections::HashMap;

use strata_kernel::{
    Error,
    grpc::{ERROR_DOMAIN, to_status},
};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::AccountId;

/// The one message for an unknown email and a wrong password alike, so that
/// the answer does not tell whether an account exists.
pub const BAD_CREDENTIALS: &str = "the email or the password is wrong";

/// Why a use case of identity failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The email is unknown or the password wrong (which one is not told):
    /// `UNAUTHENTICATED`.
    #[error("{BAD_CREDENTIALS}")]
    BadCredentials,
    /// The credentials are right but the account is suspended:
    /// `PERMISSION_DENIED` with ErrorInfo `ACCOUNT_SUSPENDED`.
    #[error("account {0} is suspended")]
    Suspended(AccountId),
    /// Any other failure, mapped by the kernel.
    #[error(transparent)]
    Kernel(#[from] Error),
}

impl From<strata_store::StoreError> for IdentityError {
    fn from(error: strata_store::StoreError) -> Self {
        Self::Kernel(error.into())
    }
}

impl From<IdentityError> for Status {
    fn from(error: IdentityError) -> Self {
        match error {
            IdentityError::BadCredentials => Status::unauthenticated(BAD_CREDENTIALS),
            IdentityError::Suspended(_) => Status::with_error_details(
                Code::PermissionDenied,
                error.to_string(),
                ErrorDetails::with_error_info("ACCOUNT_SUSPENDED", ERROR_DOMAIN, HashMap::new()),
            ),
            IdentityError::Kernel(error) => to_status(error),
        }
    }
}
