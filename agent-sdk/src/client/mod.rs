//! Delivery of run reports to the collector: retries with backoff and jitter, and a disk spool
//! for what cannot be delivered now, redelivered oldest first (also after a restart).
//! Redelivery is safe: each report carries a `run_key`, which the collector stores once.

mod expiry;
mod http;
mod spool;

pub use expiry::token_expires_at;

pub use http::{
    CollectorClient, Delivered, RetryPolicy, SendError, StartAnswer, TokenSource, Verdict,
    install_crypto_provider,
};
pub use spool::{Spool, SpoolError};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::wire::RunReport;

/// Most spooled reports redelivered in one `POST /metrics/batch`.
pub const REDELIVERY_BATCH: usize = 500;

/// What became of a report handed to [`Deliverer::deliver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored by the collector (`created` is false for a `run_key` it had already).
    Delivered { run_id: i64, created: bool },
    /// Undeliverable for now (the collector unreachable, or refusing the token): written to
    /// the spool for redelivery.
    Spooled,
    /// Refused by the collector for what it is (400, 409, 413, 415, 422): kept in
    /// `spool/rejected/`.
    Rejected { status: u16, reason: String },
}

/// A client and its spool: deliver now if possible, keep for later otherwise.
#[derive(Clone)]
pub struct Deliverer {
    client: CollectorClient,
    spool: Spool,
    spooled: Arc<Notify>,
    /// Why the collector refuses our token, from its last refusal until a report is accepted.
    refused: Arc<Mutex<Option<String>>>,
}

