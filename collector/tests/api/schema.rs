//! The schema as the dashboard's contract: migrations, the original debugging queries, indexes.

use chrono::{DateTime, Utc};
use collector::store::{POSTGRES_MIGRATOR, SQLITE_MIGRATOR, Store};
use sqlx::{PgPool, SqlitePool};

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

/// Every metric row's foreign-key check uses a plan its connection keeps until agent_runs is
/// analyzed again: agent_runs is first analyzed at 1 000 changed rows, past the size where a
/// sequential scan is the cheaper plan (migrations/postgres/0007). Here, the plan such an early analyze
/// would have left: after 20 rows, a generic plan for the check's query is a sequential scan,
/// and it still is at 5 000 rows; planned at 1 000 rows it is the primary key's index.
#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn agent_runs_is_not_analyzed_while_a_foreign_key_check_would_scan_it(pool: PgPool) {
    let options: Vec<String> = sqlx::query_scalar(
        "select unnest(reloptions) from pg_class where oid = 'agent_runs'::regclass",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        options.contains(&"autovacuum_analyze_threshold=1000".to_owned()),
        "{options:?}"
    );

    // One connection: the prepared check and its session's settings are its own.
    let mut conn = pool.acquire().await.unwrap();
    let runs = |n: u32| {
        format!(
            "insert into agent_runs (run_key, agent_name, started_at, finished_at, status, trigger, metric_count)
             select gen_random_uuid(), 'a', now(), now(), 'success', 'api', 0 from generate_series(1, {n});"
        )
    };
    let planned_check = "analyze agent_runs;
        set plan_cache_mode = force_generic_plan;
        prepare fk_check(bigint) as select 1 from only agent_runs x where id = $1 for key share of x;";
    let mut plan_after = async |setup: String| -> String {
        sqlx::raw_sql(sqlx::AssertSqlSafe(setup))
            .execute(&mut *conn)
            .await
            .unwrap();
        let plan: Vec<String> = sqlx::query_scalar("explain execute fk_check(1)")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        plan.join("\n")
    };

    let early = plan_after(runs(20) + planned_check).await;
    assert!(early.contains("Seq Scan"), "{early}");
    let kept = plan_after(runs(5_000)).await;
    assert!(kept.contains("Seq Scan"), "{kept}");
    let at_threshold = plan_after(
        "deallocate fk_check; truncate agent_runs cascade;".to_owned()
            + &runs(1_000)
            + planned_check,
    )
    .await;
    assert!(at_threshold.contains("Index Scan"), "{at_threshold}");
}

