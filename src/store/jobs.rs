//! The `jobs` table: submission, listing, and the queue's claims, leases,
//! progress and outcomes (fenced by [`Fence`]).

use sqlx::types::Json;
use sqlx::{Database, Encode, Type};

use super::dialect::{begin_write, fenced};
use super::outbox::{Outbox, WebhookEvent};
use super::steps::{channel, Statement, Steps};
use super::text_enum::text_enum;
use super::{now_ms, with_pool, Store, StoreError};
use crate::integrations::{Integration, TrackingRun, WebhookTarget};
use crate::job::JobSettings;

text_enum! {
    /// Where a job is in its life.
    pub enum JobStatus {
        /// Waiting for a worker.
        Queued,
        /// A worker holds its lease.
        Running,
        /// Finished; its model is registered.
        Succeeded,
        /// Gave up (error with attempts exhausted).
        Failed,
        /// Cancelled by a client.
        Cancelled,
    }
}

impl JobStatus {
    /// Whether the job can no longer change.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// A fine-tuning job as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct JobRow {
    /// `job-` and 16 hex digits.
    pub id: String,
    /// Where it is in its life; `lease_owner` is set while it is `running`, and only then.
    pub status: JobStatus,
    /// The base model as submitted (Hub id, model id or folder).
    pub base_model: String,
    /// Training dataset id.
    pub train_dataset: String,
    /// Evaluation dataset id; `None` when the job evaluates on nothing.
    pub eval_dataset: Option<String>,
    /// The settings it was submitted with, every field explicit (the
    /// `hyperparameters` column: one JSON object).
    #[sqlx(json, rename = "hyperparameters")]
    pub settings: JobSettings,
    /// The suffix of the model's id, when one was given.
    pub suffix: Option<String>,
    /// Attempts started so far (the current one while running; 0 while queued
    /// for the first time).
    pub attempt: i64,
    /// Attempts allowed before the job fails.
    pub max_attempts: i64,
    /// The worker holding the lease; `None` unless running.
    pub lease_owner: Option<String>,
    /// When the lease runs out (Unix ms); `None` unless running.
    pub lease_expires_at: Option<i64>,
    /// Raised by `POST /jobs/{id}/cancel`; a running job's worker stops at its next
    /// heartbeat. A retry clears it.
    pub cancel_requested: bool,
    /// Training progress, written at each logging window and when an attempt starts.
    #[sqlx(flatten)]
    pub progress: Progress,
    /// Why it failed (or why the last attempt did); `None` otherwise.
    pub error: Option<String>,
    /// The model it produced; `None` until it succeeds.
    pub model_id: Option<String>,
    /// Submission time (Unix ms).
    pub created_at: i64,
    /// First start (Unix ms); `None` while never started.
    pub started_at: Option<i64>,
    /// End (Unix ms); `None` while not finished.
    pub finished_at: Option<i64>,
    /// When a job waiting to be retried may be claimed again (Unix ms);
    /// `None` when it may be claimed now (or is not queued).
    pub retry_at: Option<i64>,
    /// Retries so far after causes that may pass (each waited its backoff).
    pub retries: i64,
    /// The job's own webhook receivers; `None` when it has none.
    #[sqlx(json(nullable))]
    pub webhooks: Option<Vec<WebhookTarget>>,
    /// The experiment trackers it logs to; `None` when none.
    #[sqlx(json(nullable))]
    pub integrations: Option<Vec<Integration>>,
    /// The tracker's run, once made; `None` before (or without a tracker).
    #[sqlx(json(nullable))]
    pub tracking: Option<TrackingRun>,
}

/// Training progress of a job.
#[derive(Debug, Clone, Default, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// Optimizer steps done as of the last logging window (at an attempt's start, the step
    /// it starts from).
    pub step: i64,
    /// Optimizer steps planned; `None` until training has started.
    pub total_steps: Option<i64>,
    /// Fractional epoch; `None` until the first logged step.
    pub epoch: Option<f64>,
    /// Real (unpadded) training tokens seen.
    pub tokens: i64,
    /// Training throughput of the last logging window, in tokens per second.
    pub tokens_per_second: Option<f64>,
}

/// What [`Store::insert_job`] records.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// `job-` and 16 hex digits, made by the caller with [`super::new_id`].
    pub id: String,
    /// As the client named it; resolved again when each attempt starts.
    pub base_model: String,
    /// Training dataset id (must exist).
    pub train_dataset: String,
    /// Evaluation dataset id (must exist when given).
    pub eval_dataset: Option<String>,
    /// Hyperparameters and options, validated (`options.max_attempts` fills
    /// the `max_attempts` column).
    pub settings: JobSettings,
    /// Suffix for the model's id.
    pub suffix: Option<String>,
    /// Its own webhook receivers (empty: none).
    pub webhooks: Vec<WebhookTarget>,
    /// Experiment trackers to log to (empty: none).
    pub integrations: Vec<Integration>,
}

