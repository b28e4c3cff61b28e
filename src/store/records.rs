//! What a job leaves behind: metrics, events, checkpoints and models. Writes
//! by a worker are fenced: an `INSERT … SELECT … WHERE EXISTS (fence)` applies
//! only while the attempt holds its lease.

use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::jobs::FENCED;
use super::{from_json, from_json_opt, now_ms, Fence, Store, StoreError};

/// Which numbers a metrics row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// A training-loss logging window.
    Train,
    /// An evaluation.
    Eval,
}

impl Split {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Eval => "eval",
        }
    }
}

/// One metrics row.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    /// `train` or `eval`.
    pub split: String,
    /// Optimizer step.
    pub step: i64,
    /// Fractional epoch.
    pub epoch: f64,
    /// Training or evaluation loss.
    pub loss: Option<f64>,
    /// Every number of the row.
    pub data: serde_json::Value,
}

/// A job log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Increasing id (the SSE event id).
    pub seq: i64,
    /// The attempt it belongs to.
    pub attempt: i64,
    /// `info`, `warning` or `error`.
    pub level: String,
    /// What happened (`created`, `started`, `step`, `eval`, `checkpoint`, …).
    pub kind: String,
    /// Human-readable text.
    pub message: String,
    /// Structured details.
    pub data: Option<serde_json::Value>,
    /// When (Unix ms).
    pub created_at: i64,
}

/// A job log entry to add.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// `info`, `warning` or `error`.
    pub level: &'static str,
    /// What happened.
    pub kind: &'static str,
    /// Human-readable text.
    pub message: String,
    /// Structured details.
    pub data: Option<serde_json::Value>,
}

/// A checkpoint kept on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRow {
    /// Its step.
    pub step: i64,
    /// Its folder.
    pub path: String,
    /// The evaluation at that step, if any.
    pub metrics: Option<serde_json::Value>,
    /// When written (Unix ms).
    pub created_at: i64,
}

/// A fine-tuned model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRow {
    /// Its id (`model-…`).
    pub id: String,
    /// The job that made it.
    pub job_id: String,
    /// Its base model.
    pub base_model: String,
    /// Class names, by id.
    pub labels: Vec<String>,
    /// The final evaluation, if any.
    pub metrics: Option<serde_json::Value>,
    /// Its folder (Hugging Face classifier layout).
    pub path: String,
    /// When registered (Unix ms).
    pub created_at: i64,
}

/// What [`Store::finish_succeeded`] registers.
#[derive(Debug, Clone)]
pub struct NewModel {
    /// Its id.
    pub id: String,
    /// Its base model.
    pub base_model: String,
    /// Class names.
    pub labels: Vec<String>,
    /// The final evaluation.
    pub metrics: Option<serde_json::Value>,
    /// Its folder.
    pub path: String,
}

const MODEL_COLUMNS: &str = "id, job_id, base_model, labels, metrics, path, created_at";

