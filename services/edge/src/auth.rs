//! Authentication at the edge, as the gateway did it: identity checks the
//! credentials once, at sign-in; the edge then issues a signed JWT (HS256, with
//! an expiry) and verifies it on every request, without a call downstream.
//!
//! A token is bound to the edge that issued it (`aud`: `storefront` or
//! `backoffice`), so a staff token taken at the public storefront is refused
//! at backoffice. It names its key (`kid`, derived from the secret), so keys
//! rotate without logging anyone out: the new secret signs, the previous one
//! (`--jwt-previous-secret-file`) is still accepted until the tokens it signed
//! have expired.
//!
//! [`layer`] reads `Authorization: Bearer …` when it is there: a valid token
//! puts its [`Principal`] in the request; a malformed, forged or expired one is
//! 401 at once (`WWW-Authenticate: Bearer error="invalid_token"`). Handlers ask
//! for a [`Principal`] (401 with a challenge when there is none) or for
//! [`Staff`] (403 for an account without the staff role).

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use axum::{
    extract::{FromRequestParts, Request, State},
    middleware::Next,
    response::{IntoResponse as _, Response},
};
use http::{header, request::Parts};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::problem::Problem;

/// Who issues the tokens, as the `iss` claim says.
const ISSUER: &str = "strata";

/// The shortest signing secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// The role names a token carries.
pub mod role {
    /// A shopper.
    pub const CUSTOMER: &str = "customer";
    /// Shop staff.
    pub const STAFF: &str = "staff";
    /// Manages staff (implies staff).
    pub const ADMIN: &str = "admin";
}

/// Signs and verifies the edge's tokens.
#[derive(Clone)]
pub struct Keys {
    audience: String,
    /// The key that signs, and its id.
    kid: String,
    encoding: EncodingKey,
    /// Every key accepted (the signing one first), by id.
    decoding: Vec<(String, DecodingKey)>,
    validation: Validation,
    ttl: Duration,
    /// Accounts whose older tokens are refused ([`crate::revocation`]).
    revocations: crate::revocation::Revocations,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("audience", &self.audience)
            .field("kid", &self.kid)
            .field(
                "accepted",
                &self.decoding.iter().map(|(kid, _)| kid).collect::<Vec<_>>(),
            )
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    roles: Vec<String>,
    iss: String,
    aud: String,
    iat: u64,
    /// `iat` in milliseconds: a token issued just after a password change,
    /// within the same second, is not revoked with the older ones.
    iat_ms: u64,
    exp: u64,
}

/// A key's id: the first 8 bytes of the secret's SHA-256, in hex. It names
/// the key without revealing it, and needs no setting of its own.
fn key_id(secret: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(secret);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Their account (identity's id).
    pub account_id: Uuid,
    /// Their roles, by name ([`role`]).
    pub roles: Vec<String>,
}

impl Principal {
    /// Whether they are staff (or an admin).
    #[must_use]
    pub fn is_staff(&self) -> bool {
        self.roles.iter().any(|r| r == role::STAFF || r == role::ADMIN)
    }
}

/// A token just issued.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Token {
    /// The bearer token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: u64,
}

