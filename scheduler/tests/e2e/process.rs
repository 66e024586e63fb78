//! The real scheduler binary.

use std::time::Duration;

use sqlx::PgPool;

use crate::helpers::{
    Platform, SchedulerProcess, outcomes, runs_of, spool_files, wait_for, write_schedule,
};

#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn hello_every_second_is_stored_and_sigterm_exits_cleanly(pool: PgPool) {
    let platform = Platform::start(
        &pool,
        "[agents.hello]\ncron = \"* * * * * *\"\nparams = { name = \"e2e\" }\n",
    )
    .await;
    let scheduler = platform.scheduler;

    wait_for("two hello runs", Duration::from_secs(10), || async {
        runs_of(&pool, "hello").await >= 2
    })
    .await;
    // Its schedule is published at start: the collector expects the job's runs.
    wait_for(
        "the schedule published",
        Duration::from_secs(10),
        || async {
            sqlx::query_as::<_, (String, Option<String>, String)>(
                "select name, cron, timezone from agent_expectations where source = 'scheduler'",
            )
            .fetch_all(&pool)
            .await
            .unwrap()
                == [(
                    "hello".to_owned(),
                    Some("* * * * * *".to_owned()),
                    "UTC".to_owned(),
                )]
        },
    )
    .await;
    let (status, logs) = scheduler.terminate().await;

    assert!(status.success(), "exit status {status:?}\n{logs}");
    let rows: Vec<(String, Option<chrono::DateTime<chrono::Utc>>, String)> = sqlx::query_as(
        "select trigger, scheduled_for, status from agent_runs where agent_name = 'hello'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        rows.iter()
            .all(|(trigger, slot, status)| trigger == "schedule"
                && slot.is_some()
                && status == "success"),
        "{rows:?}"
    );
    let greeting: String = sqlx::query_scalar(
        "select metric_text from agent_metrics where metric_name = 'greeting' limit 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(greeting, "hello, e2e", "params reach the agent");
}

