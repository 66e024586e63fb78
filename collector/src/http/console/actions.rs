//! The console's forms that act (scope `operate`): pause, resume and run a job now on its
//! agent page, cancel a run on its page, silence and end a silence on the incidents page. Each is a POST from this origin (`same_origin`) with
//! the session's form key (`Viewer::form_key`), makes the API's own action
//! (`crate::http::jobs`), audited under the token's subject, and answers with a redirect back
//! to the page it came from. No JavaScript is needed; a cancel asks for a ticked confirmation.

use agent_sdk::wire::{IncidentKind, NoteRequest, PauseRequest, RunNowRequest, SilenceRequest};
use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Redirect;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::pages::{PageError, Refusals};
use super::{Viewer, same_origin};
use crate::http::AppState;
use crate::http::api_error::ApiError;
use crate::http::extract::ApiPath;
use crate::http::{jobs, silences};

/// What every action form sends: the key, and a note.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct ActionForm {
    /// The session's form key, from the page.
    #[serde(default)]
    form_key: String,
    /// Why, for the audit log (and a cancelled run's error).
    #[serde(default)]
    note: String,
    /// A pause's length (`2h`, `30m`); empty: until resumed.
    #[serde(default, rename = "for")]
    pause_for: String,
    /// A run's params, as a JSON object; empty: the job's own.
    #[serde(default)]
    params: String,
    /// A cancel's confirmation: `yes` when ticked.
    #[serde(default)]
    confirm: String,
    /// A silence's agents: names or prefixes ending in `*`, comma-separated.
    #[serde(default)]
    agents: String,
    /// A silence's kinds, one box each (`yes` when ticked); none ticked: every kind.
    #[serde(default)]
    kind_missed: String,
    #[serde(default)]
    kind_failing: String,
    #[serde(default)]
    kind_stale: String,
    #[serde(default)]
    kind_overdue: String,
    #[serde(default)]
    kind_slow: String,
}

impl ActionForm {
    fn note(&self) -> Option<String> {
        Some(self.note.trim().to_owned()).filter(|n| !n.is_empty())
    }

    /// The length in `for` (`2h`), from now.
    fn until(&self) -> Result<Option<DateTime<Utc>>, PageError> {
        match self.pause_for.trim() {
            "" => Ok(None),
            length => humantime::parse_duration(length)
                .ok()
                .and_then(|d| TimeDelta::from_std(d).ok())
                .filter(|d| *d > TimeDelta::zero())
                .map(|d| Some(Utc::now() + d))
                .ok_or_else(|| {
                    unprocessable("for", format!("{length:?} is not a length like 2h or 30m"))
                }),
        }
    }

    fn kinds(&self) -> Vec<IncidentKind> {
        [
            (&self.kind_missed, IncidentKind::Missed),
            (&self.kind_failing, IncidentKind::Failing),
            (&self.kind_stale, IncidentKind::Stale),
            (&self.kind_overdue, IncidentKind::Overdue),
            (&self.kind_slow, IncidentKind::Slow),
        ]
        .into_iter()
        .filter(|(ticked, _)| ticked.as_str() == "yes")
        .map(|(_, kind)| kind)
        .collect()
    }
}

/// The form of an operator's action, checked: this site's, with the session's key, from a token
/// that may act.
fn checked(
    viewer: &Viewer,
    headers: &HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Result<ActionForm, PageError> {
    let forbidden = |message: &str| PageError::from(ApiError::forbidden(message));
    if !same_origin(headers) {
        return Err(forbidden(
            "Actions are accepted from this site's own forms only.",
        ));
    }
    let Ok(Form(form)) = form else {
        return Err(ApiError::client(
            StatusCode::BAD_REQUEST,
            "invalid_form",
            "The form did not arrive as sent; go back and try again.",
        )
        .into());
    };
    if !viewer.can_operate() {
        return Err(forbidden(
            "This token cannot act: sign in with one of scope operate (collector token --scope operate --scope read).",
        ));
    }
    if !viewer.form_key_matches(&form.form_key) {
        return Err(forbidden(
            "This form is not from this session: reload the page and try again.",
        ));
    }
    Ok(form)
}

fn unprocessable(field: &str, message: String) -> PageError {
    ApiError::invalid(field, message).into()
}

fn agent_page(job: &str) -> Redirect {
    Redirect::to(&format!("/ui/agents/{job}"))
}

/// `POST /ui/jobs/{job}/pause`: pauses the job, then back to its page.
#[utoipa::path(post, path = "/ui/jobs/{job}/pause", tag = "console",
    params(("job" = String, Path, description = "The job")),
    request_body(content = ActionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Paused: back to the agent's page"),
        (status = 404, description = "No scheduler published this job", content_type = "text/html", body = String),
        (status = 422, description = "A bad length or note: a page saying which", content_type = "text/html", body = String),
        Refusals,
    ),
    security(("console_cookie" = [])))]
