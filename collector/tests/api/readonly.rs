//! The dashboard's read-only role, created by the real `collector grant-readonly`.

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};

use crate::helpers::{Db, TestApp, database_url, report};

const PASSWORD: &str = "a-long-enough-password";

async fn grant(pool: &PgPool, role: &str) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_collector"))
        .args(["grant-readonly", "--role", role])
        .env_clear()
        .env("DATABASE_URL", database_url(pool).await)
        .env("WEBAPP_READONLY_PASSWORD", PASSWORD)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn connect_as(pool: &PgPool, role: &str) -> PgConnection {
    let options: PgConnectOptions = (*pool.connect_options())
        .clone()
        .username(role)
        .password(PASSWORD);
    PgConnection::connect_with(&options).await.unwrap()
}

fn sqlstate(err: sqlx::Error) -> String {
    err.as_database_error()
        .and_then(|e| e.code())
        .unwrap_or_default()
        .into_owned()
}

/// PostgreSQL only: SQLite has no roles.
#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn the_readonly_role_reads_everything_and_writes_nothing(pool: PgPool) {
    let role = format!("ro_{}", uuid::Uuid::new_v4().simple());
    let app = TestApp::spawn(Db::Postgres(pool.clone())).await;
    app.post_report(&report("dash")).await;

    grant(&pool, &role).await;
    grant(&pool, &role).await; // idempotent
    // A table a later migration creates is readable too (default privileges).
    sqlx::query("create table later_table (id int)")
        .execute(&pool)
        .await
        .unwrap();

    let mut ro = connect_as(&pool, &role).await;
    for query in [
        "SELECT agent_name, status, started_at, error_message FROM agent_runs ORDER BY started_at DESC LIMIT 20",
        "SELECT metric_name, metric_value, metric_text FROM agent_metrics WHERE agent_name='dash' ORDER BY recorded_at DESC LIMIT 20",
        "SELECT * FROM agent_daily_summaries",
        "SELECT * FROM agent_metric_daily_summaries",
        "SELECT * FROM later_table",
    ] {
        sqlx::query(query)
            .fetch_all(&mut ro)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
    }
    for write in [
        "INSERT INTO agent_runs (agent_name, started_at, status) VALUES ('x', now(), 'success')",
        "UPDATE agent_runs SET status = 'failed'",
        "DELETE FROM agent_metrics",
    ] {
        let err = sqlx::query(write).execute(&mut ro).await.unwrap_err();
        assert_eq!(
            sqlstate(err),
            "25006",
            "{write}: refused as a read-only transaction"
        );
    }
    // Even with read-only transactions switched off, the role has no write privilege.
    sqlx::query("set default_transaction_read_only = off")
        .execute(&mut ro)
        .await
        .unwrap();
    let err = sqlx::query("DELETE FROM agent_metrics")
        .execute(&mut ro)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(err), "42501", "permission denied");
    ro.close().await.unwrap();

    let (runs, metrics, ..) = app.row_counts().await;
    assert_eq!((runs, metrics), (1, 3));
    sqlx::query(sqlx::AssertSqlSafe(format!("drop owned by {role}")))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("drop role {role}")))
        .execute(&pool)
        .await
        .unwrap();
}

/// A database user that may not create roles is told so in one line, with what it needs, and
/// nothing is created.
#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn an_owner_without_createrole_is_told_what_it_needs(pool: PgPool) {
    let owner = format!("owner_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "create role {owner} login nocreaterole password '{PASSWORD}'"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let options: PgConnectOptions = (*pool.connect_options())
        .clone()
        .username(&owner)
        .password(PASSWORD);
    let url = format!(
        "postgres://{owner}:{PASSWORD}@{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or_default()
    );
    let role = format!("ro_{}", uuid::Uuid::new_v4().simple());
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_collector"))
        .args(["grant-readonly", "--role", &role])
        .env_clear()
        .env("DATABASE_URL", url)
        .env("WEBAPP_READONLY_PASSWORD", PASSWORD)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("CREATEROLE") && stderr.contains(&owner),
        "{stderr}"
    );
    assert_eq!(stderr.matches("permission denied").count(), 1, "{stderr}");
    let created: bool =
        sqlx::query_scalar("select exists (select 1 from pg_roles where rolname = $1)")
            .bind(&role)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!created);
}

/// The password rule README and `.env.example` state: `change-me` and anything under 12
/// characters are refused, naming the variable, before the database is asked.
#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn a_short_or_placeholder_password_is_refused(pool: PgPool) {
    for password in ["change-me", "eleven-char"] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_collector"))
            .args(["grant-readonly"])
            .env_clear()
            .env("DATABASE_URL", database_url(&pool).await)
            .env("WEBAPP_READONLY_PASSWORD", password)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{password}: {stderr}");
        assert!(
            stderr.contains("WEBAPP_READONLY_PASSWORD") && stderr.contains("12 characters"),
            "{stderr}"
        );
    }
}
