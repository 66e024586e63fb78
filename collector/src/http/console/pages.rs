//! The console's pages: overview, agent, run, incidents. Each reads what the API's endpoints
//! read (the daily summaries, the indexes of runs and metrics, the per-metric daily
//! aggregates), filtered by the signed-in token's agents.

use std::collections::{BTreeMap, HashMap};

use agent_sdk::wire::{
    AgentOverview, AgentState, Expectation, Incident, MetricPoint, MetricValue, RunStatus,
};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Days, NaiveDate, TimeDelta, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::view::{self, age, empty, time, time_ago};
use super::{Viewer, chart};
use crate::domain::{AgentName, AgentPattern};
use crate::http::AppState;
use crate::http::api_error::ApiError;
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::params;
use crate::store::{AgentAccess, MetricDay, MetricFilter, RunDay, RunFilter};

/// Days a sparkline shows, today included.
const SPARK_DAYS: u16 = 14;
/// Runs per page on the agent page.
const RUNS_PER_PAGE: u64 = 25;
/// Days of a metric chart.
const CHART_DAYS: u64 = 30;
/// Raw points a metric chart shows at most (the latest).
const CHART_POINTS: u64 = 200;
/// Incidents and missed slots listed.
const LISTED: u64 = 20;

/// An error as a page: the status and the API's message, in the frame.
pub(super) struct PageError(ApiError);

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

type Page = Result<Markup, PageError>;

