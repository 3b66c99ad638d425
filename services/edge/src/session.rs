//! Signing in, as both edges do it: identity verifies the credentials, the edge
//! issues a token carrying the account's roles.

use serde::Deserialize;
use strata_proto::identity::v1 as identity;
use tonic::Code;
use utoipa::ToSchema;

use crate::{
    Ctx, Edge, Problem,
    auth::{Token, role},
};

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// The account's email.
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// Its password.
    pub password: String,
}

/// Whose tokens an edge issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Any active account.
    Anyone,
    /// Staff only: another account is refused with 403.
    Staff,
}

/// Verifies `credentials` with identity and issues a token.
///
/// # Errors
/// 401 for an unknown email or a wrong password (the same answer for both), 403
/// for a suspended account or, for [`Audience::Staff`], an account without the
/// staff role; a data service's failure.
pub async fn sign_in(
    edge: &Edge,
    ctx: &Ctx,
    credentials: SignIn,
    audience: Audience,
) -> Result<Token, Problem> {
    let request = ctx.call.request(identity::VerifyCredentialsRequest {
        email: credentials.email,
        password: credentials.password,
    });
    let verified = ctx
        .call
        .run(edge.downstream.identity.clone().verify_credentials(request))
        .await
        .map_err(|status| match status.code() {
            Code::Unauthenticated | Code::InvalidArgument => {
                Problem::unauthorized("the email or the password is wrong", None)
            }
            Code::PermissionDenied => Problem::forbidden("this account is suspended"),
            _ => Problem::from_status(&status, "account"),
        })?;
    let roles = role_names(&verified.roles);
    let account_id = crate::model::uuid(&verified.account_id)?;
    let principal = crate::auth::Principal { account_id, roles };
    if audience == Audience::Staff && !principal.is_staff() {
        return Err(Problem::forbidden("only staff accounts can sign in here"));
    }
    edge.keys.issue(principal.account_id, principal.roles)
}

/// Identity's roles by the names tokens and JSON use ([`role`]).
#[must_use]
pub fn role_names(roles: &[i32]) -> Vec<String> {
    roles
        .iter()
        .filter_map(|r| match identity::Role::try_from(*r) {
            Ok(identity::Role::Customer) => Some(role::CUSTOMER.to_owned()),
            Ok(identity::Role::Staff) => Some(role::STAFF.to_owned()),
            Ok(identity::Role::Admin) => Some(role::ADMIN.to_owned()),
            _ => None,
        })
        .collect()
}
