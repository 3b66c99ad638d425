//! Reading requests: a JSON body and query parameters whose every failure is a
//! problem+json naming the field — malformed JSON or a wrong type is 400 with
//! the path of the offending value, a body over the limit 413, a body that is
//! not JSON 415 — never axum's plain-text rejections.

use axum::body::Bytes;
use axum::{
    extract::{FromRequest, FromRequestParts, Request, rejection::BytesRejection},
    response::{IntoResponse, Response},
};
use http::{StatusCode, header, request::Parts};
use serde::{Serialize, de::DeserializeOwned};

use crate::problem::{FieldError, Problem};

/// A JSON request body (any `application/*+json` or `application/json`), or a
/// JSON response with a status.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(request.headers()) {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| match rejection {
                BytesRejection::FailedToBufferBody(failed)
                    if failed.status() == StatusCode::PAYLOAD_TOO_LARGE =>
                {
                    Problem::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "the body is larger than this service accepts",
                    )
                }
                other => Problem::malformed(format!("the body could not be read: {other}"), Vec::new()),
            })?;
        parse(&bytes).map(Json)
    }
}

/// An optional JSON body: none when the request has no body (and no
/// `Content-Type`); otherwise read as [`Json`].
impl<T, S> axum::extract::OptionalFromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        let empty = !request.headers().contains_key(header::CONTENT_TYPE)
            && request
                .headers()
                .get(header::CONTENT_LENGTH)
                .is_none_or(|length| length.as_bytes() == b"0");
        if empty {
            return Ok(None);
        }
        <Self as FromRequest<S>>::from_request(request, state)
            .await
            .map(Some)
    }
}

/// Parses a JSON body, naming the path of the first value that does not fit.
///
/// # Errors
/// 400, naming the field (or the body as a whole when it is not JSON at all).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let message = strip_position(&inner.to_string());
        if inner.is_syntax() || inner.is_eof() || path == "." {
            Problem::malformed(format!("the body is not valid JSON: {message}"), Vec::new())
        } else {
            Problem::malformed(format!("{path}: {message}"), vec![FieldError::new(path, message)])
        }
    })?;
    deserializer
        .end()
        .map_err(|e| Problem::malformed(format!("the body is not valid JSON: {e}"), Vec::new()))?;
    Ok(value)
}

/// serde_json's message without " at line 1 column 17", which says nothing to
/// a client that did not write the JSON by hand.
fn strip_position(message: &str) -> String {
    message.split(" at line ").next().unwrap_or(message).to_owned()
}

fn is_json(headers: &http::HeaderMap) -> bool {
    let Some(content_type) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Query parameters; a wrong one is 400 naming it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Query)
            .map_err(|error| {
                let path = error.path().to_string();
                let message = error.into_inner().to_string();
                let field = if path == "." { "query".to_owned() } else { path };
                Problem::malformed(
                    format!("{field}: {message}"),
                    vec![FieldError::new(field, message)],
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Checkout {
        lines: Vec<Line>,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Line {
        product_id: String,
        quantity: u32,
    }

    #[test]
    fn a_wrong_type_is_named_by_its_path() {
        let problem = parse::<Checkout>(br#"{"lines":[{"product_id":"a","quantity":"two"}]}"#).unwrap_err();
        assert_eq!(problem.status, 400);
        assert_eq!(problem.errors[0].field, "lines[0].quantity");
        let problem = parse::<Checkout>(br#"{"lines":[{"product_id":"a","quantity":-1}]}"#).unwrap_err();
        assert_eq!(problem.errors[0].field, "lines[0].quantity");
        let problem = parse::<Checkout>(br#"{"lines":[{"quantity":1}]}"#).unwrap_err();
        assert_eq!(problem.status, 400);
        assert!(problem.detail.contains("product_id"), "{}", problem.detail);
    }

    #[test]
    fn malformed_json_is_400_without_fields() {
        for body in [&b"{"[..], b"not json", b"", b"{\"lines\":[]} trailing"] {
            let problem = parse::<Checkout>(body).unwrap_err();
            assert_eq!(problem.status, 400, "{body:?}");
        }
    }
}
