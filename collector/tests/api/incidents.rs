//! Incidents from what runs say: failing, overdue, stale and slow opened once and resolved when
//! the condition clears, whatever the order of passes and replicas.

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use collector::watch::{WatchRules, Watcher};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Db, TestApp, on_both_backends};
use crate::watcher::at;

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

on_both_backends!(
    a_failure_opens_failing_and_the_next_success_resolves_it,
    with_failing_after_2_one_failure_is_not_enough,
    an_overdue_run_opens_overdue_and_a_success_resolves_it,
    an_expected_agent_without_success_goes_stale_until_one,
    a_run_far_longer_than_usual_opens_slow,
    a_pass_with_a_clock_behind_still_resolves_what_a_clock_ahead_opened,
);
