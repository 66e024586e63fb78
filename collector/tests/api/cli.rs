//! The real `collector` binary: start-up checks, `token`, `migrate`, and `serve` with a
//! graceful SIGTERM.

use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use tokio::process::Command;

use crate::helpers::{Db, SECRET, TestApp, database_url, on_both_backends, report};

const BIN: &str = env!("CARGO_BIN_EXE_collector");

/// The `.env.example` value of `name`.
fn env_example(name: &str) -> String {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.env.example")).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} is not in .env.example"))
        .to_owned()
}

pub(crate) async fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_missing_or_bad_variable_stops_start_up_with_one_line() {
    let url = "postgres://u:p@127.0.0.1:1/db";
    let placeholder = env_example("COLLECTOR_SECRET_KEY");
    let short = "too-short-secret";
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("COLLECTOR_SECRET_KEY", SECRET)],
            "DATABASE_URL is not set",
        ),
        (
            vec![("DATABASE_URL", url)],
            "COLLECTOR_SECRET_KEY is not set",
        ),
        // Compose passes `NAME=` for a blank line of `.env`: empty is unset.
        (
            vec![("DATABASE_URL", url), ("COLLECTOR_SECRET_KEY", "")],
            "COLLECTOR_SECRET_KEY is not set",
        ),
        (
            vec![("DATABASE_URL", url), ("COLLECTOR_SECRET_KEY", short)],
            "COLLECTOR_SECRET_KEY is invalid",
        ),
        (
            vec![
                ("DATABASE_URL", url),
                ("COLLECTOR_SECRET_KEY", &placeholder),
            ],
            "placeholder",
        ),
        (
            vec![
                ("DATABASE_URL", "mysql://x"),
                ("COLLECTOR_SECRET_KEY", SECRET),
            ],
            "DATABASE_URL is invalid",
        ),
        (
            vec![
                ("DATABASE_URL", url),
                ("COLLECTOR_SECRET_KEY", SECRET),
                ("COLLECTOR_ADDR", "nowhere"),
            ],
            "COLLECTOR_ADDR is invalid",
        ),
        (
            vec![
                ("DATABASE_URL", url),
                ("COLLECTOR_SECRET_KEY", SECRET),
                ("LOG_FORMAT", "xml"),
            ],
            "LOG_FORMAT is invalid",
        ),
        (
            vec![
                ("DATABASE_URL", url),
                ("COLLECTOR_SECRET_KEY", SECRET),
                ("COLLECTOR_BODY_LIMIT", "1MB"),
            ],
            "COLLECTOR_BODY_LIMIT is invalid",
        ),
        (
            vec![
                ("DATABASE_URL", url),
                ("COLLECTOR_SECRET_KEY", SECRET),
                ("DATABASE_WRITERS", "0"),
            ],
            "DATABASE_WRITERS is invalid",
        ),
        (
            // Reads need a connection the writers do not hold.
            vec![
                ("DATABASE_URL", url),
                ("COLLECTOR_SECRET_KEY", SECRET),
                ("DATABASE_MAX_CONNECTIONS", "4"),
                ("DATABASE_WRITERS", "4"),
            ],
            "below DATABASE_MAX_CONNECTIONS (4)",
        ),
        (
            vec![
                ("DATABASE_URL", url),
                ("COLLECTOR_SECRET_KEY", SECRET),
                ("WATCH_EVERY", "0s"),
            ],
            "WATCH_EVERY is invalid: must be more than zero",
        ),
        (
            vec![
                ("DATABASE_URL", url),
                ("COLLECTOR_SECRET_KEY", SECRET),
                ("SLOT_LATE_AFTER", "soon"),
            ],
            "SLOT_LATE_AFTER is invalid",
        ),
    ];
    for (env, expected) in cases {
        let (ok, _, stderr) = run(&["serve"], &env).await;
        assert!(!ok, "{env:?}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert!(
            !stderr.contains(short) && !stderr.contains(SECRET),
            "secrets never printed: {stderr}"
        );
    }
}

#[test]
fn env_example_lists_every_variable_and_the_refused_placeholder() {
    assert_eq!(
        env_example("COLLECTOR_SECRET_KEY"),
        collector::auth::PLACEHOLDER_SECRET_KEY
    );
    for var in collector::config::ENV_VARS {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.env.example"))
            .unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{var}=")) || l.starts_with(&format!("# {var}="))),
            "{var} is not documented in .env.example"
        );
    }
}

