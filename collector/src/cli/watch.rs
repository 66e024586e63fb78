//! `collector watch`: one pass of the watcher now, and what it did.

use crate::config;
use crate::watch::Watcher;

pub(super) async fn run() -> anyhow::Result<()> {
    let rules = config::watch_rules()?;
    let store = super::migrated_store().await?;
    let started = std::time::Instant::now();
    let watched = Watcher::new(store.clone(), rules)
        .pass(chrono::Utc::now())
        .await;
    let elapsed = started.elapsed();
    store.close().await;
    match watched? {
        Some(w) => println!(
            "watch: {} slots missed, {} late, {} incidents opened, {} resolved in {} ms",
            w.missed,
            w.late,
            w.opened,
            w.resolved,
            elapsed.as_millis()
        ),
        None => println!("watch: another collector is running its pass; nothing done"),
    }
    Ok(())
}
