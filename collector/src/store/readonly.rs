//! The dashboard's read-only role: may connect and select, nothing else, now and later.

use secrecy::{ExposeSecret, SecretString};
use sqlx::{AssertSqlSafe, PgConnection};

use super::{Store, StoreError};
use crate::domain::RoleName;

/// Creates `role` (or updates its password) with read-only access to this database: CONNECT,
/// USAGE on `public`, SELECT on every table, and SELECT on tables later migrations create.
/// Idempotent: running it again changes nothing but the password. PostgreSQL only: a SQLite
/// file has no roles (whoever can read the file reads everything).
pub async fn grant_readonly(
    store: &Store,
    role: &RoleName,
    password: &SecretString,
) -> Result<(), StoreError> {
    let pool = store.postgres().ok_or(StoreError::Unsupported(
        "read-only roles exist only in PostgreSQL; DATABASE_URL names a SQLite file",
    ))?;
    let mut tx = pool.begin().await?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_roles where rolname = $1)")
            .bind(role.as_str())
            .fetch_one(&mut *tx)
            .await?;
    let create_or_alter = if exists {
        "alter role %I with login password %L"
    } else {
        "create role %I with login password %L"
    };
    // Utility statements take no bind parameters: PostgreSQL's format() quotes them instead.
    execute_formatted(
        &mut tx,
        create_or_alter,
        role,
        Some(password.expose_secret()),
    )
    .await?;
    for statement in [
        "alter role %I set default_transaction_read_only = on",
        "grant connect on database %s to %I",
        "grant usage on schema public to %I",
        "grant select on all tables in schema public to %I",
        // Tables created later by the role running the migrations (this one).
        "alter default privileges in schema public grant select on tables to %I",
    ] {
        execute_formatted(&mut tx, statement, role, None).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn execute_formatted(
    conn: &mut PgConnection,
    template: &str,
    role: &RoleName,
    password: Option<&str>,
) -> Result<(), sqlx::Error> {
    let statement: String = if template.contains("%s") {
        sqlx::query_scalar("select format($1, quote_ident(current_database()), $2::text)")
            .bind(template)
            .bind(role.as_str())
            .fetch_one(&mut *conn)
            .await?
    } else {
        sqlx::query_scalar("select format($1, $2::text, $3::text)")
            .bind(template)
            .bind(role.as_str())
            .bind(password)
            .fetch_one(&mut *conn)
            .await?
    };
    sqlx::raw_sql(AssertSqlSafe(statement))
        .execute(conn)
        .await?;
    Ok(())
}
