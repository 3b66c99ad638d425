//! The gRPC adapter: serves `strata.identity.v1.AccountService`, the context's
//! only RPC surface. Requests are parsed into validated domain values here
//! (every violation named by field), results are converted back here, and
//! errors leave through one mapping to `tonic::Status` ([`crate::error`], which
//! hands the kernel's errors to the kernel's). No other module sees prost
//! types. No response built here carries a password or its hash.

use strata_kernel::{
    AggregateRoot, Error, FieldViolation,
    error::Violations,
    grpc::{self, timestamp},
};
use strata_proto::identity::v1 as pb;
use strata_store::StoredEvent;
use tonic::{Request, Response, Status};

use crate::domain::{
    Account, AccountEvent, AccountId, AccountStatus, DisplayName, Email, Password, Role, Roles,
    SuspensionReason,
};
use crate::service::{Identity, NewAccount};

/// `AccountService` over identity's use cases.
#[derive(Debug, Clone)]
pub struct AccountGrpc {
    identity: Identity,
    /// The fewest characters a new password may have.
    min_password_chars: usize,
}

impl AccountGrpc {
    /// Serves these use cases; new passwords need `min_password_chars`.
    #[must_use]
    pub fn new(identity: Identity, min_password_chars: usize) -> Self {
        Self {
            identity,
            min_password_chars,
        }
    }
}

#[tonic::async_trait]
impl pb::account_service_server::AccountService for AccountGrpc {
    async fn register_account(
        &self,
        request: Request<pb::RegisterAccountRequest>,
    ) -> Result<Response<pb::RegisterAccountResponse>, Status> {
        let may_grant_roles = strata_rpc::admission::caller_may(request.extensions(), crate::GRANT_ROLES);
        let request = request.into_inner();
        let customer_only = request
            .roles
            .iter()
            .all(|role| *role == pb::Role::Customer as i32);
        if !customer_only && !may_grant_roles {
            return Err(Status::permission_denied(
                "this caller may register customers only: roles other than ROLE_CUSTOMER need another credential",
            ));
        }
        let mut violations = Violations::new();
        let email = violations.check(Email::parse(&request.email));
        let password = violations.check(Password::new_password(
            "password",
            &request.password,
            self.min_password_chars,
        ));
        let display_name = violations.check(DisplayName::parse(&request.display_name));
        let roles = violations.check(roles(&request.roles));
        // The fingerprint covers every field but the password: it is stored
        // beside the request id, and the password must not be kept anywhere
        // but as its salted hash. The same key with another password is
        // therefore the same command, and replays the first account.
        let fingerprint = (
            email.as_ref().map(Email::as_str),
            display_name.as_ref().map(DisplayName::as_str),
            roles.as_ref().map(Roles::as_slice),
        );
        let meta = violations.check_all(grpc::command_meta(
            "RegisterAccount",
            &request.request_id,
            None,
            &fingerprint,
        ));
        let (meta, new) = violations.finish(|| {
            Some((
                meta?,
                NewAccount {
                    email: email?,
                    password: password?,
                    display_name: display_name?,
                    roles: roles?,
                },
            ))
        })?;
        let account = self.identity.register(&meta, new).await?;
        Ok(Response::new(pb::RegisterAccountResponse {
            account: Some(to_proto(&account)),
        }))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::GetAccountResponse>, Status> {
        let id = AccountId::parse("id", &request.get_ref().id).map_err(Error::from)?;
        let account = self.identity.get(id).await?;
        Ok(Response::new(pb::GetAccountResponse {
            account: Some(to_proto(&account)),
        }))
    }

    async fn verify_credentials(
        &self,
        request: Request<pb::VerifyCredentialsRequest>,
    ) -> Result<Response<pb::VerifyCredentialsResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let email = violations.check(Email::parse(&request.email));
        let password = violations.check(Password::given("password", &request.password));
        let (email, password) = violations.finish(|| Some((email?, password?)))?;
        let account = self.identity.verify_credentials(&email, &password).await?;
        Ok(Response::new(pb::VerifyCredentialsResponse {
            account_id: account.id().to_string(),
            roles: roles_to_proto(account.roles()),
            status: status_to_proto(account.status()).into(),
        }))
    }

    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let id = violations.check(AccountId::parse("id", &request.id));
        let current = violations.check(Password::given("current_password", &request.current_password));
        let new = violations.check(Password::new_password(
            "new_password",
            &request.new_password,
            self.min_password_chars,
        ));
        // Neither password is fingerprinted (see `register_account`): the
        // record keeps the id and expected version only, so a retry with the
        // same key replays the first result.
        let meta = violations.check_all(grpc::command_meta(
            "ChangePassword",
            &request.request_id,
            request.expected_version,
            &id.map(|id| id.to_string()),
        ));
        let (id, meta, current, new) = violations.finish(|| Some((id?, meta?, current?, new?)))?;
        let account = self.identity.change_password(&meta, id, &current, &new).await?;
        Ok(Response::new(pb::ChangePasswordResponse {
            account: Some(to_proto(&account)),
        }))
    }

    async fn suspend_account(
        &self,
        request: Request<pb::SuspendAccountRequest>,
    ) -> Result<Response<pb::SuspendAccountResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let id = violations.check(AccountId::parse("id", &request.id));
        let reason = violations.check(SuspensionReason::parse(&request.reason));
        let fingerprint = (
            id.map(|id| id.to_string()),
            reason.as_ref().map(SuspensionReason::as_str),
        );
        let meta = violations.check_all(grpc::command_meta(
            "SuspendAccount",
            &request.request_id,
            request.expected_version,
            &fingerprint,
        ));
        let (id, meta, reason) = violations.finish(|| Some((id?, meta?, reason?)))?;
        let account = self.identity.suspend(&meta, id, reason).await?;
        Ok(Response::new(pb::SuspendAccountResponse {
            account: Some(to_proto(&account)),
        }))
    }

    async fn reinstate_account(
        &self,
        request: Request<pb::ReinstateAccountRequest>,
    ) -> Result<Response<pb::ReinstateAccountResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let id = violations.check(AccountId::parse("id", &request.id));
        let meta = violations.check_all(grpc::command_meta(
            "ReinstateAccount",
            &request.request_id,
            request.expected_version,
            &id.map(|id| id.to_string()),
        ));
        let (id, meta) = violations.finish(|| Some((id?, meta?)))?;
        let account = self.identity.reinstate(&meta, id).await?;
        Ok(Response::new(pb::ReinstateAccountResponse {
            account: Some(to_proto(&account)),
        }))
    }

    type StreamEventsStream = strata_store::GrpcEvents<pb::StreamEventsResponse>;

    async fn stream_events(
        &self,
        request: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let request = request.into_inner();
        let events = self
            .identity
            .events(request.after_position, request.follow)
            .await?;
        Ok(Response::new(strata_store::grpc_events(events, event_to_proto)))
    }
}

