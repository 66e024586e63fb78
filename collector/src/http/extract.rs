//! Extractors whose rejections are our [`ApiError`], so a bad request gets our JSON error
//! naming the field, never axum's plain text.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::api_error::ApiError;

/// A JSON body: `application/json` (or `+json`), within the body limit, parsed with the path
/// of any failing field.
#[derive(Debug)]
pub(super) struct ApiJson<T>(pub(super) T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::client(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected a JSON body with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A JSON body that may be left out: no body (or only whitespace) is `T::default()`; one sent
/// is read as [`ApiJson`] reads it. For actions whose body holds only optional fields
/// (`POST /jobs/{job}/resume`), so that `curl -X POST` works.
#[derive(Debug)]
pub(super) struct OptionalJson<T>(pub(super) T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(req.headers());
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        if !json {
            return Err(ApiError::client(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected no body, or a JSON body with `Content-Type: application/json`",
            ));
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is larger than the collector accepts",
        )
    } else {
        ApiError::client(
            StatusCode::BAD_REQUEST,
            "unreadable_body",
            format!("could not read the request body: {rejection}"),
        )
    }
}

/// Malformed JSON is 400; well-formed JSON of the wrong shape is 422 naming the field. Every
/// body of this API is a JSON object (serde would otherwise read a struct from an array).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b) if *b != b'{') {
        // Still report malformed JSON as such.
        serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|e| json_error(&e, "."))?;
        return Err(ApiError::client(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "the body must be a JSON object",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|err| json_error(err.inner(), &err.path().to_string()))?;
    deserializer.end().map_err(|err| json_error(&err, "."))?;
    Ok(value)
}

fn json_error(inner: &serde_json::Error, path: &str) -> ApiError {
    if inner.is_syntax() || inner.is_eof() || inner.is_io() {
        return ApiError::Client {
            status: StatusCode::BAD_REQUEST,
            code: "malformed_json",
            message: format!("the body is not valid JSON: {inner}"),
            details: json!({"line": inner.line(), "column": inner.column()}),
        };
    }
    let message = strip_position(&inner.to_string());
    let field = match path {
        "." => missing_field(&message).unwrap_or_default(),
        path => path.to_owned(),
    };
    if field.is_empty() {
        ApiError::client(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message)
    } else {
        ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            &field,
            message,
        )
    }
}

/// serde_json appends " at line 1 column 57", which tells a client less than the field path.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// "missing field `agent_name`" names its field only inside the message.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_owned())
}

/// Query parameters; a bad one is a 400 naming it.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(super) struct ApiQuery<T>(pub(super) T);

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::client(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            rejection.body_text(),
        )
    }
}

/// Path parameters; `/runs/abc` is a 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(super) struct ApiPath<T>(pub(super) T);

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::client(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            rejection.body_text(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_sdk::wire::RunReport;

    fn field_of(err: ApiError) -> (StatusCode, String) {
        match err {
            ApiError::Client {
                status, details, ..
            } => (
                status,
                details["fields"][0]["field"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ),
            other => panic!("not a client error: {other:?}"),
        }
    }

    #[test]
    fn wrong_metric_value_names_the_metric() {
        let err = parse_json::<RunReport>(
            br#"{"agent_name":"a","metrics":{"ok":1,"bad":null},"started_at":"2026-02-19T10:00:00Z","finished_at":"2026-02-19T10:00:00Z"}"#,
        )
        .unwrap_err();
        assert_eq!(
            field_of(err),
            (StatusCode::UNPROCESSABLE_ENTITY, "metrics.bad".into())
        );
    }

    #[test]
    fn missing_field_is_named() {
        let err = parse_json::<RunReport>(br#"{"agent_name":"a"}"#).unwrap_err();
        assert_eq!(
            field_of(err),
            (StatusCode::UNPROCESSABLE_ENTITY, "started_at".into())
        );
    }

    #[test]
    fn syntax_errors_and_trailing_garbage_are_400() {
        for body in [&br#"{"agent_name":"#[..], br#"{} {}"#, b"\xff"] {
            let err = parse_json::<serde_json::Value>(body).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{body:?}");
        }
    }

    #[test]
    fn content_types() {
        let mut headers = HeaderMap::new();
        assert!(!is_json(&headers));
        for (value, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/vnd.api+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
        ] {
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            assert_eq!(is_json(&headers), ok, "{value}");
        }
    }
}
