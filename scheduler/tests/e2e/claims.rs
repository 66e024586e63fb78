//! Runs announced before they run (POST /runs): visible while they run; with SCHEDULER_HA,
//! replicas sharing a schedule run each slot once, whichever backend the collector is on; a slot
//! whose claim cannot be asked is not run.

use std::collections::BTreeSet;
use std::time::Duration;

use sqlx::PgPool;

use crate::helpers::{Collector, Db, SchedulerProcess, on_both_backends, wait_for, write_schedule};

/// `name`'s entry in a `/jobs` answer.
fn job<'a>(jobs: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == name)
        .unwrap()
}

/// A job that appends its slot to `file` (the agent's own side effect, counted apart from the
/// stored rows), every second. Its runs may overlap: a report delivered late on a loaded machine
/// must not hold the next slot back (`forbid` across replicas has a test of its own).
fn appending_schedule(file: &std::path::Path) -> String {
    format!(
        "[agents.tick]\nagent = \"command\"\ncron = \"* * * * * *\"\ntimeout = \"10s\"\n\
         concurrency_policy = \"allow\"\n\
         params = {{ program = \"sh\", args = [\"-c\", \"echo \\\"$AGENT_SCHEDULED_FOR\\\" >> {}; echo {{}}\"] }}\n",
        file.display()
    )
}

