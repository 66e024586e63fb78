//! Starting a collector for a test, and the requests and queries tests share.
//!
//! Most tests are `async fn name(db: Db)` and run on both backends: each file lists them in
//! [`on_both_backends!`]. Tests of what only PostgreSQL has take a `PgPool` and say so.

use std::net::SocketAddr;
use std::sync::Once;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use collector::auth::SecretKey;
use collector::auth::{Scope, TokenKeys};
use collector::config::{HttpConfig, LogFormat};
use collector::domain::AgentPattern;
use collector::ingest::DEFAULT_WRITERS;
use collector::startup::{Application, Services};
use collector::store::Store;
use collector::watch::{WATCH_LOCK, WatchRules, Watched, Watcher};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, PgPool, SqlitePool};
use tokio::sync::oneshot;
use uuid::Uuid;

pub(crate) const SECRET: &str = "test-secret-test-secret-test-secret-0123456789";

/// Runs each named test, an `async fn(Db)`, twice: on a fresh PostgreSQL database and on a
/// fresh SQLite file, both migrated (`sqlx::test`). A test left out of the list is dead code,
/// which the lints refuse.
macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {
        mod on_postgres {
            $(
                #[sqlx::test(migrator = "collector::store::POSTGRES_MIGRATOR")]
                async fn $test(pool: sqlx::PgPool) {
                    super::$test(crate::helpers::Db::Postgres(pool)).await;
                }
            )+
        }
        mod on_sqlite {
            $(
                #[sqlx::test(migrator = "collector::store::SQLITE_MIGRATOR")]
                async fn $test(pool: sqlx::SqlitePool) {
                    super::$test(crate::helpers::Db::Sqlite(pool)).await;
                }
            )+
        }
    };
}
pub(crate) use on_both_backends;

/// A test's own database, on either backend.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Db {
    pub(crate) fn store(&self) -> Store {
        match self {
            Self::Postgres(pool) => Store::from(pool.clone()),
            Self::Sqlite(pool) => Store::from(pool.clone()),
        }
    }

    /// Every row `sql` returns. The SQL must be valid on both backends: `cast(x as text)`,
    /// not `x::text`; literals, not bound parameters.
    pub(crate) async fn rows<T>(&self, sql: &str) -> Vec<T>
    where
        T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
    {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Self::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await,
            Self::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await,
        }
        .unwrap()
    }

    /// The one row `sql` returns.
    pub(crate) async fn row<T>(&self, sql: &str) -> T
    where
        T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
    {
        let mut rows = self.rows(sql).await;
        assert_eq!(rows.len(), 1, "one row expected from {sql}");
        rows.remove(0)
    }

    /// The one value `sql` returns.
    pub(crate) async fn scalar<T>(&self, sql: &str) -> T
    where
        (T,): for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
    {
        self.row::<(T,)>(sql).await.0
    }

    /// Runs statements that return nothing (setup, sabotage).
    pub(crate) async fn execute(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Self::Postgres(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
            Self::Sqlite(pool) => sqlx::raw_sql(sql).execute(pool).await.map(drop),
        }
        .unwrap();
    }

    /// Runs `sql` as a watcher's pass would, one pass at a time: on PostgreSQL in one
    /// transaction holding the watcher's lock (waiting out a pass of the server's own), so that
    /// no pass reads half of it; on SQLite every pass holds the one write lock already.
    pub(crate) async fn execute_as_the_watcher(&self, sql: &str) {
        match self {
            Self::Postgres(_) => {
                self.execute(&format!(
                    "select pg_advisory_xact_lock({WATCH_LOCK}); {sql}"
                ))
                .await
            }
            Self::Sqlite(_) => self.execute(sql).await,
        }
    }

    /// A rule only the database knows: it refuses every run of `agent` (raising `poisoned`).
    pub(crate) async fn refuse_runs_of(&self, agent: &str) {
        self.execute(&match self {
            Self::Postgres(_) => format!(
                "create function refuse_poison() returns trigger language plpgsql as $$
                 begin if new.agent_name = '{agent}' then raise exception 'poisoned'; end if; return new; end $$;
                 create trigger refuse_poison before insert on agent_runs for each row execute function refuse_poison();"
            ),
            Self::Sqlite(_) => format!(
                "create trigger refuse_poison before insert on agent_runs
                 when new.agent_name = '{agent}' begin select raise(abort, 'poisoned'); end;"
            ),
        })
        .await;
    }
}

