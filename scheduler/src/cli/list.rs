//! `scheduler list`: the jobs, their schedules and next fire times, and the agents registered
//! but not scheduled.

use std::process::ExitCode;

use crate::service::load_jobs;
use crate::settings::Settings;

pub(super) fn run(settings: &Settings) -> anyhow::Result<ExitCode> {
    let jobs = load_jobs(settings)?;
    let registry = crate::registry()?;
    let now = chrono::Utc::now();
    println!(
        "{:<24} {:<12} {:<18} {:<16} {:<8} next fires (UTC)",
        "job", "agent", "cron", "timezone", "enabled"
    );
    for job in &jobs {
        let next: Vec<String> = job
            .cron
            .upcoming(now, 3)
            .iter()
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .collect();
        println!(
            "{:<24} {:<12} {:<18} {:<16} {:<8} {}",
            job.name,
            job.agent.name(),
            job.cron.expression(),
            job.cron.timezone().name(),
            job.enabled,
            next.join(", ")
        );
    }
    let unscheduled: Vec<&str> = registry
        .names()
        .filter(|n| !jobs.iter().any(|j| j.agent.name() == *n))
        .collect();
    if !unscheduled.is_empty() {
        println!(
            "\nregistered, not scheduled (run with `scheduler run <agent>`): {}",
            unscheduled.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
