//! The collector and the scheduler started in this process, as `collector serve` and
//! `scheduler serve` start them, and stopped in order: the scheduler first (running agents
//! finish and deliver), then the collector.

use std::time::Duration;

use agent_sdk::client::Spool;
use anyhow::Context;
use collector::auth::{Scope, TokenKeys};
use collector::config::{DatabaseConfig, ServeConfig};
use collector::startup::Application;
use collector::store::PoolSettings;
use scheduler::settings::Settings;
use tokio_util::sync::CancellationToken;

use crate::Cli;
use crate::banner::{print_banner, print_stored_runs, without_password};
use crate::dev_files::{load_jobs, local_secret};

pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cli.data_dir)
        .with_context(|| format!("creating {}", cli.data_dir.display()))?;
    let secret = local_secret(&cli.data_dir.join("secret"))?;
    let keys = TokenKeys::new(&secret);

    // The collector: migrated, bound, serving until told to stop.
    let database_url = cli
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", cli.data_dir.join("dev.db").display()));
    let shown_database = without_password(&database_url);
    // The binary's checks, on the platform's settings: a handful of agents on one machine, so
    // a small pool and one write transaction at a time.
    let database = DatabaseConfig::new(
        database_url.clone(),
        PoolSettings {
            max_connections: 4,
            acquire_timeout: Duration::from_secs(5),
        },
        1,
    )
    .context("--database-url")?;
    let config = ServeConfig::new(database, secret, cli.collector_addr);
    let app = Application::build(config).await.with_context(|| {
        format!(
            "starting the collector on {shown_database} at {} (is a collector already running? --collector-addr picks another address)",
            cli.collector_addr
        )
    })?;
    let store = app.store().clone();
    let stored_runs = app.ingest().subscribe();
    let collector_url = format!("http://{}", app.local_addr()?);
    let stop_collector = CancellationToken::new();
    let collector = tokio::spawn(app.run_until(stop_collector.clone().cancelled_owned()));

    let month = Duration::from_secs(30 * 24 * 3600);
    let token = keys
        .issue("dev", &[Scope::Ingest, Scope::Read], None, month)
        .context("signing the dev token")?;
    // The console's sign-in: read only, as an operator's own token would be.
    let console_token = keys
        .issue("dev-console", &[Scope::Read], None, month)
        .context("signing the console's token")?;
    let scheduler_token = keys
        .issue("dev-scheduler", &[Scope::Ingest], None, month)
        .context("signing the scheduler's token")?;

    // The scheduler: the same code as `scheduler serve`, delivering over HTTP.
    let jobs = load_jobs(cli.schedules.as_deref(), &collector_url)?;
    let settings = Settings {
        schedules_file: cli.schedules.clone().unwrap_or_default(),
        spool_dir: cli.data_dir.join("spool"),
        addr: cli.scheduler_addr,
        max_concurrent_runs: 4,
        shutdown_grace: Duration::from_secs(10),
        trigger_token: Some(token.clone()),
        ..Settings::local(collector_url.clone(), scheduler_token)
    };
    let job_names: Vec<String> = jobs
        .iter()
        .filter(|job| job.enabled)
        .map(|job| format!("{} ({})", job.name, job.cron.expression()))
        .collect();
    let stop_scheduler = CancellationToken::new();
    let mut scheduler = tokio::spawn({
        let settings = settings.clone();
        let stop = stop_scheduler.clone();
        async move { scheduler::service::serve(&settings, jobs, false, stop.cancelled_owned()).await }
    });

    print_banner(
        &collector_url,
        &settings,
        &shown_database,
        &token,
        &console_token,
        &job_names,
    );
    let printer = tokio::spawn(print_stored_runs(stored_runs));

    // Until Ctrl-C, or the scheduler failing to start (its address taken, say).
    let scheduler_result = tokio::select! {
        () = agent_sdk::shutdown::signal() => {
            println!("\nstopping: running agents finish and deliver…");
            stop_scheduler.cancel();
            scheduler.await
        }
        finished = &mut scheduler => finished,
    };
    stop_collector.cancel();
    let served = collector.await;
    store.close().await;
    // The collector has stopped, and its ingest service with it: the announcements end, and the
    // printer prints what is left and returns.
    if tokio::time::timeout(Duration::from_secs(2), printer)
        .await
        .is_err()
    {
        tracing::warn!("stored-run lines may be missing at the end");
    }

    scheduler_result
        .context("the scheduler task failed")?
        .context("the scheduler stopped (--scheduler-addr picks another address)")?;
    served
        .context("the collector task failed")?
        .context("serving HTTP")?;
    let waiting = Spool::open(&settings.spool_dir)
        .context("opening the spool")?
        .depth()
        .await
        .unwrap_or(0);
    if waiting > 0 {
        println!(
            "stopped. {waiting} reports wait in {} and are delivered at the next start.",
            settings.spool_dir.display()
        );
    } else {
        println!("stopped. Every run is stored in {shown_database}.");
    }
    Ok(())
}
