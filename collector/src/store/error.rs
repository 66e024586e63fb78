//! The store's own error: what went wrong, classified once, so that callers decide by kind
//! (retry later, refuse, report a bug) without knowing sqlx.

use std::sync::Arc;

/// Why the store could not do what it was asked.
///
/// Cheap to clone: one failed transaction is the outcome of every run it held. Its message
/// carries the cause, for the log; never for a client.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached, is starting or stopping, or is overloaded (busy, a lock
    /// or statement timeout): the same request later may well work.
    #[error("the database is unavailable: {0}")]
    Unavailable(Arc<sqlx::Error>),
    /// What was asked exists only on the other backend (roles on SQLite).
    #[error("{0}")]
    Unsupported(&'static str),
    /// A bug, or a failure the store does not expect (a constraint it did not plan for, a row
    /// it cannot decode).
    #[error("{context}: {source}")]
    Internal {
        context: &'static str,
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// An internal error with what the store was doing when it happened.
    pub(crate) fn internal(
        context: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Internal {
            context,
            source: Arc::from(source.into()),
        }
    }

    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// The SQLSTATE of the database's own refusal behind this error, if that is what it is
    /// (`42501`: insufficient privilege).
    pub fn database_code(&self) -> Option<String> {
        let Self::Internal { source, .. } = self else {
            return None;
        };
        source
            .downcast_ref::<sqlx::Error>()
            .and_then(sqlx::Error::as_database_error)
            .and_then(|db| db.code())
            .map(|code| code.into_owned())
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if is_unavailable(&err) {
            Self::Unavailable(Arc::new(err))
        } else {
            Self::internal("a database statement failed", err)
        }
    }
}

/// Errors that say "the database is not there right now" rather than "this request is wrong".
pub(crate) fn is_unavailable(err: &sqlx::Error) -> bool {
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

/// A stored row the store cannot read back.
pub(super) fn decode_error(message: String) -> StoreError {
    StoreError::internal("reading a stored row", message)
}

/// A stored run status.
pub(super) fn parse_status(status: &str) -> Result<agent_sdk::wire::RunStatus, StoreError> {
    agent_sdk::wire::RunStatus::parse(status)
        .ok_or_else(|| decode_error(format!("unknown run status {status:?}")))
}
