//! The collector's settings, read from the environment with the platform's one style
//! (`agent_sdk::env`: only variables, never flags; each checked at start-up with a one-line
//! error), so that secrets do not show up in `ps` output or shell history, and `.env.example`
//! is the complete list.

use std::net::SocketAddr;
use std::time::Duration;

pub use agent_sdk::env::ConfigError;
use agent_sdk::env::{duration_or, optional, parse_or, required};
use secrecy::{ExposeSecret, SecretString};

use crate::auth::SecretKey;

use crate::ingest::DEFAULT_WRITERS;
use crate::store::{Backend, PoolSettings, Retention};
use crate::watch::{Alerts, WatchRules};

/// `RETENTION_METRICS` and `RETENTION_RUNS` (durations; unset: kept forever).
pub fn retention() -> Result<Retention, ConfigError> {
    let age = |var: &'static str| -> Result<Option<Duration>, ConfigError> {
        match optional(var)? {
            None => Ok(None),
            Some(value) => match humantime::parse_duration(value.trim()) {
                Ok(d) if d >= Duration::from_secs(3600) => Ok(Some(d)),
                Ok(_) => Err(ConfigError::Invalid {
                    var,
                    reason: format!("{value:?}: keep at least an hour (e.g. 90d)"),
                }),
                Err(e) => Err(ConfigError::Invalid {
                    var,
                    reason: format!("{value:?}: {e} (e.g. 90d, 1y)"),
                }),
            },
        }
    };
    Ok(Retention {
        metrics: age(RETENTION_METRICS)?,
        runs: age(RETENTION_RUNS)?,
    })
}

/// `ALERTS_FILE`, when set: the file read and checked, every problem on a line of its own.
pub fn alerts() -> Result<Option<Alerts>, ConfigError> {
    let Some(path) = optional(ALERTS_FILE)? else {
        return Ok(None);
    };
    Alerts::load(std::path::Path::new(path.trim()))
        .map(Some)
        .map_err(|problems| ConfigError::Invalid {
            var: ALERTS_FILE,
            reason: format!(
                "{} problem(s):\n  {}",
                problems.len(),
                problems.join("\n  ")
            ),
        })
}

/// The watcher's rules: `INCIDENT_FAILING_AFTER`, `INCIDENT_STALE_PERIODS`,
/// `INCIDENT_SLOW_FACTOR` (each 1 or more), `INCIDENT_SLOW_MIN`, `SLOT_LATE_AFTER` and
/// `WATCH_EVERY` (more than zero).
pub fn watch_rules() -> Result<WatchRules, ConfigError> {
    let defaults = WatchRules::default();
    let at_least_one = |var: &'static str, default: u32| {
        let value = parse_or(var, default)?;
        if value == 0 {
            return Err(ConfigError::Invalid {
                var,
                reason: "must be 1 or more".into(),
            });
        }
        Ok(value)
    };
    Ok(WatchRules {
        failing_after: at_least_one(INCIDENT_FAILING_AFTER, defaults.failing_after)?,
        stale_periods: at_least_one(INCIDENT_STALE_PERIODS, defaults.stale_periods)?,
        slow_factor: at_least_one(INCIDENT_SLOW_FACTOR, defaults.slow_factor)?,
        slow_min: duration_or(INCIDENT_SLOW_MIN, defaults.slow_min)?,
        late_after: duration_or(SLOT_LATE_AFTER, defaults.late_after)?,
        every: match duration_or(WATCH_EVERY, defaults.every)? {
            Duration::ZERO => {
                return Err(ConfigError::Invalid {
                    var: WATCH_EVERY,
                    reason: "must be more than zero".into(),
                });
            }
            every => every,
        },
    })
}

/// Every variable the collector reads. `.env.example` must document each of them.
pub const ENV_VARS: &[&str] = &[
    DATABASE_URL,
    DATABASE_MAX_CONNECTIONS,
    DATABASE_ACQUIRE_TIMEOUT,
    DATABASE_WRITERS,
    COLLECTOR_SECRET_KEY,
    COLLECTOR_ADDR,
    COLLECTOR_BODY_LIMIT,
    COLLECTOR_BATCH_BODY_LIMIT,
    COLLECTOR_REQUEST_TIMEOUT,
    INCIDENT_FAILING_AFTER,
    INCIDENT_STALE_PERIODS,
    INCIDENT_SLOW_FACTOR,
    INCIDENT_SLOW_MIN,
    SLOT_LATE_AFTER,
    WATCH_EVERY,
    ALERTS_FILE,
    RETENTION_METRICS,
    RETENTION_RUNS,
    WEBAPP_READONLY_PASSWORD,
    RUST_LOG,
    LOG_FORMAT,
];

