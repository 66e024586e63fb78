//! All SQL lives here: the ingest write, the reads, migrations and the read-only role.
//!
//! Two backends: PostgreSQL (production, the dashboard's database) and SQLite (the embedded
//! default: one file, no server). Queries built from filters use sea-query and are rendered for
//! whichever backend the store runs on; the ingest write has one module per backend
//! (`write/postgres.rs`, `write/sqlite.rs`, same signature), because PostgreSQL's form relies
//! on arrays and data-modifying CTEs. Every method answers [`StoreError`].

mod alerts;
mod console;
mod error;
mod expect;
mod memo;
mod readonly;
mod reads;
mod retention;
mod schema;
mod tx;
mod watch;
mod write;

use std::str::FromStr;
use std::time::Duration;

use sea_query::{PostgresQueryBuilder, SqliteQueryBuilder};
use sea_query_sqlx::SqlxBinder;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, FromRow, PgPool, SqlitePool};

pub use alerts::{ALERT_LOCK, AttemptOutcome, DueAlert, SessionLock};
pub use console::MetricDay;
pub use error::StoreError;
pub use readonly::grant_readonly;
pub use reads::{AgentAccess, MetricFilter, RunDay, RunFilter, SummaryFilter};
pub use retention::{PRUNE_BATCH, Pruned, Retention};
pub use watch::{SLOTS_PER_PASS_IN_ALL, WATCH_LOCK, WatchRules, Watched};
pub use write::{HeldConnection, OVERDUE_LOCK, Started, Stored};

/// The PostgreSQL schema, embedded in the binary: `serve` and `migrate` need no files at run time.
pub static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

/// The same schema for the embedded SQLite backend.
pub static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("../migrations/sqlite");

/// A statement running longer than this is cancelled, so a stuck query cannot hold a
/// connection (and a client) forever.
const STATEMENT_TIMEOUT: &str = "15s";

/// How long a SQLite writer waits for another to finish before giving up (then: 503, retry).
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// The backend a `DATABASE_URL` names: `postgres://`/`postgresql://` or `sqlite:`.
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone)]
enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// How many connections a store may open, and how long a caller waits for one.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before it is answered 503.
    pub acquire_timeout: Duration,
}

/// The collector's access to its database. Clones share the pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    crons: expect::Crons,
    judged: watch::JudgedSummaries,
}

impl From<PgPool> for Store {
    fn from(pool: PgPool) -> Self {
        Self {
            pool: Pool::Postgres(pool),
            crons: expect::Crons::default(),
            judged: watch::JudgedSummaries::default(),
        }
    }
}

impl From<SqlitePool> for Store {
    fn from(pool: SqlitePool) -> Self {
        Self {
            pool: Pool::Sqlite(pool),
            crons: expect::Crons::default(),
            judged: watch::JudgedSummaries::default(),
        }
    }
}

/// A pooled PostgreSQL connection idle this long is pinged before it is used.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

impl Store {
    /// A pool that connects on first use, so the service can start while the database is down.
    /// A SQLite file (and its directory) is created if missing.
    pub fn connect_lazy(url: &str, settings: PoolSettings) -> Result<Self, sqlx::Error> {
        match Backend::of_url(url) {
            Some(Backend::Sqlite) => Self::connect_sqlite(url, settings),
            // Anything else is PostgreSQL's to refuse, with its own message.
            _ => Self::connect_postgres(url, settings),
        }
    }

    fn connect_postgres(url: &str, settings: PoolSettings) -> Result<Self, sqlx::Error> {
        let options = PgConnectOptions::from_str(url)?
            .application_name("collector")
            .options([
                ("timezone", "UTC"),
                ("statement_timeout", STATEMENT_TIMEOUT),
            ]);
        let pool = PgPoolOptions::new()
            // sqlx pings every connection it hands out; that is a second round trip for each
            // batch of the ingest path (docs/performance.md). Only a connection idle for a while
            // (a PostgreSQL restart leaves idle connections dead) is pinged before use.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_WHEN_IDLE_FOR {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_lazy_with(options);
        Ok(pool.into())
    }

