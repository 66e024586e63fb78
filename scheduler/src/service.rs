//! `scheduler serve` as a library call: the binary runs it until a signal, the `platform`
//! command beside an in-process collector.

use std::future::Future;
use std::time::Duration;

use agent_sdk::client::{CollectorClient, Deliverer, Spool, TokenSource};
use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::refusal::Refusal;
use crate::schedule::{self, Job};
use crate::settings::Settings;
use crate::status::{self, StatusState};

/// The jobs of `settings.schedules_file`, resolved against every linked agent.
pub fn load_jobs(settings: &Settings) -> anyhow::Result<Vec<Job>> {
    let registry = crate::registry()?;
    if !settings.schedules_file.exists() {
        tracing::warn!(file = %settings.schedules_file.display(), "no schedule file: agents run on their default schedules");
    }
    // Each problem is already one line naming the file and the agent.
    schedule::load(&settings.schedules_file, &registry)
        .map_err(|errors| Refusal::Config(errors.to_string()).into())
}

/// The delivery client for `settings`: the collector's URL and token, and the spool.
pub fn deliverer(settings: &Settings) -> anyhow::Result<Deliverer> {
    let token = match (&settings.collector_token, &settings.collector_token_file) {
        (Some(_), Some(_)) => {
            return Err(Refusal::Config(
                "COLLECTOR_TOKEN and COLLECTOR_TOKEN_FILE are both set: keep one".into(),
            )
            .into());
        }
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file).with_context(|| {
                format!("COLLECTOR_TOKEN_FILE {file} (under docker compose, make deploy writes it from .env's COLLECTOR_TOKEN)")
            })?;
            if text.trim().is_empty() {
                return Err(
                    Refusal::Config(format!("COLLECTOR_TOKEN_FILE {file} is empty")).into(),
                );
            }
            TokenSource::File(file.into())
        }
        (Some(token), None) if token.starts_with("change-me") => {
            return Err(Refusal::Config(
                "COLLECTOR_TOKEN is still the .env.example placeholder (create one with: collector token --sub scheduler)".into(),
            )
            .into());
        }
        (Some(token), None) => TokenSource::Fixed(Some(token.clone())),
        (None, None) => {
            return Err(Refusal::Config(
                "COLLECTOR_TOKEN (or COLLECTOR_TOKEN_FILE) is not set (create one with: collector token --sub scheduler)".into(),
            )
            .into());
        }
    };
    let spool = open_spool(settings)?;
    let client = CollectorClient::with_token_source(&settings.collector_url, token)
        .context("building the HTTP client")?;
    Ok(Deliverer::new(client, spool))
}

/// Re-reads the token file on every SIGHUP until `stop` fires.
async fn reload_token_on_hangup(deliverer: Deliverer, stop: CancellationToken) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => signal,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGHUP: the token file is still re-read when it changes");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = hangups.recv() => {
                tracing::info!("SIGHUP: reading the collector token again");
                deliverer.client().reload_token();
            }
            () = stop.cancelled() => return,
        }
    }
}

fn open_spool(settings: &Settings) -> anyhow::Result<Spool> {
    Spool::open(&settings.spool_dir)
        .with_context(|| format!("SPOOL_DIR {} is not usable", settings.spool_dir.display()))
}

/// Runs `jobs` on their schedules with the status server on `settings.addr`, delivering each
/// report to the collector (unless `no_push`), until `shutdown` resolves; then no new runs
/// start, running ones get [`Settings::grace_for_runs`] to finish, the rest of
/// `settings.shutdown_grace` is for delivering or spooling their reports, and it returns.
pub async fn serve(
    settings: &Settings,
    jobs: Vec<Job>,
    no_push: bool,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let prometheus = status::prometheus_handle();
    let published = crate::publish::scheduled(&jobs);
    let (engine, spool, deliverer) = if no_push {
        let spool = open_spool(settings)?;
        tracing::warn!("--no-push: runs are logged, not delivered to the collector");
        let engine = Engine::without_delivery(jobs, &spool, settings.max_concurrent_runs as usize);
        (engine, spool, None)
    } else {
        let deliverer = deliverer(settings)?;
        let engine = Engine::with_claims(
            jobs,
            deliverer.clone(),
            settings.max_concurrent_runs as usize,
            crate::engine::Claims {
                high_availability: settings.high_availability,
                deadline_grace: settings.deadline_grace,
            },
        );
        if settings.high_availability {
            tracing::info!("SCHEDULER_HA: each run is claimed from the collector before it starts");
        }
        (engine, deliverer.spool().clone(), Some(deliverer))
    };
    engine
        .start()
        .await
        .context("preparing the scheduler's state in SPOOL_DIR")?;

    let stop_redelivery = CancellationToken::new();
    if let Some(deliverer) = &deliverer {
        tokio::spawn(reload_token_on_hangup(
            deliverer.clone(),
            stop_redelivery.clone(),
        ));
        tokio::spawn(crate::token_expiry::watch(
            deliverer.clone(),
            settings.token_warn_before,
            stop_redelivery.clone(),
        ));
        tokio::spawn(crate::publish::publish(
            deliverer.clone(),
            published,
            stop_redelivery.clone(),
        ));
    }
    let redelivery = deliverer.clone().map(|deliverer| {
        let stop = stop_redelivery.clone();
        tokio::spawn(async move {
            deliverer
                .redeliver_until(Duration::from_secs(10), stop.cancelled_owned())
                .await
        })
    });

    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .with_context(|| format!("cannot listen on SCHEDULER_ADDR {}", settings.addr))?;
    let stop_status = CancellationToken::new();
    let server = tokio::spawn({
        let router = status::router(StatusState {
            engine: engine.clone(),
            spool: spool.clone(),
            deliverer,
            trigger_token: settings.trigger_token.clone(),
            token_warn_before: settings.token_warn_before,
            prometheus,
        });
        let stop = stop_status.clone();
        async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        }
    });
    tracing::info!(addr = %settings.addr, collector = %settings.collector_url, jobs = engine.statuses().len(), "scheduler running");

    shutdown.await;
    let for_runs = settings.grace_for_runs();
    tracing::info!(grace = ?settings.shutdown_grace, ?for_runs, "shutting down: no new runs; waiting for running ones");
    engine.shutdown(for_runs).await;
    stop_redelivery.cancel();
    if let Some(redelivery) = redelivery {
        let _ = redelivery.await;
    }
    stop_status.cancel();
    let _ = server.await;
    let left = spool.depth().await.unwrap_or(0);
    tracing::info!(spooled = left, "scheduler stopped");
    Ok(())
}
