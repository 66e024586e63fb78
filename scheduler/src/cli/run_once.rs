//! `scheduler run NAME`: one job or agent run once now, its metrics printed, its report pushed.

use std::process::ExitCode;
use std::time::Duration;

use agent_sdk::client::Outcome;
use agent_sdk::wire::RunStatus;
use agent_sdk::{RunContext, execute};
use serde_json::{Map, Value, json};

use crate::service::{deliverer, load_jobs};
use crate::settings::Settings;

pub(super) async fn run(
    settings: &Settings,
    name: &str,
    overrides: Vec<(String, Value)>,
    no_push: bool,
) -> anyhow::Result<ExitCode> {
    let jobs = load_jobs(settings)?;
    let (agent, mut params, timeout) = match jobs.into_iter().find(|j| j.name == name) {
        Some(job) => (job.agent, job.params, job.timeout),
        None => (
            crate::registry()?.get(name)?,
            Map::new(),
            Duration::from_secs(300),
        ),
    };
    params.extend(overrides);
    let deliverer = if no_push {
        None
    } else {
        Some(deliverer(settings)?)
    };

    let ctx = RunContext::new(name).with_params(params);
    let report = execute(agent, ctx, Some(timeout)).await;
    let duration_ms = (report.finished_at - report.started_at).num_milliseconds();
    let printed = json!({
        "agent": report.agent_name,
        "status": report.status(),
        "duration_ms": duration_ms,
        "error": report.error,
        "run_key": report.run_key,
        "metrics": report.metrics,
    });
    println!("{}", serde_json::to_string_pretty(&printed)?);

    let delivered = match &deliverer {
        None => true,
        Some(deliverer) => match deliverer.deliver(&report).await? {
            Outcome::Delivered { run_id, .. } => {
                eprintln!("delivered: run {run_id}");
                true
            }
            Outcome::Spooled => {
                let why = deliverer
                    .token_refused()
                    .unwrap_or_else(|| "the collector is unreachable".into());
                eprintln!(
                    "not delivered: {why}; the report is in {}",
                    settings.spool_dir.display()
                );
                false
            }
            Outcome::Rejected { status, reason } => {
                eprintln!("not delivered: the collector refused it ({status}): {reason}");
                false
            }
        },
    };
    Ok(match (report.status(), delivered) {
        (_, false) => ExitCode::from(2),
        (RunStatus::Success, true) => ExitCode::SUCCESS,
        (_, true) => ExitCode::FAILURE,
    })
}
