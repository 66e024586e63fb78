//! One keep-alive connection sending its requests and tallying the answers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use agent_sdk::wire::BatchResponse;
use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use uuid::Uuid;

use crate::arrivals::Pace;
use crate::bodies::{report, report_with, run_start};

/// How one connection sends.
#[derive(Clone, Copy)]
pub(crate) struct Plan {
    pub(crate) worker: usize,
    pub(crate) agents: usize,
    pub(crate) batch: usize,
    pub(crate) lifecycle: bool,
}

/// What one connection saw.
#[derive(Default)]
pub(crate) struct Tally {
    /// Request latencies, in microseconds.
    pub(crate) latencies: Vec<u32>,
    /// When each of `latencies` was answered, in whole seconds since the start.
    pub(crate) answered_at: Vec<u32>,
    /// Reports the collector said it stored.
    pub(crate) stored: u64,
    /// Answers that were not a stored run, by status (0: the connection failed).
    pub(crate) errors: BTreeMap<u16, u64>,
}

impl Tally {
    pub(crate) fn record(&mut self, latency: u32, answered_at: u32) {
        self.latencies.push(latency);
        self.answered_at.push(answered_at);
    }
}

/// One keep-alive connection sending until `deadline` (or, open loop, until the clock stops);
/// reconnects after a failure.
pub(crate) async fn connection(
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
