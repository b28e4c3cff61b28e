//! The `models` table: fine-tuned models, registered when their job succeeds
//! (fenced), and which of them is `latest` (the one promoted last, over every
//! node). A registration that promotes, and a promotion by hand, are
//! announced to every node at commit, so each loads the new `latest`.

use serde_json::Value;
use sqlx::types::Json;

use super::dialect::{begin_write, Dialect};
use super::jobs::FENCED;
use super::outbox::{Outbox, WebhookEvent};
use super::steps::{channel, Steps};
use super::{now_ms, with_pool, Fence, Store, StoreError};

/// A fine-tuned model.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct ModelRow {
    /// `model-`, the job's suffix if any, and 16 hex digits.
    pub id: String,
    /// The job that trained it (`job-…`); its hyperparameters and datasets say how.
    pub job_id: String,
    /// The base model that job started from.
    pub base_model: String,
    /// Class names, by label id.
    #[sqlx(json)]
    pub labels: Vec<String>,
    /// The final evaluation; `None` when the job had no evaluation set.
    #[sqlx(json(nullable))]
    pub metrics: Option<Value>,
    /// Its folder (Hugging Face classifier layout), relative to the data folder.
    pub path: String,
    /// When registered (Unix ms).
    pub created_at: i64,
    /// When last made `latest` (Unix ms, the database's clock, strictly
    /// increasing over promotions); `None` if never.
    pub promoted_at: Option<i64>,
}

/// What [`Store::finish_succeeded`] registers.
#[derive(Debug, Clone)]
pub struct NewModel {
    /// The id the job's plan made (`model-…`); its folder is named after it.
    pub id: String,
    /// The job's `base_model`, as submitted.
    pub base_model: String,
    /// Class names, by label id.
    pub labels: Vec<String>,
    /// The final evaluation, if the job had an evaluation set.
    pub metrics: Option<Value>,
    /// Its folder (Hugging Face classifier layout), relative to the data folder.
    pub path: String,
}

pub(super) const MODEL_COLUMNS: &str =
    "id, job_id, base_model, labels, metrics, path, created_at, promoted_at";

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        what: "model",
        id: id.to_string(),
    }
}

/// The `promoted_at` of a promotion now: the database's clock, but strictly
/// after every earlier promotion (even within one millisecond, or after a
/// node whose clock ran ahead).
fn next_promotion<Db: Dialect>() -> String {
    format!(
        "{}({}, COALESCE((SELECT MAX(promoted_at) FROM models), 0) + 1)",
        Db::GREATEST,
        Db::NOW_MS
    )
}

/// How [`Store::finish_succeeded`] ended.
#[derive(Debug)]
pub enum Finished {
    /// The model is registered and the job `succeeded`.
    Registered(ModelRow),
    /// A client asked to cancel before the success was recorded: the job is
    /// now `cancelled`, no model registered (its folder is the caller's to
    /// remove). A cancel answered 200 always ends so.
    Cancelled,
    /// The fence no longer holds: nothing written.
    Fenced,
}

impl Finished {
    /// The registered model, if the job succeeded.
    pub fn model(self) -> Option<ModelRow> {
        match self {
            Self::Registered(row) => Some(row),
            _ => None,
        }
    }
}

