//! `/ui/audit`: every action operators took on jobs and runs, newest first.

use axum::extract::State;
use chrono::Utc;
use maud::html;

use super::super::Viewer;
use super::super::view::{self, empty, time_ago};
use super::{Page, Refusals};
use crate::http::AppState;

/// Entries the page lists.
const LISTED: u64 = 200;

/// `GET /ui/audit`: who paused, resumed, ran or cancelled what, when and why.
#[utoipa::path(get, path = "/ui/audit", tag = "console",
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        Refusals,
    ),
    security(("console_cookie" = [])))]
pub(crate) async fn audit(State(state): State<AppState>, viewer: Viewer) -> Page {
    let entries = state
        .store
        .list_audit(&viewer.access(), None, None, LISTED)
        .await?;
    let now = Utc::now();
    Ok(view::page(
        "Audit",
        true,
        html! {
            div class="bar" { h1 { "Audit" } }
            @if entries.is_empty() {
                (empty("No action taken yet: pauses, runs asked for and cancels are listed here."))
            } @else {
                table class="audit" {
                    thead { tr { th { "When" } th { "Who" } th { "Did" } th { "Job or silence" } th { "Run" } th { "Note" } } }
                    tbody {
                        @for e in &entries {
                            tr {
                                td data-label="When" { (time_ago(e.at, now)) }
                                td data-label="Who" { (e.actor) }
                                td data-label="Did" { span class=(format!("badge {}", e.action.as_str())) { (e.action.as_str()) } }
                                td data-label="Job" {
                                    @if let Some(job) = &e.job { a href=(format!("/ui/agents/{job}")) { (job) } }
                                    @else if let Some(id) = e.silence_id { "silence #" (id) }
                                }
                                td data-label="Run" { @if let Some(key) = e.run_key { code { (key) } } }
                                td data-label="Note" { @if let Some(note) = &e.note { (note) } }
                            }
                        }
                    }
                }
            }
        },
    ))
}
