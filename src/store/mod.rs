//! Persistence: the only module that speaks SQL, on SQLite (one node, the
//! embedded default) or PostgreSQL (any number of nodes on one database).
//!
//! Each method's SQL is portable and written once; [`with_pool!`] compiles it
//! for both backends (sqlx's `Any` driver would do that at run time, but it
//! knows no JSON, so rows could not map onto typed JSON columns). What differs
//! between the two — how a write transaction begins, claims that skip rows
//! another node holds, row locks, the clock leases are measured by,
//! notifications — sits side by side in [`dialect`]. The schema is the same on
//! both: `migrations/sqlite` and `migrations/postgres` hold the same tables and
//! columns in each engine's types, applied at open (on PostgreSQL under sqlx's
//! advisory lock, so nodes starting together migrate once).
//!
//! Rows map onto their structs with sqlx's derives: `FromRow` for rows,
//! `#[sqlx(json)]` for JSON columns, and the text-valued enums ([`JobStatus`],
//! [`Split`], [`Level`]) stored by name, so a value read back is the typed value
//! that was written (hyperparameters included).
//!
//! The jobs table doubles as the work queue (see [`crate::queue`]): claims,
//! heartbeats and every write a worker makes are fenced by [`Fence`] (job id,
//! attempt and lease owner), so a worker that lost its lease changes nothing.
//! Fenced statements name the fence as `$1`, `$2`, `$3` (see `FENCED`) and
//! [`Fence::bind`] is the one place that binds it.

mod copy;
mod datasets;
mod dialect;
pub mod event_data;
mod jobs;
mod leases;
mod models;
mod node_lock;
mod nodes;
mod notices;
mod outbox;
mod records;
mod steps;
mod text_enum;
mod url;

use std::sync::Arc;

use sqlx::{PgPool, SqlitePool};

pub use copy::Copied;
pub use datasets::{DatasetRow, NewDataset};
pub use jobs::{Fence, JobRow, JobStatus, NewJob, Progress, Rescued};
pub use leases::Lease;
pub use models::{Finished, ModelRow, NewModel};
pub use nodes::NodeRow;
pub use notices::{Notice, Notices};
pub use outbox::{Delivery, Subject, WebhookEvent};
pub use records::{
    CheckpointRow, EventFilter, EventKind, EventRow, Level, MetricRow, NewEvent, Split,
};
pub use url::DatabaseUrl;

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed a statement.
    #[error("database: {0}")]
    Database(sqlx::Error),
    /// Applying the schema failed.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database cannot be opened as asked (a malformed URL, a SQLite file
    /// another node holds).
    #[error("{0}")]
    Open(String),
    /// A row referred to does not exist.
    #[error("{what} `{id}` not found")]
    NotFound {
        /// The kind of row (`dataset`, `job`, `model`).
        what: &'static str,
        /// The id looked up, as the caller gave it.
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

impl StoreError {
    /// Whether the database could not be reached at all (no connection within
    /// the acquire timeout, a connection lost, a server shutting down): the
    /// request may succeed once it is back.
    pub fn is_unreachable(&self) -> bool {
        let Self::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                // PostgreSQL: class 08 (connection exceptions), 57P01-57P03
                // (the server shutting down or starting up).
                code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03")
            }),
            _ => false,
        }
    }

    /// Whether the database refused a write because its disk is full
    /// (SQLite's `SQLITE_FULL`, PostgreSQL's `disk_full`, or the OS's ENOSPC).
    pub fn is_disk_full(&self) -> bool {
        let Self::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(io) => crate::fault::is_disk_full(io),
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                // SQLite's primary result code 13 (extended codes keep it in
                // their low byte); PostgreSQL's class 53 is insufficient resources.
                let sqlite_full = code.parse::<i32>().is_ok_and(|c| c & 0xff == 13);
                sqlite_full || code == "53100"
            }),
            _ => false,
        }
    }

    /// What retrying can achieve: rows that are missing or corrupt stay so;
    /// everything else is the database's trouble and may pass.
    pub fn cause(&self) -> crate::fault::Cause {
        use crate::fault::Cause;
        match self {
            Self::NotFound { .. } | Self::Conflict(_) | Self::Corrupt(_) | Self::Json(_) => {
                Cause::Permanent
            }
            Self::Open(_) | Self::Migrate(_) => Cause::Unknown,
            Self::Database(_) => Cause::Transient,
        }
    }
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
    backend: Backend,
    /// Where every webhook event goes besides a job's own receivers.
    receivers: outbox::Receivers,
}

