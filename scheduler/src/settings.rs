//! The scheduler's settings, read from the environment in the platform's one style
//! (`agent_sdk::env`: variables only, an empty one unset, a one-line error for a bad one). It
//! never reads a database variable: only the collector writes to the database.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use agent_sdk::env::{ConfigError, duration_or, flag_or, optional, parse_or};
use agent_sdk::telemetry::LogFormat;

/// Every variable the scheduler reads. `.env.example` must document each of them.
pub const ENV_VARS: &[&str] = &[
    COLLECTOR_URL,
    COLLECTOR_TOKEN,
    COLLECTOR_TOKEN_FILE,
    SCHEDULES_FILE,
    SPOOL_DIR,
    SCHEDULER_ADDR,
    MAX_CONCURRENT_RUNS,
    SHUTDOWN_GRACE,
    SCHEDULER_TRIGGER_TOKEN,
    SCHEDULER_HA,
    SCHEDULER_DEADLINE_GRACE,
    SCHEDULER_TOKEN_WARN_BEFORE,
    RUST_LOG,
    LOG_FORMAT,
];

pub const COLLECTOR_URL: &str = "COLLECTOR_URL";
pub const COLLECTOR_TOKEN: &str = "COLLECTOR_TOKEN";
pub const COLLECTOR_TOKEN_FILE: &str = "COLLECTOR_TOKEN_FILE";
pub const SCHEDULES_FILE: &str = "SCHEDULES_FILE";
pub const SPOOL_DIR: &str = "SPOOL_DIR";
pub const SCHEDULER_ADDR: &str = "SCHEDULER_ADDR";
pub const MAX_CONCURRENT_RUNS: &str = "MAX_CONCURRENT_RUNS";
pub const SHUTDOWN_GRACE: &str = "SHUTDOWN_GRACE";
pub const SCHEDULER_TRIGGER_TOKEN: &str = "SCHEDULER_TRIGGER_TOKEN";
pub const SCHEDULER_HA: &str = "SCHEDULER_HA";
pub const SCHEDULER_DEADLINE_GRACE: &str = "SCHEDULER_DEADLINE_GRACE";
pub const SCHEDULER_TOKEN_WARN_BEFORE: &str = "SCHEDULER_TOKEN_WARN_BEFORE";
pub const RUST_LOG: &str = "RUST_LOG";
pub const LOG_FORMAT: &str = "LOG_FORMAT";

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the collector listens.
    pub collector_url: String,
    /// Bearer token with the `ingest` scope (`collector token --sub scheduler`).
    pub collector_token: Option<String>,
    /// A file holding the token instead, re-read when it changes and on SIGHUP: a renewed
    /// token takes effect without a restart, and the spool is delivered with it.
    /// (Text, not a path, so that an empty variable reads as unset rather than an error.)
    pub collector_token_file: Option<String>,
    /// The schedule file (TOML). Without it, agents run on their default schedules.
    pub schedules_file: PathBuf,
    /// Undelivered reports wait here; also holds the scheduler's state (last fires, runs in
    /// progress). Keep it on a persistent volume.
    pub spool_dir: PathBuf,
    /// The status server (health, jobs, Prometheus, manual triggers).
    pub addr: SocketAddr,
    /// Most agent runs at once, across all agents.
    pub max_concurrent_runs: u32,
    /// On SIGTERM, how long the scheduler may take to stop (docker-compose.yml's
    /// `stop_grace_period` is the same variable): running agents get all of it but the last
    /// third (at most 10 s), which is for delivering or spooling their reports.
    pub shutdown_grace: Duration,
    /// Bearer token that `POST /jobs/{job}/run` requires; unset disables manual triggers.
    pub trigger_token: Option<String>,
    /// High availability: several schedulers with the same schedule run each slot once. A
    /// run's start is then a claim the collector must grant before the agent runs; a slot whose
    /// claim cannot be asked (the collector unreachable) is not run, and says why (`/jobs`).
    pub high_availability: bool,
    /// A run's deadline, announced with its start, is its longest possible time (every attempt
    /// to its timeout, every backoff) plus this; past it without a result, the collector closes
    /// the run as failed.
    pub deadline_grace: Duration,
    /// How long before the collector token expires `/health` and the log warn (7 days).
    pub token_warn_before: Duration,
    /// `text` for people, `json` for log collectors.
    pub log_format: LogFormat,
}

