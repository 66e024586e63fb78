//! The console's forms that act (scope `operate`): pause, resume and run a job now on its
//! agent page, cancel a run on its page, silence and end a silence on the incidents page. Each
//! is a POST from this origin (`same_origin`) with the session's form key
//! (`Viewer::form_key`), checked by the `Act` extractor, makes the API's own action
//! (`crate::http::jobs`, `crate::http::silences`) for the session's grant, audited under the
//! token's subject, and answers with a redirect back to the page it came from. No JavaScript is
//! needed; a cancel asks for a ticked confirmation.

use agent_sdk::wire::{IncidentKind, NoteRequest, PauseRequest, RunNowRequest, SilenceRequest};
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value};

use super::pages::{PageError, Refusals};
use super::{Viewer, same_origin};
use crate::auth::Grant;
use crate::http::AppState;
use crate::http::api_error::ApiError;
use crate::http::extract::ApiPath;
use crate::http::{jobs, silences};

/// What an action's form sends (each action reads its own fields): the key, and a note.
#[derive(Debug, Default, utoipa::ToSchema)]
pub(crate) struct ActionForm {
    /// The session's form key, from the page.
    form_key: String,
    /// Why, for the audit log (and a cancelled run's error).
    note: String,
    /// A pause's or a silence's length (`2h`, `30m`); empty: until resumed.
    #[schema(rename = "for")]
    pause_for: String,
    /// A run's params, as a JSON object; empty: the job's own.
    params: String,
    /// A cancel's confirmation: `yes` when ticked.
    confirm: String,
    /// A silence's agents: names or prefixes ending in `*`, comma-separated.
    agents: String,
    /// A silence's kinds, one field a kind ticked; none: every kind.
    #[schema(rename = "kind")]
    kinds: Vec<IncidentKind>,
}

impl ActionForm {
    /// The form from its fields as posted (a kind may come several times; unknown fields and
    /// kinds are passed over).
    fn from_fields(fields: Vec<(String, String)>) -> Self {
        let mut form = Self::default();
        for (name, value) in fields {
            match name.as_str() {
                "form_key" => form.form_key = value,
                "note" => form.note = value,
                "for" => form.pause_for = value,
                "params" => form.params = value,
                "confirm" => form.confirm = value,
                "agents" => form.agents = value,
                "kind" => form.kinds.extend(IncidentKind::parse(&value)),
                _ => {}
            }
        }
        form
    }

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
}

/// An operator's action: the form a page of this site posted with the session's key, from a
/// token that may act (the page's viewer, whose grant the action is made for).
pub(crate) struct Act {
    grant: Grant,
    form: ActionForm,
}

impl FromRequest<AppState> for Act {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        // Not signed in: the sign-in page, as on every page of the console.
        let viewer = Viewer::from_request_parts(&mut parts, state).await?;
        let this_site = same_origin(&parts.headers);
        let form =
            Form::<Vec<(String, String)>>::from_request(Request::from_parts(parts, body), state)
                .await;
        checked(&viewer, this_site, form)
            .map(|form| Self {
                grant: viewer.grant,
                form,
            })
            .map_err(IntoResponse::into_response)
    }
}

/// The form of an operator's action, checked: this site's, with the session's key, from a token
/// that may act.
fn checked(
    viewer: &Viewer,
    this_site: bool,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Result<ActionForm, PageError> {
    let forbidden = |message: &str| PageError::from(ApiError::forbidden(message));
    if !this_site {
        return Err(forbidden(
            "Actions are accepted from this site's own forms only.",
        ));
    }
    let Ok(Form(fields)) = form else {
        return Err(ApiError::client(
            StatusCode::BAD_REQUEST,
            "invalid_form",
            "The form did not arrive as sent; go back and try again.",
        )
        .into());
    };
    let form = ActionForm::from_fields(fields);
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

/// The id of a path (`/ui/runs/{id}/...`): a number, else 404 as an unknown one, like the pages.
fn path_id(id: &str, what: &str) -> Result<i64, PageError> {
    id.parse()
        .map_err(|_| ApiError::not_found(format!("no {what} with id {id:?}")).into())
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
    ApiPath(job): ApiPath<String>,
    Act { grant, form }: Act,
) -> Result<Redirect, PageError> {
    let request = PauseRequest {
        note: form.note(),
        until: form.until()?,
    };
    jobs::pause(&state, &grant, &job, request).await?;
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
    ApiPath(job): ApiPath<String>,
    Act { grant, form }: Act,
) -> Result<Redirect, PageError> {
    let request = NoteRequest { note: form.note() };
    jobs::resume(&state, &grant, &job, request).await?;
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
    ApiPath(job): ApiPath<String>,
    Act { grant, form }: Act,
) -> Result<Redirect, PageError> {
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
    jobs::run_now(&state, &grant, &job, request).await?;
    Ok(agent_page(&job))
}

/// `POST /ui/runs/{id}/cancel`: cancels the run once confirmed, then back to its page.
#[utoipa::path(post, path = "/ui/runs/{id}/cancel", tag = "console",
    params(("id" = String, Path, description = "The run's id")),
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
    ApiPath(id): ApiPath<String>,
    Act { grant, form }: Act,
) -> Result<Redirect, PageError> {
    if form.confirm != "yes" {
        return Err(unprocessable(
            "confirm",
            "tick the box to confirm: the run is stopped, its process killed".into(),
        ));
    }
    let id = path_id(&id, "run")?;
    jobs::cancel(&state, &grant, id, NoteRequest { note: form.note() }).await?;
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
    Act { grant, form }: Act,
) -> Result<Redirect, PageError> {
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
        note: form.note(),
        kinds: Some(form.kinds),
        until,
    };
    silences::create(&state, &grant, request).await?;
    Ok(Redirect::to("/ui/incidents"))
}

/// `POST /ui/silences/{id}/end`: ends the silence now, then back to the incidents page.
#[utoipa::path(post, path = "/ui/silences/{id}/end", tag = "console",
    params(("id" = String, Path, description = "The silence's id")),
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
    ApiPath(id): ApiPath<String>,
    Act { grant, form }: Act,
) -> Result<Redirect, PageError> {
    let id = path_id(&id, "silence")?;
    silences::end(&state, &grant, id, NoteRequest { note: form.note() }).await?;
    Ok(Redirect::to("/ui/incidents"))
}
