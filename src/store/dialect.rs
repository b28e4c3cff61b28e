//! What differs between SQLite and PostgreSQL, side by side; every other
//! statement of the store is portable and written once.
//!
//! * A write transaction: SQLite takes the database's write lock at once
//!   (`BEGIN IMMEDIATE`), so concurrent writers queue on the busy timeout
//!   instead of failing with `SQLITE_BUSY` half-way through; PostgreSQL runs
//!   READ COMMITTED and locks the rows it must.
//! * The claim: PostgreSQL's `FOR UPDATE SKIP LOCKED` lets nodes claiming at
//!   once take different jobs instead of queueing on the same row.
//! * Row locks on a job (PostgreSQL's `FOR NO KEY UPDATE`): a fenced write, a
//!   cancel or a log entry holds the job row until it commits, so a claim or
//!   a rescue cannot slip in between its check and its write, and a job's log
//!   entries take increasing ids in commit order. SQLite's write lock does both.
//! * The clock leases are measured by: the database's, so nodes whose clocks
//!   disagree still agree on when a lease runs out.
//! * Promotions: PostgreSQL serialises them with an advisory lock, so each
//!   ranks strictly after the last; SQLite's write lock does that too.
//! * Notifications (`pg_notify`, sent at commit): SQLite has no other node to tell.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Pool, Postgres, Sqlite, SqlitePool, Transaction};

use super::StoreError;

/// The fence condition (see [`super::Fence::bind`]), as a literal for `concat!`.
macro_rules! fenced {
    () => {
        "id = $1 AND attempt = $2 AND lease_owner = $3 AND status = 'running'"
    };
}
pub(super) use fenced;

/// The database's clock in Unix milliseconds, per backend (macros, so the
/// statements built with `concat!` and `NOW_MS` share one text).
macro_rules! sqlite_now_ms {
    () => {
        "CAST(unixepoch('subsec') * 1000 AS INTEGER)"
    };
}
macro_rules! postgres_now_ms {
    () => {
        "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
    };
}

/// The statements and fragments that differ between the backends.
pub(super) trait Dialect: sqlx::Database {
    /// Opens a write transaction.
    const BEGIN_WRITE: &'static str;
    /// Opens a read-only transaction that sees one snapshot throughout.
    const BEGIN_SNAPSHOT: &'static str;
    /// The `seq` of the oldest queued job whose retry time (if any) has
    /// come, locked for the claim.
    const NEXT_QUEUED: &'static str;
    /// One row while the fence (`$1`-`$3`) holds, locking the job.
    const FENCE_HELD: &'static str;
    /// The status of job `$1`, locking it.
    const LOCK_JOB: &'static str;
    /// Now, in Unix milliseconds, by the database's clock.
    const NOW_MS: &'static str;
    /// Serialises promotions (and model deletions) until the transaction
    /// ends, so each promotion ranks strictly after the one before; `None`
    /// where the write lock already does.
    const LOCK_PROMOTIONS: Option<&'static str>;
    /// The larger of two values (SQLite's scalar `MAX`, PostgreSQL's `GREATEST`).
    const GREATEST: &'static str;
    /// Sends notification `$1` (payload `$2`) at commit; `None` where no
    /// other node could hear it.
    const NOTIFY: Option<&'static str>;
    /// Appended to a `SELECT` whose rows a claim takes, so that nodes
    /// claiming at once take different rows (nothing where the write lock
    /// already serialises claims).
    const SKIP_LOCKED: &'static str;

    /// The statement that makes `table`'s `seq` continue after its highest
    /// value (after rows were copied in with their ids); `None` where the
    /// database does that by itself.
    fn reset_sequence(table: &str) -> Option<String>;
}

