//! `collector serve`: the HTTP API and, beside it, the ingest writers and the watcher, until
//! SIGINT or SIGTERM.

use anyhow::Context;

use crate::config::ServeConfig;
use crate::startup::Application;

pub(super) async fn run() -> anyhow::Result<()> {
    let app = Application::build(ServeConfig::from_env()?).await?;
    tracing::info!(addr = %app.local_addr()?, writers = app.ingest().writers(), "collector listening");
    let store = app.store().clone();
    app.run_until(async {
        agent_sdk::shutdown::signal().await;
        tracing::info!("shutting down: no new connections, finishing requests in flight");
    })
    .await
    .context("serving HTTP")?;
    store.close().await;
    tracing::info!("collector stopped");
    Ok(())
}
