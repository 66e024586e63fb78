//! `scheduler`: serve (default), list, check, run. The subcommands are in `cli/`; settings come
//! from the environment (`.env.example`).

use std::process::ExitCode;

use clap::Parser;
use scheduler::cli::{Cli, EXIT_CONFIG, EXIT_USAGE, exit_status};
use scheduler::settings::Settings;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version are not errors; anything else is a wrong command line.
        Err(err) if !err.use_stderr() => {
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("scheduler: error: {err}");
            return ExitCode::from(EXIT_CONFIG);
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
            exit_status(&err)
        }
    }
}
