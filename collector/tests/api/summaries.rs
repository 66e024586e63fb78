//! The summaries: computed from the runs stored, each counted once, by the same rules on both
//! backends (docs/architecture.md, "The summary rules").

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{Db, TestApp, on_both_backends, report, report_at};
use crate::ingest::post_concurrently_all_created;

/// 300 reports of 20 agents over two UTC days, a seventh of them failed, posted at once (on
/// PostgreSQL, spread over the writers): every daily summary and metric aggregate equals the
/// count of what was sent.
async fn concurrent_reports_of_many_agents_keep_every_summary_exact(db: Db) {
    let app = TestApp::spawn(db).await;
    // (agent, day) -> (runs, failures, sum of metric n, max of n)
    let mut expected: std::collections::BTreeMap<(String, String), (i64, i64, i64, i64)> =
        Default::default();
    let bodies: Vec<_> = (0..300_i64)
        .map(|i| {
            let agent = format!("agent_{:02}", i % 20);
            let day = if i % 3 == 0 {
                "2026-02-19"
            } else {
                "2026-02-20"
            };
            let mut body = report(&agent);
            body["run_key"] = json!(Uuid::new_v4());
            body["started_at"] = json!(format!("{day}T10:00:{:02}Z", i % 60));
            body["finished_at"] = json!(format!("{day}T10:01:{:02}Z", i % 60));
            body["metrics"] = json!({"n": i, "label": "x"});
            let failed = i % 7 == 0;
            if failed {
                body["error"] = json!("boom");
            }
            let entry = expected.entry((agent, day.to_owned())).or_default();
            *entry = (
                entry.0 + 1,
                entry.1 + i64::from(failed),
                entry.2 + i,
                entry.3.max(i),
            );
            body
        })
        .collect();

    post_concurrently_all_created(&app, bodies).await;
    let daily: Vec<(String, String, i64, i64)> = app
        .db
        .rows(
            "select agent_name, cast(day as text), run_count, failure_count \
             from agent_daily_summaries order by 1, 2",
        )
        .await;
    let metric: Vec<(String, String, i64, String, String)> = app
        .db
        .rows(
            "select agent_name, cast(day as text), value_count, cast(value_sum as text), \
             cast(value_max as text) from agent_metric_daily_summaries \
             where metric_name = 'n' order by 1, 2",
        )
        .await;
    let want_daily: Vec<_> = expected
        .iter()
        .map(|((a, d), (runs, failures, ..))| (a.clone(), d.clone(), *runs, *failures))
        .collect();
    let want_metric: Vec<_> = expected
        .iter()
        .map(|((a, d), (runs, _, sum, max))| {
            (
                a.clone(),
                d.clone(),
                *runs,
                sum.to_string(),
                max.to_string(),
            )
        })
        .collect();
    assert_eq!(daily, want_daily);
    assert_eq!(metric, want_metric);
    app.assert_agents_agree_with_summaries().await;
    let agents: i64 = app.db.scalar("select count(*) from agents").await;
    assert_eq!(agents, 20);
}

pub(crate) fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

