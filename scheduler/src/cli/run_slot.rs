//! `scheduler run JOB --slot …`: the job's run for one slot of its cron, claimed first so that
//! it runs once however often it is started (a Kubernetes CronJob's pod).

use std::process::ExitCode;

use agent_sdk::client::{Outcome, StartAnswer};
use agent_sdk::wire::RunStatus;
use agent_sdk::{RunContext, execute};
use anyhow::Context;
use serde_json::{Value, json};

use crate::refusal::Refusal;
use crate::service::{deliverer, load_jobs};
use crate::settings::Settings;

/// `scheduler run JOB --slot …`: the job's run for one slot of its cron, once. The spool (a
/// mounted volume's reports from an earlier pod) is delivered first; the slot is claimed from
/// the collector; only a granted claim runs the agent.
pub(super) async fn run(
    settings: &Settings,
    name: &str,
    overrides: Vec<(String, Value)>,
    slot: &str,
) -> anyhow::Result<ExitCode> {
    let job = load_jobs(settings)?
        .into_iter()
        .find(|j| j.name == name)
        .ok_or_else(|| {
            Refusal::Usage(format!(
                "--slot needs a job of {}: no job `{name}`",
                settings.schedules_file.display()
            ))
        })?;
    let now = chrono::Utc::now();
    let slot = match slot {
        "latest" => job
            .cron
            .latest_at_or_before(now)
            .with_context(|| format!("`{}` has no slot before now", job.cron.expression()))?,
        text => {
            let at: chrono::DateTime<chrono::Utc> = text.parse().map_err(|_| {
                Refusal::Usage(format!(
                    "--slot {text:?}: expected `latest` or an RFC 3339 time"
                ))
            })?;
            if job.cron.next_after(at - chrono::TimeDelta::seconds(1)) != Some(at) {
                return Err(Refusal::Usage(format!(
                    "--slot {text}: not a slot of `{}`",
                    job.cron.expression()
                ))
                .into());
            }
            at
        }
    };
    let deliverer = deliverer(settings)?;
    if let Err(err) = deliverer.redeliver_once().await {
        eprintln!("the spool could not be read: {err}");
    }

    let mut params = job.params.clone();
    params.extend(overrides);
    let ctx = RunContext::new(name)
        .scheduled(slot)
        .with_run_key(crate::engine::run_key_of(name, slot))
        .with_params(params);
    let grace =
        chrono::TimeDelta::from_std(settings.deadline_grace).unwrap_or(chrono::TimeDelta::MAX);
    let start = crate::engine::run_start(&job, &ctx, &crate::engine::claimant(), grace);
    match deliverer
        .client()
        .start(&start, crate::engine::CLAIM_WAIT)
        .await
    {
        Ok(StartAnswer::Started { .. }) => {}
        Ok(StartAnswer::Claimed(claim)) => {
            eprintln!(
                "slot {slot}: run {} already {} (claimant {}, host {}): not run again",
                claim.run_id,
                claim.status.as_str(),
                claim.claimant.as_deref().unwrap_or("none"),
                claim.host.as_deref().unwrap_or("unknown"),
            );
            return Ok(match claim.status {
                RunStatus::Success => ExitCode::SUCCESS,
                RunStatus::Failed | RunStatus::Cancelled => ExitCode::FAILURE,
                RunStatus::Running => ExitCode::from(3),
            });
        }
        Err(err) => {
            eprintln!("slot {slot}: the claim could not be asked ({err}): not run");
            return Ok(ExitCode::from(2));
        }
    }

    let report = execute(job.agent.clone(), ctx, Some(job.timeout)).await;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "job": name,
            "slot": slot,
            "status": report.status(),
            "error": report.error,
            "run_key": report.run_key,
            "metrics": report.metrics,
        }))?
    );
    Ok(match deliverer.deliver(&report).await? {
        Outcome::Delivered { run_id, .. } => {
            eprintln!("slot {slot}: delivered: run {run_id}");
            if report.status() == RunStatus::Success {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Outcome::Spooled => {
            eprintln!(
                "slot {slot}: not delivered; the report is in {} (a volume keeps it for the next pod)",
                settings.spool_dir.display()
            );
            ExitCode::from(2)
        }
        Outcome::Rejected { status, reason } => {
            eprintln!(
                "slot {slot}: not delivered: the collector refused it ({status}): {reason}; kept in {}/rejected, not sent again",
                settings.spool_dir.display()
            );
            ExitCode::from(2)
        }
    })
}
