//! Runs (`POST /metrics`, `POST /metrics/batch` and `POST /runs`, scope `ingest`; `GET /runs`,
//! `GET /runs/{id}` and `GET /metrics`, scope `read`): one run report in, one stored run out;
//! many, each judged on its own; a run's start (a `running` row that its report completes); the
//! runs and their metric values, filtered and paged.

use agent_sdk::wire::limits::MAX_REPORTS_PER_BATCH;
use agent_sdk::wire::{
    BatchItemResult, BatchRequest, BatchResponse, ErrorBody, IngestResponse, MetricPage, RunDetail,
    RunPage, RunReport, RunStart, RunStarted, RunStatus,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::AppState;
use super::api_error::ApiError;
use super::caller::Caller;
use super::extract::{ApiJson, ApiPath, ApiQuery, parse_json};
use super::params::{self, agent_filter};
use super::refusals::{BodyRefusals, ReadRefusals};
use crate::auth::Scope;
use crate::domain::{NewRun, NewStart};
use crate::store::{MetricFilter, RunFilter, Started, Stored};

/// `201 {"run_id"}` for a new run, or a `running` one (`POST /runs`) completed; `200` with the
/// same id when its `run_key` was stored before with the same report; `409` when the key holds
/// another report.
#[utoipa::path(
    post, path = "/metrics", tag = "ingest",
    request_body(content = RunReport, content_type = "application/json"),
    responses(
        (status = 201, description = "Stored", body = IngestResponse),
        (status = 200, description = "This run_key was stored before with the same report; nothing written", body = IngestResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 409, description = "run_key_reused: the agent's run_key holds another report (other status, times, error or metrics); nothing written", body = ErrorBody),
        (status = 422, description = "A rule of the contract is broken; details.fields names each field", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry after Retry-After", body = ErrorBody),
        BodyRefusals,
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "ingest", skip_all, fields(agent, run_id))]
pub(super) async fn post_metrics(
    State(state): State<AppState>,
    caller: Caller,
    // The scope is checked before the body's errors: a wrong token is 403 whatever it sent.
    body: Result<ApiJson<RunReport>, ApiError>,
) -> Result<(StatusCode, Json<IngestResponse>), ApiError> {
    caller.require(Scope::Ingest)?;
    let ApiJson(report) = body?;
    let run = admit(report, &caller, Utc::now())?;
    tracing::Span::current().record("agent", run.agent_name.as_str());

    let stored = state.ingest.store_one(run).await?;

    tracing::Span::current().record("run_id", stored.run_id());
    let (status, run_id) = answer(stored)?;
    Ok((status, Json(IngestResponse { run_id })))
}

/// `201 {"run_id"}`: the run is started, a `running` row until the report with the same
/// `run_key` completes it; `200` when the same claimant started it before; `409 run_claimed`
/// when another claimant holds the key or the run has finished.
#[utoipa::path(
    post, path = "/runs", tag = "ingest",
    request_body(content = RunStart, content_type = "application/json"),
    responses(
        (status = 201, description = "Started: run the agent", body = RunStarted),
        (status = 200, description = "Started before by the same claimant: still its run", body = RunStarted),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 409, description = "run_claimed: another claimant holds this run_key, or the run has finished; details: {run_id, status, host, claimant}", body = ErrorBody),
        (status = 422, description = "A rule of the contract is broken; details.fields names each field", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry after Retry-After", body = ErrorBody),
        BodyRefusals,
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "start", skip_all, fields(agent, run_id))]
pub(super) async fn post_start(
    State(state): State<AppState>,
    caller: Caller,
    // The scope is checked before the body's errors: a wrong token is 403 whatever it sent.
    body: Result<ApiJson<RunStart>, ApiError>,
) -> Result<(StatusCode, Json<RunStarted>), ApiError> {
    caller.require(Scope::Ingest)?;
    let ApiJson(start) = body?;
    let start = NewStart::parse(start, Utc::now()).map_err(|e| ApiError::validation(&e))?;
    caller.require_agent(start.agent_name.as_str())?;
    tracing::Span::current().record("agent", start.agent_name.as_str());

    let (status, run_id) = match state.ingest.start_run(&start).await? {
        Started::Created(run_id) => (StatusCode::CREATED, run_id),
        Started::Again(run_id) => (StatusCode::OK, run_id),
        Started::Claimed(claim) => {
            let message = format!(
                "run_key {} is held by run {} ({}, claimant {}, host {})",
                start.run_key,
                claim.run_id,
                claim.status.as_str(),
                claim.claimant.as_deref().unwrap_or("none"),
                claim.host.as_deref().unwrap_or("unknown"),
            );
            return Err(ApiError::Client {
                status: StatusCode::CONFLICT,
                code: "run_claimed",
                message,
                details: serde_json::to_value(&claim).unwrap_or_default(),
            });
        }
    };
    tracing::Span::current().record("run_id", run_id);
    Ok((status, Json(RunStarted { run_id })))
}

