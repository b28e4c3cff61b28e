//! Persistence: the only module that speaks SQL.
//!
//! SQLite in WAL mode (`foreign_keys`, `busy_timeout`, `synchronous=NORMAL`),
//! the schema in `migrations/` applied at open, and every write inside a
//! `BEGIN IMMEDIATE` transaction so concurrent writers queue on the busy
//! timeout instead of failing with `SQLITE_BUSY` half-way through.
//!
//! Rows map onto their structs with sqlx's derives: `FromRow` for rows,
//! `sqlx::Type` for the text-valued enums ([`JobStatus`], [`Split`],
//! [`Level`]) and `#[sqlx(json)]` for JSON columns, so a value read back is the
//! typed value that was written (hyperparameters included).
//!
//! The jobs table doubles as the work queue (see [`crate::queue`]): claims,
//! heartbeats and every write a worker makes are fenced by [`Fence`] (job id,
//! attempt and lease owner), so a worker that lost its lease changes nothing.
//! Fenced statements name the fence as `$1`, `$2`, `$3` (see `FENCED`) and
//! [`Fence::bind`] is the one place that binds it.

mod claims;
mod datasets;
mod jobs;
mod models;
mod records;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, SqlitePool, Transaction};

pub use datasets::{DatasetRow, NewDataset};
pub use jobs::{Fence, JobRow, JobStatus, NewJob, Progress, Rescued};
pub use models::{ModelRow, NewModel};
pub use records::{CheckpointRow, EventRow, Level, MetricRow, NewEvent, Split};

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed a statement.
    #[error("database: {0}")]
    Database(sqlx::Error),
    /// Applying the schema failed.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row referred to does not exist.
    #[error("{what} `{id}` not found")]
    NotFound {
        /// The kind of row (`dataset`, `job`, `model`).
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The row is in a state that forbids the change (cancelling a finished
    /// job, say): the client's request conflicts with it.
    #[error("{0}")]
    Conflict(String),
    /// A stored value cannot be read back as its type (an unknown status, JSON
    /// that no longer parses): the database holds something this version did
    /// not write.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A JSON column could not be written.
    #[error("stored JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                Self::Corrupt(e.to_string())
            }
            other => Self::Database(other),
        }
    }
}

/// A handle on the database (cheap to clone: a connection pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

/// A statement being built, with its arguments.
type Statement<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>;

/// Milliseconds since the Unix epoch, now: the unit of every timestamp column.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Opens (creating if needed) the database file `path` and migrates it.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            // A connection whose transaction could not be ended (a COMMIT or
            // ROLLBACK that failed, on a full disk say) is closed rather than
            // handed to the next caller, who would find it mid-transaction.
            .after_release(|conn, _| {
                use sqlx::TransactionManager as _;
                let depth = <Sqlite as sqlx::Database>::TransactionManager::get_transaction_depth;
                let clean = depth(conn) == 0;
                Box::pin(async move { Ok(clean) })
            })
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// The connection pool, for tests that reach behind the API (to backdate a
    /// lease, say).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// `Ok` when the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// `Ok` when the database takes a write (one small committed row): what a
    /// full disk or a read-only mount refuses while reads still work.
    pub async fn probe_write(&self) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO health (id, checked_at) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at",
        )
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Starts a write transaction that takes the write lock at once.
    async fn write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Runs `statement` (built with [`Fence::bind`]) in its own write
    /// transaction; `true` when it changed exactly one row, i.e. the fence held.
    async fn fenced_write(&self, statement: Statement<'_>) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let done = statement.execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(done == 1)
    }

    /// The `seq` a page of `table` listed newest first starts below: that of
    /// row `after`, or past the end without one. [`StoreError::NotFound`]
    /// (naming `what`) for an unknown `after`.
    async fn seq_of(
        &self,
        table: &str,
        what: &'static str,
        after: Option<&str>,
    ) -> Result<i64, StoreError> {
        let Some(id) = after else {
            return Ok(i64::MAX);
        };
        sqlx::query_scalar(&format!("SELECT seq FROM {table} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what,
                id: id.to_string(),
            })
    }

    /// Models that were ever promoted, promoted last first (at most `limit`):
    /// the candidates for `latest` when the service starts.
    pub async fn promoted_models(&self, limit: i64) -> Result<Vec<ModelRow>, StoreError> {
        self.models_by_promotion(limit).await
    }

    /// Closes every connection (waits for those in use).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