/// Why migrations/sqlite has no counterpart of migrations/postgres/0007: SQLite checks a metric
/// row's foreign key inside the insert's own program, by a seek on agent_runs' rowid (its
/// `INTEGER PRIMARY KEY`), not by a plan chosen from statistics; with statistics of a 20-row
/// agent_runs (`ANALYZE`, which the collector never runs) it is still that seek.
#[sqlx::test(migrator = "collector::store::SQLITE_MIGRATOR")]
async fn sqlite_checks_a_metric_rows_foreign_key_by_rowid_whatever_its_statistics(
    pool: SqlitePool,
) {
    let db = Db::Sqlite(pool.clone());
    db.execute(
        "insert into agent_runs (agent_name, started_at, status)
         with recursive n(i) as (select 1 union all select i + 1 from n where i < 20)
         select 'a', '2026-01-01T00:00:00Z', 'success' from n;
         analyze;",
    )
    .await;
    let root: i64 = db
        .scalar("select rootpage from sqlite_master where name = 'agent_runs'")
        .await;
    // The insert's program: (address, opcode, p1, p2) of each instruction.
    let program: Vec<(i64, String, i64, i64)> = sqlx::query_as(
        "explain insert into agent_metrics (run_id, agent_name, metric_name, metric_value, recorded_at)
         values (1, 'a', 'm', '1', '2026-01-01T00:00:00Z')",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let opened = program
        .iter()
        .position(|(_, opcode, _, page)| opcode == "OpenRead" && *page == root)
        .unwrap_or_else(|| panic!("agent_runs is not read: {program:?}"));
    let cursor = program[opened].2;
    assert_eq!(
        (program[opened + 1].1.as_str(), program[opened + 1].2),
        ("NotExists", cursor),
        "{program:?}"
    );
    assert!(
        !program
            .iter()
            .any(|(_, opcode, on, _)| *on == cursor && matches!(opcode.as_str(), "Rewind" | "Next")),
        "agent_runs is scanned: {program:?}"
    );
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

/// docs/dashboard.md explains every table the read-only role can read, and names each of its
/// columns: the page's promise that no table goes unexplained.
#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn the_dashboard_doc_names_every_table_and_column(pool: PgPool) {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/dashboard.md"))
        .unwrap();
    let columns: Vec<(String, String)> = sqlx::query_as(
        "select table_name::text, column_name::text from information_schema.columns
         where table_schema = 'public' order by table_name, ordinal_position",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(columns.len() > 50, "{columns:?}");
    let mut missing = Vec::new();
    for (table, column) in &columns {
        let heading = doc
            .lines()
            .any(|l| l.starts_with("### ") && l.contains(&format!("`{table}`")));
        if !heading {
            missing.push(format!("table {table}"));
        }
        if !doc.contains(&format!("`{column}`")) {
            missing.push(format!("{table}.{column}"));
        }
    }
    missing.dedup();
    assert!(missing.is_empty(), "not in docs/dashboard.md: {missing:?}");
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

/// Summaries stored before `agents` existed, as (agent, day, last run, status, last success).
const SUMMARIES_BEFORE_0006: &str = "insert into agent_daily_summaries
    (agent_name, day, run_count, success_count, failure_count, total_duration_ms,
     last_run_at, last_status, last_success_at) values
    ('a', '2026-03-01', 2, 2, 0, 10, '2026-03-01T10:00:00Z', 'success', '2026-03-01T10:00:00Z'),
    ('a', '2026-03-02', 1, 0, 1, 10, '2026-03-02T08:00:00Z', 'failed', NULL),
    ('b', '2026-03-02', 1, 1, 0, 10, '2026-03-02T09:00:00Z', 'success', '2026-03-02T09:00:00Z')";

/// An agent's row of `agents`: name, last run, its status, last success.
type Latest = (String, DateTime<Utc>, String, Option<DateTime<Utc>>);

/// What 0006 must make of them: each agent's latest run and its latest success on any day.
fn agents_after_0006() -> Vec<Latest> {
    let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
    vec![
        (
            "a".into(),
            at("2026-03-02T08:00:00Z"),
            "failed".into(),
            Some(at("2026-03-01T10:00:00Z")),
        ),
        (
            "b".into(),
            at("2026-03-02T09:00:00Z"),
            "success".into(),
            Some(at("2026-03-02T09:00:00Z")),
        ),
    ]
}

const AGENTS: &str =
    "select agent_name, last_run_at, last_status, last_success_at from agents order by 1";

/// An existing deployment upgrades: migration 0006 fills `agents` from the summaries already
/// stored, so the overview shows every agent at once.
#[sqlx::test(migrations = false)]
async fn the_agents_table_is_filled_from_existing_summaries_on_postgres(pool: PgPool) {
    POSTGRES_MIGRATOR.run_to(5, &pool).await.unwrap();
    sqlx::raw_sql(SUMMARIES_BEFORE_0006)
        .execute(&pool)
        .await
        .unwrap();
    POSTGRES_MIGRATOR.run(&pool).await.unwrap();
    let rows: Vec<Latest> = sqlx::query_as(AGENTS).fetch_all(&pool).await.unwrap();
    assert_eq!(rows, agents_after_0006());
}

#[sqlx::test(migrations = false)]
async fn the_agents_table_is_filled_from_existing_summaries_on_sqlite(pool: SqlitePool) {
    SQLITE_MIGRATOR.run_to(5, &pool).await.unwrap();
    sqlx::raw_sql(SUMMARIES_BEFORE_0006)
        .execute(&pool)
        .await
        .unwrap();
    SQLITE_MIGRATOR.run(&pool).await.unwrap();
    let rows: Vec<Latest> = sqlx::query_as(AGENTS).fetch_all(&pool).await.unwrap();
    assert_eq!(rows, agents_after_0006());
}

on_both_backends!(the_original_debugging_queries_run_as_written,);

/// Migrating to keys per agent (postgres 0008, sqlite 0007, where agent_runs is built again)
/// keeps every run, its id, its metrics and the id sequence; a run left running without a
/// deadline gets one a week after its start. On SQLite, a metric still belongs to its run
/// after the rebuild (a run deleted deletes its metrics), and none was deleted by it.
#[sqlx::test(migrations = false)]
async fn keys_per_agent_keep_every_run_and_metric_on_postgres(pool: PgPool) {
    POSTGRES_MIGRATOR.run_to(7, &pool).await.unwrap();
    keys_per_agent_keep_every_run_and_metric(Db::Postgres(pool.clone())).await;
    POSTGRES_MIGRATOR.run(&pool).await.unwrap();
    keys_per_agent_kept(Db::Postgres(pool)).await;
}

#[sqlx::test(migrations = false)]
async fn keys_per_agent_keep_every_run_and_metric_on_sqlite(pool: SqlitePool) {
    SQLITE_MIGRATOR.run_to(6, &pool).await.unwrap();
    keys_per_agent_keep_every_run_and_metric(Db::Sqlite(pool.clone())).await;
    SQLITE_MIGRATOR.run(&pool).await.unwrap();
    let enforced: i64 = sqlx::query_scalar("pragma foreign_keys")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(enforced, 1, "foreign keys are on again");
    keys_per_agent_kept(Db::Sqlite(pool)).await;
}

async fn keys_per_agent_keep_every_run_and_metric(db: Db) {
    for (id, key, status, deadline) in [
        (5, "00000000-0000-4000-8000-000000000005", "success", "null"),
        (9, "00000000-0000-4000-8000-000000000009", "running", "null"),
    ] {
        let key = match db {
            Db::Postgres(_) => format!("'{key}'"),
            Db::Sqlite(_) => format!("x'{}'", key.replace('-', "")),
        };
        db.execute(&format!(
            "insert into agent_runs (id, run_key, agent_name, started_at, finished_at, status, trigger, metric_count, deadline)
             values ({id}, {key}, 'kept', '2026-12-01T10:00:00+00:00', {finished}, '{status}', 'api', 1, {deadline})",
            finished = if status == "running" { "null" } else { "'2026-12-01T10:00:01+00:00'" },
        ))
        .await;
        db.execute(&format!(
            "insert into agent_metrics (run_id, agent_name, metric_name, metric_value, recorded_at)
             values ({id}, 'kept', 'items', '3', '2026-12-01T10:00:01+00:00')"
        ))
        .await;
    }
    // Ids as the runs' inserts would have left the sequence (explicit ids do not advance
    // PostgreSQL's; SQLite's follows the largest).
    if let Db::Postgres(_) = db {
        db.execute("select setval(pg_get_serial_sequence('agent_runs', 'id'), 9)")
            .await;
    }
    // Retention deleted the latest: the next id still follows it.
    db.execute("delete from agent_runs where id = 9").await;
    db.execute(
        "insert into agent_runs (id, run_key, agent_name, started_at, status, trigger, metric_count)
         values (7, null, 'kept', '2026-12-01T11:00:00+00:00', 'running', 'api', 0)",
    )
    .await;
}

async fn keys_per_agent_kept(db: Db) {
    let runs: Vec<(i64, String)> = db
        .rows("select id, status from agent_runs order by id")
        .await;
    assert_eq!(runs, [(5, "success".into()), (7, "running".into())]);
    let metrics: i64 = db.scalar("select count(*) from agent_metrics").await;
    assert_eq!(metrics, 1, "the kept run's metric is kept");
    let deadline: String = db
        .scalar("select cast(deadline as text) from agent_runs where id = 7")
        .await;
    assert!(deadline.starts_with("2026-12-08"), "{deadline}");

    let app = TestApp::spawn(db.clone()).await;
    let (status, body) = app.post_report(&report("kept")).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    assert!(body["run_id"].as_i64().unwrap() > 9, "{body}");
    // The metric still belongs to its run: deleting the run deletes it.
    db.execute("delete from agent_runs where id = 5").await;
    let metrics: i64 = db
        .scalar("select count(*) from agent_metrics where run_id = 5")
        .await;
    assert_eq!(metrics, 0);
}
