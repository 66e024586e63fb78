//! The schema as the dashboard's contract: migrations, the original debugging queries, indexes.

use collector::store::{POSTGRES_MIGRATOR, Store};
use sqlx::PgPool;

use crate::helpers::{Db, TestApp, on_both_backends, report};

/// PostgreSQL only: replicas are PostgreSQL deployments (sqlx serialises them with an
/// advisory lock); the embedded SQLite backend is one process.
#[sqlx::test(migrations = false)]
async fn replicas_migrating_at_once_are_safe(pool: PgPool) {
    let migrations = (0..5).map(|_| {
        let store = Store::from(pool.clone());
        tokio::spawn(async move { store.migrate().await })
    });
    for migration in migrations {
        migration.await.unwrap().unwrap();
    }
    let applied: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied, POSTGRES_MIGRATOR.iter().count() as i64);
    Store::from(pool).check_ready().await.unwrap();
}

async fn the_original_debugging_queries_run_as_written(db: Db) {
    let app = TestApp::spawn(db).await;
    app.post_report(&report("mi_agente")).await;

    let runs: Vec<(String, String, chrono::DateTime<chrono::Utc>, Option<String>)> = app
        .db
        .rows("SELECT agent_name, status, started_at, error_message FROM agent_runs ORDER BY started_at DESC LIMIT 20;")
        .await;
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].0.as_str(), runs[0].1.as_str()),
        ("mi_agente", "success")
    );

    let metrics: Vec<(String, Option<String>, Option<String>)> = app
        .db
        .rows("SELECT metric_name, CAST(metric_value AS TEXT), metric_text FROM agent_metrics WHERE agent_name='mi_agente' ORDER BY recorded_at DESC LIMIT 20;")
        .await;
    assert_eq!(metrics.len(), 3);
    // And exactly as written in the original (NUMERIC column, no cast) it runs too.
    app.db
        .execute("SELECT metric_name, metric_value, metric_text FROM agent_metrics WHERE agent_name='mi_agente' ORDER BY recorded_at DESC LIMIT 20;")
        .await;
}

/// With sequential scans disabled, each dashboard query must still find an index to use: the
/// indexes exist for it (on real volumes the planner picks them by itself).
///
/// PostgreSQL only: the dashboard reads PostgreSQL, and the plans are its EXPLAIN.
#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn dashboard_queries_have_indexes(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("set enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    for query in [
        "SELECT * FROM agent_runs ORDER BY started_at DESC LIMIT 20",
        "SELECT * FROM agent_runs WHERE agent_name = 'a' ORDER BY started_at DESC LIMIT 20",
        "SELECT * FROM agent_runs WHERE status = 'failed' ORDER BY started_at DESC LIMIT 20",
        "SELECT * FROM agent_metrics WHERE agent_name = 'a' ORDER BY recorded_at DESC LIMIT 20",
        "SELECT * FROM agent_metrics WHERE agent_name = 'a' AND metric_name = 'm' ORDER BY recorded_at DESC LIMIT 100",
        "SELECT * FROM agent_metrics WHERE run_id = 1",
        "SELECT * FROM agent_daily_summaries WHERE day BETWEEN '2026-01-01' AND '2026-01-31'",
        "SELECT * FROM agent_daily_summaries WHERE agent_name = 'a' AND day >= '2026-01-01'",
        "SELECT * FROM agent_metric_daily_summaries WHERE agent_name = 'a' AND metric_name = 'm' AND day >= '2026-01-01'",
    ] {
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("explain {query}")))
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("Index"), "{query}\n{plan}");
    }
}

/// Every query in docs/dashboard.md runs as written, and with sequential scans off it finds an
/// index: the page's promise to the web app.
///
/// PostgreSQL only: docs/dashboard.md is PostgreSQL SQL.
#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn the_dashboard_doc_queries_run_and_use_indexes(pool: PgPool) {
    let app = TestApp::spawn(Db::Postgres(pool.clone())).await;
    app.post_report(&report("hello")).await;
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/dashboard.md"))
        .unwrap();
    let queries: Vec<&str> = doc
        .split("```sql\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .collect();
    assert!(queries.len() >= 6, "{queries:?}");

    let mut conn = pool.acquire().await.unwrap();
    for query in queries {
        sqlx::raw_sql(sqlx::AssertSqlSafe(query.to_owned()))
            .execute(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{query}\n{e}"));
        sqlx::query("set enable_seqscan = off")
            .execute(&mut *conn)
            .await
            .unwrap();
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "explain {}",
            query.trim().trim_end_matches(';')
        )))
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        sqlx::query("reset enable_seqscan")
            .execute(&mut *conn)
            .await
            .unwrap();
        assert!(
            plan.join("\n").contains("Index"),
            "{query}\n{}",
            plan.join("\n")
        );
    }
}

on_both_backends!(the_original_debugging_queries_run_as_written,);
