//! The engine in process, with agents that exist only in this test binary.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agent_sdk::client::{CollectorClient, Deliverer, Spool};
use agent_sdk::wire::Metrics;
use agent_sdk::{Agent, Registry, RunContext, RunResult, async_trait};
use scheduler::engine::Engine;
use scheduler::schedule;
use sqlx::PgPool;

use crate::helpers::{Collector, outcomes, runs_of, wait_for};

struct Panics;

#[async_trait]
impl Agent for Panics {
    fn name(&self) -> &'static str {
        "panics"
    }
    async fn run(&self, _ctx: &RunContext) -> RunResult {
        let items: Vec<u32> = Vec::new();
        Ok(Metrics::from([("first", items[0])]))
    }
}

/// Sleeps `secs` seconds (a parameter), counting how many of its runs overlap.
#[derive(Default)]
struct Slow {
    running: AtomicUsize,
    max_overlap: Arc<AtomicUsize>,
}

#[async_trait]
impl Agent for Slow {
    fn name(&self) -> &'static str {
        "slow"
    }
    async fn run(&self, ctx: &RunContext) -> RunResult {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_overlap.fetch_max(now, Ordering::SeqCst);
        let secs: f64 = ctx.param("secs")?.unwrap_or(1.0);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs_f64(secs)) => {}
            () = ctx.cancelled() => {}
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(Metrics::from([("slept", secs)]))
    }
}

/// An engine running `toml`'s jobs over `agents`, delivering to a collector on `pool`.
struct Running {
    engine: Engine,
    _collector: Collector,
    _spool: tempfile::TempDir,
}

impl Running {
    async fn start(pool: &PgPool, agents: Vec<Arc<dyn Agent>>, toml: &str) -> Self {
        Self::start_with(pool, agents, toml, 4, tempfile::tempdir().unwrap()).await
    }

    async fn start_with(
        pool: &PgPool,
        agents: Vec<Arc<dyn Agent>>,
        toml: &str,
        max_concurrent_runs: usize,
        spool: tempfile::TempDir,
    ) -> Self {
        let collector = Collector::start(pool, None).await;
        let registry = Registry::from_agents(agents).unwrap();
        let jobs = schedule::parse("test.toml", Some(toml), &registry).unwrap();
        let client = CollectorClient::new(&collector.url(), Some(collector.token.clone())).unwrap();
        let deliverer = Deliverer::new(client, Spool::open(spool.path()).unwrap());
        let engine = Engine::new(jobs, deliverer, max_concurrent_runs);
        engine.start().await.unwrap();
        Self {
            engine,
            _collector: collector,
            _spool: spool,
        }
    }
}

#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn a_panicking_agent_is_stored_failed_and_the_scheduler_goes_on(pool: PgPool) {
    let running = Running::start(&pool, vec![Arc::new(Panics) as Arc<dyn Agent>, Arc::new(Slow::default())], "[agents.panics]\ncron = \"* * * * * *\"\n[agents.slow]\ncron = \"* * * * * *\"\nparams = { secs = 0.01 }\n").await;
    let engine = &running.engine;

    wait_for(
        "two panicking runs and a normal one",
        Duration::from_secs(10),
        || async { runs_of(&pool, "panics").await >= 2 && runs_of(&pool, "slow").await >= 1 },
    )
    .await;
    engine.shutdown(Duration::from_secs(5)).await;

    let (status, error) = &outcomes(&pool, "panics").await[0];
    assert_eq!(status, "failed");
    assert!(
        error
            .as_deref()
            .unwrap()
            .starts_with("panicked: index out of bounds"),
        "{error:?}"
    );
    assert!(
        outcomes(&pool, "slow")
            .await
            .iter()
            .all(|(s, _)| s == "success")
    );
}

#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn forbid_skips_a_tick_while_the_previous_run_goes_on(pool: PgPool) {
    let slow = Slow::default();
    let max_overlap = slow.max_overlap.clone();
    let running = Running::start(
        &pool,
        vec![Arc::new(slow) as Arc<dyn Agent>],
        "[agents.slow]\ncron = \"* * * * * *\"\nparams = { secs = 2.5 }\n",
    )
    .await;
    let engine = &running.engine;

    wait_for("a finished run", Duration::from_secs(10), || async {
        runs_of(&pool, "slow").await >= 1
    })
    .await;
    engine.shutdown(Duration::from_secs(5)).await;

    let skipped = engine.statuses()[0].skipped_ticks;
    assert!(
        skipped >= 2,
        "ticks during a 2.5 s run are skipped: {skipped}"
    );
    assert_eq!(
        max_overlap.load(Ordering::SeqCst),
        1,
        "runs never overlapped"
    );
}

