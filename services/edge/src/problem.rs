//! Every error the edge answers: an RFC 9457 `application/problem+json` body,
//! with the failing fields named, and the status a client can act on.
//!
//! [`Problem::from_status`] is the one mapping from a data service's gRPC status
//! to HTTP: a client's mistake the data service found (INVALID_ARGUMENT with its
//! `BadRequest` fields, NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, a stale
//! version) stays the client's (4xx, never 500); a data service that is down or
//! overloaded is 503 with `Retry-After`; one that did not answer in time is 504.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use serde_json::{Map, Value};
use tonic::Code;
use tonic_types::StatusExt as _;
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer (RFC 9457).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem; `about:blank` for plain HTTP statuses.
    #[serde(rename = "type")]
    pub kind: String,
    /// The kind of problem, for people.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong this time, for people.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The fields that were wrong, named as in the request body (`lines[0].quantity`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Further members particular to the kind of problem (e.g. `available`).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extra: Map<String, Value>,
    #[serde(skip)]
    retry_after: Option<u64>,
    #[serde(skip)]
    authenticate: Option<String>,
}

/// The members RFC 9457 defines (and `errors`), which extra members never replace.
const RESERVED: &[&str] = &["type", "title", "status", "detail", "instance", "errors"];

/// One field of a request that was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Where, as a path into the request: `email`, `lines[1].quantity`, or a
    /// query parameter or header name.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// `field` is wrong because `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The problem types Strata defines, as URIs relative to the API.
pub mod kind {
    /// The request body or a parameter is malformed (400).
    pub const MALFORMED: &str = "/problems/malformed-request";
    /// Fields break a rule (422).
    pub const INVALID: &str = "/problems/invalid-fields";
    /// Not enough stock for a line of a checkout (409).
    pub const INSUFFICIENT_STOCK: &str = "/problems/insufficient-stock";
    /// The resource's state does not allow the request (409).
    pub const CONFLICT: &str = "/problems/conflict";
    /// `If-Match` named a version that is not the current one (412).
    pub const STALE: &str = "/problems/stale-version";
    /// A data service is unavailable (503).
    pub const UNAVAILABLE: &str = "/problems/unavailable";
}

