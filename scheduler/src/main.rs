//! `scheduler`: serve (default), list, check, run. Settings come from the environment.

use std::process::ExitCode;
use std::time::Duration;

use agent_sdk::client::Outcome;
use agent_sdk::wire::RunStatus;
use agent_sdk::{RunContext, execute};
use clap::{Parser, Subcommand};
use scheduler::service::{self, deliverer, load_jobs};
use scheduler::settings::Settings;
use serde_json::{Map, Value, json};

#[derive(Debug, Parser)]
#[command(
    name = "scheduler",
    version,
    about = "Runs agents on cron schedules and delivers their reports to the collector"
)]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every enabled job on its schedule (the default), with the status server.
    Serve {
        /// Run and log, deliver nothing (no COLLECTOR_TOKEN needed): try a schedule file.
        #[arg(long)]
        no_push: bool,
    },
    /// Show agents, schedules and their next fire times.
    List,
    /// Validate the schedule file and exit (non-zero on any problem).
    Check,
    /// Run one job or agent once now, print its metrics, and push the report.
    ///
    /// Exit status: 0 when the run succeeded and was delivered (or --no-push), 1 when the run
    /// failed, 2 when the report could not be delivered (it is in the spool). With --slot: 0
    /// or 1 also when the slot had run already (its stored status), 2 when the claim could
    /// not be asked (nothing ran), 3 when the slot is running elsewhere.
    Run {
        /// A job from the schedule file, or a registered agent.
        name: String,
        /// Override or add a parameter; VALUE is JSON when it parses as JSON, else text.
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
        params: Vec<(String, Value)>,
        /// Print the result without sending it to the collector.
        #[arg(long)]
        no_push: bool,
        /// Run the job for a slot of its cron, as `serve` would (the same run_key, trigger
        /// `schedule`), claimed first so that it runs once however often it is started:
        /// `latest` (the latest slot at or before now, in the job's timezone: a Kubernetes
        /// CronJob's pod) or an RFC 3339 instant that is a slot.
        #[arg(long, value_name = "latest|TIME", conflicts_with = "no_push")]
        slot: Option<String>,
    },
}

fn parse_param(text: &str) -> Result<(String, Value), String> {
    let (key, value) = text.split_once('=').ok_or("expected KEY=VALUE")?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((key.to_owned(), value))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    agent_sdk::telemetry::init_logging(cli.settings.log_format, "info");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("scheduler: error: starting the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let settings = cli.settings.without_empty_values();
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve { no_push: false }) {
            Command::Serve { no_push } => {
                let jobs = load_jobs(&settings)?;
                service::serve(&settings, jobs, no_push, agent_sdk::shutdown::signal())
                    .await
                    .map(|()| ExitCode::SUCCESS)
            }
            Command::List => list(&settings).map(|()| ExitCode::SUCCESS),
            Command::Check => load_jobs(&settings).map(|jobs| {
                println!(
                    "{}: ok, {} jobs",
                    settings.schedules_file.display(),
                    jobs.len()
                );
                ExitCode::SUCCESS
            }),
            Command::Run {
                name,
                params,
                no_push,
                slot: Some(slot),
            } => {
                debug_assert!(!no_push);
                run_slot(&settings, &name, params, &slot).await
            }
            Command::Run {
                name,
                params,
                no_push,
                slot: None,
            } => run_once(&settings, &name, params, no_push).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("scheduler: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn list(settings: &Settings) -> anyhow::Result<()> {
    let jobs = load_jobs(settings)?;
    let registry = scheduler::registry()?;
    let now = chrono::Utc::now();
    println!(
        "{:<24} {:<12} {:<18} {:<16} {:<8} next fires (UTC)",
        "job", "agent", "cron", "timezone", "enabled"
    );
    for job in &jobs {
        let next: Vec<String> = job
            .cron
            .upcoming(now, 3)
            .iter()
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .collect();
        println!(
            "{:<24} {:<12} {:<18} {:<16} {:<8} {}",
            job.name,
            job.agent.name(),
            job.cron.expression(),
            job.cron.timezone().name(),
            job.enabled,
            next.join(", ")
        );
    }
    let unscheduled: Vec<&str> = registry
        .names()
        .filter(|n| !jobs.iter().any(|j| j.agent.name() == *n))
        .collect();
    if !unscheduled.is_empty() {
        println!(
            "\nregistered, not scheduled (run with `scheduler run <agent>`): {}",
            unscheduled.join(", ")
        );
    }
    Ok(())
}

async fn run_once(
    settings: &Settings,
    name: &str,
    overrides: Vec<(String, Value)>,
    no_push: bool,
) -> anyhow::Result<ExitCode> {
    let jobs = load_jobs(settings)?;
    let (agent, mut params, timeout) = match jobs.into_iter().find(|j| j.name == name) {
        Some(job) => (job.agent, job.params, job.timeout),
        None => (
            scheduler::registry()?.get(name)?,
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

/// `scheduler run JOB --slot …`: the job's run for one slot of its cron, once. The spool (a
/// mounted volume's reports from an earlier pod) is delivered first; the slot is claimed from
/// the collector; only a granted claim runs the agent.
async fn run_slot(
    settings: &Settings,
    name: &str,
    overrides: Vec<(String, Value)>,
    slot: &str,
) -> anyhow::Result<ExitCode> {
    use agent_sdk::client::StartAnswer;
    use anyhow::Context;

    let job = load_jobs(settings)?
        .into_iter()
        .find(|j| j.name == name)
        .with_context(|| {
            format!(
                "--slot needs a job of {}: no job `{name}`",
                settings.schedules_file.display()
            )
        })?;
    let now = chrono::Utc::now();
    let slot = match slot {
        "latest" => job
            .cron
            .latest_at_or_before(now)
            .with_context(|| format!("`{}` has no slot before now", job.cron.expression()))?,
        text => {
            let at: chrono::DateTime<chrono::Utc> = text.parse().with_context(|| {
                format!("--slot {text:?}: expected `latest` or an RFC 3339 time")
            })?;
            anyhow::ensure!(
                job.cron.next_after(at - chrono::TimeDelta::seconds(1)) == Some(at),
                "--slot {text}: not a slot of `{}`",
                job.cron.expression()
            );
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
        .with_run_key(scheduler::engine::run_key_of(name, slot))
        .with_params(params);
    let grace =
        chrono::TimeDelta::from_std(settings.deadline_grace).unwrap_or(chrono::TimeDelta::MAX);
    let start = scheduler::engine::run_start(&job, &ctx, &scheduler::engine::claimant(), grace);
    match deliverer
        .client()
        .start(&start, scheduler::engine::CLAIM_WAIT)
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
                RunStatus::Failed => ExitCode::FAILURE,
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
        Outcome::Spooled | Outcome::Rejected { .. } => {
            eprintln!(
                "slot {slot}: not delivered; the report is in {} (a volume keeps it for the next pod)",
                settings.spool_dir.display()
            );
            ExitCode::from(2)
        }
    })
}