/// What every page may answer besides itself (in `/openapi.json`).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Documentation only: the answers are made by `Viewer` and `PageError`.
pub(super) enum Refusals {
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
fn visible_agent(viewer: &Viewer, name: &str) -> Result<AgentName, PageError> {
    let not_found = || ApiError::not_found(format!("no agent named {name:?}"));
    let agent = AgentName::parse(name).map_err(|_| not_found())?;
    if viewer.allows_agent(agent.as_str()) {
        Ok(agent)
    } else {
        Err(not_found().into())
    }
}

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
            .is_some_and(|o| o.last_status == RunStatus::Failed);
        match self.state() {
            Some(AgentState::Failing) => 0,
            Some(AgentState::Overdue) => 1,
            Some(AgentState::Missed) => 2,
            Some(AgentState::Stale) => 3,
            Some(AgentState::Slow) => 4,
            _ if last_failed => 5,
            Some(AgentState::Running) => 6,
            None => 7,
            Some(AgentState::Ok) => 8,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OverviewQuery {
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
pub(super) async fn overview(
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
                td data-label="Last run" { (view::status(o.last_status)) " " (time_ago(o.last_run_at, now)) }
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

fn counts(runs: i64, failures: i64) -> Markup {
    html! {
        (runs) @if runs == 1 { " run" } @else { " runs" }
        @if failures > 0 { ", " span class="failed-count" { (failures) " failed" } }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AgentQuery {
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
}

/// `GET /ui/agents/{name}`: the agent's state, schedule, incidents, metric charts and runs.
#[utoipa::path(get, path = "/ui/agents/{name}", tag = "console",
    params(
        ("name" = String, Path, description = "The agent"),
        ("status" = Option<RunStatus>, Query, description = "Only runs with this status"),
        ("from" = Option<String>, Query, description = "Runs started at or after, RFC 3339"),
        ("to" = Option<String>, Query, description = "Runs started before, RFC 3339"),
        ("cursor" = Option<String>, Query, description = "The `older` link's cursor"),
    ),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 400, description = "A bad parameter: a page saying which", content_type = "text/html", body = String),
        (status = 404, description = "No such agent visible to this token", content_type = "text/html", body = String),
        Refusals,
    ),
    security(("console_cookie" = [])))]
pub(super) async fn agent(
    State(state): State<AppState>,
    viewer: Viewer,
    ApiPath(name): ApiPath<String>,
    params: Result<ApiQuery<AgentQuery>, ApiError>,
) -> Page {
    let agent = visible_agent(&viewer, &name)?;
    let ApiQuery(params) = params?;
    let status = match params.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            ApiError::bad_param(
                "status",
                format!("{s:?}; expected running, success or failed"),
            )
        })?),
        None => None,
    };
    let (from, to) = params::time_range(params.from.as_deref(), params.to.as_deref())?;
    let now = Utc::now();
    let today = now.date_naive();
    // Only this agent (the viewer may see it: checked above).
    let only = AgentAccess::new(Some(&[AgentPattern::Exact(agent.as_str().to_owned())]));
    let store = &state.store;
    let overview = store.agents_overview(today, &only).await?.pop();
    let expectations = store.list_expectations(&only, now).await?;
    let incidents = store
        .list_incidents(None, Some(&agent), &only, LISTED)
        .await?;
    let missed = store.list_missed(Some(&agent), &only, LISTED).await?;
    let runs = store
        .list_runs(&RunFilter {
            agent_name: Some(agent.clone()),
            status,
            from,
            to,
            cursor: params::cursor(params.cursor.as_deref())?,
            limit: RUNS_PER_PAGE,
            access: only.clone(),
        })
        .await?;
    let first_day = today - Days::new(CHART_DAYS - 1);
    let days = store.metric_days(&agent, first_day).await?;
    let mut by_metric: BTreeMap<&str, Vec<&MetricDay>> = BTreeMap::new();
    for day in &days {
        by_metric.entry(&day.metric_name).or_default().push(day);
    }
    let mut charts = Vec::with_capacity(by_metric.len());
    for (metric, days) in &by_metric {
        let page = store
            .list_metrics(&MetricFilter {
                agent_name: Some(agent.clone()),
                metric_name: crate::domain::MetricName::parse((*metric).to_owned()).ok(),
                from: Some(now - TimeDelta::days(CHART_DAYS as i64)),
                to: None,
                cursor: None,
                limit: CHART_POINTS,
                access: only.clone(),
            })
            .await?;
        let points: Vec<(DateTime<Utc>, f64)> = page
            .metrics
            .iter()
            .filter_map(|p| numeric(p).map(|v| (p.recorded_at, v)))
            .collect();
        charts.push((
            *metric,
            chart::daily_chart(metric, days, first_day, today),
            chart::recent_chart(metric, &points),
        ));
    }
    let status_link = |s: Option<RunStatus>| {
        let mut href = format!("/ui/agents/{}", agent.as_str());
        if let Some(s) = s {
            href.push_str("?status=");
            href.push_str(s.as_str());
        }
        href
    };
    Ok(view::page(
        agent.as_str(),
        true,
        html! {
            div class="bar" {
                h1 { (agent.as_str()) " " (view::state(overview.as_ref().map(|o| o.state))) }
            }
            @if let Some(o) = &overview {
                dl class="facts" {
                    dt { "Last run" } dd { (view::status(o.last_status)) " " (time_ago(o.last_run_at, now)) }
                    dt { "Last success" } dd { @if let Some(at) = o.last_success_at { (time_ago(at, now)) } @else { "never" } }
                    dt { "Today" } dd { (counts(o.runs_today, o.failures_today)) }
                    dt { "7 days" } dd { (counts(o.runs_7d, o.failures_7d)) }
                    @if let Some(since) = o.running_since {
                        dt { "Running" } dd { (o.running) " since " (time_ago(since, now)) }
                    }
                }
            }
            section {
                h2 { "Schedule" }
                @if expectations.is_empty() {
                    (empty("No schedule or expectation: the platform cannot say when this agent should run."))
                } @else {
                    ul class="plain" { @for e in &expectations { li { (expectation(e, now)) } } }
                }
            }
            section {
                h2 { "Incidents" }
                @if incidents.is_empty() { (empty("None.")) } @else { (incident_table(&incidents, now, false)) }
            }
            @if !missed.is_empty() {
                section {
                    h2 { "Missed slots" }
                    ul class="plain" {
                        @for m in &missed {
                            li { "slot " (time(m.slot)) ", seen missed " (time_ago(m.detected_at, now)) }
                        }
                    }
                }
            }
            section {
                h2 { "Metrics, last " (CHART_DAYS) " days" }
                @if charts.is_empty() {
                    (empty("No numeric metric in the last 30 days."))
                } @else {
                    p class="hint" {
                        "Left: each day's minimum to maximum (band) and average (line). "
                        "Right: the latest " (CHART_POINTS) " values at most. Hover for figures."
                    }
                    @for (metric, daily, recent) in &charts {
                        figure class="metric" {
                            figcaption { (metric) }
                            div class="pair" { (daily) (recent) }
                        }
                    }
                }
            }
            section {
                h2 { "Runs" }
                nav class="tabs" {
                    a href=(status_link(None)) aria-current=[status.is_none().then_some("page")] { "all" }
                    @for s in [RunStatus::Failed, RunStatus::Running, RunStatus::Success] {
                        a href=(status_link(Some(s))) aria-current=[(status == Some(s)).then_some("page")] { (s.as_str()) }
                    }
                }
                @if runs.runs.is_empty() {
                    (empty("No run here."))
                } @else {
                    table class="runs" {
                        thead { tr { th { "Run" } th { "Status" } th { "Started" } th { "Duration" } th { "Trigger" } th { "Error" } } }
                        tbody {
                            @for run in &runs.runs {
                                tr {
                                    td data-label="Run" { a href=(format!("/ui/runs/{}", run.id)) { "#" (run.id) } }
                                    td data-label="Status" { (view::status(run.status)) }
                                    td data-label="Started" { (time_ago(run.started_at, now)) }
                                    td data-label="Duration" { @if let Some(ms) = run.duration_ms { (chart::duration(ms)) } @else { "—" } }
                                    td data-label="Trigger" { @if let Some(t) = run.trigger { (t.as_str()) } @else { "—" } }
                                    td data-label="Error" class="error-line" {
                                        @if let Some(e) = &run.error_message { (e.lines().next().unwrap_or_default()) }
                                    }
                                }
                            }
                        }
                    }
                }
                p class="pager" {
                    @if params.cursor.is_some() { a href=(status_link(status)) { "← newest" } " " }
                    @if let Some(cursor) = &runs.next_cursor {
                        a href=(older_link(&status_link(status), cursor, status.is_some())) { "older →" }
                    }
                }
            }
        },
    ))
}