async fn daily_summaries_and_metric_aggregates_across_two_utc_days(db: Db) {
    let app = TestApp::spawn(db).await;
    // Day 1: two successes (10 s, 30 s) and a failure (20 s); day 2: one success (5 s).
    // The failure starts last on day 1, so it is day 1's last status.
    let runs = [
        (
            "2026-03-01T08:00:00Z",
            10,
            None,
            json!({"items": 1, "ratio": 0.1, "label": "a"}),
        ),
        (
            "2026-03-01T12:00:00Z",
            30,
            None,
            json!({"items": 2, "ratio": 0.2, "label": "b"}),
        ),
        (
            "2026-03-01T23:59:50Z",
            20,
            Some("boom"),
            json!({"items": 4}),
        ),
        (
            "2026-03-02T00:30:00Z",
            5,
            None,
            json!({"items": 10, "ok": true}),
        ),
    ];
    for (start, seconds, error, metrics) in runs {
        let mut body = report_at("daily", at(start), seconds);
        body["metrics"] = metrics;
        body["error"] = json!(error);
        let (status, response) = app.post_report(&body).await;
        assert_eq!(status, StatusCode::CREATED, "{response}");
    }
    // Another agent the same day must not mix in.
    app.post_report(&report_at("other", at("2026-03-01T09:00:00Z"), 1))
        .await;

    type SummaryRow = (
        String,
        i64,
        i64,
        i64,
        i64,
        Option<i64>,
        Option<i64>,
        DateTime<Utc>,
        String,
        Option<DateTime<Utc>>,
    );
    let summaries: Vec<SummaryRow> = app
        .db
        .rows(
            "select cast(day as text), run_count, success_count, failure_count, total_duration_ms,
                min_duration_ms, max_duration_ms, last_run_at, last_status, last_success_at
         from agent_daily_summaries where agent_name = 'daily' order by day",
        )
        .await;
    assert_eq!(
        summaries,
        vec![
            (
                "2026-03-01".into(),
                3,
                2,
                1,
                60_000,
                Some(10_000),
                Some(30_000),
                at("2026-03-01T23:59:50Z"),
                "failed".into(),
                Some(at("2026-03-01T12:00:00Z")),
            ),
            (
                "2026-03-02".into(),
                1,
                1,
                0,
                5_000,
                Some(5_000),
                Some(5_000),
                at("2026-03-02T00:30:00Z"),
                "success".into(),
                Some(at("2026-03-02T00:30:00Z")),
            ),
        ]
    );

    // Metrics are dated by recorded_at (the run's finish): the 23:59:50 + 20 s run lands on day 2.
    let aggregates: Vec<(String, String, i64, String, String, String, String)> = app.db.rows("select cast(day as text), metric_name, value_count, cast(value_sum as text), cast(value_min as text),
                cast(value_max as text), cast(last_value as text)
         from agent_metric_daily_summaries where agent_name = 'daily' order by day, metric_name").await;
    let expected: Vec<(String, String, i64, String, String, String, String)> = [
        ("2026-03-01", "items", 2, "3", "1", "2", "2"),
        ("2026-03-01", "ratio", 2, "0.3", "0.1", "0.2", "0.2"),
        ("2026-03-02", "items", 2, "14", "4", "10", "10"),
        ("2026-03-02", "ok", 1, "1", "1", "1", "1"),
    ]
    .into_iter()
    .map(|(d, n, c, s, mi, ma, l)| {
        (
            d.into(),
            n.into(),
            c,
            s.into(),
            mi.into(),
            ma.into(),
            l.into(),
        )
    })
    .collect();
    assert_eq!(
        aggregates, expected,
        "text metrics are not aggregated; 0.1 + 0.2 is exactly 0.3"
    );
}

async fn a_late_report_does_not_overwrite_the_last_status(db: Db) {
    let app = TestApp::spawn(db).await;
    let now = Utc::now() - TimeDelta::minutes(10);
    app.post_report(&report_at("late", now, 1)).await;
    // Delivered afterwards from a spool, but it started earlier.
    let mut earlier = report_at("late", now - TimeDelta::minutes(5), 1);
    earlier["error"] = json!("old failure");
    app.post_report(&earlier).await;

    let (status, last): (String, DateTime<Utc>) = app
        .db
        .row("select last_status, last_run_at from agent_daily_summaries where agent_name = 'late'")
        .await;
    assert_eq!(status, "success");
    assert_eq!(last.timestamp(), now.timestamp());
    let (status, last, success): (String, DateTime<Utc>, DateTime<Utc>) = app
        .db
        .row("select last_status, last_run_at, last_success_at from agents where agent_name = 'late'")
        .await;
    assert_eq!(
        (status.as_str(), last.timestamp(), success.timestamp()),
        ("success", now.timestamp(), now.timestamp())
    );
}

/// The per-metric aggregates are exact decimals on both backends, as PostgreSQL's NUMERIC
/// computes them: no float rounding, the larger scale kept, each extreme as it was written.
async fn metric_aggregates_are_exact_decimals(db: Db) {
    let app = TestApp::spawn(db).await;
    let start = at("2026-03-01T10:00:00Z");
    for (offset, value) in [
        (0, "0.1"),
        (1, "0.20"),
        (2, "9007199254740993"),
        (3, "-12.50"),
    ] {
        // Raw JSON: the literal reaches the collector as written (12.50, not 12.5).
        let mut body = report_at("exact_sums", start + TimeDelta::minutes(offset), 1);
        body["metrics"] = json!({});
        let body = body
            .to_string()
            .replace(r#""metrics":{}"#, &format!(r#""metrics":{{"v":{value}}}"#));
        let (status, response) = app
            .post_raw(&body, "application/json", Some(&app.token))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{response}");
    }
    let row: (i64, String, String, String, String) = app
        .db
        .row(
            "select value_count, cast(value_sum as text), cast(value_min as text),
                    cast(value_max as text), cast(last_value as text)
             from agent_metric_daily_summaries where agent_name = 'exact_sums'",
        )
        .await;
    assert_eq!(
        row,
        (
            4,
            "9007199254740980.80".into(),
            "-12.50".into(),
            "9007199254740993".into(),
            "-12.50".into()
        )
    );
}

/// PostgreSQL only, as the reference: the canonical text each backend stores for a number is
/// the one PostgreSQL's NUMERIC prints, for thousands of literals of every shape the wire
/// contract admits.
#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn canonical_numbers_are_postgresqls_own_text(pool: sqlx::PgPool) {
    // A fixed linear congruential sequence: the same literals every run.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |bound: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % bound
    };
    let digits = |n: u64, next: &mut dyn FnMut(u64) -> u64| -> String {
        (0..n)
            .map(|_| char::from(b'0' + u8::try_from(next(10)).unwrap()))
            .collect()
    };
    let mut literals = Vec::new();
    for _ in 0..5000 {
        let sign = if next(2) == 0 { "-" } else { "" };
        let whole = match next(3) {
            0 => "0".to_owned(),
            _ => format!("{}{}", 1 + next(9), digits(next(20), &mut next)),
        };
        let fraction = match next(2) {
            0 => String::new(),
            _ => format!(".{}", digits(1 + next(20), &mut next)),
        };
        let exponent = match next(3) {
            0 => String::new(),
            _ => format!(
                "{}{}{}",
                ["e", "E"][usize::try_from(next(2)).unwrap()],
                ["", "+", "-"][usize::try_from(next(3)).unwrap()],
                next(40)
            ),
        };
        literals.push(format!("{sign}{whole}{fraction}{exponent}"));
    }
    let expected: Vec<String> = sqlx::query_scalar(
        "select x::numeric::text from unnest($1::text[]) with ordinality as t(x, i) order by i",
    )
    .bind(&literals)
    .fetch_all(&pool)
    .await
    .unwrap();
    for (literal, expected) in literals.iter().zip(expected) {
        assert_eq!(
            collector::domain::canonical_decimal(literal),
            expected,
            "{literal}"
        );
    }
}
on_both_backends!(
    concurrent_reports_of_many_agents_keep_every_summary_exact,
    daily_summaries_and_metric_aggregates_across_two_utc_days,
    a_late_report_does_not_overwrite_the_last_status,
    metric_aggregates_are_exact_decimals,
);
