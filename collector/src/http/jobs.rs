//! Operating jobs: `GET /jobs` (scope `read`); `POST /jobs/{job}/pause`, `/resume`, `/runs`,
//! `/backfill` and `POST /runs/{id}/cancel` (scope `operate`). Each action is audited in the
//! transaction that makes it (`audit.rs` lists them); the schedulers learn of them by polling
//! (`scheduler_commands.rs`). The API's handlers and the console's forms make the same actions
//! (`pause`, `resume`, `run_now`, `cancel`), for a token's grant.

use agent_sdk::wire::{
    AuditAction, BackfillAccepted, BackfillRequest, ErrorBody, JobPause, JobsResponse,
    MAX_BACKFILL_SLOTS, NoteRequest, PauseRequest, RunNowRequest, RunRequested,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{TimeDelta, Utc};
use serde_json::json;
use uuid::Uuid;

use super::AppState;
use super::api_error::ApiError;
use super::caller::{Caller, require_agent};
use super::extract::{ApiJson, ApiPath, OptionalJson};
use super::params;
use super::refusals::{BodyRefusals, ReadRefusals};
use crate::auth::{Grant, Scope};
use crate::domain::Cadence;
use crate::store::{Acted, Audit};

/// The job of the path: a name, published by a scheduler, that the token may act on; its
/// cron.
async fn operated_job(
    state: &AppState,
    grant: &Grant,
    job: &str,
) -> Result<(String, Cadence), ApiError> {
    let name = params::name("job", job)?;
    require_agent(grant, name.as_str())?;
    let cadence = published(state, name.as_str()).await?;
    Ok((name.as_str().to_owned(), cadence))
}

/// The cron of `job`, if a scheduler published it; else 404.
async fn published(state: &AppState, job: &str) -> Result<Cadence, ApiError> {
    state.store.published_cron(job).await?.ok_or_else(|| {
        ApiError::not_found(format!("no job named `{job}`: no scheduler published it"))
    })
}

fn audit<'a>(
    grant: &'a Grant,
    action: AuditAction,
    job: &'a str,
    note: Option<&'a str>,
) -> Audit<'a> {
    Audit {
        actor: &grant.subject,
        action,
        job,
        run_key: None,
        note,
        details: None,
        at: Utc::now(),
    }
}

/// `GET /jobs`: the jobs the schedulers published, by name.
#[utoipa::path(get, path = "/jobs", tag = "read",
    responses((status = 200, body = JobsResponse), ReadRefusals),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
pub(super) async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<JobsResponse>, ApiError> {
    caller.require(Scope::Read)?;
    let jobs = state.store.list_jobs(&caller.access(), Utc::now()).await?;
    Ok(Json(JobsResponse { jobs }))
}

/// `200` with the pause: within 2 s no scheduler replica starts a new slot of the job (a run
/// going on is left to finish); its slots are skipped, never missed. Pausing a paused job
/// replaces its note and end.
#[utoipa::path(post, path = "/jobs/{job}/pause", tag = "operate",
    params(("job" = String, Path, description = "The job's name", min_length = 1, max_length = 100, pattern = r"^[A-Za-z0-9_.\-]+$")),
    request_body(content = PauseRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Paused", body = JobPause),
        (status = 400, description = "Malformed JSON or a bad job name", body = ErrorBody),
        (status = 404, description = "No scheduler published this job", body = ErrorBody),
        (status = 422, description = "`until` not in the future, or a note too long", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry after Retry-After", body = ErrorBody),
        BodyRefusals,
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(job))]
pub(super) async fn pause_job(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(job): ApiPath<String>,
    body: Result<OptionalJson<PauseRequest>, ApiError>,
) -> Result<Json<JobPause>, ApiError> {
    caller.require(Scope::Operate)?;
    let OptionalJson(request) = body?;
    Ok(Json(pause(&state, &caller.0, &job, request).await?))
}

/// Pauses `job` for `grant`'s holder (the API's and the console's action).
pub(super) async fn pause(
    state: &AppState,
    grant: &Grant,
    job: &str,
    request: PauseRequest,
) -> Result<JobPause, ApiError> {
    let (job, _) = operated_job(state, grant, job).await?;
    tracing::Span::current().record("job", job.as_str());
    let note = params::note(request.note.as_deref())?;
    let audit = audit(grant, AuditAction::Pause, &job, note);
    if let Some(until) = request.until
        && until <= audit.at
    {
        return Err(ApiError::invalid(
            "until",
            format!("must be in the future, got {}", until.to_rfc3339()),
        ));
    }
    let audit = Audit {
        details: request.until.map(|until| json!({"until": until})),
        ..audit
    };
    let pause = state.store.pause_job(request.until, audit).await?;
    tracing::info!(job, by = pause.paused_by, until = ?pause.until, "job paused");
    Ok(pause)
}

