//! All SQL lives here: the ingest write, the reads, migrations and the read-only role.
//! Queries built from filters use sea-query; fixed statements are plain SQL.

mod batch;
mod ingest;
mod readonly;
mod reads;
mod schema;

use std::str::FromStr;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::DatabaseConfig;

pub use batch::{Batcher, MAX_BATCH};
pub use ingest::Stored;
pub use readonly::{RoleName, grant_readonly};
pub use reads::{AgentAccess, Cursor, MetricFilter, RunFilter, SummaryFilter};

/// The schema, embedded in the binary: `serve` and `migrate` need no files at run time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

/// A statement running longer than this is cancelled, so a stuck query cannot hold a
/// connection (and a client) forever.
const STATEMENT_TIMEOUT: &str = "15s";

/// The collector's access to PostgreSQL.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// A pool that connects on first use, so the service can start while the database is down.
    pub fn connect_lazy(config: &DatabaseConfig) -> Result<Self, sqlx::Error> {
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
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations. Safe when several replicas start at once: sqlx holds a
    /// PostgreSQL advisory lock while it migrates.
    pub async fn migrate(&self) -> Result<(), MigrateError> {
        MIGRATOR.run(&self.pool).await
    }

    /// Ready means: the database answers, and every migration this binary knows is applied.
    pub async fn check_ready(&self) -> Result<(), NotReady> {
        let latest_known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        let applied: Option<i64> =
            sqlx::query_scalar("select max(version) from _sqlx_migrations where success")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| match &e {
                    sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => {
                        NotReady::NotMigrated {
                            applied: None,
                            expected: latest_known,
                        }
                    }
                    _ => NotReady::Unreachable(e),
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
        (
            self.pool.size(),
            self.pool.num_idle(),
            self.pool.options().get_max_connections(),
        )
    }

    pub async fn close(&self) {
        self.pool.close().await;
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