impl Dialect for Sqlite {
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const BEGIN_SNAPSHOT: &'static str = "BEGIN";
    const NEXT_QUEUED: &'static str = concat!(
        "SELECT seq FROM jobs WHERE status = 'queued' AND (retry_at IS NULL OR retry_at <= ",
        sqlite_now_ms!(),
        ") ORDER BY seq LIMIT 1"
    );
    const FENCE_HELD: &'static str = concat!("SELECT 1 FROM jobs WHERE ", fenced!());
    const LOCK_JOB: &'static str = "SELECT status FROM jobs WHERE id = $1";
    const NOW_MS: &'static str = sqlite_now_ms!();
    const LOCK_PROMOTIONS: Option<&'static str> = None;
    const GREATEST: &'static str = "MAX";
    const NOTIFY: Option<&'static str> = None;
    const SKIP_LOCKED: &'static str = "";

    fn reset_sequence(_table: &str) -> Option<String> {
        None // AUTOINCREMENT keeps sqlite_sequence at the highest id inserted
    }
}

impl Dialect for Postgres {
    const BEGIN_WRITE: &'static str = "BEGIN";
    const BEGIN_SNAPSHOT: &'static str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
    const NEXT_QUEUED: &'static str = concat!(
        "SELECT seq FROM jobs WHERE status = 'queued' AND (retry_at IS NULL OR retry_at <= ",
        postgres_now_ms!(),
        ") ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED"
    );
    const FENCE_HELD: &'static str =
        concat!("SELECT 1 FROM jobs WHERE ", fenced!(), " FOR NO KEY UPDATE");
    const LOCK_JOB: &'static str = "SELECT status FROM jobs WHERE id = $1 FOR NO KEY UPDATE";
    const NOW_MS: &'static str = postgres_now_ms!();
    // A transaction-scoped advisory lock; the key is arbitrary but fixed.
    const LOCK_PROMOTIONS: Option<&'static str> = Some("SELECT pg_advisory_xact_lock(7242001)");
    const GREATEST: &'static str = "GREATEST";
    const NOTIFY: Option<&'static str> = Some("SELECT pg_notify($1, $2)");
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";

    fn reset_sequence(table: &str) -> Option<String> {
        Some(format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'seq'),
                 COALESCE((SELECT MAX(seq) FROM {table}), 0) + 1, false)"
        ))
    }
}

/// Starts a write transaction.
pub(super) async fn begin_write<DB: Dialect>(
    pool: &Pool<DB>,
) -> Result<Transaction<'static, DB>, StoreError> {
    Ok(pool.begin_with(DB::BEGIN_WRITE).await?)
}

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per node.
const MAX_CONNECTIONS: u32 = 8;
/// How long a statement may wait for a connection. Short, so that while
/// the database is away requests fail fast (503) instead of hanging; the
/// callers that must get through (the workers' outcome writes) retry.
/// PostgreSQL's is shorter still: a stopped server refuses connections at
/// once, and sqlx keeps trying until this runs out, so it is how long a request
/// takes to say the database is away. SQLite's waits out writers queued on its
/// one write lock, which can take seconds under load.
const SQLITE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_millis(1500);

/// Whether a connection going back to the pool is outside any transaction.
/// One whose transaction could not be ended (a COMMIT or ROLLBACK that
/// failed, on a full disk say) is closed rather than handed to the next
/// caller, who would find it mid-transaction.
fn idle<DB: sqlx::Database>(conn: &mut DB::Connection) -> bool {
    use sqlx::TransactionManager as _;
    DB::TransactionManager::get_transaction_depth(conn) == 0
}

/// Opens (creating if needed) the SQLite file `path` in WAL mode and migrates it.
pub(super) async fn open_sqlite(path: &Path) -> Result<SqlitePool, StoreError> {
    let options = SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(SQLITE_ACQUIRE_TIMEOUT)
        .after_release(|conn, _| Box::pin(std::future::ready(Ok(idle::<Sqlite>(conn)))))
        .connect_with(options)
        .await?;
    SQLITE_MIGRATIONS.run(&pool).await?;
    Ok(pool)
}

/// Connects to the PostgreSQL database at `url` and migrates it; sqlx's
/// migrator holds an advisory lock meanwhile, so nodes starting at once
/// apply each migration once.
pub(super) async fn open_postgres(url: &str) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(url)?.application_name("tuneserve");
    let pool = PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(POSTGRES_ACQUIRE_TIMEOUT)
        .after_release(|conn, _| Box::pin(std::future::ready(Ok(idle::<Postgres>(conn)))))
        .connect_with(options)
        .await?;
    POSTGRES_MIGRATIONS.run(&pool).await?;
    Ok(pool)
}
