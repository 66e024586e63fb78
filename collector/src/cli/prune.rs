//! `collector prune`: what `RETENTION_RUNS` and `RETENTION_METRICS` no longer keep, deleted
//! (or counted, with `--dry-run`).

use crate::config;
use crate::store::PRUNE_BATCH;

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    #[arg(long)]
    dry_run: bool,
}

pub(super) async fn run(args: Args) -> anyhow::Result<()> {
    let retention = config::retention()?;
    anyhow::ensure!(
        !retention.is_keep_all(),
        "RETENTION_METRICS and RETENTION_RUNS are unset: everything is kept"
    );
    let store = super::migrated_store().await?;
    let now = chrono::Utc::now();
    let result = if args.dry_run {
        store.prunable(retention, now).await
    } else {
        store.prune(retention, now, usize::MAX, PRUNE_BATCH).await
    };
    store.close().await;
    let pruned = result?;
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    println!(
        "{verb} {} runs (with their metrics) and {} metric rows",
        pruned.runs, pruned.metrics
    );
    if !args.dry_run {
        println!(
            "the longest batch (at most {PRUNE_BATCH} rows, one transaction) took {} ms",
            pruned.slowest_batch.as_millis()
        );
    }
    Ok(())
}
