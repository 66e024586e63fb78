//! The read endpoints: filters, keyset pagination, per-agent access, and their refusals.

use chrono::{DateTime, TimeDelta, Utc};
use collector::auth::Scope;
use collector::store::AgentAccess;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, error_code, error_field, on_both_backends, report_at};

fn hours_ago(hours: i64) -> DateTime<Utc> {
    Utc::now() - TimeDelta::hours(hours)
}

/// Five runs of `alpha` (the one 3 hours ago failed), one of `beta` and one of `team_x`.
async fn seed(app: &TestApp) {
    for hours in 1..=5 {
        let mut body = report_at("alpha", hours_ago(hours), 2);
        if hours == 3 {
            body["error"] = json!("boom");
        }
        let (status, _) = app.post_report(&body).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    app.post_report(&report_at("beta", hours_ago(2), 1)).await;
    app.post_report(&report_at("team_x", hours_ago(2), 1)).await;
    app.post_report(&report_at("teamXy", hours_ago(2), 1)).await;
}

fn names(page: &Value, list: &str) -> Vec<String> {
    page[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["agent_name"].as_str().unwrap().to_owned())
        .collect()
}

async fn runs_page_newest_first_without_gaps_or_repeats(db: Db) {
    let app = TestApp::spawn(db).await;
    seed(&app).await;

    let mut seen = Vec::new();
    let mut path = "/runs?agent_name=alpha&limit=2".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        for run in page["runs"].as_array().unwrap() {
            seen.push(
                run["started_at"]
                    .as_str()
                    .unwrap()
                    .parse::<DateTime<Utc>>()
                    .unwrap(),
            );
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/runs?agent_name=alpha&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 5);
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "strictly newest first: {seen:?}"
    );
}

