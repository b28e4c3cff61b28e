//! What a job leaves behind: metrics, events and checkpoints (its model is in
//! [`super::models`]). Writes by a worker are fenced: they run while the
//! attempt's fence holds (and the job row is locked), and an
//! `INSERT … SELECT … WHERE EXISTS (fence)` applies only while the attempt
//! holds its lease.

use serde_json::Value;
use sqlx::types::Json;
use sqlx::FromRow;

use super::dialect::begin_write;
use super::jobs::FENCED;
use super::steps::Steps;
use super::text_enum::text_enum;
use super::{now_ms, with_pool, Fence, Store, StoreError};

text_enum! {
    /// Which numbers a metrics row holds.
    pub enum Split {
        /// A training-loss logging window.
        Train,
        /// An evaluation's numbers (loss, accuracy, macro F1, …); step 0 is the baseline.
        Eval,
    }
}

text_enum! {
    /// How much a job log entry matters.
    pub enum Level {
        /// The job's normal life (queued, started, steps, evaluations, …).
        Info,
        /// Something a person should look at (a lease expired, a checkpoint skipped).
        Warning,
        /// An attempt failed.
        Error,
    }
}

text_enum! {
    /// What a job log entry says happened: its `kind` in the API and the SSE
    /// event's name.
    pub enum EventKind {
        /// A client submitted the job.
        Created,
        /// A worker started an attempt (`data`: the worker and device).
        Started,
        /// The trainer planned its steps (`data`: `total_steps`, `start_step`).
        Plan,
        /// An attempt resumes from a checkpoint: the steps before it are not
        /// trained again.
        Resumed,
        /// A training-loss logging window (`data`: its numbers).
        Step,
        /// An evaluation (`data`: its metrics).
        Eval,
        /// A checkpoint was written (`data`: `step`, `path`).
        Checkpoint,
        /// A checkpoint does not load and was skipped when resuming.
        CheckpointSkipped,
        /// Early stopping ended training.
        EarlyStopped,
        /// Exporting the model failed in a way that may pass; it is tried again.
        ExportRetry,
        /// The job succeeded (`data`: `model`, `promoted`).
        Succeeded,
        /// An attempt failed (`data`: `next_status`, `cause`, the retry's wait).
        Error,
        /// A client asked for a cancel.
        CancelRequested,
        /// A worker stopped the running job at a client's request (a queued job's cancel logs
        /// only `cancel_requested`).
        Cancelled,
        /// A client queued the failed job again.
        Retried,
        /// The attempt was handed back to the queue for a shutdown.
        Interrupted,
        /// The worker's lease ran out; the job was queued again or failed.
        LeaseExpired,
        /// A webhook receiver took an event (`data`: `event`, `url`,
        /// `webhook_id`, `attempt`, `status`).
        WebhookDelivered,
        /// A try to deliver a webhook failed (`data`: `event`, `url`,
        /// `webhook_id`, `attempt`, `error`, `gave_up`, and `retry_in_ms`
        /// unless it gave up).
        WebhookFailed,
        /// What the job's experiment tracker did (`data`: `tracker`, and the
        /// run or what was dropped).
        Tracking,
    }
}

/// Which entries of a job's log a read returns: those of `kind` and of
/// `level` where given (both when both are), every entry by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only entries of this kind.
    pub kind: Option<EventKind>,
    /// Only entries of this level.
    pub level: Option<Level>,
}

/// One metrics row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct MetricRow {
    /// A training window or an evaluation.
    pub split: Split,
    /// Optimizer step (0 for the baseline evaluation).
    pub step: i64,
    /// Fractional epoch.
    pub epoch: f64,
    /// Training or evaluation loss; `None` when the row has none.
    pub loss: Option<f64>,
    /// Every number of the row, as the trainer reported it.
    #[sqlx(json)]
    pub data: Value,
}

/// A job log entry as stored (the API's `JobEvent`, `seq` its id).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct EventRow {
    /// Increasing over the whole log (the SSE event id).
    pub seq: i64,
    /// The job's attempt when it was written (0 before the first start).
    pub attempt: i64,
    /// How much it matters.
    pub level: Level,
    /// What happened.
    pub kind: EventKind,
    /// Human-readable text.
    pub message: String,
    /// Structured details, when the kind has any.
    #[sqlx(json(nullable))]
    pub data: Option<Value>,
    /// When (Unix ms).
    pub created_at: i64,
}