async fn token_prints_a_token_the_server_accepts(db: Db) {
    let app = TestApp::spawn(db).await;
    let (ok, stdout, stderr) = run(
        &["token", "--sub", "ci", "--agent", "hello", "--ttl", "1h"],
        &[("COLLECTOR_SECRET_KEY", SECRET)],
    )
    .await;
    assert!(ok, "{stderr}");
    let token = stdout.trim();
    assert_eq!(stdout.lines().count(), 1, "only the token on stdout");

    let (status, _) = app
        .post_raw(
            &report("hello").to_string(),
            "application/json",
            Some(token),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app
        .post_raw(
            &report("other").to_string(),
            "application/json",
            Some(token),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app.get_with("/runs", Some(token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "ingest is the default scope");

    let (ok, _, stderr) = run(
        &["token", "--sub", "ci", "--scope", "admin"],
        &[("COLLECTOR_SECRET_KEY", SECRET)],
    )
    .await;
    assert!(!ok && stderr.contains("unknown scope"), "{stderr}");
}

/// PostgreSQL only (the child process needs the test database's URL); the SQLite path is
/// `migrate_creates_a_sqlite_file_in_wal_mode`.
#[sqlx::test(migrations = false)]
async fn migrate_applies_the_schema(pool: PgPool) {
    let url = database_url(&pool).await;
    let (ok, _, stderr) = run(&["migrate"], &[("DATABASE_URL", &url)]).await;
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = run(&["migrate"], &[("DATABASE_URL", &url)]).await;
    assert!(ok, "a second run is a no-op: {stderr}");
    let tables: i64 = sqlx::query_scalar(
        "select count(*) from information_schema.tables where table_name in
         ('agent_runs', 'agent_metrics', 'agent_daily_summaries', 'agent_metric_daily_summaries')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 4);
}

/// `DATABASE_URL=sqlite://…` needs no server: `migrate` creates the file (and its directory) in
/// WAL mode with the schema, and `grant-readonly`, PostgreSQL's alone, says so.
#[tokio::test]
async fn migrate_creates_a_sqlite_file_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nested/dir/dev.db");
    let url = format!("sqlite://{}", file.display());
    let (ok, _, stderr) = run(&["migrate"], &[("DATABASE_URL", &url)]).await;
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = run(
        &["migrate"],
        &[("DATABASE_URL", &url), ("LOG_FORMAT", "text")],
    )
    .await;
    assert!(ok, "a second run is a no-op: {stderr}");
    // Logs to a pipe (a container's, a file) carry no colour codes.
    assert!(stderr.contains("database schema is up to date"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "colour codes in {stderr:?}");

    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    let mode: String = sqlx::query_scalar("pragma journal_mode")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let tables: i64 = sqlx::query_scalar(
        "select count(*) from sqlite_master where type = 'table' and name in
         ('agent_runs', 'agent_metrics', 'agent_daily_summaries', 'agent_metric_daily_summaries')",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(tables, 4);
    db.close().await;

    let (ok, _, stderr) = run(
        &["grant-readonly"],
        &[
            ("DATABASE_URL", &url),
            ("WEBAPP_READONLY_PASSWORD", "a-password-long-enough"),
        ],
    )
    .await;
    assert!(!ok && stderr.contains("only in PostgreSQL"), "{stderr}");
}

/// `collector serve` on a free port with `DATABASE_URL=url`, the test secret and `env`, once
/// ready; its stderr is piped for the test to read. Returns the child and its base URL.
async fn spawn_serve(url: &str, env: &[(&str, &str)]) -> (tokio::process::Child, String) {
    let port = free_port();
    let child = Command::new(BIN)
        .env_clear()
        .env("DATABASE_URL", url)
        .env("COLLECTOR_SECRET_KEY", SECRET)
        .env("COLLECTOR_ADDR", format!("127.0.0.1:{port}"))
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&crate::helpers::http_client(), &base).await;
    (child, base)
}

async fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = client.get(format!("{base}/health/ready")).send().await;
        if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
            return;
        }
        assert!(Instant::now() < deadline, "collector did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `collector serve` on `DATABASE_URL=sqlite://…`: creates and migrates the file, stores a
/// push, and exits 0 on SIGTERM with the run in the file.
#[tokio::test]
async fn serve_on_a_sqlite_file_stores_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("collector.db").display());
    let (mut child, base) = spawn_serve(&url, &[]).await;
    let client = crate::helpers::http_client();
    let (ok, token, stderr) = run(
        &["token", "--sub", "sqlite-test"],
        &[("COLLECTOR_SECRET_KEY", SECRET)],
    )
    .await;
    assert!(ok, "{stderr}");
    let pushed = client
        .post(format!("{base}/metrics"))
        .bearer_auth(token.trim())
        .json(&report("on_sqlite"))
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), StatusCode::CREATED);

    sigterm(&child).await;
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    let db = sqlx::SqlitePool::connect(&url).await.unwrap();
    let runs: i64 =
        sqlx::query_scalar("select count(*) from agent_runs where agent_name = 'on_sqlite'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(runs, 1);
    db.close().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `serve` migrates an empty database, serves, and on SIGTERM lets a request that is still
/// running finish — here one blocked on a row lock the test holds — before exiting 0.
///
/// PostgreSQL only: it holds a row lock from a second session to keep a request in flight.
#[sqlx::test(migrations = false)]
async fn serve_migrates_serves_and_stops_gracefully_on_sigterm(pool: PgPool) {
    let (mut child, base) = spawn_serve(&database_url(&pool).await, &[]).await;
    let client = crate::helpers::http_client();
    let token = TestApp::spawn(Db::Postgres(pool.clone())).await.token;

    // Hold the agent's run_key's unique slot in an open transaction: the collector's insert waits
    // on it.
    let run_key = uuid::Uuid::new_v4();
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("insert into agent_runs (run_key, agent_name, started_at, status) values ($1, 'graceful', now(), 'running')")
        .bind(run_key)
        .execute(&mut *blocker)
        .await
        .unwrap();
    let mut body = report("graceful");
    body["run_key"] = json!(run_key);
    let in_flight = tokio::spawn({
        let (client, url, token) = (client.clone(), format!("{base}/metrics"), token.clone());
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .map(|r| r.status())
        }
    });
    // Wait until the collector's insert is actually waiting on our lock.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity where application_name = 'collector' and wait_event_type = 'Lock'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the request never reached the database"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    sigterm(&child).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "still finishing the request in flight"
    );
    blocker.rollback().await.unwrap();

    let status = in_flight.await.unwrap().unwrap();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the in-flight request completed"
    );
    let exit = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "exit code 0 after SIGTERM: {exit:?}");
    let metrics: i64 = sqlx::query_scalar("select count(*) from agent_metrics m join agent_runs r on r.id = m.run_id where r.run_key = $1")
        .bind(run_key)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(metrics, 3, "the run was stored whole");
}

