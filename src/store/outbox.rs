//! The webhook outbox: each job transition that clients hear about
//! (running, succeeded, failed, cancelled) and each promotion writes one row
//! per receiver in the same transaction as the change itself, so a
//! transition that commits is sent (at least once) even if its node dies the
//! moment after, and one that rolls back is never sent. The row holds the
//! job (or model) as it was at the event. Any node's delivery task claims
//! due rows for a while (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so each
//! try goes out from one node; a claim that runs out (its node died
//! mid-send) lets another node send again.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use sqlx::types::Json;
use sqlx::{Database, Postgres, Sqlite};

use super::dialect::{begin_write, Dialect};
use super::jobs::COLUMNS;
use super::models::MODEL_COLUMNS;
use super::{new_id, now_ms, with_pool, JobRow, JobStatus, ModelRow, Store, StoreError};

/// What a webhook announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookEvent {
    /// An attempt started (`job.running`; once per attempt).
    JobRunning,
    /// `job.succeeded`.
    JobSucceeded,
    /// `job.failed` (attempts exhausted or a cause that cannot pass).
    JobFailed,
    /// `job.cancelled`.
    JobCancelled,
    /// `model.promoted`: a model became `latest` (at its job's end or by hand).
    ModelPromoted,
}

impl WebhookEvent {
    /// The event's `type`, as receivers see it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JobRunning => "job.running",
            Self::JobSucceeded => "job.succeeded",
            Self::JobFailed => "job.failed",
            Self::JobCancelled => "job.cancelled",
            Self::ModelPromoted => "model.promoted",
        }
    }

    /// The event of a job reaching `status`; `None` for `queued`.
    pub fn of_status(status: JobStatus) -> Option<Self> {
        match status {
            JobStatus::Queued => None,
            JobStatus::Running => Some(Self::JobRunning),
            JobStatus::Succeeded => Some(Self::JobSucceeded),
            JobStatus::Failed => Some(Self::JobFailed),
            JobStatus::Cancelled => Some(Self::JobCancelled),
        }
    }
}

/// The job or model an event is about, as it was at the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// A job's row.
    Job(Box<JobRow>),
    /// A model's row.
    Model(ModelRow),
}

/// One try to make: an event for one receiver, claimed by this node.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Delivery {
    /// The outbox row.
    pub seq: i64,
    /// `webhook-id`: the same for every receiver and every try of one event.
    pub message_id: String,
    /// `job.running`, …, `model.promoted`.
    pub event_type: String,
    /// The job the event belongs to (the model's job for a promotion): its
    /// log records each try.
    pub job_id: String,
    /// Where to POST.
    pub url: String,
    /// The job or model at the event.
    #[sqlx(json)]
    pub subject: Subject,
    /// When the event happened (Unix ms).
    pub created_at: i64,
    /// Tries made before this one.
    pub attempts: i64,
}

/// The receivers every event goes to (`--webhook-url`), shared by a store's clones.
pub(super) type Receivers = Arc<OnceLock<Vec<String>>>;

const DELIVERY_COLUMNS: &str =
    "seq, message_id, event_type, job_id, url, subject, created_at, attempts";

/// Writes outbox rows inside a transaction, on one backend.
pub(super) trait Outbox: Dialect {
    /// Rows for job `job_id`'s `event` (its row read now, inside the
    /// transaction), one per receiver: `receivers` and the job's own.
    fn enqueue_job<'a>(
        conn: &'a mut Self::Connection,
        receivers: &'a [String],
        event: WebhookEvent,
        job_id: &'a str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a;

    /// Rows announcing that model `model_id` was promoted.
    fn enqueue_promotion<'a>(
        conn: &'a mut Self::Connection,
        receivers: &'a [String],
        model_id: &'a str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a;

    /// One row per URL of `urls` for `event` about `subject`, sharing one
    /// message id.
    fn insert<'a>(
        conn: &'a mut Self::Connection,
        urls: &'a [String],
        event: WebhookEvent,
        job_id: &'a str,
        subject: &'a Subject,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'a;
}

/// `receivers` and `own`, each URL once.
fn destinations(
    receivers: &[String],
    own: Option<&[crate::integrations::WebhookTarget]>,
) -> Vec<String> {
    let mut all: Vec<String> = receivers.to_vec();
    for t in own.unwrap_or_default() {
        if !all.contains(&t.url) {
            all.push(t.url.clone());
        }
    }
    all
}