/// The body of [`BatchRequest`], read lazily: each report is parsed on its own, so a malformed
/// one is refused alone.
#[derive(Deserialize)]
pub(super) struct RawBatch {
    reports: Vec<Box<RawValue>>,
}

/// `200 {"results": [...]}`, one result per report in the order sent: what `POST /metrics`
/// would have answered for it. Valid reports are stored in one transaction; a report that
/// breaks a rule is refused alone, and a run the database refuses fails alone.
#[utoipa::path(
    post, path = "/metrics/batch", tag = "ingest",
    request_body(content = BatchRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "One result per report, in order", body = BatchResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The token lacks the ingest scope", body = ErrorBody),
        (status = 413, description = "Body over the batch limit", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "No `reports` list, an empty one, or more than 1000 reports", body = ErrorBody),
        (status = 503, description = "Database unavailable: nothing stored; retry after Retry-After", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "ingest_batch", skip_all, fields(reports, stored))]
pub(super) async fn post_batch(
    State(state): State<AppState>,
    caller: Caller,
    // The scope is checked before the body's errors: a wrong token is 403 whatever it sent.
    body: Result<ApiJson<RawBatch>, ApiError>,
) -> Result<Json<BatchResponse>, ApiError> {
    caller.require(Scope::Ingest)?;
    let ApiJson(batch) = body?;
    let count = batch.reports.len();
    tracing::Span::current().record("reports", count);
    if !(1..=MAX_REPORTS_PER_BATCH).contains(&count) {
        return Err(ApiError::invalid(
            "reports",
            format!("a batch holds 1 to {MAX_REPORTS_PER_BATCH} reports, not {count}"),
        ));
    }

    let now = Utc::now();
    let mut results: Vec<Option<BatchItemResult>> = Vec::with_capacity(count);
    let mut runs = Vec::with_capacity(count);
    for raw in &batch.reports {
        let admitted = parse_json::<RunReport>(raw.get().as_bytes())
            .and_then(|report| admit(report, &caller, now));
        match admitted {
            Ok(run) => {
                runs.push(run);
                results.push(None);
            }
            Err(err) => results.push(Some(item_result(Err(err)))),
        }
    }
    drop(batch);

    // An unavailable database refuses the whole transaction: nothing was stored, so the whole
    // request is answered 503 and may be retried as it is.
    let outcomes = if runs.is_empty() {
        Vec::new()
    } else {
        state.ingest.store_batch(&runs).await?
    };

    let mut stored = 0;
    let mut outcomes = outcomes.into_iter();
    let results = results
        .into_iter()
        .map(|slot| {
            slot.unwrap_or_else(|| match outcomes.next() {
                Some(Ok(outcome)) => {
                    let answer = answer(outcome);
                    stored += usize::from(answer.is_ok());
                    item_result(answer)
                }
                Some(Err(err)) => item_result(Err(err.into())),
                None => item_result(Err(anyhow::anyhow!("a batch outcome is missing").into())),
            })
        })
        .collect();
    tracing::Span::current().record("stored", stored);
    Ok(Json(BatchResponse { results }))
}

/// Checks a parsed report against the contract and the caller's token.
fn admit(report: RunReport, caller: &Caller, now: DateTime<Utc>) -> Result<NewRun, ApiError> {
    let run = NewRun::parse(report, now).map_err(|e| ApiError::validation(&e))?;
    caller.require_agent(run.agent_name.as_str())?;
    Ok(run)
}

/// 201 for a new (or completed) run, 200 for a `run_key` stored before with the same report,
/// 409 for a key that holds another report.
fn answer(stored: Stored) -> Result<(StatusCode, i64), ApiError> {
    match stored {
        Stored::Created(id) => Ok((StatusCode::CREATED, id)),
        Stored::Existing(id) => Ok((StatusCode::OK, id)),
        Stored::Conflict(id) => Err(ApiError::client(
            StatusCode::CONFLICT,
            "run_key_reused",
            format!(
                "the run_key belongs to run {id} of this agent, which holds another report (other status, times, error or metrics): nothing stored"
            ),
        )),
    }
}

