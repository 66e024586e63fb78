//! `GET /prometheus`: request counts and latencies, runs stored by status, pool usage.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;

use super::AppState;

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide recorder, with latency histograms for every `*_seconds` metric, and every
/// metric of the collector described (its HELP line: what it counts, in which unit).
pub fn handle() -> PrometheusHandle {
    let handle = agent_sdk::telemetry::prometheus(&[("_seconds", LATENCY_BUCKETS)]);
    describe();
    handle
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "http_requests_total",
        Unit::Count,
        "HTTP requests answered, by method, route template and status code"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's arrival to its answer, by method and route template"
    );
    describe_counter!(
        "collector_runs_stored_total",
        Unit::Count,
        "Runs stored for the first time, by status (success, failed)"
    );
    describe_counter!(
        "collector_metrics_stored_total",
        Unit::Count,
        "Metric rows stored with new runs"
    );
    describe_counter!(
        "collector_runs_duplicate_total",
        Unit::Count,
        "Reports whose run_key was stored before: answered with the stored run, nothing written"
    );
    describe_counter!(
        "collector_runs_conflict_total",
        Unit::Count,
        "Reports refused (409) because their agent's run_key holds another report"
    );
    describe_counter!(
        "collector_runs_overdue_total",
        Unit::Count,
        "Runs closed as failed because no result arrived by their deadline"
    );
    describe_counter!(
        "collector_run_starts_total",
        Unit::Count,
        "POST /runs answers, by outcome: created, again (the same claimant), claimed (409)"
    );
    describe_histogram!(
        "collector_batch_size",
        Unit::Count,
        "Runs stored per group-commit transaction of POST /metrics"
    );
    describe_histogram!(
        "collector_ingest_queue_seconds",
        Unit::Seconds,
        "Time a report of POST /metrics waits in its writer's queue before its batch starts"
    );
    describe_counter!(
        "collector_missed_slots_total",
        Unit::Count,
        "Expected slots no run answered within their grace (GET /missed)"
    );
    describe_histogram!(
        "collector_watch_pass_seconds",
        Unit::Seconds,
        "Time a watcher pass takes (expected slots, incidents), this replica's passes only"
    );
    describe_counter!(
        "collector_late_slots_total",
        Unit::Count,
        "Expected slots answered by a run that started more than SLOT_LATE_AFTER after them (GET /late)"
    );
    describe_histogram!(
        "collector_batch_seconds",
        Unit::Seconds,
        "Time a group-commit transaction of POST /metrics takes to store its batch, commit included"
    );
    describe_gauge!(
        "collector_db_pool_connections",
        Unit::Count,
        "Database connections of the pool, by state (open, idle), when last scraped"
    );
    describe_gauge!(
        "collector_db_pool_max_connections",
        Unit::Count,
        "The most database connections the pool may open (DATABASE_MAX_CONNECTIONS)"
    );
}

/// The collector's own metrics, in Prometheus' text format (unauthenticated, as `/health`: no
/// agent data in it; nginx keeps it off the internet).
#[utoipa::path(get, path = "/prometheus", tag = "health",
    responses((status = 200, description = "Requests, runs stored, the database pool", content_type = "text/plain", body = String)))]
pub(super) async fn render(State(state): State<AppState>) -> impl IntoResponse {
    let (open, idle, max) = state.store.pool_usage();
    metrics::gauge!("collector_db_pool_connections", "state" => "open").set(f64::from(open));
    metrics::gauge!("collector_db_pool_connections", "state" => "idle").set(idle as f64);
    metrics::gauge!("collector_db_pool_max_connections").set(f64::from(max));
    state.prometheus.run_upkeep();
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.prometheus.render(),
    )
}

/// Counts every routed request and times it, labelled by route template (not raw path, so
/// `/runs/{id}` stays one series).
pub(super) async fn track(matched: Option<MatchedPath>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let path = matched.map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().to_string();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method.clone(), "path" => path.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "path" => path)
        .record(start.elapsed().as_secs_f64());
    response
}
