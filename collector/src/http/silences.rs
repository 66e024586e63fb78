//! Silences: `POST /silences` and `DELETE /silences/{id}` (scope `operate`), `GET /silences`
//! (scope `read`). While a silence is in force, the incidents it matches still open and
//! resolve, but their alerts are held (`Store::route_alert_events`).

use agent_sdk::wire::{
    ErrorBody, MAX_SILENCE_AGENTS, NoteRequest, Silence, SilenceRequest, SilencesResponse,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{TimeDelta, Utc};

use super::AppState;
use super::api_error::ApiError;
use super::caller::Caller;
use super::extract::{ApiJson, ApiPath, OptionalJson};
use super::params;
use super::refusals::{BodyRefusals, ReadRefusals};
use crate::auth::{Grant, Scope};
use crate::domain::AgentPattern;
use crate::store::Acted;

/// The longest a silence may last.
const MAX_SILENCE: TimeDelta = TimeDelta::days(90);

/// Whether `grant` may act on every agent of `patterns`.
pub(super) fn covers_all(grant: &Grant, patterns: &[AgentPattern]) -> bool {
    patterns.iter().all(|p| grant.covers(p))
}

/// `201` with the silence: from now until `until`, the alerts of the incidents of the agents
/// `agents` matches (names, or prefixes ending in `*`), of `kinds` (every kind when absent), are
/// held; a transition still open when it ends is sent then, the others never.
#[utoipa::path(post, path = "/silences", tag = "operate",
    request_body(content = SilenceRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Silenced", body = Silence),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 422, description = "A bad agent pattern, `until` not in the future or more than 90 days on, or a note too long", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry after Retry-After", body = ErrorBody),
        BodyRefusals,
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub(super) async fn create_silence(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<ApiJson<SilenceRequest>, ApiError>,
) -> Result<(StatusCode, Json<Silence>), ApiError> {
    caller.require(Scope::Operate)?;
    let ApiJson(request) = body?;
    let silence = create(&state, &caller.0, request).await?;
    Ok((StatusCode::CREATED, Json(silence)))
}

/// Makes the silence `request` asks for, for `grant`'s holder (the API's and the console's).
pub(super) async fn create(
    state: &AppState,
    grant: &Grant,
    request: SilenceRequest,
) -> Result<Silence, ApiError> {
    if request.agents.is_empty() || request.agents.len() > MAX_SILENCE_AGENTS {
        return Err(ApiError::invalid(
            "agents",
            format!(
                "give 1 to {MAX_SILENCE_AGENTS} agent names or prefixes, got {}",
                request.agents.len()
            ),
        ));
    }
    let mut patterns = Vec::with_capacity(request.agents.len());
    for (i, agent) in request.agents.iter().enumerate() {
        patterns.push(
            agent
                .trim()
                .parse::<AgentPattern>()
                .map_err(|e| ApiError::invalid(&format!("agents[{i}]"), e))?,
        );
    }
    if !covers_all(grant, &patterns) {
        return Err(ApiError::forbidden(
            "this token may not silence every agent these patterns match",
        ));
    }
    let note = params::note(request.note.as_deref())?;
    let now = Utc::now();
    if request.until <= now {
        return Err(ApiError::invalid(
            "until",
            format!("must be in the future, got {}", request.until.to_rfc3339()),
        ));
    }
    if request.until > now + MAX_SILENCE {
        return Err(ApiError::invalid(
            "until",
            "must be at most 90 days from now",
        ));
    }
    let mut kinds = request.kinds.unwrap_or_default();
    kinds.sort_by_key(|k| k.as_str());
    kinds.dedup();
    let silence = state
        .store
        .create_silence(&patterns, &kinds, request.until, note, &grant.subject, now)
        .await?;
    tracing::info!(id = silence.id, agents = ?silence.agents, until = %silence.until, by = grant.subject, "silenced");
    Ok(silence)
}

/// `GET /silences`: those in force, then those that ended in the last 7 days, newest first;
/// a token limited to some agents sees the silences of its agents only.
#[utoipa::path(get, path = "/silences", tag = "read",
    responses((status = 200, body = SilencesResponse), ReadRefusals),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub(super) async fn list_silences(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<SilencesResponse>, ApiError> {
    caller.require(Scope::Read)?;
    let silences = state
        .store
        .list_silences(Utc::now(), |patterns| covers_all(&caller.0, patterns))
        .await?;
    Ok(Json(SilencesResponse { silences }))
}

/// `204`: the silence ends now; the alerts it held whose transition is still open are sent at
/// the next pass. `409` when it has ended.
#[utoipa::path(delete, path = "/silences/{id}", tag = "operate",
    params(("id" = i64, Path, description = "The silence's id")),
    request_body(content = NoteRequest, content_type = "application/json"),
    responses(
        (status = 204, description = "Ended"),
        (status = 400, description = "Malformed JSON or a bad id", body = ErrorBody),
        (status = 404, description = "No such silence", body = ErrorBody),
        (status = 409, description = "silence_ended: it has ended", body = ErrorBody),
        (status = 422, description = "A note too long", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry after Retry-After", body = ErrorBody),
        BodyRefusals,
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(id))]
pub(super) async fn end_silence(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    body: Result<OptionalJson<NoteRequest>, ApiError>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::Operate)?;
    let OptionalJson(request) = body?;
    end(&state, &caller.0, id, request).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends silence `id` now, for `grant`'s holder.
pub(super) async fn end(
    state: &AppState,
    grant: &Grant,
    id: i64,
    request: NoteRequest,
) -> Result<(), ApiError> {
    tracing::Span::current().record("id", id);
    let note = params::note(request.note.as_deref())?;
    let now = Utc::now();
    let ended = || {
        ApiError::client(
            StatusCode::CONFLICT,
            "silence_ended",
            format!("silence {id} has ended"),
        )
    };
    match state.store.silence_patterns(id, now).await? {
        None => Err(ApiError::not_found(format!("no silence with id {id}"))),
        Some(Acted::Nothing) => Err(ended()),
        Some(Acted::Done(patterns)) if !covers_all(grant, &patterns) => Err(ApiError::forbidden(
            format!("this token may not end silence {id}"),
        )),
        Some(Acted::Done(_)) => match state
            .store
            .end_silence(id, &grant.subject, note, now)
            .await?
        {
            Acted::Done(()) => {
                tracing::info!(id, by = grant.subject, "silence ended");
                Ok(())
            }
            Acted::Nothing => Err(ended()),
        },
    }
}
