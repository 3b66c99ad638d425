//! Signing up and signing in (identity).

use axum::extract::State;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use strata_edge::{
    Ctx, Json, Problem,
    auth::Token,
    model::uuid,
    rate_limit::ClientAddress,
    session::{self, Audience, SignIn},
};
use strata_proto::identity::v1 as identity;
use utoipa::ToSchema;

use crate::App;

/// A new shopper.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUp {
    /// Their email: one '@', a domain with a dot, at most 254 characters; unique.
    #[schema(
        example = "ada@example.com",
        format = "email",
        min_length = 3,
        max_length = 254,
        pattern = r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$"
    )]
    pub email: String,
    /// 12 to 1024 characters, none a control character (a deployment may
    /// ask for more than 12: STRATA_IDENTITY_PASSWORD_MIN_LENGTH).
    #[schema(
        min_length = 12,
        max_length = 1024,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]+$"
    )]
    pub password: String,
    /// How the shop addresses them: 1 to 100 characters on one line.
    #[schema(
        example = "Ada",
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub display_name: String,
}

/// An account.
#[derive(Debug, Serialize, ToSchema)]
pub struct Account {
    /// Its id.
    pub id: uuid::Uuid,
    /// Its email, trimmed and lower-cased.
    pub email: String,
    /// How the shop addresses them.
    pub display_name: String,
    /// `customer`, `staff`, `admin`.
    pub roles: Vec<String>,
    /// `active` (it can sign in) or `suspended`.
    pub status: String,
}

/// Sign up as a shopper. An `Idempotency-Key` header makes a retry safe.
#[utoipa::path(post, operation_id = "sign_up", path = "/v1/accounts", tag = "accounts", request_body = SignUp,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, description = "Makes a retried sign-up return the first answer: 1 to 100 visible ASCII characters", min_length = 1, max_length = 100, pattern = r"^[!-~]+$")),
    responses(
        (status = 201, description = "Signed up", body = Account),
        (status = 400, description = "Malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The email is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many sign-ups from this address; see Retry-After", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn sign_up(
    State(app): State<App>,
    ctx: Ctx,
    from: ClientAddress,
    headers: HeaderMap,
    Json(body): Json<SignUp>,
) -> Result<(StatusCode, Json<Account>), Problem> {
    app.edge.sign_in.admit(from.0, None)?;
    let request_id = match headers.get("idempotency-key") {
        Some(key) => format!(
            "sign-up/{}",
            key.to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 100)
                .ok_or_else(|| Problem::invalid_field(
                    "Idempotency-Key",
                    "1 to 100 visible ASCII characters"
                ))?
        ),
        None => format!("sign-up/{}", uuid::Uuid::now_v7()),
    };
    let request = ctx.call.request(identity::RegisterAccountRequest {
        request_id,
        email: body.email,
        password: body.password,
        display_name: body.display_name,
        roles: vec![identity::Role::Customer as i32],
    });
    let account = ctx
        .run(
            "account",
            app.edge.downstream.identity.clone().register_account(request),
        )
        .await?
        .account;
    let account = strata_edge::model::required(account, "account")?;
    Ok((
        StatusCode::CREATED,
        Json(Account {
            id: uuid(&account.id)?,
            email: account.email,
            display_name: account.display_name,
            roles: session::role_names(&account.roles),
            status: match identity::AccountStatus::try_from(account.status) {
                Ok(identity::AccountStatus::Suspended) => "suspended",
                _ => "active",
            }
            .to_owned(),
        }),
    ))
}

/// Sign in: a bearer token for the other routes.
#[utoipa::path(post, operation_id = "sign_in", path = "/v1/sessions", tag = "accounts", request_body = SignIn,
    responses(
        (status = 200, description = "Signed in", body = Token),
        (status = 401, description = "Wrong email or password", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts from this address, or failures for this account; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The account is suspended", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn sign_in(
    State(app): State<App>,
    ctx: Ctx,
    from: ClientAddress,
    Json(body): Json<SignIn>,
) -> Result<Json<Token>, Problem> {
    session::sign_in(&app.edge, &ctx, from, body, Audience::Anyone)
        .await
        .map(Json)
}
