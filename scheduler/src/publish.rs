//! The schedule published to the collector at start (`PUT /expectations/scheduler`), so that
//! it knows what should run and sees a slot that does not: a removed or disabled job stops
//! being expected. Replicas in high availability publish the same set, which is harmless.

use std::time::Duration;

use agent_sdk::client::{Deliverer, SendError};
use agent_sdk::wire::{ScheduledJob, ScheduledJobs};
use tokio_util::sync::CancellationToken;

use crate::schedule::{Catchup, Job};

/// The longest wait between two tries while the collector cannot be reached.
const MAX_DELAY: Duration = Duration::from_secs(60);

/// `jobs` as the collector is told them.
pub fn scheduled(jobs: &[Job]) -> ScheduledJobs {
    ScheduledJobs {
        jobs: jobs
            .iter()
            .map(|job| ScheduledJob {
                job: job.name.clone(),
                cron: job.cron.expression().to_owned(),
                timezone: job.cron.timezone().name().to_owned(),
                timeout: Some(humantime::format_duration(job.timeout).to_string()),
                enabled: job.enabled,
                catchup_window: (job.catchup != Catchup::Latest).then(|| job.catchup.text()),
                jitter: (!job.jitter.is_zero())
                    .then(|| humantime::format_duration(job.jitter).to_string()),
                pause_after_failures: job.pause_after_failures,
            })
            .collect(),
    }
}

/// Publishes `jobs`, trying again with backoff until the collector takes them, refuses them
/// (a 4xx other than a refused token: logged, not retried), or `stop` fires.
pub async fn publish(deliverer: Deliverer, jobs: ScheduledJobs, stop: CancellationToken) {
    let mut delay = Duration::from_secs(1);
    loop {
        match deliverer
            .client()
            .publish_jobs(&jobs, Duration::from_secs(10))
            .await
        {
            Ok(expected) => {
                tracing::info!(
                    expected,
                    "schedule published: the collector expects these jobs' runs"
                );
                return;
            }
            Err(SendError::Rejected { status, body }) => {
                tracing::warn!(
                    status,
                    body,
                    "the collector refused the schedule: it will not know which runs to expect"
                );
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?delay, "the schedule could not be published yet");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
        delay = (delay * 2).min(MAX_DELAY);
    }
}
