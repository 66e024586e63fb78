//! Expectations: `PUT`/`DELETE /agents/{name}/expectation` (scope `ingest`),
//! `PUT /expectations/scheduler` (a scheduler's jobs, scope `ingest`), `GET /expectations`
//! (scope `read`).

use agent_sdk::wire::{
    ErrorBody, Expectation, ExpectationRequest, ExpectationSource, ExpectationsResponse,
    ScheduledJobs,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;

use super::AppState;
use super::api_error::ApiError;
use super::caller::Caller;
use super::extract::{ApiJson, ApiPath};
use super::params;
use super::refusals::BodyRefusals;
use crate::auth::Scope;
use crate::domain::{AgentName, NewExpectation};
use crate::store::ScheduledExpectation;

/// The body limit of `PUT /expectations/scheduler`: 10 000 jobs with their longest strings.
pub(super) const SCHEDULE_BODY_LIMIT: usize = 32 * 1024 * 1024;

fn path_agent(name: String) -> Result<AgentName, ApiError> {
    params::agent_name(Some(&name))?.ok_or_else(|| ApiError::bad_param("name", "missing"))
}

/// `201` with the expectation when it is new, `200` when it replaced one. A changed cron or
/// period is judged from now on.
#[utoipa::path(put, path = "/agents/{name}/expectation", tag = "expect",
    params(("name" = String, Path, description = "The agent's name", min_length = 1, max_length = 100, pattern = r"^[A-Za-z0-9_.\-]+$")),
    request_body(content = ExpectationRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Stored: a new expectation", body = Expectation),
        (status = 200, description = "Stored: it replaced the agent's expectation", body = Expectation),
        (status = 400, description = "Malformed JSON or a bad agent name", body = ErrorBody),
        (status = 422, description = "A bad cron, time zone, period or grace; details.fields names each", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry after Retry-After", body = ErrorBody),
        BodyRefusals,
    ),
    security(("bearer" = [])))]
#[tracing::instrument(name = "expect", skip_all, fields(agent))]
pub(super) async fn put_expectation(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    // The scope is checked before the body's errors: a wrong token is 403 whatever it sent.
    body: Result<ApiJson<ExpectationRequest>, ApiError>,
) -> Result<(StatusCode, Json<Expectation>), ApiError> {
    caller.require(Scope::Ingest)?;
    let ApiJson(request) = body?;
    let agent = path_agent(name)?;
    caller.require_agent(agent.as_str())?;
    tracing::Span::current().record("agent", agent.as_str());
    let expectation = NewExpectation::parse(agent, request, ExpectationSource::Api)
        .map_err(|e| ApiError::validation(&e))?;
    let (stored, created) = state
        .store
        .put_expectation(&expectation, Utc::now())
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(stored)))
}

/// `204`: the agent is no longer expected; `404` when it was not.
#[utoipa::path(delete, path = "/agents/{name}/expectation", tag = "expect",
    params(("name" = String, Path, description = "The agent's name", min_length = 1, max_length = 100, pattern = r"^[A-Za-z0-9_.\-]+$")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "A bad agent name", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Wrong scope, or an agent outside the token's list", body = ErrorBody),
        (status = 404, description = "The agent has no expectation", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry after Retry-After", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[tracing::instrument(name = "unexpect", skip_all, fields(agent))]
pub(super) async fn delete_expectation(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::Ingest)?;
    let agent = path_agent(name)?;
    caller.require_agent(agent.as_str())?;
    tracing::Span::current().record("agent", agent.as_str());
    if state.store.delete_expectation(&agent).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "agent `{}` has no expectation",
            agent.as_str()
        )))
    }
}

