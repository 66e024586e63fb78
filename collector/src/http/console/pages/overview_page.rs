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

/// One row of the overview: an agent that has reported, or one only expected so far.
struct Row {
    name: String,
    overview: Option<AgentOverview>,
    next_expected: Option<DateTime<Utc>>,
    days: Vec<RunDay>,
}

impl Row {
    fn new(name: &str, overview: Option<AgentOverview>) -> Self {
        Self {
            name: name.to_owned(),
            overview,
            next_expected: None,
            days: Vec::new(),
        }
    }

    fn state(&self) -> Option<AgentState> {
        self.overview.as_ref().map(|o| o.state)
    }

    /// Problems first: the order of `AgentState::of`; then a last run that failed (before
    /// the watcher's next pass opens `failing` on it); then running, never ran, ok.
    fn rank(&self) -> u8 {
        let last_failed = self
            .overview
            .as_ref()
            .is_some_and(|o| o.last_status == Some(RunStatus::Failed));
        match self.state() {
            Some(AgentState::Failing) => 0,
            Some(AgentState::Overdue) => 1,
            Some(AgentState::Missed) => 2,
            Some(AgentState::Stale) => 3,
            Some(AgentState::Slow) => 4,
            _ if last_failed => 5,
            Some(AgentState::Running) => 6,
            None | Some(AgentState::New) => 7,
            Some(AgentState::Ok) => 8,
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
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for overview in agents {
        rows.insert(
            overview.agent_name.clone(),
            Row::new(&overview.agent_name.clone(), Some(overview)),
        );
    }
    for expectation in &expectations {
        let row = rows
            .entry(expectation.agent_name.clone())
            .or_insert_with(|| Row::new(&expectation.agent_name, None));
        row.next_expected = match (row.next_expected, expectation.next_slot) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    let mut rows: Vec<Row> = rows
        .into_values()
        .filter(|row| needle.is_empty() || row.name.to_lowercase().contains(&needle))
        .collect();
    for row in &mut rows {
        row.days = days.remove(&row.name).unwrap_or_default();
    }
    rows.sort_by(|a, b| a.rank().cmp(&b.rank()).then_with(|| a.name.cmp(&b.name)));
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
    let href = format!("/ui/agents/{}", row.name);
    html! {
        tr class=(format!("agent {}", row.state().map_or("new", view::state_name))) {
            td data-label="Agent" { a href=(href) { (row.name) } }
            td data-label="State" {
                (view::state(row.state()))
                @if let Some(since) = row.overview.as_ref().and_then(|o| o.running_since) {
                    " " span class="age" { "since " (age(since, now).trim_end_matches(" ago")) }
                }
            }
            @if let Some(o) = &row.overview {
                td data-label="Last run" { (view::last_run(o.last_status, o.last_run_at, now)) }
                td data-label="Last success" {
                    @if let Some(at) = o.last_success_at { (time_ago(at, now)) } @else { "never" }
                }
            } @else {
                td data-label="Last run" { "never" }
                td data-label="Last success" { "never" }
            }
            td data-label="Next expected" {
                @if let Some(at) = row.next_expected { (time_ago(at, now)) }
                @else { "—" }
            }
            @if let Some(o) = &row.overview {
                td data-label="Today" { (counts(o.runs_today, o.failures_today)) }
                td data-label="7 days" { (counts(o.runs_7d, o.failures_7d)) }
            } @else {
                td data-label="Today" { "0" }
                td data-label="7 days" { "0" }
            }
            td data-label="Duration per day" {
                @if row.days.is_empty() { "—" } @else { (chart::sparkline(&row.days, first_day, SPARK_DAYS)) }
            }
        }
    }
}
