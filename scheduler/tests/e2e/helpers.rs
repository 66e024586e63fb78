//! A collector to deliver to, a scheduler process to run, and queries on what was stored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use collector::auth::SecretKey;
use collector::auth::{Scope, TokenKeys};
use collector::config::HttpConfig;
use collector::ingest::DEFAULT_WRITERS;
use collector::startup::{Application, Services};
use collector::store::Store;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, PgPool, SqlitePool};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

const SECRET: &str = "scheduler-e2e-secret-scheduler-e2e-secret";

/// Runs each named test, an `async fn(Db)`, on a fresh PostgreSQL database and on a fresh
/// SQLite file, both migrated: the collector the schedulers claim through runs on either.
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

/// The collector's database, on either backend.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl From<&PgPool> for Db {
    fn from(pool: &PgPool) -> Self {
        Self::Postgres(pool.clone())
    }
}

impl Db {
    pub(crate) fn store(&self) -> Store {
        match self {
            Self::Postgres(pool) => Store::from(pool.clone()),
            Self::Sqlite(pool) => Store::from(pool.clone()),
        }
    }

    /// Every row `sql` returns: SQL both backends take (`cast(x as text)`, literals).
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
        assert_eq!(rows.len(), 1, "{sql}");
        rows.remove(0)
    }
}

/// A collector serving `pool` on `addr` until dropped.
pub(crate) struct Collector {
    pub(crate) addr: SocketAddr,
    pub(crate) token: String,
    /// Signs the tests' other tokens (an operator's).
    pub(crate) keys: TokenKeys,
    _stop: oneshot::Sender<()>,
    stopped: oneshot::Receiver<()>,
}

impl Collector {
    /// On a free port, or on `addr` (to come back where clients expect it).
    pub(crate) async fn start(db: impl Into<Db>, addr: Option<SocketAddr>) -> Self {
        Self::start_with_secret(db, addr, SECRET).await
    }

    /// Signing and checking tokens with `secret` (a rotated one, say).
    pub(crate) async fn start_with_secret(
        db: impl Into<Db>,
        addr: Option<SocketAddr>,
        secret: &str,
    ) -> Self {
        let keys = TokenKeys::new(&SecretKey::parse(secret.into()).unwrap());
        let services = Services {
            store: db.into().store(),
            tokens: keys.clone(),
            writers: DEFAULT_WRITERS,
            watch: collector::watch::WatchRules::default(),
            alerts: None,
            retention: collector::store::Retention::default(),
        };
        let addr = addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
        let app = Application::bind(addr, services, &HttpConfig::default())
            .await
            .unwrap();
        let addr = app.local_addr().unwrap();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let (done, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = app
                .run_until(async move {
                    let _ = stop_rx.await;
                })
                .await;
            let _ = done.send(());
        });
        let token = keys
            .issue(
                "scheduler",
                &[Scope::Ingest],
                None,
                Duration::from_secs(3600),
            )
            .unwrap();
        Self {
            addr,
            token,
            keys,
            _stop: stop,
            stopped,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An operator's token (scopes operate and read, subject `alice`).
    pub(crate) fn operator_token(&self) -> String {
        self.keys
            .issue(
                "alice",
                &[Scope::Operate, Scope::Read],
                None,
                Duration::from_secs(3600),
            )
            .unwrap()
    }

    /// POSTs `body` to `path` with an operator's token: the status and the JSON answer.
    pub(crate) async fn operate(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let answer = http()
            .post(format!("{}{path}", self.url()))
            .bearer_auth(self.operator_token())
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let text = answer.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or_default())
    }

    /// Stops serving and waits until the port is closed.
    pub(crate) async fn stop(self) {
        let Self { _stop, stopped, .. } = self;
        drop(_stop);
        let _ = stopped.await;
    }
}

