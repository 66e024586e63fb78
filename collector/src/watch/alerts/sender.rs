//! The sender: every event routed to its routes' deliveries, each delivery attempted with
//! backoff until delivered or given up, every attempt a row.
//!
//! Routes are independent: each sends from a task of its own ([`Alerts::spawn`]), at most
//! [`IN_FLIGHT`] attempts at once, each bounded by [`ATTEMPT_TIMEOUT`](super::ATTEMPT_TIMEOUT).
//! A receiver that hangs delays only its own route's messages; the watcher's loop only routes
//! events (rows) and wakes the routes, and never waits on an HTTP answer. A delivery is claimed
//! for a lease before its attempt ([`Store::claim_due_alerts`]): replicas and tasks share the
//! work without sending a message twice, and a sender that dies mid-attempt leaves the
//! delivery to be tried again (at least once: receivers drop repeats by `X-Alert-Delivery`).

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use agent_sdk::wire::{Incident, IncidentKind};

use super::message::{WebhookBody, sign, slack_message};
use super::{
    ATTEMPT_TIMEOUT, Alerts, DELIVERY_HEADER, FIRST_BACKOFF, MAX_BACKOFF, PER_PASS, Route,
    RouteKind, SIGNATURE_HEADER,
};
use crate::store::{AttemptOutcome, DueAlert, Store, StoreError};

/// Attempts one route has in flight at most.
pub const IN_FLIGHT: usize = 4;

/// What a sender's pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub delivered: usize,
    pub failed: usize,
    pub gave_up: usize,
}

impl Sent {
    fn add(&mut self, other: Sent) {
        self.delivered += other.delivered;
        self.failed += other.failed;
        self.gave_up += other.gave_up;
    }
}

/// The routes' sending tasks, woken by [`Senders::wake`] when events were routed; each also
/// looks for due retries every `every` on its own. Dropped, they stop.
pub struct Senders {
    wakes: Vec<Arc<Notify>>,
    tasks: JoinSet<()>,
}

impl Senders {
    /// Every route looks for deliveries due now.
    pub fn wake(&self) {
        for wake in &self.wakes {
            wake.notify_one();
        }
    }
}

impl Drop for Senders {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

impl Alerts {
    /// Starts one sending task per route.
    pub fn spawn(&self, store: &Store, every: std::time::Duration) -> Senders {
        let mut tasks = JoinSet::new();
        let mut wakes = Vec::with_capacity(self.routes.len());
        for route in &self.routes {
            let wake = Arc::new(Notify::new());
            wakes.push(wake.clone());
            let (alerts, store, route) = (self.clone(), store.clone(), route.clone());
            tasks.spawn(async move {
                loop {
                    let _ = tokio::time::timeout(every, wake.notified()).await;
                    if let Err(err) = alerts.send_route(&store, &route, Utc::now()).await {
                        tracing::warn!(route = %route.name, error = %err, "sending alerts failed; retrying at the next pass");
                    }
                }
            });
        }
        Senders { wakes, tasks }
    }

    /// Gives the events not routed yet their deliveries (rows only, no HTTP).
    pub async fn route_events(&self, store: &Store, now: DateTime<Utc>) -> Result<(), StoreError> {
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
            .await
            .map(drop)
    }

    /// One whole pass at `now`, the routes at once, returning when every route is done:
    /// events routed, due deliveries attempted (`collector alerts`, tests). The server's loop
    /// uses [`Alerts::route_events`] and [`Alerts::spawn`]'s tasks instead.
    pub async fn pass(&self, store: &Store, now: DateTime<Utc>) -> Result<Sent, StoreError> {
        self.route_events(store, now).await?;
        let mut routes = JoinSet::new();
        for route in &self.routes {
            let (alerts, store, route) = (self.clone(), store.clone(), route.clone());
            routes.spawn(async move { alerts.send_route(&store, &route, now).await });
        }
        let mut sent = Sent::default();
        for result in routes.join_all().await {
            sent.add(result?);
        }
        Ok(sent)
    }

