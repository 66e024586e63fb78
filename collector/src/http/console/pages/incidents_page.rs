//! `/ui/incidents`: the incidents, open ones first.

use std::collections::HashMap;

use agent_sdk::wire::{IncidentKind, Silence};
use axum::extract::State;
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::super::Viewer;
use super::super::view::{self, empty, time, time_ago};
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
    let silences = state
        .store
        .list_silences(now, |patterns| {
            patterns.iter().all(|p| viewer.grant.covers(p))
        })
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
            (silence_section(&silences, &viewer, now))
        },
    ))
}

/// The silences in force and lately ended; for a token that may act, the form that silences and
/// an End button on each in force (`console/actions.rs`).
fn silence_section(silences: &[Silence], viewer: &Viewer, now: DateTime<Utc>) -> Markup {
    html! {
        section class="job" {
            h2 { "Silences" }
            @if silences.is_empty() {
                (empty("None: every incident's alerts are sent."))
            } @else {
                table class="silences" {
                    thead { tr { th { "Agents" } th { "Kinds" } th { "Until" } th { "By" } th { "Note" } th {} } }
                    tbody {
                        @for s in silences {
                            tr class=(if s.active { "open" } else { "resolved" }) {
                                td data-label="Agents" { (s.agents.join(", ")) }
                                td data-label="Kinds" {
                                    @if s.kinds.is_empty() { "every kind" }
                                    @else { (s.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")) }
                                }
                                td data-label="Until" {
                                    @if let Some(ended) = s.ended_at { "ended " (time_ago(ended, now)) }
                                    @else { (time(s.until)) }
                                }
                                td data-label="By" { (s.created_by) }
                                td data-label="Note" { @if let Some(note) = &s.note { (note) } }
                                td {
                                    @if s.active && viewer.can_operate() {
                                        form method="post" action=(format!("/ui/silences/{}/end", s.id)) {
                                            input type="hidden" name="form_key" value=(viewer.form_key());
                                            button type="submit" { "End" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if viewer.can_operate() {
                div class="actions" {
                    form id="silence" method="post" action="/ui/silences" {
                        input type="hidden" name="form_key" value=(viewer.form_key());
                        label { "Agents (names or prefix*, comma-separated) "
                            input type="text" name="agents" required placeholder="nightly_etl, team_a_*"; }
                        label { "For " input type="text" name="for" size="6" required placeholder="2h"; }
                        fieldset class="kinds" {
                            legend { "Kinds (none ticked: every kind)" }
                            @for kind in IncidentKind::ALL {
                                label { input type="checkbox" name="kind" value=(kind.as_str()); " " (kind.as_str()) }
                            }
                        }
                        label { "Note " input type="text" name="note" maxlength="1000" placeholder="why"; }
                        button type="submit" { "Silence" }
                    }
                }
            }
        }
    }
}
