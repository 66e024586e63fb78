//! Alerts: routes read from `ALERTS_FILE` (TOML), and the sender that delivers each incident
//! opened or resolved to the routes matching it — Slack incoming webhooks, or generic webhooks
//! with a JSON body signed with HMAC-SHA256 (`X-Signature-256: sha256=<hex>`, as GitHub's
//! `X-Hub-Signature-256`).
//!
//! The sender runs beside the watcher (one replica at a time: a PostgreSQL session advisory
//! lock), never on the ingest path. Events are rows written with the incident's transition;
//! each delivery is retried with backoff until delivered or `give_up_after` has passed since
//! its event, and every attempt is a row (`alert_attempts`).

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use agent_sdk::wire::{Incident, IncidentKind};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::AgentPattern;
use crate::store::{ALERT_LOCK, AttemptOutcome, DueAlert, Store, StoreError};

/// The header a webhook's signature travels in.
pub const SIGNATURE_HEADER: &str = "x-signature-256";
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The first retry waits this long, each next one twice as long, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Deliveries one pass attempts at most.
const PER_PASS: u64 = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    /// The console's public address, for links in messages.
    public_url: Option<String>,
    /// How long an undelivered alert is retried (default 24h).
    give_up_after: Option<String>,
    #[serde(default)]
    routes: Vec<RouteToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteToml {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    url: String,
    secret: Option<String>,
    #[serde(default)]
    agents: Vec<String>,
    #[serde(default)]
    kinds: Vec<String>,
}

/// Where a route sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Slack,
    Webhook,
}

/// One route of the alerts file.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub kind: RouteKind,
    pub url: reqwest::Url,
    secret: Option<String>,
    /// Empty: every agent.
    agents: Vec<AgentPattern>,
    /// Empty: every kind.
    kinds: Vec<IncidentKind>,
}

impl Route {
    pub fn matches(&self, agent: &str, kind: IncidentKind) -> bool {
        (self.agents.is_empty() || self.agents.iter().any(|p| p.matches(agent)))
            && (self.kinds.is_empty() || self.kinds.contains(&kind))
    }
}

/// The alerts file, checked, and the sender.
#[derive(Debug, Clone)]
pub struct Alerts {
    routes: Vec<Route>,
    public_url: Option<reqwest::Url>,
    give_up_after: Duration,
    http: reqwest::Client,
}

/// The body of a generic webhook (docs/alerts.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookBody {
    /// `opened`, `resolved`, or `test` (`collector alerts test`).
    pub event: String,
    pub incident: Incident,
    /// The last lines of the latest failed run's error, for `failing` and `overdue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The agent's page in the console, when `public_url` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// What a sender's pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub delivered: usize,
    pub failed: usize,
    pub gave_up: usize,
}

