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
    /// The page of the run `error` is from, when `public_url` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_url: Option<String>,
}

/// The most characters Slack takes in a section block's text (its Block Kit reference); a
/// longer one is refused with 400, which retrying cannot fix.
pub const SLACK_SECTION_LIMIT: usize = 3000;

/// `text` as Slack's mrkdwn shows it literally: `&`, `<` and `>` escaped, as Slack's
/// "Formatting text" guide asks, so that what a run wrote (`<!channel>`, a `<url|link>`) is
/// shown, never acted on.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `limit` characters of `text`: its end kept (an error's last lines say most), `…`
/// where it was cut.
fn keep_end(text: &str, limit: usize) -> String {
    let count = text.chars().count();
    if count <= limit {
        return text.to_owned();
    }
    let tail: String = text.chars().skip(count - limit.saturating_sub(1)).collect();
    format!("…{tail}")
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A Slack message (incoming webhook): `text` for notifications, `blocks` for the message.
/// Everything taken from a run (the summary, the error) is escaped; the section stays within
/// [`SLACK_SECTION_LIMIT`], the error cut first.
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
    let mut links = String::new();
    if let Some(url) = &body.run_url {
        links.push_str(&format!("\n<{url}|Open the run>"));
    }
    if let Some(url) = &body.url {
        let label = if body.run_url.is_some() {
            "the agent"
        } else {
            "Open in the console"
        };
        links.push_str(&format!("\n<{url}|{label}>"));
    }
    let head = format!("{icon} {headline}\n");
    let summary = slack_escape(&incident.summary);
    let room = SLACK_SECTION_LIMIT.saturating_sub(head.chars().count() + links.chars().count());
    let mut text = head;
    match &body.error {
        Some(error) => {
            let summary = keep_end(&summary, room / 3);
            // The fence and the line before it.
            let fence = 7;
            let error = slack_escape(&error.replace("```", "'''"));
            let error = keep_end(&error, room.saturating_sub(summary.chars().count() + fence));
            text.push_str(&format!("{summary}\n```{error}```"));
        }
        None => text.push_str(&keep_end(&summary, room)),
    }
    text.push_str(&links);
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
            run_url: None,
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
    fn what_a_run_wrote_is_escaped_and_a_long_error_cut_to_slacks_limit() {
        let opened: DateTime<Utc> = "2026-12-04T03:00:12Z".parse().unwrap();
        let error = format!(
            "<!channel> & <https://evil.example|click>\n{}",
            "x".repeat(10_000)
        );
        let body = WebhookBody {
            event: "opened".into(),
            incident: Incident {
                id: 42,
                agent_name: "nightly".into(),
                kind: IncidentKind::Failing,
                opened_at: opened,
                resolved_at: None,
                summary: "the run failed: <!here> ```".into(),
            },
            error: Some(format!("{error}\nlast line <!channel>")),
            url: Some("https://ops.example.com/ui/agents/nightly".into()),
            run_url: Some("https://ops.example.com/ui/runs/7".into()),
        };
        let message = slack_message(&body);
        let text = message["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(
            text.chars().count() <= SLACK_SECTION_LIMIT,
            "{}",
            text.len()
        );
        assert!(!text.contains("<!"), "{text}");
        assert!(text.contains("&lt;!here&gt;"), "{text}");
        assert!(
            text.contains("last line &lt;!channel&gt;```"),
            "the end is kept"
        );
        assert!(text.contains("<https://ops.example.com/ui/runs/7|Open the run>"));
        assert!(text.contains("<https://ops.example.com/ui/agents/nightly|the agent>"));
        // Only the console's links are links.
        assert_eq!(text.matches('<').count(), 2, "{text}");
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
