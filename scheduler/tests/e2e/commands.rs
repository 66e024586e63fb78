//! `scheduler run` and `scheduler check`: the exit codes and lines the README promises.

use std::path::Path;
use std::process::Output;

use sqlx::PgPool;

use crate::helpers::{
    Collector, Db, free_port, on_both_backends, outcomes, spool_files, write_schedule,
};

/// Runs the scheduler binary with `args` against `collector_url`, the spool in `dir`.
async fn scheduler(args: &[&str], collector_url: &str, token: &str, dir: &Path) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_scheduler"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("COLLECTOR_URL", collector_url)
        .env("COLLECTOR_TOKEN", token)
        .env("SCHEDULES_FILE", dir.join("schedules.toml"))
        .env("SPOOL_DIR", dir.join("spool"))
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn run_exits_0_when_stored_1_when_the_run_failed_2_when_not_delivered(pool: PgPool) {
    let collector = Collector::start(&pool, None).await;
    let dir = tempfile::tempdir().unwrap();
    write_schedule(dir.path(), "[agents.hello]\ncron = \"0 0 1 1 *\"\n");

    let ok = scheduler(
        &["run", "hello"],
        &collector.url(),
        &collector.token,
        dir.path(),
    )
    .await;
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(printed["status"], "success");
    assert!(
        text(&ok.stderr).contains("delivered: run"),
        "{}",
        text(&ok.stderr)
    );

    let failed = scheduler(
        &["run", "command", "--param", "program=\"false\""],
        &collector.url(),
        &collector.token,
        dir.path(),
    )
    .await;
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed.stderr));
    assert_eq!(
        outcomes(&pool, "command").await,
        [(
            "failed".to_owned(),
            Some("false exited with status 1".to_owned())
        )],
        "a failed run is delivered too"
    );

    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let spooled = scheduler(&["run", "hello"], &nowhere, &collector.token, dir.path()).await;
    assert_eq!(spooled.status.code(), Some(2), "{}", text(&spooled.stderr));
    assert!(
        text(&spooled.stderr).contains("not delivered: the collector is unreachable"),
        "{}",
        text(&spooled.stderr)
    );
    assert_eq!(spool_files(&dir.path().join("spool")), 1, "kept for later");

    let no_push = scheduler(&["run", "hello", "--no-push"], &nowhere, "", dir.path()).await;
    assert_eq!(no_push.status.code(), Some(0), "{}", text(&no_push.stderr));
}

#[tokio::test]
async fn check_says_ok_or_one_line_per_problem() {
    let dir = tempfile::tempdir().unwrap();
    let url = "http://127.0.0.1:9";
    write_schedule(
        dir.path(),
        "[agents.hello]\ncron = \"*/5 * * * *\"\ntimezone = \"Europe/Madrid\"\n",
    );
    let ok = scheduler(&["check"], url, "", dir.path()).await;
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains(": ok, "), "{}", text(&ok.stdout));

    write_schedule(
        dir.path(),
        "[agents.hello]\ncron = \"61 * * * *\"\n\
         [agents.nobody]\ncron = \"* * * * *\"\n\
         [agents.lost]\nagent = \"hello\"\ncron = \"* * * * *\"\ntimezone = \"Mars/Olympus\"\n",
    );
    let bad = scheduler(&["check"], url, "", dir.path()).await;
    assert_eq!(
        bad.status.code(),
        Some(scheduler::cli::EXIT_CONFIG.into()),
        "{}",
        text(&bad.stderr)
    );
    let stderr = text(&bad.stderr);
    for job in ["agents.hello", "agents.nobody", "agents.lost"] {
        assert_eq!(
            stderr.lines().filter(|l| l.contains(job)).count(),
            1,
            "one line for {job}: {stderr}"
        );
    }
}

