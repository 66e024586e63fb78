//! Nothing lost, nothing counted twice: outages, spools and restarts.

use std::time::Duration;

use agent_sdk::client::Spool;
use agent_sdk::wire::{Metrics, RunReport};
use sqlx::PgPool;

use crate::helpers::{Collector, SchedulerProcess, runs_of, spool_files, wait_for, write_schedule};

#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn runs_during_a_collector_outage_are_stored_exactly_once(pool: PgPool) {
    let collector = Collector::start(&pool, None).await;
    let addr = collector.addr;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let schedule = write_schedule(dir.path(), "[agents.hello]\ncron = \"* * * * * *\"\n");
    let scheduler =
        SchedulerProcess::start(&collector.url(), &collector.token, &schedule, &spool).await;
    wait_for("a first run", Duration::from_secs(10), || async {
        runs_of(&pool, "hello").await >= 1
    })
    .await;

    collector.stop().await;
    wait_for(
        "runs to be spooled while the collector is down",
        Duration::from_secs(30),
        || async { spool_files(&spool) >= 2 },
    )
    .await;
    let during_outage = runs_of(&pool, "hello").await;

    let _collector = Collector::start(&pool, Some(addr)).await;
    wait_for("the spool to drain", Duration::from_secs(30), || async {
        spool_files(&spool) == 0
    })
    .await;
    assert!(runs_of(&pool, "hello").await >= during_outage + 2);
    let (status, logs) = scheduler.terminate().await;
    assert!(status.success(), "{logs}");
    assert_eq!(spool_files(&spool), 0, "nothing left undelivered");

    // Every run the scheduler finished is stored, once.
    let finished = logs
        .lines()
        .filter(|l| l.contains("\"run succeeded\""))
        .count() as i64;
    let (stored, distinct): (i64, i64) = sqlx::query_as(
        "select count(*), count(distinct run_key) from agent_runs where agent_name = 'hello'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((stored, distinct), (finished, finished), "{logs}");
}

#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn a_restarted_scheduler_delivers_what_an_earlier_one_spooled(pool: PgPool) {
    let collector = Collector::start(&pool, None).await;
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let spool = Spool::open(&spool_dir).unwrap();
    let now = chrono::Utc::now();
    for i in 0..3 {
        let report = RunReport {
            agent_name: "left_behind".into(),
            metrics: Metrics::from([("i", i)]),
            started_at: now - chrono::TimeDelta::minutes(10 - i),
            finished_at: now - chrono::TimeDelta::minutes(9 - i),
            error: None,
            run_key: Some(uuid::Uuid::new_v4()),
            trigger: None,
            scheduled_for: None,
            host: None,
            cancelled: false,
        };
        spool.store(&report).await.unwrap();
    }
    // One of them twice, as a crash between delivery and removal would leave it.
    let first = spool.pending().await.unwrap()[0].clone();
    std::fs::copy(
        &first,
        spool_dir.join("99999999999999999999-000000-copy.json"),
    )
    .unwrap();
    assert_eq!(spool_files(&spool_dir), 4);

    let schedule = write_schedule(dir.path(), "[agents.hello]\nenabled = false\n");
    let scheduler =
        SchedulerProcess::start(&collector.url(), &collector.token, &schedule, &spool_dir).await;
    wait_for("the spool to drain", Duration::from_secs(20), || async {
        spool_files(&spool_dir) == 0
    })
    .await;
    let (status, logs) = scheduler.terminate().await;
    assert!(status.success(), "{logs}");

    assert_eq!(
        runs_of(&pool, "left_behind").await,
        3,
        "the duplicate was stored once"
    );
}

