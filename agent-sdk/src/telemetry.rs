//! Logging and Prometheus set-up shared by the platform's services (collector, scheduler).

use std::str::FromStr;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// `LOG_FORMAT`: `text` for people (the default), `json` for log collectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("{other:?}; expected \"json\" or \"text\"")),
        }
    }
}

/// Logs to stderr (stdout stays for a command's output), filtered by `RUST_LOG`. A second call
/// keeps the first set-up (tests start several services in one process).
pub fn init_logging(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colours for a person at a terminal only: a container's log, a file or a pipe gets none.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_ansi(false)
            .try_init(),
        LogFormat::Text => builder.with_ansi(colour).try_init(),
    };
}

/// How often histograms are drained into their summaries, whether or not anyone scrapes.
pub const PROMETHEUS_UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The process-wide Prometheus recorder (the `metrics` macros need a global one), installed on
/// first call with histogram `buckets` for metric names ending in each suffix; later calls
/// return the same handle.
///
/// A thread runs the recorder's upkeep every [`PROMETHEUS_UPKEEP_EVERY`]: histogram samples
/// wait in memory until upkeep folds them in, and without it a process nobody scrapes (the
/// default deployment has no Prometheus server) would grow without bound.
pub fn prometheus(buckets: &[(&str, &[f64])]) -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new();
            for (suffix, bounds) in buckets {
                builder = match builder
                    .set_buckets_for_metric(Matcher::Suffix((*suffix).into()), bounds)
                {
                    Ok(builder) => builder,
                    // Only empty bounds are refused: that metric stays a summary.
                    Err(_) => PrometheusBuilder::new(),
                };
            }
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed: /prometheus stays empty");
            }
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("prometheus-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(PROMETHEUS_UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(err) = spawned {
                tracing::error!(error = %err, "cannot start the Prometheus upkeep thread: memory grows until /prometheus is scraped");
            }
            handle
        })
        .clone()
}