/// The secret and the tokens never reach the logs, at the most verbose level, whatever the
/// requests do with them.
///
/// PostgreSQL only: the child process needs the test database's URL.
#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn secrets_and_tokens_never_appear_in_logs(pool: PgPool) {
    let (child, base) = spawn_serve(
        &database_url(&pool).await,
        &[("LOG_FORMAT", "json"), ("RUST_LOG", "trace")],
    )
    .await;
    let client = crate::helpers::http_client();
    let app = TestApp::spawn(Db::Postgres(pool.clone())).await;
    let good = app.token.clone();
    let forged = format!("{}x", &good[..good.len() - 1]);
    for token in [&good, &forged, &"not.a.token".to_owned()] {
        let _ = client
            .post(format!("{base}/metrics"))
            .bearer_auth(token)
            .json(&report("logged"))
            .send()
            .await;
        let _ = client
            .get(format!("{base}/runs"))
            .bearer_auth(token)
            .send()
            .await;
    }
    let _ = client
        .post(format!("{base}/metrics"))
        .header("authorization", format!("Basic {good}"))
        .send()
        .await;

    sigterm(&child).await;
    let output = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let logs = String::from_utf8_lossy(&output.stderr);

    assert!(
        logs.contains("token refused"),
        "the refusals are logged:\n{logs}"
    );
    assert!(logs.contains("/metrics"), "requests are logged");
    for secret in [SECRET, good.as_str(), forged.as_str()] {
        assert!(
            !logs.contains(secret),
            "a secret or token leaked into the logs"
        );
    }
    // Neither does the signature part alone.
    let signature = good.rsplit('.').next().unwrap();
    assert!(!logs.contains(signature));
}

on_both_backends!(token_prints_a_token_the_server_accepts,);