impl Keys {
    /// Keys for the edge `audience`, signing with HMAC `secret` and accepting
    /// tokens signed with it or with any of `previous` (each at least
    /// [`MIN_SECRET_LEN`] bytes); tokens live for `ttl`.
    ///
    /// # Errors
    /// When a secret is too short.
    pub fn new(audience: &str, secret: &[u8], previous: &[&[u8]], ttl: Duration) -> anyhow::Result<Self> {
        for key in std::iter::once(&secret).chain(previous) {
            if key.len() < MIN_SECRET_LEN {
                bail!("the JWT secret must be at least {MIN_SECRET_LEN} bytes long");
            }
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        validation.leeway = 5;
        Ok(Self {
            audience: audience.to_owned(),
            kid: key_id(secret),
            encoding: EncodingKey::from_secret(secret),
            decoding: std::iter::once(&secret)
                .chain(previous)
                .map(|key| (key_id(key), DecodingKey::from_secret(key)))
                .collect(),
            validation,
            ttl,
            revocations: crate::revocation::Revocations::default(),
        })
    }

    /// Refuses the tokens `revocations` names.
    #[must_use]
    pub fn revoking(mut self, revocations: crate::revocation::Revocations) -> Self {
        self.revocations = revocations;
        self
    }

    /// How long tokens live.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A token for `account_id` with `roles`.
    ///
    /// # Errors
    /// When signing fails (it does not with HMAC keys).
    pub fn issue(&self, account_id: Uuid, roles: Vec<String>) -> Result<Token, Problem> {
        let now_ms = now_ms();
        let now = now_ms / 1000;
        let claims = Claims {
            sub: account_id.to_string(),
            roles,
            iss: ISSUER.to_owned(),
            aud: self.audience.clone(),
            iat: now,
            iat_ms: now_ms,
            exp: now + self.ttl.as_secs(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        let access_token = jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|error| {
            tracing::error!(%error, "cannot sign a token");
            Problem::internal()
        })?;
        Ok(Token {
            access_token,
            token_type: "Bearer",
            expires_in: self.ttl.as_secs(),
        })
    }

    /// The caller a token stands for.
    ///
    /// # Errors
    /// 401 when it is malformed, forged, expired or from another issuer.
    pub fn verify(&self, token: &str) -> Result<Principal, Problem> {
        let invalid = |detail: &str| Problem::unauthorized(detail.to_owned(), Some("invalid_token"));
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("the token is not valid"))?;
        let key = header
            .kid
            .and_then(|kid| self.decoding.iter().find(|(known, _)| *known == kid))
            .map(|(_, key)| key)
            .ok_or_else(|| invalid("the token is not valid (signed with a key this service no longer accepts); sign in again"))?;
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|error| {
                match error.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                        invalid("the token has expired; sign in again")
                    }
                    jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                        invalid("the token was issued by another service; sign in here")
                    }
                    _ => invalid("the token is not valid"),
                }
            })?;
        let account_id = Uuid::parse_str(&data.claims.sub).map_err(|_| invalid("the token is not valid"))?;
        if self.revocations.revoked(account_id, data.claims.iat_ms) {
            return Err(invalid(
                "the token was revoked: the account was suspended or its password changed; sign in again",
            ));
        }
        Ok(Principal {
            account_id,
            roles: data.claims.roles,
        })
    }

    /// Loads the keys of the edge `audience`. The signing secret is
    /// `STRATA_JWT_SECRET`, else the file `secret_file`, else, in dev mode, a
    /// secret generated once and kept at `<data_dir>/jwt-secret` so that
    /// tokens survive a restart. The previous secret, still accepted, is
    /// `STRATA_JWT_PREVIOUS_SECRET`, else the file `previous_file`.
    ///
    /// # Errors
    /// When none is given outside dev mode, or a secret is too short or unreadable.
    pub fn load(
        audience: &str,
        secret_file: Option<&Path>,
        previous_file: Option<&Path>,
        dev: bool,
        data_dir: &Path,
        ttl: Duration,
    ) -> anyhow::Result<Self> {
        let previous = match (std::env::var("STRATA_JWT_PREVIOUS_SECRET"), previous_file) {
            (Ok(secret), _) => Some(secret.into_bytes()),
            (Err(_), Some(file)) => Some(read_secret(file, "--jwt-previous-secret-file")?),
            (Err(_), None) => None,
        };
        let previous: Vec<&[u8]> = previous.iter().map(Vec::as_slice).collect();
        if let Ok(secret) = std::env::var("STRATA_JWT_SECRET") {
            return Self::new(audience, secret.as_bytes(), &previous, ttl)
                .context("STRATA_JWT_SECRET / STRATA_JWT_PREVIOUS_SECRET");
        }
        if let Some(file) = secret_file {
            let secret = read_secret(file, "--jwt-secret-file")?;
            return Self::new(audience, &secret, &previous, ttl)
                .with_context(|| format!("--jwt-secret-file {} / the previous secret", file.display()));
        }
        if !dev {
            bail!(
                "no JWT signing secret: set STRATA_JWT_SECRET (at least {MIN_SECRET_LEN} bytes) or --jwt-secret-file \
                 (STRATA_JWT_SECRET_FILE), or run with --dev"
            );
        }
        let file = data_dir.join("jwt-secret");
        let secret = crate::dev::kept_secret(&file, || crate::dev::random_hex(32))?;
        Self::new(audience, secret.as_bytes(), &previous, ttl)
            .with_context(|| format!("the dev secret in {}", file.display()))
    }
}

