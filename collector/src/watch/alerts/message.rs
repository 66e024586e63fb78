//! What an alert says: the webhook's JSON body and its signature, and the Slack message.

use agent_sdk::wire::Incident;
use chrono::{SecondsFormat, TimeDelta};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

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

#[cfg(test)]
mod tests {
    use super::*;
    use agent_sdk::wire::IncidentKind;
    use chrono::{DateTime, Utc};

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
