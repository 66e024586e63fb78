//! The backend dispatch: the pools, a connection's transaction, and every place the store
//! branches on PostgreSQL or SQLite. Code above it is written once, with sea-query statements
//! rendered for the backend here ([`Tx`], [`Store::fetch`]); what one backend does its own way
//! (the write, the start's insert, the summaries' recomputation, locks, roles) is chosen here
//! and written in its own module.

use std::time::{Duration, Instant};

use sea_query::{PostgresQueryBuilder, SqliteQueryBuilder};
use sea_query_sqlx::SqlxBinder;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, FromRow, PgPool, Postgres, Sqlite, SqlitePool, Transaction};

use super::pace::{self, Pace};
use super::pools::{self, PoolSettings};
use super::runs::{self, HeldConnection};
use super::summaries::Counted;
use super::{POSTGRES_MIGRATOR, SQLITE_MIGRATOR, Store, StoreError};
use crate::domain::{NewRun, NewStart};

/// The same code on either backend: `$body` with `$conn` bound to the pool, connection or
/// transaction of `$target`'s arm (an enum with `Postgres` and `Sqlite` variants) and `$builder`
/// to that backend's sea-query builder. Where the two arms differ, they are written out.
macro_rules! on_either {
    ($kind:ident, $target:expr, |$conn:ident, $builder:ident| $body:expr) => {
        match $target {
            $kind::Postgres($conn) => {
                let $builder = PostgresQueryBuilder;
                $body
            }
            $kind::Sqlite($conn) => {
                let $builder = SqliteQueryBuilder;
                $body
            }
        }
    };
}

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

    /// Whether it runs one write transaction at a time whatever it is asked (SQLite).
    pub fn has_one_writer(self) -> bool {
        match self {
            Self::Postgres => false,
            Self::Sqlite => true,
        }
    }

    /// How many write transactions run at once when `asked` for.
    pub fn writers(self, asked: usize) -> usize {
        if self.has_one_writer() { 1 } else { asked }
    }
}

#[derive(Debug, Clone)]
pub(super) enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl From<PgPool> for Store {
    fn from(pool: PgPool) -> Self {
        Self::with_pool(Pool::Postgres(pool))
    }
}

impl From<SqlitePool> for Store {
    fn from(pool: SqlitePool) -> Self {
        Self::with_pool(Pool::Sqlite(pool))
    }
}

impl Store {
    /// A pool that connects on first use, so the service can start while the database is down.
    /// A SQLite file (and its directory) is created if missing.
    pub fn connect_lazy(url: &str, settings: PoolSettings) -> Result<Self, sqlx::Error> {
        let pool = match Backend::of_url(url) {
            Some(Backend::Sqlite) => Pool::Sqlite(pools::sqlite(url, settings)?),
            // Anything else is PostgreSQL's to refuse, with its own message.
            _ => Pool::Postgres(pools::postgres(url, settings)?),
        };
        Ok(Self::with_pool(pool))
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

    /// The latest migration applied (`None`: none yet).
    pub(super) async fn applied_version(&self) -> Result<Option<i64>, sqlx::Error> {
        const APPLIED: &str = "select max(version) from _sqlx_migrations where success";
        on_either!(Pool, &self.pool, |pool, _builder| {
            sqlx::query_scalar(APPLIED).fetch_one(pool).await
        })
    }

    /// Pool figures for `/prometheus`: (open connections, idle connections, maximum).
    pub fn pool_usage(&self) -> (u32, usize, u32) {
        on_either!(Pool, &self.pool, |pool, _builder| (
            pool.size(),
            pool.num_idle(),
            pool.options().get_max_connections(),
        ))
    }

    /// Runs a sea-query statement (a SELECT, or a write with RETURNING), rendered for this
    /// store's backend, and returns its rows.
    pub(super) async fn fetch<T, S>(&self, select: &S) -> Result<Vec<T>, StoreError>
    where
        T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
        S: SqlxBinder,
    {
        on_either!(Pool, &self.pool, |pool, builder| {
            let (sql, values) = select.build_sqlx(builder);
            Ok(sqlx::query_as_with::<_, T, _>(AssertSqlSafe(sql), values)
                .fetch_all(pool)
                .await?)
        })
    }

    pub async fn close(&self) {
        on_either!(Pool, &self.pool, |pool, _builder| pool.close().await)
    }

    /// Writes `runs` in a transaction of its own, on the connection `held` keeps from one call
    /// to the next where given (PostgreSQL; SQLite has its one writer's pool).
    pub(super) async fn write_runs(
        &self,
        runs: &[&NewRun],
        held: Option<&mut HeldConnection>,
    ) -> Result<Vec<runs::Written>, StoreError> {
        match &self.pool {
            Pool::Postgres(pool) => match held {
                Some(held) => held.insert_new(pool, runs).await,
                None => runs::postgres::insert_new(&mut *pool.acquire().await?, runs).await,
            },
            Pool::Sqlite(pool) => runs::sqlite::insert_new(pool, runs).await,
        }
    }

    /// A start's insert (`runs/start.rs`): the new row's id, or `None` when an index refused it.
    pub(super) async fn insert_start(&self, start: &NewStart) -> Result<Option<i64>, StoreError> {
        match &self.pool {
            Pool::Postgres(pool) => runs::claims::insert_postgres(pool, start).await,
            Pool::Sqlite(_) => Ok(self
                .fetch::<(i64,), _>(&runs::claims::insert_sqlite(start)?)
                .await?
                .first()
                .map(|(id,)| *id)),
        }
    }
}

/// A transaction on either backend, for sea-query statements: the code that runs in it is
/// written once. Background work takes a paced one (`pace.rs`).
pub(crate) struct Tx {
    conn: Conn,
    /// The rests of background work on PostgreSQL ([`Tx::begin_paced`]).
    pace: Option<Pace>,
}

enum Conn {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl Tx {
    /// A transaction that writes: on SQLite, `BEGIN IMMEDIATE` (the write lock at once, so it
    /// cannot fail to upgrade half-way).
    pub(crate) async fn begin(store: &Store) -> Result<Self, StoreError> {
        let conn = match &store.pool {
            Pool::Postgres(pool) => Conn::Postgres(pool.begin().await?),
            Pool::Sqlite(pool) => Conn::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
        };
        Ok(Self { conn, pace: None })
    }