impl Problem {
    /// A problem with `status`, of a plain HTTP kind.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            extra: Map::new(),
            retry_after: None,
            authenticate: None,
        }
    }

    /// The same problem, of the Strata kind `kind` titled `title`.
    #[must_use]
    pub fn kind(mut self, kind: &str, title: &str) -> Self {
        kind.clone_into(&mut self.kind);
        title.clone_into(&mut self.title);
        self
    }

    /// 400: the request could not be read (malformed JSON, a wrong type).
    pub fn malformed(detail: impl Into<String>, errors: Vec<FieldError>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
            .kind(kind::MALFORMED, "Malformed request")
            .fields(errors)
    }

    /// 422: fields that break a rule.
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "some fields are not valid")
            .kind(kind::INVALID, "Invalid fields")
            .fields(errors)
    }

    /// 422 for one field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid(vec![FieldError::new(field, message)])
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 409: the resource's state does not allow the request.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail).kind(kind::CONFLICT, "Conflict")
    }

    /// 401, with the `WWW-Authenticate` challenge; `error` is the RFC 6750
    /// error code when a token was sent but is not valid.
    pub fn unauthorized(detail: impl Into<String>, error: Option<&str>) -> Self {
        let mut problem = Self::new(StatusCode::UNAUTHORIZED, detail);
        problem.authenticate = Some(match error {
            Some(error) => format!("Bearer realm=\"strata\", error=\"{error}\""),
            None => "Bearer realm=\"strata\"".to_owned(),
        });
        problem
    }

    /// 403.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }

    /// 503, to be retried after `seconds`.
    pub fn unavailable(detail: impl Into<String>, seconds: u64) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail)
            .kind(kind::UNAVAILABLE, "Service unavailable")
            .retry_after(seconds)
    }

    /// 500: a fault of ours; the detail says nothing of the cause.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "an internal error occurred; it has been logged with the request id",
        )
    }

    /// The same problem, naming `errors`.
    #[must_use]
    pub fn fields(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// The same problem with the member `name` (never one of the standard
    /// members, which are fields of their own: such a name is ignored).
    #[must_use]
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        if !RESERVED.contains(&name) {
            self.extra.insert(name.to_owned(), value.into());
        }
        self
    }

    /// The same problem, telling the client to retry after `seconds`.
    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The answer to a data service's failing `status`; `what` names what was
    /// asked for (`product`, `order`) in a 404.
    pub fn from_status(status: &tonic::Status, what: &str) -> Self {
        match status.code() {
            Code::InvalidArgument
                if status
                    .get_details_error_info()
                    .is_some_and(|info| info.reason == "REQUEST_ID_REUSED") =>
            {
                // A key is one request: this one came with another. Not the
                // request's fields at fault, but its clash with an earlier one.
                Self::conflict("this Idempotency-Key was already used for a different request; use a new key")
                    .with("reason", "REQUEST_ID_REUSED")
            }
            Code::InvalidArgument => {
                let errors: Vec<FieldError> = status
                    .get_details_bad_request()
                    .map(|details| {
                        details
                            .field_violations
                            .into_iter()
                            .map(|v| FieldError::new(v.field, v.description))
                            .collect()
                    })
                    .unwrap_or_default();
                if errors.is_empty() {
                    Self::invalid(Vec::new()).detail(status.message())
                } else {
                    Self::invalid(errors)
                }
            }
            Code::NotFound => Self::not_found(format!("no such {what}")),
            Code::AlreadyExists => Self::conflict(status.message()),
            Code::FailedPrecondition => {
                let mut problem = Self::conflict(status.message());
                if let Some(info) = status.get_details_error_info() {
                    problem = problem.with("reason", info.reason);
                    for (key, value) in info.metadata {
                        // `status` of an order must not pass for the HTTP status.
                        let key = if RESERVED.contains(&key.as_str()) {
                            format!("{what}_{key}")
                        } else {
                            key
                        };
                        problem = problem.with(&key, value);
                    }
                }
                problem
            }
            Code::Aborted => {
                let current = status
                    .get_details_error_info()
                    .and_then(|info| info.metadata.get("current_version").cloned());
                match current {
                    Some(current) => Self::new(
                        StatusCode::PRECONDITION_FAILED,
                        format!("the {what} has changed: its current version is {current}"),
                    )
                    .kind(kind::STALE, "Stale version")
                    .with(
                        "current_version",
                        current.parse::<u64>().map_or(Value::from(current), Value::from),
                    ),
                    None => Self::conflict("the request raced another one; retry it").retry_after(1),
                }
            }
            Code::Unavailable | Code::ResourceExhausted => {
                Self::unavailable("a service this request needs is unavailable; retry later", 1)
            }
            Code::DeadlineExceeded | Code::Cancelled => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "a service this request needs did not answer in time",
            )
            .retry_after(1),
            _ => {
                tracing::error!(code = ?status.code(), message = status.message(), "a data service failed");
                Self::internal()
            }
        }
    }

    #[must_use]
    fn detail(mut self, detail: &str) -> Self {
        detail.clone_into(&mut self.detail);
        self
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(challenge) = self.authenticate.and_then(|c| HeaderValue::try_from(c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

impl From<tonic::Status> for Problem {
    fn from(status: tonic::Status) -> Self {
        Self::from_status(&status, "resource")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    #[test]
    fn a_clients_mistake_found_downstream_stays_the_clients() {
        let status = tonic::Status::with_error_details(
            Code::InvalidArgument,
            "bad",
            ErrorDetails::with_bad_request_violation("lines[0].quantity", "at least 1"),
        );
        let problem = Problem::from_status(&status, "order");
        assert_eq!(problem.status, 422);
        assert_eq!(
            problem.errors,
            [FieldError::new("lines[0].quantity", "at least 1")]
        );

        let stale = tonic::Status::with_error_details(
            Code::Aborted,
            "stale",
            ErrorDetails::with_error_info(
                "VERSION_MISMATCH",
                "strata",
                [("current_version".to_owned(), "4".to_owned())],
            ),
        );
        let problem = Problem::from_status(&stale, "product");
        assert_eq!(problem.status, 412);
        assert_eq!(problem.extra["current_version"], 4);

        let refused = tonic::Status::with_error_details(
            Code::FailedPrecondition,
            "already cancelled",
            ErrorDetails::with_error_info(
                "ORDER_ALREADY_CANCELLED",
                "strata",
                [("status".to_owned(), "cancelled".to_owned())],
            ),
        );
        let body = serde_json::to_value(Problem::from_status(&refused, "order")).unwrap();
        assert_eq!(body["status"], 409, "{body}");
        assert_eq!(body["order_status"], "cancelled", "{body}");
        assert_eq!(body["reason"], "ORDER_ALREADY_CANCELLED", "{body}");

        for (code, http) in [
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::FailedPrecondition, 409),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
            (Code::Internal, 500),
        ] {
            assert_eq!(
                Problem::from_status(&tonic::Status::new(code, "x"), "thing").status,
                http,
                "{code:?}"
            );
        }
    }

    #[test]
    fn the_response_is_problem_json_with_its_headers() {
        let response = Problem::unavailable("down", 2).into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let response = Problem::unauthorized("no token", None).into_response();
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"strata\""
        );
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }

    /// The response `problem` makes: status, headers and the body as JSON.
    async fn answered(problem: Problem) -> (StatusCode, http::HeaderMap, Value) {
        let response = problem.into_response();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, headers, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn the_body_has_the_members_rfc_9457_names() {
        let problem = Problem::invalid(vec![
            FieldError::new("email", "not an email"),
            FieldError::new("lines[1].quantity", "at least 1"),
        ]);
        let (status, headers, body) = answered(problem).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(headers[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(
            body,
            serde_json::json!({
                "type": "/problems/invalid-fields",
                "title": "Invalid fields",
                "status": 422,
                "detail": "some fields are not valid",
                "errors": [
                    {"field": "email", "message": "not an email"},
                    {"field": "lines[1].quantity", "message": "at least 1"},
                ],
            })
        );

        // Without errors or detail, neither member is there; a plain HTTP
        // status is of type about:blank, titled by its reason phrase.
        let (status, _, body) = answered(Problem::new(StatusCode::NOT_FOUND, "")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            serde_json::json!({"type": "about:blank", "title": "Not Found", "status": 404})
        );
    }

    #[tokio::test]
    async fn extra_members_never_replace_the_standard_ones() {
        let problem = Problem::conflict("not enough stock")
            .with("available", 3)
            .with("status", 200)
            .with("type", "x")
            .with("detail", "x")
            .with("title", "x")
            .with("instance", "x")
            .with("errors", "x");
        let (status, _, body) = answered(problem).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(
            body,
            serde_json::json!({
                "type": "/problems/conflict",
                "title": "Conflict",
                "status": 409,
                "detail": "not enough stock",
                "available": 3,
            })
        );
    }

    #[test]
    fn each_constructor_has_its_status_and_kind() {
        for (problem, status, kind) in [
            (Problem::malformed("x", Vec::new()), 400, kind::MALFORMED),
            (Problem::invalid_field("sku", "too long"), 422, kind::INVALID),
            (Problem::not_found("no such product"), 404, "about:blank"),
            (Problem::conflict("x"), 409, kind::CONFLICT),
            (Problem::unauthorized("x", None), 401, "about:blank"),
            (Problem::forbidden("x"), 403, "about:blank"),
            (Problem::unavailable("x", 1), 503, kind::UNAVAILABLE),
            (Problem::internal(), 500, "about:blank"),
        ] {
            assert_eq!(problem.status, status, "{problem}");
            assert_eq!(problem.status().as_u16(), status, "{problem}");
            assert_eq!(problem.kind, kind, "{problem}");
        }
        assert_eq!(
            Problem::invalid_field("sku", "too long").errors,
            [FieldError::new("sku", "too long")]
        );
        // A status that is not one answers 500 rather than nothing.
        let mut odd = Problem::internal();
        odd.status = 1000;
        assert_eq!(odd.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn every_downstream_status_has_its_answer() {
        // A client's mistake without field details keeps the data service's message.
        let problem = Problem::from_status(&tonic::Status::invalid_argument("page_token: stale"), "order");
        assert_eq!(
            (problem.status, problem.detail.as_str()),
            (422, "page_token: stale")
        );
        assert!(problem.errors.is_empty());

        let problem = Problem::from_status(&tonic::Status::not_found("x"), "order");
        assert_eq!((problem.status, problem.detail.as_str()), (404, "no such order"));
        let problem = Problem::from(tonic::Status::not_found("x"));
        assert_eq!(problem.detail, "no such resource");

        let problem = Problem::from_status(&tonic::Status::already_exists("sku taken"), "product");
        assert_eq!((problem.status, problem.detail.as_str()), (409, "sku taken"));

        // A race without a stale version: 409, to be retried.
        let (status, headers, body) = answered(Problem::from_status(
            &tonic::Status::aborted("contention"),
            "order",
        ))
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(headers[header::RETRY_AFTER], "1");
        assert_eq!(body["type"], kind::CONFLICT);

        // A stale version: 412 naming the current one.
        let stale = tonic::Status::with_error_details(
            Code::Aborted,
            "stale",
            ErrorDetails::with_error_info(
                "VERSION_MISMATCH",
                "strata",
                [("current_version".to_owned(), "7".to_owned())],
            ),
        );
        let (status, headers, body) = answered(Problem::from_status(&stale, "product")).await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED);
        assert!(headers.get(header::RETRY_AFTER).is_none());
        assert_eq!(body["type"], kind::STALE);
        assert_eq!(body["current_version"], 7);
        assert_eq!(
            body["detail"],
            "the product has changed: its current version is 7"
        );

        for (code, http) in [
            (Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
            (Code::ResourceExhausted, StatusCode::SERVICE_UNAVAILABLE),
            (Code::DeadlineExceeded, StatusCode::GATEWAY_TIMEOUT),
            (Code::Cancelled, StatusCode::GATEWAY_TIMEOUT),
        ] {
            let (status, headers, _) =
                answered(Problem::from_status(&tonic::Status::new(code, "x"), "x")).await;
            assert_eq!(status, http, "{code:?}");
            assert_eq!(headers[header::RETRY_AFTER], "1", "{code:?}");
        }
        for code in [
            Code::Internal,
            Code::Unknown,
            Code::DataLoss,
            Code::Unauthenticated,
        ] {
            let problem = Problem::from_status(&tonic::Status::new(code, "secret detail"), "x");
            assert_eq!(problem.status, 500, "{code:?}");
            assert!(!problem.detail.contains("secret"), "{code:?}");
        }
    }
}
