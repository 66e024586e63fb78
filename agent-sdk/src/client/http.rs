//! The collector's ingest endpoints, `POST /metrics` with retries on what retrying can fix, and
//! `POST /metrics/batch` for redelivering the spool.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::{StatusCode, header};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wire::{
    BatchItemResult, BatchRequest, BatchResponse, Commands, ErrorBody, ExpectationsResponse,
    IngestResponse, RunClaim, RunReport, RunStart, RunStarted, ScheduledJobs,
};

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
    /// Connection failures, timeouts, 408, 429, 5xx, and answers that say nothing about the
    /// report (404 from a wrong URL, say): trying later may work.
    #[error("{0}")]
    Retryable(String),
    /// 401 or 403: the token is missing, expired, signed with another secret or not allowed.
    /// The report is fine; it waits for a token that works.
    #[error("the collector refused the token ({status}): {body}")]
    Unauthorized { status: u16, body: String },
    /// 400, 409, 413, 415 or 422: the report itself is wrong (409: its run_key holds another
    /// report); retrying will not help.
    #[error("refused with {status}: {body}")]
    Rejected { status: u16, body: String },
}

/// What an answer's status says about the report that got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Stored,
    /// Keep it and try again later.
    Retry,
    /// Keep it; the token must change first.
    Unauthorized,
    /// The report itself is refused.
    Rejected,
}

impl Verdict {
    pub fn of(status: u16) -> Self {
        match status {
            200..=299 => Self::Stored,
            401 | 403 => Self::Unauthorized,
            400 | 409 | 413 | 415 | 422 => Self::Rejected,
            _ => Self::Retry,
        }
    }
}

/// What `POST /runs` said about a start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAnswer {
    /// The run is this claimant's: run the agent (`created` is false when it had started it
    /// before, a retried request).
    Started { run_id: i64, created: bool },
    /// Another claimant holds the run, or it has finished: do not run it.
    Claimed(RunClaim),
}

/// Where the bearer token comes from: fixed, or a file re-read whenever it changes (and when
/// [`CollectorClient::reload_token`] is called, on SIGHUP), so that a renewed token takes
/// effect without a restart and without touching the spool.
#[derive(Clone)]
pub enum TokenSource {
    Fixed(Option<String>),
    File(PathBuf),
}

/// The token last read from a file, and the file's (modified time, length) when it was read.
#[derive(Default)]
struct TokenCache {
    seen: Option<(SystemTime, u64)>,
    token: Option<String>,
}

struct Attempt {
    error: SendError,
    retry_after: Option<Duration>,
    /// The answer's status, when there was an answer.
    status: Option<u16>,
}

/// Posts reports to one collector with one bearer token.
#[derive(Clone)]
pub struct CollectorClient {
    http: reqwest::Client,
    endpoint: String,
    batch_endpoint: String,
    runs_endpoint: String,
    jobs_endpoint: String,
    commands_endpoint: String,
    token: TokenSource,
    cache: Arc<Mutex<TokenCache>>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for CollectorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = match &self.token {
            TokenSource::Fixed(token) => token.as_ref().map(|_| "[redacted]".to_owned()),
            TokenSource::File(path) => Some(format!("from {}", path.display())),
        };
        f.debug_struct("CollectorClient")
            .field("endpoint", &self.endpoint)
            .field("token", &token)
            .finish()
    }
}

impl CollectorClient {
    /// A client for the collector at `base_url` (e.g. `http://collector:8000`).
    pub fn new(base_url: &str, token: Option<String>) -> Result<Self, reqwest::Error> {
        Self::with_token_source(base_url, TokenSource::Fixed(token))
    }