    /// [`Tx::begin`] for background work: paced on PostgreSQL (the module's note).
    pub(crate) async fn begin_paced(store: &Store) -> Result<Self, StoreError> {
        let mut tx = Self::begin(store).await?;
        if matches!(tx.conn, Conn::Postgres(_)) {
            tx.pace = Some(Pace::default());
        }
        Ok(tx)
    }

    /// The rest after a statement that started at `started`, if this transaction is paced.
    async fn rest(&mut self, started: Instant) {
        if let Some(pace) = &mut self.pace {
            pace.after(started, pace::MIN_REST).await;
        }
    }

    /// On PostgreSQL, the transaction-scoped advisory lock `key` if free (`false`: another
    /// replica holds it); SQLite is one process, so always `true`.
    pub(crate) async fn try_lock(&mut self, key: i64) -> Result<bool, StoreError> {
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

    pub(crate) async fn fetch<T, S>(&mut self, statement: &S) -> Result<Vec<T>, StoreError>
    where
        T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
        S: SqlxBinder,
    {
        let started = Instant::now();
        let rows = on_either!(Conn, &mut self.conn, |tx, builder| {
            let (sql, values) = statement.build_sqlx(builder);
            sqlx::query_as_with(AssertSqlSafe(sql), values)
                .fetch_all(&mut **tx)
                .await?
        });
        self.rest(started).await;
        Ok(rows)
    }

    /// Runs a write; returns the rows it touched.
    pub(crate) async fn execute<S: SqlxBinder>(
        &mut self,
        statement: &S,
    ) -> Result<u64, StoreError> {
        let started = Instant::now();
        let touched = on_either!(Conn, &mut self.conn, |tx, builder| {
            let (sql, values) = statement.build_sqlx(builder);
            sqlx::query_with(AssertSqlSafe(sql), values)
                .execute(&mut **tx)
                .await?
                .rows_affected()
        });
        self.rest(started).await;
        Ok(touched)
    }

    /// Commits, then takes the rest still owed (outside the transaction).
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        let started = Instant::now();
        on_either!(Conn, self.conn, |tx, _builder| tx.commit().await?);
        if let Some(mut pace) = self.pace {
            pace.after(started, Duration::ZERO).await;
        }
        Ok(())
    }

    /// Counts the stored runs `ids` into the summaries `counted` names, by the write's rules
    /// (`summaries/recount.rs`).
    pub(super) async fn count_runs(
        &mut self,
        ids: &[i64],
        counted: Counted,
    ) -> Result<(), StoreError> {
        let (days, latest) = match counted {
            Counted::Both => (true, true),
            Counted::Days => (true, false),
            Counted::Latest => (false, true),
        };
        match &mut self.conn {
            Conn::Postgres(tx) => runs::postgres::count_runs(tx, ids, days, latest).await,
            Conn::Sqlite(tx) => runs::sqlite::count_runs(tx, ids, days, latest).await,
        }
    }

    /// Writes `runs` with their metrics and summaries (`runs/postgres.rs`, `runs/sqlite.rs`):
    /// (run_key, id) of each run written.
    pub(super) async fn write_runs(
        &mut self,
        runs: &[&NewRun],
    ) -> Result<Vec<runs::Written>, StoreError> {
        match &mut self.conn {
            Conn::Postgres(tx) => runs::postgres::insert_new(tx, runs).await,
            Conn::Sqlite(tx) => runs::sqlite::write(tx, runs).await,
        }
    }
}
