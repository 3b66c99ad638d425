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
                other if crate::connection::BodyTimedOut::caused(&other) => Problem::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "the body did not arrive in time; send it whole and promptly",
                ),
                other => Problem::malformed(format!("the body could not be read: {other}"), Vec::new()),
            })?;
        // Every body this edge takes is an object: serde would also read a
        // struct from an array of its fields, which no document describes.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') && !bytes.trim_ascii().eq(b"null") {
            return Err(Problem::malformed("the body must be a JSON object", Vec::new()));
        }
        parse(&bytes).map(Json)
    }
}

/// An optional JSON body: none when the request has no body (and no
/// `Content-Type`), or when the body is JSON `null` (the document calls the
/// body optional, and a client may well send null for none); otherwise read
/// as [`Json`].
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
        <Json<Option<T>> as FromRequest<S>>::from_request(request, state)
            .await
            .map(|Json(value)| value.map(Json))
    }
}

/// A whole number as JSON may spell it: `3`, or `3.0` (JSON Schema's
/// `integer` admits both), refusing a fraction or a value out of `T`'s range.
/// For the integer fields of request bodies:
/// `#[serde(deserialize_with = "strata_edge::json::whole")]`.
///
/// # Errors
/// When the value is not a number, has a fraction, or does not fit `T`.
pub fn whole<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64> + TryFrom<i64>,
{
    use serde::{Deserialize as _, de::Error as _};
    let number = serde_json::Number::deserialize(deserializer)?;
    let out_of_range = || D::Error::custom(format!("{number} is out of range"));
    if let Some(n) = number.as_u64() {
        return T::try_from(n).map_err(|_| out_of_range());
    }
    if let Some(n) = number.as_i64() {
        return T::try_from(n).map_err(|_| out_of_range());
    }
    match number.as_f64() {
        Some(f) if f.is_finite() && f.fract() == 0.0 => {
            // Exactly representable whole numbers only: past 2^53 a float
            // may stand for several integers.
            const EXACT: f64 = 9_007_199_254_740_992.0;
            if f.abs() > EXACT {
                return Err(out_of_range());
            }
            #[allow(clippy::cast_possible_truncation)]
            let n = f as i64;
            T::try_from(n).map_err(|_| out_of_range())
        }
        _ => Err(D::Error::custom(format!("{number} is not a whole number"))),
    }
}

