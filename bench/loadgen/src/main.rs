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

mod arrivals;
mod bodies;
mod connection;
mod load;

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    load::run(load::Args::parse()).await
}