#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn a_timed_out_agent_is_stored_failed_with_its_timeout(pool: PgPool) {
    let running = Running::start(
        &pool,
        vec![Arc::new(Slow::default()) as Arc<dyn Agent>],
        "[agents.slow]\ncron = \"* * * * * *\"\ntimeout = \"500ms\"\nparams = { secs = 30 }\n",
    )
    .await;
    let engine = &running.engine;

    wait_for("a timed-out run", Duration::from_secs(10), || async {
        runs_of(&pool, "slow").await >= 1
    })
    .await;
    engine.shutdown(Duration::from_secs(5)).await;

    let (status, error) = &outcomes(&pool, "slow").await[0];
    assert_eq!(
        (status.as_str(), error.as_deref()),
        ("failed", Some("timed out after 500ms"))
    );
}

#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn shutdown_cancels_runs_past_the_grace_and_reports_them(pool: PgPool) {
    let running = Running::start(
        &pool,
        vec![Arc::new(Slow::default()) as Arc<dyn Agent>],
        "[agents.slow]\ncron = \"* * * * * *\"\nparams = { secs = 60 }\n",
    )
    .await;
    let engine = &running.engine;
    wait_for("a run in progress", Duration::from_secs(5), || async {
        engine.statuses()[0].running == 1
    })
    .await;

    engine.shutdown(Duration::from_millis(300)).await;

    let (status, error) = &outcomes(&pool, "slow").await[0];
    assert_eq!(status, "failed");
    assert_eq!(
        error.as_deref(),
        Some("cancelled: the scheduler shut down before the run finished")
    );
}

/// Fails until its `fail_times` parameter is used up (counted across runs of this instance).
#[derive(Default)]
struct Flaky {
    calls: AtomicUsize,
}

#[async_trait]
impl Agent for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }
    async fn run(&self, ctx: &RunContext) -> RunResult {
        let fail_times: usize = ctx.param("fail_times")?.unwrap_or(0);
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call < fail_times {
            agent_sdk::anyhow::bail!("attempt {} failed", call + 1);
        }
        Ok(Metrics::from([("attempts", call + 1)]))
    }
}

#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn retries_report_one_run_with_the_final_outcome(pool: PgPool) {
    let running = Running::start(&pool, vec![Arc::new(Flaky::default()) as Arc<dyn Agent>], "[agents.flaky]\ncron = \"0 0 1 1 *\"\nretries = 2\nretry_backoff = \"50ms\"\nparams = { fail_times = 2 }\n").await;
    let engine = &running.engine;
    engine.trigger("flaky").unwrap();
    wait_for("the run", Duration::from_secs(10), || async {
        runs_of(&pool, "flaky").await >= 1
    })
    .await;
    engine.shutdown(Duration::from_secs(5)).await;

    assert_eq!(
        outcomes(&pool, "flaky").await,
        [("success".to_owned(), None)],
        "two failures, then success: one run"
    );
    let attempts: String = sqlx::query_scalar(
        "select metric_value::text from agent_metrics where metric_name = 'attempts'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(attempts, "3");
}

#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn exhausted_retries_say_how_many_attempts(pool: PgPool) {
    let running = Running::start(&pool, vec![Arc::new(Flaky::default()) as Arc<dyn Agent>], "[agents.flaky]\ncron = \"0 0 1 1 *\"\nretries = 1\nretry_backoff = \"50ms\"\nparams = { fail_times = 10 }\n").await;
    let engine = &running.engine;
    engine.trigger("flaky").unwrap();
    wait_for("the run", Duration::from_secs(10), || async {
        runs_of(&pool, "flaky").await >= 1
    })
    .await;
    engine.shutdown(Duration::from_secs(5)).await;

    assert_eq!(
        outcomes(&pool, "flaky").await,
        [(
            "failed".to_owned(),
            Some("after 2 attempts: attempt 2 failed".to_owned())
        )]
    );
}

#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn replace_cancels_the_running_run_for_the_new_one(pool: PgPool) {
    let running = Running::start(&pool, vec![Arc::new(Slow::default()) as Arc<dyn Agent>], "[agents.slow]\ncron = \"* * * * * *\"\nconcurrency_policy = \"replace\"\nparams = { secs = 60 }\n").await;
    let engine = &running.engine;
    wait_for("a replaced run", Duration::from_secs(10), || async {
        runs_of(&pool, "slow").await >= 1
    })
    .await;
    engine.shutdown(Duration::from_millis(200)).await;

    let (status, error) = &outcomes(&pool, "slow").await[0];
    assert_eq!(status, "failed");
    assert_eq!(
        error.as_deref(),
        Some("cancelled: replaced by a newer run (concurrency_policy = replace)")
    );
}

