//! The `nodes` table: each node renews its row while it runs (by the
//! database's clock), so any node can say which nodes are alive.

use sqlx::types::Json;

use super::dialect::{begin_write, Dialect};
use super::{with_pool, Store, StoreError};

/// A node serving this database.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct NodeRow {
    /// `--node-id`.
    pub id: String,
    /// Its training devices, one worker each.
    #[sqlx(json)]
    pub devices: Vec<String>,
    /// When it started (Unix ms).
    pub started_at: i64,
    /// Its last heartbeat (Unix ms, the database's clock).
    pub last_seen: i64,
}

/// Rows of nodes unseen this long (ms) are deleted by the next heartbeat.
const FORGET_AFTER_MS: i64 = 24 * 3600 * 1000;

impl Store {
    /// Records that node `id` (with `devices`, started at `started_at`) is
    /// alive now, and forgets nodes unseen for a day.
    pub async fn node_heartbeat(
        &self,
        id: &str,
        devices: &[String],
        started_at: i64,
    ) -> Result<(), StoreError> {
        with_pool!(self, |pool, Db| {
            let upsert = format!(
                "INSERT INTO nodes (id, devices, started_at, last_seen) VALUES ($1, $2, $3, {now})
                 ON CONFLICT (id) DO UPDATE SET devices = excluded.devices,
                     started_at = excluded.started_at, last_seen = excluded.last_seen",
                now = Db::NOW_MS
            );
            let forget = format!("DELETE FROM nodes WHERE last_seen < {} - $1", Db::NOW_MS);
            let mut tx = begin_write(pool).await?;
            sqlx::query(&upsert)
                .bind(id)
                .bind(Json(devices))
                .bind(started_at)
                .execute(&mut *tx)
                .await?;
            sqlx::query(&forget)
                .bind(FORGET_AFTER_MS)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Nodes heard from within the last `within_ms`, by id.
    pub async fn list_nodes(&self, within_ms: i64) -> Result<Vec<NodeRow>, StoreError> {
        with_pool!(self, |pool, Db| {
            let sql = format!(
                "SELECT id, devices, started_at, last_seen FROM nodes
                 WHERE last_seen >= {} - $1 ORDER BY id",
                Db::NOW_MS
            );
            Ok(sqlx::query_as(&sql).bind(within_ms).fetch_all(pool).await?)
        })
    }

    /// Forgets node `id` (it is shutting down).
    pub async fn remove_node(&self, id: &str) -> Result<(), StoreError> {
        with_pool!(self, |pool, Db| {
            let mut tx = begin_write(pool).await?;
            sqlx::query("DELETE FROM nodes WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }
}