fn model(row: &SqliteRow) -> Result<ModelRow, StoreError> {
    Ok(ModelRow {
        id: row.try_get("id")?,
        job_id: row.try_get("job_id")?,
        base_model: row.try_get("base_model")?,
        labels: from_json(row.try_get("labels")?)?,
        metrics: from_json_opt(row.try_get("metrics")?)?,
        path: row.try_get("path")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Records (or, on a replayed step, overwrites) a metrics row.
    pub async fn record_metric(
        &self,
        fence: &Fence,
        split: Split,
        step: i64,
        epoch: f64,
        loss: Option<f64>,
        data: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO metrics (job_id, split, step, epoch, loss, data, attempt, created_at)
             SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM jobs WHERE {FENCED})
             ON CONFLICT (job_id, split, step) DO UPDATE SET epoch = excluded.epoch,
                 loss = excluded.loss, data = excluded.data, attempt = excluded.attempt"
        );
        self.fenced_write(
            sqlx::query(&sql)
                .bind(&fence.job_id)
                .bind(split.as_str())
                .bind(step)
                .bind(epoch)
                .bind(loss)
                .bind(serde_json::to_string(data)?)
                .bind(fence.attempt)
                .bind(now_ms()),
            fence,
        )
        .await
    }

    /// A job's metrics by split then step.
    pub async fn list_metrics(&self, job_id: &str) -> Result<Vec<MetricRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT split, step, epoch, loss, data FROM metrics WHERE job_id = ?
             ORDER BY split DESC, step",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MetricRow {
                    split: r.try_get("split")?,
                    step: r.try_get("step")?,
                    epoch: r.try_get("epoch")?,
                    loss: r.try_get("loss")?,
                    data: from_json(r.try_get("data")?)?,
                })
            })
            .collect()
    }

    /// Appends to a job's log. With a fence, only while it holds; without
    /// (client actions), unconditionally at the job's current attempt.
    pub async fn add_event(
        &self,
        job_id: &str,
        fence: Option<&Fence>,
        event: NewEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let data = event.data.as_ref().map(serde_json::to_string).transpose()?;
        let query = match fence {
            Some(_) => format!(
                "INSERT INTO events (job_id, attempt, level, kind, message, data, created_at)
                 SELECT id, attempt, ?, ?, ?, ?, ? FROM jobs WHERE {FENCED}"
            ),
            None => "INSERT INTO events (job_id, attempt, level, kind, message, data, created_at)
                 SELECT id, attempt, ?, ?, ?, ?, ? FROM jobs WHERE id = ?"
                .to_string(),
        };
        let mut q = sqlx::query(&query)
            .bind(event.level)
            .bind(event.kind)
            .bind(&event.message)
            .bind(data)
            .bind(now_ms())
            .bind(job_id);
        if let Some(f) = fence {
            q = q.bind(f.attempt).bind(&f.owner);
        }
        let done = q.execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(done == 1)
    }

    /// A job's log entries after `after_seq`, oldest first.
    pub async fn list_events(
        &self,
        job_id: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, attempt, level, kind, message, data, created_at FROM events
             WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(job_id)
        .bind(after_seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(EventRow {
                    seq: r.try_get("seq")?,
                    attempt: r.try_get("attempt")?,
                    level: r.try_get("level")?,
                    kind: r.try_get("kind")?,
                    message: r.try_get("message")?,
                    data: from_json_opt(r.try_get("data")?)?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Records a written checkpoint.
    pub async fn add_checkpoint(
        &self,
        fence: &Fence,
        step: i64,
        path: &str,
        metrics: Option<&serde_json::Value>,
    ) -> Result<bool, StoreError> {
        let metrics = metrics.map(serde_json::to_string).transpose()?;
        let sql = format!(
            "INSERT INTO checkpoints (job_id, step, path, metrics, attempt, created_at)
             SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM jobs WHERE {FENCED})
             ON CONFLICT (job_id, step) DO UPDATE SET path = excluded.path,
                 metrics = excluded.metrics, attempt = excluded.attempt"
        );
        self.fenced_write(
            sqlx::query(&sql)
                .bind(&fence.job_id)
                .bind(step)
                .bind(path)
                .bind(metrics)
                .bind(fence.attempt)
                .bind(now_ms()),
            fence,
        )
        .await
    }

    /// Forgets a checkpoint deleted under `save_total_limit`.
    pub async fn remove_checkpoint(&self, fence: &Fence, step: i64) -> Result<bool, StoreError> {
        let sql = format!(
            "DELETE FROM checkpoints WHERE job_id = ? AND step = ?
               AND EXISTS (SELECT 1 FROM jobs WHERE {FENCED})"
        );
        self.fenced_write(sqlx::query(&sql).bind(&fence.job_id).bind(step), fence)
            .await
    }

    /// A job's kept checkpoints by step.
    pub async fn list_checkpoints(&self, job_id: &str) -> Result<Vec<CheckpointRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT step, path, metrics, created_at FROM checkpoints WHERE job_id = ?
             ORDER BY step",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CheckpointRow {
                    step: r.try_get("step")?,
                    path: r.try_get("path")?,
                    metrics: from_json_opt(r.try_get("metrics")?)?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Registers the job's model and marks it succeeded, in one transaction;
    /// `None` (and nothing written) when the fence no longer holds.
    pub async fn finish_succeeded(
        &self,
        fence: &Fence,
        new: NewModel,
    ) -> Result<Option<ModelRow>, StoreError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        let done = sqlx::query(&format!(
            "UPDATE jobs SET status = 'succeeded', model_id = ?, lease_owner = NULL,
                 lease_expires_at = NULL, finished_at = ?, updated_at = ?, error = NULL
             WHERE {FENCED}"
        ))
        .bind(&new.id)
        .bind(now)
        .bind(now)
        .bind(&fence.job_id)
        .bind(fence.attempt)
        .bind(&fence.owner)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done != 1 {
            return Ok(None);
        }
        let row = sqlx::query(&format!(
            "INSERT INTO models (id, job_id, base_model, labels, metrics, path, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {MODEL_COLUMNS}"
        ))
        .bind(&new.id)
        .bind(&fence.job_id)
        .bind(&new.base_model)
        .bind(serde_json::to_string(&new.labels)?)
        .bind(
            new.metrics
                .as_ref()
                .map(serde_json::to_string)
                .transpose()?,
        )
        .bind(&new.path)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let out = model(&row)?;
        tx.commit().await?;
        Ok(Some(out))
    }

    /// One model.
    pub async fn get_model(&self, id: &str) -> Result<ModelRow, StoreError> {
        let row = sqlx::query(&format!("SELECT {MODEL_COLUMNS} FROM models WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "model",
                id: id.to_string(),
            })?;
        model(&row)
    }

    /// Models, newest first.
    pub async fn list_models(&self, limit: i64) -> Result<Vec<ModelRow>, StoreError> {
        sqlx::query(&format!(
            "SELECT {MODEL_COLUMNS} FROM models ORDER BY seq DESC LIMIT ?"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(model)
        .collect()
    }
}