pub(crate) struct TestApp {
    pub(crate) addr: SocketAddr,
    pub(crate) client: reqwest::Client,
    pub(crate) db: Db,
    pub(crate) keys: TokenKeys,
    /// Ingest + read, every agent.
    pub(crate) token: String,
    _shutdown: oneshot::Sender<()>,
}

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            agent_sdk::telemetry::init_logging(LogFormat::Text, collector::config::LOG_FILTER);
        }
    });
}

impl TestApp {
    pub(crate) async fn spawn(db: Db) -> Self {
        Self::spawn_with(db, HttpConfig::default()).await
    }

    pub(crate) async fn spawn_with(db: Db, http: HttpConfig) -> Self {
        Self::spawn_on_store(db.store(), db, http).await
    }

    /// A collector whose store is `store` (tests point it at a proxy they can cut), while the
    /// test itself inspects the database through `db`.
    pub(crate) async fn spawn_on_store(store: Store, db: Db, http: HttpConfig) -> Self {
        Self::spawn_full(store, db, http, WatchRules::default(), None).await
    }

    /// A collector whose watcher follows `rules`.
    pub(crate) async fn spawn_watching(db: Db, rules: WatchRules) -> Self {
        Self::spawn_full(db.store(), db, HttpConfig::default(), rules, None).await
    }

    /// A collector whose watcher follows `rules` and sends its incidents by `alerts`.
    pub(crate) async fn spawn_alerting(
        db: Db,
        rules: WatchRules,
        alerts: collector::watch::Alerts,
    ) -> Self {
        Self::spawn_full(db.store(), db, HttpConfig::default(), rules, Some(alerts)).await
    }

