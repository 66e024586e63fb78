//! The one error type of the API, and its one JSON shape: `{"error": {code, message, details}}`.
//! Client mistakes are 4xx naming the field; an unreachable database is 503 with
//! `Retry-After`; anything else is an opaque 500 whose cause is logged, never sent.

use agent_sdk::wire::{ErrorBody, ErrorDetail};
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use validator::{ValidationErrors, ValidationErrorsKind};

use crate::store::StoreError;

/// How long a client should wait before retrying after a 503.
pub(super) const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The client's mistake.
    #[error("{message}")]
    Client {
        status: StatusCode,
        code: &'static str,
        message: String,
        details: Value,
    },
    /// The database cannot be reached right now; retrying later will work.
    #[error("database unavailable")]
    Unavailable(#[source] StoreError),
    /// A bug or an unexpected failure.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn client(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self::Client {
            status,
            code,
            message: message.into(),
            details: Value::Null,
        }
    }

    /// A refusal that concerns one field.
    pub fn field(
        status: StatusCode,
        code: &'static str,
        field: &str,
        message: impl Into<String>,
    ) -> Self {
        let message = message.into();
        Self::Client {
            status,
            code,
            details: json!({"fields": [{"field": field, "code": code, "message": message}]}),
            message: format!("{field}: {message}"),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::client(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::client(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::client(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A field of the body that breaks a rule: 422 `validation_failed`, naming it.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            field,
            message,
        )
    }

    /// A query parameter that is present but wrong: 400.
    pub fn bad_param(field: &str, message: impl Into<String>) -> Self {
        Self::field(StatusCode::BAD_REQUEST, "invalid_parameter", field, message)
    }

    /// Every failed rule, each naming its field (`metrics.<name>` for a metric).
    pub fn validation(errors: &ValidationErrors) -> Self {
        Self::validation_at("", errors)
    }

    /// [`Self::validation`] of a part of the body: each field named under `prefix`
    /// (`jobs[3]` gives `jobs[3].cron`).
    pub fn validation_at(prefix: &str, errors: &ValidationErrors) -> Self {
        let mut fields = Vec::new();
        collect_field_errors(errors, prefix, &mut fields);
        fields.sort_by(|a, b| a["field"].as_str().cmp(&b["field"].as_str()));
        let message = fields
            .first()
            .map(|f| {
                format!(
                    "{}: {}",
                    f["field"].as_str().unwrap_or_default(),
                    f["message"].as_str().unwrap_or_default()
                )
            })
            .unwrap_or_else(|| "the report is invalid".to_owned());
        Self::Client {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            message,
            details: json!({ "fields": fields }),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Client { status, .. } => *status,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

fn collect_field_errors(errors: &ValidationErrors, prefix: &str, out: &mut Vec<Value>) {
    for (field, kind) in errors.errors() {
        let path = if prefix.is_empty() {
            field.to_string()
        } else {
            format!("{prefix}.{field}")
        };
        match kind {
            ValidationErrorsKind::Field(list) => {
                for error in list {
                    // Metric rules name the metric they refuse.
                    let field = match error.params.get("metric").and_then(Value::as_str) {
                        Some(metric) => format!("{path}.{metric}"),
                        None => path.clone(),
                    };
                    let message = error
                        .message
                        .as_deref()
                        .map(str::to_owned)
                        .unwrap_or_else(|| default_message(&error.code, &error.params));
                    out.push(json!({"field": field, "code": error.code, "message": message}));
                }
            }
            ValidationErrorsKind::Struct(inner) => collect_field_errors(inner, &path, out),
            ValidationErrorsKind::List(items) => {
                for (i, inner) in items {
                    collect_field_errors(inner, &format!("{path}[{i}]"), out);
                }
            }
        }
    }
}

fn default_message(
    code: &str,
    params: &std::collections::HashMap<std::borrow::Cow<'static, str>, Value>,
) -> String {
    match (code, params.get("min"), params.get("max")) {
        ("length", min, max) => format!(
            "length must be between {} and {}",
            min.unwrap_or(&Value::from(0)),
            max.unwrap_or(&Value::from("any"))
        ),
        _ => format!("failed the `{code}` rule"),
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => Self::Unavailable(err),
            // A feature of the other backend, asked of this one over the API: the deployment's
            // doing, not the client's; it must not look like a bad request.
            StoreError::Unsupported(_) | StoreError::Internal { .. } => {
                Self::Internal(anyhow::Error::new(err))
            }
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        Self::Internal(err)
    }
}

impl ApiError {
    /// The status and JSON body this error is answered with; the cause of a 5xx is logged here,
    /// never sent.
    pub fn into_body(self) -> (StatusCode, ErrorBody) {
        let status = self.status();
        let (code, message, details) = match self {
            Self::Client {
                code,
                message,
                details,
                ..
            } => (code, message, details),
            Self::Unavailable(err) => {
                tracing::warn!(error = %err, "database unavailable: answering 503");
                (
                    "unavailable",
                    "the database is unavailable; retry later".to_owned(),
                    Value::Null,
                )
            }
            Self::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "internal error: answering 500");
                ("internal", "internal server error".to_owned(), Value::Null)
            }
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message,
                details,
            },
        };
        (status, body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.into_body();
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        match status {
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(RETRY_AFTER.as_secs()),
                );
            }
            StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"collector\""),
                );
            }
            _ => {}
        }
        response
    }
}