/// An HTTP client for the tests (reqwest needs rustls's provider installed first).
pub(crate) fn http() -> reqwest::Client {
    agent_sdk::client::install_crypto_provider();
    reqwest::Client::new()
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scheduler process with its own spool and schedule file.
pub(crate) struct SchedulerProcess {
    pub(crate) child: Child,
    pub(crate) status_url: String,
}

pub(crate) fn write_schedule(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("schedules.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

impl SchedulerProcess {
    pub(crate) async fn start(
        collector_url: &str,
        token: &str,
        schedule: &Path,
        spool: &Path,
    ) -> Self {
        Self::start_with_args(collector_url, token, schedule, spool, &[]).await
    }

    pub(crate) async fn start_with_args(
        collector_url: &str,
        token: &str,
        schedule: &Path,
        spool: &Path,
        args: &[&str],
    ) -> Self {
        Self::start_with_env(
            collector_url,
            &[("COLLECTOR_TOKEN", token)],
            schedule,
            spool,
            args,
        )
        .await
    }

    /// With `env` (the token's variable, at least) over the test's settings.
    pub(crate) async fn start_with_env(
        collector_url: &str,
        env: &[(&str, &str)],
        schedule: &Path,
        spool: &Path,
        args: &[&str],
    ) -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_scheduler"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("COLLECTOR_URL", collector_url)
            .env("SCHEDULES_FILE", schedule)
            .env("SPOOL_DIR", spool)
            .env("SCHEDULER_ADDR", format!("127.0.0.1:{port}"))
            .env("SCHEDULER_TRIGGER_TOKEN", "trigger-secret")
            .env("SHUTDOWN_GRACE", "5s")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            // The caller's last: they may override the test's settings.
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut process = Self {
            child,
            status_url: format!("http://127.0.0.1:{port}"),
        };
        let client = http();
        let deadline = Instant::now() + Duration::from_secs(20);
        while client
            .get(format!("{}/health", process.status_url))
            .send()
            .await
            .is_err()
        {
            if let Ok(Some(status)) = process.child.try_wait() {
                let (_, logs) = process.terminate().await;
                panic!("the scheduler exited at start ({status}):\n{logs}");
            }
            assert!(
                Instant::now() < deadline,
                "the scheduler's status server did not come up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        process
    }

    /// `POST /jobs/{job}/run`, with the trigger token when `authorised`.
    pub(crate) async fn trigger(&self, job: &str, authorised: bool) -> reqwest::Response {
        let request = http().post(format!("{}/jobs/{job}/run", self.status_url));
        let request = if authorised {
            request.bearer_auth("trigger-secret")
        } else {
            request
        };
        request.send().await.unwrap()
    }

    /// `GET /health`.
    pub(crate) async fn health(&self) -> reqwest::Response {
        http()
            .get(format!("{}/health", self.status_url))
            .send()
            .await
            .unwrap()
    }

    /// The text of a GET on the status server.
    pub(crate) async fn get_text(&self, path: &str) -> String {
        http()
            .get(format!("{}{path}", self.status_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Whether `/jobs` shows `job`'s last run as succeeded.
    pub(crate) async fn last_run_succeeded(&self, job: &str) -> bool {
        let jobs: serde_json::Value = serde_json::from_str(&self.get_text("/jobs").await).unwrap();
        jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["job"] == job && j["last_run"]["status"] == "success")
    }

    /// SIGTERM, then the exit status and everything it logged.
    pub(crate) async fn terminate(self) -> (std::process::ExitStatus, String) {
        if let Some(pid) = self.child.id() {
            Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await
                .unwrap();
        }
        let output = tokio::time::timeout(Duration::from_secs(30), self.child.wait_with_output())
            .await
            .expect("the scheduler stops within 30 s of SIGTERM")
            .unwrap();
        (
            output.status,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

/// A collector on `pool` and a scheduler process running `schedule` against it, with a spool
/// in a temporary folder.
pub(crate) struct Platform {
    /// Serves until the platform is dropped.
    _collector: Collector,
    pub(crate) scheduler: SchedulerProcess,
    pub(crate) spool: PathBuf,
    _dir: tempfile::TempDir,
}

impl Platform {
    pub(crate) async fn start(db: impl Into<Db>, schedule: &str) -> Self {
        let collector = Collector::start(db, None).await;
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let schedule = write_schedule(dir.path(), schedule);
        let scheduler =
            SchedulerProcess::start(&collector.url(), &collector.token, &schedule, &spool).await;
        Self {
            _collector: collector,
            scheduler,
            spool,
            _dir: dir,
        }
    }
}

/// Polls `check` every 100 ms until it holds; fails the test after `limit`.
pub(crate) async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The agent's finished runs (a run announced by `POST /runs` is a `running` row before).
pub(crate) async fn runs_of(db: impl Into<Db>, agent: &str) -> i64 {
    let (count,): (i64,) = db
        .into()
        .row(&format!(
            "select count(*) from agent_runs where agent_name = '{agent}' and status <> 'running'"
        ))
        .await;
    count
}

/// (status, error_message) of an agent's runs, oldest first.
pub(crate) async fn outcomes(db: impl Into<Db>, agent: &str) -> Vec<(String, Option<String>)> {
    db.into()
        .rows(&format!(
            "select status, error_message from agent_runs where agent_name = '{agent}' order by started_at"
        ))
        .await
}

pub(crate) fn spool_files(spool: &Path) -> usize {
    std::fs::read_dir(spool)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0)
}
