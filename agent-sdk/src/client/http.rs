//! The collector's ingest endpoints, `POST /metrics` with retries on what retrying can fix, and
//! `POST /metrics/batch` for redelivering the spool.

use std::time::Duration;

use reqwest::{StatusCode, header};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wire::{BatchItemResult, BatchRequest, BatchResponse, IngestResponse, RunReport};

/// Exponential backoff with full jitter: attempt `n` waits a random time up to
/// `min(max_delay, base_delay * 2^n)`, or what `Retry-After` asks when the collector says.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(asked) = retry_after {
            return asked.min(self.max_delay);
        }
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        ceiling.mul_f64(fastrand::f64())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub run_id: i64,
    /// False when the collector had this `run_key` already.
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Connection failures, timeouts, 408, 429 and 5xx: trying later may work.
    #[error("{0}")]
    Retryable(String),
    /// Any other 4xx: the report itself is wrong (or the token); retrying will not help.
    #[error("refused with {status}: {body}")]
    Rejected { status: u16, body: String },
}

struct Attempt {
    error: SendError,
    retry_after: Option<Duration>,
}

/// Posts reports to one collector with one bearer token.
#[derive(Clone)]
pub struct CollectorClient {
    http: reqwest::Client,
    endpoint: String,
    batch_endpoint: String,
    token: Option<String>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for CollectorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectorClient")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl CollectorClient {
    /// A client for the collector at `base_url` (e.g. `http://collector:8000`).
    pub fn new(base_url: &str, token: Option<String>) -> Result<Self, reqwest::Error> {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("agent-sdk/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let base_url = base_url.trim_end_matches('/');
        Ok(Self {
            http,
            endpoint: format!("{base_url}/metrics"),
            batch_endpoint: format!("{base_url}/metrics/batch"),
            token,
            retry: RetryPolicy::default(),
        })
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// One attempt.
    pub async fn send(&self, report: &RunReport) -> Result<Delivered, SendError> {
        self.attempt(report).await.map_err(|a| a.error)
    }

    /// Up to `retry.attempts` attempts, backing off between them.
    pub async fn deliver(&self, report: &RunReport) -> Result<Delivered, SendError> {
        let mut attempt = 0;
        loop {
            match self.attempt(report).await {
                Ok(delivered) => return Ok(delivered),
                Err(Attempt {
                    error: SendError::Retryable(why),
                    retry_after,
                }) if attempt + 1 < self.retry.attempts => {
                    let delay = self.retry.delay(attempt, retry_after);
                    tracing::debug!(attempt, error = %why, ?delay, "delivery failed; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(failed) => return Err(failed.error),
            }
        }
    }

    /// One attempt at `POST /metrics/batch`: one result per report, in order, each the status
    /// `POST /metrics` would have answered for it.
    pub async fn send_batch(
        &self,
        reports: Vec<RunReport>,
    ) -> Result<Vec<BatchItemResult>, SendError> {
        let (_, body): (_, BatchResponse) = self
            .post(&self.batch_endpoint, &BatchRequest { reports })
            .await
            .map_err(|a| a.error)?;
        Ok(body.results)
    }

    async fn attempt(&self, report: &RunReport) -> Result<Delivered, Attempt> {
        let (status, body): (_, IngestResponse) = self.post(&self.endpoint, report).await?;
        Ok(Delivered {
            run_id: body.run_id,
            created: status == StatusCode::CREATED,
        })
    }

    /// Posts `body` as JSON; a 2xx answer is read as `T`, anything else is a [`SendError`].
    async fn post<T: DeserializeOwned>(
        &self,
        url: &str,
        body: &impl Serialize,
    ) -> Result<(StatusCode, T), Attempt> {
        let mut request = self.http.post(url).json(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| Attempt {
            error: SendError::Retryable(describe(&e)),
            retry_after: None,
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        if status.is_success() {
            let body: T = response.json().await.map_err(|e| Attempt {
                error: SendError::Retryable(format!("unreadable answer: {e}")),
                retry_after: None,
            })?;
            return Ok((status, body));
        }
        let body = response.text().await.unwrap_or_default();
        let error = if is_retryable(status.as_u16()) {
            SendError::Retryable(format!("collector answered {status}"))
        } else {
            SendError::Rejected {
                status: status.as_u16(),
                body: body.chars().take(2000).collect(),
            }
        };
        Err(Attempt { error, retry_after })
    }
}

/// 5xx, 408 and 429: the collector may take the same report later.
pub(super) fn is_retryable(status: u16) -> bool {
    status >= 500 || status == 408 || status == 429
}

/// reqwest's message plus its causes ("error sending request: connection refused").
fn describe(err: &reqwest::Error) -> String {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// reqwest is built without a bundled crypto provider (no aws-lc): installs ring's, once per
/// process. Agents that make their own HTTPS requests call it before building a client.
pub fn install_crypto_provider() {
    // Err means a provider is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_ceiling_and_honours_retry_after() {
        let policy = RetryPolicy::default();
        for attempt in 0..20 {
            assert!(policy.delay(attempt, None) <= policy.max_delay);
        }
        assert!(policy.delay(0, None) <= policy.base_delay);
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            policy.delay(0, Some(Duration::from_secs(3600))),
            policy.max_delay
        );
    }
}