pub(crate) async fn pause(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    ApiPath(job): ApiPath<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Result<Redirect, PageError> {
    let form = checked(&viewer, &headers, form)?;
    let request = PauseRequest {
        note: form.note(),
        until: form.until()?,
    };
    jobs::pause(&state, &viewer.grant, &job, request).await?;
    Ok(agent_page(&job))
}

/// `POST /ui/jobs/{job}/resume`: resumes the job, then back to its page.
#[utoipa::path(post, path = "/ui/jobs/{job}/resume", tag = "console",
    params(("job" = String, Path, description = "The job")),
    request_body(content = ActionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Resumed: back to the agent's page"),
        (status = 404, description = "No scheduler published this job", content_type = "text/html", body = String),
        (status = 409, description = "Not paused", content_type = "text/html", body = String),
        Refusals,
    ),
    security(("console_cookie" = [])))]
pub(crate) async fn resume(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    ApiPath(job): ApiPath<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Result<Redirect, PageError> {
    let form = checked(&viewer, &headers, form)?;
    let request = NoteRequest { note: form.note() };
    jobs::resume(&state, &viewer.grant, &job, request).await?;
    Ok(agent_page(&job))
}

/// `POST /ui/jobs/{job}/run`: asks for a run now, then back to the job's page.
#[utoipa::path(post, path = "/ui/jobs/{job}/run", tag = "console",
    params(("job" = String, Path, description = "The job")),
    request_body(content = ActionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Asked for: back to the agent's page"),
        (status = 404, description = "No scheduler published this job", content_type = "text/html", body = String),
        (status = 409, description = "A run of this forbid job is going on", content_type = "text/html", body = String),
        (status = 422, description = "Params that are not a JSON object, or a note too long", content_type = "text/html", body = String),
        Refusals,
    ),
    security(("console_cookie" = [])))]
pub(crate) async fn run_now(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    ApiPath(job): ApiPath<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Result<Redirect, PageError> {
    let form = checked(&viewer, &headers, form)?;
    let params = match form.params.trim() {
        "" => None,
        text => Some(
            serde_json::from_str::<Map<String, Value>>(text)
                .map_err(|e| unprocessable("params", format!("not a JSON object ({e}): {text}")))?,
        ),
    };
    let request = RunNowRequest {
        params,
        note: form.note(),
    };
    jobs::run_now(&state, &viewer.grant, &job, request).await?;
    Ok(agent_page(&job))
}

/// `POST /ui/runs/{id}/cancel`: cancels the run once confirmed, then back to its page.
#[utoipa::path(post, path = "/ui/runs/{id}/cancel", tag = "console",
    params(("id" = i64, Path, description = "The run's id")),
    request_body(content = ActionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Asked for: back to the run's page"),
        (status = 404, description = "No such run", content_type = "text/html", body = String),
        (status = 409, description = "The run has ended", content_type = "text/html", body = String),
        (status = 422, description = "Not confirmed, or a note too long", content_type = "text/html", body = String),
        Refusals,
    ),
    security(("console_cookie" = [])))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Result<Redirect, PageError> {
    let form = checked(&viewer, &headers, form)?;
    if form.confirm != "yes" {
        return Err(unprocessable(
            "confirm",
            "tick the box to confirm: the run is stopped, its process killed".into(),
        ));
    }
    jobs::cancel(&state, &viewer.grant, id, NoteRequest { note: form.note() }).await?;
    Ok(Redirect::to(&format!("/ui/runs/{id}")))
}

/// `POST /ui/silences`: silences the agents and kinds of the form for its length, then back to
/// the incidents page.
#[utoipa::path(post, path = "/ui/silences", tag = "console",
    request_body(content = ActionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Silenced: back to the incidents page"),
        (status = 422, description = "A bad pattern or length: a page saying which", content_type = "text/html", body = String),
        Refusals,
    ),
    security(("console_cookie" = [])))]
pub(crate) async fn silence(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Result<Redirect, PageError> {
    let form = checked(&viewer, &headers, form)?;
    let until = form
        .until()?
        .ok_or_else(|| unprocessable("for", "give the silence a length, such as 2h".into()))?;
    let request = SilenceRequest {
        agents: form
            .agents
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect(),
        kinds: Some(form.kinds()),
        until,
        note: form.note(),
    };
    silences::create(&state, &viewer.grant, request).await?;
    Ok(Redirect::to("/ui/incidents"))
}

/// `POST /ui/silences/{id}/end`: ends the silence now, then back to the incidents page.
#[utoipa::path(post, path = "/ui/silences/{id}/end", tag = "console",
    params(("id" = i64, Path, description = "The silence's id")),
    request_body(content = ActionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Ended: back to the incidents page"),
        (status = 404, description = "No such silence", content_type = "text/html", body = String),
        (status = 409, description = "It has ended", content_type = "text/html", body = String),
        Refusals,
    ),
    security(("console_cookie" = [])))]
pub(crate) async fn end_silence(
    State(state): State<AppState>,
    viewer: Viewer,
    headers: HeaderMap,
    ApiPath(id): ApiPath<i64>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Result<Redirect, PageError> {
    let form = checked(&viewer, &headers, form)?;
    silences::end(&state, &viewer.grant, id, NoteRequest { note: form.note() }).await?;
    Ok(Redirect::to("/ui/incidents"))
}