/// A secret kept in `file` (trailing whitespace, such as a final newline, trimmed).
fn read_secret(file: &Path, setting: &str) -> anyhow::Result<Vec<u8>> {
    let secret = std::fs::read(file).with_context(|| format!("{setting}: cannot read {}", file.display()))?;
    Ok(trim_ascii_end(&secret).to_vec())
}

fn trim_ascii_end(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

#[cfg(test)]
fn now_secs() -> u64 {
    now_ms() / 1000
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The middleware: verifies a bearer token when one is sent.
pub async fn layer(State(keys): State<Arc<Keys>>, mut request: Request, next: Next) -> Response {
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim);
        let principal = match token {
            Some(token) => keys.verify(token),
            None => Err(Problem::unauthorized(
                "the Authorization header must be `Bearer <token>`",
                Some("invalid_request"),
            )),
        };
        match principal {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
            }
            Err(problem) => return problem.into_response(),
        }
    }
    next.run(request).await
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            Problem::unauthorized("sign in first: this needs `Authorization: Bearer <token>`", None)
        })
    }
}

/// A caller with the staff role.
#[derive(Debug, Clone)]
pub struct Staff(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Staff {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        if principal.is_staff() {
            Ok(Self(principal))
        } else {
            Err(Problem::forbidden("this needs a staff account"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUDIENCE: &str = "storefront";

    fn keys() -> Keys {
        Keys::new(AUDIENCE, &[7; 32], &[], Duration::from_secs(60)).unwrap()
    }

    #[test]
    fn a_token_round_trips_and_a_forged_one_does_not() {
        let id = Uuid::now_v7();
        let token = keys().issue(id, vec![role::STAFF.to_owned()]).unwrap();
        let principal = keys().verify(&token.access_token).unwrap();
        assert_eq!(principal.account_id, id);
        assert!(principal.is_staff());

        let other = Keys::new(AUDIENCE, &[8; 32], &[], Duration::from_secs(60)).unwrap();
        assert_eq!(other.verify(&token.access_token).unwrap_err().status, 401);
        assert_eq!(keys().verify("not.a.token").unwrap_err().status, 401);
    }

    #[test]
    fn a_token_is_accepted_only_by_the_edge_that_issued_it() {
        let storefront = keys();
        let backoffice = Keys::new("backoffice", &[7; 32], &[], Duration::from_secs(60)).unwrap();
        let token = storefront
            .issue(Uuid::now_v7(), vec![role::STAFF.to_owned()])
            .unwrap()
            .access_token;
        assert!(storefront.verify(&token).is_ok());
        let refused = backoffice.verify(&token).unwrap_err();
        assert_eq!(refused.status, 401);
        assert!(refused.detail.contains("another service"), "{}", refused.detail);
    }

    #[test]
    fn keys_rotate_with_the_previous_one_still_accepted() {
        let ttl = Duration::from_secs(60);
        let (old, new) = ([1_u8; 32], [2_u8; 32]);
        let before = Keys::new(AUDIENCE, &old, &[], ttl).unwrap();
        let old_token = before.issue(Uuid::now_v7(), vec![]).unwrap().access_token;
        // Rotated: the new secret signs, the old one is still accepted.
        let rotating = Keys::new(AUDIENCE, &new, &[&old], ttl).unwrap();
        assert!(rotating.verify(&old_token).is_ok());
        let new_token = rotating.issue(Uuid::now_v7(), vec![]).unwrap().access_token;
        assert_ne!(
            jsonwebtoken::decode_header(&new_token).unwrap().kid,
            jsonwebtoken::decode_header(&old_token).unwrap().kid
        );
        assert!(
            before.verify(&new_token).is_err(),
            "an edge not yet rotated refuses the new key"
        );
        // Once the old key is dropped, its tokens are refused, saying why.
        let after = Keys::new(AUDIENCE, &new, &[], ttl).unwrap();
        assert!(after.verify(&new_token).is_ok());
        let refused = after.verify(&old_token).unwrap_err();
        assert!(refused.detail.contains("no longer accepts"), "{}", refused.detail);
        // A token without a kid (or with a forged one) is refused.
        let claims = Claims {
            sub: Uuid::now_v7().to_string(),
            roles: vec![],
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat: now_secs(),
            iat_ms: now_ms(),
            exp: now_secs() + 60,
        };
        let bare = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &after.encoding).unwrap();
        assert_eq!(after.verify(&bare).unwrap_err().status, 401);
    }

    #[test]
    fn a_revoked_accounts_older_tokens_are_refused_and_a_new_one_is_not() {
        let revocations = crate::revocation::Revocations::default();
        let keys = keys().revoking(revocations.clone());
        let (account, other) = (Uuid::now_v7(), Uuid::now_v7());
        let old = keys.issue(account, vec![]).unwrap().access_token;
        let others = keys.issue(other, vec![]).unwrap().access_token;
        std::thread::sleep(Duration::from_millis(2));
        revocations.revoke(account, now_ms());
        let refused = keys.verify(&old).unwrap_err();
        assert_eq!(refused.status, 401);
        assert!(refused.detail.contains("revoked"), "{}", refused.detail);
        assert!(keys.verify(&others).is_ok());
        std::thread::sleep(Duration::from_millis(2));
        let fresh = keys.issue(account, vec![]).unwrap().access_token;
        assert!(keys.verify(&fresh).is_ok(), "signed in again after the change");
    }

    #[test]
    fn an_expired_token_is_refused() {
        let keys = keys();
        let claims = Claims {
            sub: Uuid::now_v7().to_string(),
            roles: vec![],
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat: 1,
            iat_ms: 1_000,
            exp: now_secs() - 60,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(keys.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &keys.encoding).unwrap();
        let problem = keys.verify(&token).unwrap_err();
        assert_eq!(problem.status, 401);
        assert!(problem.detail.contains("expired"), "{}", problem.detail);
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(Keys::new(AUDIENCE, b"short", &[], Duration::from_secs(1)).is_err());
        assert!(Keys::new(AUDIENCE, &[7; MIN_SECRET_LEN - 1], &[], Duration::from_secs(1)).is_err());
        assert!(Keys::new(AUDIENCE, &[7; MIN_SECRET_LEN], &[], Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn staff_and_admins_are_staff_customers_are_not() {
        let principal = |roles: &[&str]| Principal {
            account_id: Uuid::now_v7(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        };
        assert!(principal(&[role::STAFF]).is_staff());
        assert!(principal(&[role::ADMIN]).is_staff());
        assert!(principal(&[role::CUSTOMER, role::ADMIN]).is_staff());
        assert!(!principal(&[role::CUSTOMER]).is_staff());
        assert!(!principal(&[]).is_staff());
    }

    #[test]
    fn a_token_lives_for_its_ttl() {
        let keys = Keys::new(AUDIENCE, &[7; 32], &[], Duration::from_secs(600)).unwrap();
        let token = keys.issue(Uuid::now_v7(), vec![]).unwrap();
        assert_eq!(token.expires_in, 600);
        assert_eq!(token.token_type, "Bearer");
        let claims =
            jsonwebtoken::decode::<Claims>(&token.access_token, &keys.decoding[0].1, &keys.validation)
                .unwrap()
                .claims;
        assert_eq!(claims.exp - claims.iat, 600);
        assert!(claims.iat.abs_diff(now_secs()) <= 5, "{}", claims.iat);
        assert_eq!(claims.iss, ISSUER);
        assert_eq!(claims.aud, AUDIENCE);
    }

    #[test]
    fn the_secret_comes_from_its_file_or_dev_mode_or_nowhere() {
        // STRATA_JWT_SECRET would win over all of these.
        assert!(std::env::var_os("STRATA_JWT_SECRET").is_none());
        let dir = std::env::temp_dir().join(format!("strata-auth-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let ttl = Duration::from_secs(60);
        let secret = [b'k'; MIN_SECRET_LEN];

        // A file's trailing newline is not part of the secret.
        let file = dir.join("secret");
        std::fs::write(&file, [&secret[..], b" \n"].concat()).unwrap();
        let loaded = Keys::load(AUDIENCE, Some(&file), None, false, &dir, ttl).unwrap();
        let token = Keys::new(AUDIENCE, &secret, &[], ttl)
            .unwrap()
            .issue(Uuid::now_v7(), vec![])
            .unwrap();
        assert!(loaded.verify(&token.access_token).is_ok());
        std::fs::write(&file, b"  \n").unwrap();
        assert!(
            Keys::load(AUDIENCE, Some(&file), None, false, &dir, ttl).is_err(),
            "blank"
        );

        // Without a secret: refused, unless in dev mode, which keeps one.
        assert!(Keys::load(AUDIENCE, None, None, false, &dir, ttl).is_err());
        assert!(!dir.join("jwt-secret").exists());
        let dev = Keys::load(AUDIENCE, None, None, true, &dir, ttl).unwrap();
        let token = dev.issue(Uuid::now_v7(), vec![]).unwrap();
        let again = Keys::load(AUDIENCE, None, None, true, &dir, ttl).unwrap();
        assert!(again.verify(&token.access_token).is_ok(), "kept across restarts");
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// `GET /me` (anyone signed in) or `GET /staff` through the layer, with
    /// `authorization` when given: the status and the body.
    async fn call(keys: &Keys, path: &str, authorization: Option<&str>) -> (u16, String, Option<String>) {
        use tower_service::Service as _;

        let mut app = axum::Router::new()
            .route(
                "/me",
                axum::routing::get(|request: Request| async move {
                    request
                        .extensions()
                        .get::<Principal>()
                        .map_or_else(|| "anonymous".to_owned(), |p| p.account_id.to_string())
                }),
            )
            .route(
                "/signed-in",
                axum::routing::get(|principal: Principal| async move { principal.account_id.to_string() }),
            )
            .route(
                "/staff",
                axum::routing::get(|Staff(principal): Staff| async move { principal.account_id.to_string() }),
            )
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(keys.clone()),
                layer,
            ));
        let mut request = http::Request::get(path);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let response = app
            .call(request.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap(), challenge)
    }

    #[tokio::test]
    async fn the_layer_admits_a_valid_token_and_answers_a_bad_one_with_401() {
        let keys = keys();
        let customer = Uuid::now_v7();
        let staff = Uuid::now_v7();
        let customer_token = keys
            .issue(customer, vec![role::CUSTOMER.to_owned()])
            .unwrap()
            .access_token;
        let staff_token = keys
            .issue(staff, vec![role::STAFF.to_owned()])
            .unwrap()
            .access_token;

        // No Authorization: the request goes on, anonymous.
        assert_eq!(
            call(&keys, "/me", None).await,
            (200, "anonymous".to_owned(), None)
        );
        // A valid token, either spelling of the scheme: the handler gets its principal.
        for scheme in ["Bearer", "bearer"] {
            let (status, body, _) = call(&keys, "/me", Some(&format!("{scheme} {customer_token}"))).await;
            assert_eq!((status, body), (200, customer.to_string()));
        }
        // A forged token or another scheme: 401 at once, saying why.
        let forged = keys
            .issue(customer, vec![])
            .unwrap()
            .access_token
            .replace('.', "x.");
        let (status, _, challenge) = call(&keys, "/me", Some(&format!("Bearer {forged}"))).await;
        assert_eq!(status, 401);
        assert_eq!(
            challenge.unwrap(),
            "Bearer realm=\"strata\", error=\"invalid_token\""
        );
        let (status, body, challenge) = call(&keys, "/me", Some("Basic YWRhOnNlY3JldA==")).await;
        assert_eq!(status, 401);
        assert_eq!(
            challenge.unwrap(),
            "Bearer realm=\"strata\", error=\"invalid_request\""
        );
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body["detail"],
            "the Authorization header must be `Bearer <token>`"
        );

        // A route that needs a principal: 401 with a plain challenge without one.
        let (status, _, challenge) = call(&keys, "/signed-in", None).await;
        assert_eq!(
            (status, challenge.unwrap()),
            (401, "Bearer realm=\"strata\"".to_owned())
        );
        let (status, body, _) = call(&keys, "/signed-in", Some(&format!("Bearer {customer_token}"))).await;
        assert_eq!((status, body), (200, customer.to_string()));

        // A staff route: 403 for a customer, 401 for nobody.
        assert_eq!(
            call(&keys, "/staff", Some(&format!("Bearer {customer_token}")))
                .await
                .0,
            403
        );
        assert_eq!(call(&keys, "/staff", None).await.0, 401);
        let (status, body, _) = call(&keys, "/staff", Some(&format!("Bearer {staff_token}"))).await;
        assert_eq!((status, body), (200, staff.to_string()));
    }
}
