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
    /// failed, 2 when the report could not be delivered (it is in the spool).
    Run {
        /// A job from the schedule file, or a registered agent.
        name: String,
        /// Override or add a parameter; VALUE is JSON when it parses as JSON, else text.
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
        params: Vec<(String, Value)>,
        /// Print the result without sending it to the collector.
        #[arg(long)]
        no_push: bool,
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