/// `GET /expectations`: every expectation the token may see, by name, with its last and next
/// slot.
#[utoipa::path(get, path = "/expectations", tag = "read",
    responses((status = 200, body = ExpectationsResponse),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Wrong scope", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry after Retry-After", body = ErrorBody),
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub(super) async fn list_expectations(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<ExpectationsResponse>, ApiError> {
    caller.require(Scope::Read)?;
    let expectations = state
        .store
        .list_expectations(&caller.access(), Utc::now())
        .await?;
    Ok(Json(ExpectationsResponse { expectations }))
}

/// `200` with the expectations the scheduler's jobs now are: its enabled jobs replace those it
/// published before, so a removed or disabled job is no longer expected. The publisher is the
/// token's subject (`collector token --sub`): a scheduler and its replicas share one token;
/// schedulers with different schedule files need tokens of different subjects. Only the
/// publisher's own expectations, of the agents its token allows, are replaced.
#[utoipa::path(put, path = "/expectations/scheduler", tag = "expect",
    request_body(content = ScheduledJobs, content_type = "application/json"),
    responses(
        (status = 200, description = "The scheduler's expectations, by name", body = ExpectationsResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 422, description = "A bad job (its cron, time zone, timeout, catchup_window or jitter, or a name given twice); details.fields names it as jobs[i].field", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry after Retry-After", body = ErrorBody),
        BodyRefusals,
    ),
    security(("bearer" = [])))]
#[tracing::instrument(name = "publish_jobs", skip_all, fields(jobs))]
pub(super) async fn put_scheduled(
    State(state): State<AppState>,
    caller: Caller,
    // The scope is checked before the body's errors: a wrong token is 403 whatever it sent.
    body: Result<ApiJson<ScheduledJobs>, ApiError>,
) -> Result<Json<ExpectationsResponse>, ApiError> {
    caller.require(Scope::Ingest)?;
    let ApiJson(scheduled) = body?;
    tracing::Span::current().record("jobs", scheduled.jobs.len());
    let invalid = |i: usize, field: &str, message: String| {
        ApiError::invalid(&format!("jobs[{i}].{field}"), message)
    };
    let mut jobs = Vec::with_capacity(scheduled.jobs.len());
    let mut names = std::collections::HashSet::new();
    for (i, job) in scheduled.jobs.into_iter().enumerate() {
        let agent = AgentName::parse(job.job.as_str()).map_err(|e| {
            invalid(
                i,
                "job",
                e.message
                    .as_deref()
                    .unwrap_or("not an agent name")
                    .to_owned(),
            )
        })?;
        caller.require_agent(agent.as_str())?;
        if !names.insert(agent.as_str().to_owned()) {
            return Err(invalid(
                i,
                "job",
                format!("`{}` is given twice", agent.as_str()),
            ));
        }
        let timeout = match job.timeout.as_deref().map(humantime::parse_duration) {
            None => None,
            Some(Ok(timeout)) if !timeout.is_zero() => i64::try_from(timeout.as_secs().max(1)).ok(),
            Some(Ok(_)) => return Err(invalid(i, "timeout", "must be more than 0s".into())),
            Some(Err(err)) => {
                return Err(invalid(
                    i,
                    "timeout",
                    format!("not a duration like 10m: {err}"),
                ));
            }
        };
        let request = ExpectationRequest {
            cron: Some(job.cron),
            timezone: Some(job.timezone),
            every: None,
            grace: None,
        };
        let expectation = NewExpectation::parse(agent, request, ExpectationSource::Scheduler)
            .map_err(|errors| ApiError::validation_at(&format!("jobs[{i}]"), &errors))?;
        let catchup_window = match job.catchup_window {
            Some(window) if window != "latest" => match humantime::parse_duration(&window) {
                Ok(_) => Some(window),
                Err(err) => {
                    return Err(invalid(
                        i,
                        "catchup_window",
                        format!("not a length like 10m, `0s` or `latest`: {err}"),
                    ));
                }
            },
            _ => None,
        };
        if let Some(jitter) = &job.jitter
            && let Err(err) = humantime::parse_duration(jitter)
        {
            return Err(invalid(
                i,
                "jitter",
                format!("not a duration like 30s: {err}"),
            ));
        }
        if let Some(n) = job.pause_after_failures
            && !(1..=1000).contains(&n)
        {
            return Err(invalid(
                i,
                "pause_after_failures",
                format!("must be 1 to 1000, got {n}"),
            ));
        }
        if job.enabled {
            jobs.push(ScheduledExpectation {
                expectation,
                timeout_seconds: timeout,
                catchup_window,
                jitter: job.jitter,
                pause_after_failures: job.pause_after_failures,
            });
        }
    }
    let expectations = state
        .store
        .sync_scheduled(&jobs, &caller.0.subject, &caller.access(), Utc::now())
        .await?;
    Ok(Json(ExpectationsResponse { expectations }))
}