pub const DATABASE_URL: &str = "DATABASE_URL";
pub const DATABASE_MAX_CONNECTIONS: &str = "DATABASE_MAX_CONNECTIONS";
pub const DATABASE_ACQUIRE_TIMEOUT: &str = "DATABASE_ACQUIRE_TIMEOUT";
pub const DATABASE_WRITERS: &str = "DATABASE_WRITERS";
pub const COLLECTOR_SECRET_KEY: &str = "COLLECTOR_SECRET_KEY";
pub const COLLECTOR_ADDR: &str = "COLLECTOR_ADDR";
pub const COLLECTOR_BODY_LIMIT: &str = "COLLECTOR_BODY_LIMIT";
pub const COLLECTOR_BATCH_BODY_LIMIT: &str = "COLLECTOR_BATCH_BODY_LIMIT";
pub const COLLECTOR_REQUEST_TIMEOUT: &str = "COLLECTOR_REQUEST_TIMEOUT";
pub const INCIDENT_FAILING_AFTER: &str = "INCIDENT_FAILING_AFTER";
pub const INCIDENT_STALE_PERIODS: &str = "INCIDENT_STALE_PERIODS";
pub const INCIDENT_SLOW_FACTOR: &str = "INCIDENT_SLOW_FACTOR";
pub const INCIDENT_SLOW_MIN: &str = "INCIDENT_SLOW_MIN";
pub const SLOT_LATE_AFTER: &str = "SLOT_LATE_AFTER";
pub const WATCH_EVERY: &str = "WATCH_EVERY";
pub const ALERTS_FILE: &str = "ALERTS_FILE";
pub const RETENTION_METRICS: &str = "RETENTION_METRICS";
pub const RETENTION_RUNS: &str = "RETENTION_RUNS";
pub const WEBAPP_READONLY_PASSWORD: &str = "WEBAPP_READONLY_PASSWORD";
pub const RUST_LOG: &str = "RUST_LOG";
pub const LOG_FORMAT: &str = "LOG_FORMAT";

/// The value `.env.example` ships for passwords; refused like the secret key.
pub const PLACEHOLDER_PASSWORD: &str = "change-me";

/// What `collector serve` needs.
#[derive(Debug)]
pub struct ServeConfig {
    pub database: DatabaseConfig,
    pub secret_key: SecretKey,
    pub addr: SocketAddr,
    pub http: HttpConfig,
    pub watch: WatchRules,
    /// `ALERTS_FILE`, read and checked.
    pub alerts: Option<Alerts>,
    /// `RETENTION_METRICS`, `RETENTION_RUNS`.
    pub retention: Retention,
}

