//! Operating jobs from the platform, end to end: real scheduler processes (three replicas
//! where it matters) acting on what an operator asked the collector (docs/operate.md).

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Collector, Db, SchedulerProcess, on_both_backends, wait_for, write_schedule};

/// A job that appends `$MARK`, or else its slot, to `file` every second.
fn marking_schedule(file: &Path) -> String {
    format!(
        "[agents.tick]\nagent = \"command\"\ncron = \"* * * * * *\"\ntimeout = \"10s\"\n\
         concurrency_policy = \"allow\"\n\
         params = {{ program = \"sh\", args = [\"-c\", \"echo \\\"${{MARK:-$AGENT_SCHEDULED_FOR}}\\\" >> {}; echo {{}}\"] }}\n",
        file.display()
    )
}

/// The slots the job ran (lines that are times) and the other lines, as written so far.
fn effects(file: &Path) -> (Vec<DateTime<Utc>>, Vec<String>) {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let (mut slots, mut marks) = (Vec::new(), Vec::new());
    for line in text.lines() {
        match line.parse() {
            Ok(slot) => slots.push(slot),
            Err(_) => marks.push(line.to_owned()),
        }
    }
    (slots, marks)
}

async fn replicas(
    collector: &Collector,
    schedule: &Path,
    dir: &Path,
    n: usize,
) -> Vec<SchedulerProcess> {
    let mut replicas = Vec::new();
    for i in 0..n {
        replicas.push(
            SchedulerProcess::start_with_env(
                &collector.url(),
                &[
                    ("COLLECTOR_TOKEN", collector.token.as_str()),
                    ("SCHEDULER_HA", "true"),
                ],
                schedule,
                &dir.join(format!("spool-{i}")),
                &[],
            )
            .await,
        );
    }
    replicas
}