/// Identifies one attempt of one worker at a job: a write fenced by it only
/// applies while that attempt still holds the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The id of the job the attempt belongs to.
    pub job_id: String,
    /// The attempt number the claim returned.
    pub attempt: i64,
    /// The worker's lease owner name.
    pub owner: String,
}

impl Fence {
    /// `sql` (whose condition includes [`FENCED`]) with the fence bound as `$1`,
    /// `$2`, `$3`; the caller binds the rest from `$4` on.
    pub(super) fn bind<'q, DB: Database>(&'q self, sql: &'q str) -> Statement<'q, DB>
    where
        &'q str: Encode<'q, DB> + Type<DB>,
        i64: Encode<'q, DB> + Type<DB>,
    {
        sqlx::query(sql)
            .bind(self.job_id.as_str())
            .bind(self.attempt)
            .bind(self.owner.as_str())
    }
}

/// A job the rescuer moved after its lease expired.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Rescued {
    /// The job's id (`job-…`), for the log entry the rescuer writes.
    #[sqlx(rename = "id")]
    pub job_id: String,
    /// Its new status (`queued`, `failed` or `cancelled`).
    pub status: JobStatus,
}

pub(super) const COLUMNS: &str = "id, status, base_model, train_dataset, eval_dataset, \
    hyperparameters, suffix, attempt, max_attempts, lease_owner, lease_expires_at, \
    cancel_requested, step, total_steps, epoch, tokens, tokens_per_second, error, model_id, \
    created_at, started_at, finished_at, retry_at, retries, webhooks, integrations, tracking";

/// The condition every fenced statement includes; see [`Fence::bind`].
pub(super) const FENCED: &str = fenced!();

pub(super) fn not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        what: "job",
        id: id.to_string(),
    }
}