#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn command_failures_and_timeouts_are_stored_with_why(pool: PgPool) {
    let platform = Platform::start(&pool, r#"
        [agents.failing_command]
        agent = "command"
        cron = "* * * * * *"
        params = { program = "sh", args = ["-c", "echo step one; echo disk full >&2; exit 3"] }

        [agents.slow_command]
        agent = "command"
        cron = "* * * * * *"
        timeout = "1s"
        params = { program = "sleep", args = ["30"] }

        [agents.python_example]
        agent = "command"
        cron = "* * * * * *"
        params = { program = "python3", args = ["../agents/python/example.py"], input = { topic = "e2e" } }
        "#).await;
    let scheduler = platform.scheduler;

    wait_for("a run of each", Duration::from_secs(15), || async {
        runs_of(&pool, "failing_command").await >= 1
            && runs_of(&pool, "slow_command").await >= 1
            && runs_of(&pool, "python_example").await >= 1
    })
    .await;
    let (status, logs) = scheduler.terminate().await;
    assert!(status.success(), "{logs}");

    let (state, error) = &outcomes(&pool, "failing_command").await[0];
    assert_eq!(
        (state.as_str(), error.as_deref()),
        ("failed", Some("sh exited with status 3: disk full"))
    );
    let (state, error) = &outcomes(&pool, "slow_command").await[0];
    assert_eq!(
        (state.as_str(), error.as_deref()),
        ("failed", Some("timed out after 1s"))
    );
    let (state, error) = &outcomes(&pool, "python_example").await[0];
    assert_eq!((state.as_str(), error.as_deref()), ("success", None));
    let summary: String = sqlx::query_scalar("select metric_text from agent_metrics where agent_name = 'python_example' and metric_name = 'summary' limit 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(summary, "3 findings about e2e");
}

#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn the_status_server_reports_jobs_metrics_and_takes_manual_runs(pool: PgPool) {
    let platform = Platform::start(
        &pool,
        "[agents.hello]\ncron = \"0 0 1 1 *\"\ntimezone = \"Europe/Madrid\"\n",
    )
    .await;
    let scheduler = platform.scheduler;
    let client = crate::helpers::http();
    let base = scheduler.status_url.clone();

    let health: serde_json::Value = scheduler.health().await.json().await.unwrap();
    assert_eq!(health["spool"]["writable"], true);

    assert_eq!(scheduler.trigger("hello", false).await.status(), 401);
    assert_eq!(scheduler.trigger("nope", true).await.status(), 404);
    assert_eq!(scheduler.trigger("hello", true).await.status(), 202);
    wait_for("the manual run", Duration::from_secs(10), || async {
        runs_of(&pool, "hello").await == 1
    })
    .await;
    let trigger: String = sqlx::query_scalar("select trigger from agent_runs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(trigger, "manual");

    let jobs: serde_json::Value = client
        .get(format!("{base}/jobs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hello = &jobs["jobs"][0];
    assert_eq!(hello["job"], "hello");
    assert_eq!(hello["agent"], "hello");
    assert_eq!(hello["schedule"], "0 0 1 1 *");
    assert_eq!(hello["timezone"], "Europe/Madrid");
    assert!(
        hello["next_fire"]
            .as_str()
            .unwrap()
            .contains("-12-31T23:00:00"),
        "{hello}"
    );
    wait_for("the run's status", Duration::from_secs(5), || {
        scheduler.last_run_succeeded("hello")
    })
    .await;

    let text = scheduler.get_text("/prometheus").await;
    for expected in [
        r#"scheduler_runs_total{job="hello",agent="hello",status="success"} 1"#,
        "scheduler_run_duration_seconds_bucket",
        "scheduler_spool_depth 0",
        r#"scheduler_last_success_timestamp_seconds{job="hello"}"#,
    ] {
        assert!(text.contains(expected), "missing {expected}:\n{text}");
    }
    let (status, logs) = scheduler.terminate().await;
    assert!(status.success(), "{logs}");
}

#[tokio::test]
async fn every_agent_crate_is_in_the_binary() {
    let agents_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../agents");
    let mut crates: Vec<String> = std::fs::read_dir(agents_dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    crates.sort();
    assert!(crates.len() >= 3, "{crates:?}");

    let registered: Vec<String> = scheduler::registry()
        .unwrap()
        .names()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        registered, crates,
        "each crate under agents/ registers the agent named like it"
    );

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_scheduler"))
        .arg("list")
        .env("SCHEDULES_FILE", "/nonexistent/schedules.toml")
        .output()
        .await
        .unwrap();
    let listed = String::from_utf8_lossy(&output.stdout);
    for name in &crates {
        assert!(
            listed.contains(name.as_str()),
            "`scheduler list` shows {name}:\n{listed}"
        );
    }
}

/// The exit statuses README's table gives beside the run's own (0, 1, 2, 3): a wrong command
/// line 64, whatever the subcommand; `--help` 0.
#[test]
fn a_wrong_command_line_exits_64_and_help_0() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_scheduler"))
            .args(args)
            .env("SCHEDULES_FILE", "/nonexistent/schedules.toml")
            .output()
            .unwrap()
    };
    for args in [
        &["--no-push"][..],
        &["serve", "--bogus"],
        &["run"],
        &["run", "hello", "--param", "novalue"],
        &["nothing"],
    ] {
        let out = run(args);
        assert_eq!(
            out.status.code(),
            Some(scheduler::cli::EXIT_USAGE.into()),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(run(&["--help"]).status.code(), Some(0));
    assert_eq!(run(&["run", "--help"]).status.code(), Some(0));
}

/// Settings come from the environment alone: an empty variable is unset (Compose passes
/// `NAME=` for a blank line of `.env`), a bad one stops the command with one line naming it.
#[tokio::test]
async fn an_empty_variable_is_unset_and_a_bad_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let schedules = dir.path().join("schedules.toml");
    std::fs::write(&schedules, "[agents.hello]\ncron = \"0 * * * *\"\n").unwrap();
    let check = |vars: &[(&str, &str)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_scheduler"));
        command.arg("check").env("SCHEDULES_FILE", &schedules);
        for (name, value) in vars {
            command.env(name, value);
        }
        command.output().unwrap()
    };
    let empty = check(&[
        ("COLLECTOR_TOKEN", ""),
        ("MAX_CONCURRENT_RUNS", " "),
        ("SHUTDOWN_GRACE", ""),
        ("SCHEDULER_HA", ""),
    ]);
    assert!(empty.status.success(), "{empty:?}");
    assert!(String::from_utf8_lossy(&empty.stdout).contains("ok, 1 jobs"));
    for (name, value) in [
        ("MAX_CONCURRENT_RUNS", "0"),
        ("SHUTDOWN_GRACE", "soon"),
        ("SCHEDULER_HA", "perhaps"),
        ("SCHEDULER_ADDR", "nowhere"),
    ] {
        let bad = check(&[(name, value)]);
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert_eq!(
            bad.status.code(),
            Some(scheduler::cli::EXIT_CONFIG.into()),
            "{name}={value}: {stderr}"
        );
        assert!(
            stderr.starts_with(&format!("scheduler: error: {name} is invalid"))
                && stderr.lines().count() == 1,
            "{name}={value}: {stderr}"
        );
    }
}

#[test]
fn env_example_documents_every_variable_the_scheduler_reads() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.env.example")).unwrap();
    for var in scheduler::settings::ENV_VARS {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{var}="))),
            "{var} is not in .env.example"
        );
    }
    assert!(
        !scheduler::settings::ENV_VARS
            .iter()
            .any(|v| v.contains("DATABASE")),
        "the scheduler never reads a database variable"
    );
}

