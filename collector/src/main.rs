//! `collector`: serve (default), migrate, token, expect, watch, prune, alerts, grant-readonly.
//! The subcommands are in `cli/`; settings come from the environment (`.env.example`).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use collector::cli::Cli;
use collector::config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .and_then(|runtime| {
            runtime.block_on(async {
                // Logs go to stderr, so that stdout stays clean for commands like `collector token`.
                agent_sdk::telemetry::init_logging(config::log_format()?, config::LOG_FILTER);
                cli.run().await
            })
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("collector: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
