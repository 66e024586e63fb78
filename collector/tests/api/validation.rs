//! Bad input: each case gets a clear 4xx naming the field, and nothing is written.

use chrono::{TimeDelta, Utc};
use collector::config::HttpConfig;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    Db, TestApp, error_code, error_field, error_fields, on_both_backends, report,
};

/// A valid report with `field` replaced by `value` (or removed when `value` is `None`).
fn with(field: &str, value: Option<Value>) -> String {
    let mut body = report("valid_agent");
    match value {
        Some(value) => body[field] = value,
        None => {
            body.as_object_mut().unwrap().remove(field);
        }
    }
    body.to_string()
}

fn with_metrics(metrics: Value) -> String {
    with("metrics", Some(metrics))
}

async fn every_rule_refuses_with_the_field_and_writes_nothing(db: Db) {
    let app = TestApp::spawn(db).await;
    let future = (Utc::now() + TimeDelta::hours(25)).to_rfc3339();
    let many: serde_json::Map<String, Value> =
        (0..1001).map(|i| (format!("m{i}"), json!(i))).collect();
    let very_many: serde_json::Map<String, Value> =
        (0..10_000).map(|i| (format!("m{i}"), json!(i))).collect();
    let nested = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let raw = |extra: &str| {
        format!(
            r#"{{"agent_name":"a",{extra},"started_at":"2026-02-19T10:00:00Z","finished_at":"2026-02-19T10:00:01Z"}}"#
        )
    };
    let long_metric = format!("metrics.{}", "n".repeat(201));

    // (case, body, status, error code, field)
    let cases: Vec<(&str, String, StatusCode, &str, &str)> = vec![
        (
            "truncated JSON",
            r#"{"agent_name":"#.into(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "",
        ),
        (
            "empty body",
            String::new(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "",
        ),
        (
            "trailing garbage",
            format!("{} x", report("a")),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "",
        ),
        (
            "100 000 levels deep",
            raw(&format!(r#""metrics":{{"deep":{nested}}}"#)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "metrics.deep",
        ),
        (
            "an array",
            "[1,2]".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "",
        ),
        (
            "missing agent_name",
            with("agent_name", None),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "agent_name",
        ),
        (
            "missing started_at",
            with("started_at", None),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "started_at",
        ),
        (
            "agent_name a number",
            with("agent_name", Some(json!(7))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "agent_name",
        ),
        (
            "agent_name empty",
            with("agent_name", Some(json!(""))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "agent_name",
        ),
        (
            "agent_name 101 chars",
            with("agent_name", Some(json!("a".repeat(101)))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "agent_name",
        ),
        (
            "agent_name with space",
            with("agent_name", Some(json!("my agent"))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "agent_name",
        ),
        (
            "agent_name SQL",
            with("agent_name", Some(json!("x'; drop table agent_runs;--"))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "agent_name",
        ),
        (
            "agent_name unicode",
            with("agent_name", Some(json!("agénte"))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "agent_name",
        ),
        (
            "metrics an array",
            with_metrics(json!([1, 2])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "metrics",
        ),
        (
            "metric null",
            with_metrics(json!({"ok": 1, "gone": null})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "metrics.gone",
        ),
        (
            "metric object",
            with_metrics(json!({"obj": {"a": 1}})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "metrics.obj",
        ),
        (
            "metric array",
            with_metrics(json!({"arr": [1]})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "metrics.arr",
        ),
        (
            "duplicate metric",
            raw(r#""metrics":{"x":1,"x":2}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "metrics",
        ),
        (
            "metric name 201 chars",
            with_metrics(json!({"n".repeat(201): 1})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            &long_metric,
        ),
        (
            "metric name empty",
            with_metrics(json!({"": 1})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "metrics.",
        ),
        (
            "metric name control char",
            with_metrics(json!({"a\u{7}b": 1})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "metrics.a\u{7}b",
        ),
        (
            "1001 metrics",
            with_metrics(Value::Object(many)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "metrics",
        ),
        (
            "10 000 metrics",
            with_metrics(Value::Object(very_many)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "metrics",
        ),
        (
            "number too large",
            raw(r#""metrics":{"huge":1e400}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "metrics.huge",
        ),
        (
            "NUL in text",
            with_metrics(json!({"t": "a\u{0}b"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "metrics.t",
        ),
        (
            "finished before started",
            with(
                "finished_at",
                Some(json!((Utc::now() - TimeDelta::hours(2)).to_rfc3339())),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "finished_at",
        ),
        (
            "started a day ahead",
            with("started_at", Some(json!(future))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "started_at",
        ),
        (
            "timestamp not a date",
            with("started_at", Some(json!("yesterday"))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "started_at",
        ),
        (
            "timestamp without zone",
            with("started_at", Some(json!("2026-02-19T10:00:00"))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "started_at",
        ),
        (
            "timestamp a number",
            with("finished_at", Some(json!(1_700_000_000))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "finished_at",
        ),
        (
            "run_key not a UUID",
            with("run_key", Some(json!("abc"))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "run_key",
        ),
        (
            "unknown trigger",
            with("trigger", Some(json!("cron"))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "trigger",
        ),
        (
            "error a number",
            with("error", Some(json!(500))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "error",
        ),
        (
            "host too long",
            with("host", Some(json!("h".repeat(256)))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "host",
        ),
        (
            "scheduled a day ahead",
            with("scheduled_for", Some(json!(future))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "scheduled_for",
        ),
    ];

    for (case, body, status, code, field) in cases {
        let (got, response) = app
            .post_raw(&body, "application/json", Some(&app.token))
            .await;
        assert_eq!(got, status, "{case}: {response}");
        assert_eq!(error_code(&response), code, "{case}: {response}");
        if field.is_empty() {
            assert_eq!(
                error_fields(&response),
                Vec::<String>::new(),
                "{case}: {response}"
            );
        } else {
            assert!(
                error_fields(&response).iter().any(|f| f == field),
                "{case}: {response}"
            );
        }
        assert!(
            !response["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{case}: a message for people"
        );
        assert_eq!(
            app.row_counts().await,
            (0, 0, 0, 0),
            "{case}: nothing written"
        );
    }
}

/// A time without its offset says that one is needed, naming the field.
async fn a_time_without_an_offset_is_refused_saying_so(db: Db) {
    let app = TestApp::spawn(db).await;
    for (field, body) in [
        (
            "started_at",
            json!({"agent_name": "a", "started_at": "2026-02-19T10:00:00",
                   "finished_at": "2026-02-19T10:00:01Z"}),
        ),
        (
            "finished_at",
            json!({"agent_name": "a", "started_at": "2026-02-19T10:00:00Z",
                   "finished_at": "19/02/2026 10:00"}),
        ),
    ] {
        let (status, answer) = app.post_report(&body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(error_fields(&answer), [field], "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains("with its offset"), "{message}");
    }
    assert_eq!(app.row_counts().await, (0, 0, 0, 0));
}

async fn finished_before_started_is_refused_on_its_own(db: Db) {
    let app = TestApp::spawn(db).await;
    let mut body = report("order");
    let (started, finished) = (body["started_at"].clone(), body["finished_at"].clone());
    body["started_at"] = finished;
    body["finished_at"] = started;

    let (status, response) = app.post_report(&body).await;

    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_field(&response), "finished_at");
    assert!(
        response["error"]["message"]
            .as_str()
            .unwrap()
            .contains("before started_at")
    );
    assert_eq!(app.row_counts().await, (0, 0, 0, 0));
}

async fn wrong_content_type_is_415(db: Db) {
    let app = TestApp::spawn(db).await;
    let body = report("ct").to_string();
    for content_type in ["text/plain", "application/x-www-form-urlencoded", ""] {
        let (status, response) = app.post_raw(&body, content_type, Some(&app.token)).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        assert_eq!(error_code(&response), "unsupported_media_type");
    }
    assert_eq!(app.row_counts().await, (0, 0, 0, 0));
}

async fn oversized_bodies_are_413_at_the_default_and_configured_limits(db: Db) {
    let app = TestApp::spawn(db.clone()).await;
    let mut body = report("big");
    body["metrics"] = json!({"blob": "x".repeat(1024 * 1024)});
    let (status, response) = app
        .post_raw(&body.to_string(), "application/json", Some(&app.token))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{response}");
    assert_eq!(error_code(&response), "payload_too_large");

    let small = TestApp::spawn_with(
        db,
        HttpConfig {
            body_limit: 2048,
            ..HttpConfig::default()
        },
    )
    .await;
    let mut body = report("big");
    body["metrics"] = json!({"blob": "x".repeat(4096)});
    let (status, _) = small
        .post_raw(&body.to_string(), "application/json", Some(&small.token))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = small.post_report(&report("fits")).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "a body under the limit still passes"
    );
    let (runs, ..) = small.row_counts().await;
    assert_eq!(runs, 1);
}

async fn exactly_1000_metrics_are_accepted(db: Db) {
    let app = TestApp::spawn(db).await;
    let metrics: serde_json::Map<String, Value> = (0..1000)
        .map(|i| (format!("metric_{i}"), json!(i)))
        .collect();
    let mut body = report("wide");
    body["metrics"] = Value::Object(metrics);

    let (status, response) = app.post_report(&body).await;

    assert_eq!(status, StatusCode::CREATED, "{response}");
    let (_, stored, _, aggregates) = app.row_counts().await;
    assert_eq!((stored, aggregates), (1000, 1000));
}

async fn a_100_mb_body_is_refused_without_being_read(db: Db) {
    let app = TestApp::spawn(db).await;
    let body = vec![b' '; 100 * 1024 * 1024];
    let started = std::time::Instant::now();

    let sent = app
        .client
        .post(app.url("/metrics"))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;

    // The declared length is over the limit: the answer comes before the body is read (the
    // client may see the connection closed while it is still sending).
    if let Ok(response) = sent {
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(
        app.get_with("/health", None).await.0,
        StatusCode::OK,
        "still serving"
    );
    assert_eq!(app.row_counts().await, (0, 0, 0, 0));
}

on_both_backends!(
    a_time_without_an_offset_is_refused_saying_so,
    every_rule_refuses_with_the_field_and_writes_nothing,
    finished_before_started_is_refused_on_its_own,
    wrong_content_type_is_415,
    oversized_bodies_are_413_at_the_default_and_configured_limits,
    exactly_1000_metrics_are_accepted,
    a_100_mb_body_is_refused_without_being_read,
);
