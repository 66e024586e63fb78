//! The README's first command, run for real: `platform` starts the collector on a fresh SQLite
//! file and the scheduler with the example agents, prints a working token and a line per stored
//! run, and on SIGINT stops cleanly with every run stored.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::Platform;

#[tokio::test]
async fn runs_agents_stores_their_runs_and_stops_cleanly_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut platform = Platform::start(dir.path()).await;
    platform.wait_for_runs(3).await;
    let collector_port = platform.collector_port;
    let (token, mut child, mut stdout) = (platform.token.clone(), platform.child, platform.stdout);
    let mut run_lines = platform.run_lines;
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
