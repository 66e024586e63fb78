//! The `collector` command line: the subcommands, each a function in a module of its own.
//! Settings come from the environment (`config.rs`, `.env.example`); a missing or bad one
//! stops the command with one line.

mod alerts;
mod expect;
mod grant_readonly;
mod migrate;
mod prune;
mod serve;
mod token;
mod watch;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::DatabaseConfig;
use crate::startup;
use crate::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "collector",
    version,
    about = "Stores agent runs and metrics in PostgreSQL (or SQLite, embedded) and serves them over HTTP"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default); applies pending migrations first.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print a bearer token signed with COLLECTOR_SECRET_KEY.
    Token(token::Args),
    /// Declare what to expect of an agent (as PUT /agents/{name}/expectation does), or remove
    /// it with --delete; prints the stored expectation as JSON.
    Expect(expect::Args),
    /// Run one pass of the watcher now (the service runs one every WATCH_EVERY, 10 s): expected slots judged,
    /// incidents opened and resolved; prints what it did and how long it took.
    Watch,
    /// Delete the runs and metric rows RETENTION_RUNS and RETENTION_METRICS no longer keep
    /// (the collector does it on its own every 10 s), or count them with --dry-run.
    Prune(prune::Args),
    /// Check the alerts file (ALERTS_FILE), or send a test message to one of its routes.
    Alerts {
        #[command(subcommand)]
        command: alerts::Command,
    },
    /// Create or update the dashboard's read-only role (password from WEBAPP_READONLY_PASSWORD).
    GrantReadonly(grant_readonly::Args),
}

impl Cli {
    /// Runs the subcommand (`serve` when none is given).
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command.unwrap_or(Command::Serve) {
            Command::Serve => serve::run().await,
            Command::Migrate => migrate::run().await,
            Command::Token(args) => token::run(args),
            Command::Expect(args) => expect::run(args).await,
            Command::Watch => watch::run().await,
            Command::Prune(args) => prune::run(args).await,
            Command::Alerts { command } => alerts::run(command).await,
            Command::GrantReadonly(args) => grant_readonly::run(args).await,
        }
    }
}

/// The store `DATABASE_URL` names, not connected yet.
fn store() -> anyhow::Result<Store> {
    let config = DatabaseConfig::from_env()?;
    Store::connect_lazy(config.url(), config.pool()).context("DATABASE_URL is invalid")
}

/// The store, migrated (waiting for a database that is still starting).
async fn migrated_store() -> anyhow::Result<Store> {
    let store = store()?;
    startup::migrate_when_reachable(&store).await?;
    Ok(store)
}