/// `204`: the job's next slots run again (within 2 s on every replica); `409` when it was not
/// paused.
#[utoipa::path(post, path = "/jobs/{job}/resume", tag = "operate",
    params(("job" = String, Path, description = "The job's name", min_length = 1, max_length = 100, pattern = r"^[A-Za-z0-9_.\-]+$")),
    request_body(content = NoteRequest, content_type = "application/json"),
    responses(
        (status = 204, description = "Resumed"),
        (status = 400, description = "Malformed JSON or a bad job name", body = ErrorBody),
        (status = 404, description = "No scheduler published this job", body = ErrorBody),
        (status = 409, description = "not_paused: the job is not paused", body = ErrorBody),
        (status = 422, description = "A note too long", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry after Retry-After", body = ErrorBody),
        BodyRefusals,
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(job))]
pub(super) async fn resume_job(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(job): ApiPath<String>,
    body: Result<OptionalJson<NoteRequest>, ApiError>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::Operate)?;
    let OptionalJson(request) = body?;
    resume(&state, &caller.0, &job, request).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Resumes `job` for `grant`'s holder.
pub(super) async fn resume(
    state: &AppState,
    grant: &Grant,
    job: &str,
    request: NoteRequest,
) -> Result<(), ApiError> {
    let (job, _) = operated_job(state, grant, job).await?;
    tracing::Span::current().record("job", job.as_str());
    let note = params::note(request.note.as_deref())?;
    match state
        .store
        .resume_job(audit(grant, AuditAction::Resume, &job, note))
        .await?
    {
        Acted::Done(()) => {
            tracing::info!(job, by = grant.subject, "job resumed");
            Ok(())
        }
        Acted::Nothing => Err(ApiError::client(
            StatusCode::CONFLICT,
            "not_paused",
            format!("job `{job}` is not paused"),
        )),
    }
}

/// `202` with the run's key: one scheduler replica runs the job within 2 s (trigger `manual`,
/// its params with `params` over them), paused or not; `GET /runs?run_key=` finds it. `409`
/// when a run of the job is going on under `concurrency_policy = forbid`.
#[utoipa::path(post, path = "/jobs/{job}/runs", tag = "operate",
    params(("job" = String, Path, description = "The job's name", min_length = 1, max_length = 100, pattern = r"^[A-Za-z0-9_.\-]+$")),
    request_body(content = RunNowRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Asked: a scheduler replica runs it", body = RunRequested),
        (status = 400, description = "Malformed JSON or a bad job name", body = ErrorBody),
        (status = 404, description = "No scheduler published this job", body = ErrorBody),
        (status = 409, description = "job_running: a run of this job (concurrency_policy = forbid) is going on; details: {run_id, run_key}", body = ErrorBody),
        (status = 422, description = "`params` not an object, or a note too long", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry after Retry-After", body = ErrorBody),
        BodyRefusals,
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(job, run_key))]
pub(super) async fn run_job(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(job): ApiPath<String>,
    body: Result<OptionalJson<RunNowRequest>, ApiError>,
) -> Result<(StatusCode, Json<RunRequested>), ApiError> {
    caller.require(Scope::Operate)?;
    let OptionalJson(request) = body?;
    let run_key = run_now(&state, &caller.0, &job, request).await?;
    Ok((StatusCode::ACCEPTED, Json(RunRequested { run_key })))
}

/// Asks for a run of `job` now, for `grant`'s holder: the key it will run under.
pub(super) async fn run_now(
    state: &AppState,
    grant: &Grant,
    job: &str,
    request: RunNowRequest,
) -> Result<Uuid, ApiError> {
    let (job, _) = operated_job(state, grant, job).await?;
    tracing::Span::current().record("job", job.as_str());
    let note = params::note(request.note.as_deref())?;
    if let Some((run_id, run_key)) = state.store.exclusive_run(&job).await? {
        return Err(ApiError::Client {
            status: StatusCode::CONFLICT,
            code: "job_running",
            message: format!(
                "job `{job}` runs under concurrency_policy = forbid and its run {run_id} is going on: cancel it or wait"
            ),
            details: json!({"run_id": run_id, "run_key": run_key}),
        });
    }
    let run_key = Uuid::new_v4();
    tracing::Span::current().record("run_key", tracing::field::display(run_key));
    let audit = Audit {
        run_key: Some(run_key),
        details: request.params.as_ref().map(|p| json!({"params": p})),
        ..audit(grant, AuditAction::Run, &job, note)
    };
    state
        .store
        .request_run(run_key, request.params.as_ref(), audit)
        .await?;
    tracing::info!(job, %run_key, by = grant.subject, "run asked for");
    Ok(run_key)
}

