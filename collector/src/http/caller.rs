//! The `Authorization: Bearer <token>` extractor and the checks handlers make with it.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::AppState;
use super::api_error::ApiError;
use crate::auth::{Grant, Scope};
use crate::store::AgentAccess;

/// The verified holder of a bearer token.
#[derive(Debug, Clone)]
pub(super) struct Caller(pub(super) Grant);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let value = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized("missing token: send `Authorization: Bearer <token>`")
        })?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        let grant = state.tokens.verify(token).map_err(|err| {
            tracing::info!(reason = %err, "token refused");
            ApiError::unauthorized(err.to_string())
        })?;
        Ok(Self(grant))
    }
}

/// `403` unless `grant` allows `agent` (a bearer token's, or the console's session's).
pub(super) fn require_agent(grant: &Grant, agent: &str) -> Result<(), ApiError> {
    if grant.allows_agent(agent) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "this token is not allowed for agent `{agent}`"
        )))
    }
}

impl Caller {
    pub(super) fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.0.has_scope(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this token lacks the `{}` scope",
                scope.as_str()
            )))
        }
    }

    pub(super) fn require_agent(&self, agent: &str) -> Result<(), ApiError> {
        require_agent(&self.0, agent)
    }

    /// The agents this caller may read.
    pub(super) fn access(&self) -> AgentAccess {
        AgentAccess::new(self.0.agent_patterns())
    }
}
