//! The `scheduler` command line: the subcommands, each a function in a module of its own.
//! Settings come from the environment (`settings.rs`, `.env.example`).

mod check;
mod list;
mod run_once;
mod run_slot;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::settings::Settings;

pub use crate::refusal::{EXIT_CONFIG, EXIT_USAGE, Refusal, exit_status};

#[derive(Debug, Parser)]
#[command(
    name = "scheduler",
    version,
    about = "Runs agents on cron schedules and delivers their reports to the collector"
)]
pub struct Cli {
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
    /// failed, 2 when the report could not be delivered (spooled for redelivery when the
    /// collector could not be reached; kept in the spool's rejected/ folder, never resent,
    /// when it refused the report). With --slot: 0
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

impl Cli {
    /// Runs the subcommand (`serve` when none is given) with `settings`: its exit status.
    pub async fn run(self, settings: &Settings) -> anyhow::Result<ExitCode> {
        match self.command.unwrap_or(Command::Serve { no_push: false }) {
            Command::Serve { no_push } => serve::run(settings, no_push).await,
            Command::List => list::run(settings),
            Command::Check => check::run(settings),
            Command::Run {
                name,
                params,
                slot: Some(slot),
                ..
            } => run_slot::run(settings, &name, params, &slot).await,
            Command::Run {
                name,
                params,
                no_push,
                slot: None,
            } => run_once::run(settings, &name, params, no_push).await,
        }
    }
}