/// A job log entry to add; the store numbers and dates it and stamps the job's attempt.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// How much it matters.
    pub level: Level,
    /// What happened.
    pub kind: EventKind,
    /// Human-readable text.
    pub message: String,
    /// Structured details, when the kind has any (see [`EventKind`]).
    pub data: Option<Value>,
}

impl NewEvent {
    /// An `info` entry.
    pub fn info(kind: EventKind, message: impl Into<String>, data: Option<Value>) -> Self {
        Self {
            level: Level::Info,
            kind,
            message: message.into(),
            data,
        }
    }
}

/// A checkpoint on disk: rows go when pruning deletes the folder, under
/// `save_total_limit` or `keep_checkpoints`.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CheckpointRow {
    /// The optimizer step it was written after (its `step-N` folder).
    pub step: i64,
    /// Its folder, relative to the data folder.
    pub path: String,
    /// The evaluation at that step; `None` when none ran there.
    #[sqlx(json(nullable))]
    pub metrics: Option<Value>,
    /// When written (Unix ms).
    pub created_at: i64,
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
        data: &Value,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO metrics (job_id, split, step, epoch, loss, data, attempt, created_at)
             SELECT $1, $4, $5, $6, $7, $8, $2, $9 WHERE EXISTS (SELECT 1 FROM jobs WHERE {FENCED})
             ON CONFLICT (job_id, split, step) DO UPDATE SET epoch = excluded.epoch,
                 loss = excluded.loss, data = excluded.data, attempt = excluded.attempt"
        );
        with_pool!(self, |pool, Db| {
            let statement = fence
                .bind::<Db>(&sql)
                .bind(split)
                .bind(step)
                .bind(epoch)
                .bind(loss)
                .bind(Json(data))
                .bind(now_ms());
            Db::fenced_write(pool, fence, statement).await
        })
    }

    /// A job's metrics: training windows first, then evaluations, each by step.
    pub async fn list_metrics(&self, job_id: &str) -> Result<Vec<MetricRow>, StoreError> {
        const SQL: &str = "SELECT split, step, epoch, loss, data FROM metrics WHERE job_id = $1
             ORDER BY split DESC, step";
        with_pool!(self, |pool, Db| {
            Ok(sqlx::query_as(SQL).bind(job_id).fetch_all(pool).await?)
        })
    }

    /// Appends to a job's log and returns the entry written. With a fence,
    /// only while it holds (`None` when it no longer does); without (client
    /// actions), at the job's current attempt (`None` when there is no such job).
    /// The job row is locked meanwhile, so a job's entries are numbered in
    /// the order they commit, whichever node writes them.
    pub async fn add_event(
        &self,
        job_id: &str,
        fence: Option<&Fence>,
        event: NewEvent,
    ) -> Result<Option<EventRow>, StoreError> {
        const INSERT: &str =
            "INSERT INTO events (job_id, attempt, level, kind, message, data, created_at)";
        const RETURNING: &str = "RETURNING seq, attempt, level, kind, message, data, created_at";
        let sql = match fence {
            Some(_) => format!(
                "{INSERT} SELECT id, attempt, $4, $5, $6, $7, $8 FROM jobs WHERE {FENCED} {RETURNING}"
            ),
            None => format!(
                "{INSERT} SELECT id, attempt, $2, $3, $4, $5, $6 FROM jobs WHERE id = $1 {RETURNING}"
            ),
        };
        let now = now_ms();
        with_pool!(self, |pool, Db| {
            let mut tx = begin_write(pool).await?;
            let (held, statement) = match fence {
                Some(f) => (Db::fence_held(&mut tx, f).await?, f.bind::<Db>(&sql)),
                None => {
                    let found = Db::lock_job(&mut tx, job_id).await?.is_some();
                    (found, sqlx::query(&sql).bind(job_id))
                }
            };
            if !held {
                return Ok(None);
            }
            let row = statement
                .bind(event.level)
                .bind(event.kind)
                .bind(event.message)
                .bind(event.data.map(Json))
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(row.map(|r| EventRow::from_row(&r)).transpose()?)
        })
    }

    /// A job's log entries after `after_seq`, oldest first.
    pub async fn list_events(
        &self,
        job_id: &str,
        after_seq: i64,
        limit: i64,
        only: &EventFilter,
    ) -> Result<Vec<EventRow>, StoreError> {
        const SQL: &str = "SELECT seq, attempt, level, kind, message, data, created_at
             FROM events WHERE job_id = $1 AND seq > $2
               AND ($4 IS NULL OR kind = $4) AND ($5 IS NULL OR level = $5)
             ORDER BY seq LIMIT $3";
        with_pool!(self, |pool, Db| {
            Ok(sqlx::query_as(SQL)
                .bind(job_id)
                .bind(after_seq)
                .bind(limit)
                .bind(only.kind)
                .bind(only.level)
                .fetch_all(pool)
                .await?)
        })
    }

    /// A job's log entries before `before_seq` (from the newest when
    /// `None`), newest first: the order of OpenAI's event list.
    pub async fn list_events_newest(
        &self,
        job_id: &str,
        before_seq: Option<i64>,
        limit: i64,
    ) -> Result<Vec<EventRow>, StoreError> {
        const SQL: &str = "SELECT seq, attempt, level, kind, message, data, created_at
             FROM events WHERE job_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3";
        with_pool!(self, |pool, Db| {
            Ok(sqlx::query_as(SQL)
                .bind(job_id)
                .bind(before_seq.unwrap_or(i64::MAX))
                .bind(limit)
                .fetch_all(pool)
                .await?)
        })
    }

    /// Records a written checkpoint (a step recorded before is overwritten); `false` when
    /// the fence no longer holds.
    pub async fn add_checkpoint(
        &self,
        fence: &Fence,
        step: i64,
        path: &str,
        metrics: Option<&Value>,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO checkpoints (job_id, step, path, metrics, attempt, created_at)
             SELECT $1, $4, $5, $6, $2, $7 WHERE EXISTS (SELECT 1 FROM jobs WHERE {FENCED})
             ON CONFLICT (job_id, step) DO UPDATE SET path = excluded.path,
                 metrics = excluded.metrics, attempt = excluded.attempt"
        );
        with_pool!(self, |pool, Db| {
            let statement = fence
                .bind::<Db>(&sql)
                .bind(step)
                .bind(path)
                .bind(metrics.map(Json))
                .bind(now_ms());
            Db::fenced_write(pool, fence, statement).await
        })
    }

    /// Forgets a checkpoint deleted under `save_total_limit`.
    pub async fn remove_checkpoint(&self, fence: &Fence, step: i64) -> Result<bool, StoreError> {
        let sql = format!(
            "DELETE FROM checkpoints WHERE job_id = $1 AND step = $4
               AND EXISTS (SELECT 1 FROM jobs WHERE {FENCED})"
        );
        with_pool!(self, |pool, Db| {
            Db::fenced_write(pool, fence, fence.bind::<Db>(&sql).bind(step)).await
        })
    }

    /// Forgets a checkpoint of a finished job (its folder was deleted by the
    /// retention rule after the job succeeded).
    pub async fn forget_checkpoint(&self, job_id: &str, step: i64) -> Result<(), StoreError> {
        const SQL: &str = "DELETE FROM checkpoints WHERE job_id = $1 AND step = $2";
        with_pool!(self, |pool, Db| {
            let mut tx = begin_write(pool).await?;
            sqlx::query(SQL)
                .bind(job_id)
                .bind(step)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// A job's kept checkpoints by step.
    pub async fn list_checkpoints(&self, job_id: &str) -> Result<Vec<CheckpointRow>, StoreError> {
        const SQL: &str = "SELECT step, path, metrics, created_at FROM checkpoints
             WHERE job_id = $1 ORDER BY step";
        with_pool!(self, |pool, Db| {
            Ok(sqlx::query_as(SQL).bind(job_id).fetch_all(pool).await?)
        })
    }
}
