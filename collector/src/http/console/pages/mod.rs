//! The console's pages: overview, agent, run, incidents. Each reads what the API's endpoints
//! read (the daily summaries, the indexes of runs and metrics, the per-metric daily
//! aggregates), filtered by the signed-in token's agents. One module a page; what they share
//! (the refusals, the incident table) is here.

pub(crate) mod agent_page;
pub(crate) mod audit_page;
pub(crate) mod incidents_page;
pub(crate) mod overview_page;
pub(crate) mod run_page;

use agent_sdk::wire::Incident;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use maud::{Markup, html};

use super::Viewer;
use super::view::{self, time_ago};
use crate::domain::AgentName;
use crate::http::api_error::ApiError;

/// An error as a page: the status and the API's message, in the frame.
pub(crate) struct PageError(ApiError);

impl<E: Into<ApiError>> From<E> for PageError {
    fn from(err: E) -> Self {
        Self(err.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, body) = self.0.into_body();
        let title = status.canonical_reason().unwrap_or("Error");
        let page = view::page(
            title,
            true,
            html! {
                h1 { (title) }
                p class="error" role="alert" { (body.error.message) }
                p { a href="/ui" { "Back to the agents" } }
            },
        );
        (status, page).into_response()
    }
}

pub(super) type Page = Result<Markup, PageError>;

/// What every page may answer besides itself (in `/openapi.json`).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Documentation only: the answers are made by `Viewer` and `PageError`.
pub(crate) enum Refusals {
    /// Not signed in, or the cookie's token no longer verifies: the sign-in page (the cookie
    /// cleared).
    #[response(status = 401, content_type = "text/html")]
    SignIn(String),
    /// The cookie's token lacks the read scope: the sign-in page.
    #[response(status = 403, content_type = "text/html")]
    NoReadScope(String),
    /// Database unavailable: a page saying so.
    #[response(status = 503, content_type = "text/html")]
    Unavailable(String),
}

/// An agent the viewer may see, or 404 (a token limited to other agents learns nothing).
pub(super) fn visible_agent(viewer: &Viewer, name: &str) -> Result<AgentName, PageError> {
    let not_found = || ApiError::not_found(format!("no agent named {name:?}"));
    let agent = AgentName::parse(name).map_err(|_| not_found())?;
    if viewer.allows_agent(agent.as_str()) {
        Ok(agent)
    } else {
        Err(not_found().into())
    }
}

pub(super) fn incident_table(
    incidents: &[Incident],
    now: DateTime<Utc>,
    with_agent: bool,
) -> Markup {
    html! {
        table class="incidents" {
            thead { tr {
                @if with_agent { th { "Agent" } }
                th { "Kind" } th { "Opened" } th { "Resolved" } th { "Summary" } th { "Runs" }
            } }
            tbody {
                @for i in incidents {
                    tr class=(if i.resolved_at.is_none() { "open" } else { "resolved" }) {
                        @if with_agent {
                            td data-label="Agent" { a href=(format!("/ui/agents/{}", i.agent_name)) { (i.agent_name) } }
                        }
                        td data-label="Kind" { span class=(format!("badge {}", i.kind.as_str())) { (i.kind.as_str()) } }
                        td data-label="Opened" { (time_ago(i.opened_at, now)) }
                        td data-label="Resolved" {
                            @if let Some(at) = i.resolved_at { (time_ago(at, now)) } @else { strong { "open" } }
                        }
                        td data-label="Summary" { (i.summary) }
                        td data-label="Runs" { a href=(incident_runs(i)) { "runs" } }
                    }
                }
            }
        }
    }
}

/// The agent's runs around an incident: from an hour before it opened to a minute after it
/// resolved (or now).
fn incident_runs(incident: &Incident) -> String {
    let stamp = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let from = stamp(incident.opened_at - TimeDelta::hours(1));
    let mut href = format!("/ui/agents/{}?from={from}", incident.agent_name);
    if let Some(resolved) = incident.resolved_at {
        href.push_str(&format!("&to={}", stamp(resolved + TimeDelta::minutes(1))));
    }
    href
}

pub(super) fn counts(runs: i64, failures: i64) -> Markup {
    html! {
        (runs) @if runs == 1 { " run" } @else { " runs" }
        @if failures > 0 { ", " span class="failed-count" { (failures) " failed" } }
    }
}
