//! `/ui/runs/{id}`: one run, its error and its metrics.

use agent_sdk::wire::{MetricValue, RunStatus};
use axum::extract::State;
use chrono::Utc;
use maud::html;

use super::super::view::{self, empty, time, time_ago};
use super::super::{Viewer, chart};
use super::{Page, Refusals};
use crate::http::AppState;
use crate::http::api_error::ApiError;
use crate::http::extract::ApiPath;

/// `GET /ui/runs/{id}`: everything about one run.
#[utoipa::path(get, path = "/ui/runs/{id}", tag = "console",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 404, description = "No such run visible to this token", content_type = "text/html", body = String),
        Refusals,
    ),
    security(("console_cookie" = [])))]
pub(crate) async fn run(
    State(state): State<AppState>,
    viewer: Viewer,
    ApiPath(id): ApiPath<String>,
) -> Page {
    let not_found = || ApiError::not_found(format!("no run with id {id:?}"));
    let id: i64 = id.parse().map_err(|_| not_found())?;
    let detail = state.store.get_run(id).await?.ok_or_else(not_found)?;
    if !viewer.allows_agent(&detail.run.agent_name) {
        return Err(not_found().into());
    }
    let run = &detail.run;
    let now = Utc::now();
    let agent_href = format!("/ui/agents/{}", run.agent_name);
    Ok(view::page(
        &format!("Run #{id}"),
        true,
        html! {
            div class="bar" {
                h1 { "Run #" (id) " of " a href=(agent_href) { (run.agent_name) } " " (view::status(run.status)) }
            }
            dl class="facts" {
                dt { "Started" } dd { (time_ago(run.started_at, now)) }
                dt { "Finished" } dd { @if let Some(at) = run.finished_at { (time_ago(at, now)) } @else { "—" } }
                dt { "Duration" } dd { @if let Some(ms) = run.duration_ms { (chart::duration(ms)) } @else { "—" } }
                dt { "Trigger" } dd { @if let Some(t) = run.trigger { (t.as_str()) } @else { "—" } }
                dt { "Slot" } dd { @if let Some(at) = run.scheduled_for { (time(at)) } @else { "—" } }
                dt { "Host" } dd { @if let Some(h) = &run.host { (h) } @else { "—" } }
                dt { "Run key" } dd { @if let Some(k) = run.run_key { code { (k) } } @else { "—" } }
                dt { "Received" } dd { (time_ago(run.received_at, now)) }
            }
            @if run.status == RunStatus::Running && viewer.can_operate() {
                section class="job" {
                    h2 { "Cancel" }
                    form id="cancel" method="post" action=(format!("/ui/runs/{id}/cancel")) {
                        input type="hidden" name="form_key" value=(viewer.form_key());
                        label { "Note " input type="text" name="note" maxlength="1000" placeholder="why"; }
                        label { input type="checkbox" name="confirm" value="yes" required; " Stop this run now: its process is killed" }
                        button type="submit" class="danger" { "Cancel run" }
                    }
                }
            }
            @if let Some(error) = &run.error_message {
                section { h2 { "Error" } pre class="error-message" { (error) } }
            }
            section {
                h2 { "Metrics (" (detail.metrics.len()) ")" }
                @if detail.metrics.is_empty() { (empty("This run reported no metric.")) } @else {
                    table class="metrics" {
                        thead { tr { th { "Name" } th { "Value" } } }
                        tbody {
                            @for m in &detail.metrics {
                                tr {
                                    td data-label="Name" { (m.metric_name) }
                                    td data-label="Value" class=(value_class(&m.value)) { (value_text(&m.value)) }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

fn value_class(value: &MetricValue) -> &'static str {
    match value {
        MetricValue::Number(_) => "number",
        MetricValue::Bool(_) => "bool",
        MetricValue::Text(_) => "text",
    }
}

/// A metric's value as stored: numbers as their literal (0.1 stays 0.1), text as text.
fn value_text(value: &MetricValue) -> &str {
    match value {
        MetricValue::Number(n) => n.as_str(),
        MetricValue::Bool(true) => "true",
        MetricValue::Bool(false) => "false",
        MetricValue::Text(t) => t,
    }
}
