//! A transaction on either backend, for sea-query statements: the code that runs in it is
//! written once.
//!
//! Background work (the watcher's pass, the closing of overdue runs) runs in a paced
//! transaction on PostgreSQL: after each statement it rests [`BACKGROUND_REST`] times as long as
//! the statement took, so that it takes a bounded share of the cores from ingest however often
//! it runs, as autovacuum's cost delay does for its own work (docs/performance.md: with passes
//! back to back, unpaced, ingest kept 0.81-0.87 of its rate). The only rows such a transaction
//! holds through a rest that ingest may write are the overdue runs being closed (a late report
//! for one of them waits). SQLite is not paced: its one write lock would be held through the rest.

use std::time::{Duration, Instant};

use sea_query::{PostgresQueryBuilder, SqliteQueryBuilder};
use sea_query_sqlx::SqlxBinder;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, FromRow, Postgres, Sqlite, Transaction};

use super::{Pool, Store, StoreError};

/// A paced transaction's rest after each statement, as a multiple of the statement's time:
/// it works a quarter of the time.
const BACKGROUND_REST: f64 = 3.0;

pub(super) struct Tx {
    pub(super) conn: Conn,
    /// The rests of background work on PostgreSQL ([`Tx::begin_paced`]).
    pace: Option<Pace>,
}

pub(super) enum Conn {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

/// The longest rest after one statement: a statement slowed by a stall elsewhere does not
/// hold the transaction open for long after it.
const MAX_REST: Duration = Duration::from_millis(200);

/// The most rest in one transaction: a rare heavy pass (the first after many agents changed)
/// stays under a second, working more than its share for the rest of it.
const MAX_RESTED: Duration = Duration::from_millis(500);

/// The shortest rest taken after a statement: shorter ones are added up first (the timer
/// counts in milliseconds).
const MIN_REST: Duration = Duration::from_millis(5);

/// A paced transaction's rests: owed after each statement, taken once they add up.
#[derive(Default)]
struct Pace {
    /// Rest owed and not taken yet.
    owed: Duration,
    /// Rest taken so far: at most [`MAX_RESTED`].
    rested: Duration,
}

impl Pace {
    /// Owes the rest of a statement that started at `started`, and takes what is owed if it
    /// is at least `least`; the time a sleep overran counts as rest taken.
    async fn after(&mut self, started: Instant, least: Duration) {
        if self.rested >= MAX_RESTED {
            return;
        }
        self.owed += started.elapsed().mul_f64(BACKGROUND_REST).min(MAX_REST);
        if self.owed >= least {
            let resting = Instant::now();
            tokio::time::sleep(self.owed.min(MAX_RESTED - self.rested)).await;
            let slept = resting.elapsed();
            self.rested += slept;
            self.owed = self.owed.saturating_sub(slept);
        }
    }
}

impl Tx {
    /// A transaction that writes: on SQLite, `BEGIN IMMEDIATE` (the write lock at once, so it
    /// cannot fail to upgrade half-way).
    pub(super) async fn begin(store: &Store) -> Result<Self, StoreError> {
        let conn = match &store.pool {
            Pool::Postgres(pool) => Conn::Postgres(pool.begin().await?),
            Pool::Sqlite(pool) => Conn::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
        };
        Ok(Self { conn, pace: None })
    }

    /// [`Tx::begin`] for background work: paced on PostgreSQL (the module's note).
    pub(super) async fn begin_paced(store: &Store) -> Result<Self, StoreError> {
        let mut tx = Self::begin(store).await?;
        if matches!(tx.conn, Conn::Postgres(_)) {
            tx.pace = Some(Pace::default());
        }
        Ok(tx)
    }

    /// The rest after a statement that started at `started`, if this transaction is paced.
    async fn rest(&mut self, started: Instant) {
        if let Some(pace) = &mut self.pace {
            pace.after(started, MIN_REST).await;
        }
    }

    /// On PostgreSQL, the transaction-scoped advisory lock `key` if free (`false`: another
    /// replica holds it); SQLite is one process, so always `true`.
    pub(super) async fn try_lock(&mut self, key: i64) -> Result<bool, StoreError> {
        let started = Instant::now();
        let locked = match &mut self.conn {
            Conn::Postgres(tx) => {
                sqlx::query_scalar("select pg_try_advisory_xact_lock($1)")
                    .bind(key)
                    .fetch_one(&mut **tx)
                    .await?
            }
            Conn::Sqlite(_) => true,
        };
        self.rest(started).await;
        Ok(locked)
    }

    pub(super) async fn fetch<T, S>(&mut self, statement: &S) -> Result<Vec<T>, StoreError>
    where
        T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
        S: SqlxBinder,
    {
        let started = Instant::now();
        let rows = match &mut self.conn {
            Conn::Postgres(tx) => {
                let (sql, values) = statement.build_sqlx(PostgresQueryBuilder);
                sqlx::query_as_with(AssertSqlSafe(sql), values)
                    .fetch_all(&mut **tx)
                    .await?
            }
            Conn::Sqlite(tx) => {
                let (sql, values) = statement.build_sqlx(SqliteQueryBuilder);
                sqlx::query_as_with(AssertSqlSafe(sql), values)
                    .fetch_all(&mut **tx)
                    .await?
            }
        };
        self.rest(started).await;
        Ok(rows)
    }

    /// Runs a write; returns the rows it touched.
    pub(super) async fn execute<S: SqlxBinder>(
        &mut self,
        statement: &S,
    ) -> Result<u64, StoreError> {
        let started = Instant::now();
        let touched = match &mut self.conn {
            Conn::Postgres(tx) => {
                let (sql, values) = statement.build_sqlx(PostgresQueryBuilder);
                sqlx::query_with(AssertSqlSafe(sql), values)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected()
            }
            Conn::Sqlite(tx) => {
                let (sql, values) = statement.build_sqlx(SqliteQueryBuilder);
                sqlx::query_with(AssertSqlSafe(sql), values)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected()
            }
        };
        self.rest(started).await;
        Ok(touched)
    }

    /// Commits, then takes the rest still owed (outside the transaction).
    pub(super) async fn commit(self) -> Result<(), StoreError> {
        let started = Instant::now();
        match self.conn {
            Conn::Postgres(tx) => tx.commit().await?,
            Conn::Sqlite(tx) => tx.commit().await?,
        }
        if let Some(mut pace) = self.pace {
            pace.after(started, Duration::ZERO).await;
        }
        Ok(())
    }
}
