//! `scheduler`: serve (default), list, check, run. The subcommands are in `cli/`; settings come
//! from the environment (`.env.example`).

use std::process::ExitCode;

use clap::Parser;
use scheduler::cli::Cli;
use scheduler::settings::Settings;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("scheduler: error: {err}");
            return ExitCode::FAILURE;
        }
    };
    agent_sdk::telemetry::init_logging(settings.log_format, "info");
    let result = tokio::runtime::Runtime::new()
        .map_err(|err| anyhow::anyhow!("starting the async runtime: {err}"))
        .and_then(|runtime| runtime.block_on(cli.run(&settings)));
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("scheduler: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
