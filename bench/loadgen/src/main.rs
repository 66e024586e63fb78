//! `loadgen`: posts run reports to a collector over N keep-alive HTTP/1.1 connections for a fixed
//! time, then prints reports/s, metric rows/s and latency percentiles on one line of
//! `key=value` pairs (`bench/run.sh` reads them).
//!
//! Each report carries the benchmark's body: 10 metrics (8 numbers, 2 strings), a fresh
//! `run_key`, and an agent name rotating over `--agents` names. Only answers that say a run
//! was stored (201) count as reports; anything else is an error, counted by status.
//!
//! `--lifecycle` starts each run first (`POST /runs`, then the report with its key: a run's
//! whole life). `--rate R` is open loop: requests leave at R a second by the clock, whatever
//! the answers, and each latency counts from the instant its request was due (no coordinated
//! omission, as wrk2 measures). Each due request goes to whichever connection is idle first
//! (as k6's constant-arrival-rate and vegeta do), not to a connection fixed in advance as in
//! wrk2, where a request waits behind a slow answer on its own connection while others are
//! idle: a queue that the collector's clients, each pushing its own runs, do not form. When
//! every connection is busy, due requests wait, and that wait is counted. The clock is a
//! thread of its own sleeping to each instant (nanosleep, tens of microseconds late), not
//! tokio's timer, whose millisecond ticks would send each request up to a millisecond late and
//! count that as the collector's latency; how late the clock itself was is printed
//! (`pace_p50_ms`, `pace_p99_ms`), so the error of the measurement is on the same line as the
//! measurement.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_sdk::wire::BatchResponse;
use anyhow::{Context, bail};
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc};
use uuid::Uuid;

const METRICS_PER_REPORT: u64 = 10;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "Posts run reports to a collector and measures it"
)]
struct Args {
    /// The collector's address.
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: String,
    /// A token with the `ingest` scope.
    #[arg(long, env = "BENCH_TOKEN", hide_env_values = true)]
    token: String,
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// How long to send.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Distinct agent names the reports rotate over.
    #[arg(long, default_value_t = 20)]
    agents: usize,
    /// Reports per request: 0 posts one report to /metrics, N posts N to /metrics/batch.
    #[arg(long, default_value_t = 0)]
    batch: usize,
    /// Also prints, on stderr, each second's answers and latency percentiles: where in the run
    /// the slow answers were.
    #[arg(long)]
    timeline: bool,
    /// Each run announced first (`POST /runs`), then its report: the run's whole life, timed
    /// as one request.
    #[arg(long)]
    lifecycle: bool,
    /// Open loop: requests due at this many a second in all, each sent on the first idle
    /// connection; latency counts from when a request was due. 0: closed loop (each connection
    /// sends its next request when the last is answered).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
}

/// How one connection sends.
#[derive(Clone, Copy)]
struct Plan {
    worker: usize,
    agents: usize,
    batch: usize,
    lifecycle: bool,
}

/// When a connection sends: as soon as its last answer is in (closed loop), or at the instants
/// the clock thread hands it (open loop).
enum Pace {
    Closed,
    Open(Arc<Mutex<mpsc::UnboundedReceiver<Instant>>>),
}

impl Pace {
    /// The instant the next request is due from, or `None` when the run is over.
    async fn next(&mut self, deadline: Instant) -> Option<Instant> {
        match self {
            Self::Closed => Some(Instant::now()).filter(|now| *now < deadline),
            // The idle connections queue for the lock in turn (tokio's Mutex is fair): the one
            // holding it takes the next due instant.
            Self::Open(due) => due.lock().await.recv().await,
        }
    }
}

