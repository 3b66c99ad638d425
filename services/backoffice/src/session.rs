//! Staff sign-in: identity verifies the credentials; only staff get a token.

use axum::extract::State;
use strata_edge::{
    Ctx, Json, Problem,
    auth::Token,
    rate_limit::ClientAddress,
    session::{self, Audience, SignIn},
};

use crate::App;

/// Sign in as staff: a bearer token for the other routes. Accounts without the
/// staff role are refused (403).
#[utoipa::path(post, operation_id = "sign_in", path = "/v1/sessions", tag = "session", request_body = SignIn,
    responses(
        (status = 200, description = "Signed in", body = Token),
        (status = 401, description = "Wrong email or password", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts from this address, or failures for this account; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a staff account, or suspended", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn sign_in(
    State(app): State<App>,
    ctx: Ctx,
    from: ClientAddress,
    Json(body): Json<SignIn>,
) -> Result<Json<Token>, Problem> {
    session::sign_in(&app.edge, &ctx, from, body, Audience::Staff)
        .await
        .map(Json)
}
