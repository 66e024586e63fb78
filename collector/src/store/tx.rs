//! A transaction on either backend, for sea-query statements: the code that runs in it is
//! written once.

use sea_query::{PostgresQueryBuilder, SqliteQueryBuilder};
use sea_query_sqlx::SqlxBinder;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, FromRow, Postgres, Sqlite, Transaction};

use super::{Pool, Store, StoreError};

pub(super) enum Tx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl Tx {
    /// A transaction that writes: on SQLite, `BEGIN IMMEDIATE` (the write lock at once, so it
    /// cannot fail to upgrade half-way).
    pub(super) async fn begin(store: &Store) -> Result<Self, StoreError> {
        Ok(match &store.pool {
            Pool::Postgres(pool) => Self::Postgres(pool.begin().await?),
            Pool::Sqlite(pool) => Self::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
        })
    }

    /// On PostgreSQL, the transaction-scoped advisory lock `key` if free (`false`: another
    /// replica holds it); SQLite is one process, so always `true`.
    pub(super) async fn try_lock(&mut self, key: i64) -> Result<bool, StoreError> {
        match self {
            Self::Postgres(tx) => Ok(sqlx::query_scalar("select pg_try_advisory_xact_lock($1)")
                .bind(key)
                .fetch_one(&mut **tx)
                .await?),
            Self::Sqlite(_) => Ok(true),
        }
    }

    pub(super) async fn fetch<T, S>(&mut self, statement: &S) -> Result<Vec<T>, StoreError>
    where
        T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
        S: SqlxBinder,
    {
        Ok(match self {
            Self::Postgres(tx) => {
                let (sql, values) = statement.build_sqlx(PostgresQueryBuilder);
                sqlx::query_as_with(AssertSqlSafe(sql), values)
                    .fetch_all(&mut **tx)
                    .await?
            }
            Self::Sqlite(tx) => {
                let (sql, values) = statement.build_sqlx(SqliteQueryBuilder);
                sqlx::query_as_with(AssertSqlSafe(sql), values)
                    .fetch_all(&mut **tx)
                    .await?
            }
        })
    }

    /// Runs a write; returns the rows it touched.
    pub(super) async fn execute<S: SqlxBinder>(
        &mut self,
        statement: &S,
    ) -> Result<u64, StoreError> {
        Ok(match self {
            Self::Postgres(tx) => {
                let (sql, values) = statement.build_sqlx(PostgresQueryBuilder);
                sqlx::query_with(AssertSqlSafe(sql), values)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected()
            }
            Self::Sqlite(tx) => {
                let (sql, values) = statement.build_sqlx(SqliteQueryBuilder);
                sqlx::query_with(AssertSqlSafe(sql), values)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected()
            }
        })
    }

    pub(super) async fn commit(self) -> Result<(), StoreError> {
        match self {
            Self::Postgres(tx) => tx.commit().await?,
            Self::Sqlite(tx) => tx.commit().await?,
        }
        Ok(())
    }
}
