//! The jobs table as the queue: claims, leases and heartbeats, progress and
//! the end of an attempt (fenced by [`Fence`]), and the rescue of jobs whose
//! lease ran out. Lease times are read off the database's clock (see
//! [`super::dialect`]), so nodes whose clocks disagree agree on expiry.

use sqlx::Row;

use super::dialect::{begin_write, Dialect};
use super::jobs::{COLUMNS, FENCED};
use super::outbox::{Outbox, WebhookEvent};
use super::steps::{channel, Steps};
use super::{now_ms, with_pool, Fence, JobRow, JobStatus, Progress, Rescued, Store, StoreError};

/// Whether an attempt still holds its job, as a heartbeat found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Renewed; `cancel_requested` when a client asked to cancel the job.
    Held {
        /// Whether a client raised the job's cancel flag (then the worker stops).
        cancel_requested: bool,
    },
    /// Another attempt (or the rescuer) took the job: stop, write nothing.
    Lost,
}

impl Store {
    /// Claims the oldest queued job for `owner`: status `running`, attempt + 1,
    /// a lease of `lease_ms`. `None` when nothing is queued (or, on
    /// PostgreSQL, when every queued job is being claimed by another node).
    pub async fn claim_job(
        &self,
        owner: &str,
        lease_ms: i64,
    ) -> Result<Option<JobRow>, StoreError> {
        let now = now_ms();
        with_pool!(self, |pool, Db| {
            let sql = format!(
                "UPDATE jobs SET status = 'running', attempt = attempt + 1, lease_owner = $1,
                     lease_expires_at = {} + $2, started_at = COALESCE(started_at, $3),
                     retry_at = NULL, updated_at = $3
                 WHERE seq = ({}) RETURNING {COLUMNS}",
                Db::NOW_MS,
                Db::NEXT_QUEUED
            );
            let mut tx = begin_write(pool).await?;
            let row: Option<JobRow> = sqlx::query_as(&sql)
                .bind(owner)
                .bind(lease_ms)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(job) = &row {
                let running = WebhookEvent::JobRunning;
                Db::enqueue_job(&mut tx, self.receivers(), running, &job.id).await?;
            }
            tx.commit().await?;
            Ok(row)
        })
    }

    /// Renews the lease, and says whether a client asked to cancel.
    pub async fn heartbeat(&self, fence: &Fence, lease_ms: i64) -> Result<Lease, StoreError> {
        let now = now_ms();
        let row = with_pool!(self, |pool, Db| {
            let sql = format!(
                "UPDATE jobs SET lease_expires_at = {} + $4, updated_at = $5 WHERE {FENCED}
                 RETURNING cancel_requested",
                Db::NOW_MS
            );
            let mut tx = begin_write(pool).await?;
            let row = fence
                .bind::<Db>(&sql)
                .bind(lease_ms)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            row.map(|r| r.try_get(0)).transpose()?
        });
        Ok(match row {
            Some(cancel_requested) => Lease::Held { cancel_requested },
            None => Lease::Lost,
        })
    }

