//! The queue's side of the `jobs` table: claims, leases (heartbeats), progress,
//! the end of an attempt, and the rescue of jobs whose worker died. Every
//! write of a worker is fenced by its [`Fence`], so a worker that lost its
//! lease changes nothing.

use sqlx::Row;

use super::jobs::{COLUMNS, FENCED};
use super::{now_ms, Fence, JobRow, JobStatus, Progress, Rescued, Store, StoreError};

impl Store {
    /// Claims the oldest queued job for `owner`: status `running`, attempt + 1,
    /// a lease of `lease_ms`. `None` when nothing is queued.
    pub async fn claim_job(
        &self,
        owner: &str,
        lease_ms: i64,
    ) -> Result<Option<JobRow>, StoreError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        let row = sqlx::query_as(&format!(
            "UPDATE jobs SET status = 'running', attempt = attempt + 1, lease_owner = $1,
                 lease_expires_at = $2, started_at = COALESCE(started_at, $3), updated_at = $3
             WHERE seq = (SELECT seq FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1)
             RETURNING {COLUMNS}"
        ))
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Renews the lease. `Some(cancel_requested)` while held; `None` when lost.
    pub async fn heartbeat(
        &self,
        fence: &Fence,
        lease_ms: i64,
    ) -> Result<Option<bool>, StoreError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        let sql = format!(
            "UPDATE jobs SET lease_expires_at = $4, updated_at = $5 WHERE {FENCED}
             RETURNING cancel_requested"
        );
        let row = fence
            .bind(&sql)
            .bind(now + lease_ms)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Records progress; `false` when the fence no longer holds.
    pub async fn update_progress(&self, fence: &Fence, p: &Progress) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE jobs SET step = $4, total_steps = COALESCE($5, total_steps),
                 epoch = COALESCE($6, epoch), tokens = $7,
                 tokens_per_second = COALESCE($8, tokens_per_second), updated_at = $9
             WHERE {FENCED}"
        );
        let statement = fence
            .bind(&sql)
            .bind(p.step)
            .bind(p.total_steps)
            .bind(p.epoch)
            .bind(p.tokens)
            .bind(p.tokens_per_second)
            .bind(now_ms());
        self.fenced_write(statement).await
    }

    /// Ends the attempt with `status` (cancelled, or failed/queued after an
    /// error or a shutdown), dropping the lease; `false` when the fence no longer holds.
    pub async fn end_attempt(
        &self,
        fence: &Fence,
        status: JobStatus,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE jobs SET status = $4, error = COALESCE($5, error), lease_owner = NULL,
                 lease_expires_at = NULL, updated_at = $6,
                 finished_at = CASE WHEN $4 IN ('failed', 'cancelled') THEN $6 ELSE NULL END
             WHERE {FENCED}"
        );
        let statement = fence.bind(&sql).bind(status).bind(error).bind(now_ms());
        self.fenced_write(statement).await
    }

    /// Hands a job back to the queue without counting the attempt (its worker
    /// stopped for a shutdown, not because the job failed); `false` when the
    /// fence no longer holds.
    pub async fn hand_back(&self, fence: &Fence) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE jobs SET status = 'queued', attempt = attempt - 1, lease_owner = NULL,
                 lease_expires_at = NULL, updated_at = $4
             WHERE {FENCED}"
        );
        self.fenced_write(fence.bind(&sql).bind(now_ms())).await
    }

    /// Moves running jobs whose lease expired: back to `queued`, or `failed`
    /// once attempts are exhausted, or `cancelled` when a cancel was asked.
    pub async fn rescue_expired(&self) -> Result<Vec<Rescued>, StoreError> {
        let mut tx = self.write().await?;
        let rows = sqlx::query_as(
            "UPDATE jobs SET
                 status = CASE WHEN cancel_requested = 1 THEN 'cancelled'
                               WHEN attempt >= max_attempts THEN 'failed'
                               ELSE 'queued' END,
                 error = CASE WHEN cancel_requested = 0 AND attempt >= max_attempts
                              THEN 'lease expired on the last attempt (worker died?)'
                              ELSE error END,
                 finished_at = CASE WHEN cancel_requested = 1 OR attempt >= max_attempts
                                    THEN $1 ELSE NULL END,
                 lease_owner = NULL, lease_expires_at = NULL, updated_at = $1
             WHERE status = 'running' AND lease_expires_at < $1
             RETURNING id, status",
        )
        .bind(now_ms())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows)
    }
}