/// The requested roles: each a known role, at least one.
fn roles(raw: &[i32]) -> Result<Roles, FieldViolation> {
    let roles = raw
        .iter()
        .map(|&role| match pb::Role::try_from(role) {
            Ok(pb::Role::Customer) => Ok(Role::Customer),
            Ok(pb::Role::Staff) => Ok(Role::Staff),
            Ok(pb::Role::Admin) => Ok(Role::Admin),
            Ok(pb::Role::Unspecified) | Err(_) => Err(FieldViolation::new(
                "roles",
                format!("{role} is not a known role (customer, staff or admin)"),
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Roles::new(roles)
}

fn roles_to_proto(roles: &Roles) -> Vec<i32> {
    roles
        .as_slice()
        .iter()
        .map(|role| role_to_proto(*role).into())
        .collect()
}

fn role_to_proto(role: Role) -> pb::Role {
    match role {
        Role::Customer => pb::Role::Customer,
        Role::Staff => pb::Role::Staff,
        Role::Admin => pb::Role::Admin,
    }
}

fn status_to_proto(status: &AccountStatus) -> pb::AccountStatus {
    match status {
        AccountStatus::Active => pb::AccountStatus::Active,
        AccountStatus::Suspended(_) => pb::AccountStatus::Suspended,
    }
}

/// The account as clients see it: never with its password hash.
fn to_proto(account: &Account) -> pb::Account {
    pb::Account {
        id: account.id().to_string(),
        email: account.email().as_str().to_owned(),
        display_name: account.display_name().as_str().to_owned(),
        roles: roles_to_proto(account.roles()),
        status: status_to_proto(account.status()).into(),
        suspension_reason: match account.status() {
            AccountStatus::Active => String::new(),
            AccountStatus::Suspended(reason) => reason.as_str().to_owned(),
        },
        version: account.version().get(),
        create_time: Some(timestamp(account.created_at())),
        update_time: Some(timestamp(account.updated_at())),
    }
}

fn event_to_proto(stored: StoredEvent) -> Result<pb::StreamEventsResponse, Error> {
    use pb::stream_events_response::Event;
    let event: AccountEvent = serde_json::from_value(stored.payload).map_err(|e| {
        Error::Internal(
            format!(
                "event {} ({}) does not read back: {e}",
                stored.position, stored.event_type
            )
            .into(),
        )
    })?;
    let event = match event {
        AccountEvent::Registered {
            email,
            display_name,
            roles,
        } => Event::AccountRegistered(pb::AccountRegistered {
            email,
            display_name,
            roles: roles.into_iter().map(|role| role_to_proto(role).into()).collect(),
        }),
        AccountEvent::PasswordChanged => Event::AccountPasswordChanged(pb::AccountPasswordChanged {}),
        AccountEvent::Suspended { reason } => Event::AccountSuspended(pb::AccountSuspended { reason }),
        AccountEvent::Reinstated => Event::AccountReinstated(pb::AccountReinstated {}),
    };
    Ok(pb::StreamEventsResponse {
        position: stored.position,
        event_id: stored.event_id.to_string(),
        aggregate_id: stored.aggregate_id.to_string(),
        aggregate_version: stored.aggregate_version.get(),
        occur_time: Some(timestamp(stored.occurred_at)),
        event: Some(event),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn roles_are_a_closed_set() {
        assert_eq!(
            roles(&[pb::Role::Admin.into(), pb::Role::Customer.into()])
                .unwrap()
                .as_slice(),
            [Role::Customer, Role::Admin]
        );
        assert_eq!(roles(&[]).unwrap_err().field(), "roles");
        assert_eq!(roles(&[0]).unwrap_err().field(), "roles");
        assert_eq!(roles(&[42]).unwrap_err().field(), "roles");
    }
}