impl Store {
    /// Registers the job's model (promoted when `promote`) and marks the job
    /// succeeded, in one transaction with the job locked, so that it and a
    /// cancel are ordered: a cancel asked for first wins ([`Finished::Cancelled`]),
    /// one asked for after is refused as too late.
    pub async fn finish_succeeded(
        &self,
        fence: &Fence,
        new: NewModel,
        promote: bool,
    ) -> Result<Finished, StoreError> {
        let now = now_ms();
        let update = format!(
            "UPDATE jobs SET status = 'succeeded', model_id = $4, lease_owner = NULL,
                 lease_expires_at = NULL, finished_at = $5, updated_at = $5, error = NULL
             WHERE {FENCED} AND NOT cancel_requested"
        );
        let cancel = format!(
            "UPDATE jobs SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL,
                 finished_at = $4, updated_at = $4 WHERE {FENCED}"
        );
        with_pool!(self, |pool, Db| {
            let promoted = if promote {
                next_promotion::<Db>()
            } else {
                "NULL".into()
            };
            let insert = format!(
                "INSERT INTO models (id, job_id, base_model, labels, metrics, path, created_at,
                     promoted_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, {promoted}) RETURNING {MODEL_COLUMNS}"
            );
            let mut tx = begin_write(pool).await?;
            if !Db::fence_held(&mut tx, fence).await? {
                return Ok(Finished::Fenced);
            }
            let statement = fence.bind::<Db>(&update).bind(&new.id).bind(now);
            if statement.execute(&mut *tx).await?.rows_affected() != 1 {
                // The fence holds (checked above, the job locked): the cancel flag stopped it.
                fence
                    .bind::<Db>(&cancel)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let cancelled = WebhookEvent::JobCancelled;
                Db::enqueue_job(&mut tx, self.receivers(), cancelled, &fence.job_id).await?;
                tx.commit().await?;
                return Ok(Finished::Cancelled);
            }
            if promote {
                Db::lock_promotions(&mut tx).await?;
            }
            let row: ModelRow = sqlx::query_as(&insert)
                .bind(&new.id)
                .bind(&fence.job_id)
                .bind(&new.base_model)
                .bind(Json(&new.labels))
                .bind(new.metrics.as_ref().map(Json))
                .bind(&new.path)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
            let receivers = self.receivers();
            let succeeded = WebhookEvent::JobSucceeded;
            Db::enqueue_job(&mut tx, receivers, succeeded, &fence.job_id).await?;
            if promote {
                Db::notify(&mut tx, channel::MODELS, &row.id).await?;
                Db::enqueue_promotion(&mut tx, receivers, &row.id).await?;
            }
            tx.commit().await?;
            Ok(Finished::Registered(row))
        })
    }

    /// Every model's id (for the data folder's sweep).
    pub async fn model_ids(&self) -> Result<Vec<String>, StoreError> {
        let ids: Vec<(String,)> = with_pool!(self, |pool, Db| {
            sqlx::query_as("SELECT id FROM models")
                .fetch_all(pool)
                .await?
        });
        Ok(ids.into_iter().map(|(id,)| id).collect())
    }

    /// The model `id`; [`StoreError::NotFound`] when there is none.
    pub async fn get_model(&self, id: &str) -> Result<ModelRow, StoreError> {
        let sql = format!("SELECT {MODEL_COLUMNS} FROM models WHERE id = $1");
        let row: Option<ModelRow> = with_pool!(self, |pool, Db| {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        });
        row.ok_or_else(|| not_found(id))
    }

    /// Models, newest first, after model `after` (a page of at most `limit`).
    pub async fn list_models(
        &self,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<ModelRow>, StoreError> {
        let before = self.seq_of("models", "model", after).await?;
        let before = before.unwrap_or(i64::MAX);
        let sql =
            format!("SELECT {MODEL_COLUMNS} FROM models WHERE seq < $1 ORDER BY seq DESC LIMIT $2");
        with_pool!(self, |pool, Db| {
            Ok(sqlx::query_as(&sql)
                .bind(before)
                .bind(limit)
                .fetch_all(pool)
                .await?)
        })
    }

    /// The model promoted last (`/classify`'s default), if any.
    pub async fn latest_model(&self) -> Result<Option<ModelRow>, StoreError> {
        Ok(self.models_by_promotion(1).await?.pop())
    }

    pub(super) async fn models_by_promotion(
        &self,
        limit: i64,
    ) -> Result<Vec<ModelRow>, StoreError> {
        let sql = format!(
            "SELECT {MODEL_COLUMNS} FROM models WHERE promoted_at IS NOT NULL
             ORDER BY promoted_at DESC, seq DESC LIMIT $1"
        );
        with_pool!(self, |pool, Db| {
            Ok(sqlx::query_as(&sql).bind(limit).fetch_all(pool).await?)
        })
    }

    /// Makes model `id` the one promoted last; every node is told at commit.
    pub async fn promote_model(&self, id: &str) -> Result<ModelRow, StoreError> {
        with_pool!(self, |pool, Db| {
            let sql = format!(
                "UPDATE models SET promoted_at = {} WHERE id = $1 RETURNING {MODEL_COLUMNS}",
                next_promotion::<Db>()
            );
            let mut tx = begin_write(pool).await?;
            Db::lock_promotions(&mut tx).await?;
            let row: ModelRow = sqlx::query_as(&sql)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| not_found(id))?;
            Db::notify(&mut tx, channel::MODELS, &row.id).await?;
            Db::enqueue_promotion(&mut tx, self.receivers(), &row.id).await?;
            tx.commit().await?;
            Ok(row)
        })
    }

    /// Deletes model `id`'s record (its folder is the caller's);
    /// [`StoreError::Conflict`] while it is `latest` or the base of a queued or
    /// running job.
    pub async fn delete_model(&self, id: &str) -> Result<ModelRow, StoreError> {
        let select = format!("SELECT {MODEL_COLUMNS} FROM models WHERE id = $1");
        const LATEST: &str = "SELECT id FROM models WHERE promoted_at IS NOT NULL
             ORDER BY promoted_at DESC, seq DESC LIMIT 1";
        const USERS: &str =
            "SELECT id FROM jobs WHERE base_model = $1 AND status IN ('queued', 'running')";
        with_pool!(self, |pool, Db| {
            let mut tx = begin_write(pool).await?;
            Db::lock_promotions(&mut tx).await?;
            let row: ModelRow = sqlx::query_as(&select)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| not_found(id))?;
            let latest: Option<String> =
                sqlx::query_scalar(LATEST).fetch_optional(&mut *tx).await?;
            if latest.as_deref() == Some(id) {
                return Err(StoreError::Conflict(format!(
                    "model `{id}` is `latest`; promote another model first"
                )));
            }
            let users: Vec<String> = sqlx::query_scalar(USERS)
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
            if !users.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "model `{id}` is the base model of job(s) {} still to run",
                    users.join(", ")
                )));
            }
            sqlx::query("DELETE FROM models WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(row)
        })
    }
}
