//! The summaries on both backends: the same reports, starts, duplicates, late and overdue runs
//! give the same rows (the rules are written once per backend, and held to each other here).

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Db, TestApp, report_at};
use crate::summaries::at;

/// The same reports, starts, duplicates, late and overdue runs on both backends give the same
/// summaries, row for row: the rules are written once per backend (`sql/postgres/daily.sql`
/// and `latest.sql`; `sql/sqlite/daily_summaries.sql`, `agents.sql` and `runs/metric_day.rs`),
/// and held to each other here.
#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn both_backends_summarise_the_same_reports_alike(pool: sqlx::PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("summaries.db"))
        .create_if_missing(true)
        .foreign_keys(true);
    let sqlite = sqlx::sqlite::SqlitePoolOptions::new()
        .connect_with(options)
        .await
        .unwrap();
    collector::store::SQLITE_MIGRATOR
        .run(&sqlite)
        .await
        .unwrap();
    let mut seen = Vec::new();
    for db in [Db::Postgres(pool), Db::Sqlite(sqlite)] {
        let app = TestApp::spawn(db).await;
        summarise_a_busy_fortnight(&app).await;
        seen.push(summaries_of(&app).await);
    }
    let (postgres, sqlite) = (&seen[0], &seen[1]);
    assert!(
        !postgres.0.is_empty() && !postgres.1.is_empty() && !postgres.2.is_empty(),
        "{postgres:?}"
    );
    assert_eq!(postgres.0, sqlite.0, "agent_daily_summaries");
    assert_eq!(postgres.1, sqlite.1, "agent_metric_daily_summaries");
    assert_eq!(postgres.2, sqlite.2, "agents");
}

/// Every shape of input the summaries count: days, failures, ties, decimals, text metrics,
/// repeated keys, a batch, late reports, a run closed as overdue and one corrected by its
/// late result.
async fn summarise_a_busy_fortnight(app: &TestApp) {
    let day = at("2026-03-01T00:00:00Z");
    for i in 0..40i64 {
        let agent = ["alpha", "beta", "gamma"][(i % 3) as usize];
        let started = day + TimeDelta::hours(i * 7) + TimeDelta::milliseconds(i * 37);
        let mut body = report_at(agent, started, 1 + i % 5);
        body["run_key"] = json!(Uuid::new_v4());
        body["metrics"] = json!({});
        if i % 4 == 0 {
            body["error"] = json!(format!("failure {i}"));
        }
        let metrics = format!(
            r#""metrics":{{"cost":{}.{:02},"items":{},"model":"m{}"}}"#,
            i % 7,
            (i * 13) % 100,
            i * 3,
            i % 2
        );
        let raw = body.to_string().replace(r#""metrics":{}"#, &metrics);
        let (status, response) = app
            .post_raw(&raw, "application/json", Some(&app.token))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{raw}: {response}");
        if i % 9 == 0 {
            // The same report again: counted once.
            let (status, _) = app
                .post_raw(&raw, "application/json", Some(&app.token))
                .await;
            assert_eq!(status, StatusCode::OK);
        }
    }
    // A late report, earlier than the day's latest run, and a tie on started_at.
    app.post_report(&report_at("alpha", day + TimeDelta::minutes(5), 9))
        .await;
    app.post_report(&report_at("beta", day + TimeDelta::hours(7), 2))
        .await;
    // A batch with a repeated key inside.
    let repeated = report_at("delta", day + TimeDelta::hours(30), 4);
    let (status, _) = app
        .post_batch(vec![
            repeated.clone(),
            repeated,
            report_at("delta", day + TimeDelta::hours(31), 6),
        ])
        .await;
    assert_eq!(status, StatusCode::OK);
    // Two runs past their deadline: one stays failed, one is corrected by its late result.
    let started = day + TimeDelta::days(4);
    let keys = [Uuid::new_v4(), Uuid::new_v4()];
    for key in keys {
        let start = json!({"agent_name": "epsilon", "run_key": key,
            "started_at": started.to_rfc3339(), "claimant": "s1", "trigger": "schedule",
            "deadline": (started + TimeDelta::minutes(5)).to_rfc3339()});
        assert_eq!(app.post_start(&start).await.0, StatusCode::CREATED);
    }
    app.push("epsilon", started - TimeDelta::minutes(1), None)
        .await;
    // Closed by this call or by the server's own pass, whichever comes first.
    app.db.store().close_overdue(Utc::now()).await.unwrap();
    let running: i64 = app
        .db
        .scalar("select count(*) from agent_runs where status = 'running'")
        .await;
    assert_eq!(running, 0);
    let result = json!({"agent_name": "epsilon", "run_key": keys[1],
        "started_at": started.to_rfc3339(),
        "finished_at": (started + TimeDelta::seconds(3)).to_rfc3339(), "metrics": {"n": 1.5}});
    assert_eq!(app.post_report(&result).await.0, StatusCode::CREATED);
}

type DayRows = Vec<(
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    DateTime<Utc>,
    String,
    Option<DateTime<Utc>>,
)>;
type MetricRows = Vec<(
    String,
    String,
    String,
    i64,
    String,
    String,
    String,
    String,
    DateTime<Utc>,
)>;
type AgentRows = Vec<(String, DateTime<Utc>, String, Option<DateTime<Utc>>)>;

async fn summaries_of(app: &TestApp) -> (DayRows, MetricRows, AgentRows) {
    let days = app
        .db
        .rows(
            "select agent_name, cast(day as text), run_count, success_count, failure_count,
                    total_duration_ms, min_duration_ms, max_duration_ms, last_run_at,
                    last_status, last_success_at
             from agent_daily_summaries order by agent_name, day",
        )
        .await;
    let metrics = app
        .db
        .rows(
            "select agent_name, metric_name, cast(day as text), value_count,
                    cast(value_sum as text), cast(value_min as text), cast(value_max as text),
                    cast(last_value as text), last_recorded_at
             from agent_metric_daily_summaries order by agent_name, metric_name, day",
        )
        .await;
    let agents = app
        .db
        .rows(
            "select agent_name, last_run_at, last_status, last_success_at
             from agents order by agent_name",
        )
        .await;
    (days, metrics, agents)
}
