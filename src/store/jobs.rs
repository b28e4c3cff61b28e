//! The `jobs` table: submission, listing, and the queue's claims, leases,
//! progress and outcomes (fenced by [`Fence`]).

use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{now_ms, Store, StoreError};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
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

impl JobStatus {
    /// Every status, in life order.
    pub const ALL: [JobStatus; 5] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the job can no longer change.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

impl std::str::FromStr for JobStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!("unknown status `{s}` (queued, running, succeeded, failed, cancelled)")
            })
    }
}

/// A fine-tuning job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    /// Its id (`job-…`).
    pub id: String,
    /// Where it stands.
    pub status: JobStatus,
    /// The base model (folder or Hub id).
    pub base_model: String,
    /// Training dataset id.
    pub train_dataset: String,
    /// Evaluation dataset id.
    pub eval_dataset: Option<String>,
    /// The hyperparameters, every field explicit.
    pub hyperparameters: serde_json::Value,
    /// A suffix for the model's name.
    pub suffix: Option<String>,
    /// Attempts started so far (the current one while running).
    pub attempt: i64,
    /// Attempts allowed.
    pub max_attempts: i64,
    /// The worker holding the lease.
    pub lease_owner: Option<String>,
    /// When the lease runs out (Unix ms).
    pub lease_expires_at: Option<i64>,
    /// A client asked to cancel.
    pub cancel_requested: bool,
    /// Training progress.
    pub progress: Progress,
    /// Why it failed (or the last attempt's error).
    pub error: Option<String>,
    /// The model it produced.
    pub model_id: Option<String>,
    /// Submission time (Unix ms).
    pub created_at: i64,
    /// First start (Unix ms).
    pub started_at: Option<i64>,
    /// End (Unix ms).
    pub finished_at: Option<i64>,
}

/// Training progress of a job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// Optimizer steps done.
    pub step: i64,
    /// Optimizer steps planned.
    pub total_steps: Option<i64>,
    /// Fractional epoch.
    pub epoch: Option<f64>,
    /// Real training tokens seen.
    pub tokens: i64,
    /// Recent training throughput.
    pub tokens_per_second: Option<f64>,
}

/// What [`Store::insert_job`] records.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Its id.
    pub id: String,
    /// Base model.
    pub base_model: String,
    /// Training dataset id (must exist).
    pub train_dataset: String,
    /// Evaluation dataset id (must exist).
    pub eval_dataset: Option<String>,
    /// Hyperparameters, every field explicit.
    pub hyperparameters: serde_json::Value,
    /// Model name suffix.
    pub suffix: Option<String>,
    /// Attempts allowed.
    pub max_attempts: i64,
}

/// Identifies one attempt of one worker at a job: a write fenced by it only
/// applies while that attempt still holds the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The job.
    pub job_id: String,
    /// The attempt number the claim returned.
    pub attempt: i64,
    /// The worker's lease owner name.
    pub owner: String,
}

/// A job the rescuer moved after its lease expired.
#[derive(Debug, Clone, PartialEq)]
pub struct Rescued {
    /// The job.
    pub job_id: String,
    /// Its new status (`queued`, `failed` or `cancelled`).
    pub status: JobStatus,
}

pub(super) const COLUMNS: &str = "id, status, base_model, train_dataset, eval_dataset, \
    hyperparameters, suffix, attempt, max_attempts, lease_owner, lease_expires_at, \
    cancel_requested, step, total_steps, epoch, tokens, tokens_per_second, error, model_id, \
    created_at, started_at, finished_at";

/// The condition every fenced write adds (binds: job id, attempt, owner).
pub(super) const FENCED: &str = "id = ? AND attempt = ? AND lease_owner = ? AND status = 'running'";