impl ServeConfig {
    /// A collector on `database`, signing with `secret_key`, listening on `addr`, with every
    /// other setting at its default (`platform` runs one so).
    pub fn new(database: DatabaseConfig, secret_key: SecretKey, addr: SocketAddr) -> Self {
        Self {
            database,
            secret_key,
            addr,
            http: HttpConfig::default(),
            watch: WatchRules::default(),
            alerts: None,
            retention: Retention::default(),
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            database: DatabaseConfig::from_env()?,
            secret_key: secret_key()?,
            addr: parse_or(
                COLLECTOR_ADDR,
                "0.0.0.0:8000".parse().expect("valid default"),
            )?,
            http: HttpConfig::from_env()?,
            watch: watch_rules()?,
            alerts: alerts()?,
            retention: retention()?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Largest accepted `POST /metrics/batch` body, in bytes.
    pub batch_body_limit: usize,
    /// A request still running after this long is answered 503.
    pub request_timeout: Duration,
    /// A connection that has not sent a complete request head within this long is closed
    /// (slow-loris clients).
    pub header_read_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            batch_body_limit: 16 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

impl HttpConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let default = Self::default();
        Ok(Self {
            body_limit: parse_or(COLLECTOR_BODY_LIMIT, default.body_limit)?,
            batch_body_limit: parse_or(COLLECTOR_BATCH_BODY_LIMIT, default.batch_body_limit)?,
            request_timeout: duration_or(COLLECTOR_REQUEST_TIMEOUT, default.request_timeout)?,
            header_read_timeout: default.header_read_timeout,
        })
    }
}

/// The database and how the collector uses it. Built only through [`DatabaseConfig::new`]
/// (or [`DatabaseConfig::from_env`], which calls it), so every caller gets the same checks.
#[derive(Debug)]
pub struct DatabaseConfig {
    url: SecretString,
    pool: PoolSettings,
    /// Concurrent write transactions for POST /metrics (PostgreSQL; SQLite has one).
    writers: usize,
}

impl DatabaseConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let url = required(
            DATABASE_URL,
            " (e.g. postgres://agent_platform:password@localhost:5432/agent_metrics_db, \
             or sqlite://data/dev.db)",
        )?;
        Self::new(
            url,
            PoolSettings {
                max_connections: parse_or(DATABASE_MAX_CONNECTIONS, 10)?,
                acquire_timeout: duration_or(DATABASE_ACQUIRE_TIMEOUT, Duration::from_secs(5))?,
            },
            parse_or(DATABASE_WRITERS, DEFAULT_WRITERS)?,
        )
    }

    /// Checks the URL's backend, and that the writers leave a connection for reads.
    pub fn new(url: String, pool: PoolSettings, writers: usize) -> Result<Self, ConfigError> {
        let Some(backend) = Backend::of_url(&url) else {
            return Err(ConfigError::Invalid {
                var: DATABASE_URL,
                reason: "must start with postgres://, postgresql:// or sqlite:".into(),
            });
        };
        if pool.max_connections == 0 {
            return Err(ConfigError::Invalid {
                var: DATABASE_MAX_CONNECTIONS,
                reason: "must be at least 1".into(),
            });
        }
        // Each writer holds a connection while it commits; reads need one left over. (SQLite
        // has one writer whatever this says.)
        if !backend.has_one_writer() && (writers == 0 || writers >= pool.max_connections as usize) {
            return Err(ConfigError::Invalid {
                var: DATABASE_WRITERS,
                reason: format!(
                    "must be at least 1 and below {DATABASE_MAX_CONNECTIONS} ({})",
                    pool.max_connections
                ),
            });
        }
        Ok(Self {
            url: url.into(),
            pool,
            writers,
        })
    }

    pub fn url(&self) -> &str {
        self.url.expose_secret()
    }

    pub fn pool(&self) -> PoolSettings {
        self.pool
    }

    pub fn writers(&self) -> usize {
        self.writers
    }
}

/// `COLLECTOR_SECRET_KEY`: the key that signs and verifies tokens.
pub fn secret_key() -> Result<SecretKey, ConfigError> {
    let value = required(
        COLLECTOR_SECRET_KEY,
        " (generate one with: openssl rand -hex 32)",
    )?;
    SecretKey::parse(value).map_err(|reason| ConfigError::Invalid {
        var: COLLECTOR_SECRET_KEY,
        reason,
    })
}

pub use agent_sdk::telemetry::LogFormat;

/// The log filter when `RUST_LOG` is unset.
pub const LOG_FILTER: &str = "info,sqlx=warn,tower_http=info";

/// `LOG_FORMAT`: `text` (the default) or `json`.
pub fn log_format() -> Result<LogFormat, ConfigError> {
    parse_or(LOG_FORMAT, LogFormat::Text)
}

/// `WEBAPP_READONLY_PASSWORD`, for `collector grant-readonly`.
pub fn readonly_password() -> Result<SecretString, ConfigError> {
    let value = required(WEBAPP_READONLY_PASSWORD, " (the read-only role's password)")?;
    if value == PLACEHOLDER_PASSWORD || value.len() < 12 {
        return Err(ConfigError::Invalid {
            var: WEBAPP_READONLY_PASSWORD,
            reason: "use a real password of at least 12 characters".into(),
        });
    }
    Ok(value.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_rules() {
        let pool = |max_connections| PoolSettings {
            max_connections,
            acquire_timeout: Duration::from_secs(1),
        };
        assert!(DatabaseConfig::new("postgres://h/db".into(), pool(10), 3).is_ok());
        assert!(DatabaseConfig::new("mysql://h/db".into(), pool(10), 3).is_err());
        assert!(DatabaseConfig::new("postgres://h/db".into(), pool(3), 3).is_err());
        assert!(DatabaseConfig::new("postgres://h/db".into(), pool(10), 0).is_err());
        assert!(DatabaseConfig::new("sqlite://x.db".into(), pool(0), 1).is_err());
        // SQLite has one writer whatever it is told.
        assert!(DatabaseConfig::new("sqlite://x.db".into(), pool(2), 5).is_ok());
    }
}
