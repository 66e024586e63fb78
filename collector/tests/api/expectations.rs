//! Expectations over HTTP: declared, replaced by what a scheduler publishes, refused when bad
//! with nothing stored.

use collector::auth::Scope;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, error_fields, into_json, on_both_backends};

async fn bad_expectations_get_a_clear_4xx_and_change_nothing(db: Db) {
    let app = TestApp::spawn(db).await;
    for (body, field) in [
        (r#"{"cron": "61 * * * *"}"#, "cron"),
        (
            r#"{"cron": "* * * * *", "timezone": "Mars/Olympus_Mons"}"#,
            "timezone",
        ),
        (r#"{"every": "0s"}"#, "every"),
        (r#"{"every": "1h", "grace": "400d"}"#, "grace"),
        (r#"{"every": "often"}"#, "every"),
        (r#"{}"#, "cron"),
        (r#"{"cron": "0 * * * *", "every": "1h"}"#, "every"),
    ] {
        let (status, response) = app.put_expectation("agent", body, Some(&app.token)).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {response}"
        );
        assert_eq!(error_fields(&response), [field], "{body}: {response}");
    }
    let (status, _) = app
        .put_expectation("agent", "{not json", Some(&app.token))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .put_expectation("agent", r#"{"every": 3600}"#, Some(&app.token))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app
        .put_expectation(
            "agent",
            r#"{"every": "1h", "when": "always"}"#,
            Some(&app.token),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app
        .put_expectation("no%20spaces", r#"{"every": "1h"}"#, Some(&app.token))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .put_expectation("agent", r#"{"every": "1h"}"#, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let reader = app.token_for(&[Scope::Read], None);
    let (status, _) = app
        .put_expectation("agent", r#"{"every": "1h"}"#, Some(&reader))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let other = app.token_for(&[Scope::Ingest, Scope::Read], Some(&["other"]));
    let (status, _) = app
        .put_expectation("agent", r#"{"every": "1h"}"#, Some(&other))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.get("/incidents?open=maybe").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.db
            .scalar::<i64>("select count(*) from agent_expectations")
            .await,
        0
    );

    // A token limited to some agents sees only their expectations.
    for agent in ["mine", "theirs"] {
        let (status, _) = app
            .put_expectation(agent, r#"{"every": "1h"}"#, Some(&app.token))
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let limited = app.token_for(&[Scope::Read], Some(&["mine"]));
    let (_, listed) = app.get_with("/expectations", Some(&limited)).await;
    let names: Vec<&str> = listed["expectations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mine"]);
}

async fn a_schedulers_jobs_replace_what_it_published_before(db: Db) {
    let app = TestApp::spawn(db).await;
    let put = |body: Value, token: Option<String>| {
        let request = app
            .client
            .put(app.url("/expectations/scheduler"))
            .header("content-type", "application/json")
            .bearer_auth(token.unwrap_or_else(|| app.token.clone()))
            .body(body.to_string());
        async move { into_json(request.send().await.unwrap()).await }
    };
    let job = |name: &str, cron: &str, enabled: bool| json!({"job": name, "cron": cron, "timezone": "Europe/Madrid", "timeout": "10m", "enabled": enabled});
    // An expectation declared over the API for the same agent is the API's own.
    let (status, _) = app
        .put_expectation("nightly", r#"{"every": "1d"}"#, Some(&app.token))
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, body) = put(
        json!({"jobs": [job("nightly", "0 3 * * *", true), job("paused", "* * * * *", false)]}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let published: Vec<&str> = body["expectations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(published, ["nightly"], "a disabled job is not expected");
    assert_eq!(body["expectations"][0]["source"], "scheduler");
    assert_eq!(body["expectations"][0]["timezone"], "Europe/Madrid");

    // Published again unchanged (a restart, another replica): its progress is kept.
    let checked: String = app
        .db
        .scalar(
            "select cast(checked_until as text) from agent_expectations where source = 'scheduler'",
        )
        .await;
    let (status, _) = put(json!({"jobs": [job("nightly", "0 3 * * *", true)]}), None).await;
    assert_eq!(status, StatusCode::OK);
    let again: String = app
        .db
        .scalar(
            "select cast(checked_until as text) from agent_expectations where source = 'scheduler'",
        )
        .await;
    assert_eq!(checked, again);

    // The job removed from the schedule: no longer expected; the API's expectation stays.
    let (status, body) = put(json!({"jobs": [job("hourly", "0 * * * *", true)]}), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows: Vec<(String, String)> = app
        .db
        .rows("select source, name from agent_expectations order by source, name")
        .await;
    assert_eq!(
        rows,
        [
            ("api".to_owned(), "nightly".to_owned()),
            ("scheduler".to_owned(), "hourly".to_owned())
        ]
    );

    // Bad schedules change nothing.
    for (jobs, field) in [
        (json!([job("hourly", "61 * * * *", true)]), "jobs[0].cron"),
        (
            json!([job("a", "* * * * *", true), job("a", "* * * * *", true)]),
            "jobs[1].job",
        ),
        (
            json!([{"job": "a", "cron": "* * * * *", "timezone": "Nowhere/City", "enabled": true}]),
            "jobs[0].timezone",
        ),
        (
            json!([{"job": "a", "cron": "* * * * *", "timezone": "UTC", "timeout": "0s", "enabled": true}]),
            "jobs[0].timeout",
        ),
    ] {
        let (status, body) = put(json!({ "jobs": jobs }), None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(error_fields(&body), [field], "{body}");
    }
    let limited = app.token_for(&[Scope::Ingest], Some(&["other"]));
    let (status, _) = put(
        json!({"jobs": [job("hourly", "0 * * * *", true)]}),
        Some(limited),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.db
            .scalar::<i64>("select count(*) from agent_expectations")
            .await,
        2
    );
}

/// A publication replaces only its publisher's expectations (the token's subject), of the
/// agents its token may touch: `{"jobs": []}` from a token limited to one agent erases no
/// other agent's, and two schedulers with different schedule files keep each other's jobs.
async fn a_publisher_replaces_only_its_own_jobs_of_its_agents(db: Db) {
    let app = TestApp::spawn(db).await;
    let token = |subject: &str, agents: Option<&[&str]>| {
        let patterns: Option<Vec<collector::domain::AgentPattern>> =
            agents.map(|list| list.iter().map(|p| p.parse().unwrap()).collect());
        app.keys
            .issue(
                subject,
                &[Scope::Ingest],
                patterns.as_deref(),
                std::time::Duration::from_secs(600),
            )
            .unwrap()
    };
    let put = |jobs: &[&str], token: String| {
        let jobs: Vec<Value> = jobs
            .iter()
            .map(|name| json!({"job": name, "cron": "0 3 * * *", "timezone": "UTC", "enabled": true}))
            .collect();
        let request = app
            .client
            .put(app.url("/expectations/scheduler"))
            .bearer_auth(token)
            .json(&json!({ "jobs": jobs }));
        async move { into_json(request.send().await.unwrap()).await }
    };
    let names = async || -> Vec<String> {
        app.db
            .rows::<(String,)>("select name from agent_expectations order by name")
            .await
            .into_iter()
            .map(|(name,)| name)
            .collect()
    };
    let (status, body) = put(
        &["billing", "reports-a", "reports-b"],
        token("scheduler-1", None),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = put(&["etl"], token("scheduler-2", None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["expectations"].as_array().map(Vec::len),
        Some(1),
        "a publisher's answer lists its own: {body}"
    );
    assert_eq!(names().await, ["billing", "etl", "reports-a", "reports-b"]);

    // Limited to reports-*, publishing nothing: only its own agents' go.
    let (status, body) = put(&[], token("scheduler-1", Some(&["reports-*"]))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(names().await, ["billing", "etl"]);
    // Another publisher's empty schedule leaves scheduler-1's jobs.
    let (status, body) = put(&[], token("scheduler-2", None)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(names().await, ["billing"]);
    // A job published by another publisher becomes its: the first's next publication
    // without it leaves it.
    let (status, _) = put(&["billing"], token("scheduler-2", None)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = put(&[], token("scheduler-1", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(names().await, ["billing"]);
    let publisher: String = app
        .db
        .scalar("select publisher from agent_expectations")
        .await;
    assert_eq!(publisher, "scheduler-2");
}

on_both_backends!(
    a_publisher_replaces_only_its_own_jobs_of_its_agents,
    bad_expectations_get_a_clear_4xx_and_change_nothing,
    a_schedulers_jobs_replace_what_it_published_before,
);
