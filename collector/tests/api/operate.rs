//! Operating jobs over the API: `GET /jobs`, pause and resume, run now, cancel, the audit log
//! and what a scheduler replica is told (`GET /scheduler/commands`). The scheduler's side (the
//! replicas acting on them) is scheduler/tests/e2e/operate.rs.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use collector::auth::Scope;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Db, TestApp, error_code, error_field, into_json, on_both_backends};
use crate::lifecycle::start;

/// Publishes `jobs` (each a cron) as a scheduler does.
async fn publish(app: &TestApp, jobs: &[(&str, &str)]) {
    let jobs: Vec<Value> = jobs
        .iter()
        .map(|(job, cron)| json!({"job": job, "cron": cron, "timezone": "UTC", "enabled": true}))
        .collect();
    let (status, body) = app.publish_jobs(Value::Array(jobs)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// An operator's token: operate and read, every agent, subject `alice`.
fn operator(app: &TestApp) -> String {
    app.keys
        .issue(
            "alice",
            &[Scope::Operate, Scope::Read],
            None,
            std::time::Duration::from_secs(600),
        )
        .unwrap()
}

async fn act(app: &TestApp, token: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = app.client.post(app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    into_json(request.send().await.unwrap()).await
}

/// Rows of the operating tables: (pauses, commands, audit).
async fn operated(db: &Db) -> (i64, i64, i64) {
    db.row(
        "select (select count(*) from job_pauses), (select count(*) from job_commands), \
                (select count(*) from audit_log)",
    )
    .await
}

async fn jobs_show_their_slot_runs_and_pause(db: Db) {
    let app = TestApp::spawn(db).await;
    publish(&app, &[("nightly", "0 3 * * *"), ("hourly", "0 * * * *")]).await;
    let (status, _) = app
        .post_start(&start("hourly", Uuid::new_v4(), "replica-1"))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let op = operator(&app);
    let until = Utc::now() + TimeDelta::hours(2);
    let (status, pause) = act(
        &app,
        &op,
        "/jobs/nightly/pause",
        Some(json!({"note": "migrating the warehouse", "until": until.to_rfc3339()})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{pause}");
    assert_eq!(pause["paused_by"], "alice");

    let (status, body) = app.get("/jobs").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let jobs = body["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    let (hourly, nightly) = (&jobs[0], &jobs[1]);
    assert_eq!(hourly["job"], "hourly");
    assert_eq!(hourly["running"], 1);
    assert!(hourly.get("pause").is_none(), "{hourly}");
    let next: DateTime<Utc> = hourly["next_slot"].as_str().unwrap().parse().unwrap();
    assert!(next > Utc::now() && next <= Utc::now() + TimeDelta::hours(1));
    assert_eq!(nightly["job"], "nightly");
    assert_eq!(nightly["running"], 0);
    assert_eq!(nightly["cron"], "0 3 * * *");
    assert_eq!(nightly["pause"]["paused_by"], "alice");
    assert_eq!(nightly["pause"]["note"], "migrating the warehouse");
    let shown: DateTime<Utc> = nightly["pause"]["until"].as_str().unwrap().parse().unwrap();
    assert!((shown - until).abs() < TimeDelta::milliseconds(1));
    assert!(nightly["pause"]["since"].is_string());

    // A token limited to one agent sees that agent's job only.
    let limited = app.token_for(&[Scope::Read], Some(&["hourly"]));
    let (_, body) = app.get_with("/jobs", Some(&limited)).await;
    assert_eq!(body["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(body["jobs"][0]["job"], "hourly");
}

async fn pause_resume_and_the_audit_log(db: Db) {
    let app = TestApp::spawn(db).await;
    publish(&app, &[("nightly", "0 3 * * *")]).await;
    let op = operator(&app);

    let (status, _) = act(&app, &op, "/jobs/nightly/pause", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, again) = act(
        &app,
        &op,
        "/jobs/nightly/pause",
        Some(json!({"note": "longer"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["note"], "longer");
    // One pause, re-noted, not two.
    assert_eq!(
        app.db
            .scalar::<i64>("select count(*) from job_pauses")
            .await,
        1
    );
    let (status, _) = act(
        &app,
        &op,
        "/jobs/nightly/resume",
        Some(json!({"note": "done"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = app.get("/jobs").await;
    assert!(body["jobs"][0].get("pause").is_none(), "{body}");
    let (status, body) = act(&app, &op, "/jobs/nightly/resume", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "not_paused");

    let (status, audit) = app.get("/audit").await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let entries = audit["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["resume", "pause", "pause"]);
    assert!(
        entries
            .iter()
            .all(|e| e["actor"] == "alice" && e["job"] == "nightly")
    );
    assert_eq!(entries[0]["note"], "done");
    let (_, page) = app
        .get(&format!("/audit?limit=1&before={}", entries[0]["id"]))
        .await;
    assert_eq!(page["entries"][0]["id"], entries[1]["id"]);

    // A pause with an end ends by itself: resumed as far as every reader is concerned.
    let soon = Utc::now() + TimeDelta::milliseconds(700);
    let (status, _) = act(
        &app,
        &op,
        "/jobs/nightly/pause",
        Some(json!({"until": soon.to_rfc3339()})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let (_, body) = app.get("/jobs").await;
    assert!(body["jobs"][0].get("pause").is_none(), "{body}");
    let (status, _) = act(&app, &op, "/jobs/nightly/resume", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // And the job may be paused again.
    let (status, _) = act(&app, &op, "/jobs/nightly/pause", None).await;
    assert_eq!(status, StatusCode::OK);
}

async fn acting_needs_the_operate_scope(db: Db) {
    let app = TestApp::spawn(db).await;
    publish(&app, &[("nightly", "0 3 * * *")]).await;
    let (_, started) = app
        .post_start(&start("nightly", Uuid::new_v4(), "replica-1"))
        .await;
    let run = started["run_id"].as_i64().unwrap();
    let before = operated(&app.db).await;
    // The test's own token: ingest and read, no operate.
    for path in [
        "/jobs/nightly/pause".to_owned(),
        "/jobs/nightly/resume".to_owned(),
        "/jobs/nightly/runs".to_owned(),
        format!("/runs/{run}/cancel"),
    ] {
        let (status, body) = act(&app, &app.token, &path, Some(json!({}))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        // The scope before the body.
        let (status, _) = app
            .post_raw_to(&path, "{not json", "application/json", Some(&app.token))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        let (status, _) = act(&app, "not-a-token", &path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    // An operate token without read reads nothing.
    let op_only = app.token_for(&[Scope::Operate], None);
    for path in ["/jobs", "/audit"] {
        let (status, _) = app.get_with(path, Some(&op_only)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(operated(&app.db).await, before);
}

async fn bad_input_is_refused_and_changes_nothing(db: Db) {
    let app = TestApp::spawn(db).await;
    publish(&app, &[("nightly", "0 3 * * *")]).await;
    let key = Uuid::new_v4();
    let (_, started) = app.post_start(&start("nightly", key, "replica-1")).await;
    let running = started["run_id"].as_i64().unwrap();
    let (status, _) = app
        .post_report(&crate::lifecycle::finished("nightly", key))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let ended = running;
    let op = operator(&app);
    let before = (operated(&app.db).await, app.row_counts().await);
    let past = (Utc::now() - TimeDelta::minutes(1)).to_rfc3339();
    let long_note = "n".repeat(1001);
    let until_past = format!(r#"{{"until": "{past}"}}"#);
    let note_long = format!(r#"{{"note": "{long_note}"}}"#);
    let cases: Vec<(String, Option<&str>, StatusCode, &str, &str)> = vec![
        (
            "/jobs/nobody/pause".into(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
            "",
        ),
        (
            "/jobs/nobody/runs".into(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
            "",
        ),
        (
            "/jobs/bad%20name/pause".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "job",
        ),
        (
            "/jobs/nightly/pause".into(),
            Some(&until_past),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "until",
        ),
        (
            "/jobs/nightly/pause".into(),
            Some(r#"{"until": "tomorrow"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "until",
        ),
        (
            "/jobs/nightly/pause".into(),
            Some(&note_long),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "note",
        ),
        (
            "/jobs/nightly/pause".into(),
            Some("{not json"),
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "",
        ),
        (
            "/jobs/nightly/pause".into(),
            Some(r#"{"unknown": 1}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "",
        ),
        (
            "/jobs/nightly/runs".into(),
            Some(r#"{"params": [1, 2]}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "params",
        ),
        (
            "/jobs/nightly/runs".into(),
            Some(r#"{"params": "n=1"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "params",
        ),
        (
            format!("/runs/{ended}/cancel"),
            None,
            StatusCode::CONFLICT,
            "run_ended",
            "",
        ),
        (
            "/runs/999999/cancel".into(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
            "",
        ),
        (
            "/runs/abc/cancel".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid_path",
            "",
        ),
    ];
    for (path, body, expected, code, field) in cases {
        let (status, answer) = app
            .post_raw_to(&path, body.unwrap_or(""), "application/json", Some(&op))
            .await;
        assert_eq!(status, expected, "{path} {body:?}: {answer}");
        assert_eq!(error_code(&answer), code, "{path} {body:?}: {answer}");
        if !field.is_empty() {
            assert_eq!(error_field(&answer), field, "{path} {body:?}: {answer}");
        }
    }
    assert_eq!((operated(&app.db).await, app.row_counts().await), before);
}

async fn a_scheduler_is_told_pauses_runs_and_its_cancels(db: Db) {
    let app = TestApp::spawn(db).await;
    publish(&app, &[("nightly", "0 3 * * *"), ("hourly", "0 * * * *")]).await;
    let op = operator(&app);
    let commands = |claimant: &'static str| {
        let app = &app;
        async move {
            let (status, body) = app
                .get(&format!("/scheduler/commands?claimant={claimant}"))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body
        }
    };
    let idle = commands("replica-1").await;
    assert_eq!(idle, json!({"paused": [], "runs": [], "cancels": []}));

    let (status, _) = act(&app, &op, "/jobs/nightly/pause", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, asked) = act(
        &app,
        &op,
        "/jobs/nightly/runs",
        Some(json!({"params": {"day": "2026-12-01"}, "note": "rerun"})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{asked}");
    let manual: Uuid = asked["run_key"].as_str().unwrap().parse().unwrap();
    let hourly_key = Uuid::new_v4();
    let (_, started) = app
        .post_start(&start("hourly", hourly_key, "replica-1"))
        .await;
    let hourly_run = started["run_id"].as_i64().unwrap();
    let (status, _) = act(
        &app,
        &op,
        &format!("/runs/{hourly_run}/cancel"),
        Some(json!({"note": "stuck on a lock"})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let told = commands("replica-1").await;
    assert_eq!(told["paused"], json!([{"job": "nightly"}]));
    assert_eq!(
        told["runs"],
        json!([{"job": "nightly", "run_key": manual, "params": {"day": "2026-12-01"}}])
    );
    assert_eq!(
        told["cancels"],
        json!([{"job": "hourly", "run_key": hourly_key, "reason": "cancelled by alice: stuck on a lock"}])
    );
    // Another replica is told the pauses and the runs, not the first one's cancels.
    let other = commands("replica-2").await;
    assert_eq!(other["paused"], told["paused"]);
    assert_eq!(other["runs"], told["runs"]);
    assert_eq!(other["cancels"], json!([]));
    // A scheduler token limited to other agents is told nothing of these jobs.
    let limited = app.token_for(&[Scope::Ingest], Some(&["other"]));
    let (_, body) = app
        .get_with("/scheduler/commands?claimant=replica-1", Some(&limited))
        .await;
    assert_eq!(body, json!({"paused": [], "runs": [], "cancels": []}));

    // The manual run started (its claim): no longer offered.
    let mut manual_start = start("nightly", manual, "replica-2");
    manual_start["trigger"] = json!("manual");
    manual_start["scheduled_for"] = Value::Null;
    let (status, _) = app.post_start(&manual_start).await;
    assert_eq!(status, StatusCode::CREATED);
    // The cancelled run reports: cancelled, with the reason it was told.
    let mut cancelled = crate::lifecycle::finished("hourly", hourly_key);
    cancelled["error"] = json!("cancelled by alice: stuck on a lock");
    cancelled["cancelled"] = json!(true);
    let (status, body) = app.post_report(&cancelled).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let told = commands("replica-1").await;
    assert_eq!(told["runs"], json!([]));
    assert_eq!(told["cancels"], json!([]));
    let (status, body) = app.get(&format!("/runs?run_key={hourly_key}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["runs"][0]["status"], "cancelled");
    assert_eq!(
        body["runs"][0]["error_message"],
        "cancelled by alice: stuck on a lock"
    );
    let (_, body) = app.get(&format!("/runs?run_key={manual}")).await;
    assert_eq!(body["runs"][0]["trigger"], "manual");

    let (_, audit) = app.get("/audit").await;
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries[0]["action"], "cancel");
    assert_eq!(entries[0]["run_key"], json!(hourly_key));
    assert_eq!(entries[1]["action"], "run");
    assert_eq!(
        entries[1]["details"],
        json!({"params": {"day": "2026-12-01"}})
    );
    assert_eq!(entries[1]["note"], "rerun");
}

/// A run asked for that no replica starts (no scheduler runs the job any more) is offered for
/// `RUN_COMMAND_TTL`, a backfill's slots for `BACKFILL_TTL`, then dropped.
async fn a_run_nobody_starts_is_dropped_after_a_while(db: Db) {
    let app = TestApp::spawn(db).await;
    publish(&app, &[("nightly", "0 3 * * *")]).await;
    let (status, _) = act(&app, &operator(&app), "/jobs/nightly/runs", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let store = app.db.store();
    let everyone = collector::store::AgentAccess::default();
    let told = |at: DateTime<Utc>| {
        let (store, everyone) = (&store, &everyone);
        async move {
            store
                .commands_for("replica-1", everyone, at)
                .await
                .unwrap()
                .runs
                .len()
        }
    };
    let ttl = collector::store::RUN_COMMAND_TTL;
    assert_eq!(told(Utc::now() + ttl - TimeDelta::minutes(1)).await, 1);
    assert_eq!(told(Utc::now() + ttl + TimeDelta::seconds(1)).await, 0);
    // A backfill's slots nobody runs are offered for BACKFILL_TTL.
    let to = Utc::now() - TimeDelta::hours(1);
    let (status, body) = act(
        &app,
        &operator(&app),
        "/jobs/nightly/backfill",
        Some(json!({"from": (to - TimeDelta::days(3)).to_rfc3339(), "to": to.to_rfc3339()})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let ttl = collector::store::BACKFILL_TTL;
    assert_eq!(told(Utc::now() + ttl - TimeDelta::minutes(1)).await, 1);
    assert_eq!(told(Utc::now() + ttl + TimeDelta::seconds(1)).await, 0);
}

async fn a_run_now_under_forbid_names_the_running_run(db: Db) {
    let app = TestApp::spawn(db).await;
    publish(&app, &[("nightly", "0 3 * * *")]).await;
    let op = operator(&app);
    let key = Uuid::new_v4();
    let mut exclusive = start("nightly", key, "replica-1");
    exclusive["exclusive"] = json!("nightly");
    let (_, started) = app.post_start(&exclusive).await;
    let before = operated(&app.db).await;
    let (status, body) = act(&app, &op, "/jobs/nightly/runs", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "job_running");
    assert_eq!(body["error"]["details"]["run_id"], started["run_id"]);
    assert_eq!(body["error"]["details"]["run_key"], json!(key));
    assert_eq!(operated(&app.db).await, before);
    // Once it ended, a run may be asked for.
    let (status, _) = app
        .post_report(&crate::lifecycle::finished("nightly", key))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = act(&app, &op, "/jobs/nightly/runs", None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

async fn a_cancelled_run_counts_as_neither_success_nor_failure(db: Db) {
    let app = TestApp::spawn(db).await;
    let now = Utc::now();
    // Two failures, then a cancelled run: the failures' incident is the rules' business; the
    // cancelled one is not a third failure.
    let rules = collector::watch::WatchRules {
        failing_after: 1,
        ..Default::default()
    };
    let mut cancelled = crate::helpers::report_at("etl", now - TimeDelta::minutes(1), 5);
    cancelled["error"] = json!("cancelled by alice");
    cancelled["cancelled"] = json!(true);
    let (status, body) = app.post_report(&cancelled).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let counts: (i64, i64, i64, String) = app
        .db
        .row(
            "select run_count, success_count, failure_count, last_status \
             from agent_daily_summaries where agent_name = 'etl'",
        )
        .await;
    assert_eq!(counts, (1, 0, 0, "cancelled".to_owned()));
    app.watch_with(now, rules).await;
    assert_eq!(
        app.db
            .scalar::<i64>("select count(*) from incidents where kind = 'failing'")
            .await,
        0
    );
    app.assert_agents_agree_with_summaries().await;

    // Cancelled says who and why: without an error it is refused.
    let mut silent = crate::helpers::report("etl");
    silent["cancelled"] = json!(true);
    let before = app.row_counts().await;
    let (status, body) = app.post_report(&silent).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_field(&body), "error");
    assert_eq!(app.row_counts().await, before);
}

async fn a_paused_jobs_slots_are_skipped_not_missed(db: Db) {
    let app = TestApp::spawn(db).await;
    publish(&app, &[("minutely", "* * * * *")]).await;
    let op = operator(&app);
    let until = Utc::now() + TimeDelta::minutes(5);
    let (status, _) = act(
        &app,
        &op,
        "/jobs/minutely/pause",
        Some(json!({"until": until.to_rfc3339()})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Half an hour on, nothing ran: the slots of the pause were skipped; those after it missed.
    app.watch_at(Utc::now() + TimeDelta::minutes(30)).await;
    let slots: Vec<(DateTime<Utc>,)> = app
        .db
        .rows("select slot from missed_slots where agent_name = 'minutely' order by slot")
        .await;
    assert!(!slots.is_empty());
    assert!(slots.iter().all(|(slot,)| *slot >= until), "{slots:?}");
    // Each minute after the pause's end, and before it none.
    let first = slots[0].0;
    assert!(first - until < TimeDelta::minutes(1), "{first} {until}");
}

async fn a_paused_job_opens_no_incident(db: Db) {
    let app = TestApp::spawn(db).await;
    publish(&app, &[("minutely", "* * * * *")]).await;
    let op = operator(&app);
    let (status, _) = act(&app, &op, "/jobs/minutely/pause", None).await;
    assert_eq!(status, StatusCode::OK);
    // Two hours on, nothing ran: paused all along, so no slot missed and nothing stale.
    let watched = app.watch_at(Utc::now() + TimeDelta::hours(2)).await;
    assert_eq!((watched.missed, watched.opened), (0, 0), "{watched:?}");
    assert_eq!(
        app.db.scalar::<i64>("select count(*) from incidents").await,
        0
    );
}

/// A backfill over ten hourly slots of which two ran: eight asked for, offered oldest first at
/// most `max_parallel` at a time; asked again, none; bad ranges refused.
async fn a_backfill_asks_for_the_slots_that_did_not_run(db: Db) {
    let app = TestApp::spawn(db).await;
    publish(&app, &[("hourly", "0 * * * *")]).await;
    let op = operator(&app);
    let last = Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap() - TimeDelta::hours(1);
    let first = last - TimeDelta::hours(9);
    // Two slots ran, under their slots' keys (as the scheduler keys them).
    for ran in [first + TimeDelta::hours(2), first + TimeDelta::hours(5)] {
        let mut report = crate::helpers::report_at("hourly", ran, 5);
        report["run_key"] = json!(agent_sdk::cron::run_key_of("hourly", ran));
        report["trigger"] = json!("schedule");
        report["scheduled_for"] = json!(ran.to_rfc3339());
        let (status, body) = app.post_report(&report).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let range = json!({"from": first.to_rfc3339(), "to": last.to_rfc3339(), "max_parallel": 3, "note": "outage"});
    let (status, body) = act(&app, &op, "/jobs/hourly/backfill", Some(range.clone())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({"slots": 8}));

    let told = |claimant: &'static str| {
        let app = &app;
        async move {
            let (_, body) = app
                .get(&format!("/scheduler/commands?claimant={claimant}"))
                .await;
            body["runs"].as_array().unwrap().clone()
        }
    };
    let offered = told("replica-1").await;
    let slots: Vec<DateTime<Utc>> = offered
        .iter()
        .map(|r| r["scheduled_for"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        slots,
        [
            first,
            first + TimeDelta::hours(1),
            first + TimeDelta::hours(3)
        ],
        "the oldest three not run"
    );
    for run in &offered {
        let slot: DateTime<Utc> = run["scheduled_for"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            run["run_key"],
            json!(agent_sdk::cron::run_key_of("hourly", slot))
        );
    }
    // One of them starts: two more may, still three at once.
    let mut started = start(
        "hourly",
        offered[0]["run_key"].as_str().unwrap().parse().unwrap(),
        "replica-1",
    );
    started["trigger"] = json!("backfill");
    started["scheduled_for"] = json!(first.to_rfc3339());
    let (status, _) = app.post_start(&started).await;
    assert_eq!(status, StatusCode::CREATED);
    let offered = told("replica-2").await;
    assert_eq!(offered.len(), 2, "{offered:?}");
    assert_eq!(
        offered[0]["scheduled_for"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        first + TimeDelta::hours(1)
    );

    // Asked again: every slot ran or is asked for already.
    let (status, body) = act(&app, &op, "/jobs/hourly/backfill", Some(range)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({"slots": 0}));
    let (_, audit) = app.get("/audit?job=hourly").await;
    assert_eq!(audit["entries"][0]["action"], "backfill");
    assert_eq!(audit["entries"][0]["details"]["slots"], 0);
    assert_eq!(audit["entries"][1]["details"]["slots"], 8);
    assert_eq!(audit["entries"][1]["note"], "outage");

    // Bad ranges: refused, nothing written.
    let before = operated(&app.db).await;
    let now = Utc::now();
    for (body, field) in [
        (
            json!({"from": last.to_rfc3339(), "to": first.to_rfc3339()}),
            "to",
        ),
        (
            json!({"from": first.to_rfc3339(), "to": (now + TimeDelta::hours(2)).to_rfc3339()}),
            "to",
        ),
        // 1 001 hourly slots.
        (
            json!({"from": (last - TimeDelta::hours(1000)).to_rfc3339(), "to": last.to_rfc3339()}),
            "to",
        ),
        (
            json!({"from": first.to_rfc3339(), "to": last.to_rfc3339(), "max_parallel": 0}),
            "max_parallel",
        ),
        (
            json!({"from": first.to_rfc3339(), "to": last.to_rfc3339(), "max_parallel": 101}),
            "max_parallel",
        ),
        (json!({"from": first.to_rfc3339()}), "to"),
    ] {
        let (status, answer) = act(&app, &op, "/jobs/hourly/backfill", Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(error_field(&answer), field, "{body}: {answer}");
    }
    // A long range within the bound (990 slots) is taken.
    let (status, body) = act(
        &app,
        &op,
        "/jobs/hourly/backfill",
        Some(json!({"from": (last - TimeDelta::hours(999)).to_rfc3339(), "to": (first - TimeDelta::hours(1)).to_rfc3339()})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({"slots": 990}));
    let (_, _, audits) = operated(&app.db).await;
    assert_eq!(audits, before.2 + 1);
    let (status, _) = act(
        &app,
        &op,
        "/jobs/nobody/backfill",
        Some(json!({"from": first.to_rfc3339(), "to": last.to_rfc3339()})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A job's catchup window and jitter, as its scheduler published them, in `GET /jobs`; bad ones
/// are refused naming the job's field.
async fn jobs_show_their_catchup_window_and_jitter(db: Db) {
    let app = TestApp::spawn(db).await;
    let put = |jobs: Value| app.publish_jobs(jobs);
    let (status, body) = put(json!([
        {"job": "a", "cron": "0 * * * *", "timezone": "UTC", "enabled": true,
         "catchup_window": "10m", "jitter": "30s"},
        {"job": "b", "cron": "0 * * * *", "timezone": "UTC", "enabled": true},
    ]))
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = app.get("/jobs").await;
    assert_eq!(body["jobs"][0]["catchup_window"], "10m");
    assert_eq!(body["jobs"][0]["jitter"], "30s");
    assert_eq!(body["jobs"][1]["catchup_window"], "latest");
    assert!(body["jobs"][1].get("jitter").is_none(), "{body}");
    // Published again without them: back to the defaults.
    let (status, _) = put(json!([
        {"job": "a", "cron": "0 * * * *", "timezone": "UTC", "enabled": true},
    ]))
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = app.get("/jobs").await;
    assert_eq!(body["jobs"][0]["catchup_window"], "latest");
    for (field, value) in [("catchup_window", "soon"), ("jitter", "a bit")] {
        let mut job = json!({"job": "a", "cron": "0 * * * *", "timezone": "UTC", "enabled": true});
        job[field] = json!(value);
        let (status, body) = put(json!([job])).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(error_field(&body), format!("jobs[0].{field}"));
    }
}

/// A job with `pause_after_failures = 3`: three failed runs in a row pause it (by `scheduler`,
/// audited, a `paused` incident); resumed, the same failures do not pause it again and the
/// incident resolves; three more failures do.
async fn a_job_pauses_itself_after_failed_runs_in_a_row(db: Db) {
    let app = TestApp::spawn(db).await;
    let (status, body) = app
        .publish_jobs(
            json!([{"job": "flaky", "cron": "0 * * * *", "timezone": "UTC",
                              "enabled": true, "pause_after_failures": 3}]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, jobs) = app.get("/jobs").await;
    assert_eq!(jobs["jobs"][0]["pause_after_failures"], 3);
    let pauses = "select count(*) from job_pauses where job = 'flaky'";
    // A failed run that started `minutes_ago` (0: now), then a watcher pass.
    let fail = |minutes_ago: i64| {
        let app = &app;
        async move {
            app.push(
                "flaky",
                Utc::now() - TimeDelta::minutes(minutes_ago),
                Some("boom"),
            )
            .await;
            app.watch_at(Utc::now()).await;
        }
    };
    fail(30).await;
    fail(29).await;
    assert_eq!(
        app.db.scalar::<i64>(pauses).await,
        0,
        "two failures: not yet"
    );
    fail(28).await;
    let (_, jobs) = app.get("/jobs").await;
    assert_eq!(jobs["jobs"][0]["pause"]["paused_by"], "scheduler", "{jobs}");
    let (kind, resolved): (String, Option<DateTime<Utc>>) = app
        .db
        .row("select kind, resolved_at from incidents where kind = 'paused'")
        .await;
    assert_eq!((kind.as_str(), resolved), ("paused", None));
    let (_, audit) = app.get("/audit?job=flaky").await;
    assert_eq!(audit["entries"][0]["actor"], "scheduler");
    assert_eq!(audit["entries"][0]["action"], "pause");
    assert_eq!(audit["entries"][0]["details"], json!({"after_failures": 3}));

    // Resumed: the incident resolves, and the same failures do not pause it again.
    let (status, _) = act(&app, &operator(&app), "/jobs/flaky/resume", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    app.watch_at(Utc::now()).await;
    let open: i64 = app
        .db
        .scalar("select count(*) from incidents where kind = 'paused' and resolved_at is null")
        .await;
    assert_eq!(open, 0);
    fail(0).await;
    fail(0).await;
    assert_eq!(
        app.db.scalar::<i64>(pauses).await,
        1,
        "two failures since the resume"
    );
    // A third since the resume: paused again.
    fail(0).await;
    assert_eq!(app.db.scalar::<i64>(pauses).await, 2);
    let (_, jobs) = app.get("/jobs").await;
    assert_eq!(jobs["jobs"][0]["pause"]["paused_by"], "scheduler");
}

/// A cancelled run is neither a success nor a failure: it breaks a run of failed runs, and a job
/// with `pause_after_failures` needs that many failures after it.
async fn a_cancelled_run_breaks_a_run_of_failures(db: Db) {
    let app = TestApp::spawn(db).await;
    let (status, body) = app
        .publish_jobs(
            json!([{"job": "flaky", "cron": "0 * * * *", "timezone": "UTC",
                              "enabled": true, "pause_after_failures": 2}]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let pauses = "select count(*) from job_pauses where job = 'flaky'";
    let now = Utc::now();
    app.push("flaky", now - TimeDelta::minutes(10), Some("boom"))
        .await;
    let mut cancelled = crate::helpers::report_at("flaky", now - TimeDelta::minutes(9), 5);
    cancelled["error"] = json!("cancelled by alice");
    cancelled["cancelled"] = json!(true);
    let (status, body) = app.post_report(&cancelled).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.push("flaky", now - TimeDelta::minutes(8), Some("boom"))
        .await;
    app.watch_at(Utc::now()).await;
    assert_eq!(
        app.db.scalar::<i64>(pauses).await,
        0,
        "failed, cancelled, failed: not two in a row"
    );
    app.push("flaky", now - TimeDelta::minutes(7), Some("boom"))
        .await;
    app.watch_at(Utc::now()).await;
    assert_eq!(app.db.scalar::<i64>(pauses).await, 1, "two in a row");
}

on_both_backends!(
    a_cancelled_run_breaks_a_run_of_failures,
    a_job_pauses_itself_after_failed_runs_in_a_row,
    jobs_show_their_catchup_window_and_jitter,
    a_backfill_asks_for_the_slots_that_did_not_run,
    jobs_show_their_slot_runs_and_pause,
    pause_resume_and_the_audit_log,
    acting_needs_the_operate_scope,
    bad_input_is_refused_and_changes_nothing,
    a_scheduler_is_told_pauses_runs_and_its_cancels,
    a_run_now_under_forbid_names_the_running_run,
    a_run_nobody_starts_is_dropped_after_a_while,
    a_cancelled_run_counts_as_neither_success_nor_failure,
    a_paused_jobs_slots_are_skipped_not_missed,
    a_paused_job_opens_no_incident,
);
