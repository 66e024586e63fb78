//! Expected against actual: expectations declared over HTTP, slots judged by the watcher (the
//! test drives its clock: `Store::watch(now)`), missed slots and incidents opened once and
//! resolved when the condition clears; bad expectations refused with nothing stored.

use chrono::{DateTime, DurationRound, SubsecRound, TimeDelta, Timelike, Utc};
use collector::auth::Scope;
use collector::watch::{SLOTS_PER_PASS_IN_ALL, WatchRules, Watcher};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Db, TestApp, error_code, error_fields, into_json, on_both_backends};

impl TestApp {
    async fn put_expectation(
        &self,
        agent: &str,
        body: &str,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .put(self.url(&format!("/agents/{agent}/expectation")))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        into_json(request.send().await.unwrap()).await
    }

    /// PUTs `agent`'s expectation with the app's token, asserts it was created, and returns
    /// the answer.
    async fn create_expectation(&self, agent: &str, body: &str) -> Value {
        let (status, body) = self.put_expectation(agent, body, Some(&self.token)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    async fn delete_expectation(&self, agent: &str) -> (StatusCode, Value) {
        let request = self
            .client
            .delete(self.url(&format!("/agents/{agent}/expectation")))
            .bearer_auth(&self.token);
        into_json(request.send().await.unwrap()).await
    }

    /// (kind, open) of `agent`'s incidents, open first.
    async fn incidents_of(&self, agent: &str) -> Vec<(String, bool, String)> {
        let (status, body) = self.get(&format!("/incidents?agent_name={agent}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["kind"].as_str().unwrap().to_owned(),
                    i["resolved_at"].is_null(),
                    i["summary"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    async fn incidents_of_kind(&self, agent: &str, kind: &str) -> Vec<(String, bool, String)> {
        let mut incidents = self.incidents_of(agent).await;
        incidents.retain(|i| i.0 == kind);
        incidents
    }

    /// The rows of `GET /{list}?agent_name={agent}`, each read by `read`, in order.
    async fn listed<T: Ord>(&self, list: &str, agent: &str, read: fn(&Value) -> T) -> Vec<T> {
        let (status, body) = self.get(&format!("/{list}?agent_name={agent}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let mut rows: Vec<T> = body[list].as_array().unwrap().iter().map(read).collect();
        rows.sort();
        rows
    }

    async fn missed_of(&self, agent: &str) -> Vec<DateTime<Utc>> {
        self.listed("missed", agent, |m| at(&m["slot"])).await
    }

    /// (slot, started_at) of `agent`'s late slots, in slot order.
    async fn late_of(&self, agent: &str) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        self.listed("late", agent, |m| (at(&m["slot"]), at(&m["started_at"])))
            .await
    }
}

fn at(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

async fn a_period_with_no_runs_misses_its_slots_once_and_a_run_resolves_it(db: Db) {
    let app = TestApp::spawn(db).await;
    let body = app
        .create_expectation("quiet", r#"{"every": "1h", "grace": "10m"}"#)
        .await;
    assert_eq!(
        (body["every"].as_str(), body["grace"].as_str()),
        (Some("1h"), Some("10m"))
    );
    let t0 = at(&body["created_at"]);
    assert_eq!(at(&body["next_slot"]), t0 + TimeDelta::hours(1));
    // The same again: replaced, not added.
    let (status, _) = app
        .put_expectation(
            "quiet",
            r#"{"every": "1h", "grace": "10m"}"#,
            Some(&app.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = app.get("/expectations").await;
    assert_eq!(
        listed["expectations"].as_array().unwrap().len(),
        1,
        "{listed}"
    );

    // Three hours and a quarter later, nobody has pushed: three slots missed, one incident.
    let later = t0 + TimeDelta::minutes(3 * 60 + 15);
    app.watch_at(later).await;
    let slots: Vec<DateTime<Utc>> = (1..=3).map(|h| t0 + TimeDelta::hours(h)).collect();
    assert_eq!(app.missed_of("quiet").await, slots);
    let incidents = app.incidents_of_kind("quiet", "missed").await;
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!((incidents[0].0.as_str(), incidents[0].1), ("missed", true));
    assert!(
        incidents[0].2.contains("within its grace of 10m"),
        "{incidents:?}"
    );

    // Another pass at the same time, from another store (a restart, another replica): nothing
    // recorded twice.
    app.watch_at(later).await;
    assert_eq!(app.missed_of("quiet").await, slots);
    assert_eq!(app.incidents_of_kind("quiet", "missed").await.len(), 1);
    let (_, open) = app.get("/incidents?open=true").await;
    // Missed, and stale: no success for three periods and the grace.
    assert_eq!(open["incidents"].as_array().unwrap().len(), 2, "{open}");

    // A run arrives: the incident resolves, and the switch counts from the run.
    let run_at = (later + TimeDelta::minutes(5)).trunc_subsecs(6);
    app.push("quiet", run_at, None).await;
    app.watch_at(run_at + TimeDelta::minutes(1)).await;
    let incidents = app.incidents_of_kind("quiet", "missed").await;
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert!(!incidents[0].1, "resolved: {incidents:?}");
    let (_, open) = app.get("/incidents?open=true").await;
    assert_eq!(open["incidents"], json!([]));
    let (_, listed) = app.get("/expectations").await;
    assert_eq!(
        at(&listed["expectations"][0]["next_slot"]),
        run_at + TimeDelta::hours(1)
    );
    // Nothing new within the next period and its grace.
    app.watch_at(run_at + TimeDelta::minutes(65)).await;
    assert_eq!(app.missed_of("quiet").await.len(), 3);

    // Removed: no longer expected.
    let (status, _) = app.delete_expectation("quiet").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app.delete_expectation("quiet").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    app.watch_at(run_at + TimeDelta::hours(5)).await;
    assert_eq!(app.missed_of("quiet").await.len(), 3);
}

async fn a_cron_slot_without_a_run_is_missed_and_the_next_on_time_resolves_it(db: Db) {
    let app = TestApp::spawn(db).await;
    let body = app
        .create_expectation(
            "hourly",
            r#"{"cron": "0 * * * *", "timezone": "Europe/Madrid", "grace": "5m"}"#,
        )
        .await;
    let t0 = at(&body["created_at"]);
    let h1 = (t0 + TimeDelta::hours(1))
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap();
    assert_eq!(at(&body["next_slot"]), h1);
    let (h2, h3) = (h1 + TimeDelta::hours(1), h1 + TimeDelta::hours(2));

    // h1 answered a minute late (within the grace), h2 not at all.
    app.push("hourly", h1 + TimeDelta::minutes(1), None).await;
    app.watch_at(h2 + TimeDelta::minutes(6)).await;
    assert_eq!(app.missed_of("hourly").await, [h2]);
    let incidents = app.incidents_of("hourly").await;
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!((incidents[0].0.as_str(), incidents[0].1), ("missed", true));

    // h3 on time: resolved.
    app.push("hourly", h3 + TimeDelta::seconds(2), None).await;
    app.watch_at(h3 + TimeDelta::minutes(6)).await;
    assert_eq!(app.missed_of("hourly").await, [h2]);
    let incidents = app.incidents_of("hourly").await;
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert!(!incidents[0].1, "resolved: {incidents:?}");
}

async fn each_slot_ends_on_time_late_or_missed(db: Db) {
    let app = TestApp::spawn(db).await;
    let body = app
        .create_expectation(
            "hourly",
            r#"{"cron": "0 * * * *", "timezone": "UTC", "grace": "10m"}"#,
        )
        .await;
    let h1 = at(&body["next_slot"]);
    let [h2, h3, h4] = [1, 2, 3].map(|h| h1 + TimeDelta::hours(h));
    // SLOT_LATE_AFTER is a minute: h1 on time (30 s), h2 late (4 min), h3 missed (no run within
    // the grace), h4 on time again (it resolves the `missed` incident).
    let late_run = h2 + TimeDelta::minutes(4);
    app.push("hourly", h1 + TimeDelta::seconds(30), None).await;
    app.push("hourly", late_run, None).await;
    app.push("hourly", h4 + TimeDelta::seconds(5), None).await;
    app.watch_at(h3 + TimeDelta::minutes(11)).await;
    assert_eq!(app.late_of("hourly").await, [(h2, late_run)]);
    assert_eq!(app.missed_of("hourly").await, [h3]);
    assert_eq!(app.incidents_of_kind("hourly", "missed").await.len(), 1);
    app.watch_at(h4 + TimeDelta::minutes(11)).await;
    app.watch_at(h4 + TimeDelta::minutes(11)).await;
    // Judged once: nothing recorded twice, the incident resolved.
    assert_eq!(app.late_of("hourly").await, [(h2, late_run)]);
    assert_eq!(app.missed_of("hourly").await, [h3]);
    let incidents = app.incidents_of_kind("hourly", "missed").await;
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert!(!incidents[0].1, "resolved: {incidents:?}");
    // The listing without an agent: the same one.
    let (_, late) = app.get("/late").await;
    assert_eq!(late["late"].as_array().unwrap().len(), 1, "{late}");

    // A period: due a period after the last run; a run 5 minutes after that is late.
    let body = app
        .create_expectation("heartbeat", r#"{"every": "1h", "grace": "10m"}"#)
        .await;
    let t0 = at(&body["created_at"]);
    let early = (t0 + TimeDelta::minutes(30)).trunc_subsecs(6);
    app.push("heartbeat", early, None).await;
    app.watch_at(early + TimeDelta::minutes(1)).await;
    let late_beat = early + TimeDelta::minutes(65);
    app.push("heartbeat", late_beat, None).await;
    app.watch_at(late_beat + TimeDelta::minutes(1)).await;
    assert_eq!(
        app.late_of("heartbeat").await,
        [(early + TimeDelta::hours(1), late_beat)]
    );
    assert!(app.missed_of("heartbeat").await.is_empty());

    // Two runs on time between passes, then a gap no pass saw (the collector was down): each
    // run answers one slot in order, and every slot of the gap is missed.
    let beat = |hours: i64, minutes: i64| late_beat + TimeDelta::minutes(hours * 60 + minutes);
    for (hours, minutes) in [(1, 0), (2, 0), (5, 30)] {
        app.push("heartbeat", beat(hours, minutes), None).await;
    }
    app.watch_at(beat(5, 31)).await;
    assert_eq!(
        app.missed_of("heartbeat").await,
        [beat(3, 0), beat(4, 0), beat(5, 0)]
    );
    assert_eq!(app.late_of("heartbeat").await.len(), 1);
}

/// A long silence is judged over several passes of bounded size (a short transaction each):
/// every slot recorded once, none lost between passes, none twice.
async fn a_long_silence_is_judged_over_several_passes_with_no_slot_lost(db: Db) {
    let app = TestApp::spawn(db).await;
    let minute = TimeDelta::minutes(1);
    let mut created = Vec::new();
    for name in ["minutely_a", "minutely_b", "minutely_c"] {
        let body = app
            .create_expectation(
                name,
                r#"{"cron": "* * * * *", "timezone": "UTC", "grace": "1m"}"#,
            )
            .await;
        created.push(at(&body["created_at"]));
    }
    // 900 minutes of silence: about 2 700 slots, more than a pass judges.
    let now = created[0] + TimeDelta::minutes(900);
    let expected: i64 = created
        .iter()
        .map(|c| {
            let first = c.duration_trunc(minute).unwrap() + minute;
            let last = (now - minute).duration_trunc(minute).unwrap();
            (last - first).num_minutes() + 1
        })
        .sum();
    let count = || app.db.scalar::<i64>("select count(*) from missed_slots");
    let first = app.watch_at(now).await;
    let after_one = count().await;
    assert!(
        first.more && after_one > 0 && after_one < expected,
        "one pass judged {after_one} of {expected}: {first:?}"
    );
    // Each pass says whether it stopped at its most slots: the service then runs the next.
    let mut passes = 1;
    let mut last = first;
    while last.more && passes < 100 {
        last = app.watch_at(now).await;
        passes += 1;
    }
    assert!(!last.more, "{passes} passes: {last:?}");
    assert_eq!(count().await, expected);
    assert!(
        passes as i64 >= expected / SLOTS_PER_PASS_IN_ALL as i64,
        "{expected} slots in {passes} passes of at most {SLOTS_PER_PASS_IN_ALL}"
    );
    app.watch_at(now).await;
    assert_eq!(count().await, expected, "nothing judged twice");
    // One `missed` incident each, whatever the number of passes.
    for name in ["minutely_a", "minutely_b", "minutely_c"] {
        assert_eq!(app.incidents_of_kind(name, "missed").await.len(), 1);
    }
}

async fn a_failure_opens_failing_and_the_next_success_resolves_it(db: Db) {
    let app = TestApp::spawn(db).await;
    let now = Utc::now();
    app.push("flaky", now - TimeDelta::minutes(3), None).await;
    app.push(
        "flaky",
        now - TimeDelta::minutes(2),
        Some("Traceback (most recent call last):\n  boom"),
    )
    .await;
    app.watch_at(now).await;
    let incidents = app.incidents_of("flaky").await;
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!((incidents[0].0.as_str(), incidents[0].1), ("failing", true));
    assert!(
        incidents[0]
            .2
            .contains("failed: Traceback (most recent call last):"),
        "{incidents:?}"
    );

    let state = |agents: Value| {
        let agent = agents["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["agent_name"] == "flaky")
            .cloned()
            .unwrap();
        (agent["state"].clone(), agent["incidents"].clone())
    };
    assert_eq!(
        state(app.get("/agents").await.1),
        (json!("failing"), json!(["failing"]))
    );

    // Failing again continues the open incident.
    app.push("flaky", now - TimeDelta::minutes(1), Some("again"))
        .await;
    app.watch_at(now).await;
    assert_eq!(app.incidents_of("flaky").await.len(), 1);

    app.push("flaky", now, None).await;
    app.watch_at(now + TimeDelta::seconds(1)).await;
    let incidents = app.incidents_of("flaky").await;
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert!(!incidents[0].1, "resolved: {incidents:?}");
    assert_eq!(state(app.get("/agents").await.1), (json!("ok"), json!([])));
}

async fn with_failing_after_2_one_failure_is_not_enough(db: Db) {
    let twice = WatchRules {
        failing_after: 2,
        ..WatchRules::default()
    };
    let app = TestApp::spawn_watching(db, twice).await;
    let now = Utc::now();
    app.push("flaky", now - TimeDelta::seconds(3), None).await;
    app.push("flaky", now - TimeDelta::seconds(2), Some("once"))
        .await;
    app.watch_with(now, twice).await;
    assert_eq!(app.incidents_of("flaky").await, []);
    app.push("flaky", now - TimeDelta::seconds(1), Some("twice"))
        .await;
    app.watch_with(now, twice).await;
    let incidents = app.incidents_of("flaky").await;
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert!(
        incidents[0].1 && incidents[0].2.starts_with("the last 2 runs failed"),
        "{incidents:?}"
    );
}

/// A run's start on host-a by scheduler-1 (`POST /runs`), overdue after `deadline`.
fn start_of(agent: &str, started_at: DateTime<Utc>, deadline: DateTime<Utc>) -> Value {
    json!({
        "agent_name": agent, "run_key": Uuid::new_v4(),
        "started_at": started_at.to_rfc3339(),
        "host": "host-a", "claimant": "scheduler-1",
        "deadline": deadline.to_rfc3339(),
    })
}

async fn an_overdue_run_opens_overdue_and_a_success_resolves_it(db: Db) {
    let app = TestApp::spawn(db).await;
    let now = Utc::now();
    let (status, body) = app
        .post_start(&start_of(
            "hung",
            now - TimeDelta::minutes(10),
            now - TimeDelta::minutes(5),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Closed by this pass, or by the server's own (it runs at the real time too).
    for _ in 0..100 {
        app.db.store().close_overdue(now).await.unwrap();
        let open: i64 = app
            .db
            .scalar("select count(*) from incidents where resolved_at is null")
            .await;
        if open > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let incidents = app.incidents_of("hung").await;
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!((incidents[0].0.as_str(), incidents[0].1), ("overdue", true));
    assert!(
        incidents[0].2.contains("no result from host-a"),
        "{incidents:?}"
    );

    app.push("hung", now, None).await;
    app.watch_at(now + TimeDelta::seconds(5)).await;
    let incidents = app.incidents_of("hung").await;
    assert!(
        incidents.iter().all(|i| !i.1),
        "all resolved: {incidents:?}"
    );
}

/// Two replicas at once, one closing an overdue run (it opens `overdue` and counts the run
/// failed, in one commit), the other in its watcher's pass (another lock): the pass must not
/// resolve the incident on what it read before the incident opened, the agent's earlier
/// success. The test makes them interleave: it holds `agent_expectations`, which a pass reads
/// after the open incidents and the summaries, so the pass waits there while the run is closed.
/// (On SQLite a pass holds the one write lock: nothing commits during it.)
#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn a_pass_leaves_open_an_overdue_incident_opened_while_it_ran(pool: sqlx::PgPool) {
    // The server's own passes, at the real time, stay out of the way (one at start-up).
    let rules = WatchRules {
        every: std::time::Duration::from_secs(3600),
        ..WatchRules::default()
    };
    let app = TestApp::spawn_watching(Db::Postgres(pool.clone()), rules).await;
    let now = Utc::now();
    app.push("hung", now - TimeDelta::minutes(10), None).await;
    // Past its deadline only at the test's clock, two hours ahead: the server never closes it.
    let (status, body) = app
        .post_start(&start_of(
            "hung",
            now - TimeDelta::minutes(5),
            now + TimeDelta::hours(1),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let later = now + TimeDelta::hours(2);

    let mut holder = pool.begin().await.unwrap();
    sqlx::query("lock table agent_expectations in access exclusive mode")
        .execute(&mut *holder)
        .await
        .unwrap();
    let store = collector::store::Store::from(pool.clone());
    let pass = tokio::spawn(async move {
        loop {
            // `None`: the server's start-up pass held the turn.
            if let Some(watched) = Watcher::new(store.clone(), rules)
                .pass(later)
                .await
                .unwrap()
            {
                return watched;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    let waiting = "select count(*) from pg_locks
                   where not granted and relation = 'agent_expectations'::regclass";
    for _ in 0..250 {
        if app.db.scalar::<i64>(waiting).await == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        app.db.scalar::<i64>(waiting).await,
        1,
        "the pass never waited"
    );
    let other_replica = collector::store::Store::from(pool.clone());
    assert_eq!(other_replica.close_overdue(later).await.unwrap(), 1);
    holder.rollback().await.unwrap();
    pass.await.unwrap();

    let overdue = app.incidents_of_kind("hung", "overdue").await;
    assert_eq!(overdue.len(), 1, "{overdue:?}");
    assert!(
        overdue[0].1,
        "resolved by a pass that never saw it open: {overdue:?}"
    );
    // The next pass sees the run failed, and leaves it open too.
    app.watch_with(later, rules).await;
    assert!(app.incidents_of_kind("hung", "overdue").await[0].1);
}

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

async fn an_expected_agent_without_success_goes_stale_until_one(db: Db) {
    let app = TestApp::spawn(db).await;
    let (_, body) = app
        .put_expectation(
            "drifting",
            r#"{"every": "1h", "grace": "10m"}"#,
            Some(&app.token),
        )
        .await;
    let t0 = at(&body["created_at"]);
    let ok_at = t0 + TimeDelta::minutes(30);
    app.push("drifting", ok_at, None).await;
    // Runs keep coming, but they fail: not missed, yet stale after three periods and the grace.
    for hour in 1..=4 {
        app.push("drifting", ok_at + TimeDelta::hours(hour), Some("bad data"))
            .await;
    }
    let kinds = |incidents: Vec<(String, bool, String)>| -> Vec<(String, bool)> {
        let mut kinds: Vec<(String, bool)> = incidents
            .into_iter()
            .map(|(k, open, _)| (k, open))
            .collect();
        kinds.sort();
        kinds
    };
    app.watch_at(ok_at + TimeDelta::minutes(3 * 60 + 5)).await;
    assert!(
        !kinds(app.incidents_of("drifting").await).contains(&("stale".into(), true)),
        "not yet: within three periods and the grace"
    );
    app.watch_at(ok_at + TimeDelta::minutes(4 * 60 + 5)).await;
    let incidents = app.incidents_of("drifting").await;
    let stale = incidents
        .iter()
        .find(|i| i.0 == "stale")
        .expect("stale opened");
    assert!(
        stale.1 && stale.2.contains("3 periods of 1h"),
        "{incidents:?}"
    );

    app.push("drifting", ok_at + TimeDelta::minutes(4 * 60 + 10), None)
        .await;
    app.watch_at(ok_at + TimeDelta::minutes(4 * 60 + 15)).await;
    assert_eq!(
        kinds(app.incidents_of("drifting").await),
        [("failing".into(), false), ("stale".into(), false)]
    );
}

async fn a_run_far_longer_than_usual_opens_slow(db: Db) {
    let app = TestApp::spawn(db).await;
    let start = Utc::now() - TimeDelta::hours(2);
    for i in 0..6 {
        app.push_lasting(
            "steady",
            start + TimeDelta::minutes(i * 10),
            TimeDelta::seconds(20),
            None,
        )
        .await;
    }
    // Three times the median (20 s) is 60 s: 61 s is slow, and above INCIDENT_SLOW_MIN (1 min).
    app.push_lasting(
        "steady",
        start + TimeDelta::minutes(60),
        TimeDelta::seconds(61),
        None,
    )
    .await;
    app.watch_at(Utc::now()).await;
    let incidents = app.incidents_of("steady").await;
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!((incidents[0].0.as_str(), incidents[0].1), ("slow", true));
    assert!(incidents[0].2.contains("took 1m 1s"), "{incidents:?}");

    app.push_lasting(
        "steady",
        start + TimeDelta::minutes(70),
        TimeDelta::seconds(21),
        None,
    )
    .await;
    app.watch_at(Utc::now()).await;
    let incidents = app.incidents_of("steady").await;
    assert!(!incidents[0].1, "resolved: {incidents:?}");

    // Long but short in absolute terms: under INCIDENT_SLOW_MIN, not slow.
    for i in 0..6 {
        app.push_lasting(
            "quick",
            start + TimeDelta::minutes(i),
            TimeDelta::seconds(1),
            None,
        )
        .await;
    }
    app.push_lasting(
        "quick",
        start + TimeDelta::minutes(10),
        TimeDelta::seconds(30),
        None,
    )
    .await;
    app.watch_at(Utc::now()).await;
    assert_eq!(app.incidents_of("quick").await, []);
}

/// A pass whose clock is behind the one that opened an incident (another replica's, or a
/// clock set back) still resolves it when its condition clears, at the time it opened: left
/// open, it would wait for the next slot, since the run that cleared it has been judged.
async fn a_pass_with_a_clock_behind_still_resolves_what_a_clock_ahead_opened(db: Db) {
    let app = TestApp::spawn(db).await;
    let body = app
        .create_expectation("skewed", r#"{"every": "1h", "grace": "10m"}"#)
        .await;
    let t0 = at(&body["created_at"]);
    // A clock ahead sees the first slot missed.
    let ahead = t0 + TimeDelta::minutes(75);
    app.watch_at(ahead).await;
    assert_eq!(app.incidents_of_kind("skewed", "missed").await.len(), 1);
    // A run answers the next slot; a pass with a clock twenty minutes behind judges it.
    let run_at = (ahead + TimeDelta::minutes(1)).trunc_subsecs(6);
    app.push("skewed", run_at, None).await;
    app.watch_at(ahead - TimeDelta::minutes(20)).await;
    let incidents = app.incidents_of_kind("skewed", "missed").await;
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert!(!incidents[0].1, "still open: {incidents:?}");
    let (_, all) = app.get("/incidents").await;
    let incident = &all["incidents"][0];
    assert_eq!(incident["resolved_at"], incident["opened_at"], "{all}");
}

/// The service's own passes: one that stops at its most slots is followed by the next soon,
/// not after `WATCH_EVERY`, so a backlog is caught up at the passes' pace. Each pass stamps the
/// slots it finds missed with its own time, so the passes are read from the rows, whatever
/// time creating the expectations took.
async fn a_pass_at_its_most_slots_is_followed_by_the_next_before_watch_every(db: Db) {
    let every = std::time::Duration::from_secs(4);
    let rules = WatchRules {
        every,
        ..WatchRules::default()
    };
    let app = TestApp::spawn_watching(db, rules).await;
    let agents = SLOTS_PER_PASS_IN_ALL + 50;
    for i in 0..agents {
        app.create_expectation(&format!("busy_{i:03}"), r#"{"every": "1s", "grace": "1s"}"#)
            .await;
    }
    // Every expectation misses a slot a second: a pass soon finds more than it judges, stops
    // at its most, and (the point) the next follows well before WATCH_EVERY.
    let deadline = std::time::Instant::now() + every * 4;
    loop {
        let passes: Vec<(DateTime<Utc>, i64)> = app
            .db
            .rows("select detected_at, count(*) from missed_slots group by detected_at order by detected_at")
            .await;
        let full = passes
            .iter()
            .position(|(_, missed)| *missed == SLOTS_PER_PASS_IN_ALL as i64);
        if let Some(full) = full
            && let Some((next_at, _)) = passes.get(full + 1)
        {
            let gap = (*next_at - passes[full].0).to_std().unwrap_or_default();
            // Without the catch-up, passes are WATCH_EVERY apart to within milliseconds.
            assert!(
                gap < every / 2,
                "the pass after one at its most slots came {gap:?} later (WATCH_EVERY {every:?}): {passes:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no pass at its most slots ({SLOTS_PER_PASS_IN_ALL}) followed by another: {passes:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

on_both_backends!(
    a_period_with_no_runs_misses_its_slots_once_and_a_run_resolves_it,
    a_cron_slot_without_a_run_is_missed_and_the_next_on_time_resolves_it,
    each_slot_ends_on_time_late_or_missed,
    a_long_silence_is_judged_over_several_passes_with_no_slot_lost,
    a_failure_opens_failing_and_the_next_success_resolves_it,
    with_failing_after_2_one_failure_is_not_enough,
    an_overdue_run_opens_overdue_and_a_success_resolves_it,
    bad_expectations_get_a_clear_4xx_and_change_nothing,
    a_schedulers_jobs_replace_what_it_published_before,
    an_expected_agent_without_success_goes_stale_until_one,
    a_run_far_longer_than_usual_opens_slow,
    a_pass_with_a_clock_behind_still_resolves_what_a_clock_ahead_opened,
    a_pass_at_its_most_slots_is_followed_by_the_next_before_watch_every,
);