/// Three schedulers with one schedule for thirty seconds: every slot ran once (one line each
/// in the agent's file, no slot twice, none missing between the first and the last) and was
/// stored once.
async fn replicas_run_each_slot_once(db: Db) {
    let collector = Collector::start(db.clone(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let effects = dir.path().join("ran");
    let schedule = write_schedule(dir.path(), &appending_schedule(&effects));
    let mut replicas = Vec::new();
    for i in 0..3 {
        replicas.push(
            SchedulerProcess::start_with_env(
                &collector.url(),
                &[
                    ("COLLECTOR_TOKEN", collector.token.as_str()),
                    ("SCHEDULER_HA", "true"),
                ],
                &schedule,
                &dir.path().join(format!("spool-{i}")),
                &[],
            )
            .await,
        );
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    let mut claimed_elsewhere = 0;
    for replica in &replicas {
        let jobs: serde_json::Value =
            serde_json::from_str(&replica.get_text("/jobs").await).unwrap();
        claimed_elsewhere += job(&jobs, "tick")["claimed_elsewhere"].as_u64().unwrap();
    }
    for replica in replicas {
        let (status, logs) = replica.terminate().await;
        assert!(status.success(), "{logs}");
    }

    let lines: Vec<String> = std::fs::read_to_string(&effects)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let slots: BTreeSet<chrono::DateTime<chrono::Utc>> =
        lines.iter().map(|l| l.parse().unwrap()).collect();
    assert_eq!(slots.len(), lines.len(), "a slot ran twice: {lines:?}");
    assert!(slots.len() >= 25, "{lines:?}");
    let (first, last) = (*slots.first().unwrap(), *slots.last().unwrap());
    assert_eq!(
        (last - first).num_seconds() + 1,
        slots.len() as i64,
        "a slot between the first and the last did not run: {lines:?}"
    );
    assert!(
        claimed_elsewhere >= slots.len() as u64,
        "{claimed_elsewhere}"
    );

    let (stored, distinct, succeeded): (i64, i64, i64) = db
        .row(
            "select count(*), count(distinct scheduled_for), count(*) filter (where status = 'success')
             from agent_runs where agent_name = 'tick'",
        )
        .await;
    assert_eq!((stored, distinct), (lines.len() as i64, lines.len() as i64));
    assert_eq!(succeeded, stored, "every run finished and was stored once");
}

/// A run is `running` in the database, with its claimant and deadline, while its agent works.
#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn a_run_is_running_while_its_agent_works(pool: PgPool) {
    let collector = Collector::start(&pool, None).await;
    let dir = tempfile::tempdir().unwrap();
    let schedule = write_schedule(
        dir.path(),
        "[agents.slow]\nagent = \"command\"\ncron = \"0 0 1 1 *\"\nparams = { program = \"sh\", args = [\"-c\", \"sleep 2; echo {}\"] }\n",
    );
    let scheduler = SchedulerProcess::start(
        &collector.url(),
        &collector.token,
        &schedule,
        &dir.path().join("spool"),
    )
    .await;
    assert_eq!(scheduler.trigger("slow", true).await.status(), 202);
    let running = || async {
        sqlx::query_as::<_, (String, bool, bool)>(
            "select status, claimant is not null, deadline > started_at from agent_runs where agent_name = 'slow'",
        )
        .fetch_optional(&pool)
        .await
        .unwrap()
    };
    wait_for("the run to be visible", Duration::from_secs(5), || async {
        running().await.is_some()
    })
    .await;
    assert_eq!(running().await, Some(("running".into(), true, true)));
    wait_for("the run to finish", Duration::from_secs(10), || async {
        running()
            .await
            .is_some_and(|(status, _, _)| status == "success")
    })
    .await;
    let (status, logs) = scheduler.terminate().await;
    assert!(status.success(), "{logs}");
}

/// With SCHEDULER_HA and no collector to grant the claim, the agent does not run (never twice,
/// at the cost of the slot), and /jobs says why.
#[tokio::test]
async fn without_a_granted_claim_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let effects = dir.path().join("ran");
    let schedule = write_schedule(
        dir.path(),
        &appending_schedule(&effects).replace("* * * * * *", "0 0 1 1 *"),
    );
    let nowhere = format!("http://127.0.0.1:{}", crate::helpers::free_port());
    let scheduler = SchedulerProcess::start_with_env(
        &nowhere,
        &[("COLLECTOR_TOKEN", "unused"), ("SCHEDULER_HA", "true")],
        &schedule,
        &dir.path().join("spool"),
        &[],
    )
    .await;
    assert_eq!(scheduler.trigger("tick", true).await.status(), 202);
    let job = || async {
        let jobs: serde_json::Value =
            serde_json::from_str(&scheduler.get_text("/jobs").await).unwrap();
        job(&jobs, "tick").clone()
    };
    wait_for("the claim to fail", Duration::from_secs(10), || async {
        job().await["claims_failed"] == 1
    })
    .await;
    let job = job().await;
    let why = job["last_not_run"]["why"].as_str().unwrap();
    assert!(why.contains("could not be asked"), "{why}");
    assert!(!effects.exists(), "the agent ran without a claim");
    let (status, logs) = scheduler.terminate().await;
    assert!(status.success(), "{logs}");
}

/// `kill -9` of a replica in the middle of a run: the run is closed as overdue after its
/// deadline, the other replica runs every later slot, and the killed one, restarted, runs
/// nothing twice (it reports the run it lost as interrupted; the slots it missed ran elsewhere).
async fn a_killed_replicas_run_is_closed_as_overdue_and_nothing_runs_twice(db: Db) {
    let collector = Collector::start(db.clone(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let effects = dir.path().join("ran");
    // A two-second run every three seconds, with a timeout of four: a deadline of five. Runs
    // may overlap (with "forbid", the lost run would hold the job until it is closed).
    let schedule = write_schedule(
        dir.path(),
        &format!(
            "[agents.long]\nagent = \"command\"\ncron = \"*/3 * * * * *\"\ntimeout = \"4s\"\nretries = 0\n\
             concurrency_policy = \"allow\"\n\
             params = {{ program = \"sh\", args = [\"-c\", \"echo \\\"$AGENT_SCHEDULED_FOR\\\" >> {}; sleep 2; echo {{}}\"] }}\n",
            effects.display()
        ),
    );
    let env = [
        ("COLLECTOR_TOKEN", collector.token.as_str()),
        ("SCHEDULER_HA", "true"),
        ("SCHEDULER_DEADLINE_GRACE", "1s"),
    ];
    let start = |i: usize| {
        let (env, schedule, spool) = (env, schedule.clone(), dir.path().join(format!("spool-{i}")));
        let url = collector.url();
        async move { SchedulerProcess::start_with_env(&url, &env, &schedule, &spool, &[]).await }
    };
    let (a, b) = (start(0).await, start(1).await);

    // Wait for a run of A's, then kill A in its middle.
    let a_pid = a.child.id().unwrap();
    let a_run = || async {
        db.rows::<(i64,)>(&format!(
            "select id from agent_runs where status = 'running' and claimant like '%:{a_pid}:%'"
        ))
        .await
        .first()
        .map(|(id,)| *id)
    };
    // Each slot goes to whichever replica's claim arrives first: on a loaded machine one
    // can win many in a row, so the wait is long (it ends at A's first run).
    wait_for(
        "a run of the first replica",
        Duration::from_secs(60),
        || async { a_run().await.is_some() },
    )
    .await;
    let lost = a_run().await.unwrap();
    tokio::process::Command::new("kill")
        .args(["-KILL", &a_pid.to_string()])
        .status()
        .await
        .unwrap();
    drop(a);

    // Past its deadline (five seconds) the collector closes it (its pass comes every ten).
    let lost_run = || async {
        db.row::<(String, Option<String>)>(&format!(
            "select status, error_message from agent_runs where id = {lost}"
        ))
        .await
    };
    wait_for(
        "the lost run to be closed",
        Duration::from_secs(25),
        || async { lost_run().await.0 == "failed" },
    )
    .await;
    let (_, error) = lost_run().await;
    assert!(
        error
            .as_deref()
            .unwrap_or_default()
            .starts_with("no result from"),
        "{error:?}"
    );

    // Restarted on its spool: it reports the run it lost, and runs nothing another ran.
    let a = start(0).await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    for replica in [a, b] {
        let (status, logs) = replica.terminate().await;
        assert!(status.success(), "{logs}");
    }

    let lines: Vec<String> = std::fs::read_to_string(&effects)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let slots: BTreeSet<chrono::DateTime<chrono::Utc>> =
        lines.iter().map(|l| l.parse().unwrap()).collect();
    assert_eq!(slots.len(), lines.len(), "a slot ran twice: {lines:?}");
    let (first, last) = (*slots.first().unwrap(), *slots.last().unwrap());
    assert_eq!(
        (last - first).num_seconds() / 3 + 1,
        slots.len() as i64,
        "a slot between the first and the last did not run: {lines:?}"
    );
    let (stored, distinct, running): (i64, i64, i64) = db
        .row(
            "select count(*), count(distinct scheduled_for), count(*) filter (where status = 'running')
             from agent_runs where agent_name = 'long'",
        )
        .await;
    assert_eq!(
        (stored, distinct, running),
        (lines.len() as i64, lines.len() as i64, 0)
    );
    let (status, error) = lost_run().await;
    assert_eq!(status, "failed");
    assert!(
        error
            .as_deref()
            .unwrap_or_default()
            .starts_with("interrupted"),
        "the restarted replica's report of its lost run lands: {error:?}"
    );
}

/// `concurrency_policy = "forbid"` across replicas: runs of a job never overlap, whichever
/// replica runs them.
async fn forbid_holds_across_replicas(db: Db) {
    let collector = Collector::start(db.clone(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let schedule = write_schedule(
        dir.path(),
        "[agents.exclusive]\nagent = \"command\"\ncron = \"* * * * * *\"\n\
         params = { program = \"sh\", args = [\"-c\", \"sleep 1.5; echo {}\"] }\n",
    );
    let mut replicas = Vec::new();
    for i in 0..2 {
        replicas.push(
            SchedulerProcess::start_with_env(
                &collector.url(),
                &[
                    ("COLLECTOR_TOKEN", collector.token.as_str()),
                    ("SCHEDULER_HA", "true"),
                ],
                &schedule,
                &dir.path().join(format!("spool-{i}")),
                &[],
            )
            .await,
        );
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    for replica in replicas {
        let (status, logs) = replica.terminate().await;
        assert!(status.success(), "{logs}");
    }
    let runs: Vec<(
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
        Option<String>,
    )> = db
        .rows(
            "select started_at, finished_at, claimant from agent_runs
             where agent_name = 'exclusive' and status = 'success' order by started_at",
        )
        .await;
    assert!(runs.len() >= 2, "{runs:?}");
    for pair in runs.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "two runs overlapped: {pair:?}");
    }
}

on_both_backends!(
    replicas_run_each_slot_once,
    a_killed_replicas_run_is_closed_as_overdue_and_nothing_runs_twice,
    forbid_holds_across_replicas,
);