/// An optional field that, when present, must hold a value: `null` is refused
/// (a patch leaves a field out to keep it). With `#[serde(default,
/// deserialize_with = "strata_edge::json::present")]`.
///
/// # Errors
/// When the value is `null` or not a `T`.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
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

    #[test]
    fn whole_numbers_may_be_spelled_as_floats_but_not_hold_a_fraction() {
        #[derive(Debug, serde::Deserialize)]
        struct Line {
            #[serde(deserialize_with = "whole")]
            quantity: u32,
            #[serde(deserialize_with = "whole")]
            delta: i64,
        }
        let line: Line = parse(br#"{"quantity": 3.0, "delta": -2}"#).unwrap();
        assert_eq!((line.quantity, line.delta), (3, -2));
        for bad in [
            r#"{"quantity": 3.5, "delta": 1}"#,
            r#"{"quantity": -1, "delta": 1}"#,
            r#"{"quantity": 4294967296, "delta": 1}"#,
            r#"{"quantity": 1e300, "delta": 1}"#,
            r#"{"quantity": "3", "delta": 1}"#,
        ] {
            let problem = parse::<Line>(bad.as_bytes()).unwrap_err();
            assert_eq!(problem.status, 400, "{bad}");
            assert!(
                problem.detail.starts_with("quantity"),
                "{bad}: {}",
                problem.detail
            );
        }
    }

    #[test]
    fn a_present_field_may_not_be_null() {
        #[derive(Debug, serde::Deserialize)]
        struct Patch {
            #[serde(default, deserialize_with = "present")]
            name: Option<String>,
        }
        assert_eq!(parse::<Patch>(b"{}").unwrap().name, None);
        assert_eq!(
            parse::<Patch>(br#"{"name": "x"}"#).unwrap().name.as_deref(),
            Some("x")
        );
        assert!(parse::<Patch>(br#"{"name": null}"#).is_err());
    }

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
        for body in [
            &b"{"[..],
            b"not json",
            b"",
            b"{\"lines\":[]} trailing",
            // Cut short, or not JSON, inside a line: still the body as a whole.
            b"{\"lines\":[{\"product_id\":\"a\",",
            b"{\"lines\":[{\"product_id\": a}]}",
            // Not the object the route takes at all.
            b"\"checkout\"",
            b"42",
        ] {
            let problem = parse::<Checkout>(body).unwrap_err();
            assert_eq!(problem.status, 400, "{body:?}");
            assert_eq!(problem.kind, crate::problem::kind::MALFORMED);
            assert!(problem.errors.is_empty(), "{body:?}: {:?}", problem.errors);
            assert!(
                problem.detail.starts_with("the body is not valid JSON: "),
                "{body:?}: {}",
                problem.detail
            );
        }
    }

    #[test]
    fn a_fields_message_says_what_is_wrong_without_json_positions() {
        let problem =
            parse::<Checkout>(b"{\n  \"lines\": [{\"product_id\": \"a\", \"quantity\": \"two\"}]\n}")
                .unwrap_err();
        let message = "invalid type: string \"two\", expected u32";
        assert_eq!(problem.errors, [FieldError::new("lines[0].quantity", message)]);
        assert_eq!(problem.detail, format!("lines[0].quantity: {message}"));
        let problem = parse::<Checkout>(b"{\"lines\": [}").unwrap_err();
        assert!(!problem.detail.contains("line 1"), "{}", problem.detail);
        assert!(
            problem.detail.len() > "the body is not valid JSON: ".len(),
            "{}",
            problem.detail
        );
    }

    #[test]
    fn json_and_its_structured_suffixes_are_json() {
        for (content_type, json) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/problem+json", true),
            ("application/merge-patch+json;charset=utf-8", true),
            ("text/plain", false),
            ("application/xml", false),
            ("text/x+json", false),
            ("application/jsonp", false),
            ("application/x-www-form-urlencoded", false),
        ] {
            let mut headers = http::HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
            assert_eq!(is_json(&headers), json, "{content_type}");
        }
        assert!(!is_json(&http::HeaderMap::new()), "no Content-Type");
    }

    #[derive(Debug, serde::Deserialize)]
    struct Page {
        page_size: u32,
    }

    /// `POST /checkout` (a JSON body), `POST /note` (an optional one) and
    /// `GET /page` (a query), bodies limited to 64 bytes: the status, the
    /// Content-Type and the body, as JSON.
    async fn call(request: http::Request<axum::body::Body>) -> (u16, String, serde_json::Value) {
        use tower_service::Service as _;

        let mut app = axum::Router::new()
            .route(
                "/checkout",
                axum::routing::post(|Json(checkout): Json<Checkout>| async move {
                    Json(serde_json::json!({"lines": checkout.lines.len()}))
                }),
            )
            .route(
                "/note",
                axum::routing::post(|note: Option<Json<serde_json::Value>>| async move {
                    Json(note.map_or(serde_json::Value::Null, |Json(note)| note))
                }),
            )
            .route(
                "/page",
                axum::routing::get(|Query(page): Query<Page>| async move {
                    Json(serde_json::json!({"page_size": page.page_size}))
                }),
            )
            .layer(axum::extract::DefaultBodyLimit::max(64));
        let response = app.call(request).await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map_or(String::new(), |v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let body = if body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&body).unwrap()
        };
        (status, content_type, body)
    }

    fn post(
        path: &str,
        content_type: Option<&str>,
        body: impl Into<axum::body::Body>,
    ) -> http::Request<axum::body::Body> {
        let mut request = http::Request::post(path);
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        request.body(body.into()).unwrap()
    }

    #[tokio::test]
    async fn a_body_is_read_as_json_or_refused_as_problem_json() {
        let checkout = r#"{"lines":[{"product_id":"a","quantity":1}]}"#;
        let (status, content_type, body) = call(post("/checkout", Some("application/json"), checkout)).await;
        assert_eq!((status, content_type.as_str()), (200, "application/json"));
        assert_eq!(body, serde_json::json!({"lines": 1}));

        // Not JSON: 415.
        let (status, content_type, body) = call(post("/checkout", Some("text/plain"), checkout)).await;
        assert_eq!(
            (status, content_type.as_str()),
            (415, crate::problem::PROBLEM_JSON)
        );
        assert_eq!(body["status"], 415);
        assert_eq!(call(post("/checkout", None, checkout)).await.0, 415);

        // Over the limit: 413.
        let large = format!(r#"{{"lines":[],"pad":"{}"}}"#, "x".repeat(64));
        let (status, content_type, body) = call(post("/checkout", Some("application/json"), large)).await;
        assert_eq!(
            (status, content_type.as_str()),
            (413, crate::problem::PROBLEM_JSON)
        );
        assert_eq!(body["detail"], "the body is larger than this service accepts");

        // A body that breaks off while it is read: 400, not 413.
        let broken = futures_util::stream::iter([
            Ok::<_, std::io::Error>(Bytes::from_static(b"{\"lines\":")),
            Err(std::io::Error::other("connection reset")),
        ]);
        let (status, _, body) = call(post(
            "/checkout",
            Some("application/json"),
            axum::body::Body::from_stream(broken),
        ))
        .await;
        assert_eq!(status, 400);
        assert_eq!(body["type"], crate::problem::kind::MALFORMED);

        // A wrong field: 400 naming it.
        let (status, _, body) = call(post(
            "/checkout",
            Some("application/json"),
            r#"{"lines":[{"product_id":"a","quantity":0.5}]}"#,
        ))
        .await;
        assert_eq!(status, 400);
        assert_eq!(body["errors"][0]["field"], "lines[0].quantity");
    }

    #[tokio::test]
    async fn an_optional_body_is_none_only_when_there_is_no_body() {
        for request in [
            http::Request::post("/note")
                .body(axum::body::Body::empty())
                .unwrap(),
            http::Request::post("/note")
                .header(header::CONTENT_LENGTH, "0")
                .body(axum::body::Body::empty())
                .unwrap(),
        ] {
            assert_eq!(
                call(request).await,
                (200, "application/json".to_owned(), serde_json::Value::Null)
            );
        }
        let (status, _, body) = call(post("/note", Some("application/json"), r#"{"note":"hi"}"#)).await;
        assert_eq!((status, body), (200, serde_json::json!({"note": "hi"})));
        // A body without a Content-Type is not nothing: 415.
        let request = http::Request::post("/note")
            .header(header::CONTENT_LENGTH, "13")
            .body(axum::body::Body::from(r#"{"note":"hi"}"#))
            .unwrap();
        assert_eq!(call(request).await.0, 415);
    }

    #[tokio::test]
    async fn a_wrong_query_parameter_is_400_naming_it() {
        let get = |uri: &str| http::Request::get(uri).body(axum::body::Body::empty()).unwrap();
        let (status, _, body) = call(get("/page?page_size=10")).await;
        assert_eq!((status, body), (200, serde_json::json!({"page_size": 10})));
        let (status, content_type, body) = call(get("/page?page_size=ten")).await;
        assert_eq!(
            (status, content_type.as_str()),
            (400, crate::problem::PROBLEM_JSON)
        );
        assert_eq!(body["errors"][0]["field"], "page_size");
        assert_eq!(body["type"], crate::problem::kind::MALFORMED);
        // A missing parameter is a fault of the query as a whole.
        let (status, _, body) = call(get("/page")).await;
        assert_eq!(status, 400);
        assert_eq!(body["errors"][0]["field"], "query");
        assert!(body["detail"].as_str().unwrap().contains("page_size"), "{body}");
    }
}
