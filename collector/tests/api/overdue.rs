//! Runs past their deadline: closed as failed by one replica at a time, and corrected by their
//! late result, every summary counting the run once.

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Db, TestApp, on_both_backends};

/// (run_count, success_count, failure_count, total_duration_ms, min, max, last_status) of one
/// agent's day.
type DayRow = (i64, i64, i64, i64, Option<i64>, Option<i64>, String);

async fn day_of(app: &TestApp, agent: &str) -> DayRow {
    app.db
        .row(&format!(
            "select cast(run_count as bigint), cast(success_count as bigint), cast(failure_count as bigint),
                    cast(total_duration_ms as bigint), min_duration_ms, max_duration_ms, last_status
             from agent_daily_summaries where agent_name = '{agent}'"
        ))
        .await
}

async fn an_overdue_run_is_closed_as_failed_and_its_late_result_corrects_it(db: Db) {
    let app = TestApp::spawn(db).await;
    // Earlier that day, a finished run of one second.
    let earlier = json!({"agent_name": "late", "started_at": "2026-02-19T09:00:00Z",
        "finished_at": "2026-02-19T09:00:01Z"});
    assert_eq!(app.post_report(&earlier).await.0, StatusCode::CREATED);
    let key = Uuid::new_v4();
    let begun = json!({"agent_name": "late", "run_key": key, "started_at": "2026-02-19T10:00:00Z",
        "host": "host-a", "claimant": "scheduler-1", "deadline": "2026-02-19T10:05:00Z",
        "trigger": "schedule"});
    let (status, body) = app.post_start(&begun).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let run_id = body["run_id"].as_i64().unwrap();

    // Past its deadline without a result: closed as failed, saying so, and counted (by this
    // call, or by the server's own pass, which runs at the same time and holds the lock).
    for _ in 0..100 {
        app.db.store().close_overdue(Utc::now()).await.unwrap();
        let status: String = app
            .db
            .scalar(&format!(
                "select status from agent_runs where id = {run_id}"
            ))
            .await;
        if status == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        app.db.store().close_overdue(Utc::now()).await.unwrap(),
        0,
        "closed once"
    );
    let (status, error, finished, overdue): (String, Option<String>, bool, bool) = app
        .db
        .row(&format!(
            "select status, error_message, finished_at is not null, overdue_at is not null
             from agent_runs where id = {run_id}"
        ))
        .await;
    assert_eq!(
        (status.as_str(), finished, overdue),
        ("failed", false, true)
    );
    let error = error.unwrap();
    assert!(
        error.starts_with("no result from host-a by 2026-02-19T10:05:00Z"),
        "{error}"
    );
    assert_eq!(
        day_of(&app, "late").await,
        (2, 1, 1, 1000, Some(1000), Some(1000), "failed".into())
    );
    let (_, page) = app.get("/runs?status=running").await;
    assert_eq!(page["runs"].as_array().unwrap().len(), 0);
    app.assert_agents_agree_with_summaries().await;
    let (_, agents) = app.get("/agents").await;
    assert_eq!(agents["agents"][0]["last_status"], "failed", "{agents}");

    // Its result arrives after all: it completes the run, and the summaries say what happened.
    let result = json!({"agent_name": "late", "run_key": key, "started_at": "2026-02-19T10:00:00Z",
        "finished_at": "2026-02-19T10:07:00Z", "metrics": {"n": 5}, "host": "host-a"});
    let (status, body) = app.post_report(&result).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["run_id"], run_id);
    let (status, error, overdue): (String, Option<String>, bool) = app
        .db
        .row(&format!(
            "select status, error_message, overdue_at is not null from agent_runs where id = {run_id}"
        ))
        .await;
    assert_eq!((status.as_str(), error, overdue), ("success", None, true));
    assert_eq!(
        day_of(&app, "late").await,
        (
            2,
            2,
            0,
            421_000,
            Some(1000),
            Some(420_000),
            "success".into()
        )
    );
    let metric: (i64, String) = app
        .db
        .row("select cast(value_count as bigint), cast(value_sum as text) from agent_metric_daily_summaries where agent_name = 'late'")
        .await;
    assert_eq!(metric, (1, "5".into()));
    app.assert_agents_agree_with_summaries().await;
    let (_, agents) = app.get("/agents").await;
    assert_eq!(
        (
            &agents["agents"][0]["last_status"],
            &agents["agents"][0]["last_success_at"]
        ),
        (&json!("success"), &json!("2026-02-19T10:00:00Z")),
        "{agents}"
    );

    // The same result again: the same run; another result: refused. Nothing counted twice.
    let (status, body) = app.post_report(&result).await;
    assert_eq!(
        (status, &body["run_id"]),
        (StatusCode::OK, &json!(run_id)),
        "{body}"
    );
    let mut other = result.clone();
    other["error"] = json!("failed after all");
    assert_eq!(app.post_report(&other).await.0, StatusCode::CONFLICT);
    assert_eq!(day_of(&app, "late").await.0, 2);
    assert_eq!(app.row_counts().await, (2, 1, 1, 1));
}

