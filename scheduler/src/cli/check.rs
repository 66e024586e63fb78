//! `scheduler check`: the schedule file read and checked.

use std::process::ExitCode;

use crate::service::load_jobs;
use crate::settings::Settings;

pub(super) fn run(settings: &Settings) -> anyhow::Result<ExitCode> {
    let jobs = load_jobs(settings)?;
    println!(
        "{}: ok, {} jobs",
        settings.schedules_file.display(),
        jobs.len()
    );
    Ok(ExitCode::SUCCESS)
}
