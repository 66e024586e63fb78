//! `platform`: the whole platform on this machine, with one command and no infrastructure.
//!
//! The collector serves on a SQLite file (`data/dev.db`), the scheduler runs the example agents
//! on short schedules and delivers their reports to it over HTTP, as in production; a line is
//! printed for every run stored. Ctrl-C (or SIGTERM) stops the scheduler first (running agents
//! finish and deliver), then the collector: nothing is lost, and a report that could not be
//! delivered waits in `data/spool` for the next start.

mod banner;
mod dev_files;
mod local;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use agent_sdk::telemetry::LogFormat;
use anyhow::Context;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "platform",
    version,
    about = "Runs the collector (on SQLite) and the scheduler with the example agents, on this machine"
)]
pub(crate) struct Cli {
    /// Holds the database, the generated secret and the scheduler's spool.
    #[arg(long, default_value = "data")]
    pub(crate) data_dir: PathBuf,
    /// The database; defaults to the SQLite file `<data-dir>/dev.db`. A postgres:// URL works too.
    #[arg(long)]
    pub(crate) database_url: Option<String>,
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub(crate) collector_addr: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:8001")]
    pub(crate) scheduler_addr: SocketAddr,
    /// A schedule file to run instead of the built-in one (the example agents every few seconds).
    #[arg(long)]
    pub(crate) schedules: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Warnings only: stdout carries the URLs and one line per stored run. RUST_LOG=info for more.
    agent_sdk::telemetry::init_logging(LogFormat::Text, "warn");
    let result = tokio::runtime::Runtime::new()
        .context("starting the async runtime")
        .and_then(|runtime| runtime.block_on(local::run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("platform: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
