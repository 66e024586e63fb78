//! `/ui/agents/{name}`: an agent's state, runs, incidents, expectation and metric charts.

use std::collections::BTreeMap;

use agent_sdk::wire::{Expectation, JobView, MetricPoint, MetricValue, RunStatus};
use axum::extract::State;
use chrono::{DateTime, Days, TimeDelta, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::super::view::{self, empty, time, time_ago};
use super::super::{Viewer, chart};
use super::{Page, Refusals, counts, incident_table, visible_agent};
use crate::domain::AgentPattern;
use crate::http::AppState;
use crate::http::api_error::ApiError;
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::params;
use crate::store::{AgentAccess, MetricDay, MetricFilter, RunFilter};

/// Runs per page on the agent page.
const RUNS_PER_PAGE: u64 = 25;
/// Days of a metric chart.
const CHART_DAYS: u64 = 30;
/// Raw points a metric chart shows at most (the latest).
const CHART_POINTS: u64 = 200;
/// Incidents and missed slots listed.
const LISTED: u64 = 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentQuery {
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
        (status = 404, description = "No such agent visible to this token: none with a run, an expectation or an incident", content_type = "text/html", body = String),
        Refusals,
    ),
    security(("console_cookie" = [])))]
pub(crate) async fn agent(
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
                format!("{s:?}; expected running, success, failed or cancelled"),
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
    // A job a scheduler published: its pause, and the operator's forms.
    let job = store.list_jobs(&only, now).await?.pop();
    let incidents = store
        .list_incidents(None, Some(&agent), &only, LISTED)
        .await?;
    let missed = store.list_missed(Some(&agent), &only, LISTED).await?;
    let runs = store
        .list_runs(&RunFilter {
            agent_name: Some(agent.clone()),
            run_key: None,
            status,
            from,
            to,
            cursor: params::cursor(params.cursor.as_deref())?,
            limit: RUNS_PER_PAGE,
            access: only.clone(),
        })
        .await?;
    // An agent nobody knows (no run, running or stored, no expectation, no incident) is not a
    // page, as `GET /runs?agent_name=` of it is empty: 404, the same as an agent out of sight.
    let unfiltered = status.is_none() && from.is_none() && to.is_none() && params.cursor.is_none();
    if unfiltered
        && overview.is_none()
        && expectations.is_empty()
        && incidents.is_empty()
        && runs.runs.is_empty()
    {
        return Err(ApiError::not_found(format!("no agent named {name:?}")).into());
    }
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
                    dt { "Last run" } dd { (view::last_run(o.last_status, o.last_run_at, now)) }
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
            @if let Some(job) = &job { (job_controls(job, &viewer, now)) }
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
                    @for s in [RunStatus::Failed, RunStatus::Running, RunStatus::Success, RunStatus::Cancelled] {
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

/// A job's pause, and for a token that may act, the forms that pause or resume it and run it
/// now (`console/actions.rs`).
fn job_controls(job: &JobView, viewer: &Viewer, now: DateTime<Utc>) -> Markup {
    let action = |verb: &str| format!("/ui/jobs/{}/{verb}", job.job);
    html! {
        section class="job" {
            h2 { "Job" }
            @if let Some(pause) = &job.pause {
                p class="paused" role="status" {
                    strong { "Paused" } " by " (pause.paused_by) " " (time_ago(pause.since, now))
                    @if let Some(until) = pause.until { ", until " (time(until)) } @else { ", until resumed" }
                    @if let Some(note) = &pause.note { ": " (note) }
                }
            } @else {
                p { "Runs on its schedule." }
            }
            @if viewer.can_operate() {
                div class="actions" {
                    @if job.pause.is_some() {
                        form id="resume" method="post" action=(action("resume")) {
                            input type="hidden" name="form_key" value=(viewer.form_key());
                            label { "Note " input type="text" name="note" maxlength="1000"; }
                            button type="submit" { "Resume" }
                        }
                    } @else {
                        form id="pause" method="post" action=(action("pause")) {
                            input type="hidden" name="form_key" value=(viewer.form_key());
                            label { "Note " input type="text" name="note" maxlength="1000" placeholder="why"; }
                            label { "For " input type="text" name="for" size="6" placeholder="2h"; }
                            button type="submit" { "Pause" }
                        }
                    }
                    form id="run-now" method="post" action=(action("run")) {
                        input type="hidden" name="form_key" value=(viewer.form_key());
                        label { "Params (JSON, over the job's) "
                            textarea name="params" rows="2" spellcheck="false" placeholder=r#"{"day": "2026-12-01"}"# {} }
                        label { "Note " input type="text" name="note" maxlength="1000"; }
                        button type="submit" { "Run now" }
                    }
                }
            }
        }
    }
}