/// The connection pool of one backend.
#[derive(Debug, Clone)]
enum Backend {
    /// A SQLite file, and the lock that keeps other nodes off it.
    Sqlite(SqlitePool, Arc<node_lock::NodeLock>),
    /// A PostgreSQL database.
    Postgres(PgPool),
}

/// Runs `$body` once per backend: `$pool` is the backend's pool and `$db` its
/// sqlx database type (`sqlx::Sqlite` or `sqlx::Postgres`), so one method body,
/// written once, is compiled against both.
macro_rules! with_pool {
    ($store:expr, |$pool:ident, $db:ident| $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite($pool, _) => {
                #[allow(dead_code)]
                type $db = ::sqlx::Sqlite;
                $body
            }
            $crate::store::Backend::Postgres($pool) => {
                #[allow(dead_code)]
                type $db = ::sqlx::Postgres;
                $body
            }
        }
    };
}
pub(crate) use with_pool;

/// Milliseconds since the Unix epoch, now: the unit of every timestamp column.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// A new random row id: `prefix`, `-` and 16 hex digits (`ds-…`, `job-…`,
/// `model-…`), the one form of every id the service makes.
pub fn new_id(prefix: &str) -> String {
    let raw = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &raw[..16])
}

impl Store {
    /// Connects to `url` (creating a SQLite file if needed) and migrates it.
    /// A SQLite file serves one node: a second store on the same file, in
    /// this process or another, is refused with [`StoreError::Open`].
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, StoreError> {
        let backend = match url {
            DatabaseUrl::Sqlite(path) => {
                let lock = Arc::new(node_lock::NodeLock::acquire(path)?);
                Backend::Sqlite(dialect::open_sqlite(path).await?, lock)
            }
            DatabaseUrl::Postgres(url) => Backend::Postgres(dialect::open_postgres(url).await?),
        };
        Ok(Self {
            backend,
            receivers: Default::default(),
        })
    }

    /// Opens (creating if needed) the SQLite database file `path`.
    pub async fn open(path: &std::path::Path) -> Result<Self, StoreError> {
        Self::connect(&DatabaseUrl::Sqlite(path.to_path_buf())).await
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(..) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// `Ok` when the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, |pool, Db| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// `Ok` when the database takes a write (one small committed row): what a
    /// full disk or a read-only mount refuses while reads still work.
    pub async fn probe_write(&self) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO health (id, checked_at) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at";
        with_pool!(self, |pool, Db| {
            let mut tx = dialect::begin_write(pool).await?;
            sqlx::query(SQL).bind(now_ms()).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The `seq` of row `after` of `table`, where a page that follows it
    /// starts; `None` without one (the page starts at the list's start).
    /// [`StoreError::NotFound`] (naming `what`) for an unknown `after`.
    async fn seq_of(
        &self,
        table: &str,
        what: &'static str,
        after: Option<&str>,
    ) -> Result<Option<i64>, StoreError> {
        let Some(id) = after else {
            return Ok(None);
        };
        let sql = format!("SELECT seq FROM {table} WHERE id = $1");
        let seq: Option<i64> = with_pool!(self, |pool, Db| {
            sqlx::query_scalar(&sql)
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        seq.map(Some).ok_or_else(|| StoreError::NotFound {
            what,
            id: id.to_string(),
        })
    }

    /// Models that were ever promoted, promoted last first (at most `limit`):
    /// the candidates for `latest` when the service starts.
    pub async fn promoted_models(&self, limit: i64) -> Result<Vec<ModelRow>, StoreError> {
        self.models_by_promotion(limit).await
    }

    /// Closes every connection (waits for those in use) and, on SQLite, lets
    /// another node open the file.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(pool, lock) => {
                pool.close().await;
                lock.release();
            }
            Backend::Postgres(pool) => pool.close().await,
        }
    }
}
