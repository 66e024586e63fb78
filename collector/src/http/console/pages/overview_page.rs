//! `/ui`: every agent, problems first, with its last fortnight as a sparkline.

use std::collections::BTreeMap;

use agent_sdk::wire::{AgentOverview, AgentState, RunStatus};
use axum::extract::State;
use chrono::{DateTime, Days, NaiveDate, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::super::view::{self, age, empty, time_ago};
use super::super::{Viewer, chart};
use super::{Page, Refusals, counts};
use crate::http::AppState;
use crate::http::api_error::ApiError;
use crate::http::extract::ApiQuery;
use crate::store::RunDay;

/// Days a sparkline shows, today included.
const SPARK_DAYS: u16 = 14;

/// One row of the overview: an agent that has reported or is expected (`GET /agents`' own).
struct Row {
    overview: AgentOverview,
    next_expected: Option<DateTime<Utc>>,
    days: Vec<RunDay>,
}

impl Row {
    /// Problems first: the order of `AgentState::of`; then a last run that failed (before
    /// the watcher's next pass opens `failing` on it); then running, never ran, ok.
    fn rank(&self) -> u8 {
        match self.overview.state {
            AgentState::Failing => 0,
            AgentState::Overdue => 1,
            AgentState::Missed => 2,
            AgentState::Stale => 3,
            AgentState::Slow => 4,
            _ if self.overview.last_status == Some(RunStatus::Failed) => 5,
            AgentState::Running => 6,
            AgentState::New => 7,
            AgentState::Ok => 8,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OverviewQuery {
    /// Only agents whose name contains this (any case).
    q: Option<String>,
}

/// `GET /ui`: one row per agent the token may see, problems first.
#[utoipa::path(get, path = "/ui", tag = "console",
    params(("q" = Option<String>, Query, description = "Only agents whose name contains this, any case")),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 400, description = "A bad parameter: a page saying which", content_type = "text/html", body = String),
        Refusals,
    ),
    security(("console_cookie" = [])))]
pub(crate) async fn overview(
    State(state): State<AppState>,
    viewer: Viewer,
    params: Result<ApiQuery<OverviewQuery>, ApiError>,
) -> Page {
    let ApiQuery(params) = params?;
    let filter = params.q.unwrap_or_default();
    let needle = filter.trim().to_lowercase();
    let now = Utc::now();
    let access = viewer.access();
    let first_day = now.date_naive() - Days::new(u64::from(SPARK_DAYS) - 1);
    // The agents with the days their sparklines draw, and the expectations, read at once.
    let ((agents, mut days), expectations) = tokio::try_join!(
        state
            .store
            .agents_overview_with_days(now.date_naive(), first_day, &access),
        state.store.list_expectations(&access, now),
    )?;
    // Every expected agent is among the agents (an expectation stored between the two reads
    // shows at the next load).
    let mut next_expected: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    for expectation in &expectations {
        if let Some(slot) = expectation.next_slot {
            next_expected
                .entry(expectation.agent_name.as_str())
                .and_modify(|at| *at = Ord::min(*at, slot))
                .or_insert(slot);
        }
    }
    let mut rows: Vec<Row> = agents
        .into_iter()
        .filter(|o| needle.is_empty() || o.agent_name.to_lowercase().contains(&needle))
        .map(|overview| Row {
            next_expected: next_expected.get(overview.agent_name.as_str()).copied(),
            days: days.remove(&overview.agent_name).unwrap_or_default(),
            overview,
        })
        .collect();
    rows.sort_by(|a, b| {
        a.rank()
            .cmp(&b.rank())
            .then_with(|| a.overview.agent_name.cmp(&b.overview.agent_name))
    });
    let problems = rows.iter().filter(|r| r.rank() <= 5).count();
    Ok(view::page(
        "Agents",
        true,
        html! {
            div class="bar" {
                h1 { "Agents" }
                p class="summary" {
                    (rows.len()) " agents"
                    @if problems > 0 { ", " strong class="problem" { (problems) " with problems" } }
                }
                form class="filter" method="get" action="/ui" role="search" {
                    input type="search" name="q" value=(filter) placeholder="Filter by name"
                        aria-label="Filter agents by name";
                    button type="submit" { "Filter" }
                }
            }
            @if rows.is_empty() {
                (empty(if needle.is_empty() {
                    "No agent has reported yet, and none is expected."
                } else {
                    "No agent matches."
                }))
            } @else {
                table class="agents" {
                    thead { tr {
                        th { "Agent" } th { "State" } th { "Last run" } th { "Last success" }
                        th { "Next expected" } th { "Today" } th { "7 days" } th { "Duration per day" }
                    } }
                    tbody {
                        @for row in &rows { (overview_row(row, first_day, now)) }
                    }
                }
            }
        },
    ))
}

fn overview_row(row: &Row, first_day: NaiveDate, now: DateTime<Utc>) -> Markup {
    let o = &row.overview;
    let href = format!("/ui/agents/{}", o.agent_name);
    html! {
        tr class=(format!("agent {}", view::state_name(o.state))) {
            td data-label="Agent" { a href=(href) { (o.agent_name) } }
            td data-label="State" {
                (view::state(Some(o.state)))
                @if let Some(since) = o.running_since {
                    " " span class="age" { "since " (age(since, now).trim_end_matches(" ago")) }
                }
            }
            td data-label="Last run" { (view::last_run(o.last_status, o.last_run_at, now)) }
            td data-label="Last success" {
                @if let Some(at) = o.last_success_at { (time_ago(at, now)) } @else { "never" }
            }
            td data-label="Next expected" {
                @if let Some(at) = row.next_expected { (time_ago(at, now)) }
                @else { "—" }
            }
            td data-label="Today" { (counts(o.runs_today, o.failures_today)) }
            td data-label="7 days" { (counts(o.runs_7d, o.failures_7d)) }
            td data-label="Duration per day" {
                @if row.days.is_empty() { "—" } @else { (chart::sparkline(&row.days, first_day, SPARK_DAYS)) }
            }
        }
    }
}
