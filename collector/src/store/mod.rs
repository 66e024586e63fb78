//! All SQL lives here, organised by what it stores: runs (their write, start, overdue closing
//! and listings), the daily summaries, expectations, missed and late slots, incidents, alert
//! deliveries, retention, the read-only role. The store reads and writes rows; what the rows
//! mean for monitoring is decided in `crate::watch`.
//!
//! Two backends: PostgreSQL (production, the dashboard's database) and SQLite (the embedded
//! default: one file, no server). Queries built from filters use sea-query and are rendered for
//! whichever backend the store runs on; every branch on the backend is in `db.rs`, and what one
//! backend does its own way sits in a module of its own beside the other's (`runs/postgres.rs`,
//! `runs/sqlite.rs`). Every method answers [`StoreError`].

mod access;
mod agent_expectations;
mod alert_deliveries;
mod audit_log;
mod db;
mod error;
mod incident_log;
mod job_commands;
mod job_pauses;
mod jobs;
mod pace;
mod pools;
mod readonly;
mod retention;
mod runs;
mod silences;
mod slots;
mod summaries;
mod tables;

pub use access::AgentAccess;
pub use agent_expectations::{ExpectationRow, ScheduledExpectation};
pub use alert_deliveries::{AttemptOutcome, DueAlert};
pub use audit_log::Audit;
pub use db::Backend;
pub(crate) use db::Tx;
pub use error::StoreError;
pub use job_commands::{Acted, BACKFILL_TTL, RUN_COMMAND_TTL, RunToCancel};
pub use job_pauses::{PauseSpan, SELF_PAUSED_BY};
pub use pools::PoolSettings;
pub use readonly::grant_readonly;
pub use retention::{PRUNE_BATCH, PRUNE_LOCK, Pruned, Retention};
pub use runs::{HeldConnection, MetricFilter, OVERDUE_LOCK, RecentRun, RunFilter, Started, Stored};
pub use silences::SILENCES_KEPT;
pub use summaries::{
    KNOWN_BY_NAME, LastTimes, MetricDay, RunDay, SummaryChange, SummaryChanges, SummaryFilter,
};

use sqlx::migrate::Migrator;

use crate::memo::Memo;

/// The PostgreSQL schema, embedded in the binary: `serve` and `migrate` need no files at run time.
pub static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

/// The same schema for the embedded SQLite backend.
pub static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("../migrations/sqlite");

/// The collector's access to its database. Clones share the pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: db::Pool,
    crons: agent_expectations::Crons,
}

impl Store {
    fn with_pool(pool: db::Pool) -> Self {
        Self {
            pool,
            crons: Memo::default(),
        }
    }

    /// Ready means: the database answers, and every migration this binary knows is applied.
    pub async fn check_ready(&self) -> Result<(), NotReady> {
        let latest_known = self.migrator().iter().map(|m| m.version).max().unwrap_or(0);
        let applied = self.applied_version().await.map_err(|e| {
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
}

fn is_missing_table(err: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = err else {
        return false;
    };
    // SQLite says it in words; PostgreSQL with its code.
    db.message().starts_with("no such table") || db.code().as_deref() == Some("42P01")
}

#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// `StoreError::Unavailable` says it ("the database is unavailable: …"), or what else failed.
    #[error("{0}")]
    Unreachable(StoreError),
    #[error("database schema not migrated: latest applied {applied:?}, expected {expected}")]
    NotMigrated { applied: Option<i64>, expected: i64 },
}