    fn connect_sqlite(url: &str, settings: PoolSettings) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            // Readers never block the writer nor each other; FULL keeps a committed run
            // through a power cut, as PostgreSQL does.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .foreign_keys(true);
        let file = options.get_filename();
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_lazy_with(options);
        Ok(pool.into())
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Postgres(_) => Backend::Postgres,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// The PostgreSQL pool, for what only PostgreSQL has (roles and grants).
    pub fn postgres(&self) -> Option<&PgPool> {
        match &self.pool {
            Pool::Postgres(pool) => Some(pool),
            Pool::Sqlite(_) => None,
        }
    }

    /// The migrations of this store's backend.
    pub fn migrator(&self) -> &'static Migrator {
        match self.backend() {
            Backend::Postgres => &POSTGRES_MIGRATOR,
            Backend::Sqlite => &SQLITE_MIGRATOR,
        }
    }

    /// Applies pending migrations. Safe when several replicas start at once: sqlx holds a
    /// PostgreSQL advisory lock (SQLite: the database lock) while it migrates.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let applied = match &self.pool {
            Pool::Postgres(pool) => POSTGRES_MIGRATOR.run(pool).await,
            Pool::Sqlite(pool) => SQLITE_MIGRATOR.run(pool).await,
        };
        applied.map_err(|err| match err {
            MigrateError::Execute(err) => err.into(),
            other => StoreError::internal("applying the migrations", other),
        })
    }

    /// Ready means: the database answers, and every migration this binary knows is applied.
    pub async fn check_ready(&self) -> Result<(), NotReady> {
        const APPLIED: &str = "select max(version) from _sqlx_migrations where success";
        let latest_known = self.migrator().iter().map(|m| m.version).max().unwrap_or(0);
        let applied: Result<Option<i64>, sqlx::Error> = match &self.pool {
            Pool::Postgres(pool) => sqlx::query_scalar(APPLIED).fetch_one(pool).await,
            Pool::Sqlite(pool) => sqlx::query_scalar(APPLIED).fetch_one(pool).await,
        };
        let applied = applied.map_err(|e| {
            if is_missing_table(&e) {
                NotReady::NotMigrated {
                    applied: None,
                    expected: latest_known,
                }
            } else {
                NotReady::Unreachable(e.into())
            }
        })?;
        if applied.unwrap_or(0) < latest_known {
            return Err(NotReady::NotMigrated {
                applied,
                expected: latest_known,
            });
        }
        Ok(())
    }

    /// Pool figures for `/prometheus`: (open connections, idle connections, maximum).
    pub fn pool_usage(&self) -> (u32, usize, u32) {
        match &self.pool {
            Pool::Postgres(pool) => (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            ),
            Pool::Sqlite(pool) => (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            ),
        }
    }

    /// Runs a sea-query statement (a SELECT, or a write with RETURNING), rendered for this
    /// store's backend, and returns its rows.
    async fn fetch<T, S>(&self, select: &S) -> Result<Vec<T>, StoreError>
    where
        T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
        S: SqlxBinder,
    {
        match &self.pool {
            Pool::Postgres(pool) => {
                let (sql, values) = select.build_sqlx(PostgresQueryBuilder);
                Ok(sqlx::query_as_with::<_, T, _>(AssertSqlSafe(sql), values)
                    .fetch_all(pool)
                    .await?)
            }
            Pool::Sqlite(pool) => {
                let (sql, values) = select.build_sqlx(SqliteQueryBuilder);
                Ok(sqlx::query_as_with::<_, T, _>(AssertSqlSafe(sql), values)
                    .fetch_all(pool)
                    .await?)
            }
        }
    }

    pub async fn close(&self) {
        match &self.pool {
            Pool::Postgres(pool) => pool.close().await,
            Pool::Sqlite(pool) => pool.close().await,
        }
    }
}

fn is_missing_table(err: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = err else {
        return false;
    };
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        db.message().starts_with("no such table")
    } else {
        db.code().as_deref() == Some("42P01")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// `StoreError::Unavailable` says it ("the database is unavailable: …"), or what else failed.
    #[error("{0}")]
    Unreachable(StoreError),
    #[error("database schema not migrated: latest applied {applied:?}, expected {expected}")]
    NotMigrated { applied: Option<i64>, expected: i64 },
}
