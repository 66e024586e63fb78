//! All SQL lives here: the ingest write, the reads, migrations and the read-only role.
//!
//! Two backends: PostgreSQL (production, the dashboard's database) and SQLite (the embedded
//! default: one file, no server). Queries built from filters use sea-query and are rendered for
//! whichever backend the store runs on; the ingest write is one statement per backend
//! (`ingest.rs`), because PostgreSQL's form relies on arrays and data-modifying CTEs.

mod batch;
mod ingest;
mod metric_day;
mod readonly;
mod reads;
mod schema;

use std::str::FromStr;
use std::time::Duration;

use sea_query::{PostgresQueryBuilder, SelectStatement, SqliteQueryBuilder};
use sea_query_sqlx::SqlxBinder;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, FromRow, PgPool, SqlitePool};

use agent_sdk::wire::RunStatus;
use tokio::sync::broadcast;

use crate::config::DatabaseConfig;

pub use batch::{Batcher, MAX_BATCH};
pub use ingest::Stored;
pub use readonly::{RoleName, grant_readonly};
pub use reads::{AgentAccess, Cursor, MetricFilter, RunFilter, SummaryFilter};

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

/// The collector's access to its database. Clones share the pool and the announcements.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    /// Every run stored, for whoever subscribed (the `platform` command prints them). A slow
    /// subscriber misses announcements (it is told how many), never slows ingest.
    stored_runs: broadcast::Sender<StoredRun>,
    /// Concurrent write transactions for POST /metrics on PostgreSQL (see [`Batcher`]).
    writers: usize,
}

/// Write transactions in parallel on PostgreSQL unless `DATABASE_WRITERS` says otherwise: on
/// two cores, three took 23–58% more reports/s than one, 36% on average (docs/performance.md).
pub const DEFAULT_WRITERS: usize = 3;

/// A run just stored (not one seen before).
#[derive(Debug, Clone)]
pub struct StoredRun {
    pub run_id: i64,
    pub agent_name: String,
    pub status: RunStatus,
    pub duration_ms: i64,
    pub metric_count: usize,
}

impl From<PgPool> for Store {
    fn from(pool: PgPool) -> Self {
        Self::on(Pool::Postgres(pool))
    }
}

impl From<SqlitePool> for Store {
    fn from(pool: SqlitePool) -> Self {
        Self::on(Pool::Sqlite(pool))
    }
}

impl Store {
    fn on(pool: Pool) -> Self {
        Self {
            pool,
            stored_runs: broadcast::channel(1024).0,
            writers: DEFAULT_WRITERS,
        }
    }

    /// This store with `writers` concurrent write transactions for POST /metrics (at least
    /// one; PostgreSQL only).
    pub fn with_writers(mut self, writers: usize) -> Self {
        self.writers = writers.max(1);
        self
    }

    /// Concurrent write transactions for POST /metrics: SQLite has one, it runs one write
    /// transaction at a time.
    pub fn writers(&self) -> usize {
        match self.pool {
            Pool::Postgres(_) => self.writers,
            Pool::Sqlite(_) => 1,
        }
    }

    /// Every run stored from now on, as its transaction commits.
    pub fn subscribe_stored_runs(&self) -> broadcast::Receiver<StoredRun> {
        self.stored_runs.subscribe()
    }

    /// A pool that connects on first use, so the service can start while the database is down.
    /// A SQLite file (and its directory) is created if missing.
    pub fn connect_lazy(config: &DatabaseConfig) -> Result<Self, sqlx::Error> {
        match Backend::of_url(config.url()) {
            Some(Backend::Sqlite) => Self::connect_sqlite(config),
            // Anything else is PostgreSQL's to refuse, with its own message.
            _ => Self::connect_postgres(config),
        }
    }

    fn connect_postgres(config: &DatabaseConfig) -> Result<Self, sqlx::Error> {
        let options = PgConnectOptions::from_str(config.url())?
            .application_name("collector")
            .options([
                ("timezone", "UTC"),
                ("statement_timeout", STATEMENT_TIMEOUT),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_lazy_with(options);
        Ok(Self::from(pool).with_writers(config.writers))
    }

    fn connect_sqlite(config: &DatabaseConfig) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(config.url())?
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
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
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
    pub async fn migrate(&self) -> Result<(), MigrateError> {
        match &self.pool {
            Pool::Postgres(pool) => POSTGRES_MIGRATOR.run(pool).await,
            Pool::Sqlite(pool) => SQLITE_MIGRATOR.run(pool).await,
        }
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
                NotReady::Unreachable(e)
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

    /// Runs a sea-query SELECT, rendered for this store's backend.
    async fn fetch<T>(&self, select: &SelectStatement) -> Result<Vec<T>, sqlx::Error>
    where
        T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
    {
        match &self.pool {
            Pool::Postgres(pool) => {
                let (sql, values) = select.build_sqlx(PostgresQueryBuilder);
                sqlx::query_as_with::<_, T, _>(AssertSqlSafe(sql), values)
                    .fetch_all(pool)
                    .await
            }
            Pool::Sqlite(pool) => {
                let (sql, values) = select.build_sqlx(SqliteQueryBuilder);
                sqlx::query_as_with::<_, T, _>(AssertSqlSafe(sql), values)
                    .fetch_all(pool)
                    .await
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
    #[error("database unreachable: {0}")]
    Unreachable(#[source] sqlx::Error),
    #[error("database schema not migrated: latest applied {applied:?}, expected {expected}")]
    NotMigrated { applied: Option<i64>, expected: i64 },
}

/// Errors that say "the database is not there right now" rather than "this request is wrong":
/// they become `503 Retry-After`, and clients retry.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db)
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() =>
        {
            // The primary result code: SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL,
            // SQLITE_CANTOPEN.
            db.code()
                .and_then(|code| code.parse::<i32>().ok())
                .is_some_and(|code| matches!(code & 0xff, 5 | 6 | 10 | 13 | 14))
        }
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 57P0x: shutdown; 53: insufficient resources;
            // 40001/40P01: serialization failure, deadlock; 57014: statement timeout;
            // 55P03: lock not available.
            code.starts_with("08")
                || code.starts_with("57P")
                || code.starts_with("53")
                || matches!(&*code, "40001" | "40P01" | "57014" | "55P03")
        }),
        _ => false,
    }
}

/// How long a client should wait before retrying after a 503.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_has_one_writer_whatever_it_is_told() {
        let pool = SqlitePoolOptions::new()
            .connect_lazy("sqlite::memory:")
            .expect("a lazy pool opens nothing");
        assert_eq!(Store::from(pool.clone()).writers(), 1);
        assert_eq!(Store::from(pool).with_writers(5).writers(), 1);
        let pg = PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("a lazy pool opens nothing");
        assert_eq!(Store::from(pg.clone()).writers(), DEFAULT_WRITERS);
        assert_eq!(Store::from(pg.clone()).with_writers(5).writers(), 5);
        assert_eq!(Store::from(pg).with_writers(0).writers(), 1);
    }
}
