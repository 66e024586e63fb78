//! The request bodies: the benchmark's report, its start, a batch.

use chrono::{SecondsFormat, Utc};
use uuid::Uuid;

pub(crate) const METRICS_PER_REPORT: u64 = 10;

/// The start of the benchmark's run `key` (`POST /runs`).
pub(crate) fn run_start(agent: usize, key: Uuid) -> String {
    let now = Utc::now();
    format!(
        concat!(
            r#"{{"agent_name":"bench_agent_{agent:02}","run_key":"{key}","started_at":"{started}","#,
            r#""claimant":"loadgen","trigger":"schedule","deadline":"{deadline}"}}"#
        ),
        agent = agent,
        key = key,
        started = (now - chrono::TimeDelta::milliseconds(1500))
            .to_rfc3339_opts(SecondsFormat::Millis, true),
        deadline =
            (now + chrono::TimeDelta::minutes(10)).to_rfc3339_opts(SecondsFormat::Millis, true),
    )
}

/// The benchmark's report: 10 metrics (8 numbers, 2 strings), a fresh run_key.
pub(crate) fn report(agent: usize) -> String {
    report_with(agent, Uuid::new_v4())
}

/// The benchmark's report of run `key`.
pub(crate) fn report_with(agent: usize, key: Uuid) -> String {
    let finished = Utc::now();
    let started = finished - chrono::TimeDelta::milliseconds(1500);
    format!(
        concat!(
            r#"{{"agent_name":"bench_agent_{agent:02}","run_key":"{key}","#,
            r#""started_at":"{started}","finished_at":"{finished}","error":null,"#,
            r#""metrics":{{"items_processed":42,"errors":0,"duration_ms":1500,"tokens_in":1234,"#,
            r#""tokens_out":567,"cost_usd":0.0123,"retries":1,"score":0.87,"#,
            r#""status":"ok","model":"llama-3.1-8b"}}}}"#
        ),
        agent = agent,
        key = key,
        started = started.to_rfc3339_opts(SecondsFormat::Millis, true),
        finished = finished.to_rfc3339_opts(SecondsFormat::Millis, true),
    )
}