fn item_result(outcome: Result<(StatusCode, i64), ApiError>) -> BatchItemResult {
    match outcome {
        Ok((status, run_id)) => BatchItemResult {
            status: status.as_u16(),
            run_id: Some(run_id),
            error: None,
        },
        Err(err) => {
            let (status, body) = err.into_body();
            BatchItemResult {
                status: status.as_u16(),
                run_id: None,
                error: Some(body.error),
            }
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct RunsQuery {
    /// Only this agent's.
    #[param(min_length = 1, max_length = 100, pattern = r"^[A-Za-z0-9_.\-]+$")]
    agent_name: Option<String>,
    /// Only the run stored under this key (`POST /jobs/{job}/runs` answers one).
    #[param(value_type = Option<String>, format = Uuid)]
    run_key: Option<Uuid>,
    #[param(value_type = Option<RunStatus>)]
    status: Option<String>,
    /// Inclusive, RFC 3339.
    #[param(format = DateTime, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$")]
    from: Option<String>,
    /// Exclusive, RFC 3339; not before `from`.
    #[param(format = DateTime, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$")]
    to: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[0-9]{1,16}_[0-9]{1,18}$")]
    cursor: Option<String>,
    /// Rows per page; 100 when absent.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

/// `GET /runs`: newest first, keyset-paginated.
#[utoipa::path(get, path = "/runs", tag = "read", params(RunsQuery),
    responses((status = 200, body = RunPage),
        ReadRefusals,
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub(super) async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<RunsQuery>,
) -> Result<Json<RunPage>, ApiError> {
    caller.require(Scope::Read)?;
    let agent_name = agent_filter(&caller, query.agent_name.as_deref())?;
    let status = query
        .status
        .as_deref()
        .map(|s| {
            RunStatus::parse(s).ok_or_else(|| {
                ApiError::bad_param(
                    "status",
                    format!("{s:?}; expected running, success, failed or cancelled"),
                )
            })
        })
        .transpose()?;
    let (from, to) = params::time_range(query.from.as_deref(), query.to.as_deref())?;
    let filter = RunFilter {
        agent_name,
        run_key: query.run_key,
        status,
        from,
        to,
        cursor: params::cursor(query.cursor.as_deref())?,
        limit: params::limit(query.limit)?,
        access: caller.access(),
    };
    Ok(Json(state.store.list_runs(&filter).await?))
}

/// `GET /runs/{id}`: one run with its metrics.
#[utoipa::path(get, path = "/runs/{id}", tag = "read", params(("id" = i64, Path, description = "The run's id")),
    responses((status = 200, body = RunDetail),
        (status = 404, description = "No such run (or not visible to this token)", body = ErrorBody),
        ReadRefusals,
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(id))]
pub(super) async fn get_run(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<RunDetail>, ApiError> {
    caller.require(Scope::Read)?;
    tracing::Span::current().record("id", id);
    let not_found = || ApiError::not_found(format!("no run with id {id}"));
    let run = state.store.get_run(id).await?.ok_or_else(not_found)?;
    // A token limited to other agents learns nothing about this run, not even that it exists.
    if !caller.0.allows_agent(&run.run.agent_name) {
        return Err(not_found());
    }
    Ok(Json(run))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct MetricsQuery {
    /// Only this agent's.
    #[param(min_length = 1, max_length = 100, pattern = r"^[A-Za-z0-9_.\-]+$")]
    agent_name: Option<String>,
    /// Only this metric's values.
    #[param(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*$"
    )]
    metric_name: Option<String>,
    /// Inclusive, RFC 3339.
    #[param(format = DateTime, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$")]
    from: Option<String>,
    /// Exclusive, RFC 3339; not before `from`.
    #[param(format = DateTime, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$")]
    to: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[0-9]{1,16}_[0-9]{1,18}$")]
    cursor: Option<String>,
    /// Rows per page; 100 when absent.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

/// `GET /metrics`: metric values, newest first, keyset-paginated.
#[utoipa::path(get, path = "/metrics", tag = "read", params(MetricsQuery),
    responses((status = 200, body = MetricPage),
        ReadRefusals,
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub(super) async fn list_metrics(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<MetricsQuery>,
) -> Result<Json<MetricPage>, ApiError> {
    caller.require(Scope::Read)?;
    let agent_name = agent_filter(&caller, query.agent_name.as_deref())?;
    let (from, to) = params::time_range(query.from.as_deref(), query.to.as_deref())?;
    let filter = MetricFilter {
        agent_name,
        metric_name: params::metric_name(query.metric_name)?,
        from,
        to,
        cursor: params::cursor(query.cursor.as_deref())?,
        limit: params::limit(query.limit)?,
        access: caller.access(),
    };
    Ok(Json(state.store.list_metrics(&filter).await?))
}