/// `check` needs its file, and says every problem it finds: mistyped jobs each on a line, beside
/// the jobs that are wrong in other ways; a step larger than its field is one of them.
#[tokio::test]
async fn check_says_every_problem_and_needs_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = "http://127.0.0.1:9";
    let missing = scheduler(&["check"], url, "", dir.path()).await;
    assert_eq!(
        missing.status.code(),
        Some(scheduler::cli::EXIT_CONFIG.into())
    );
    assert!(
        text(&missing.stderr).contains("no such file"),
        "{}",
        text(&missing.stderr)
    );

    write_schedule(
        dir.path(),
        "[agents.typed]\nagent = \"hello\"\ncron = 5\n\
         [agents.misspelt]\nagent = \"hello\"\ncorn = \"* * * * *\"\n\
         [agents.stepped]\nagent = \"hello\"\ncron = \"*/61 * * * *\"\n\
         [agents.hello]\ncron = \"0 * * * *\"\n",
    );
    let bad = scheduler(&["check"], url, "", dir.path()).await;
    assert_eq!(bad.status.code(), Some(scheduler::cli::EXIT_CONFIG.into()));
    let stderr = text(&bad.stderr);
    for (job, says) in [
        ("agents.typed", "invalid type"),
        ("agents.misspelt", "corn"),
        ("agents.stepped", "step /61"),
    ] {
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(job)).collect();
        assert_eq!(lines.len(), 1, "one line for {job}: {stderr}");
        assert!(lines[0].contains(says), "{job}: {stderr}");
    }
    assert!(!stderr.contains("agents.hello"), "{stderr}");
}

/// Compose passes `NAME=` for a blank line of `.env`: an empty variable is unset.
#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn empty_variables_are_unset(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    write_schedule(dir.path(), "[agents.hello]\ncron = \"0 0 1 1 *\"\n");
    let url = "http://127.0.0.1:9";

    // An empty token: start-up stops, with one line saying which variable.
    let refused = scheduler(&["serve"], url, "", dir.path()).await;
    assert_eq!(
        refused.status.code(),
        Some(scheduler::cli::EXIT_CONFIG.into())
    );
    let stderr = text(&refused.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("COLLECTOR_TOKEN"), "{stderr}");

    // An empty trigger token: manual runs are disabled, not open to anyone.
    let collector = Collector::start(&pool, None).await;
    let process = crate::helpers::SchedulerProcess::start_with_env(
        &collector.url(),
        &[
            ("COLLECTOR_TOKEN", &collector.token),
            ("COLLECTOR_TOKEN_FILE", ""),
            ("SCHEDULER_TRIGGER_TOKEN", ""),
        ],
        &dir.path().join("schedules.toml"),
        &dir.path().join("spool"),
        &[],
    )
    .await;
    let answer = crate::helpers::http()
        .post(format!("{}/jobs/hello/run", process.status_url))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 403);
    let (status, logs) = process.terminate().await;
    assert!(status.success(), "{logs}");
}

