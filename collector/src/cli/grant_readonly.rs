//! `collector grant-readonly`: the dashboard's read-only role, created or updated.

use anyhow::Context;

use crate::config;
use crate::domain::RoleName;
use crate::store;

/// PostgreSQL's SQLSTATE for a statement the user's privileges do not allow.
const INSUFFICIENT_PRIVILEGE: &str = "42501";

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[arg(long, default_value = "webapp_readonly", value_parser = RoleName::parse)]
    role: RoleName,
}

pub(super) async fn run(args: Args) -> anyhow::Result<()> {
    let role = args.role;
    let store = super::store()?;
    let password = config::readonly_password()?;
    let granted = store::grant_readonly(&store, &role, &password).await;
    // The user the pool connects as (SQLite has none, and refuses before this).
    let user = store
        .postgres()
        .map(|pool| pool.connect_options().get_username().to_owned())
        .unwrap_or_default();
    store.close().await;
    if let Err(err) = &granted
        && err.database_code().as_deref() == Some(INSUFFICIENT_PRIVILEGE)
    {
        anyhow::bail!(
            "granting read-only access to {role}: permission denied: the database user {user:?} may not create roles; as a superuser run `ALTER ROLE \"{user}\" CREATEROLE;`, or run grant-readonly with a superuser's DATABASE_URL"
        );
    }
    granted.with_context(|| format!("granting read-only access to {role}"))?;
    tracing::info!(%role, "read-only role ready: CONNECT, USAGE and SELECT, now and on future tables");
    Ok(())
}