impl Default for Settings {
    /// What an unset variable means.
    fn default() -> Self {
        Self {
            collector_url: "http://127.0.0.1:8000".into(),
            collector_token: None,
            collector_token_file: None,
            schedules_file: PathBuf::from("schedules.toml"),
            spool_dir: PathBuf::from("spool"),
            addr: SocketAddr::from(([0, 0, 0, 0], 8001)),
            max_concurrent_runs: 8,
            shutdown_grace: Duration::from_secs(30),
            trigger_token: None,
            high_availability: false,
            deadline_grace: Duration::from_secs(60),
            token_warn_before: crate::token_expiry::WARN_BEFORE,
            log_format: LogFormat::Text,
        }
    }
}

impl Settings {
    /// Every variable of [`ENV_VARS`], each checked with a one-line error; an empty one means
    /// unset.
    pub fn from_env() -> Result<Self, ConfigError> {
        let defaults = Self::default();
        Ok(Self {
            collector_url: optional(COLLECTOR_URL)?.unwrap_or(defaults.collector_url),
            collector_token: optional(COLLECTOR_TOKEN)?,
            collector_token_file: optional(COLLECTOR_TOKEN_FILE)?,
            schedules_file: optional(SCHEDULES_FILE)?
                .map_or(defaults.schedules_file, PathBuf::from),
            spool_dir: optional(SPOOL_DIR)?.map_or(defaults.spool_dir, PathBuf::from),
            addr: parse_or(SCHEDULER_ADDR, defaults.addr)?,
            max_concurrent_runs: match parse_or(MAX_CONCURRENT_RUNS, defaults.max_concurrent_runs)?
            {
                0 => {
                    return Err(ConfigError::Invalid {
                        var: MAX_CONCURRENT_RUNS,
                        reason: "must be 1 or more".into(),
                    });
                }
                runs => runs,
            },
            shutdown_grace: duration_or(SHUTDOWN_GRACE, defaults.shutdown_grace)?,
            trigger_token: optional(SCHEDULER_TRIGGER_TOKEN)?,
            high_availability: flag_or(SCHEDULER_HA, defaults.high_availability)?,
            deadline_grace: duration_or(SCHEDULER_DEADLINE_GRACE, defaults.deadline_grace)?,
            token_warn_before: duration_or(
                SCHEDULER_TOKEN_WARN_BEFORE,
                defaults.token_warn_before,
            )?,
            log_format: parse_or(LOG_FORMAT, defaults.log_format)?,
        })
    }

    /// A scheduler on this machine delivering to `collector_url` with `collector_token`, with
    /// the defaults of every other setting (`platform` names what it changes).
    pub fn local(collector_url: String, collector_token: String) -> Self {
        Self {
            collector_url,
            collector_token: Some(collector_token),
            ..Self::default()
        }
    }
    /// The part of `SHUTDOWN_GRACE` running agents get before they are cancelled: all but a
    /// third of it, and at most 10 s less. The rest is for their reports, so that a stop after
    /// `SHUTDOWN_GRACE` (compose's `stop_grace_period`) finds nothing left to do.
    pub fn grace_for_runs(&self) -> Duration {
        let reserve = (self.shutdown_grace / 3).min(Duration::from_secs(10));
        self.shutdown_grace - reserve
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_get_the_grace_but_a_third_at_most_ten_seconds() {
        let for_runs = |secs: u64| {
            Settings {
                shutdown_grace: Duration::from_secs(secs),
                ..Settings::default()
            }
            .grace_for_runs()
        };
        assert_eq!(for_runs(30), Duration::from_secs(20));
        assert_eq!(for_runs(3), Duration::from_secs(2));
        assert_eq!(for_runs(300), Duration::from_secs(290));
        assert_eq!(for_runs(0), Duration::ZERO);
    }
}
