//! Running an agent once: timing, timeout, panics and errors all end in a `RunReport`.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::agent::Agent;
use crate::context::RunContext;
use crate::wire::{Metrics, RunReport};

/// After cancellation (timeout, shutdown) an agent has this long to return before it is aborted.
pub const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// Runs `agent` with `ctx` and reports the outcome: its metrics, or `error` set to why it
/// failed — its error chain, `panicked: …`, `timed out after …` or `cancelled: …`.
pub async fn execute(
    agent: Arc<dyn Agent>,
    ctx: RunContext,
    timeout: Option<Duration>,
) -> RunReport {
    let started_at = Utc::now();
    let cancel = ctx.cancellation().clone();
    let report_ctx = ctx.clone();
    let mut task = tokio::spawn(async move { agent.run(&ctx).await });

    let deadline = async {
        match timeout {
            Some(timeout) => tokio::time::sleep(timeout).await,
            None => std::future::pending().await,
        }
    };
    let outcome: Result<Metrics, String> = tokio::select! {
        joined = &mut task => from_join(joined),
        () = deadline => {
            cancel.cancel();
            let why = format!("timed out after {}", format_duration(timeout.unwrap_or_default()));
            stop(task, why).await
        }
        () = cancel.cancelled() => stop(task, "cancelled: the scheduler is shutting down".into()).await,
    };

    let (metrics, error) = match outcome {
        Ok(metrics) => (metrics, None),
        Err(error) => (Metrics::new(), Some(error)),
    };
    RunReport {
        agent_name: report_ctx.agent_name().to_owned(),
        metrics,
        started_at,
        finished_at: Utc::now().max(started_at),
        error,
        run_key: Some(report_ctx.run_key()),
        trigger: Some(report_ctx.trigger()),
        scheduled_for: report_ctx.scheduled_for(),
        host: hostname(),
        cancelled: false,
    }
}

/// Gives a cancelled run [`CANCEL_GRACE`] to return, then aborts it. The run counts as failed
/// with `why` either way: whatever it returns after its deadline is not its result.
async fn stop(
    mut task: tokio::task::JoinHandle<crate::RunResult>,
    why: String,
) -> Result<Metrics, String> {
    if tokio::time::timeout(CANCEL_GRACE, &mut task).await.is_err() {
        task.abort();
    }
    Err(why)
}

fn from_join(joined: Result<crate::RunResult, tokio::task::JoinError>) -> Result<Metrics, String> {
    match joined {
        Ok(Ok(metrics)) => Ok(metrics),
        Ok(Err(error)) => Err(format!("{error:#}")),
        Err(join) if join.is_panic() => {
            Err(format!("panicked: {}", panic_message(join.into_panic())))
        }
        Err(_) => Err("aborted".into()),
    }
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// `1m 30s`, `500ms`: short and exact.
fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let millis = duration.subsec_millis();
    match (secs / 60, secs % 60, millis) {
        (0, 0, ms) => format!("{ms}ms"),
        (0, s, 0) => format!("{s}s"),
        (0, s, ms) => format!("{s}.{ms:03}s"),
        (m, 0, 0) => format!("{m}m"),
        (m, s, _) => format!("{m}m {s}s"),
    }
}

/// The machine's name, for the report's `host`.
pub fn hostname() -> Option<String> {
    // Read once: it is asked for every run, and it does not change under a running process.
    static HOSTNAME: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    HOSTNAME
        .get_or_init(|| {
            std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
                .map(|h| h.trim().chars().take(255).collect::<String>())
                .filter(|h| !h.is_empty())
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RunResult, wire::RunStatus};

    struct Scripted(fn(&RunContext) -> RunResult, Duration);

    #[async_trait::async_trait]
    impl Agent for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        async fn run(&self, ctx: &RunContext) -> RunResult {
            tokio::time::sleep(self.1).await;
            (self.0)(ctx)
        }
    }

    async fn run(agent: Scripted, timeout: Option<Duration>) -> RunReport {
        execute(Arc::new(agent), RunContext::new("scripted"), timeout).await
    }

    #[tokio::test]
    async fn success_reports_metrics_and_a_run_key() {
        let report = run(
            Scripted(|_| Ok(Metrics::from([("n", 1)])), Duration::ZERO),
            None,
        )
        .await;
        assert_eq!(report.status(), RunStatus::Success);
        assert_eq!(report.metrics, Metrics::from([("n", 1)]));
        assert!(report.run_key.is_some());
        assert!(report.finished_at >= report.started_at);
    }

    #[tokio::test]
    async fn errors_carry_their_chain() {
        let report = run(
            Scripted(
                |_| Err(anyhow::anyhow!("connection refused").context("fetching prices")),
                Duration::ZERO,
            ),
            None,
        )
        .await;
        assert_eq!(
            report.error.as_deref(),
            Some("fetching prices: connection refused")
        );
    }

    #[tokio::test]
    async fn panics_become_failed_reports() {
        let report = run(
            Scripted(|_| panic!("index out of bounds"), Duration::ZERO),
            None,
        )
        .await;
        assert_eq!(
            report.error.as_deref(),
            Some("panicked: index out of bounds")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_past_its_timeout_fails_and_is_stopped() {
        let report = run(
            Scripted(|_| Ok(Metrics::new()), Duration::from_secs(3600)),
            Some(Duration::from_millis(1500)),
        )
        .await;
        assert_eq!(report.error.as_deref(), Some("timed out after 1.500s"));
    }

    /// A run cancelled from outside (an operator, a shutdown) whose agent ignores it ends
    /// `cancelled: …` once [`CANCEL_GRACE`] has passed, its task dropped.
    #[tokio::test(start_paused = true)]
    async fn a_cancelled_run_ends_after_its_grace_whatever_its_agent_does() {
        let ctx = RunContext::new("scripted");
        let cancel = ctx.cancellation().clone();
        let started = tokio::time::Instant::now();
        let running = tokio::spawn(execute(
            Arc::new(Scripted(|_| Ok(Metrics::new()), Duration::from_secs(3600))),
            ctx,
            None,
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        cancel.cancel();
        let report = running.await.unwrap();
        assert!(
            report.error.as_deref().unwrap().starts_with("cancelled"),
            "{report:?}"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(1) + CANCEL_GRACE);
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(format_duration(Duration::from_secs(90)), "1m 30s");
        assert_eq!(format_duration(Duration::from_secs(5)), "5s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
    }
}