impl Alerts {
    /// Reads and checks `path`: every problem, one line each.
    pub fn load(path: &Path) -> Result<Self, Vec<String>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![format!("{}: cannot be read: {e}", path.display())])?;
        Self::parse(&text).map_err(|problems| {
            problems
                .into_iter()
                .map(|p| format!("{}: {p}", path.display()))
                .collect()
        })
    }

    /// Checks an alerts file's text: every problem, one line each.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let file: FileToml = toml::from_str(text).map_err(|e| {
            vec![
                e.to_string()
                    .lines()
                    .next()
                    .unwrap_or("not TOML")
                    .to_owned(),
            ]
        })?;
        let mut problems = Vec::new();
        let give_up_after = match file.give_up_after.as_deref().map(humantime::parse_duration) {
            None => Duration::from_secs(24 * 3600),
            Some(Ok(d)) if !d.is_zero() => d,
            Some(Ok(_)) => {
                problems.push("give_up_after: must be more than 0s".to_owned());
                Duration::ZERO
            }
            Some(Err(e)) => {
                problems.push(format!("give_up_after: not a duration like 24h: {e}"));
                Duration::ZERO
            }
        };
        let public_url = file.public_url.as_deref().and_then(|u| match http_url(u) {
            Ok(url) => Some(url),
            Err(why) => {
                problems.push(format!("public_url: {why}"));
                None
            }
        });
        let mut names = HashSet::new();
        let mut routes = Vec::new();
        for (i, route) in file.routes.into_iter().enumerate() {
            let at = format!("routes[{i}] ({})", route.name);
            if route.name.is_empty() || route.name.len() > 100 {
                problems.push(format!("{at}: name must be 1 to 100 characters"));
            }
            if !names.insert(route.name.clone()) {
                problems.push(format!("{at}: another route has this name"));
            }
            let kind = match route.kind.as_str() {
                "slack" => Some(RouteKind::Slack),
                "webhook" => Some(RouteKind::Webhook),
                other => {
                    problems.push(format!("{at}: type {other:?} is not slack or webhook"));
                    None
                }
            };
            let url = http_url(&route.url)
                .map_err(|why| problems.push(format!("{at}: url {why}")))
                .ok();
            if kind == Some(RouteKind::Webhook) && route.secret.as_deref().is_none_or(str::is_empty)
            {
                problems.push(format!(
                    "{at}: a webhook needs a secret to sign its bodies with"
                ));
            }
            let mut agents = Vec::new();
            for pattern in &route.agents {
                match pattern.parse::<AgentPattern>() {
                    Ok(p) => agents.push(p),
                    Err(e) => problems.push(format!("{at}: agents: {pattern:?}: {e}")),
                }
            }
            let mut kinds = Vec::new();
            for name in &route.kinds {
                match IncidentKind::parse(name) {
                    Some(k) => kinds.push(k),
                    None => problems.push(format!(
                        "{at}: kinds: {name:?} is not missed, failing, stale, overdue or slow"
                    )),
                }
            }
            if let (Some(kind), Some(url)) = (kind, url) {
                routes.push(Route {
                    name: route.name,
                    kind,
                    url,
                    secret: route.secret,
                    agents,
                    kinds,
                });
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .user_agent(concat!(
                "agent-platform-collector/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| vec![format!("the HTTP client cannot be built: {e}")])?;
        Ok(Self {
            routes,
            public_url,
            give_up_after,
            http,
        })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// One pass of the sender at `now`: new events routed, due deliveries attempted. `None`
    /// when another replica is sending.
    pub async fn pass(
        &self,
        store: &Store,
        now: DateTime<Utc>,
    ) -> Result<Option<Sent>, StoreError> {
        let Some(lock) = store.try_session_lock(ALERT_LOCK).await? else {
            return Ok(None);
        };
        let sent = self.send_due(store, now).await;
        lock.release().await;
        sent.map(Some)
    }

    async fn send_due(&self, store: &Store, now: DateTime<Utc>) -> Result<Sent, StoreError> {
        store
            .route_alert_events(
                |agent, kind| {
                    self.routes
                        .iter()
                        .filter(|r| r.matches(agent, kind))
                        .map(|r| r.name.clone())
                        .collect()
                },
                now,
            )
            .await?;
        let mut sent = Sent::default();
        for due in store.due_alerts(now, PER_PASS).await? {
            let attempt = due.attempts + 1;
            let result = match self.routes.iter().find(|r| r.name == due.route) {
                Some(route) => self.send(route, &self.body(&due)).await,
                None => Err((
                    None,
                    format!("route {:?} is no longer in the alerts file", due.route),
                )),
            };
            let (status, error, outcome) = match result {
                Ok(status) => (Some(status), None, AttemptOutcome::Delivered),
                Err((status, error)) => {
                    let age = (now - due.event_at).to_std().unwrap_or_default();
                    let outcome = if age >= self.give_up_after {
                        tracing::error!(route = %due.route, agent = %due.incident.agent_name, kind = due.incident.kind.as_str(), attempts = attempt, %error, "alert given up: not delivered within give_up_after");
                        AttemptOutcome::GaveUp
                    } else {
                        tracing::warn!(route = %due.route, attempt, %error, "alert not delivered; retrying");
                        AttemptOutcome::RetryAt(now + backoff(attempt))
                    };
                    (status, Some(error), outcome)
                }
            };
            match outcome {
                AttemptOutcome::Delivered => sent.delivered += 1,
                AttemptOutcome::RetryAt(_) => sent.failed += 1,
                AttemptOutcome::GaveUp => sent.gave_up += 1,
            }
            store
                .record_alert_attempt(
                    due.delivery_id,
                    attempt,
                    now,
                    status,
                    error.as_deref(),
                    outcome,
                )
                .await?;
        }
        Ok(sent)
    }

    /// Sends a test message to the route named `name`: the status it answered.
    pub async fn send_test(&self, name: &str) -> Result<u16, String> {
        let route = self
            .routes
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| format!("no route named {name:?} in the alerts file"))?;
        let now = Utc::now();
        let body = WebhookBody {
            event: "test".into(),
            incident: Incident {
                id: 0,
                agent_name: "alerts-test".into(),
                kind: IncidentKind::Failing,
                opened_at: now,
                resolved_at: None,
                summary: "a test message from `collector alerts test`: this route works".into(),
            },
            error: None,
            url: None,
        };
        self.send(route, &body).await.map_err(|(_, e)| e)
    }

    fn body(&self, due: &DueAlert) -> WebhookBody {
        WebhookBody {
            event: due.event.clone(),
            incident: due.incident.clone(),
            error: due.error.clone(),
            url: self.public_url.as_ref().map(|base| {
                format!(
                    "{}/ui/agents/{}",
                    base.as_str().trim_end_matches('/'),
                    due.incident.agent_name
                )
            }),
        }
    }

    /// One attempt: the status of a 2xx answer, or (status, why).
    async fn send(&self, route: &Route, body: &WebhookBody) -> Result<u16, (Option<u16>, String)> {
        let request = match route.kind {
            RouteKind::Slack => self.http.post(route.url.clone()).json(&slack_message(body)),
            RouteKind::Webhook => {
                let json = serde_json::to_vec(body).map_err(|e| (None, e.to_string()))?;
                let signature = sign(route.secret.as_deref().unwrap_or_default(), &json);
                self.http
                    .post(route.url.clone())
                    .header("content-type", "application/json")
                    .header(SIGNATURE_HEADER, signature)
                    .header("x-alert-event", body.event.as_str())
                    .body(json)
            }
        };
        let response = request
            .send()
            .await
            .map_err(|e| (None, agent_sdk::error_chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        let text: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        Err((Some(status.as_u16()), format!("answered {status}: {text}")))
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A Slack message (incoming webhook): `text` for notifications, `blocks` for the message.
pub fn slack_message(body: &WebhookBody) -> serde_json::Value {
    let incident = &body.incident;
    let since = incident
        .opened_at
        .to_rfc3339_opts(SecondsFormat::Secs, true);
    let (icon, headline) = match (body.event.as_str(), incident.resolved_at) {
        ("resolved", Some(at)) => (
            ":white_check_mark:",
            format!(
                "*{}*: {} resolved ({} since {since})",
                incident.agent_name,
                incident.kind.as_str(),
                human(at - incident.opened_at)
            ),
        ),
        ("test", _) => (":wave:", format!("*{}*: test message", incident.agent_name)),
        _ => (
            ":red_circle:",
            format!(
                "*{}*: {} since {since}",
                incident.agent_name,
                incident.kind.as_str()
            ),
        ),
    };
    let mut text = format!("{icon} {headline}\n{}", incident.summary);
    if let Some(error) = &body.error {
        text.push_str(&format!("\n```{}```", error.replace("```", "'''")));
    }
    if let Some(url) = &body.url {
        text.push_str(&format!("\n<{url}|Open in the console>"));
    }
    serde_json::json!({
        "text": format!("{icon} {}: {} {}", incident.agent_name, incident.kind.as_str(), body.event),
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
    })
}

fn human(d: TimeDelta) -> String {
    crate::domain::human(TimeDelta::seconds(d.num_seconds()))
}

fn backoff(attempt: i32) -> TimeDelta {
    let shift = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(0)
        .min(16);
    let wait = FIRST_BACKOFF.saturating_mul(1 << shift).min(MAX_BACKOFF);
    TimeDelta::from_std(wait).unwrap_or(TimeDelta::hours(1))
}

fn http_url(value: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(value).map_err(|e| format!("{value:?} is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        _ => Err(format!("{value:?} is not an http(s) URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_of_an_alerts_file_is_one_line() {
        let problems = Alerts::parse(
            r#"
            give_up_after = "soon"
            [[routes]]
            name = "a"
            type = "pager"
            url = "ftp://example.com"
            [[routes]]
            name = "a"
            type = "webhook"
            url = "https://example.com/hook"
            kinds = ["late"]
            agents = ["bad name"]
            "#,
        )
        .unwrap_err();
        assert_eq!(problems.len(), 7, "{problems:#?}");
        for fragment in [
            "give_up_after",
            "is not slack or webhook",
            "is not an http(s) URL",
            "another route has this name",
            "needs a secret",
            "\"late\" is not missed",
            "agents: \"bad name\"",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(fragment)),
                "{fragment}: {problems:#?}"
            );
        }
    }

    #[test]
    fn routes_filter_by_agent_pattern_and_kind() {
        let alerts = Alerts::parse(
            r#"
            [[routes]]
            name = "billing"
            type = "slack"
            url = "https://hooks.slack.com/services/T/B/X"
            agents = ["billing_*"]
            kinds = ["failing", "missed"]
            "#,
        )
        .unwrap();
        let route = &alerts.routes()[0];
        assert!(route.matches("billing_daily", IncidentKind::Failing));
        assert!(!route.matches("billing_daily", IncidentKind::Slow));
        assert!(!route.matches("nightly", IncidentKind::Failing));
    }

    #[test]
    fn retries_wait_30_s_then_twice_as_long_each_time_up_to_an_hour() {
        let waits: Vec<i64> = (1..=9).map(|a| backoff(a).num_seconds()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
    }

    #[test]
    fn a_resolution_says_how_long_the_incident_lasted() {
        let opened: DateTime<Utc> = "2026-12-04T03:00:12Z".parse().unwrap();
        let body = WebhookBody {
            event: "resolved".into(),
            incident: Incident {
                id: 42,
                agent_name: "nightly".into(),
                kind: IncidentKind::Failing,
                opened_at: opened,
                resolved_at: Some(opened + TimeDelta::minutes(125)),
                summary: "the run at 2026-12-04T03:00:00Z failed: boom".into(),
            },
            error: None,
            url: None,
        };
        let message = slack_message(&body);
        assert_eq!(
            message["text"],
            ":white_check_mark: nightly: failing resolved"
        );
        let text = message["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(
            text.starts_with(
                ":white_check_mark: *nightly*: failing resolved (2h 5m since 2026-12-04T03:00:12Z)"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_signature_is_github_style_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