/// A run cancelled while it waits for a place (`MAX_CONCURRENT_RUNS`) never claimed
/// its slot: it delivers nothing under the slot's key. (Before, its `cancelled` report
/// completed the row another replica holds for that slot, running, as failed.)
#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn a_run_cancelled_before_its_claim_reports_nothing_under_its_slot(pool: PgPool) {
    let collector = Collector::start(&pool, None).await;
    // Another replica holds the slots of `waits` for the next twenty seconds.
    let now = chrono::Utc::now();
    let client = crate::helpers::http();
    for second in 1..=20 {
        let slot = chrono::DurationRound::duration_trunc(
            now + chrono::TimeDelta::seconds(second),
            chrono::TimeDelta::seconds(1),
        )
        .unwrap();
        let answer = client
            .post(format!("{}/runs", collector.url()))
            .bearer_auth(&collector.token)
            .json(&serde_json::json!({
                "agent_name": "waits",
                "run_key": scheduler::engine::run_key_of("waits", slot),
                "started_at": now.to_rfc3339(),
                "scheduled_for": slot.to_rfc3339(),
                "trigger": "schedule",
                "claimant": "the-other-replica",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201);
    }
    // Here, one place, taken by `holds` for a minute: every run of `waits` waits for it.
    let registry =
        Registry::from_agents(vec![Arc::new(Slow::default()) as Arc<dyn Agent>]).unwrap();
    let jobs = schedule::parse(
        "test.toml",
        Some(
            "[agents.holds]\nagent = \"slow\"\ncron = \"* * * * * *\"\nparams = { secs = 60 }\n\
             [agents.waits]\nagent = \"slow\"\ncron = \"* * * * * *\"\nconcurrency_policy = \"allow\"\nparams = { secs = 0.1 }\n",
        ),
        &registry,
    )
    .unwrap();
    let spool = tempfile::tempdir().unwrap();
    let client = CollectorClient::new(&collector.url(), Some(collector.token.clone())).unwrap();
    let engine = Engine::with_claims(
        jobs,
        Deliverer::new(client, Spool::open(spool.path()).unwrap()),
        1,
        scheduler::engine::Claims {
            high_availability: true,
            ..Default::default()
        },
    );
    engine.start().await.unwrap();
    wait_for(
        "runs of `waits` waiting",
        Duration::from_secs(10),
        || async {
            engine
                .statuses()
                .iter()
                .any(|s| s.job == "waits" && s.running >= 2)
        },
    )
    .await;
    engine.shutdown(Duration::from_millis(300)).await;

    let theirs: Vec<(String, Option<String>)> =
        sqlx::query_as("select status, error_message from agent_runs where agent_name = 'waits'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(theirs.len(), 20, "{theirs:?}");
    assert!(
        theirs.iter().all(|(status, _)| status == "running"),
        "the other replica's runs were completed from here: {theirs:?}"
    );
    // Nor refused and kept: nothing was sent under those keys at all.
    let rejected = std::fs::read_dir(spool.path().join("rejected"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(rejected, 0, "reports of runs that never ran were sent");
}

#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn max_concurrent_runs_holds_across_jobs(pool: PgPool) {
    let slow = Slow::default();
    let max_overlap = slow.max_overlap.clone();
    // Three jobs of one agent, overlapping allowed, one run at a time in all.
    let running = Running::start_with(
        &pool,
        vec![Arc::new(slow) as Arc<dyn Agent>],
        "[agents.a]\nagent = \"slow\"\ncron = \"* * * * * *\"\nconcurrency_policy = \"allow\"\nparams = { secs = 0.4 }\n\
         [agents.b]\nagent = \"slow\"\ncron = \"* * * * * *\"\nconcurrency_policy = \"allow\"\nparams = { secs = 0.4 }\n\
         [agents.c]\nagent = \"slow\"\ncron = \"* * * * * *\"\nconcurrency_policy = \"allow\"\nparams = { secs = 0.4 }\n",
        1,
        tempfile::tempdir().unwrap(),
    )
    .await;
    let engine = &running.engine;
    wait_for("runs of each job", Duration::from_secs(15), || async {
        runs_of(&pool, "a").await >= 1
            && runs_of(&pool, "b").await >= 1
            && runs_of(&pool, "c").await >= 1
    })
    .await;
    engine.shutdown(Duration::from_secs(5)).await;

    assert_eq!(
        max_overlap.load(Ordering::SeqCst),
        1,
        "MAX_CONCURRENT_RUNS = 1"
    );
}

#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn misfires_after_downtime_run_once_or_are_skipped(pool: PgPool) {
    let dir = tempfile::tempdir().unwrap();
    // Daily jobs whose last recorded fire was three days ago: the scheduler was down since.
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let three_days_ago = (chrono::Utc::now() - chrono::TimeDelta::days(3))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    std::fs::write(
        state.join("last-fires.json"),
        serde_json::json!({ "catch_up": three_days_ago, "skipper": three_days_ago }).to_string(),
    )
    .unwrap();
    let running = Running::start_with(
        &pool,
        vec![Arc::new(Slow::default()) as Arc<dyn Agent>],
        "[agents.catch_up]\nagent = \"slow\"\ncron = \"0 0 * * *\"\nparams = { secs = 0.01 }\n\
         [agents.skipper]\nagent = \"slow\"\ncron = \"0 0 * * *\"\nmisfire_policy = \"skip\"\nparams = { secs = 0.01 }\n",
        4,
        dir,
    )
    .await;
    let engine = &running.engine;
    wait_for("the catch-up run", Duration::from_secs(10), || async {
        runs_of(&pool, "catch_up").await >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    engine.shutdown(Duration::from_secs(5)).await;

    let slots: Vec<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("select scheduled_for from agent_runs where agent_name = 'catch_up'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let today = chrono::Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    assert_eq!(slots, [today], "once, for the latest missed slot");
    assert_eq!(
        runs_of(&pool, "skipper").await,
        0,
        "misfire_policy = skip waits for the next tick"
    );
    let saved: std::collections::HashMap<String, chrono::DateTime<chrono::Utc>> =
        serde_json::from_slice(&std::fs::read(state.join("last-fires.json")).unwrap()).unwrap();
    assert_eq!(saved["catch_up"], today, "the stop records the last fires");
    assert_eq!(
        saved["skipper"], today,
        "a skipped misfire counts as handled"
    );
}

#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn a_timed_out_run_is_retried_unless_the_job_says_not_to(pool: PgPool) {
    let running = Running::start(
        &pool,
        vec![Arc::new(Slow::default()) as Arc<dyn Agent>],
        "[agents.retried]\nagent = \"slow\"\ncron = \"0 0 1 1 *\"\ntimeout = \"200ms\"\nretries = 2\nretry_backoff = \"10ms\"\nparams = { secs = 30 }\n\
         [agents.once]\nagent = \"slow\"\ncron = \"0 0 1 1 *\"\ntimeout = \"200ms\"\nretries = 2\nretry_backoff = \"10ms\"\nretry_on_timeout = false\nparams = { secs = 30 }\n",
    )
    .await;
    let engine = &running.engine;
    engine.trigger("retried").unwrap();
    engine.trigger("once").unwrap();
    wait_for("both runs", Duration::from_secs(20), || async {
        runs_of(&pool, "retried").await >= 1 && runs_of(&pool, "once").await >= 1
    })
    .await;
    engine.shutdown(Duration::from_secs(5)).await;

    assert_eq!(
        outcomes(&pool, "retried").await,
        [(
            "failed".to_owned(),
            Some("after 3 attempts: timed out after 200ms".to_owned())
        )]
    );
    assert_eq!(
        outcomes(&pool, "once").await,
        [(
            "failed".to_owned(),
            Some("timed out after 200ms".to_owned())
        )]
    );
}

/// Sleeps until the wall clock's fraction of a second is about `fraction`.
async fn at_fraction(fraction: f64) {
    let now = chrono::Utc::now();
    let current = f64::from(now.timestamp_subsec_micros()) / 1e6;
    let wait = (fraction - current).rem_euclid(1.0);
    tokio::time::sleep(Duration::from_secs_f64(wait)).await;
}

#[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
async fn slots_are_the_crons_instants_and_two_engines_agree_on_their_run_keys(pool: PgPool) {
    let toml = "[agents.tick]\nagent = \"slow\"\ncron = \"* * * * * *\"\nconcurrency_policy = \"allow\"\nparams = { secs = 0.01 }\n";
    let agents = || vec![Arc::new(Slow::default()) as Arc<dyn Agent>];
    // Two processes started at different fractions of a second, both firing the same job.
    at_fraction(0.47).await;
    let first = Running::start(&pool, agents(), toml).await;
    at_fraction(0.81).await;
    let second = Running::start(&pool, agents(), toml).await;
    tokio::time::sleep(Duration::from_millis(3300)).await;
    first.engine.shutdown(Duration::from_secs(5)).await;
    second.engine.shutdown(Duration::from_secs(5)).await;

    let runs: Vec<(uuid::Uuid, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("select run_key, scheduled_for from agent_runs order by scheduled_for")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(runs.len() >= 3, "{runs:?}");
    for (run_key, slot) in &runs {
        assert_eq!(slot.timestamp_subsec_nanos(), 0, "{slot} is a whole second");
        assert_eq!(*run_key, scheduler::engine::run_key_of("tick", *slot));
    }
    let mut seconds: Vec<i64> = runs.iter().map(|(_, slot)| slot.timestamp()).collect();
    seconds.dedup();
    assert_eq!(
        seconds.len(),
        runs.len(),
        "both engines fired each slot, stored once: {runs:?}"
    );
}
