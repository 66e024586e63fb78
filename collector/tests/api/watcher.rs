//! Expected against actual: slots judged by the watcher (the test drives its clock:
//! `Watcher::pass(now)`), missed and late slots recorded, incidents opened once and resolved
//! when the condition clears. The helpers here (expectations, incidents, slots as the API
//! lists them) serve expectations.rs too.

use chrono::{DateTime, DurationRound, SubsecRound, TimeDelta, Timelike, Utc};
use collector::auth::Scope;
use collector::watch::{SLOTS_PER_PASS_IN_ALL, WatchRules};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, error_code, into_json, on_both_backends};

impl TestApp {
    pub(crate) async fn put_expectation(
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
    pub(crate) async fn create_expectation(&self, agent: &str, body: &str) -> Value {
        let (status, body) = self.put_expectation(agent, body, Some(&self.token)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    pub(crate) async fn delete_expectation(&self, agent: &str) -> (StatusCode, Value) {
        let request = self
            .client
            .delete(self.url(&format!("/agents/{agent}/expectation")))
            .bearer_auth(&self.token);
        into_json(request.send().await.unwrap()).await
    }

    /// (kind, open) of `agent`'s incidents, open first.
    pub(crate) async fn incidents_of(&self, agent: &str) -> Vec<(String, bool, String)> {
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

    pub(crate) async fn incidents_of_kind(
        &self,
        agent: &str,
        kind: &str,
    ) -> Vec<(String, bool, String)> {
        let mut incidents = self.incidents_of(agent).await;
        incidents.retain(|i| i.0 == kind);
        incidents
    }

    /// The rows of `GET /{list}?agent_name={agent}`, each read by `read`, in order.
    pub(crate) async fn listed<T: Ord>(
        &self,
        list: &str,
        agent: &str,
        read: fn(&Value) -> T,
    ) -> Vec<T> {
        let (status, body) = self.get(&format!("/{list}?agent_name={agent}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let mut rows: Vec<T> = body[list].as_array().unwrap().iter().map(read).collect();
        rows.sort();
        rows
    }

    pub(crate) async fn missed_of(&self, agent: &str) -> Vec<DateTime<Utc>> {
        self.listed("missed", agent, |m| at(&m["slot"])).await
    }

    /// (slot, started_at) of `agent`'s late slots, in slot order.
    pub(crate) async fn late_of(&self, agent: &str) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        self.listed("late", agent, |m| (at(&m["slot"]), at(&m["started_at"])))
            .await
    }
}

pub(crate) fn at(value: &Value) -> DateTime<Utc> {
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

/// An expected agent that never ran is in `GET /agents` from the moment it is expected: `new`
/// until its slots are missed, then in the state its open incidents say, and the console's
/// overview ranks it with the problems, before an agent that is fine.
async fn an_expected_agent_that_never_ran_is_listed_in_the_state_of_its_incidents(db: Db) {
    let app = TestApp::spawn(db).await;
    let body = app
        .create_expectation("nightly", r#"{"every": "1m", "grace": "30s"}"#)
        .await;
    let t0 = at(&body["created_at"]);
    app.push("fine", t0, None).await;
    let nightly = |agents: &Value| {
        agents["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["agent_name"] == "nightly")
            .cloned()
            .unwrap_or_else(|| panic!("nightly is not listed: {agents}"))
    };
    let (status, agents) = app.get("/agents").await;
    assert_eq!(status, StatusCode::OK, "{agents}");
    let listed = nightly(&agents);
    assert_eq!(listed["state"], "new", "{listed}");
    assert!(listed["last_run_at"].is_null() && listed["last_status"].is_null());

    // Past its first slot and grace, and past its periods: missed and stale.
    app.watch_at(t0 + TimeDelta::minutes(5)).await;
    let (_, agents) = app.get("/agents").await;
    let listed = nightly(&agents);
    assert_eq!(listed["state"], "missed", "{listed}");
    assert_eq!(listed["incidents"], json!(["missed", "stale"]), "{listed}");

    let token = app.token_for(&[Scope::Read], None);
    let page = crate::helpers::http_client()
        .get(app.url("/ui"))
        .header("cookie", format!("console_token={token}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let row = |agent: &str| page.find(&format!(">{agent}<")).unwrap_or(usize::MAX);
    assert!(row("nightly") < row("fine"), "{page}");
    assert!(page.contains("agent missed"), "{page}");
}

on_both_backends!(
    an_expected_agent_that_never_ran_is_listed_in_the_state_of_its_incidents,
    a_period_with_no_runs_misses_its_slots_once_and_a_run_resolves_it,
    a_cron_slot_without_a_run_is_missed_and_the_next_on_time_resolves_it,
    each_slot_ends_on_time_late_or_missed,
    a_long_silence_is_judged_over_several_passes_with_no_slot_lost,
    a_pass_at_its_most_slots_is_followed_by_the_next_before_watch_every,
);
