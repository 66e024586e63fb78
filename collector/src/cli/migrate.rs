//! `collector migrate`: pending migrations applied, and nothing else.

pub(super) async fn run() -> anyhow::Result<()> {
    let store = super::migrated_store().await?;
    let latest = store
        .migrator()
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0);
    tracing::info!(version = latest, "database schema is up to date");
    store.close().await;
    Ok(())
}