async fn runs_filter_by_status_and_time(db: Db) {
    let app = TestApp::spawn(db).await;
    seed(&app).await;

    let (_, failed) = app.get("/runs?status=failed").await;
    assert_eq!(names(&failed, "runs"), ["alpha"]);
    assert_eq!(failed["runs"][0]["error_message"], "boom");

    let from = urlencode(&(hours_ago(4) - TimeDelta::minutes(1)).to_rfc3339());
    let to = urlencode(&(hours_ago(2) - TimeDelta::minutes(1)).to_rfc3339());
    let (_, window) = app
        .get(&format!("/runs?agent_name=alpha&from={from}&to={to}"))
        .await;
    assert_eq!(window["runs"].as_array().unwrap().len(), 2, "{window}");
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

async fn one_run_with_its_metrics(db: Db) {
    let app = TestApp::spawn(db).await;
    let (_, created) = app.post_report(&report_at("alpha", hours_ago(1), 3)).await;
    let id = created["run_id"].as_i64().unwrap();

    let (status, run) = app.get(&format!("/runs/{id}")).await;

    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["id"], id);
    assert_eq!(run["status"], "success");
    assert_eq!(run["duration_ms"], 3000);
    assert_eq!(run["trigger"], "api");
    let metrics: Vec<(String, Value)> = run["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["metric_name"].as_str().unwrap().to_owned(),
                m["value"].clone(),
            )
        })
        .collect();
    assert_eq!(
        metrics,
        [
            ("items".into(), json!(42)),
            ("ratio".into(), json!(0.1)),
            ("status".into(), json!("ok"))
        ]
    );

    let (status, body) = app.get("/runs/999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "not_found");
    let (status, body) = app.get("/runs/abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

async fn metrics_filter_and_page(db: Db) {
    let app = TestApp::spawn(db).await;
    seed(&app).await;

    let (status, page) = app
        .get("/metrics?agent_name=alpha&metric_name=items&limit=3")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["metrics"].as_array().unwrap().len(), 3);
    assert!(
        page["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["metric_name"] == "items" && m["value"] == 42)
    );
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = app
        .get(&format!(
            "/metrics?agent_name=alpha&metric_name=items&limit=3&cursor={cursor}"
        ))
        .await;
    assert_eq!(rest["metrics"].as_array().unwrap().len(), 2);
    assert!(rest["next_cursor"].is_null());
}

async fn agents_overview(db: Db) {
    let app = TestApp::spawn(db).await;
    // Today (UTC) and three days ago; the latest run failed.
    let today = Utc::now() - TimeDelta::seconds(30);
    let earlier = today - TimeDelta::days(3);
    app.post_report(&report_at("alpha", earlier, 1)).await;
    app.post_report(&report_at("alpha", today - TimeDelta::seconds(20), 1))
        .await;
    let mut failed = report_at("alpha", today - TimeDelta::seconds(10), 1);
    failed["error"] = json!("boom");
    app.post_report(&failed).await;
    app.post_report(&report_at("beta", earlier - TimeDelta::days(10), 1))
        .await;

    let (status, body) = app.get("/agents").await;

    assert_eq!(status, StatusCode::OK, "{body}");
    let alpha = &body["agents"][0];
    assert_eq!(alpha["agent_name"], "alpha");
    assert_eq!(alpha["last_status"], "failed");
    assert_eq!(
        (
            alpha["runs_today"].as_i64(),
            alpha["failures_today"].as_i64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(
        (alpha["runs_7d"].as_i64(), alpha["failures_7d"].as_i64()),
        (Some(3), Some(1))
    );
    let last_success: DateTime<Utc> = alpha["last_success_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        last_success.timestamp(),
        (today - TimeDelta::seconds(20)).timestamp()
    );
    let beta = &body["agents"][1];
    assert_eq!(
        (beta["agent_name"].as_str(), beta["runs_7d"].as_i64()),
        (Some("beta"), Some(0))
    );

    // With the days of the console's sparklines (14): the same counts, beta's day among them.
    let day = Utc::now().date_naive();
    let (overviews, days) = app
        .db
        .store()
        .agents_overview_with_days(day, day - chrono::Days::new(13), &AgentAccess::new(None))
        .await
        .unwrap();
    let counts: Vec<_> = overviews
        .iter()
        .map(|o| {
            (
                o.agent_name.as_str(),
                o.runs_today,
                o.runs_7d,
                o.failures_7d,
            )
        })
        .collect();
    assert_eq!(counts, [("alpha", 2, 3, 1), ("beta", 0, 0, 0)]);
    assert_eq!(days["beta"].len(), 1);
    assert_eq!(days["alpha"].iter().map(|d| d.runs).sum::<i64>(), 3);
}

async fn summaries_over_a_date_range(db: Db) {
    let app = TestApp::spawn(db).await;
    for (day, agent) in [
        ("2026-01-10", "alpha"),
        ("2026-01-11", "alpha"),
        ("2026-01-11", "beta"),
        ("2026-01-20", "alpha"),
    ] {
        let start: DateTime<Utc> = format!("{day}T12:00:00Z").parse().unwrap();
        app.post_report(&report_at(agent, start, 4)).await;
    }

    let (status, body) = app.get("/summaries?from=2026-01-10&to=2026-01-11").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rows: Vec<(String, String, i64)> = body["summaries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["day"].as_str().unwrap().into(),
                s["agent_name"].as_str().unwrap().into(),
                s["run_count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("2026-01-11".into(), "alpha".into(), 1),
            ("2026-01-11".into(), "beta".into(), 1),
            ("2026-01-10".into(), "alpha".into(), 1),
        ]
    );
    assert_eq!(body["summaries"][0]["avg_duration_ms"], 4000.0);

    let (_, only_beta) = app
        .get("/summaries?from=2026-01-01&to=2026-01-31&agent_name=beta")
        .await;
    assert_eq!(only_beta["summaries"].as_array().unwrap().len(), 1);
}

async fn bad_parameters_are_400_naming_the_parameter(db: Db) {
    let app = TestApp::spawn(db).await;
    for (path, field) in [
        ("/runs?limit=1001", "limit"),
        ("/runs?limit=0", "limit"),
        ("/runs?from=yesterday", "from"),
        ("/runs?to=2026-13-01T00:00:00Z", "to"),
        (
            "/runs?from=2026-02-02T00:00:00Z&to=2026-02-01T00:00:00Z",
            "from",
        ),
        ("/runs?status=done", "status"),
        ("/runs?cursor=nonsense", "cursor"),
        ("/runs?agent_name=bad%20name", "agent_name"),
        ("/metrics?limit=5000", "limit"),
        ("/metrics?metric_name=", "metric_name"),
        ("/summaries?from=2026-02-30", "from"),
        ("/summaries?from=2020-01-01&to=2026-01-01", "from"),
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(error_field(&body), field, "{path}: {body}");
    }
    for path in ["/runs?limit=abc", "/runs?agent=alpha"] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(error_code(&body), "invalid_parameter", "{path}");
    }
}

async fn a_restricted_token_sees_only_its_agents(db: Db) {
    let app = TestApp::spawn(db).await;
    seed(&app).await;
    let token = app.token_for(&[Scope::Read], Some(&["team_*", "beta"]));

    let (_, runs) = app.get_with("/runs", Some(&token)).await;
    let mut visible = names(&runs, "runs");
    visible.sort();
    assert_eq!(
        visible,
        ["beta", "team_x"],
        "`_` in a prefix is literal, so teamXy is hidden"
    );

    let (_, metrics) = app.get_with("/metrics", Some(&token)).await;
    assert!(
        names(&metrics, "metrics")
            .iter()
            .all(|a| a == "beta" || a == "team_x")
    );
    let (_, agents) = app.get_with("/agents", Some(&token)).await;
    assert_eq!(names(&agents, "agents"), ["beta", "team_x"]);
    let (_, summaries) = app.get_with("/summaries", Some(&token)).await;
    assert!(
        names(&summaries, "summaries")
            .iter()
            .all(|a| a == "beta" || a == "team_x")
    );

    let (status, _) = app.get_with("/runs?agent_name=alpha", Some(&token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, alpha_runs) = app.get("/runs?agent_name=alpha&limit=1").await;
    let alpha_id = alpha_runs["runs"][0]["id"].as_i64().unwrap();
    let (status, _) = app
        .get_with(&format!("/runs/{alpha_id}"), Some(&token))
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another agent's run does not exist for this token"
    );
}

async fn unknown_paths_and_methods_get_json_errors(db: Db) {
    let app = TestApp::spawn(db).await;
    let (status, body) = app.get("/nope").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let response = app.client.delete(app.url("/runs")).send().await.unwrap();
    let (status, body) = crate::helpers::into_json(response).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
}

on_both_backends!(
    runs_page_newest_first_without_gaps_or_repeats,
    runs_filter_by_status_and_time,
    one_run_with_its_metrics,
    metrics_filter_and_page,
    agents_overview,
    summaries_over_a_date_range,
    bad_parameters_are_400_naming_the_parameter,
    a_restricted_token_sees_only_its_agents,
    unknown_paths_and_methods_get_json_errors,
);