/// Three replicas of one schedule: a pause asked of the collector stops every one within 2 s; a
/// run asked for while paused runs once, with its params over the job's; no slot of the pause is
/// missed; a pause with an end resumes by itself.
async fn a_pause_holds_every_replica_and_a_run_asked_for_runs_once(db: Db) {
    let collector = Collector::start(db.clone(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ran");
    let schedule = write_schedule(dir.path(), &marking_schedule(&file));
    let replicas = replicas(&collector, &schedule, dir.path(), 3).await;
    wait_for("the job to run", Duration::from_secs(20), || async {
        effects(&file).0.len() >= 2
    })
    .await;

    let (status, body) = collector
        .operate("/jobs/tick/pause", json!({"note": "maintenance"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let paused_at = Utc::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (slots, _) = effects(&file);
    let late: Vec<_> = slots
        .iter()
        .filter(|slot| **slot > paused_at + TimeDelta::seconds(2))
        .collect();
    assert!(late.is_empty(), "slots ran 2 s after the pause: {late:?}");

    let (status, asked) = collector
        .operate(
            "/jobs/tick/runs",
            json!({"params": {"env": {"MARK": "by hand"}}, "note": "while paused"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{asked}");
    // The only manual run of the job (SQL that reads a key alike on both backends would not
    // be simpler).
    let stored = "select count(*) from agent_runs where agent_name = 'tick' and trigger = 'manual' \
                  and status = 'success'";
    let asked_at = Instant::now();
    wait_for("the run asked for", Duration::from_secs(15), || async {
        db.row::<(i64,)>(stored).await.0 == 1
    })
    .await;
    assert!(
        asked_at.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked_at.elapsed()
    );
    // Every replica has polled several times since: still once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, marks) = effects(&file);
    assert_eq!(
        marks,
        ["by hand"],
        "the run asked for ran once, with its params"
    );
    let (runs,): (i64,) = db
        .row("select count(*) from agent_runs where agent_name = 'tick' and trigger = 'manual'")
        .await;
    assert_eq!(runs, 1);

    // Ten minutes on, nothing of the pause is missed (it goes on: the slots up to then too).
    let later = Utc::now() + TimeDelta::minutes(10);
    for _ in 0..100 {
        let watcher =
            collector::watch::Watcher::new(db.store(), collector::watch::WatchRules::default());
        if watcher.pass(later).await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (missed,): (i64,) = db
        .row("select count(*) from missed_slots where agent_name = 'tick'")
        .await;
    let before_pause: Vec<(DateTime<Utc>,)> = db
        .rows("select slot from missed_slots where agent_name = 'tick'")
        .await;
    assert!(
        before_pause.iter().all(|(slot,)| *slot < paused_at),
        "a paused slot recorded as missed: {before_pause:?}"
    );
    assert!(missed <= 1, "{before_pause:?}");

    // A pause with an end resumes by itself.
    let until = Utc::now() + TimeDelta::seconds(3);
    let (status, _) = collector
        .operate("/jobs/tick/pause", json!({"until": until.to_rfc3339()}))
        .await;
    assert_eq!(status, StatusCode::OK);
    wait_for(
        "slots after the pause's end",
        Duration::from_secs(15),
        || async { effects(&file).0.iter().any(|slot| *slot > until) },
    )
    .await;
    for replica in replicas {
        let (status, logs) = replica.terminate().await;
        assert!(status.success(), "{logs}");
    }
    let (slots, _) = effects(&file);
    let mut unique = slots.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), slots.len(), "a slot ran twice: {slots:?}");
}

/// Whether process `pid` is alive (a zombie is not: it has exited and only waits to be reaped).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .map(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

fn pid_in(file: &Path) -> Option<i32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// A command agent that sleeps a minute and has a child of its own: cancelled, both processes
/// are gone within 2 s, the run ends `cancelled` naming who and why, and no `failing` opens.
async fn a_cancel_kills_the_run_and_its_children(db: Db) {
    let collector = Collector::start(db.clone(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let (child, grandchild) = (dir.path().join("child"), dir.path().join("grandchild"));
    let schedule = write_schedule(
        dir.path(),
        &format!(
            "[agents.slow]\nagent = \"command\"\ncron = \"0 0 1 1 *\"\ntimeout = \"5m\"\n\
             params = {{ program = \"sh\", args = [\"-c\", \"echo $$ > {}; sleep 60 & echo $! > {}; wait\"] }}\n",
            child.display(),
            grandchild.display()
        ),
    );
    let replicas = replicas(&collector, &schedule, dir.path(), 2).await;
    // The schedulers published the job: it can be asked for.
    wait_for("the job published", Duration::from_secs(10), || async {
        db.row::<(i64,)>("select count(*) from agent_expectations where name = 'slow'")
            .await
            .0
            == 1
    })
    .await;
    let (status, asked) = collector.operate("/jobs/slow/runs", json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{asked}");
    // The job's only run: its slots are a year apart.
    let running = "select id from agent_runs where agent_name = 'slow' and status = 'running'";
    wait_for("the run and its child", Duration::from_secs(15), || async {
        !db.rows::<(i64,)>(running).await.is_empty()
            && pid_in(&child).is_some()
            && pid_in(&grandchild).is_some()
    })
    .await;
    let (id,): (i64,) = db.row(running).await;
    let pids = [pid_in(&child).unwrap(), pid_in(&grandchild).unwrap()];
    assert!(pids.iter().all(|pid| alive(*pid)));

    let (status, body) = collector
        .operate(
            &format!("/runs/{id}/cancel"),
            json!({"note": "stuck on a lock"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let cancelled_at = Instant::now();
    wait_for("both processes gone", Duration::from_secs(10), || async {
        pids.iter().all(|pid| !alive(*pid))
    })
    .await;
    let took = cancelled_at.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "the processes outlived the cancel by {took:?}"
    );

    let ended = "select status, error_message from agent_runs where agent_name = 'slow' \
                 and status <> 'running'";
    wait_for("the run's report", Duration::from_secs(15), || async {
        !db.rows::<(String, Option<String>)>(ended).await.is_empty()
    })
    .await;
    let (status, error): (String, Option<String>) = db.row(ended).await;
    assert_eq!(status, "cancelled");
    assert_eq!(
        error.as_deref(),
        Some("cancelled by alice: stuck on a lock")
    );
    // Cancelled again: it has ended.
    let (status, body) = collector
        .operate(&format!("/runs/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    for _ in 0..100 {
        let rules = collector::watch::WatchRules {
            failing_after: 1,
            ..Default::default()
        };
        if collector::watch::Watcher::new(db.store(), rules)
            .pass(Utc::now())
            .await
            .unwrap()
            .is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (failing,): (i64,) = db
        .row("select count(*) from incidents where kind = 'failing'")
        .await;
    assert_eq!(failing, 0);
    for replica in replicas {
        let (status, logs) = replica.terminate().await;
        assert!(status.success(), "{logs}");
    }
}

/// `name`'s entry in a replica's `/jobs`.
async fn job_status(replica: &SchedulerProcess, name: &str) -> serde_json::Value {
    let jobs: serde_json::Value = serde_json::from_str(&replica.get_text("/jobs").await).unwrap();
    jobs.as_array()
        .or_else(|| jobs["jobs"].as_array())
        .unwrap()
        .iter()
        .find(|j| j["job"] == name)
        .cloned()
        .unwrap()
}

/// A replica shows the pause on its own `/jobs`, and keeps it while the collector is away.
async fn a_pause_outlasts_the_collector_going_away(db: Db) {
    let collector = Collector::start(db.clone(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ran");
    let schedule = write_schedule(dir.path(), &marking_schedule(&file));
    let mut replicas = replicas(&collector, &schedule, dir.path(), 1).await;
    let replica = replicas.pop().unwrap();
    wait_for("the job published", Duration::from_secs(10), || async {
        db.row::<(i64,)>("select count(*) from agent_expectations where name = 'tick'")
            .await
            .0
            == 1
    })
    .await;
    let (status, _) = collector.operate("/jobs/tick/pause", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    wait_for("the replica to pause", Duration::from_secs(5), || async {
        job_status(&replica, "tick").await["paused"] == true
    })
    .await;
    collector.stop().await;
    let before = job_status(&replica, "tick").await["paused_ticks"]
        .as_u64()
        .unwrap();
    let ran = effects(&file).0.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = job_status(&replica, "tick").await;
    assert_eq!(status["paused"], true, "{status}");
    assert!(
        status["paused_ticks"].as_u64().unwrap() >= before + 2,
        "{status}"
    );
    assert_eq!(effects(&file).0.len(), ran, "a slot ran while paused");
    let (exit, logs) = replica.terminate().await;
    assert!(exit.success(), "{logs}");
    assert!(
        logs.contains("cannot be fetched from the collector"),
        "{logs}"
    );
}

/// Two replicas and a backfill over ten past slots of which two ran: the eight others run, each
/// once, under their slots' keys with trigger `backfill`; the same backfill again runs none.
async fn a_backfill_runs_each_missing_slot_once(db: Db) {
    let collector = Collector::start(db.clone(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ran");
    let schedule = write_schedule(
        dir.path(),
        &marking_schedule(&file).replace("* * * * * *", "0 * * * * *"),
    );
    let last = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap() - TimeDelta::minutes(1);
    let first = last - TimeDelta::minutes(9);
    let ran = [first + TimeDelta::minutes(3), first + TimeDelta::minutes(7)];
    for slot in ran {
        let answer = crate::helpers::http()
            .post(format!("{}/metrics", collector.url()))
            .bearer_auth(&collector.token)
            .json(&json!({
                "agent_name": "tick", "run_key": scheduler::engine::run_key_of("tick", slot),
                "started_at": slot.to_rfc3339(), "finished_at": slot.to_rfc3339(),
                "trigger": "schedule", "scheduled_for": slot.to_rfc3339(),
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::CREATED);
    }
    let replicas = replicas(&collector, &schedule, dir.path(), 2).await;
    wait_for("the job published", Duration::from_secs(10), || async {
        db.row::<(i64,)>("select count(*) from agent_expectations where name = 'tick'")
            .await
            .0
            == 1
    })
    .await;
    let range = json!({"from": first.to_rfc3339(), "to": last.to_rfc3339(), "max_parallel": 2});
    let (status, body) = collector
        .operate("/jobs/tick/backfill", range.clone())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({"slots": 8}));
    let backfilled = "select count(*) from agent_runs where agent_name = 'tick' \
                      and trigger = 'backfill' and status = 'success'";
    wait_for(
        "eight backfilled slots",
        Duration::from_secs(30),
        || async { db.row::<(i64,)>(backfilled).await.0 == 8 },
    )
    .await;
    // Every replica polled again since: nothing more runs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, body) = collector.operate("/jobs/tick/backfill", range).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({"slots": 0}));
    tokio::time::sleep(Duration::from_secs(2)).await;
    for replica in replicas {
        let (status, logs) = replica.terminate().await;
        assert!(status.success(), "{logs}");
    }
    let (count,): (i64,) = db.row(backfilled).await;
    assert_eq!(count, 8);
    let (slots, _) = effects(&file);
    let mut backfilled: Vec<DateTime<Utc>> =
        slots.into_iter().filter(|slot| *slot <= last).collect();
    backfilled.sort_unstable();
    let expected: Vec<DateTime<Utc>> = (0..10)
        .map(|i| first + TimeDelta::minutes(i))
        .filter(|slot| !ran.contains(slot))
        .collect();
    assert_eq!(backfilled, expected, "each slot that had not run, once");
}

/// A scheduler stopped across five slots of a three-second job, then restarted halfway between
/// two slots (so that every slot missed is before the restart, whatever the start takes): the
/// slots missed, and those of them that ran (each once: the file has no slot twice).
async fn catch_up_after_downtime(
    db: Db,
    catchup_window: &str,
) -> (Vec<DateTime<Utc>>, Vec<DateTime<Utc>>) {
    let collector = Collector::start(db.clone(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ran");
    let schedule = write_schedule(
        dir.path(),
        &marking_schedule(&file)
            .replace("* * * * * *", "*/3 * * * * *")
            .replace(
                "concurrency_policy = \"allow\"\n",
                &format!("concurrency_policy = \"allow\"\ncatchup_window = \"{catchup_window}\"\n"),
            ),
    );
    let start = || async {
        SchedulerProcess::start(
            &collector.url(),
            &collector.token,
            &schedule,
            &dir.path().join("spool"),
        )
        .await
    };
    let first = start().await;
    wait_for("a slot", Duration::from_secs(20), || async {
        !effects(&file).0.is_empty()
    })
    .await;
    let (status, logs) = first.terminate().await;
    assert!(status.success(), "{logs}");
    let last = *effects(&file).0.iter().max().unwrap();
    // Five slots go by with no scheduler; the next starts 1.5 s after a slot.
    let restart = last + TimeDelta::seconds(5 * 3 + 3) + TimeDelta::milliseconds(1500);
    tokio::time::sleep((restart - Utc::now()).to_std().unwrap_or_default()).await;
    let second = start().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (status, logs) = second.terminate().await;
    assert!(status.success(), "{logs}");

    let missed: Vec<DateTime<Utc>> = (1..)
        .map(|i| last + TimeDelta::seconds(3 * i))
        .take_while(|slot| *slot < restart)
        .collect();
    let (slots, _) = effects(&file);
    let mut unique = slots.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), slots.len(), "a slot ran twice: {slots:?}");
    let ran = unique
        .into_iter()
        .filter(|slot| *slot > last && *slot < restart)
        .collect();
    (missed, ran)
}

/// `catchup_window = "10m"`: every slot missed runs, once, oldest first.
#[sqlx::test(migrator = "collector::store::SQLITE_MIGRATOR")]
async fn a_catchup_window_runs_each_missed_slot_once(pool: sqlx::SqlitePool) {
    let (missed, ran) = catch_up_after_downtime(Db::Sqlite(pool), "10m").await;
    assert!(missed.len() >= 5, "{missed:?}");
    assert_eq!(ran, missed);
}

/// `"latest"`: only the most recent slot missed runs; `"0s"`: none.
#[sqlx::test(migrator = "collector::store::SQLITE_MIGRATOR")]
async fn catching_up_the_latest_slot_or_none(pool: sqlx::SqlitePool) {
    let (missed, ran) = catch_up_after_downtime(Db::Sqlite(pool.clone()), "latest").await;
    assert_eq!(ran, missed[missed.len() - 1..]);
    sqlx::query("delete from agent_runs")
        .execute(&pool)
        .await
        .unwrap();
    let (missed, ran) = catch_up_after_downtime(Db::Sqlite(pool), "0s").await;
    assert!(missed.len() >= 5 && ran.is_empty(), "{missed:?} {ran:?}");
}

/// A backfill of a `forbid` job (the default) with `max_parallel = 4`: its exclusive key lets one
/// run at a time, a slot whose claim it refused is asked for again at the next poll, and every
/// slot runs, once, one after another.
async fn a_forbid_jobs_backfill_runs_one_slot_at_a_time(db: Db) {
    let collector = Collector::start(db.clone(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ran");
    let schedule = write_schedule(
        dir.path(),
        &format!(
            "[agents.yearly]\nagent = \"command\"\ncron = \"0 0 1 1 *\"\ntimeout = \"30s\"\n\
             params = {{ program = \"sh\", args = [\"-c\", \"echo \\\"$AGENT_SCHEDULED_FOR\\\" >> {}; sleep 1; echo {{}}\"] }}\n",
            file.display()
        ),
    );
    let replicas = replicas(&collector, &schedule, dir.path(), 2).await;
    wait_for("the job published", Duration::from_secs(10), || async {
        db.row::<(i64,)>("select count(*) from agent_expectations where name = 'yearly'")
            .await
            .0
            == 1
    })
    .await;
    let range =
        json!({"from": "2022-01-01T00:00:00Z", "to": "2025-01-01T00:00:00Z", "max_parallel": 4});
    let (status, body) = collector.operate("/jobs/yearly/backfill", range).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({"slots": 4}));
    let done = "select count(*) from agent_runs where agent_name = 'yearly' and status = 'success'";
    wait_for(
        "four slots, one after another",
        Duration::from_secs(60),
        || async { db.row::<(i64,)>(done).await.0 == 4 },
    )
    .await;
    for replica in replicas {
        let (status, logs) = replica.terminate().await;
        assert!(status.success(), "{logs}");
    }
    let (mut slots, _) = effects(&file);
    slots.sort_unstable();
    let expected: Vec<DateTime<Utc>> = (2022..=2025)
        .map(|year| format!("{year}-01-01T00:00:00Z").parse().unwrap())
        .collect();
    assert_eq!(slots, expected, "each slot once");
    let mut runs: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> = db
        .rows("select started_at, finished_at from agent_runs where agent_name = 'yearly'")
        .await;
    runs.sort_unstable();
    for pair in runs.windows(2) {
        assert!(
            pair[0].1.unwrap() <= pair[1].0,
            "two runs of the forbid job overlapped: {runs:?}"
        );
    }
}

on_both_backends!(
    a_forbid_jobs_backfill_runs_one_slot_at_a_time,
    a_backfill_runs_each_missing_slot_once,
    a_pause_outlasts_the_collector_going_away,
    a_pause_holds_every_replica_and_a_run_asked_for_runs_once,
    a_cancel_kills_the_run_and_its_children,
);
