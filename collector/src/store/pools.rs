//! The connection pools of both backends, as the collector sets them up.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

/// A statement running longer than this is cancelled, so a stuck query cannot hold a
/// connection (and a client) forever.
const STATEMENT_TIMEOUT: &str = "15s";

/// How long a SQLite writer waits for another to finish before giving up (then: 503, retry).
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A pooled PostgreSQL connection idle this long is pinged before it is used.
pub(super) const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

pub(super) fn postgres(url: &str, settings: PoolSettings) -> Result<PgPool, sqlx::Error> {
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
    Ok(pool)
}

pub(super) fn sqlite(url: &str, settings: PoolSettings) -> Result<SqlitePool, sqlx::Error> {
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
    Ok(pool)
}

/// How many connections a store may open, and how long a caller waits for one.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before it is answered 503.
    pub acquire_timeout: Duration,
}