    /// `route`'s deliveries due at `now` (at most [`PER_PASS`]), [`IN_FLIGHT`] at a time.
    async fn send_route(
        &self,
        store: &Store,
        route: &Route,
        now: DateTime<Utc>,
    ) -> Result<Sent, StoreError> {
        // Longer than any attempt: a claimed delivery is never attempted twice at once.
        let lease = TimeDelta::from_std(ATTEMPT_TIMEOUT * 6).unwrap_or(TimeDelta::minutes(1));
        let mut sent = Sent::default();
        let mut claimed = 0;
        while claimed < PER_PASS {
            let due = store
                .claim_due_alerts(&route.name, now, lease, IN_FLIGHT as u64)
                .await?;
            if due.is_empty() {
                break;
            }
            claimed += due.len() as u64;
            let mut attempts = JoinSet::new();
            for due in due {
                let (alerts, store, route) = (self.clone(), store.clone(), route.clone());
                attempts.spawn(async move { alerts.attempt(&store, &route, due, now).await });
            }
            for result in attempts.join_all().await {
                sent.add(result?);
            }
        }
        Ok(sent)
    }

    /// One attempt of `due` to `route`, recorded.
    async fn attempt(
        &self,
        store: &Store,
        route: &Route,
        due: DueAlert,
        now: DateTime<Utc>,
    ) -> Result<Sent, StoreError> {
        let attempt = due.attempts + 1;
        let delivery = due.delivery_id.to_string();
        let (status, error, outcome) = match self.send(route, &self.body(&due), &delivery).await {
            Ok(status) => (Some(status), None, AttemptOutcome::Delivered),
            Err((status, error)) => {
                let age = (now - due.event_at).to_std().unwrap_or_default();
                let outcome = if age >= self.give_up_after {
                    tracing::error!(route = %route.name, agent = %due.incident.agent_name, kind = due.incident.kind.as_str(), attempts = attempt, %error, "alert given up: not delivered within give_up_after");
                    AttemptOutcome::GaveUp
                } else {
                    tracing::warn!(route = %route.name, attempt, %error, "alert not delivered; retrying");
                    AttemptOutcome::RetryAt(now + backoff(attempt))
                };
                (status, Some(error), outcome)
            }
        };
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
        let mut sent = Sent::default();
        *match outcome {
            AttemptOutcome::Delivered => &mut sent.delivered,
            AttemptOutcome::RetryAt(_) => &mut sent.failed,
            AttemptOutcome::GaveUp => &mut sent.gave_up,
        } += 1;
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
            run_url: None,
        };
        let delivery = format!("test-{}", uuid::Uuid::new_v4());
        self.send(route, &body, &delivery).await.map_err(|(_, e)| e)
    }

    fn body(&self, due: &DueAlert) -> WebhookBody {
        let page = |path: String| {
            self.public_url
                .as_ref()
                .map(|base| format!("{}{path}", base.as_str().trim_end_matches('/')))
        };
        WebhookBody {
            event: due.event.clone(),
            incident: due.incident.clone(),
            error: due.error.clone(),
            url: page(format!("/ui/agents/{}", due.incident.agent_name)),
            run_url: due.run_id.and_then(|id| page(format!("/ui/runs/{id}"))),
        }
    }

    /// One attempt: the status of a 2xx answer, or (status, why). Why never holds the route's
    /// URL (a Slack webhook's is a credential): errors are told without it.
    async fn send(
        &self,
        route: &Route,
        body: &WebhookBody,
        delivery: &str,
    ) -> Result<u16, (Option<u16>, String)> {
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
            .header(DELIVERY_HEADER, delivery)
            .send()
            .await
            .map_err(|e| (None, agent_sdk::error_chain(&e.without_url())))?;
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
