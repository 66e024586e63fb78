//! POST /metrics: what is stored, exactly once, with its summaries.

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Db, TestApp, on_both_backends, report};

async fn the_original_curl_example_is_stored(db: Db) {
    let app = TestApp::spawn(db).await;
    let body = r#"{"agent_name":"test","metrics":{"x":1},"started_at":"2026-02-19T10:00:00Z","finished_at":"2026-02-19T10:00:01Z","error":null}"#;

    let (status, response) = app
        .post_raw(body, "application/json", Some(&app.token))
        .await;

    assert_eq!(status, StatusCode::CREATED, "{response}");
    let run_id = response["run_id"].as_i64().unwrap();
    let (agent, status, duration, key): (String, String, i64, Option<Uuid>) = app
        .db
        .row(&format!(
            "select agent_name, status, duration_ms, run_key from agent_runs where id = {run_id}"
        ))
        .await;
    assert_eq!(
        (agent.as_str(), status.as_str(), duration),
        ("test", "success", 1000)
    );
    assert!(
        key.is_some(),
        "a run_key is generated when the client sends none"
    );
}

async fn values_are_stored_exactly_as_written(db: Db) {
    let app = TestApp::spawn(db).await;
    let body = r#"{"agent_name":"exact","started_at":"2026-02-19T10:00:00Z","finished_at":"2026-02-19T10:00:45Z",
        "metrics":{"tenth":0.1,"big":9007199254740993,"max_safe":9007199254740992,"neg":-12.50,
                   "exp":1.5e3,"yes":true,"no":false,"text":"ok","unicode":"ñandú ✓","sqlish":"'); drop table agent_runs; --"}}"#;

    let (status, response) = app
        .post_raw(body, "application/json", Some(&app.token))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{response}");

    let rows: Vec<(String, Option<String>, Option<String>)> = app.db.rows("select metric_name, cast(metric_value as text), metric_text from agent_metrics order by id").await;
    let expected: Vec<(String, Option<String>, Option<String>)> = [
        ("tenth", Some("0.1"), None),
        ("big", Some("9007199254740993"), None),
        ("max_safe", Some("9007199254740992"), None),
        ("neg", Some("-12.50"), None),
        ("exp", Some("1500"), None),
        ("yes", Some("1"), None),
        ("no", Some("0"), None),
        ("text", None, Some("ok")),
        ("unicode", None, Some("ñandú ✓")),
        ("sqlish", None, Some("'); drop table agent_runs; --")),
    ]
    .into_iter()
    .map(|(n, v, t)| (n.to_owned(), v.map(str::to_owned), t.map(str::to_owned)))
    .collect();
    assert_eq!(rows, expected);

    // Read back through the API, numbers come out as the same JSON literals.
    let run_id = response["run_id"].as_i64().unwrap();
    let (_, detail) = app.get(&format!("/runs/{run_id}")).await;
    let raw = detail.to_string();
    assert!(raw.contains(r#""value":0.1"#), "{raw}");
    assert!(raw.contains(r#""value":9007199254740993"#), "{raw}");
}

async fn a_repeated_run_key_returns_the_same_run_and_writes_nothing(db: Db) {
    let app = TestApp::spawn(db).await;
    let mut body = report("idem");
    body["run_key"] = json!(Uuid::new_v4());

    let (first, created) = app.post_report(&body).await;
    let counts = app.row_counts().await;
    let (second, repeated) = app.post_report(&body).await;

    assert_eq!(first, StatusCode::CREATED);
    assert_eq!(second, StatusCode::OK);
    assert_eq!(created["run_id"], repeated["run_id"]);
    assert_eq!(
        app.row_counts().await,
        counts,
        "nothing written the second time"
    );
    let runs: i64 = app
        .db
        .scalar("select run_count from agent_daily_summaries")
        .await;
    assert_eq!(runs, 1, "the summary counts the run once");
}

async fn ten_identical_posts_at_once_store_one_run(db: Db) {
    let app = TestApp::spawn(db).await;
    let mut body = report("race");
    body["run_key"] = json!(Uuid::new_v4());

    posted_at_once_they_store_one_run(&app, vec![body; 10]).await;
}

/// One run_key sent at once under ten agent names: on PostgreSQL they go to different writers
/// (each agent has its own), whose transactions meet on the key. A key is unique per agent:
/// ten runs are stored, one per agent, each counted once; none is refused.
async fn one_run_key_under_ten_agent_names_at_once_stores_ten_runs(db: Db) {
    let app = TestApp::spawn(db).await;
    let key = Uuid::new_v4();
    let bodies: Vec<_> = (0..10)
        .map(|i| {
            let mut body = report(&format!("racer_{i}"));
            body["run_key"] = json!(key);
            body
        })
        .collect();

    let results = post_concurrently(&app, bodies).await;
    assert!(
        results.iter().all(|(s, _)| *s == StatusCode::CREATED),
        "{results:?}"
    );
    let ids: std::collections::HashSet<_> =
        results.iter().map(|(_, b)| b["run_id"].clone()).collect();
    assert_eq!(ids.len(), 10, "{ids:?}");
    let counted: i64 = app
        .db
        .scalar("select cast(sum(run_count) as bigint) from agent_daily_summaries")
        .await;
    assert_eq!(counted, 10);
    app.assert_agents_agree_with_summaries().await;
}

/// Posts `bodies`, ten reports of one run (one `run_key`, three metrics), all at once: one is
/// answered 201, nine 200, all with the same run, stored and counted once.
async fn posted_at_once_they_store_one_run(app: &TestApp, bodies: Vec<serde_json::Value>) {
    let results = post_concurrently(app, bodies).await;

    let created = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    let repeated = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!((created, repeated), (1, 9), "{results:?}");
    let ids: std::collections::HashSet<_> =
        results.iter().map(|(_, b)| b["run_id"].clone()).collect();
    assert_eq!(ids.len(), 1, "every answer names the same run: {ids:?}");
    assert_stored_once(app).await;
}

/// One run with three metrics in the tables, counted once.
async fn assert_stored_once(app: &TestApp) {
    let (runs, metrics, _, _) = app.row_counts().await;
    assert_eq!((runs, metrics), (1, 3));
    let counted: i64 = app
        .db
        .scalar("select cast(sum(run_count) as bigint) from agent_daily_summaries")
        .await;
    assert_eq!(counted, 1);
}

async fn a_failed_run_is_stored_with_its_error(db: Db) {
    let app = TestApp::spawn(db).await;
    let mut body = report("breaks");
    body["error"] = json!("connection refused by upstream");

    let (status, response) = app.post_report(&body).await;

    assert_eq!(status, StatusCode::CREATED, "{response}");
    let (state, message): (String, Option<String>) = app
        .db
        .row("select status, error_message from agent_runs")
        .await;
    assert_eq!(state, "failed");
    assert_eq!(message.as_deref(), Some("connection refused by upstream"));
}

async fn the_store_deduplicates_within_one_batch(db: Db) {
    use collector::domain::NewRun;
    use collector::store::Stored;

    let store = db.store();
    let mut body = report("batch");
    body["run_key"] = json!(Uuid::new_v4());
    let run = NewRun::parse(serde_json::from_value(body).unwrap(), Utc::now()).unwrap();
    let other =
        NewRun::parse(serde_json::from_value(report("batch")).unwrap(), Utc::now()).unwrap();

    let outcomes = store
        .store_runs(&[run.clone(), other, run.clone()])
        .await
        .unwrap();

    assert!(matches!(outcomes[0], Stored::Created(_)));
    assert!(matches!(outcomes[1], Stored::Created(_)));
    assert_eq!(outcomes[2], Stored::Existing(outcomes[0].run_id()));
    let again = store.store_runs(&[run]).await.unwrap();
    assert_eq!(again, vec![Stored::Existing(outcomes[0].run_id())]);
    let runs: i64 = db
        .scalar("select run_count from agent_daily_summaries")
        .await;
    assert_eq!(runs, 2);
}

/// Posts `bodies` all at once and checks that each was stored as a new run.
pub(crate) async fn post_concurrently_all_created(
    app: &TestApp,
    bodies: Vec<serde_json::Value>,
) -> Vec<(StatusCode, serde_json::Value)> {
    let results = post_concurrently(app, bodies).await;
    assert!(
        results.iter().all(|(s, _)| *s == StatusCode::CREATED),
        "{results:?}"
    );
    results
}

async fn post_concurrently(
    app: &TestApp,
    bodies: Vec<serde_json::Value>,
) -> Vec<(StatusCode, serde_json::Value)> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(bodies.len()));
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let (client, url, token, barrier) = (
                app.client.clone(),
                app.url("/metrics"),
                app.token.clone(),
                barrier.clone(),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                let response = client
                    .post(url)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                crate::helpers::into_json(response).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

async fn concurrent_reports_share_transactions_and_each_gets_its_own_answer(db: Db) {
    let app = TestApp::spawn(db).await;
    let bodies: Vec<_> = (0..200)
        .map(|i| {
            let mut body = report("many");
            body["run_key"] = json!(Uuid::new_v4());
            body["metrics"] = json!({"i": i});
            body
        })
        .collect();

    let results = post_concurrently_all_created(&app, bodies).await;
    let ids: std::collections::HashSet<i64> = results
        .iter()
        .map(|(_, b)| b["run_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 200, "each request names its own run");
    // Each answer names the run holding that request's metric.
    for (_, body) in &results {
        let id = body["run_id"].as_i64().unwrap();
        let (stored_for, count): (i64, i64) = app
            .db
            .row(&format!(
                "select (select count(*) from agent_metrics where run_id = {id}), (select count(*) from agent_runs)"
            ))
            .await;
        assert_eq!((stored_for, count), (1, 200));
    }
    let counted: i64 = app
        .db
        .scalar("select run_count from agent_daily_summaries")
        .await;
    assert_eq!(counted, 200);
}

async fn a_run_the_database_refuses_fails_alone_not_its_batch(db: Db) {
    let app = TestApp::spawn(db).await;
    app.db.refuse_runs_of("poison").await;
    let mut bodies: Vec<_> = (0..60).map(|_| report("healthy")).collect();
    bodies.insert(30, report("poison"));

    let results = post_concurrently(&app, bodies).await;

    assert_eq!(
        results[30].0,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{:?}",
        results[30]
    );
    let healthy = results.iter().enumerate().filter(|(i, _)| *i != 30);
    assert!(
        healthy.clone().all(|(_, (s, _))| *s == StatusCode::CREATED),
        "{results:?}"
    );
    let (runs, metrics, ..) = app.row_counts().await;
    assert_eq!((runs, metrics), (60, 180), "every healthy run stored whole");
}

/// Both backends keep microseconds, as PostgreSQL does: nanoseconds sent are cut, so the same
/// report reads back the same from either, and a page boundary inside one microsecond neither
/// skips nor repeats a run.
async fn timestamps_are_kept_to_the_microsecond(db: Db) {
    let app = TestApp::spawn(db).await;
    for nanos in ["123456789", "123456100", "123456999"] {
        let mut body = report("micro");
        body["started_at"] = json!(format!("2026-02-19T10:00:00.{nanos}Z"));
        body["finished_at"] = json!(format!("2026-02-19T10:00:01.{nanos}Z"));
        let (status, response) = app.post_report(&body).await;
        assert_eq!(status, StatusCode::CREATED, "{response}");
    }
    let mut seen = Vec::new();
    let mut path = "/runs?agent_name=micro&limit=1".to_owned();
    loop {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for run in page["runs"].as_array().unwrap() {
            assert_eq!(run["started_at"], "2026-02-19T10:00:00.123456Z", "{run}");
            seen.push(run["id"].as_i64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/runs?agent_name=micro&limit=1&cursor={cursor}"),
            None => break,
        }
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 3, "every run once: {seen:?}");
}

on_both_backends!(
    the_original_curl_example_is_stored,
    timestamps_are_kept_to_the_microsecond,
    values_are_stored_exactly_as_written,
    a_repeated_run_key_returns_the_same_run_and_writes_nothing,
    ten_identical_posts_at_once_store_one_run,
    one_run_key_under_ten_agent_names_at_once_stores_ten_runs,
    a_failed_run_is_stored_with_its_error,
    the_store_deduplicates_within_one_batch,
    concurrent_reports_share_transactions_and_each_gets_its_own_answer,
    a_run_the_database_refuses_fails_alone_not_its_batch,
);
