//! POST /metrics/batch: many reports, each judged alone, the valid ones stored in one go.

use std::time::Duration;

use collector::auth::Scope;
use collector::config::HttpConfig;
use collector::store::Store;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

use crate::helpers::{Db, TestApp, error_code, on_both_backends, report};

fn statuses(body: &Value) -> Vec<u64> {
    body["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {body}"))
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect()
}

async fn each_report_gets_the_answer_post_metrics_would_give(db: Db) {
    let app = TestApp::spawn(db).await;
    let key = Uuid::new_v4();
    let mut keyed = report("batch_a");
    keyed["run_key"] = json!(key);
    let (_, first) = app.post_report(&keyed).await;
    let earlier_id = first["run_id"].as_i64().unwrap();
    let mut in_batch_key = report("batch_b");
    in_batch_key["run_key"] = json!(Uuid::new_v4());
    let mut bad_order = report("batch_a");
    bad_order["finished_at"] = json!("2000-01-01T00:00:00Z");
    let mut bad_value = report("batch_a");
    bad_value["metrics"] = json!({"nested": {"no": 1}});

    let (status, body) = app
        .post_batch(vec![
            report("batch_a"),              // 0: new
            keyed.clone(),                  // 1: stored before this request
            bad_order,                      // 2: breaks a rule
            in_batch_key.clone(),           // 3: new
            bad_value,                      // 4: wrong type
            in_batch_key,                   // 5: repeats 3
            json!(["not", "an", "object"]), // 6: not a report at all
            report("batch_b"),              // 7: new
        ])
        .await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(statuses(&body), [201, 200, 422, 201, 422, 200, 422, 201]);
    let results = &body["results"];
    assert_eq!(results[1]["run_id"].as_i64(), Some(earlier_id));
    assert_eq!(results[5]["run_id"], results[3]["run_id"]);
    assert_eq!(
        results[2]["error"]["details"]["fields"][0]["field"],
        "finished_at"
    );
    assert_eq!(
        results[4]["error"]["details"]["fields"][0]["field"],
        "metrics.nested"
    );
    assert!(results[2].get("run_id").is_none());
    // Each new run is stored whole under the id its result names.
    for i in [0, 3, 7] {
        let run_id = results[i]["run_id"].as_i64().unwrap();
        let metrics: i64 = app
            .db
            .scalar(&format!(
                "select count(*) from agent_metrics where run_id = {run_id}"
            ))
            .await;
        assert_eq!(metrics, 3, "result {i}");
    }
    let (runs, metrics, summaries, _) = app.row_counts().await;
    assert_eq!((runs, metrics, summaries), (4, 12, 2));
    let counted: i64 = app
        .db
        .scalar("select cast(sum(run_count) as bigint) from agent_daily_summaries")
        .await;
    assert_eq!(counted, 4, "repeats are not counted twice");
}

async fn an_agent_outside_the_token_is_refused_alone(db: Db) {
    let app = TestApp::spawn(db).await;
    let token = app.token_for(&[Scope::Ingest], Some(&["shop_*"]));
    let body = json!({"reports": [report("shop_prices"), report("bank_rates")]}).to_string();

    let (status, body) = app
        .post_raw_to("/metrics/batch", &body, "application/json", Some(&token))
        .await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(statuses(&body), [201, 403]);
    assert_eq!(body["results"][1]["error"]["code"], "forbidden");
    assert_eq!(app.row_counts().await.0, 1);
}

