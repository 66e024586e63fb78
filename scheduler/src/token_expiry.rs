//! The collector token's expiry, watched (the operator's side is `make rotate-scheduler-token`):
//! `/health` shows it, the logs warn from `SCHEDULER_TOKEN_WARN_BEFORE` (7 days) ahead of it and
//! then daily, and
//! Prometheus has it as a timestamp to alert on. The expiry is the token's `exp` claim, which
//! needs no secret to read.

use std::time::Duration;

use agent_sdk::client::Deliverer;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// How long before the token expires the scheduler starts warning, by default: tokens are
/// issued for 30 days (`collector token`) or a year (`make deploy`), and a warning from the
/// first day of a month-long token would be noise.
pub const WARN_BEFORE: Duration = Duration::from_secs(7 * 24 * 3600);

/// What to do about it, wherever the scheduler runs.
const RENEW: &str = "renew it: `make rotate-scheduler-token` on a server `make deploy` set up, \
     else a new `collector token --sub scheduler` in COLLECTOR_TOKEN or COLLECTOR_TOKEN_FILE";

/// How often the token's expiry is looked at (the token file may have been replaced).
const CHECK_EVERY: Duration = Duration::from_secs(3600);

/// How often a standing warning is logged again.
const WARN_EVERY: TimeDelta = TimeDelta::days(1);

/// What to tell the operator about a token expiring at `expires_at`, seen at `now`: nothing
/// while more than `warn_before` is left.
pub fn warning(
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
    warn_before: Duration,
) -> Option<String> {
    let left = expires_at - now;
    let warn_before = TimeDelta::from_std(warn_before).unwrap_or(TimeDelta::MAX);
    if left <= TimeDelta::zero() {
        Some(format!(
            "the collector token expired at {}: the collector refuses it and reports wait in the spool; {RENEW}",
            expires_at.to_rfc3339()
        ))
    } else if left < warn_before {
        Some(format!(
            "the collector token expires in {} day(s), at {}: {RENEW}",
            left.num_days(),
            expires_at.to_rfc3339()
        ))
    } else {
        None
    }
}

/// The `token` object of `/health`.
pub fn health(
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    warn_before: Duration,
) -> Value {
    match expires_at {
        None => json!({"expires_at": null}),
        Some(at) => json!({
            "expires_at": at.to_rfc3339(),
            "expires_in_days": (at - now).num_days(),
            "warning": warning(at, now, warn_before),
        }),
    }
}

/// Looks at the token's expiry every hour until `stop`: sets the gauge, and logs a warning
/// (at once, then daily, and whenever the token changes) while one is due.
pub async fn watch(deliverer: Deliverer, warn_before: Duration, stop: CancellationToken) {
    let mut last: Option<(DateTime<Utc>, Option<DateTime<Utc>>)> = None;
    loop {
        let now = Utc::now();
        let expires_at = deliverer.client().token_expires_at();
        match expires_at {
            Some(at) => metrics::gauge!("scheduler_collector_token_expiry_timestamp_seconds")
                .set(at.timestamp() as f64),
            None => metrics::gauge!("scheduler_collector_token_expiry_timestamp_seconds").set(0.0),
        }
        if let Some(message) = expires_at.and_then(|at| warning(at, now, warn_before)) {
            let due = last
                .is_none_or(|(warned, token)| token != expires_at || now - warned >= WARN_EVERY);
            if due {
                tracing::warn!("{message}");
                last = Some((now, expires_at));
            }
        }
        tokio::select! {
            () = tokio::time::sleep(CHECK_EVERY) => {}
            () = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn warns_within_seven_days_by_default_and_after_expiry() {
        let now = at("2026-12-02T12:00:00Z");
        // A fresh 30-day token says nothing.
        assert_eq!(warning(at("2027-01-01T12:00:00Z"), now, WARN_BEFORE), None);
        assert_eq!(warning(at("2026-12-10T12:00:00Z"), now, WARN_BEFORE), None);
        let soon = warning(at("2026-12-08T13:00:00Z"), now, WARN_BEFORE).unwrap();
        assert!(soon.contains("expires in 6 day(s)"), "{soon}");
        assert!(
            soon.contains("make rotate-scheduler-token") && soon.contains("collector token"),
            "{soon}"
        );
        // Configurable: 30 days ahead.
        let month = Duration::from_secs(30 * 24 * 3600);
        assert!(warning(at("2026-12-22T13:00:00Z"), now, month).is_some());
        let gone = warning(at("2026-12-01T12:00:00Z"), now, WARN_BEFORE).unwrap();
        assert!(
            gone.contains("expired at 2026-12-01T12:00:00+00:00"),
            "{gone}"
        );
    }

    #[test]
    fn health_shows_expiry_and_warning() {
        let now = at("2026-12-02T12:00:00Z");
        let far = health(Some(at("2027-12-02T12:00:00Z")), now, WARN_BEFORE);
        assert_eq!(far["expires_in_days"], 365);
        assert!(far["warning"].is_null());
        let near = health(Some(at("2026-12-06T12:00:00Z")), now, WARN_BEFORE);
        assert_eq!(near["expires_in_days"], 4);
        assert!(near["warning"].as_str().unwrap().contains("4 day(s)"));
        assert!(health(None, now, WARN_BEFORE)["expires_at"].is_null());
    }
}
