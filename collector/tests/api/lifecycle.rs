//! POST /runs: a run is `running` from its start until its report completes it, counted once;
//! one claimant holds a run_key; bad starts change nothing.

use chrono::{TimeDelta, Utc};
use collector::auth::Scope;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Db, TestApp, error_field, on_both_backends};

pub(crate) fn start(agent: &str, key: Uuid, claimant: &str) -> Value {
    let now = Utc::now();
    json!({
        "agent_name": agent,
        "run_key": key,
        "started_at": (now - TimeDelta::seconds(5)).to_rfc3339(),
        "trigger": "schedule",
        "scheduled_for": (now - TimeDelta::seconds(5)).to_rfc3339(),
        "host": "host-a",
        "claimant": claimant,
        "deadline": (now + TimeDelta::minutes(10)).to_rfc3339(),
    })
}

pub(crate) fn finished(agent: &str, key: Uuid) -> Value {
    let now = Utc::now();
    json!({
        "agent_name": agent,
        "run_key": key,
        "started_at": (now - TimeDelta::seconds(5)).to_rfc3339(),
        "finished_at": now.to_rfc3339(),
        "metrics": {"items": 3},
        "trigger": "schedule",
        "host": "host-a",
    })
}

impl TestApp {
    /// (run_count, success_count) of the agent's summaries, all days.
    async fn counted(&self, agent: &str) -> (i64, i64) {
        self.db
            .row(&format!(
                "select cast(coalesce(sum(run_count), 0) as bigint), cast(coalesce(sum(success_count), 0) as bigint)
                 from agent_daily_summaries where agent_name = '{agent}'"
            ))
            .await
    }
}

async fn a_started_run_is_running_until_its_report_completes_it_once(db: Db) {
    let app = TestApp::spawn(db).await;
    // An earlier finished run, so that the agent has a summary row for /agents.
    let (status, _) = app
        .post_report(&finished("lifecycle", Uuid::new_v4()))
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let key = Uuid::new_v4();
    let (status, body) = app
        .post_start(&start("lifecycle", key, "scheduler-1"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let run_id = body["run_id"].as_i64().unwrap();

    // Visible as running, in the API and the database, and counted in no summary yet.
    let (_, page) = app.get("/runs?status=running").await;
    let runs = page["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{page}");
    assert_eq!(runs[0]["id"], run_id);
    assert_eq!(runs[0]["status"], "running");
    assert!(runs[0]["finished_at"].is_null());
    let (claimant, deadline_set): (Option<String>, bool) = app
        .db
        .row(&format!(
            "select claimant, deadline is not null from agent_runs where id = {run_id}"
        ))
        .await;
    assert_eq!(claimant.as_deref(), Some("scheduler-1"));
    assert!(deadline_set);
    assert_eq!(app.counted("lifecycle").await, (1, 1));
    let (_, agents) = app.get("/agents").await;
    assert_eq!(agents["agents"][0]["running"], 1, "{agents}");
    assert!(agents["agents"][0]["running_since"].is_string(), "{agents}");

    // The report completes that row: the same id, finished, its metrics, counted once.
    let report = finished("lifecycle", key);
    let (status, body) = app.post_report(&report).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["run_id"], run_id);
    let (status, finished_set, metrics): (String, bool, i64) = app
        .db
        .row(&format!(
            "select status, finished_at is not null, (select count(*) from agent_metrics where run_id = {run_id})
             from agent_runs where id = {run_id}"
        ))
        .await;
    assert_eq!(
        (status.as_str(), finished_set, metrics),
        ("success", true, 1)
    );
    assert_eq!(app.counted("lifecycle").await, (2, 2));
    let (_, page) = app.get("/runs?status=running").await;
    assert_eq!(page["runs"].as_array().unwrap().len(), 0, "{page}");
    let (_, agents) = app.get("/agents").await;
    assert_eq!(agents["agents"][0]["running"], 0, "{agents}");

    // Delivered again (a retry, the spool): the same run, nothing counted twice.
    let (status, body) = app.post_report(&report).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["run_id"], run_id);
    assert_eq!(app.counted("lifecycle").await, (2, 2));
    assert_eq!(app.row_counts().await.0, 2);
}

