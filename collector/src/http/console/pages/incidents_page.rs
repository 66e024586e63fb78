//! `/ui/incidents`: the incidents, open ones first.

use std::collections::HashMap;

use axum::extract::State;
use chrono::Utc;
use maud::html;

use super::super::Viewer;
use super::super::view::{self, empty};
use super::{Page, Refusals, incident_table};
use crate::http::AppState;

/// `GET /ui/incidents`: open first, then the latest resolved.
#[utoipa::path(get, path = "/ui/incidents", tag = "console",
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        Refusals,
    ),
    security(("console_cookie" = [])))]
pub(crate) async fn incidents(State(state): State<AppState>, viewer: Viewer) -> Page {
    let now = Utc::now();
    let incidents = state
        .store
        .list_incidents(None, None, &viewer.access(), 200)
        .await?;
    let open = incidents.iter().filter(|i| i.resolved_at.is_none()).count();
    let mut by_agent: HashMap<&str, usize> = HashMap::new();
    for i in incidents.iter().filter(|i| i.resolved_at.is_none()) {
        *by_agent.entry(&i.agent_name).or_default() += 1;
    }
    Ok(view::page(
        "Incidents",
        true,
        html! {
            div class="bar" {
                h1 { "Incidents" }
                p class="summary" { (open) " open, across " (by_agent.len()) " agents" }
            }
            @if incidents.is_empty() {
                (empty("No incident: nothing has been missed, failed, gone stale, overrun or slowed down."))
            } @else {
                (incident_table(&incidents, now, true))
            }
        },
    ))
}