/// `202`: the scheduler replica running it cancels it within 2 s (a command agent's whole
/// process group killed); it ends `cancelled`, its error naming who and why. `409` when it has
/// ended.
#[utoipa::path(post, path = "/runs/{id}/cancel", tag = "operate",
    params(("id" = i64, Path, description = "The run's id")),
    request_body(content = NoteRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Asked: the replica running it cancels it"),
        (status = 400, description = "Malformed JSON or a bad id", body = ErrorBody),
        (status = 404, description = "No such run (or not visible to this token)", body = ErrorBody),
        (status = 409, description = "run_ended: the run is not running", body = ErrorBody),
        (status = 422, description = "A note too long", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry after Retry-After", body = ErrorBody),
        BodyRefusals,
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(id))]
pub(super) async fn cancel_run(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    body: Result<OptionalJson<NoteRequest>, ApiError>,
) -> Result<StatusCode, ApiError> {
    caller.require(Scope::Operate)?;
    let OptionalJson(request) = body?;
    cancel(&state, &caller.0, id, request).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Asks the replica running run `id` to cancel it, for `grant`'s holder.
pub(super) async fn cancel(
    state: &AppState,
    grant: &Grant,
    id: i64,
    request: NoteRequest,
) -> Result<(), ApiError> {
    tracing::Span::current().record("id", id);
    let note = params::note(request.note.as_deref())?;
    let run = state
        .store
        .run_to_cancel(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run with id {id}")))?;
    if !grant.allows_agent(&run.agent_name) {
        // Without naming the agent: the token learns no more of the run than that it may not.
        return Err(ApiError::forbidden(format!(
            "this token may not act on run {id}"
        )));
    }
    let (Some(run_key), "running") = (run.run_key, run.status.as_str()) else {
        return Err(ApiError::client(
            StatusCode::CONFLICT,
            "run_ended",
            format!("run {id} is not running: it is {}", run.status),
        ));
    };
    let actor = &grant.subject;
    let reason = match note {
        Some(note) => format!("cancelled by {actor}: {note}"),
        None => format!("cancelled by {actor}"),
    };
    let audit = Audit {
        run_key: Some(run_key),
        ..audit(grant, AuditAction::Cancel, &run.agent_name, note)
    };
    state.store.request_cancel(&reason, audit).await?;
    tracing::info!(id, job = run.agent_name, by = actor, "run cancel asked for");
    Ok(())
}

/// Most slots of one backfill running at once.
const MAX_PARALLEL: u32 = 100;

/// `202` with the number of slots to run: every slot of the job's cron in `[from, to]` that has
/// not run (a run under its key) nor been asked for, run under its own key with trigger
/// `backfill`, oldest first, at most `max_parallel` at once across replicas. Asked again, the
/// same range is `0` slots.
#[utoipa::path(post, path = "/jobs/{job}/backfill", tag = "operate",
    params(("job" = String, Path, description = "The job's name", min_length = 1, max_length = 100, pattern = r"^[A-Za-z0-9_.\-]+$")),
    request_body(content = BackfillRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Asked: the replicas run the slots", body = BackfillAccepted),
        (status = 400, description = "Malformed JSON or a bad job name", body = ErrorBody),
        (status = 404, description = "No scheduler published this job", body = ErrorBody),
        (status = 422, description = "`to` before `from` or in the future, more than 1000 slots, or a note too long", body = ErrorBody),
        (status = 503, description = "Database unavailable; retry after Retry-After", body = ErrorBody),
        BodyRefusals,
    ),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(job))]
pub(super) async fn backfill_job(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(job): ApiPath<String>,
    body: Result<ApiJson<BackfillRequest>, ApiError>,
) -> Result<(StatusCode, Json<BackfillAccepted>), ApiError> {
    caller.require(Scope::Operate)?;
    let ApiJson(request) = body?;
    let (job, cadence) = operated_job(&state, &caller.0, &job).await?;
    tracing::Span::current().record("job", job.as_str());
    let note = params::note(request.note.as_deref())?;
    let now = Utc::now();
    if request.to < request.from {
        return Err(ApiError::invalid("to", "is before `from`"));
    }
    if request.to > now {
        return Err(ApiError::invalid(
            "to",
            "is in the future: a backfill runs past slots",
        ));
    }
    let max_parallel = request.max_parallel.unwrap_or(1);
    if !(1..=MAX_PARALLEL).contains(&max_parallel) {
        return Err(ApiError::invalid(
            "max_parallel",
            format!("must be 1 to {MAX_PARALLEL}, got {max_parallel}"),
        ));
    }
    let mut slots = Vec::new();
    let mut after = request.from - TimeDelta::seconds(1);
    while let Some(slot) = cadence.next_after(after).filter(|slot| *slot <= request.to) {
        after = slot;
        if slot < request.from {
            continue;
        }
        if slots.len() == MAX_BACKFILL_SLOTS {
            return Err(ApiError::invalid(
                "to",
                format!(
                    "the range holds more than {MAX_BACKFILL_SLOTS} slots of `{job}`: backfill it in parts"
                ),
            ));
        }
        slots.push((slot, agent_sdk::cron::run_key_of(&job, slot)));
    }
    let audit = Audit {
        details: Some(
            json!({"from": request.from, "to": request.to, "max_parallel": max_parallel}),
        ),
        ..audit(&caller.0, AuditAction::Backfill, &job, note)
    };
    let asked = state
        .store
        .request_backfill(&slots, max_parallel, audit)
        .await?;
    tracing::info!(
        job,
        slots = asked,
        in_range = slots.len(),
        by = caller.0.subject,
        "backfill asked for"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(BackfillAccepted { slots: asked }),
    ))
}