fn older_link(base: &str, cursor: &str, has_query: bool) -> String {
    format!("{base}{}cursor={cursor}", if has_query { "&" } else { "?" })
}

/// A metric point as a number to draw: numbers as stored, booleans as 1/0, text not drawn.
fn numeric(point: &MetricPoint) -> Option<f64> {
    match &point.value {
        MetricValue::Number(n) => Some(n.to_f64()).filter(|v| v.is_finite()),
        MetricValue::Bool(b) => Some(f64::from(u8::from(*b))),
        MetricValue::Text(_) => None,
    }
}

fn expectation(e: &Expectation, now: DateTime<Utc>) -> Markup {
    html! {
        @if let (Some(cron), Some(tz)) = (&e.cron, &e.timezone) {
            code { (cron) } " in " (tz)
        } @else if let Some(every) = &e.every {
            "every " (every)
        }
        ", grace " (e.grace) " (" (e.source.as_str()) ")"
        @if let Some(next) = e.next_slot { "; next " (time_ago(next, now)) }
    }
}

fn incident_table(incidents: &[Incident], now: DateTime<Utc>, with_agent: bool) -> Markup {
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

/// `GET /ui/runs/{id}`: everything about one run.
#[utoipa::path(get, path = "/ui/runs/{id}", tag = "console",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 404, description = "No such run visible to this token", content_type = "text/html", body = String),
        Refusals,
    ),
    security(("console_cookie" = [])))]
pub(super) async fn run(
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

/// `GET /ui/incidents`: open first, then the latest resolved.
#[utoipa::path(get, path = "/ui/incidents", tag = "console",
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        Refusals,
    ),
    security(("console_cookie" = [])))]
pub(super) async fn incidents(State(state): State<AppState>, viewer: Viewer) -> Page {
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
