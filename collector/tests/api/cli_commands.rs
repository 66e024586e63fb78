//! The real `collector` binary's commands beside `serve`: `expect`, `alerts check|test` and
//! `prune`, each against a real database.

use crate::cli::run;

/// `collector expect` stores what the API's PUT would, refuses a bad expectation with one
/// line naming the field, and removes one with --delete (on a SQLite file it creates).
#[tokio::test]
async fn expect_declares_and_removes_an_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("platform.db").display());
    let env = [("DATABASE_URL", url.as_str())];
    let (ok, stdout, stderr) = run(
        &["expect", "nightly", "--every", "1h", "--grace", "10m"],
        &env,
    )
    .await;
    assert!(ok, "{stderr}");
    let stored: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (stored["every"].as_str(), stored["grace"].as_str()),
        (Some("1h"), Some("10m"))
    );

    let (ok, _, stderr) = run(
        &[
            "expect",
            "nightly",
            "--cron",
            "0 3 * * *",
            "--timezone",
            "Mars/Base",
        ],
        &env,
    )
    .await;
    assert!(!ok, "a bad time zone is refused");
    assert!(
        stderr.contains("timezone:") && stderr.lines().count() == 1,
        "{stderr}"
    );

    let (ok, _, stderr) = run(&["expect", "nightly", "--delete"], &env).await;
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = run(&["expect", "nightly", "--delete"], &env).await;
    assert!(!ok && stderr.contains("has no expectation"), "{stderr}");
}

/// `collector alerts check` names every problem of the file on a line of its own; a good file
/// lists its routes.
#[tokio::test]
async fn alerts_check_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alerts.toml");
    std::fs::write(
        &file,
        "[[routes]]\nname = \"a\"\ntype = \"pager\"\nurl = \"ftp://x\"\nkinds = [\"late\"]\n",
    )
    .unwrap();
    let path = file.display().to_string();
    let (ok, _, stderr) = run(&["alerts", "check"], &[("ALERTS_FILE", path.as_str())]).await;
    assert!(!ok);
    for fragment in [
        "is not slack or webhook",
        "is not an http(s) URL",
        "\"late\" is not missed",
    ] {
        assert!(
            stderr.lines().filter(|l| l.contains(fragment)).count() == 1,
            "{fragment}: {stderr}"
        );
    }
    std::fs::write(
        &file,
        "[[routes]]\nname = \"ops\"\ntype = \"slack\"\nurl = \"https://hooks.slack.com/services/T/B/X\"\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = run(&["alerts", "check"], &[("ALERTS_FILE", path.as_str())]).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("1 route(s): the alerts file is valid"),
        "{stdout}"
    );
}

/// `collector alerts test ROUTE` sends a test message the receiver gets, signed.
#[tokio::test]
async fn alerts_test_sends_a_signed_test_message() {
    let (addr, state) = crate::alerts::receiver(0).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alerts.toml");
    std::fs::write(
        &file,
        format!("[[routes]]\nname = \"ops\"\ntype = \"webhook\"\nurl = \"http://{addr}/hook\"\nsecret = \"s3cret\"\n"),
    )
    .unwrap();
    let path = file.display().to_string();
    let (ok, stdout, stderr) = run(
        &["alerts", "test", "ops"],
        &[("ALERTS_FILE", path.as_str())],
    )
    .await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("test message delivered (200)"), "{stdout}");
    let received = crate::alerts::bodies(&state);
    assert_eq!(received.len(), 1);
    let (headers, body) = &received[0];
    assert_eq!(
        headers[collector::watch::alerts::SIGNATURE_HEADER]
            .to_str()
            .unwrap(),
        collector::watch::alerts::sign("s3cret", body)
    );
    let (ok, _, stderr) = run(
        &["alerts", "test", "nowhere"],
        &[("ALERTS_FILE", path.as_str())],
    )
    .await;
    assert!(
        !ok && stderr.contains("no route named \"nowhere\""),
        "{stderr}"
    );
}

/// `collector prune --dry-run` counts what retention would delete; without retention it says
/// everything is kept.
#[tokio::test]
async fn prune_dry_run_counts_and_needs_a_retention() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("platform.db").display());
    let (ok, _, stderr) = run(&["prune", "--dry-run"], &[("DATABASE_URL", url.as_str())]).await;
    assert!(!ok && stderr.contains("everything is kept"), "{stderr}");
    let env = [("DATABASE_URL", url.as_str()), ("RETENTION_METRICS", "90d")];
    let (ok, stdout, stderr) = run(&["prune", "--dry-run"], &env).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("would delete 0 runs (with their metrics) and 0 metric rows"),
        "{stdout}"
    );
    let (ok, stdout, stderr) = run(&["prune"], &env).await;
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("deleted 0 runs (with their metrics) and 0 metric rows"),
        "{stdout}"
    );
    let env = [("DATABASE_URL", url.as_str()), ("RETENTION_RUNS", "5m")];
    let (ok, _, stderr) = run(&["prune"], &env).await;
    assert!(
        !ok && stderr.contains("RETENTION_RUNS is invalid"),
        "{stderr}"
    );
}
