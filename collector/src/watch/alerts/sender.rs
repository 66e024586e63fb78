//! The sender: every event routed to its routes' deliveries, each delivery attempted with
//! backoff until delivered or given up, every attempt a row.

use chrono::{DateTime, TimeDelta, Utc};

use agent_sdk::wire::{Incident, IncidentKind};

use super::message::{WebhookBody, sign, slack_message};
use super::{Alerts, FIRST_BACKOFF, MAX_BACKOFF, PER_PASS, Route, RouteKind, SIGNATURE_HEADER};
use crate::store::{ALERT_LOCK, AttemptOutcome, DueAlert, Store, StoreError};

/// What a sender's pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub delivered: usize,
    pub failed: usize,
    pub gave_up: usize,
}

impl Alerts {
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

fn backoff(attempt: i32) -> TimeDelta {
    let shift = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(0)
        .min(16);
    let wait = FIRST_BACKOFF.saturating_mul(1 << shift).min(MAX_BACKOFF);
    TimeDelta::from_std(wait).unwrap_or(TimeDelta::hours(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_30_s_then_twice_as_long_each_time_up_to_an_hour() {
        let waits: Vec<i64> = (1..=9).map(|a| backoff(a).num_seconds()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
    }
}