    /// A client whose token comes from `token`.
    pub fn with_token_source(base_url: &str, token: TokenSource) -> Result<Self, reqwest::Error> {
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
            runs_endpoint: format!("{base_url}/runs"),
            jobs_endpoint: format!("{base_url}/expectations/scheduler"),
            commands_endpoint: format!("{base_url}/scheduler/commands"),
            token,
            cache: Arc::default(),
            retry: RetryPolicy::default(),
        })
    }

    /// Reads the token file again at the next request, whatever its modified time says.
    pub fn reload_token(&self) {
        lock(&self.cache).seen = None;
    }

    /// When the token this client sends expires (its `exp`), when it has one.
    pub fn token_expires_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.token().as_deref().and_then(super::token_expires_at)
    }

    /// The token to send now: the fixed one, or the file's (re-read when it changed). A file
    /// that cannot be read keeps the token read last, and says why.
    fn token(&self) -> Option<String> {
        let path = match &self.token {
            TokenSource::Fixed(token) => return token.clone(),
            TokenSource::File(path) => path,
        };
        let mut cache = lock(&self.cache);
        let seen = std::fs::metadata(path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        if seen.is_none() || seen != cache.seen {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let token = text.trim().to_owned();
                    if cache.token.is_some() && cache.token.as_deref() != Some(token.as_str()) {
                        tracing::info!(file = %path.display(), "the collector token changed: using the new one");
                    }
                    cache.token = (!token.is_empty()).then_some(token);
                    cache.seen = seen;
                }
                Err(err) => {
                    tracing::error!(file = %path.display(), error = %err, "cannot read the collector token file: keeping the token read last");
                }
            }
        }
        cache.token.clone()
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
                    ..
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
            .post(&self.batch_endpoint, &BatchRequest { reports }, None)
            .await
            .map_err(|a| match a.status {
                // A collector without the batch endpoint: the caller sends one at a time.
                Some(status @ (404 | 405)) => SendError::Rejected {
                    status,
                    body: "no batch endpoint".into(),
                },
                _ => a.error,
            })?;
        Ok(body.results)
    }

    /// Announces a run's start (`POST /runs`), one attempt within `timeout`: the run is ours
    /// to run, or another claimant's (or finished already).
    pub async fn start(
        &self,
        start: &RunStart,
        timeout: Duration,
    ) -> Result<StartAnswer, SendError> {
        match self
            .post::<RunStarted>(&self.runs_endpoint, start, Some(timeout))
            .await
        {
            Ok((status, body)) => Ok(StartAnswer::Started {
                run_id: body.run_id,
                created: status == StatusCode::CREATED,
            }),
            Err(Attempt {
                error: SendError::Rejected { status: 409, body },
                ..
            }) => serde_json::from_str::<ErrorBody>(&body)
                .ok()
                .filter(|answer| answer.error.code == "run_claimed")
                .and_then(|answer| serde_json::from_value::<RunClaim>(answer.error.details).ok())
                .map(StartAnswer::Claimed)
                .ok_or(SendError::Rejected { status: 409, body }),
            Err(failed) => Err(failed.error),
        }
    }

    /// Publishes a scheduler's jobs (`PUT /expectations/scheduler`): what the collector is to
    /// expect of them. One try, within `timeout`.
    pub async fn publish_jobs(
        &self,
        jobs: &ScheduledJobs,
        timeout: Duration,
    ) -> Result<usize, SendError> {
        self.request_json::<ExpectationsResponse>(
            reqwest::Method::PUT,
            &self.jobs_endpoint,
            jobs,
            Some(timeout),
        )
        .await
        .map(|(_, body)| body.expectations.len())
        .map_err(|failed| failed.error)
    }

    /// What the scheduler replica `claimant` is to do now (`GET /scheduler/commands`): jobs
    /// paused, runs asked for, cancels of its runs.
    pub async fn commands(&self, claimant: &str, timeout: Duration) -> Result<Commands, SendError> {
        let url =
            reqwest::Url::parse_with_params(&self.commands_endpoint, [("claimant", claimant)])
                .map_err(|e| SendError::Rejected {
                    status: 0,
                    body: format!("the commands URL: {e}"),
                })?;
        self.exchange(self.http.get(url), Some(timeout))
            .await
            .map(|(_, commands)| commands)
            .map_err(|failed| failed.error)
    }

    async fn attempt(&self, report: &RunReport) -> Result<Delivered, Attempt> {
        let (status, body): (_, IngestResponse) = self.post(&self.endpoint, report, None).await?;
        Ok(Delivered {
            run_id: body.run_id,
            created: status == StatusCode::CREATED,
        })
    }

    /// Posts `body` as JSON (within `timeout`, else the client's 30 s); a 2xx answer is read
    /// as `T`, anything else is a [`SendError`].
    async fn post<T: DeserializeOwned>(
        &self,
        url: &str,
        body: &impl Serialize,
        timeout: Option<Duration>,
    ) -> Result<(StatusCode, T), Attempt> {
        self.request_json(reqwest::Method::POST, url, body, timeout)
            .await
    }

    /// Sends `body` as JSON with `method`: [`Self::post`]'s rules.
    async fn request_json<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        url: &str,
        body: &impl Serialize,
        timeout: Option<Duration>,
    ) -> Result<(StatusCode, T), Attempt> {
        self.exchange(self.http.request(method, url).json(body), timeout)
            .await
    }

    /// Sends `request` with the token (within `timeout`, else the client's 30 s): a 2xx answer
    /// is read as `T`, anything else is a [`SendError`].
    async fn exchange<T: DeserializeOwned>(
        &self,
        mut request: reqwest::RequestBuilder,
        timeout: Option<Duration>,
    ) -> Result<(StatusCode, T), Attempt> {
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        if let Some(token) = self.token() {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| Attempt {
            error: SendError::Retryable(crate::error_chain(&e)),
            retry_after: None,
            status: None,
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
                status: Some(status.as_u16()),
            })?;
            return Ok((status, body));
        }
        let body: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(2000)
            .collect();
        let status = status.as_u16();
        let error = match Verdict::of(status) {
            Verdict::Unauthorized => SendError::Unauthorized { status, body },
            Verdict::Rejected => SendError::Rejected { status, body },
            Verdict::Stored | Verdict::Retry => {
                SendError::Retryable(format!("collector answered {status}: {body}"))
            }
        };
        Err(Attempt {
            error,
            retry_after,
            status: Some(status),
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
    fn only_refusals_of_the_report_itself_are_final() {
        for status in [400, 409, 413, 415, 422] {
            assert_eq!(Verdict::of(status), Verdict::Rejected, "{status}");
        }
        for status in [401, 403] {
            assert_eq!(Verdict::of(status), Verdict::Unauthorized, "{status}");
        }
        for status in [404, 405, 408, 429, 500, 502, 503] {
            assert_eq!(Verdict::of(status), Verdict::Retry, "{status}");
        }
        assert_eq!(Verdict::of(201), Verdict::Stored);
    }

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