/// `scheduler run JOB --slot latest` twice for one slot (a Kubernetes CronJob's pod, retried):
/// the agent runs once, one row is stored, under the run_key `serve` would use; the second
/// says the slot ran and exits with its status. A time that is no slot is refused.
async fn run_slot_latest_runs_a_slot_once(db: Db) {
    let collector = Collector::start(db.clone(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let effects = dir.path().join("ran");
    write_schedule(
        dir.path(),
        &format!(
            "[agents.yearly]\nagent = \"command\"\ncron = \"0 0 1 1 *\"\ntimezone = \"Europe/Madrid\"\n\
             params = {{ program = \"sh\", args = [\"-c\", \"echo \\\"$AGENT_SCHEDULED_FOR\\\" >> {}; echo '{{\\\"ok\\\": 1}}'\"] }}\n",
            effects.display()
        ),
    );
    let first = scheduler(
        &["run", "yearly", "--slot", "latest"],
        &collector.url(),
        &collector.token,
        dir.path(),
    )
    .await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let second = scheduler(
        &["run", "yearly", "--slot", "latest"],
        &collector.url(),
        &collector.token,
        dir.path(),
    )
    .await;
    assert_eq!(second.status.code(), Some(0), "{}", text(&second.stderr));
    assert!(
        text(&second.stderr).contains("already success"),
        "{}",
        text(&second.stderr)
    );

    let ran = std::fs::read_to_string(&effects).unwrap();
    assert_eq!(ran.lines().count(), 1, "the agent ran once: {ran}");
    let slot: chrono::DateTime<chrono::Utc> = ran.trim().parse().unwrap();
    assert_eq!(
        slot.format("%m-%d %H:%M").to_string(),
        "12-31 23:00",
        "midnight in Madrid"
    );
    let (count, key, trigger): (i64, Option<uuid::Uuid>, String) = db
        .row(
            "select count(*) over (), run_key, trigger from agent_runs where agent_name = 'yearly'",
        )
        .await;
    assert_eq!(count, 1);
    assert_eq!(key, Some(scheduler::engine::run_key_of("yearly", slot)));
    assert_eq!(trigger, "schedule");

    let not_a_slot = scheduler(
        &["run", "yearly", "--slot", "2026-03-03T10:00:00Z"],
        &collector.url(),
        &collector.token,
        dir.path(),
    )
    .await;
    assert_eq!(
        not_a_slot.status.code(),
        Some(scheduler::cli::EXIT_USAGE.into())
    );
    assert!(
        text(&not_a_slot.stderr).contains("not a slot"),
        "{}",
        text(&not_a_slot.stderr)
    );
}

/// `scheduler run JOB --slot`'s other exits: 2 when the claim cannot be asked (nothing runs),
/// 3 while the slot runs elsewhere (nothing runs); and the spool an earlier pod left is
/// delivered first, before the claim.
async fn run_slot_exits_2_without_a_claim_3_while_it_runs_elsewhere_and_delivers_the_spool_first(
    db: Db,
) {
    let collector = Collector::start(db.clone(), None).await;
    let dir = tempfile::tempdir().unwrap();
    let effects = dir.path().join("ran");
    write_schedule(
        dir.path(),
        &format!(
            "[agents.yearly]\nagent = \"command\"\ncron = \"0 0 1 1 *\"\n\
             params = {{ program = \"sh\", args = [\"-c\", \"echo ran >> {}; echo {{}}\"] }}\n\
             [agents.hello]\ncron = \"0 0 1 1 *\"\n",
            effects.display()
        ),
    );
    let nowhere = format!("http://127.0.0.1:{}", free_port());

    // An earlier pod's report, spooled while the collector was away.
    let spooled = scheduler(&["run", "hello"], &nowhere, &collector.token, dir.path()).await;
    assert_eq!(spooled.status.code(), Some(2), "{}", text(&spooled.stderr));
    assert_eq!(spool_files(&dir.path().join("spool")), 1);

    // No collector: the claim cannot be asked, nothing runs, exit 2.
    let unclaimed = scheduler(
        &["run", "yearly", "--slot", "latest"],
        &nowhere,
        &collector.token,
        dir.path(),
    )
    .await;
    assert_eq!(
        unclaimed.status.code(),
        Some(2),
        "{}",
        text(&unclaimed.stderr)
    );
    assert!(
        text(&unclaimed.stderr).contains("the claim could not be asked"),
        "{}",
        text(&unclaimed.stderr)
    );
    assert!(!effects.exists(), "the agent ran without a claim");
    assert_eq!(spool_files(&dir.path().join("spool")), 1, "still spooled");

    // The slot running elsewhere (another pod's claim): nothing runs, exit 3; the spool is
    // delivered first.
    let slot = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let slot = if slot <= chrono::Utc::now() {
        slot
    } else {
        slot - chrono::TimeDelta::days(365)
    };
    let answer = crate::helpers::http()
        .post(format!("{}/runs", collector.url()))
        .bearer_auth(&collector.token)
        .json(&serde_json::json!({
            "agent_name": "yearly",
            "run_key": scheduler::engine::run_key_of("yearly", slot),
            "started_at": chrono::Utc::now().to_rfc3339(),
            "scheduled_for": slot.to_rfc3339(),
            "trigger": "schedule",
            "claimant": "another-pod",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    let elsewhere = scheduler(
        &["run", "yearly", "--slot", &slot.to_rfc3339()],
        &collector.url(),
        &collector.token,
        dir.path(),
    )
    .await;
    assert_eq!(
        elsewhere.status.code(),
        Some(3),
        "{}",
        text(&elsewhere.stderr)
    );
    assert!(
        text(&elsewhere.stderr).contains("already running"),
        "{}",
        text(&elsewhere.stderr)
    );
    assert!(
        !effects.exists(),
        "the agent ran while another pod runs the slot"
    );
    assert_eq!(spool_files(&dir.path().join("spool")), 0, "delivered first");
    assert_eq!(
        outcomes(db.clone(), "hello").await,
        [("success".to_owned(), None)]
    );
}

on_both_backends!(
    run_slot_latest_runs_a_slot_once,
    run_slot_exits_2_without_a_claim_3_while_it_runs_elsewhere_and_delivers_the_spool_first,
);