impl Deliverer {
    pub fn new(client: CollectorClient, spool: Spool) -> Self {
        Self {
            client,
            spool,
            spooled: Arc::new(Notify::new()),
            refused: Arc::default(),
        }
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    pub fn client(&self) -> &CollectorClient {
        &self.client
    }

    /// `Some(why)` while the collector refuses this client's token (401/403): reports wait in
    /// the spool until a token it accepts is given (`COLLECTOR_TOKEN_FILE`).
    pub fn token_refused(&self) -> Option<String> {
        lock(&self.refused).clone()
    }

    fn accepted(&self) {
        if lock(&self.refused).take().is_some() {
            tracing::info!("the collector accepts the token again: delivering");
        }
    }

    fn unauthorized(&self, status: u16, body: &str) {
        let why = format!("the collector refuses the token ({status}): {body}");
        tracing::error!(status, response = %body, "the collector refuses the token: reports wait in the spool until it is renewed (COLLECTOR_TOKEN_FILE, SIGHUP)");
        *lock(&self.refused) = Some(why);
    }

    /// Delivers `report` with retries; if the collector stays unreachable the report goes to
    /// the spool. Fails only when the spool cannot be written either.
    pub async fn deliver(&self, report: &RunReport) -> Result<Outcome, SpoolError> {
        let sent = self.client.deliver(report).await;
        self.settle(report, sent).await
    }

    /// One attempt, then the spool: for shutdown, when backing off would hold up the exit.
    pub async fn deliver_once(&self, report: &RunReport) -> Result<Outcome, SpoolError> {
        let sent = self.client.send(report).await;
        self.settle(report, sent).await
    }

    async fn settle(
        &self,
        report: &RunReport,
        sent: Result<Delivered, SendError>,
    ) -> Result<Outcome, SpoolError> {
        match sent {
            Ok(Delivered { run_id, created }) => {
                self.accepted();
                Ok(Outcome::Delivered { run_id, created })
            }
            Err(SendError::Unauthorized { status, body }) => {
                self.unauthorized(status, &body);
                self.spool.store(report).await?;
                self.spooled.notify_one();
                Ok(Outcome::Spooled)
            }
            Err(SendError::Rejected { status, body }) => {
                tracing::error!(
                    agent = %report.agent_name, status, response = %body,
                    "the collector refused the report; kept in the spool's rejected/ folder"
                );
                self.spool.reject(report, status, &body).await?;
                Ok(Outcome::Rejected {
                    status,
                    reason: body,
                })
            }
            Err(SendError::Retryable(why)) => {
                tracing::warn!(agent = %report.agent_name, error = %why, "collector unreachable; report spooled for redelivery");
                self.spool.store(report).await?;
                self.spooled.notify_one();
                Ok(Outcome::Spooled)
            }
        }
    }

    /// One redelivery pass over the spool, oldest first, up to [`REDELIVERY_BATCH`] reports a
    /// request (`POST /metrics/batch`; one at a time with a collector that has no batch
    /// endpoint). Stops when the collector is unreachable (the rest would fail too). Returns how
    /// many reports left the spool.
    pub async fn redeliver_once(&self) -> Result<usize, SpoolError> {
        let mut done = 0;
        for files in self.spool.pending().await?.chunks(REDELIVERY_BATCH) {
            let mut chunk = Vec::with_capacity(files.len());
            for entry in files {
                match self.spool.load(entry).await {
                    Ok(report) => chunk.push((entry.clone(), report)),
                    Err(err) => {
                        tracing::error!(file = %entry.display(), error = %err, "unreadable spool file moved to rejected/");
                        self.spool.reject_file(entry, &err.to_string()).await?;
                    }
                }
            }
            let (delivered, reachable) = self.redeliver_chunk(chunk).await?;
            done += delivered;
            if !reachable {
                break;
            }
        }
        if done > 0 {
            tracing::info!(delivered = done, "spooled reports redelivered");
        }
        Ok(done)
    }

    /// Sends spooled reports as one batch, or one at a time when the collector does not take
    /// the batch as a whole (no batch endpoint, a body over its limit). Returns how many left
    /// the spool, and whether the collector was reachable.
    async fn redeliver_chunk(
        &self,
        chunk: Vec<(PathBuf, RunReport)>,
    ) -> Result<(usize, bool), SpoolError> {
        if chunk.len() > 1 {
            let reports = chunk.iter().map(|(_, report)| report.clone()).collect();
            match self.client.send_batch(reports).await {
                Ok(results) if results.len() == chunk.len() => {
                    self.accepted();
                    let mut done = 0;
                    for ((entry, _), result) in chunk.iter().zip(results) {
                        match Verdict::of(result.status) {
                            Verdict::Stored => {
                                self.spool.remove(entry).await?;
                                done += 1;
                            }
                            // Kept for the next pass.
                            Verdict::Retry | Verdict::Unauthorized => {}
                            Verdict::Rejected => {
                                let reason = result.error.map(|e| e.message).unwrap_or_default();
                                self.set_aside(entry, result.status, &reason).await?;
                            }
                        }
                    }
                    return Ok((done, true));
                }
                Err(SendError::Retryable(why)) => {
                    tracing::debug!(error = %why, "collector still unreachable; redelivery later");
                    return Ok((0, false));
                }
                Err(SendError::Unauthorized { status, body }) => {
                    self.unauthorized(status, &body);
                    return Ok((0, false));
                }
                // The batch as a whole was refused (no batch endpoint, over its body limit):
                // one at a time.
                Ok(_) | Err(SendError::Rejected { .. }) => {}
            }
        }
        let mut done = 0;
        for (entry, report) in &chunk {
            match self.client.send(report).await {
                Ok(_) => {
                    self.accepted();
                    self.spool.remove(entry).await?;
                    done += 1;
                }
                Err(SendError::Rejected { status, body }) => {
                    self.set_aside(entry, status, &body).await?;
                }
                Err(SendError::Unauthorized { status, body }) => {
                    self.unauthorized(status, &body);
                    return Ok((done, false));
                }
                Err(SendError::Retryable(why)) => {
                    tracing::debug!(error = %why, "collector still unreachable; redelivery later");
                    return Ok((done, false));
                }
            }
        }
        Ok((done, true))
    }

    /// A spooled report the collector refused: moved to `rejected/` with its answer.
    async fn set_aside(&self, entry: &Path, status: u16, answer: &str) -> Result<(), SpoolError> {
        tracing::error!(file = %entry.display(), status, response = %answer, "the collector refused a spooled report; moved to rejected/");
        self.spool
            .reject_file(entry, &format!("{status}: {answer}"))
            .await
    }

    /// Redelivers the spool until `stop` resolves: at start (reports left by an earlier
    /// process), whenever a report is spooled, and every `every` in between.
    pub async fn redeliver_until(
        &self,
        every: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            if let Err(err) = self.redeliver_once().await {
                tracing::error!(error = %err, "spool redelivery failed");
            }
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(every) => {}
                () = self.spooled.notified() => {
                    // Give the collector a moment: it has just failed.
                    tokio::time::sleep(every.min(Duration::from_secs(1))).await;
                }
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