/// One collector replica closes overdue runs at a time: while another holds the turn (the
/// advisory lock, taken here on a connection of the test's), a replica's pass closes nothing;
/// replicas passing at once close each run once, the summaries exact.
#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn one_replica_at_a_time_closes_overdue_runs(pool: sqlx::PgPool) {
    let app = TestApp::spawn(Db::Postgres(pool.clone())).await;
    for i in 0..20 {
        let begun = json!({"agent_name": format!("stuck_{}", i % 4), "run_key": Uuid::new_v4(),
            "started_at": "2026-02-19T10:00:00Z", "claimant": "scheduler-1",
            "deadline": "2026-02-19T10:05:00Z"});
        assert_eq!(app.post_start(&begun).await.0, StatusCode::CREATED);
    }
    let still_running = || async {
        app.db
            .scalar::<i64>("select count(*) from agent_runs where status = 'running'")
            .await
    };

    let mut other_replica = pool.begin().await.unwrap();
    sqlx::query("select pg_advisory_xact_lock($1)")
        .bind(collector::store::OVERDUE_LOCK)
        .execute(&mut *other_replica)
        .await
        .unwrap();
    // (The test's own collector may have closed some before.)
    let before = still_running().await;
    let store = collector::store::Store::from(pool.clone());
    assert_eq!(store.close_overdue(Utc::now()).await.unwrap(), 0);
    assert_eq!(
        still_running().await,
        before,
        "nothing closed while the turn is taken"
    );
    other_replica.rollback().await.unwrap();

    let replicas = (0..4).map(|_| {
        let store = collector::store::Store::from(pool.clone());
        tokio::spawn(async move { store.close_overdue(Utc::now()).await.unwrap() })
    });
    let mut closed = 0;
    for replica in replicas {
        closed += replica.await.unwrap();
    }
    let failures: i64 = app
        .db
        .scalar("select cast(sum(failure_count) as bigint) from agent_daily_summaries")
        .await;
    assert!(closed <= before as usize, "{closed}");
    assert_eq!((failures, still_running().await), (20, 0));
}

/// An ingest of the same agent and day, its transaction still open (its run inserted, its day
/// counted, uncommitted) while a replica closes an overdue run: the closing adds its run to the
/// day on top of the ingest's (a delta, `Tx::add_to_summaries`, waiting for the ingest's row
/// lock), so neither is lost. (The recomputation this replaced, one statement computing the
/// day from the runs its snapshot held, then overwriting the row once the lock was free,
/// dropped the ingest's run; `Tx::recount`, which deletes the row first and reads the runs in
/// a later statement, passes this test too.)
///
/// PostgreSQL only: SQLite runs one write transaction at a time (the ingest would hold its
/// write lock until it commits), so the two cannot interleave there.
#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn an_ingest_open_across_an_overdue_closing_is_counted(pool: sqlx::PgPool) {
    let app = TestApp::spawn(Db::Postgres(pool.clone())).await;
    let earlier = json!({"agent_name": "late", "started_at": "2026-02-19T09:00:00Z",
        "finished_at": "2026-02-19T09:00:01Z"});
    assert_eq!(app.post_report(&earlier).await.0, StatusCode::CREATED);
    let begun = json!({"agent_name": "late", "run_key": Uuid::new_v4(),
        "started_at": "2026-02-19T10:00:00Z", "claimant": "scheduler-1",
        "deadline": "2026-02-19T10:05:00Z"});
    assert_eq!(app.post_start(&begun).await.0, StatusCode::CREATED);

    // The ingest: its run and its count of the day, as the write does them, not committed.
    let mut ingest = pool.begin().await.unwrap();
    sqlx::raw_sql(
        "insert into agent_runs (run_key, agent_name, started_at, finished_at, status, duration_ms, trigger, metric_count)
         values (gen_random_uuid(), 'late', '2026-02-19T11:00:00Z', '2026-02-19T11:00:02Z', 'success', 2000, 'api', 0);
         update agent_daily_summaries
         set run_count = run_count + 1, success_count = success_count + 1,
             total_duration_ms = total_duration_ms + 2000, max_duration_ms = 2000,
             last_run_at = '2026-02-19T11:00:00Z', last_status = 'success',
             last_success_at = '2026-02-19T11:00:00Z'
         where agent_name = 'late' and day = '2026-02-19';",
    )
    .execute(&mut *ingest)
    .await
    .unwrap();

    let replica = collector::store::Store::from(pool.clone());
    let runs = pool.clone();
    let closing = tokio::spawn(async move {
        // This replica closes the run, or the server's own watcher does (it runs the same
        // closing, one at a time under OVERDUE_LOCK): either way one closing waits for the
        // ingest. Until the run is closed by one of them, within a minute.
        let running = "select count(*) from agent_runs where status = 'running'";
        for _ in 0..3000 {
            if replica.close_overdue(Utc::now()).await.unwrap() > 0 {
                return;
            }
            let left: i64 = sqlx::query_scalar(running).fetch_one(&runs).await.unwrap();
            if left == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the overdue run was not closed within a minute");
    });
    let waiting = "select count(*) from pg_locks where not granted and locktype = 'transactionid'";
    for _ in 0..250 {
        if app.db.scalar::<i64>(waiting).await > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        app.db.scalar::<i64>(waiting).await,
        1,
        "the closing never waited for the ingest"
    );
    ingest.commit().await.unwrap();
    closing.await.unwrap();

    let (runs, successes, failures, total, _, max, _) = day_of(&app, "late").await;
    assert_eq!(
        (runs, successes, failures, total, max),
        (3, 2, 1, 3000, Some(2000)),
        "the earlier run, the ingest's and the overdue one"
    );
}

on_both_backends!(an_overdue_run_is_closed_as_failed_and_its_late_result_corrects_it,);