impl Store {
    /// Queues a job; its datasets must exist. Idle workers on every node are
    /// told at commit.
    pub async fn insert_job(&self, new: NewJob) -> Result<JobRow, StoreError> {
        let now = now_ms();
        let insert = format!(
            "INSERT INTO jobs (id, status, base_model, train_dataset, eval_dataset,
                 hyperparameters, suffix, max_attempts, created_at, updated_at, webhooks,
                 integrations)
             VALUES ($1, 'queued', $2, $3, $4, $5, $6, $7, $8, $8, $9, $10) RETURNING {COLUMNS}"
        );
        with_pool!(self, |pool, Db| {
            let mut tx = begin_write(pool).await?;
            for id in std::iter::once(&new.train_dataset).chain(new.eval_dataset.as_ref()) {
                let found = sqlx::query("SELECT 1 FROM datasets WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if found.is_none() {
                    return Err(StoreError::NotFound {
                        what: "dataset",
                        id: id.clone(),
                    });
                }
            }
            let row: JobRow = sqlx::query_as(&insert)
                .bind(&new.id)
                .bind(&new.base_model)
                .bind(&new.train_dataset)
                .bind(&new.eval_dataset)
                .bind(sqlx::types::Json(&new.settings))
                .bind(&new.suffix)
                .bind(new.settings.options.max_attempts as i64)
                .bind(now)
                .bind((!new.webhooks.is_empty()).then_some(Json(&new.webhooks)))
                .bind((!new.integrations.is_empty()).then_some(Json(&new.integrations)))
                .fetch_one(&mut *tx)
                .await?;
            Db::notify(&mut tx, channel::JOBS, &row.id).await?;
            tx.commit().await?;
            Ok(row)
        })
    }

    /// The job `id`; [`StoreError::NotFound`] when there is none.
    pub async fn get_job(&self, id: &str) -> Result<JobRow, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1");
        let row: Option<JobRow> = with_pool!(self, |pool, Db| {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        });
        row.ok_or_else(|| not_found(id))
    }

    /// Jobs in submission order, optionally of one status, after the job `after`.
    pub async fn list_jobs(
        &self,
        status: Option<JobStatus>,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<JobRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs WHERE seq > $1 AND ($2 IS NULL OR status = $2)
             ORDER BY seq LIMIT $3"
        );
        let after_seq = self.seq_of("jobs", "job", after).await?.unwrap_or(0);
        with_pool!(self, |pool, Db| {
            Ok(sqlx::query_as(&sql)
                .bind(after_seq)
                .bind(status)
                .bind(limit)
                .fetch_all(pool)
                .await?)
        })
    }

    /// Jobs newest first, submitted before the job `before` (from the newest
    /// when `None`): the order of OpenAI's job list.
    pub async fn list_jobs_newest(
        &self,
        limit: i64,
        before: Option<&str>,
    ) -> Result<Vec<JobRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE seq < $1 ORDER BY seq DESC LIMIT $2");
        let before_seq = self
            .seq_of("jobs", "job", before)
            .await?
            .unwrap_or(i64::MAX);
        with_pool!(self, |pool, Db| {
            Ok(sqlx::query_as(&sql)
                .bind(before_seq)
                .bind(limit)
                .fetch_all(pool)
                .await?)
        })
    }

    /// Jobs per status (every status present, zero included).
    pub async fn count_jobs_by_status(&self) -> Result<Vec<(JobStatus, i64)>, StoreError> {
        const SQL: &str = "SELECT status, COUNT(*) FROM jobs GROUP BY status";
        let rows: Vec<(JobStatus, i64)> = with_pool!(self, |pool, Db| {
            sqlx::query_as(SQL).fetch_all(pool).await?
        });
        Ok(<JobStatus as strum::VariantArray>::VARIANTS
            .iter()
            .copied()
            .map(|st| {
                let n = rows.iter().find(|(s, _)| *s == st).map_or(0, |(_, n)| *n);
                (st, n)
            })
            .collect())
    }

    /// Cancels a job: a queued one at once, a running one by raising its flag
    /// (its worker, on whichever node, stops at its next heartbeat).
    /// [`StoreError::Conflict`] for a finished job.
    pub async fn request_cancel(&self, id: &str) -> Result<JobRow, StoreError> {
        let now = now_ms();
        with_pool!(self, |pool, Db| {
            let mut tx = begin_write(pool).await?;
            let status = Db::lock_job(&mut tx, id)
                .await?
                .ok_or_else(|| not_found(id))?;
            let sql = match status {
                JobStatus::Queued => {
                    "UPDATE jobs SET status = 'cancelled', cancel_requested = TRUE,
                         finished_at = $1, updated_at = $1 WHERE id = $2"
                }
                JobStatus::Running => {
                    "UPDATE jobs SET cancel_requested = TRUE, updated_at = $1 WHERE id = $2"
                }
                done => return Err(StoreError::Conflict(already(id, done))),
            };
            sqlx::query(sql)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if status == JobStatus::Queued {
                let cancelled = WebhookEvent::JobCancelled;
                Db::enqueue_job(&mut tx, self.receivers(), cancelled, id).await?;
            }
            tx.commit().await?;
        });
        self.get_job(id).await
    }

    /// Records the MLflow run job `id` logs to: every later attempt, on any
    /// node, resumes it.
    pub async fn set_tracking(&self, id: &str, run: &TrackingRun) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE jobs SET tracking = $1 WHERE id = $2";
        with_pool!(self, |pool, Db| {
            let mut tx = begin_write(pool).await?;
            sqlx::query(SQL)
                .bind(Json(run))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Queues a failed job again with fresh attempts; it resumes from its
    /// newest checkpoint that loads. [`StoreError::Conflict`] unless failed.
    pub async fn retry_failed(&self, id: &str) -> Result<JobRow, StoreError> {
        with_pool!(self, |pool, Db| {
            let mut tx = begin_write(pool).await?;
            let status = Db::lock_job(&mut tx, id)
                .await?
                .ok_or_else(|| not_found(id))?;
            if status != JobStatus::Failed {
                return Err(StoreError::Conflict(format!(
                    "job `{id}` is {}; only failed jobs can be retried",
                    status.as_str()
                )));
            }
            sqlx::query(
                "UPDATE jobs SET status = 'queued', attempt = 0, retries = 0, retry_at = NULL,
                     cancel_requested = FALSE, finished_at = NULL, updated_at = $1
                 WHERE id = $2",
            )
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
            Db::notify(&mut tx, channel::JOBS, id).await?;
            tx.commit().await?;
        });
        self.get_job(id).await
    }
}

impl Store {
    /// Deletes a finished job with its metrics, log and checkpoint records
    /// (its folder is the caller's); [`StoreError::Conflict`] while it is
    /// queued or running, or while the model it produced exists.
    pub async fn delete_job(&self, id: &str) -> Result<JobRow, StoreError> {
        let job = self.get_job(id).await?;
        with_pool!(self, |pool, Db| {
            let mut tx = begin_write(pool).await?;
            let status = Db::lock_job(&mut tx, id)
                .await?
                .ok_or_else(|| not_found(id))?;
            if !status.is_terminal() {
                return Err(StoreError::Conflict(format!(
                    "job `{id}` is {}; cancel it first (only finished jobs can be deleted)",
                    status.as_str()
                )));
            }
            let model: Option<String> =
                sqlx::query_scalar("SELECT id FROM models WHERE job_id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(model) = model {
                return Err(StoreError::Conflict(format!(
                    "job `{id}` produced model `{model}`, which still exists; delete the model first"
                )));
            }
            for table in ["metrics", "events", "checkpoints", "webhook_outbox", "jobs"] {
                let column = if table == "jobs" { "id" } else { "job_id" };
                sqlx::query(&format!("DELETE FROM {table} WHERE {column} = $1"))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(job)
    }
}

/// Why a finished job cannot be cancelled, in words.
fn already(id: &str, status: JobStatus) -> String {
    let verb = match status {
        JobStatus::Cancelled => "was already cancelled".to_string(),
        other => format!("has already {}", other.as_str()),
    };
    format!("job `{id}` {verb}; only queued or running jobs can be cancelled")
}
