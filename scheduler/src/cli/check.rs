//! `scheduler check`: the schedule file read and checked.

use std::process::ExitCode;

use crate::refusal::Refusal;
use crate::service::load_jobs;
use crate::settings::Settings;

pub(super) fn run(settings: &Settings) -> anyhow::Result<ExitCode> {
    // `serve` without a file runs the agents' default schedules; `check` checks a file, and one
    // that is not there is not a file that checks out.
    if !settings.schedules_file.exists() {
        return Err(Refusal::Config(format!(
            "{}: no such file (SCHEDULES_FILE names the file to check)",
            settings.schedules_file.display()
        ))
        .into());
    }
    let jobs = load_jobs(settings)?;
    println!(
        "{}: ok, {} jobs",
        settings.schedules_file.display(),
        jobs.len()
    );
    Ok(ExitCode::SUCCESS)
}
