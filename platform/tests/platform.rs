//! The README's first command, run for real: `platform` starts the collector on a fresh SQLite
//! file and the scheduler with the example agents, prints a working token and a line per stored
//! run, and on SIGINT stops cleanly with every run stored.

#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn runs_agents_stores_their_runs_and_stops_cleanly_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (collector_port, scheduler_port) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_platform"))
        .current_dir(dir.path())
        .args([
            "--collector-addr",
            &format!("127.0.0.1:{collector_port}"),
            "--scheduler-addr",
            &format!("127.0.0.1:{scheduler_port}"),
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();

    // The banner gives a token; the agents' runs follow, a line each.
    let mut token = None;
    let mut run_lines = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while run_lines.len() < 3 {
        let line = tokio::time::timeout_at(deadline, stdout.next_line())
            .await
            .expect("three runs within a minute")
            .unwrap()
            .expect("platform exited early");
        if let Some(t) = line.trim().strip_prefix("export TOKEN=") {
            token = Some(t.to_owned());
        }
        if line.contains("  run ") {
            run_lines.push(line);
        }
    }
    let token = token.expect("the banner prints a token");
    assert!(
        run_lines.iter().any(|l| l.contains(" hello ")),
        "{run_lines:?}"
    );

    // The printed token works: a curl-style push is stored (and announced).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let now = chrono::Utc::now().to_rfc3339();
    let pushed = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{collector_port}/metrics"))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "agent_name": "test", "metrics": {"x": 1},
            "started_at": now, "finished_at": now, "error": null
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 201);

    kill(Pid::from_raw(child.id().unwrap() as i32), Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops within 30 s of SIGINT")
        .unwrap();
    let mut rest = Vec::new();
    while let Some(line) = stdout.next_line().await.unwrap() {
        rest.push(line);
    }
    assert!(status.success(), "exit status {status}; output: {rest:?}");
    run_lines.extend(rest.iter().filter(|l| l.contains("  run ")).cloned());
    assert!(
        rest.iter()
            .any(|l| l.starts_with("stopped. Every run is stored")),
        "{rest:?}"
    );

    // Every announced run is in the file, and nothing else is: none lost, none twice.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", data.join("dev.db").display()))
        .await
        .unwrap();
    let stored: i64 = sqlx::query_scalar("select count(*) from agent_runs")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(stored, run_lines.len() as i64, "{run_lines:?}");
    let pushed: i64 =
        sqlx::query_scalar("select count(*) from agent_runs where agent_name = 'test'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(pushed, 1);
    let summarised: i64 =
        sqlx::query_scalar("select cast(sum(run_count) as integer) from agent_daily_summaries")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(summarised, stored);
    db.close().await;
}
