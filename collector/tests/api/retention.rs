//! Retention: backdated runs and metric rows are deleted in batches while pushes go on;
//! the daily summaries and per-metric aggregates stay as they were.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use collector::store::Retention;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Db, TestApp, on_both_backends};

const DAY: Duration = Duration::from_secs(24 * 3600);

async fn old_rows_go_in_batches_while_pushes_continue_and_summaries_stay(db: Db) {
    let app = TestApp::spawn(db).await;
    let now = Utc::now();
    // 30 runs 100 days old, 10 runs 40 days old, 5 recent: each with three metrics.
    for (count, days) in [(30, 100), (10, 40), (5, 0)] {
        for i in 0..count {
            let started = now - TimeDelta::days(days) - TimeDelta::minutes(i + 1);
            let (status, body) = app
                .post_report(&json!({
                    "agent_name": "archive", "run_key": Uuid::new_v4(),
                    "started_at": started.to_rfc3339(),
                    "finished_at": (started + TimeDelta::seconds(2)).to_rfc3339(),
                    "metrics": {"rows": i, "ok": 1, "label": "x"},
                }))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
    }
    let summaries = "select agent_name, cast(day as text), run_count, success_count from agent_daily_summaries order by 1, 2";
    let metric_days = "select agent_name, metric_name, cast(day as text), value_count from agent_metric_daily_summaries order by 1, 2, 3";
    let before: Vec<(String, String, i64, i64)> = app.db.rows(summaries).await;
    let metrics_before: Vec<(String, String, String, i64)> = app.db.rows(metric_days).await;

    let retention = Retention {
        runs: Some(90 * DAY),
        metrics: Some(30 * DAY),
    };
    let store = app.db.store();
    let dry = store.prunable(retention, now).await.unwrap();
    assert_eq!(
        (dry.runs, dry.metrics),
        (30, 120),
        "30 old runs; 40 runs' metrics past 30 days"
    );

    // Pushes go on while old rows are deleted, seven rows a batch.
    let pusher = {
        let (client, url, token) = (app.client.clone(), app.url("/metrics"), app.token.clone());
        tokio::spawn(async move {
            for _ in 0..20 {
                let started = Utc::now() - TimeDelta::seconds(5);
                let status = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({
                        "agent_name": "live", "run_key": Uuid::new_v4(),
                        "started_at": started.to_rfc3339(),
                        "finished_at": (started + TimeDelta::seconds(1)).to_rfc3339(),
                        "metrics": {"n": 1},
                    }))
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(status, StatusCode::CREATED);
            }
        })
    };
    let mut batches = 0;
    loop {
        let pruned = store.prune(retention, now, 1, 7).await.unwrap();
        if pruned.runs + pruned.metrics == 0 {
            break;
        }
        batches += 1;
    }
    pusher.await.unwrap();
    // Seven rows a call per table: a run and its three metric rows are four, so one run a
    // call; 30 old runs take 30 calls.
    assert!(batches >= 5, "deleted in batches: {batches}");

    let (old_runs, mid_runs, recent_runs): (i64, i64, i64) = app
        .db
        .row(&format!(
            "select (select count(*) from agent_runs where agent_name = 'archive' and started_at < '{a}'),
                    (select count(*) from agent_runs where agent_name = 'archive' and started_at >= '{a}' and started_at < '{b}'),
                    (select count(*) from agent_runs where agent_name = 'archive' and started_at >= '{b}')",
            a = (now - TimeDelta::days(90)).format("%Y-%m-%d"),
            b = (now - TimeDelta::days(30)).format("%Y-%m-%d"),
        ))
        .await;
    assert_eq!((old_runs, mid_runs, recent_runs), (0, 10, 5));
    let metrics: i64 = app
        .db
        .scalar("select count(*) from agent_metrics where agent_name = 'archive'")
        .await;
    assert_eq!(metrics, 15, "only the recent runs' metrics stay");
    let live: i64 = app
        .db
        .scalar("select count(*) from agent_runs where agent_name = 'live'")
        .await;
    assert_eq!(live, 20);

    let after: Vec<(String, String, i64, i64)> = app.db.rows(summaries).await;
    let after: Vec<_> = after.into_iter().filter(|r| r.0 == "archive").collect();
    assert_eq!(after, before, "daily summaries are kept");
    let metrics_after: Vec<(String, String, String, i64)> = app.db.rows(metric_days).await;
    let metrics_after: Vec<_> = metrics_after
        .into_iter()
        .filter(|r| r.0 == "archive")
        .collect();
    assert_eq!(
        metrics_after, metrics_before,
        "per-metric aggregates are kept"
    );
}