    /// Records progress; `false` when the fence no longer holds.
    pub async fn update_progress(&self, fence: &Fence, p: &Progress) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE jobs SET step = $4, total_steps = COALESCE($5, total_steps),
                 epoch = COALESCE($6, epoch), tokens = $7,
                 tokens_per_second = COALESCE($8, tokens_per_second), updated_at = $9
             WHERE {FENCED}"
        );
        with_pool!(self, |pool, Db| {
            let statement = fence
                .bind::<Db>(&sql)
                .bind(p.step)
                .bind(p.total_steps)
                .bind(p.epoch)
                .bind(p.tokens)
                .bind(p.tokens_per_second)
                .bind(now_ms());
            Db::fenced_write(pool, fence, statement).await
        })
    }

    /// Ends the attempt with `status` (cancelled, or failed/queued after an
    /// error or a shutdown), dropping the lease; `false` when the fence no
    /// longer holds. A job queued again is announced to every node.
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
        with_pool!(self, |pool, Db| {
            let mut tx = begin_write(pool).await?;
            if !Db::fence_held(&mut tx, fence).await? {
                return Ok(false);
            }
            let statement = fence.bind::<Db>(&sql).bind(status).bind(error);
            let done = statement.bind(now_ms()).execute(&mut *tx).await?;
            if status == JobStatus::Queued {
                Db::notify(&mut tx, channel::JOBS, &fence.job_id).await?;
            }
            if let Some(event) = WebhookEvent::of_status(status) {
                Db::enqueue_job(&mut tx, self.receivers(), event, &fence.job_id).await?;
            }
            tx.commit().await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Queues the job again after a failed attempt whose cause may pass, to
    /// be claimed no sooner than `delay_ms` from now (by the database's
    /// clock). `counted: false` gives the attempt back (the cause was outside
    /// the job); the error is recorded either way. `false` when the fence no
    /// longer holds.
    pub async fn retry_later(
        &self,
        fence: &Fence,
        error: &str,
        delay_ms: i64,
        counted: bool,
    ) -> Result<bool, StoreError> {
        with_pool!(self, |pool, Db| {
            let sql = format!(
                "UPDATE jobs SET status = 'queued', attempt = attempt - $6, retries = retries + 1,
                     retry_at = {} + $5, error = $4, lease_owner = NULL,
                     lease_expires_at = NULL, updated_at = $7
                 WHERE {FENCED}",
                Db::NOW_MS
            );
            let statement = fence
                .bind::<Db>(&sql)
                .bind(error)
                .bind(delay_ms)
                .bind(i64::from(!counted))
                .bind(now_ms());
            Db::fenced_write(pool, fence, statement).await
        })
    }

    /// Hands a job back to the queue without counting the attempt (its worker
    /// stopped for a shutdown, not because the job failed); `false` when the
    /// fence no longer holds. Every node is told the job is queued.
    pub async fn hand_back(&self, fence: &Fence) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE jobs SET status = 'queued', attempt = attempt - 1, lease_owner = NULL,
                 lease_expires_at = NULL, updated_at = $4
             WHERE {FENCED}"
        );
        with_pool!(self, |pool, Db| {
            let mut tx = begin_write(pool).await?;
            if !Db::fence_held(&mut tx, fence).await? {
                return Ok(false);
            }
            let done = fence
                .bind::<Db>(&sql)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            Db::notify(&mut tx, channel::JOBS, &fence.job_id).await?;
            tx.commit().await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Moves running jobs whose lease expired: back to `queued`, or `failed`
    /// once attempts are exhausted, or `cancelled` when a cancel was asked.
    /// Rescuers on several nodes may run at once: each job moves once.
    pub async fn rescue_expired(&self) -> Result<Vec<Rescued>, StoreError> {
        with_pool!(self, |pool, Db| {
            let sql = format!(
                "UPDATE jobs SET
                     status = CASE WHEN cancel_requested THEN 'cancelled'
                                   WHEN attempt >= max_attempts THEN 'failed'
                                   ELSE 'queued' END,
                     error = CASE WHEN NOT cancel_requested AND attempt >= max_attempts
                                  THEN 'lease expired on the last attempt (worker died?)'
                                  ELSE error END,
                     finished_at = CASE WHEN cancel_requested OR attempt >= max_attempts
                                        THEN $1 ELSE NULL END,
                     lease_owner = NULL, lease_expires_at = NULL, updated_at = $1
                 WHERE status = 'running' AND lease_expires_at < {}
                 RETURNING id, status",
                Db::NOW_MS
            );
            let mut tx = begin_write(pool).await?;
            let rows: Vec<Rescued> = sqlx::query_as(&sql)
                .bind(now_ms())
                .fetch_all(&mut *tx)
                .await?;
            if rows.iter().any(|r| r.status == JobStatus::Queued) {
                Db::notify(&mut tx, channel::JOBS, "").await?;
            }
            for r in &rows {
                if let Some(event) = WebhookEvent::of_status(r.status) {
                    Db::enqueue_job(&mut tx, self.receivers(), event, &r.job_id).await?;
                }
            }
            tx.commit().await?;
            Ok(rows)
        })
    }

    /// Makes job `id`'s lease run out now, as if its worker had stopped
    /// renewing it: the next rescue moves the job. For tests, and for an
    /// operator who knows the worker is gone.
    pub async fn expire_lease(&self, id: &str) -> Result<(), StoreError> {
        const SQL: &str =
            "UPDATE jobs SET lease_expires_at = 0 WHERE id = $1 AND status = 'running'";
        with_pool!(self, |pool, Db| {
            sqlx::query(SQL).bind(id).execute(pool).await?;
        });
        Ok(())
    }
}
