//! How late tokio-cron-scheduler 0.15.1 fires: `BENCH_JOBS` jobs (default 1) on a one-second
//! cron for `BENCH_SECONDS` (default 20). Each fire records how far past its second it ran (the
//! slot is the whole second, so the lateness is the sub-second part of the fire time). Prints
//! p50/p99/max, the fires against the slots due, and peak RSS.
//!
//! The crate's scheduler loop sleeps a fixed 500 ms between looks at its jobs
//! (src/scheduler.rs), with no setting to change it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{Timelike, Utc};
use tokio_cron_scheduler::{Job, JobScheduler};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (jobs, seconds) = (env("BENCH_JOBS", 1), env("BENCH_SECONDS", 20));
    let lateness_us: Arc<Mutex<Vec<u32>>> = Arc::default();
    let scheduler = JobScheduler::new().await?;
    for _ in 0..jobs {
        let lateness_us = lateness_us.clone();
        scheduler
            .add(Job::new_async("* * * * * *", move |_, _| {
                let late = Utc::now().nanosecond() % 1_000_000_000 / 1_000;
                lateness_us.lock().expect("not poisoned").push(late);
                Box::pin(async {})
            })?)
            .await?;
    }
    scheduler.start().await?;
    // Measured after a warm-up, like bench/scheduler.sh.
    tokio::time::sleep(Duration::from_secs(3)).await;
    lateness_us.lock().expect("not poisoned").clear();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let mut late = std::mem::take(&mut *lateness_us.lock().expect("not poisoned"));
    late.sort_unstable();
    let at = |p: f64| {
        let i = ((late.len() as f64 * p).ceil() as usize).clamp(1, late.len().max(1)) - 1;
        late.get(i).map_or(0.0, |us| f64::from(*us) / 1000.0)
    };
    let rss = std::fs::read_to_string("/proc/self/status")?
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<f64>().unwrap_or(0.0) / 1024.0)
        .unwrap_or(0.0);
    println!(
        "tokio-cron-scheduler 0.15.1: {jobs} jobs, {seconds} s: fire lateness p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} fires of {} slots due; peak RSS {rss:.1} MB",
        at(0.5),
        at(0.99),
        at(1.0),
        late.len(),
        jobs * seconds
    );
    Ok(())
}
