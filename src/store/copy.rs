//! `tuneserve migrate-store`: every table copied from one store to another
//! (SQLite to PostgreSQL, or back), in dependency order, inside one
//! transaction on the target, ids and sequences kept. The source is read in
//! one snapshot; the target must be empty. Node heartbeats are not copied.

use serde_json::Value as JsonValue;
use sqlx::types::Json;
use sqlx::{Database, Decode, Encode, Postgres, Row, Sqlite, Transaction, Type};

use super::dialect::{begin_write, Dialect};
use super::steps::Statement;
use super::{Backend, Store, StoreError};

/// How many rows of a table were copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// The table's name in the schema.
    pub table: &'static str,
    /// Rows copied: all the source's snapshot held.
    pub rows: u64,
}

/// A column's type, the same on both backends' schemas.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Int,
    Real,
    Text,
    Json,
    Bool,
}

use Kind::{Bool, Int, Json as J, Real, Text};

/// A table to copy: its columns and the unique order it is read in.
struct Table {
    name: &'static str,
    order: &'static str,
    columns: &'static [(&'static str, Kind)],
}

/// Every table with data, parents before children (foreign keys hold at
/// every insert).
const TABLES: [Table; 7] = [
    Table {
        name: "datasets",
        order: "seq",
        columns: &[
            ("seq", Int),
            ("id", Text),
            ("name", Text),
            ("format", Text),
            ("rows", Int),
            ("labels", J),
            ("label_counts", J),
            ("path", Text),
            ("hub_repo", Text),
            ("created_at", Int),
        ],
    },
    Table {
        name: "jobs",
        order: "seq",
        columns: &[
            ("seq", Int),
            ("id", Text),
            ("status", Text),
            ("base_model", Text),
            ("train_dataset", Text),
            ("eval_dataset", Text),
            ("hyperparameters", J),
            ("suffix", Text),
            ("attempt", Int),
            ("max_attempts", Int),
            ("lease_owner", Text),
            ("lease_expires_at", Int),
            ("cancel_requested", Bool),
            ("step", Int),
            ("total_steps", Int),
            ("epoch", Real),
            ("tokens", Int),
            ("tokens_per_second", Real),
            ("error", Text),
            ("model_id", Text),
            ("created_at", Int),
            ("started_at", Int),
            ("finished_at", Int),
            ("updated_at", Int),
            ("retry_at", Int),
            ("retries", Int),
            ("webhooks", J),
            ("integrations", J),
            ("tracking", J),
        ],
    },
    Table {
        name: "metrics",
        order: "job_id, split, step",
        columns: &[
            ("job_id", Text),
            ("split", Text),
            ("step", Int),
            ("epoch", Real),
            ("loss", Real),
            ("data", J),
            ("attempt", Int),
            ("created_at", Int),
        ],
    },
    Table {
        name: "events",
        order: "seq",
        columns: &[
            ("seq", Int),
            ("job_id", Text),
            ("attempt", Int),
            ("level", Text),
            ("kind", Text),
            ("message", Text),
            ("data", J),
            ("created_at", Int),
        ],
    },
    Table {
        name: "checkpoints",
        order: "job_id, step",
        columns: &[
            ("job_id", Text),
            ("step", Int),
            ("path", Text),
            ("metrics", J),
            ("attempt", Int),
            ("created_at", Int),
        ],
    },
    Table {
        name: "models",
        order: "seq",
        columns: &[
            ("seq", Int),
            ("id", Text),
            ("job_id", Text),
            ("base_model", Text),
            ("labels", J),
            ("metrics", J),
            ("path", Text),
            ("created_at", Int),
            ("promoted_at", Int),
        ],
    },
    Table {
        name: "webhook_outbox",
        order: "seq",
        columns: &[
            ("seq", Int),
            ("message_id", Text),
            ("event_type", Text),
            ("job_id", Text),
            ("url", Text),
            ("subject", J),
            ("created_at", Int),
            ("attempts", Int),
            ("next_attempt_at", Int),
            ("claimed_by", Text),
            ("claim_expires_at", Int),
            ("done_at", Int),
            ("delivered", Bool),
        ],
    },
];

/// Rows read and inserted at a time.
const CHUNK: usize = 500;

/// One value of a row, as read.
#[derive(Debug, Clone)]
enum Value {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
    Json(Option<Json<JsonValue>>),
    Bool(Option<bool>),
}

/// A transaction on either backend.
enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// Runs `$body` with `$conn` the transaction's connection and `$db` its type.
macro_rules! with_tx {
    ($tx:expr, |$conn:ident, $db:ident| $body:expr) => {
        match $tx {
            Tx::Sqlite(tx) => {
                #[allow(dead_code)]
                type $db = Sqlite;
                let $conn = &mut **tx;
                $body
            }
            Tx::Postgres(tx) => {
                #[allow(dead_code)]
                type $db = Postgres;
                let $conn = &mut **tx;
                $body
            }
        }
    };
}