    async fn spawn_full(
        store: Store,
        db: Db,
        http: HttpConfig,
        rules: WatchRules,
        alerts: Option<collector::watch::Alerts>,
    ) -> Self {
        init_logs();
        let keys = TokenKeys::new(&SecretKey::parse(SECRET.into()).unwrap());
        let services = Services {
            store,
            tokens: keys.clone(),
            writers: DEFAULT_WRITERS,
            watch: rules,
            alerts,
            retention: collector::store::Retention::default(),
        };
        let app = Application::bind("127.0.0.1:0".parse().unwrap(), services, &http)
            .await
            .unwrap();
        let addr = app.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        let token = keys
            .issue(
                "test",
                &[Scope::Ingest, Scope::Read],
                None,
                Duration::from_secs(600),
            )
            .unwrap();
        Self {
            addr,
            client: http_client(),
            db,
            keys,
            token,
            _shutdown: tx,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn token_for(&self, scopes: &[Scope], agents: Option<&[&str]>) -> String {
        let patterns: Option<Vec<AgentPattern>> =
            agents.map(|list| list.iter().map(|p| p.parse().unwrap()).collect());
        self.keys
            .issue(
                "test",
                scopes,
                patterns.as_deref(),
                Duration::from_secs(600),
            )
            .unwrap()
    }

    /// POSTs `body` as JSON to /metrics with the all-powerful token.
    pub(crate) async fn post_report(&self, body: &Value) -> (StatusCode, Value) {
        self.post_raw(&body.to_string(), "application/json", Some(&self.token))
            .await
    }

    /// POSTs `body` as JSON to /runs (a run's start) with the all-powerful token.
    pub(crate) async fn post_start(&self, body: &Value) -> (StatusCode, Value) {
        self.post_raw_to(
            "/runs",
            &body.to_string(),
            "application/json",
            Some(&self.token),
        )
        .await
    }

    pub(crate) async fn post_raw(
        &self,
        body: &str,
        content_type: &str,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        self.post_raw_to("/metrics", body, content_type, token)
            .await
    }

    /// POSTs `{"reports": reports}` to /metrics/batch with the all-powerful token.
    pub(crate) async fn post_batch(&self, reports: Vec<Value>) -> (StatusCode, Value) {
        let body = json!({ "reports": reports }).to_string();
        self.post_raw_to(
            "/metrics/batch",
            &body,
            "application/json",
            Some(&self.token),
        )
        .await
    }

    pub(crate) async fn post_raw_to(
        &self,
        path: &str,
        body: &str,
        content_type: &str,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body.to_owned());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        into_json(request.send().await.unwrap()).await
    }

    /// `PUT /expectations/scheduler` `{"jobs": jobs}` with the all-powerful token, as a
    /// scheduler publishes its schedule.
    pub(crate) async fn publish_jobs(&self, jobs: Value) -> (StatusCode, Value) {
        let request = self
            .client
            .put(self.url("/expectations/scheduler"))
            .bearer_auth(&self.token)
            .json(&json!({ "jobs": jobs }));
        into_json(request.send().await.unwrap()).await
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.get_with(path, Some(&self.token)).await
    }

    pub(crate) async fn get_with(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        into_json(request.send().await.unwrap()).await
    }

    /// A watcher pass at `now` with the default rules.
    pub(crate) async fn watch_at(&self, now: DateTime<Utc>) -> Watched {
        self.watch_with(now, WatchRules::default()).await
    }

    /// A pass as another process would run it (the server's own passes run beside it, at the
    /// real time: on PostgreSQL, wait for the lock they may hold).
    pub(crate) async fn watch_with(&self, now: DateTime<Utc>, rules: WatchRules) -> Watched {
        for _ in 0..100 {
            if let Some(watched) = Watcher::new(self.db.store(), rules)
                .pass(now)
                .await
                .unwrap()
            {
                return watched;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the watcher's lock stayed taken for two seconds");
    }

    /// A report of `agent` that started at `started_at` and took a second (`error`: failed).
    pub(crate) async fn push(&self, agent: &str, started_at: DateTime<Utc>, error: Option<&str>) {
        self.push_lasting(agent, started_at, TimeDelta::seconds(1), error)
            .await;
    }

    pub(crate) async fn push_lasting(
        &self,
        agent: &str,
        started_at: DateTime<Utc>,
        took: TimeDelta,
        error: Option<&str>,
    ) {
        let (status, body) = self
            .post_report(&json!({
                "agent_name": agent,
                "run_key": Uuid::new_v4(),
                "started_at": started_at.to_rfc3339(),
                "finished_at": (started_at + took).to_rfc3339(),
                "error": error,
            }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    /// Asserts that `agents` holds, for each agent with a daily summary, what its summaries
    /// say: the latest day's last run and status, the latest success of any day.
    pub(crate) async fn assert_agents_agree_with_summaries(&self) {
        type Latest = (String, DateTime<Utc>, String, Option<DateTime<Utc>>);
        let stored: Vec<Latest> = self
            .db
            .rows(
                "select agent_name, last_run_at, last_status, last_success_at \
                 from agents order by agent_name",
            )
            .await;
        let derived: Vec<Latest> = self
            .db
            .rows(
                "select s.agent_name, s.last_run_at, s.last_status, \
                        (select max(x.last_success_at) from agent_daily_summaries x \
                         where x.agent_name = s.agent_name) \
                 from agent_daily_summaries s \
                 where s.day = (select max(y.day) from agent_daily_summaries y \
                                where y.agent_name = s.agent_name) \
                 order by s.agent_name",
            )
            .await;
        assert_eq!(stored, derived, "agents against the daily summaries");
    }

    /// Rows in each table the write path touches: (runs, metrics, summaries, metric summaries).
    pub(crate) async fn row_counts(&self) -> (i64, i64, i64, i64) {
        self.db
            .row(
                "select (select count(*) from agent_runs), (select count(*) from agent_metrics),
                        (select count(*) from agent_daily_summaries),
                        (select count(*) from agent_metric_daily_summaries)",
            )
            .await
    }
}

/// An HTTP client. reqwest is built with rustls and no bundled crypto provider: install ring's
/// first, once per process.
pub(crate) fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

pub(crate) async fn into_json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    (status, body)
}

/// The field named by the first entry of an error body's details.
pub(crate) fn error_field(body: &Value) -> &str {
    body["error"]["details"]["fields"][0]["field"]
        .as_str()
        .unwrap_or_default()
}

/// Every field named by an error body's details.
pub(crate) fn error_fields(body: &Value) -> Vec<String> {
    body["error"]["details"]["fields"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .filter_map(|f| f["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// A valid report for `agent` that started at `started_at` and ran `seconds`.
pub(crate) fn report_at(agent: &str, started_at: DateTime<Utc>, seconds: i64) -> Value {
    json!({
        "agent_name": agent,
        "metrics": {"items": 42, "ratio": 0.1, "status": "ok"},
        "started_at": started_at.to_rfc3339(),
        "finished_at": (started_at + chrono::TimeDelta::seconds(seconds)).to_rfc3339(),
        "error": null,
    })
}

/// A valid report that finished a minute ago.
pub(crate) fn report(agent: &str) -> Value {
    report_at(agent, Utc::now() - chrono::TimeDelta::seconds(60), 5)
}

/// The database URL of the test's own database (for child processes).
pub(crate) async fn database_url(pool: &PgPool) -> String {
    let name: String = sqlx::query_scalar("select current_database()")
        .fetch_one(pool)
        .await
        .unwrap();
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for sqlx::test");
    let (prefix, rest) = base.rsplit_once('/').unwrap();
    let query = rest
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    format!("{prefix}/{name}{query}")
}