#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn health_says_when_the_spool_cannot_be_written(pool: PgPool) {
    let platform = Platform::start(
        &pool,
        "[agents.hello]\nenabled = false\ncron = \"* * * * *\"\n",
    )
    .await;
    let (scheduler, spool) = (platform.scheduler, platform.spool);
    let client = crate::helpers::http();
    let health = format!("{}/health", scheduler.status_url);
    assert_eq!(client.get(&health).send().await.unwrap().status(), 200);

    // The spool's folder is gone and a file stands in its place (as when a volume is lost).
    std::fs::remove_dir_all(&spool).unwrap();
    std::fs::write(&spool, b"not a folder").unwrap();

    let response = client.get(&health).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "spool_unwritable");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("spool"),
        "{body}"
    );
    let (status, logs) = scheduler.terminate().await;
    assert!(status.success());
    assert!(logs.contains("the spool cannot be written"), "{logs}");
}

#[tokio::test]
async fn serve_no_push_runs_jobs_delivers_nothing_and_measures_fire_lateness() {
    let dir = tempfile::tempdir().unwrap();
    let schedule = write_schedule(dir.path(), "[agents.hello]\ncron = \"* * * * * *\"\n");
    let spool = dir.path().join("spool");
    // No collector anywhere, and no token: --no-push needs neither.
    let scheduler = SchedulerProcess::start_with_args(
        "http://127.0.0.1:9",
        "",
        &schedule,
        &spool,
        &["serve", "--no-push"],
    )
    .await;

    wait_for("a hello run", Duration::from_secs(10), || {
        scheduler.last_run_succeeded("hello")
    })
    .await;
    let prometheus = scheduler.get_text("/prometheus").await;
    let (status, logs) = scheduler.terminate().await;

    assert!(status.success(), "{logs}");
    assert!(
        prometheus.contains("scheduler_fire_lateness_seconds_count"),
        "{prometheus}"
    );
    assert!(logs.contains("not delivered to the collector"), "{logs}");
    assert!(!logs.contains("REPORT LOST"), "{logs}");
    assert_eq!(spool_files(&spool), 0, "nothing was spooled");
}