impl Store {
    /// Copies every row of this store into `target`, which must be empty;
    /// all or nothing.
    pub async fn copy_into(&self, target: &Store) -> Result<Vec<Copied>, StoreError> {
        let mut read = match &self.backend {
            Backend::Sqlite(pool, _) => Tx::Sqlite(pool.begin_with(Sqlite::BEGIN_SNAPSHOT).await?),
            Backend::Postgres(pool) => {
                Tx::Postgres(pool.begin_with(Postgres::BEGIN_SNAPSHOT).await?)
            }
        };
        let mut write = match &target.backend {
            Backend::Sqlite(pool, _) => Tx::Sqlite(begin_write(pool).await?),
            Backend::Postgres(pool) => Tx::Postgres(begin_write(pool).await?),
        };
        ensure_empty(&mut write).await?;
        let mut copied = Vec::new();
        for table in &TABLES {
            let mut rows = 0;
            loop {
                let chunk = read_chunk(&mut read, table, rows).await?;
                if chunk.is_empty() {
                    break;
                }
                rows += chunk.len() as u64;
                insert_chunk(&mut write, table, chunk).await?;
            }
            reset_sequence(&mut write, table).await?;
            copied.push(Copied {
                table: table.name,
                rows,
            });
        }
        match write {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(copied)
    }
}

async fn ensure_empty(tx: &mut Tx) -> Result<(), StoreError> {
    for table in &TABLES {
        let sql = format!("SELECT 1 FROM {} LIMIT 1", table.name);
        let found = with_tx!(tx, |conn, Db| {
            sqlx::query(&sql).fetch_optional(conn).await?.is_some()
        });
        if found {
            return Err(StoreError::Conflict(format!(
                "the target database already has {}: migrate-store copies into an empty one",
                table.name
            )));
        }
    }
    Ok(())
}

async fn read_chunk(
    tx: &mut Tx,
    table: &Table,
    offset: u64,
) -> Result<Vec<Vec<Value>>, StoreError> {
    let names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    let sql = format!(
        "SELECT {} FROM {} ORDER BY {} LIMIT $1 OFFSET $2",
        names.join(", "),
        table.name,
        table.order
    );
    let offset = i64::try_from(offset).unwrap_or(i64::MAX);
    with_tx!(tx, |conn, Db| {
        let rows = sqlx::query(&sql)
            .bind(CHUNK as i64)
            .bind(offset)
            .fetch_all(conn)
            .await?;
        let read = |row: &<Db as Database>::Row| -> Result<Vec<Value>, sqlx::Error> {
            let kinds = table.columns.iter().map(|(_, kind)| *kind);
            kinds
                .enumerate()
                .map(|(i, kind)| read_value(row, i, kind))
                .collect()
        };
        Ok(rows.iter().map(read).collect::<Result<_, _>>()?)
    })
}

async fn insert_chunk(tx: &mut Tx, table: &Table, rows: Vec<Vec<Value>>) -> Result<(), StoreError> {
    let width = table.columns.len();
    let tuples: Vec<String> = (0..rows.len())
        .map(|r| {
            let params: Vec<String> = (1..=width).map(|c| format!("${}", r * width + c)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    let names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES {}",
        table.name,
        names.join(", "),
        tuples.join(", ")
    );
    with_tx!(tx, |conn, Db| {
        let mut statement: Statement<'_, Db> = sqlx::query(&sql);
        for value in rows.into_iter().flatten() {
            statement = bind_value(statement, value);
        }
        statement.execute(conn).await?;
    });
    Ok(())
}

async fn reset_sequence(tx: &mut Tx, table: &Table) -> Result<(), StoreError> {
    if table.columns[0].0 != "seq" {
        return Ok(());
    }
    with_tx!(tx, |conn, Db| {
        if let Some(sql) = Db::reset_sequence(table.name) {
            sqlx::query(&sql).execute(conn).await?;
        }
    });
    Ok(())
}

fn read_value<R: Row>(row: &R, i: usize, kind: Kind) -> Result<Value, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    f64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    bool: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    Json<JsonValue>: for<'r> Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(match kind {
        Int => Value::Int(row.try_get(i)?),
        Real => Value::Real(row.try_get(i)?),
        Text => Value::Text(row.try_get(i)?),
        J => Value::Json(row.try_get(i)?),
        Bool => Value::Bool(row.try_get(i)?),
    })
}

fn bind_value<'q, DB: Database>(statement: Statement<'q, DB>, value: Value) -> Statement<'q, DB>
where
    Option<i64>: Encode<'q, DB> + Type<DB>,
    Option<f64>: Encode<'q, DB> + Type<DB>,
    Option<String>: Encode<'q, DB> + Type<DB>,
    Option<bool>: Encode<'q, DB> + Type<DB>,
    Option<Json<JsonValue>>: Encode<'q, DB> + Type<DB>,
{
    match value {
        Value::Int(v) => statement.bind(v),
        Value::Real(v) => statement.bind(v),
        Value::Text(v) => statement.bind(v),
        Value::Json(v) => statement.bind(v),
        Value::Bool(v) => statement.bind(v),
    }
}
