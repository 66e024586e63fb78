//! The scheduler's settings: environment variables (or the same-named flags). It never reads a
//! database variable: only the collector writes to the database.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use agent_sdk::telemetry::LogFormat;
use clap::Args;

/// Every variable the scheduler reads. `.env.example` must document each of them.
pub const ENV_VARS: &[&str] = &[
    "COLLECTOR_URL",
    "COLLECTOR_TOKEN",
    "COLLECTOR_TOKEN_FILE",
    "SCHEDULES_FILE",
    "SPOOL_DIR",
    "SCHEDULER_ADDR",
    "MAX_CONCURRENT_RUNS",
    "SHUTDOWN_GRACE",
    "SCHEDULER_TRIGGER_TOKEN",
    "SCHEDULER_HA",
    "SCHEDULER_DEADLINE_GRACE",
    "RUST_LOG",
    "LOG_FORMAT",
];

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Where the collector listens.
    #[arg(
        long,
        env = "COLLECTOR_URL",
        default_value = "http://127.0.0.1:8000",
        global = true
    )]
    pub collector_url: String,
    /// Bearer token with the `ingest` scope (`collector token --sub scheduler`).
    #[arg(long, env = "COLLECTOR_TOKEN", hide_env_values = true, global = true)]
    pub collector_token: Option<String>,
    /// A file holding the token instead, re-read when it changes and on SIGHUP: a renewed
    /// token takes effect without a restart, and the spool is delivered with it.
    /// (Text, not a path, so that an empty variable reads as unset rather than an error.)
    #[arg(long, env = "COLLECTOR_TOKEN_FILE", global = true)]
    pub collector_token_file: Option<String>,
    /// The schedule file (TOML). Without it, agents run on their default schedules.
    #[arg(
        long,
        env = "SCHEDULES_FILE",
        default_value = "schedules.toml",
        global = true
    )]
    pub schedules_file: PathBuf,
    /// Undelivered reports wait here; also holds the scheduler's state (last fires, runs in
    /// progress). Keep it on a persistent volume.
    #[arg(long, env = "SPOOL_DIR", default_value = "spool", global = true)]
    pub spool_dir: PathBuf,
    /// The status server (health, jobs, Prometheus, manual triggers).
    #[arg(
        long,
        env = "SCHEDULER_ADDR",
        default_value = "0.0.0.0:8001",
        global = true
    )]
    pub addr: SocketAddr,
    /// Most agent runs at once, across all agents.
    #[arg(long, env = "MAX_CONCURRENT_RUNS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    pub max_concurrent_runs: u32,
    /// On SIGTERM, how long the scheduler may take to stop (docker-compose.yml's
    /// `stop_grace_period` is the same variable): running agents get all of it but the last
    /// third (at most 10 s), which is for delivering or spooling their reports.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub shutdown_grace: Duration,
    /// Bearer token that `POST /jobs/{agent}/run` requires; unset disables manual triggers.
    #[arg(
        long,
        env = "SCHEDULER_TRIGGER_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub trigger_token: Option<String>,
    /// High availability: several schedulers with the same schedule run each slot once. A
    /// run's start is then a claim the collector must grant before the agent runs; a slot whose
    /// claim cannot be asked (the collector unreachable) is not run, and says why (`/jobs`).
    #[arg(long, env = "SCHEDULER_HA", default_value = "false", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set, global = true)]
    pub high_availability: bool,
    /// A run's deadline, announced with its start, is its longest possible time (every attempt
    /// to its timeout, every backoff) plus this; past it without a result, the collector closes
    /// the run as failed.
    #[arg(long, env = "SCHEDULER_DEADLINE_GRACE", default_value = "60s", value_parser = humantime::parse_duration, global = true)]
    pub deadline_grace: Duration,
    /// `text` for people, `json` for log collectors.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: LogFormat,
}

impl Settings {
    /// The part of `SHUTDOWN_GRACE` running agents get before they are cancelled: all but a
    /// third of it, and at most 10 s less. The rest is for their reports, so that a stop after
    /// `SHUTDOWN_GRACE` (compose's `stop_grace_period`) finds nothing left to do.
    pub fn grace_for_runs(&self) -> Duration {
        let reserve = (self.shutdown_grace / 3).min(Duration::from_secs(10));
        self.shutdown_grace - reserve
    }

    /// An empty variable (compose passes `NAME=` for a blank line of `.env`) means unset.
    pub fn without_empty_values(mut self) -> Self {
        let blank = |s: &str| s.trim().is_empty();
        self.collector_token = self.collector_token.filter(|t| !blank(t));
        self.trigger_token = self.trigger_token.filter(|t| !blank(t));
        self.collector_token_file = self.collector_token_file.filter(|p| !blank(p));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, Command};

    #[test]
    fn empty_values_mean_unset() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            settings: Settings,
        }
        let cli = <Cli as clap::Parser>::parse_from([
            "scheduler",
            "--collector-token",
            "",
            "--trigger-token",
            " ",
            "--collector-token-file",
            "",
        ]);
        let settings = cli.settings.without_empty_values();
        assert_eq!(settings.collector_token, None);
        assert_eq!(settings.trigger_token, None);
        assert_eq!(settings.collector_token_file, None);
    }

    #[test]
    fn runs_get_the_grace_but_a_third_at_most_ten_seconds() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            settings: Settings,
        }
        let for_runs = |grace: &str| {
            <Cli as clap::Parser>::parse_from(["scheduler", "--shutdown-grace", grace])
                .settings
                .grace_for_runs()
        };
        assert_eq!(for_runs("30s"), Duration::from_secs(20));
        assert_eq!(for_runs("3s"), Duration::from_secs(2));
        assert_eq!(for_runs("5m"), Duration::from_secs(290));
        assert_eq!(for_runs("0s"), Duration::ZERO);
    }

    #[test]
    fn env_vars_lists_every_variable_the_settings_read() {
        let mut read: Vec<String> = Settings::augment_args(Command::new("scheduler"))
            .get_arguments()
            .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
            .collect();
        read.push("RUST_LOG".into()); // read by the log filter
        read.sort();
        let mut listed: Vec<String> = ENV_VARS.iter().map(|v| (*v).to_owned()).collect();
        listed.sort();
        assert_eq!(read, listed);
    }
}