macro_rules! outbox {
    ($($db:ty),*) => {$(
        impl Outbox for $db {
            async fn enqueue_job<'a>(
                conn: &'a mut <$db as Database>::Connection,
                receivers: &'a [String],
                event: WebhookEvent,
                job_id: &'a str,
            ) -> Result<(), StoreError> {
                let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1");
                let row: Option<JobRow> =
                    sqlx::query_as(&sql).bind(job_id).fetch_optional(&mut *conn).await?;
                let Some(row) = row else { return Ok(()) };
                let urls = destinations(receivers, row.webhooks.as_deref());
                Self::insert(conn, &urls, event, job_id, &Subject::Job(Box::new(row))).await
            }

            async fn enqueue_promotion<'a>(
                conn: &'a mut <$db as Database>::Connection,
                receivers: &'a [String],
                model_id: &'a str,
            ) -> Result<(), StoreError> {
                let sql = format!("SELECT {MODEL_COLUMNS} FROM models WHERE id = $1");
                let model: Option<ModelRow> =
                    sqlx::query_as(&sql).bind(model_id).fetch_optional(&mut *conn).await?;
                let Some(model) = model else { return Ok(()) };
                let own: Option<Json<Vec<crate::integrations::WebhookTarget>>> =
                    sqlx::query_scalar("SELECT webhooks FROM jobs WHERE id = $1")
                        .bind(&model.job_id)
                        .fetch_optional(&mut *conn)
                        .await?
                        .flatten();
                let urls = destinations(receivers, own.as_ref().map(|j| j.0.as_slice()));
                let job_id = model.job_id.clone();
                let subject = Subject::Model(model);
                let event = WebhookEvent::ModelPromoted;
                Self::insert(conn, &urls, event, &job_id, &subject).await
            }

            async fn insert<'a>(
                conn: &'a mut <$db as Database>::Connection,
                urls: &'a [String],
                event: WebhookEvent,
                job_id: &'a str,
                subject: &'a Subject,
            ) -> Result<(), StoreError> {
                const SQL: &str = "INSERT INTO webhook_outbox (message_id, event_type, job_id,
                         url, subject, created_at, next_attempt_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $6)";
                if urls.is_empty() {
                    return Ok(());
                }
                let message_id = new_id("msg");
                let now = now_ms();
                for url in urls {
                    sqlx::query(SQL)
                        .bind(message_id.as_str())
                        .bind(event.as_str())
                        .bind(job_id)
                        .bind(url.as_str())
                        .bind(Json(subject))
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            }
        }
    )*};
}

outbox!(Sqlite, Postgres);

impl Store {
    /// The receivers every event goes to besides a job's own (`--webhook-url`);
    /// set once, before any job changes. With none set, only jobs with
    /// webhooks of their own fill the outbox.
    pub fn set_webhook_receivers(&self, urls: Vec<String>) {
        let _ = self.receivers.set(urls);
    }

    pub(super) fn receivers(&self) -> &[String] {
        self.receivers.get().map_or(&[], Vec::as_slice)
    }

    /// Claims up to `limit` due tries for `owner` for `claim_ms`: no other
    /// node sends them meanwhile. Oldest first.
    pub async fn claim_deliveries(
        &self,
        owner: &str,
        claim_ms: i64,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let now = now_ms();
        with_pool!(self, |pool, Db| {
            let sql = format!(
                "UPDATE webhook_outbox SET claimed_by = $1, claim_expires_at = $2 + $3
                 WHERE seq IN (SELECT seq FROM webhook_outbox
                     WHERE done_at IS NULL AND next_attempt_at <= $2
                       AND (claim_expires_at IS NULL OR claim_expires_at < $2)
                     ORDER BY seq LIMIT $4{})
                 RETURNING {DELIVERY_COLUMNS}",
                Db::SKIP_LOCKED
            );
            let mut tx = begin_write(pool).await?;
            let mut rows: Vec<Delivery> = sqlx::query_as(&sql)
                .bind(owner)
                .bind(now)
                .bind(claim_ms)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            rows.sort_by_key(|r| r.seq);
            Ok(rows)
        })
    }

    /// Ends or reschedules a try claimed by `owner`: `next_at` (Unix ms)
    /// for another try, or `None` when it is done (`delivered`, or given
    /// up). `false` when the claim was lost (another node took the row).
    pub async fn finish_delivery(
        &self,
        seq: i64,
        owner: &str,
        delivered: bool,
        next_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE webhook_outbox SET attempts = attempts + 1, claimed_by = NULL,
                 claim_expires_at = NULL, delivered = $3,
                 next_attempt_at = COALESCE($4, next_attempt_at),
                 done_at = CASE WHEN $4 IS NULL THEN $5 ELSE NULL END
             WHERE seq = $1 AND claimed_by = $2 AND done_at IS NULL";
        with_pool!(self, |pool, Db| {
            let mut tx = begin_write(pool).await?;
            let done = sqlx::query(SQL)
                .bind(seq)
                .bind(owner)
                .bind(delivered)
                .bind(next_at)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Tries still to be made (not delivered, not given up), over every node.
    pub async fn pending_deliveries(&self) -> Result<i64, StoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM webhook_outbox WHERE done_at IS NULL";
        with_pool!(self, |pool, Db| {
            Ok(sqlx::query_scalar(SQL).fetch_one(pool).await?)
        })
    }
}
