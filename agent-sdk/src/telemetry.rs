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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The process-wide Prometheus recorder (the `metrics` macros need a global one), installed on
/// first call with histogram `buckets` for metric names ending in each suffix; later calls
/// return the same handle.
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
            handle
        })
        .clone()
}