async fn one_claimant_holds_a_run_key(db: Db) {
    let app = TestApp::spawn(db).await;
    let key = Uuid::new_v4();
    let (status, body) = app.post_start(&start("claimed", key, "scheduler-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let run_id = body["run_id"].as_i64().unwrap();

    // The same claimant again (a retried request): harmless.
    let (status, body) = app.post_start(&start("claimed", key, "scheduler-1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["run_id"], run_id);

    // Another claimant: refused, told who holds it.
    let (status, body) = app.post_start(&start("claimed", key, "scheduler-2")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "run_claimed");
    assert_eq!(
        body["error"]["details"],
        json!({"run_id": run_id, "status": "running", "host": "host-a", "claimant": "scheduler-1"})
    );

    // Finished: nobody may start it again, not even its claimant.
    let (status, _) = app.post_report(&finished("claimed", key)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = app.post_start(&start("claimed", key, "scheduler-1")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["details"]["status"], "success");
    assert_eq!(app.row_counts().await.0, 1);
}

/// Keys are an agent's own: a token limited to `intruder` that starts runs under `owner`'s
/// next slot key and `forbid` key, and reports under its running run's key, takes nothing from
/// `owner` and learns nothing of its runs (before, owner's start was refused and the 409 named
/// its run, host and claimant).
async fn another_agents_keys_are_other_runs(db: Db) {
    let app = TestApp::spawn(db).await;
    let intruder = app.token_for(&[Scope::Ingest], Some(&["intruder"]));
    let as_intruder = async |path: &str, body: &Value| {
        app.post_raw_to(path, &body.to_string(), "application/json", Some(&intruder))
            .await
    };
    let (slot_key, running_key) = (Uuid::new_v4(), Uuid::new_v4());
    let mut held = start("intruder", slot_key, "intruder-1");
    held["exclusive"] = json!("owner-job");
    let (status, body) = as_intruder("/runs", &held).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Under owner's name, its token refuses it.
    let (status, body) = as_intruder("/runs", &start("owner", Uuid::new_v4(), "intruder-1")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Owner's scheduler starts its slot (same key, same exclusive key): its own run.
    let mut slot = start("owner", slot_key, "scheduler-1");
    slot["exclusive"] = json!("owner-job");
    let (status, body) = app.post_start(&slot).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let owner_run = body["run_id"].clone();
    assert_eq!(
        app.post_start(&start("owner", running_key, "scheduler-1"))
            .await
            .0,
        StatusCode::CREATED
    );

    // A report of intruder under owner's running key is intruder's run, and completes nothing
    // of owner's.
    let (status, body) = as_intruder("/metrics", &finished("intruder", running_key)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app.post_batch(vec![finished("intruder", slot_key)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][0]["status"], 201, "{body}");
    let owners: Vec<(String,)> = app
        .db
        .rows("select status from agent_runs where agent_name = 'owner' order by id")
        .await;
    assert_eq!(owners, [("running".to_owned(),), ("running".to_owned(),)]);

    // Owner's report completes owner's run under the key both agents used.
    let (status, body) = app.post_report(&finished("owner", slot_key)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["run_id"], owner_run);
    let (status, body) = app.get("/runs?agent_name=owner").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let statuses: Vec<&str> = body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "success").count(),
        1,
        "{body}"
    );
    assert_eq!(app.counted("owner").await, (1, 1));
    assert_eq!(app.counted("intruder").await, (2, 2));
}

/// A start's deadline is bounded (7 days), and one without gets 24 hours: no run holds its
/// slot or its exclusive key for ever.
async fn a_start_has_a_bounded_deadline(db: Db) {
    let app = TestApp::spawn(db).await;
    let mut far = start("bounded", Uuid::new_v4(), "scheduler-1");
    let started = Utc::now() - TimeDelta::seconds(5);
    far["started_at"] = json!(started.to_rfc3339());
    far["deadline"] = json!((started + TimeDelta::days(7) + TimeDelta::seconds(1)).to_rfc3339());
    let (status, body) = app.post_start(&far).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_field(&body), "deadline", "{body}");
    assert_eq!(app.row_counts().await.0, 0);

    let mut open = start("bounded", Uuid::new_v4(), "scheduler-1");
    open["started_at"] = json!(started.to_rfc3339());
    open.as_object_mut().unwrap().remove("deadline");
    let (status, body) = app.post_start(&open).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let deadline: chrono::DateTime<Utc> = app.db.scalar("select deadline from agent_runs").await;
    // Stored to the microsecond.
    assert!(
        (deadline - started - TimeDelta::hours(24)).abs() < TimeDelta::milliseconds(1),
        "{deadline} for a start at {started}"
    );
}

async fn bad_starts_get_a_clear_4xx_and_change_nothing(db: Db) {
    let app = TestApp::spawn(db).await;
    let key = Uuid::new_v4();
    let post = |body: String, token: Option<String>| {
        let app = &app;
        async move {
            app.post_raw_to("/runs", &body, "application/json", token.as_deref())
                .await
        }
    };
    let token = Some(app.token.clone());

    let (status, body) = post("{\"agent_name\":".into(), token.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let mut no_claimant = start("bad", key, "x");
    no_claimant.as_object_mut().unwrap().remove("claimant");
    let (status, body) = post(no_claimant.to_string(), token.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let mut empty_claimant = start("bad", key, "");
    let (status, body) = post(empty_claimant.to_string(), token.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_field(&body), "claimant");

    empty_claimant["claimant"] = json!("x");
    empty_claimant["deadline"] = json!((Utc::now() - TimeDelta::hours(1)).to_rfc3339());
    let (status, body) = post(empty_claimant.to_string(), token.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_field(&body), "deadline");

    let mut long_name = start("bad", key, "x");
    long_name["agent_name"] = json!("a".repeat(101));
    let (status, _) = post(long_name.to_string(), token.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let mut wrong_type = start("bad", key, "x");
    wrong_type["run_key"] = json!(42);
    let (status, _) = post(wrong_type.to_string(), token.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let good = start("bad", key, "x").to_string();
    let (status, _) = post(good.clone(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post(good.clone(), Some("forged.token.here".into())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let read_only = app.token_for(&[Scope::Read], None);
    let (status, _) = post(good.clone(), Some(read_only)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let elsewhere = app.token_for(&[Scope::Ingest], Some(&["other"]));
    let (status, _) = post(good, Some(elsewhere)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    assert_eq!(app.row_counts().await, (0, 0, 0, 0));
}

async fn a_reused_run_key_with_another_report_is_refused(db: Db) {
    let app = TestApp::spawn(db).await;
    let key = Uuid::new_v4();
    let report = json!({
        "agent_name": "keyed", "run_key": key,
        "started_at": "2026-02-19T10:00:00Z", "finished_at": "2026-02-19T10:00:01.5Z",
        "metrics": {"price": 12.50, "big": 1.5e3, "label": "ok"},
    });
    let (status, body) = app.post_report(&report).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let run_id = body["run_id"].clone();
    let before = (app.row_counts().await, app.counted("keyed").await);

    // The same report again, its metrics in another order: the same run.
    let reordered = json!({
        "metrics": {"label": "ok", "big": 1.5e3, "price": 12.50},
        "agent_name": "keyed", "run_key": key,
        "started_at": "2026-02-19T10:00:00Z", "finished_at": "2026-02-19T10:00:01.5Z",
    });
    let (status, body) = app.post_report(&reordered).await;
    assert_eq!(
        (status, &body["run_id"]),
        (StatusCode::OK, &run_id),
        "{body}"
    );

    // Another report under the key: refused, whatever differs (but the agent: a key is unique
    // per agent, another_agents_keys_are_other_runs).
    let mut variants = Vec::new();
    for (field, value) in [
        (
            "metrics",
            json!({"price": 12.51, "big": 1.5e3, "label": "ok"}),
        ),
        ("metrics", json!({"price": 12.50, "big": 1.5e3})),
        ("error", json!("it failed after all")),
        ("finished_at", json!("2026-02-19T10:00:02Z")),
        ("started_at", json!("2026-02-19T09:00:00Z")),
    ] {
        let mut other = report.clone();
        other[field] = value;
        variants.push(other);
    }
    for other in &variants {
        let (status, body) = app.post_report(other).await;
        assert_eq!(status, StatusCode::CONFLICT, "{other}: {body}");
        assert_eq!(body["error"]["code"], "run_key_reused");
    }
    let (status, body) = app
        .post_batch(vec![report.clone(), variants[0].clone()])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["results"][0]["status"], 200, "{body}");
    assert_eq!(body["results"][1]["status"], 409, "{body}");

    // Within one batch: the first report with a new key is stored, a different second refused.
    let fresh = Uuid::new_v4();
    let mut first = report.clone();
    first["run_key"] = json!(fresh);
    let mut second = first.clone();
    second["error"] = json!("no");
    let (_, body) = app
        .post_batch(vec![first.clone(), first.clone(), second])
        .await;
    let statuses: Vec<&Value> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["status"])
        .collect();
    assert_eq!(statuses, [&json!(201), &json!(200), &json!(409)], "{body}");

    let (rows, counted) = (app.row_counts().await, app.counted("keyed").await);
    assert_eq!(rows.0, before.0.0 + 1, "only the fresh key's run was added");
    assert_eq!(counted, (before.1.0 + 1, before.1.1 + 1));
}

async fn one_running_run_at_a_time_holds_an_exclusive_key(db: Db) {
    let app = TestApp::spawn(db).await;
    let first = Uuid::new_v4();
    let mut begun = start("forbid", first, "scheduler-1");
    begun["exclusive"] = json!("forbid-job");
    let (status, body) = app.post_start(&begun).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let first_id = body["run_id"].clone();

    // Another run of the job, from another replica or the same: refused, naming the first.
    for claimant in ["scheduler-2", "scheduler-1"] {
        let mut next = start("forbid", Uuid::new_v4(), claimant);
        next["exclusive"] = json!("forbid-job");
        let (status, body) = app.post_start(&next).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "run_claimed");
        assert_eq!(body["error"]["details"]["run_id"], first_id);
        assert_eq!(body["error"]["details"]["claimant"], "scheduler-1");
    }
    // Without the key, or with another, it starts.
    let (status, _) = app
        .post_start(&start("forbid", Uuid::new_v4(), "scheduler-2"))
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // Once the first has finished, the key is free.
    assert_eq!(
        app.post_report(&finished("forbid", first)).await.0,
        StatusCode::CREATED
    );
    let mut next = start("forbid", Uuid::new_v4(), "scheduler-2");
    next["exclusive"] = json!("forbid-job");
    let (status, body) = app.post_start(&next).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

on_both_backends!(
    one_running_run_at_a_time_holds_an_exclusive_key,
    a_reused_run_key_with_another_report_is_refused,
    a_started_run_is_running_until_its_report_completes_it_once,
    one_claimant_holds_a_run_key,
    another_agents_keys_are_other_runs,
    a_start_has_a_bounded_deadline,
    bad_starts_get_a_clear_4xx_and_change_nothing,
);
