//! Property tests of the ingest path's parsing and validation: whatever the body, no panic,
//! and every refusal is a 4xx. (The HTTP tests cover the same path end to end.)

use agent_sdk::wire::RunReport;
use chrono::Utc;
use collector::domain::NewRun;
use collector::http::{ApiError, parse_json};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Parses and validates like `POST /metrics`; `Err` carries the status it would answer.
fn ingest(body: &[u8]) -> Result<NewRun, u16> {
    let report: RunReport = parse_json(body).map_err(|e| e.status().as_u16())?;
    NewRun::parse(report, Utc::now())
        .map_err(|errors| ApiError::validation(&errors).status().as_u16())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,40}".prop_map(Value::String),
        Just(json!("2026-02-19T10:00:00Z")),
        Just(json!("1e400")),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Mostly-valid reports with any field replaced by anything.
fn report_like() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        Just("agent_name"),
        Just("metrics"),
        Just("started_at"),
        Just("finished_at"),
        Just("error"),
        Just("run_key"),
        Just("trigger"),
        Just("scheduled_for"),
        Just("host"),
    ];
    (
        prop::collection::vec((field, json_value()), 0..4),
        prop::collection::btree_map("\\PC{0,250}", json_value(), 0..8),
    )
        .prop_map(|(replacements, metrics)| {
            let mut report = json!({
                "agent_name": "prop",
                "metrics": Value::Object(metrics.into_iter().collect()),
                "started_at": "2026-02-19T10:00:00Z",
                "finished_at": "2026-02-19T10:00:01Z",
            });
            for (field, value) in replacements {
                report[field] = value;
            }
            report
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_are_refused_with_4xx(body in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(status) = ingest(&body) {
            prop_assert!((400..500).contains(&status), "{status}");
        }
    }

    #[test]
    fn arbitrary_reports_are_stored_whole_or_refused_with_4xx(report in report_like()) {
        match ingest(report.to_string().as_bytes()) {
            Ok(run) => {
                prop_assert!(!run.agent_name.as_str().is_empty() && run.agent_name.as_str().len() <= 100);
                prop_assert!(run.metrics.len() <= 1000);
                prop_assert!(run.finished_at >= run.started_at);
                prop_assert!(run.metrics.iter().all(|m| !m.name.is_empty() && m.name.chars().count() <= 200));
            }
            Err(status) => prop_assert!(status == 400 || status == 422, "{status}"),
        }
    }
}