fn job(row: &SqliteRow) -> Result<JobRow, StoreError> {
    let status: String = row.try_get("status")?;
    let hyper: String = row.try_get("hyperparameters")?;
    Ok(JobRow {
        id: row.try_get("id")?,
        status: status.parse().map_err(StoreError::Conflict)?,
        base_model: row.try_get("base_model")?,
        train_dataset: row.try_get("train_dataset")?,
        eval_dataset: row.try_get("eval_dataset")?,
        hyperparameters: serde_json::from_str(&hyper)?,
        suffix: row.try_get("suffix")?,
        attempt: row.try_get("attempt")?,
        max_attempts: row.try_get("max_attempts")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        cancel_requested: row.try_get("cancel_requested")?,
        progress: Progress {
            step: row.try_get("step")?,
            total_steps: row.try_get("total_steps")?,
            epoch: row.try_get("epoch")?,
            tokens: row.try_get("tokens")?,
            tokens_per_second: row.try_get("tokens_per_second")?,
        },
        error: row.try_get("error")?,
        model_id: row.try_get("model_id")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        what: "job",
        id: id.to_string(),
    }
}

impl Store {
    /// Queues a job; its datasets must exist.
    pub async fn insert_job(&self, new: NewJob) -> Result<JobRow, StoreError> {
        let mut tx = self.write().await?;
        for id in std::iter::once(&new.train_dataset).chain(new.eval_dataset.as_ref()) {
            let found = sqlx::query("SELECT 1 FROM datasets WHERE id = ?")
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
        let now = now_ms();
        let row = sqlx::query(&format!(
            "INSERT INTO jobs (id, status, base_model, train_dataset, eval_dataset,
                 hyperparameters, suffix, max_attempts, created_at, updated_at)
             VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {COLUMNS}"
        ))
        .bind(&new.id)
        .bind(&new.base_model)
        .bind(&new.train_dataset)
        .bind(&new.eval_dataset)
        .bind(serde_json::to_string(&new.hyperparameters)?)
        .bind(&new.suffix)
        .bind(new.max_attempts)
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let out = job(&row)?;
        tx.commit().await?;
        Ok(out)
    }

    /// One job.
    pub async fn get_job(&self, id: &str) -> Result<JobRow, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found(id))?;
        job(&row)
    }

    /// Jobs in submission order, optionally of one status, after the job `after`.
    pub async fn list_jobs(
        &self,
        status: Option<JobStatus>,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<JobRow>, StoreError> {
        let after_seq: i64 = match after {
            Some(id) => sqlx::query_scalar("SELECT seq FROM jobs WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| not_found(id))?,
            None => 0,
        };
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE seq > ? AND (? IS NULL OR status = ?)
             ORDER BY seq LIMIT ?"
        ))
        .bind(after_seq)
        .bind(status.map(JobStatus::as_str))
        .bind(status.map(JobStatus::as_str))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(job)
        .collect()
    }

    /// Jobs per status (every status present, zero included).
    pub async fn count_jobs_by_status(&self) -> Result<Vec<(JobStatus, i64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM jobs GROUP BY status")
                .fetch_all(&self.pool)
                .await?;
        Ok(JobStatus::ALL
            .into_iter()
            .map(|st| {
                let n = rows
                    .iter()
                    .find(|(s, _)| s == st.as_str())
                    .map_or(0, |(_, n)| *n);
                (st, n)
            })
            .collect())
    }

    /// Claims the oldest queued job for `owner`: status `running`, attempt + 1,
    /// a lease of `lease_ms`. `None` when nothing is queued.
    pub async fn claim_job(
        &self,
        owner: &str,
        lease_ms: i64,
    ) -> Result<Option<JobRow>, StoreError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        let row = sqlx::query(&format!(
            "UPDATE jobs SET status = 'running', attempt = attempt + 1, lease_owner = ?,
                 lease_expires_at = ?, started_at = COALESCE(started_at, ?), updated_at = ?
             WHERE seq = (SELECT seq FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1)
             RETURNING {COLUMNS}"
        ))
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let out = row.as_ref().map(job).transpose()?;
        tx.commit().await?;
        Ok(out)
    }

    /// Renews the lease. `Some(cancel_requested)` while held; `None` when lost.
    pub async fn heartbeat(
        &self,
        fence: &Fence,
        lease_ms: i64,
    ) -> Result<Option<bool>, StoreError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        let cancel: Option<bool> = sqlx::query_scalar(&format!(
            "UPDATE jobs SET lease_expires_at = ?, updated_at = ? WHERE {FENCED}
             RETURNING cancel_requested"
        ))
        .bind(now + lease_ms)
        .bind(now)
        .bind(&fence.job_id)
        .bind(fence.attempt)
        .bind(&fence.owner)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(cancel)
    }

    /// Records progress; `false` when the fence no longer holds.
    pub async fn update_progress(&self, fence: &Fence, p: &Progress) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE jobs SET step = ?, total_steps = COALESCE(?, total_steps),
                 epoch = COALESCE(?, epoch), tokens = ?,
                 tokens_per_second = COALESCE(?, tokens_per_second), updated_at = ?
             WHERE {FENCED}"
        );
        self.fenced_write(
            sqlx::query(&sql)
                .bind(p.step)
                .bind(p.total_steps)
                .bind(p.epoch)
                .bind(p.tokens)
                .bind(p.tokens_per_second)
                .bind(now_ms()),
            fence,
        )
        .await
    }

    /// Ends the attempt with `status` (cancelled, or failed/queued after an
    /// error or a shutdown), dropping the lease; `false` when the fence no longer holds.
    pub async fn end_attempt(
        &self,
        fence: &Fence,
        status: JobStatus,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let sql = format!(
            "UPDATE jobs SET status = ?, error = COALESCE(?, error), lease_owner = NULL,
                 lease_expires_at = NULL, updated_at = ?,
                 finished_at = CASE WHEN ? IN ('failed', 'cancelled') THEN ? ELSE NULL END
             WHERE {FENCED}"
        );
        self.fenced_write(
            sqlx::query(&sql)
                .bind(status.as_str())
                .bind(error)
                .bind(now)
                .bind(status.as_str())
                .bind(now),
            fence,
        )
        .await
    }

    /// Cancels a job: a queued one at once, a running one by raising its flag
    /// (its worker stops at the next step). 409 for a finished job.
    pub async fn request_cancel(&self, id: &str) -> Result<JobRow, StoreError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        let current = sqlx::query("SELECT status FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| not_found(id))?;
        let status: JobStatus = current
            .try_get::<String, _>("status")?
            .parse()
            .map_err(StoreError::Conflict)?;
        match status {
            JobStatus::Queued => {
                sqlx::query(
                    "UPDATE jobs SET status = 'cancelled', cancel_requested = 1,
                         finished_at = ?, updated_at = ? WHERE id = ?",
                )
                .bind(now)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            JobStatus::Running => {
                sqlx::query("UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ?")
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            done => {
                return Err(StoreError::Conflict(format!(
                    "job `{id}` is already {}",
                    done.as_str()
                )))
            }
        }
        tx.commit().await?;
        self.get_job(id).await
    }

    /// Moves running jobs whose lease expired: back to `queued`, or `failed`
    /// once attempts are exhausted, or `cancelled` when a cancel was asked.
    pub async fn rescue_expired(&self) -> Result<Vec<Rescued>, StoreError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        let rows: Vec<(String, String)> = sqlx::query_as(
            "UPDATE jobs SET
                 status = CASE WHEN cancel_requested = 1 THEN 'cancelled'
                               WHEN attempt >= max_attempts THEN 'failed'
                               ELSE 'queued' END,
                 error = CASE WHEN cancel_requested = 0 AND attempt >= max_attempts
                              THEN 'lease expired on the last attempt (worker died?)'
                              ELSE error END,
                 finished_at = CASE WHEN cancel_requested = 1 OR attempt >= max_attempts
                                    THEN ? ELSE NULL END,
                 lease_owner = NULL, lease_expires_at = NULL, updated_at = ?
             WHERE status = 'running' AND lease_expires_at < ?
             RETURNING id, status",
        )
        .bind(now)
        .bind(now)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter()
            .map(|(job_id, status)| {
                Ok(Rescued {
                    job_id,
                    status: status.parse().map_err(StoreError::Conflict)?,
                })
            })
            .collect()
    }
}
