//! `scheduler serve`: every enabled job on its schedule, with the status server, until SIGINT
//! or SIGTERM.

use std::process::ExitCode;

use crate::service::{self, load_jobs};
use crate::settings::Settings;

pub(super) async fn run(settings: &Settings, no_push: bool) -> anyhow::Result<ExitCode> {
    let jobs = load_jobs(settings)?;
    service::serve(settings, jobs, no_push, agent_sdk::shutdown::signal()).await?;
    Ok(ExitCode::SUCCESS)
}