async fn a_bad_envelope_is_refused_whole_and_changes_nothing(db: Db) {
    let app = TestApp::spawn(db).await;
    let read_only = app.token_for(&[Scope::Read], None);
    let too_many = json!({"reports": vec![report("many"); 1001]}).to_string();
    let one = json!({"reports": [report("one")]}).to_string();
    let cases: Vec<(&str, String, &str, Option<&str>, StatusCode)> = vec![
        (
            "malformed JSON",
            r#"{"reports": [{"agent_name""#.into(),
            "application/json",
            Some(&app.token),
            StatusCode::BAD_REQUEST,
        ),
        (
            "no reports field",
            "{}".into(),
            "application/json",
            Some(&app.token),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "reports not a list",
            r#"{"reports": {"a": 1}}"#.into(),
            "application/json",
            Some(&app.token),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "a bare list",
            "[]".into(),
            "application/json",
            Some(&app.token),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "empty",
            r#"{"reports": []}"#.into(),
            "application/json",
            Some(&app.token),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "1001 reports",
            too_many,
            "application/json",
            Some(&app.token),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "not JSON",
            one.clone(),
            "text/plain",
            Some(&app.token),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "no token",
            one.clone(),
            "application/json",
            None,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "forged token",
            one.clone(),
            "application/json",
            Some("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.AAAA"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "read scope only",
            one,
            "application/json",
            Some(&read_only),
            StatusCode::FORBIDDEN,
        ),
    ];

    for (case, body, content_type, token, expected) in cases {
        let (status, answer) = app
            .post_raw_to("/metrics/batch", &body, content_type, token)
            .await;
        assert_eq!(status, expected, "{case}: {answer}");
        assert!(!error_code(&answer).is_empty(), "{case}: {answer}");
    }
    assert_eq!(app.row_counts().await, (0, 0, 0, 0));
}

async fn a_body_over_the_batch_limit_is_413_while_post_metrics_keeps_its_own(db: Db) {
    let http = HttpConfig {
        body_limit: 2_000,
        batch_body_limit: 20_000,
        ..HttpConfig::default()
    };
    let app = TestApp::spawn_with(db, http).await;
    let reports = |n| json!({"reports": vec![report("sized"); n]}).to_string();
    assert!(reports(20).len() > 2_000 && reports(20).len() < 20_000);
    let mut long = report("sized");
    long["error"] = json!("e".repeat(3_000));

    let (fits, body) = app
        .post_raw_to(
            "/metrics/batch",
            &reports(20),
            "application/json",
            Some(&app.token),
        )
        .await;
    let (too_large, _) = app
        .post_raw_to(
            "/metrics/batch",
            &reports(200),
            "application/json",
            Some(&app.token),
        )
        .await;
    let (single_too_large, _) = app.post_report(&long).await;
    let (long_in_batch, _) = app.post_batch(vec![long]).await;

    assert_eq!(fits, StatusCode::OK, "{body}");
    assert_eq!(too_large, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(single_too_large, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(long_in_batch, StatusCode::OK);
    assert_eq!(app.row_counts().await.0, 21);
}

async fn a_run_the_database_refuses_fails_alone_in_a_batch(db: Db) {
    let app = TestApp::spawn(db).await;
    app.db.refuse_runs_of("poison").await;

    let (status, body) = app
        .post_batch(vec![report("healthy"), report("poison"), report("healthy")])
        .await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(statuses(&body), [201, 500, 201]);
    assert_eq!(body["results"][1]["error"]["code"], "internal");
    let text = body.to_string();
    assert!(
        !text.contains("poisoned"),
        "no database text reaches the client: {text}"
    );
    let (runs, metrics, ..) = app.row_counts().await;
    assert_eq!((runs, metrics), (2, 6));
}

/// PostgreSQL only: an unreachable database is a server that does not answer.
#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn an_unreachable_database_is_503_for_the_whole_batch(pool: PgPool) {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = (*pool.connect_options())
        .clone()
        .host("127.0.0.1")
        .port(port);
    let nowhere = PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy_with(options);
    let app = TestApp::spawn_on_store(
        Store::from(nowhere),
        Db::Postgres(pool),
        HttpConfig::default(),
    )
    .await;

    let (status, body) = app.post_batch(vec![report("a"), report("b")]).await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "unavailable");
    assert_eq!(app.row_counts().await.0, 0);
}

async fn a_full_batch_of_1000_reports_is_stored(db: Db) {
    let app = TestApp::spawn(db).await;
    let reports: Vec<Value> = (0..1000)
        .map(|i| {
            let mut body = report(&format!("agent_{}", i % 20));
            body["metrics"] = json!({"i": i, "half": i / 2, "label": "x"});
            body
        })
        .collect();

    let (status, body) = app.post_batch(reports).await;

    assert_eq!(status, StatusCode::OK);
    assert!(statuses(&body).iter().all(|s| *s == 201));
    let (runs, metrics, summaries, metric_summaries) = app.row_counts().await;
    assert_eq!(
        (runs, metrics, summaries, metric_summaries),
        (1000, 3000, 20, 40)
    );
    let sum: String = app
        .db
        .scalar(
            "select cast(sum(value_sum) as text) from agent_metric_daily_summaries
             where metric_name = 'i'",
        )
        .await;
    assert_eq!(sum, (0..1000).sum::<i64>().to_string());
}

on_both_backends!(
    each_report_gets_the_answer_post_metrics_would_give,
    an_agent_outside_the_token_is_refused_alone,
    a_bad_envelope_is_refused_whole_and_changes_nothing,
    a_body_over_the_batch_limit_is_413_while_post_metrics_keeps_its_own,
    a_run_the_database_refuses_fails_alone_in_a_batch,
    a_full_batch_of_1000_reports_is_stored,
);
