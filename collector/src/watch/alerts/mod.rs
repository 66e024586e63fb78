//! Alerts: routes read from `ALERTS_FILE` (TOML) here, and the sender (`sender.rs`) that delivers each incident
//! opened or resolved to the routes matching it — Slack incoming webhooks, or generic webhooks
//! with a JSON body signed with HMAC-SHA256 (`X-Signature-256: sha256=<hex>`, as GitHub's
//! `X-Hub-Signature-256`).
//!
//! The sender runs beside the watcher, one task per route (`sender.rs`), never on the ingest
//! path. Events are rows written with the incident's transition; each delivery is claimed for
//! a lease, retried with backoff until delivered or `give_up_after` has passed since its event,
//! and every attempt is a row (`alert_attempts`). Delivery is at least once: every message
//! carries its delivery's id (`X-Alert-Delivery`, the same on every retry) for the receiver to
//! drop a repeat.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use agent_sdk::wire::IncidentKind;
use serde::Deserialize;

mod message;
mod sender;

pub use message::{SLACK_SECTION_LIMIT, WebhookBody, sign, slack_message};
pub use sender::{IN_FLIGHT, Senders, Sent};

use crate::domain::AgentPattern;

/// The header a webhook's signature travels in.
pub const SIGNATURE_HEADER: &str = "x-signature-256";
/// The header naming a message's delivery, the same on each of its retries.
pub const DELIVERY_HEADER: &str = "x-alert-delivery";
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The first retry waits this long, each next one twice as long, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Deliveries one pass of a route attempts at most.
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

/// One route of the alerts file. Its URL is a secret (a Slack webhook's is a credential):
/// shown nowhere, its name stands for it.
#[derive(Clone)]
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

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &"[redacted]")
            .field("agents", &self.agents)
            .field("kinds", &self.kinds)
            .finish()
    }
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
        // The parser's first line says where ("TOML parse error at line 1, column 3"), its
        // message what (which key, which table): one line with both.
        let file: FileToml = toml::from_str(text).map_err(|e| {
            let at = e
                .to_string()
                .lines()
                .next()
                .unwrap_or("not TOML")
                .to_owned();
            vec![format!("{at}: {}", e.message().trim())]
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
}

/// A route's URL is a secret: a problem with it is told without it.
fn http_url(value: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(value).map_err(|e| format!("is not a URL ({e})"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        scheme => Err(format!(
            "is not an http(s) URL (its scheme is {scheme:?}, or it has no host)"
        )),
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
    fn a_toml_error_says_where_and_what() {
        let problems = Alerts::parse("[[route]]\nname = \"a\"\n").unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        let problem = &problems[0];
        assert!(
            problem.starts_with("TOML parse error at line 1"),
            "{problem}"
        );
        assert!(
            problem.contains("unknown field `route`") && problem.contains("`routes`"),
            "{problem}"
        );
        assert_eq!(problem.lines().count(), 1, "{problem}");
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
}
