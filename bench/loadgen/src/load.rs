//! One measurement: the connections started, the clock of the open loop, the tallies summed
//! and printed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use tokio::sync::{Mutex, mpsc};

use crate::arrivals::{Pace, clock};
use crate::bodies::METRICS_PER_REPORT;
use crate::connection::{Plan, Tally, connection};

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "Posts run reports to a collector and measures it"
)]
pub(crate) struct Args {
    /// The collector's address.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub(crate) addr: String,
    /// A token with the `ingest` scope.
    #[arg(long, env = "BENCH_TOKEN", hide_env_values = true)]
    pub(crate) token: String,
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 16)]
    pub(crate) connections: usize,
    /// How long to send.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub(crate) duration: Duration,
    /// Distinct agent names the reports rotate over.
    #[arg(long, default_value_t = 20)]
    pub(crate) agents: usize,
    /// Reports per request: 0 posts one report to /metrics, N posts N to /metrics/batch.
    #[arg(long, default_value_t = 0)]
    pub(crate) batch: usize,
    /// Also prints, on stderr, each second's answers and latency percentiles: where in the run
    /// the slow answers were.
    #[arg(long)]
    pub(crate) timeline: bool,
    /// Each run announced first (`POST /runs`), then its report: the run's whole life, timed
    /// as one request.
    #[arg(long)]
    pub(crate) lifecycle: bool,
    /// Open loop: requests due at this many a second in all, each sent on the first idle
    /// connection; latency counts from when a request was due. 0: closed loop (each connection
    /// sends its next request when the last is answered).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) rate: f64,
}

/// One measurement as `args` asks, printed.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    if args.connections == 0 || args.agents == 0 {
        bail!("--connections and --agents must be at least 1");
    }
    if args.rate < 0.0 || !args.rate.is_finite() {
        bail!("--rate must be 0 (closed loop) or a positive number of requests a second");
    }
    let started = Instant::now();
    let deadline = started + args.duration;
    let (paces, clock): (Vec<Pace>, _) = if args.rate > 0.0 {
        let (queue, due) = mpsc::unbounded_channel();
        let due = Arc::new(Mutex::new(due));
        let rate = args.rate;
        let clock = std::thread::spawn(move || clock(&queue, rate, started, deadline));
        let paces = (0..args.connections)
            .map(|_| Pace::Open(due.clone()))
            .collect();
        (paces, Some(clock))
    } else {
        ((0..args.connections).map(|_| Pace::Closed).collect(), None)
    };
    let tasks: Vec<_> = paces
        .into_iter()
        .enumerate()
        .map(|(worker, pace)| {
            let (addr, token) = (args.addr.clone(), args.token.clone());
            let plan = Plan {
                worker,
                agents: args.agents,
                batch: args.batch,
                lifecycle: args.lifecycle,
            };
            tokio::spawn(
                async move { connection(&addr, &token, plan, pace, started, deadline).await },
            )
        })
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await.context("a connection task panicked")??;
        total.latencies.extend(tally.latencies);
        total.answered_at.extend(tally.answered_at);
        total.stored += tally.stored;
        for (status, n) in tally.errors {
            *total.errors.entry(status).or_default() += n;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut late = match clock {
        Some(clock) => clock
            .join()
            .map_err(|_| anyhow::anyhow!("the clock thread panicked"))?,
        None => Vec::new(),
    };
    late.sort_unstable();
    if args.timeline {
        print_timeline(&total);
    }
    total.latencies.sort_unstable();
    let percentile = |p: f64| percentile_ms(&total.latencies, p);
    let errors: Vec<String> = total
        .errors
        .iter()
        .map(|(status, n)| format!("{status}:{n}"))
        .collect();
    println!(
        "requests={} reports={} seconds={:.2} reports_per_s={:.0} metric_rows_per_s={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} pace_p50_ms={:.2} pace_p99_ms={:.2} errors={}",
        total.latencies.len(),
        total.stored,
        seconds,
        total.stored as f64 / seconds,
        (total.stored * METRICS_PER_REPORT) as f64 / seconds,
        percentile(0.50),
        percentile(0.99),
        percentile(1.0),
        percentile_ms(&late, 0.50),
        percentile_ms(&late, 0.99),
        if errors.is_empty() {
            "none".to_owned()
        } else {
            errors.join(",")
        },
    );
    Ok(())
}

/// The `p` quantile of sorted latencies in microseconds, in milliseconds.
fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    let index = ((n as f64 * p).ceil() as usize).clamp(1, n) - 1;
    f64::from(sorted[index]) / 1000.0
}

/// One line per second of the run: answers, p50, p99 and max latency.
fn print_timeline(tally: &Tally) {
    let mut seconds: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (&at, &latency) in tally.answered_at.iter().zip(&tally.latencies) {
        seconds.entry(at).or_default().push(latency);
    }
    for (second, mut latencies) in seconds {
        latencies.sort_unstable();
        eprintln!(
            "second={second} answers={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            latencies.len(),
            percentile_ms(&latencies, 0.50),
            percentile_ms(&latencies, 0.99),
            percentile_ms(&latencies, 1.0),
        );
    }
}
