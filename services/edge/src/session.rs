//! Signing in, as both edges do it: identity verifies the credentials, the edge
//! issues a token carrying the account's roles.

use serde::Deserialize;
use strata_proto::identity::v1 as identity;
use tonic::{Code, Status};
use utoipa::ToSchema;

use crate::{
    Ctx, Edge, Problem,
    auth::{Principal, Token, role},
    rate_limit::ClientAddress,
};

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// The account's email.
    #[schema(example = "ada@example.com", min_length = 1, max_length = 254)]
    pub email: String,
    /// Its password.
    #[schema(min_length = 1, max_length = 1024)]
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
    from: ClientAddress,
    credentials: SignIn,
    audience: Audience,
) -> Result<Token, Problem> {
    edge.sign_in.admit(from.0, Some(&credentials.email))?;
    let email = credentials.email.clone();
    let request = ctx.call.request(identity::VerifyCredentialsRequest {
        email: credentials.email,
        password: credentials.password,
    });
    let verified = ctx
        .call
        .run(edge.downstream.identity.clone().verify_credentials(request))
        .await;
    if let Err(status) = &verified
        && status.code() == Code::Unauthenticated
    {
        edge.sign_in.record(&email, false);
    }
    let principal = admitted(&verified.map_err(|status| refused(&status))?, audience)?;
    edge.sign_in.record(&email, true);
    edge.keys.issue(principal.account_id, principal.roles)
}

/// The answer to identity's refusal to verify credentials: the same 401 for
/// an unknown email and a wrong password, 403 for a suspended account.
fn refused(status: &Status) -> Problem {
    match status.code() {
        Code::Unauthenticated | Code::InvalidArgument => {
            Problem::unauthorized("the email or the password is wrong", None)
        }
        Code::PermissionDenied => Problem::forbidden("this account is suspended"),
        _ => Problem::from_status(status, "account"),
    }
}

/// Who the verified account signs in as, if `audience` admits it.
fn admitted(
    verified: &identity::VerifyCredentialsResponse,
    audience: Audience,
) -> Result<Principal, Problem> {
    let principal = Principal {
        account_id: crate::model::uuid(&verified.account_id)?,
        roles: role_names(&verified.roles),
    };
    if audience == Audience::Staff && !principal.is_staff() {
        return Err(Problem::forbidden("only staff accounts can sign in here"));
    }
    Ok(principal)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(roles: &[identity::Role]) -> identity::VerifyCredentialsResponse {
        identity::VerifyCredentialsResponse {
            account_id: "0195f3a4-7c1e-7d2a-9b3c-4d5e6f708192".to_owned(),
            roles: roles.iter().map(|r| *r as i32).collect(),
            status: identity::AccountStatus::Active as i32,
        }
    }

    #[test]
    fn roles_are_named_as_tokens_carry_them() {
        let roles = [
            identity::Role::Customer as i32,
            identity::Role::Staff as i32,
            identity::Role::Admin as i32,
            identity::Role::Unspecified as i32,
            99,
        ];
        assert_eq!(role_names(&roles), ["customer", "staff", "admin"]);
        assert!(role_names(&[]).is_empty());
    }

    #[test]
    fn a_staff_edge_admits_staff_and_admins_only() {
        for roles in [&[identity::Role::Staff][..], &[identity::Role::Admin]] {
            let principal = admitted(&verified(roles), Audience::Staff).unwrap();
            assert_eq!(principal.account_id.to_string(), verified(roles).account_id);
            assert_eq!(principal.roles, role_names(&verified(roles).roles));
        }
        let customer = verified(&[identity::Role::Customer]);
        let problem = admitted(&customer, Audience::Staff).unwrap_err();
        assert_eq!(problem.status, 403);
        let principal = admitted(&customer, Audience::Anyone).unwrap();
        assert_eq!(principal.roles, ["customer"]);
        assert!(admitted(&verified(&[]), Audience::Anyone).is_ok());

        let mut malformed = verified(&[identity::Role::Staff]);
        malformed.account_id = "not-a-uuid".to_owned();
        assert_eq!(admitted(&malformed, Audience::Anyone).unwrap_err().status, 500);
    }

    #[test]
    fn a_wrong_email_and_a_wrong_password_get_the_same_answer() {
        let wrong_email = refused(&Status::unauthenticated("no account with this email"));
        let wrong_password = refused(&Status::unauthenticated("wrong password"));
        let malformed = refused(&Status::invalid_argument("email: not an email"));
        for problem in [&wrong_email, &wrong_password, &malformed] {
            assert_eq!(problem.status, 401);
            assert_eq!(problem.detail, "the email or the password is wrong");
        }
        let suspended = refused(&Status::permission_denied("suspended"));
        assert_eq!(suspended.status, 403);
        assert_eq!(suspended.detail, "this account is suspended");
        assert_eq!(refused(&Status::unavailable("down")).status, 503);
    }
}