/// Pushes `count` finished runs of `agent`, `days` old, each with `metrics` metric rows.
async fn old_runs(app: &TestApp, agent: &str, count: i64, days: i64, metrics: usize) {
    let now = Utc::now();
    for i in 0..count {
        let started = now - TimeDelta::days(days) - TimeDelta::minutes(i + 1);
        let values: serde_json::Map<String, serde_json::Value> =
            (0..metrics).map(|m| (format!("m{m}"), json!(m))).collect();
        let (status, body) = app
            .post_report(&json!({
                "agent_name": agent, "run_key": Uuid::new_v4(),
                "started_at": started.to_rfc3339(),
                "finished_at": (started + TimeDelta::seconds(2)).to_rfc3339(),
                "metrics": values,
            }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
}

/// A batch is bounded by the rows it deletes, a run's metric rows counted with it (5 000 runs
/// could carry 5 000 000 metric rows in one transaction before): with 25 rows a batch, runs of
/// ten metrics go two at a time; a run larger than a batch goes alone.
async fn a_batch_of_runs_is_bounded_by_the_rows_it_deletes(db: Db) {
    let app = TestApp::spawn(db).await;
    old_runs(&app, "wide", 5, 100, 10).await;
    let retention = Retention {
        runs: Some(90 * DAY),
        metrics: None,
    };
    let store = app.db.store();
    let mut per_batch = Vec::new();
    loop {
        let pruned = store.prune(retention, Utc::now(), 1, 25).await.unwrap();
        if pruned.runs == 0 {
            break;
        }
        per_batch.push(pruned.runs);
    }
    assert_eq!(per_batch, [2, 2, 1]);
    old_runs(&app, "wider", 1, 100, 30).await;
    assert_eq!(
        store
            .prune(retention, Utc::now(), 1, 25)
            .await
            .unwrap()
            .runs,
        1
    );
    let left: i64 = app.db.scalar("select count(*) from agent_metrics").await;
    assert_eq!(left, 0);
}

/// Replicas prune one at a time: while another holds the turn (its batch's transaction holds
/// the advisory lock), a replica deletes nothing and leaves the rest to the next pass.
///
/// PostgreSQL only: the embedded SQLite backend is one process.
#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn one_replica_prunes_at_a_time(pool: sqlx::PgPool) {
    let app = TestApp::spawn(Db::Postgres(pool.clone())).await;
    old_runs(&app, "archive", 3, 100, 2).await;
    let retention = Retention {
        runs: Some(90 * DAY),
        metrics: Some(30 * DAY),
    };
    let mut other = pool.begin().await.unwrap();
    sqlx::query("select pg_advisory_xact_lock($1)")
        .bind(collector::store::PRUNE_LOCK)
        .execute(&mut *other)
        .await
        .unwrap();
    let store = app.db.store();
    let pruned = store.prune(retention, Utc::now(), 20, 1000).await.unwrap();
    assert_eq!((pruned.runs, pruned.metrics), (0, 0));
    let runs: i64 = app.db.scalar("select count(*) from agent_runs").await;
    assert_eq!(runs, 3);
    other.rollback().await.unwrap();
    let pruned = store.prune(retention, Utc::now(), 20, 1000).await.unwrap();
    assert_eq!(pruned.runs, 3);
}

on_both_backends!(
    old_rows_go_in_batches_while_pushes_continue_and_summaries_stay,
    a_batch_of_runs_is_bounded_by_the_rows_it_deletes,
);