#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn a_run_interrupted_by_a_killed_scheduler_is_reported_failed_on_restart(pool: PgPool) {
    let collector = Collector::start(&pool, None).await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let schedule = write_schedule(
        dir.path(),
        "[agents.long_job]\nagent = \"command\"\ncron = \"* * * * * *\"\nparams = { program = \"sleep\", args = [\"20\"] }\n",
    );
    let mut scheduler =
        SchedulerProcess::start(&collector.url(), &collector.token, &schedule, &spool).await;
    let journal = spool.join("state").join("runs.journal");
    wait_for("a run in progress", Duration::from_secs(10), || async {
        std::fs::read_to_string(&journal).is_ok_and(|text| text.contains("long_job"))
    })
    .await;
    scheduler.child.kill().await.unwrap(); // SIGKILL: no chance to clean up

    let disabled = write_schedule(
        dir.path(),
        "[agents.long_job]\nagent = \"command\"\ncron = \"* * * * *\"\nenabled = false\nparams = { program = \"true\" }\n",
    );
    let scheduler =
        SchedulerProcess::start(&collector.url(), &collector.token, &disabled, &spool).await;
    wait_for("the interrupted run", Duration::from_secs(10), || async {
        runs_of(&pool, "long_job").await >= 1
    })
    .await;
    let (status, logs) = scheduler.terminate().await;
    assert!(status.success(), "{logs}");
    let error: String = sqlx::query_scalar(
        "select error_message from agent_runs where agent_name = 'long_job' limit 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        error.starts_with("interrupted: the scheduler stopped during the run"),
        "{error}"
    );
}

/// Fires a manual run of `job` and returns its run key.
async fn trigger(scheduler: &SchedulerProcess, job: &str) -> uuid::Uuid {
    let answer: serde_json::Value = scheduler.trigger(job, true).await.json().await.unwrap();
    answer["run_key"].as_str().unwrap().parse().unwrap()
}

async fn health_status(scheduler: &SchedulerProcess) -> u16 {
    scheduler.health().await.status().as_u16()
}

#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn a_rotated_secret_keeps_reports_in_the_spool_until_a_new_token_delivers_them(pool: PgPool) {
    const OLD: &str = "old-secret-old-secret-old-secret-0123456789";
    const NEW: &str = "new-secret-new-secret-new-secret-0123456789";
    let collector = Collector::start_with_secret(&pool, None, OLD).await;
    let addr = collector.addr;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let token_file = dir.path().join("collector.token");
    std::fs::write(&token_file, &collector.token).unwrap();
    let schedule = write_schedule(dir.path(), "[agents.hello]\ncron = \"0 0 1 1 *\"\n");
    let scheduler = SchedulerProcess::start_with_env(
        &collector.url(),
        &[("COLLECTOR_TOKEN_FILE", token_file.to_str().unwrap())],
        &schedule,
        &spool,
        &[],
    )
    .await;
    let mut keys = vec![trigger(&scheduler, "hello").await];
    wait_for("the first run", Duration::from_secs(10), || async {
        runs_of(&pool, "hello").await == 1
    })
    .await;

    // The collector comes back with another secret: the scheduler's token is refused.
    collector.stop().await;
    let rotated = Collector::start_with_secret(&pool, Some(addr), NEW).await;
    keys.push(trigger(&scheduler, "hello").await);
    keys.push(trigger(&scheduler, "hello").await);
    wait_for(
        "refused reports kept in the spool, and /health saying so",
        Duration::from_secs(30),
        || async { spool_files(&spool) == 2 && health_status(&scheduler).await == 503 },
    )
    .await;
    let rejected = std::fs::read_dir(spool.join("rejected")).unwrap().count();
    assert_eq!(rejected, 0, "a refused token rejects no report");
    assert_eq!(runs_of(&pool, "hello").await, 1);

    // A new token in the file (and SIGHUP, as docs/deploy.md says): the spool drains.
    std::fs::write(&token_file, &rotated.token).unwrap();
    if let Some(pid) = scheduler.child.id() {
        tokio::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .await
            .unwrap();
    }
    wait_for("the spool to drain", Duration::from_secs(40), || async {
        spool_files(&spool) == 0 && health_status(&scheduler).await == 200
    })
    .await;
    let (status, logs) = scheduler.terminate().await;
    assert!(status.success(), "{logs}");
    assert!(
        logs.contains("the collector refuses the token"),
        "a log line says why: {logs}"
    );

    let mut stored: Vec<uuid::Uuid> =
        sqlx::query_scalar("select run_key from agent_runs where agent_name = 'hello'")
            .fetch_all(&pool)
            .await
            .unwrap();
    stored.sort();
    keys.sort();
    assert_eq!(stored, keys, "every report arrived, once");
}
