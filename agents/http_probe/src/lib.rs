//! `http_probe`: fetches URLs and reports, per URL, `<label>.status`, `<label>.latency_ms`,
//! `<label>.bytes` and `<label>.up`, plus `urls_up` and `urls_total`.
//!
//! Parameters: `urls` (list), `allow_hosts` (list; required), `timeout_ms` (default 10 000).
//! Only hosts on `allow_hosts` are fetched, redirects included, so a configuration mistake
//! cannot make the platform fetch internal addresses; a URL outside it fails the run before
//! anything is fetched. An unreachable URL is reported (`up` = false), not a failed run.

use std::time::{Duration, Instant};

use agent_sdk::anyhow::{Context, bail};
use agent_sdk::wire::Metrics;
use agent_sdk::{Agent, RunContext, RunResult, async_trait, register_agent};
use reqwest::Url;
use reqwest::redirect::Policy;
use serde::Deserialize;

const MAX_REDIRECTS: usize = 5;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    urls: Vec<String>,
    allow_hosts: Vec<String>,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    10_000
}

pub struct HttpProbe;

#[async_trait]
impl Agent for HttpProbe {
    fn name(&self) -> &'static str {
        "http_probe"
    }

    async fn run(&self, ctx: &RunContext) -> RunResult {
        let params: Params =
            serde_json::from_value(serde_json::Value::Object(ctx.params().clone()))
                .context("invalid http_probe parameters (urls, allow_hosts, timeout_ms)")?;
        let allowed: Vec<String> = params
            .allow_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        let urls = params
            .urls
            .iter()
            .map(|raw| checked_url(raw, &allowed))
            .collect::<Result<Vec<_>, _>>()?;

        agent_sdk::client::install_crypto_provider();
        let redirect_allowed = allowed.clone();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(params.timeout_ms))
            .redirect(Policy::custom(move |attempt| {
                if attempt.previous().len() >= MAX_REDIRECTS {
                    attempt.error("too many redirects")
                } else if host_allowed(attempt.url(), &redirect_allowed) {
                    attempt.follow()
                } else {
                    let refused =
                        format!("redirect to a host not in allow_hosts: {}", attempt.url());
                    attempt.error(refused)
                }
            }))
            .build()
            .context("building the HTTP client")?;

        let mut metrics = Metrics::new();
        let mut up = 0;
        for url in &urls {
            let label = label(url);
            let started = Instant::now();
            let result = async {
                let response = client.get(url.clone()).send().await?;
                let status = response.status();
                let bytes = response.bytes().await?.len();
                Ok::<_, reqwest::Error>((status, bytes))
            };
            let result = tokio::select! {
                result = result => result,
                () = ctx.cancelled() => bail!("cancelled while fetching {url}"),
            };
            let latency = started.elapsed().as_secs_f64() * 1000.0;
            match result {
                Ok((status, bytes)) => {
                    let is_up = status.is_success();
                    up += usize::from(is_up);
                    metrics
                        .set(format!("{label}.status"), status.as_u16())
                        .set(
                            format!("{label}.latency_ms"),
                            (latency * 10.0).round() / 10.0,
                        )
                        .set(format!("{label}.bytes"), bytes)
                        .set(format!("{label}.up"), is_up);
                }
                Err(err) => {
                    metrics
                        .set(format!("{label}.up"), false)
                        .set(format!("{label}.error"), error_chain(&err));
                }
            }
        }
        metrics.set("urls_up", up).set("urls_total", urls.len());
        Ok(metrics)
    }
}

register_agent!(HttpProbe);

fn checked_url(raw: &str, allowed: &[String]) -> Result<Url, agent_sdk::AgentError> {
    let url = Url::parse(raw).with_context(|| format!("invalid URL {raw:?}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("only http and https URLs may be probed: {raw}");
    }
    if !host_allowed(&url, allowed) {
        bail!(
            "host {:?} of {raw} is not in allow_hosts ({})",
            url.host_str().unwrap_or_default(),
            allowed.join(", ")
        );
    }
    Ok(url)
}

fn host_allowed(url: &Url, allowed: &[String]) -> bool {
    url.host_str()
        .map(|h| {
            h.trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase()
        })
        .is_some_and(|host| {
            allowed
                .iter()
                .any(|a| a.trim_start_matches('[').trim_end_matches(']') == host)
        })
}

/// `example.com/health`, `127.0.0.1:8000/`: readable and stable across runs.
fn label(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}{}", url.path()),
        None => format!("{host}{}", url.path()),
    }
}

fn error_chain(err: &reqwest::Error) -> String {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_sdk::wire::MetricValue;
    use axum::Router;
    use axum::response::Redirect;
    use axum::routing::get;

    async fn serve() -> String {
        let app = Router::new().route("/ok", get(|| async { "hello" })).route(
            "/away",
            get(|| async { Redirect::temporary("http://localhost:1/secret") }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    async fn probe(params: serde_json::Value) -> RunResult {
        HttpProbe
            .run(&RunContext::new("http_probe").with_params(params.as_object().cloned().unwrap()))
            .await
    }

    #[tokio::test]
    async fn reports_status_latency_and_bytes() {
        let base = serve().await;
        let metrics = probe(
            serde_json::json!({"urls": [format!("{base}/ok")], "allow_hosts": ["127.0.0.1"]}),
        )
        .await
        .unwrap();
        let label = format!("{}/ok", base.trim_start_matches("http://"));
        assert_eq!(
            metrics.get(&format!("{label}.status")),
            Some(&MetricValue::from(200))
        );
        assert_eq!(
            metrics.get(&format!("{label}.bytes")),
            Some(&MetricValue::from(5))
        );
        assert_eq!(
            metrics.get(&format!("{label}.up")),
            Some(&MetricValue::Bool(true))
        );
        assert_eq!(metrics.get("urls_up"), Some(&MetricValue::from(1)));
    }

    #[tokio::test]
    async fn hosts_off_the_allow_list_are_refused_before_fetching() {
        let err = probe(serde_json::json!({"urls": ["http://169.254.169.254/latest/meta-data"], "allow_hosts": ["example.com"]}))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not in allow_hosts"), "{err}");
        let err = probe(serde_json::json!({"urls": ["file:///etc/passwd"], "allow_hosts": [""]}))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("only http and https"), "{err}");
    }

    #[tokio::test]
    async fn redirects_off_the_allow_list_are_not_followed() {
        let base = serve().await;
        let metrics = probe(
            serde_json::json!({"urls": [format!("{base}/away")], "allow_hosts": ["127.0.0.1"]}),
        )
        .await
        .unwrap();
        let label = format!("{}/away", base.trim_start_matches("http://"));
        assert_eq!(
            metrics.get(&format!("{label}.up")),
            Some(&MetricValue::Bool(false))
        );
        let Some(MetricValue::Text(error)) = metrics.get(&format!("{label}.error")) else {
            panic!("no error reported: {metrics:?}");
        };
        assert!(error.contains("not in allow_hosts"), "{error}");
    }
}