/// The open loop's clock: queues the `index`-th request of all, due at `index / rate` after
/// `started`, for whichever connection is idle first, on time to within the thread's wake-up
/// (nanosleep), until `deadline`. Returns how late it queued each one, in microseconds.
fn clock(
    queue: &mpsc::UnboundedSender<Instant>,
    rate: f64,
    started: Instant,
    deadline: Instant,
) -> Vec<u32> {
    let mut late = Vec::new();
    for index in 0u64.. {
        let due = started + Duration::from_secs_f64(index as f64 / rate);
        if due >= deadline {
            break;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        late.push(u32::try_from(due.elapsed().as_micros()).unwrap_or(u32::MAX));
        // Only fails once every connection has given up (their tasks failed): main reports it.
        let _ = queue.send(due);
    }
    late
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    /// Request latencies, in microseconds.
    latencies: Vec<u32>,
    /// When each of `latencies` was answered, in whole seconds since the start.
    answered_at: Vec<u32>,
    /// Reports the collector said it stored.
    stored: u64,
    /// Answers that were not a stored run, by status (0: the connection failed).
    errors: BTreeMap<u16, u64>,
}

impl Tally {
    fn record(&mut self, latency: u32, answered_at: u32) {
        self.latencies.push(latency);
        self.answered_at.push(answered_at);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
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

/// One keep-alive connection sending until `deadline` (or, open loop, until the clock stops);
/// reconnects after a failure.
async fn connection(
    addr: &str,
    token: &str,
    plan: Plan,
    mut pace: Pace,
    started: Instant,
    deadline: Instant,
) -> anyhow::Result<Tally> {
    let Plan {
        worker,
        agents,
        batch,
        lifecycle,
    } = plan;
    let mut tally = Tally::default();
    let (path, reports_per_request) = match batch {
        0 => ("/metrics", 1),
        n => ("/metrics/batch", n),
    };
    let authorization = format!("Bearer {token}");
    let mut sequence = worker;
    'connect: while Instant::now() < deadline {
        let stream = match TcpStream::connect(addr).await {
            Ok(stream) => stream,
            Err(_) => {
                *tally.errors.entry(0).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        stream.set_nodelay(true)?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        loop {
            let Some(sent) = pace.next(deadline).await else {
                break 'connect;
            };
            if lifecycle {
                sequence += 1;
                let key = Uuid::new_v4();
                let start = run_start(sequence % agents, key);
                let first = post(&mut sender, addr, &authorization, "/runs", start).await;
                let answer = match first {
                    Ok((201, _)) => {
                        post(
                            &mut sender,
                            addr,
                            &authorization,
                            "/metrics",
                            report_with(sequence % agents, key),
                        )
                        .await
                    }
                    other => other,
                };
                let elapsed = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                let answered_at = u32::try_from(started.elapsed().as_secs()).unwrap_or(u32::MAX);
                match answer {
                    Ok((201, _)) => {
                        tally.record(elapsed, answered_at);
                        tally.stored += 1;
                    }
                    Ok((status, _)) => {
                        tally.record(elapsed, answered_at);
                        *tally.errors.entry(status).or_default() += 1;
                    }
                    Err(_) => {
                        *tally.errors.entry(0).or_default() += 1;
                        continue 'connect;
                    }
                }
                continue;
            }
            let body = if batch == 0 {
                sequence += 1;
                report(sequence % agents)
            } else {
                let reports: Vec<String> = (0..reports_per_request)
                    .map(|_| {
                        sequence += 1;
                        report(sequence % agents)
                    })
                    .collect();
                format!(r#"{{"reports":[{}]}}"#, reports.join(","))
            };
            let answer = post(&mut sender, addr, &authorization, path, body).await;
            let elapsed = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
            let answered_at = u32::try_from(started.elapsed().as_secs()).unwrap_or(u32::MAX);
            match answer {
                Ok((201, _)) if batch == 0 => {
                    tally.record(elapsed, answered_at);
                    tally.stored += 1;
                }
                Ok((200, body)) if batch > 0 => {
                    tally.record(elapsed, answered_at);
                    let results: BatchResponse = serde_json::from_slice(&body)
                        .context("the batch answer is not a BatchResponse")?;
                    for result in results.results {
                        if result.status == 201 {
                            tally.stored += 1;
                        } else {
                            *tally.errors.entry(result.status).or_default() += 1;
                        }
                    }
                }
                Ok((status, _)) => {
                    tally.record(elapsed, answered_at);
                    *tally.errors.entry(status).or_default() += 1;
                }
                Err(_) => {
                    *tally.errors.entry(0).or_default() += 1;
                    continue 'connect;
                }
            }
        }
    }
    Ok(tally)
}

/// One request on `sender`: the answer's status and body.
async fn post(
    sender: &mut http1::SendRequest<Full<Bytes>>,
    addr: &str,
    authorization: &str,
    path: &str,
    body: String,
) -> anyhow::Result<(u16, Bytes)> {
    let request = Request::post(path)
        .header("host", addr)
        .header("authorization", authorization)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))?;
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// The start of the benchmark's run `key` (`POST /runs`).
fn run_start(agent: usize, key: Uuid) -> String {
    let now = Utc::now();
    format!(
        concat!(
            r#"{{"agent_name":"bench_agent_{agent:02}","run_key":"{key}","started_at":"{started}","#,
            r#""claimant":"loadgen","trigger":"schedule","deadline":"{deadline}"}}"#
        ),
        agent = agent,
        key = key,
        started = (now - chrono::TimeDelta::milliseconds(1500))
            .to_rfc3339_opts(SecondsFormat::Millis, true),
        deadline =
            (now + chrono::TimeDelta::minutes(10)).to_rfc3339_opts(SecondsFormat::Millis, true),
    )
}

/// The benchmark's report: 10 metrics (8 numbers, 2 strings), a fresh run_key.
fn report(agent: usize) -> String {
    report_with(agent, Uuid::new_v4())
}

/// The benchmark's report of run `key`.
fn report_with(agent: usize, key: Uuid) -> String {
    let finished = Utc::now();
    let started = finished - chrono::TimeDelta::milliseconds(1500);
    format!(
        concat!(
            r#"{{"agent_name":"bench_agent_{agent:02}","run_key":"{key}","#,
            r#""started_at":"{started}","finished_at":"{finished}","error":null,"#,
            r#""metrics":{{"items_processed":42,"errors":0,"duration_ms":1500,"tokens_in":1234,"#,
            r#""tokens_out":567,"cost_usd":0.0123,"retries":1,"score":0.87,"#,
            r#""status":"ok","model":"llama-3.1-8b"}}}}"#
        ),
        agent = agent,
        key = key,
        started = started.to_rfc3339_opts(SecondsFormat::Millis, true),
        finished = finished.to_rfc3339_opts(SecondsFormat::Millis, true),
    )
}
