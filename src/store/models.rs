//! The `models` table: fine-tuned models, registered when their job succeeds,
//! and which of them is `latest` (the one promoted last).

use serde_json::Value;
use sqlx::types::Json;

use super::jobs::FENCED;
use super::{now_ms, Fence, Store, StoreError};

/// A fine-tuned model.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ModelRow {
    /// `model-`, the job's suffix if any, and 12 hex digits.
    pub id: String,
    /// The job that made it.
    pub job_id: String,
    /// The base model that job started from.
    pub base_model: String,
    /// Class names, by label id.
    #[sqlx(json)]
    pub labels: Vec<String>,
    /// The final evaluation; `None` when the job had no evaluation set.
    #[sqlx(json(nullable))]
    pub metrics: Option<Value>,
    /// Its folder (Hugging Face classifier layout).
    pub path: String,
    /// When registered (Unix ms).
    pub created_at: i64,
    /// When last made `latest` (Unix ms); `None` if never.
    pub promoted_at: Option<i64>,
}

/// What [`Store::finish_succeeded`] registers.
#[derive(Debug, Clone)]
pub struct NewModel {
    /// The id to register it under.
    pub id: String,
    /// The base model of the job.
    pub base_model: String,
    /// Class names, by label id.
    pub labels: Vec<String>,
    /// The final evaluation, if the job had an evaluation set.
    pub metrics: Option<Value>,
    /// Its folder.
    pub path: String,
}

const MODEL_COLUMNS: &str =
    "id, job_id, base_model, labels, metrics, path, created_at, promoted_at";

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound {
        what: "model",
        id: id.to_string(),
    }
}

impl Store {
    /// Registers the job's model (promoted when `promote`) and marks the job
    /// succeeded, in one transaction; `None` (and nothing written) when the
    /// fence no longer holds.
    pub async fn finish_succeeded(
        &self,
        fence: &Fence,
        new: NewModel,
        promote: bool,
    ) -> Result<Option<ModelRow>, StoreError> {
        let mut tx = self.write().await?;
        let now = now_ms();
        let sql = format!(
            "UPDATE jobs SET status = 'succeeded', model_id = $4, lease_owner = NULL,
                 lease_expires_at = NULL, finished_at = $5, updated_at = $5, error = NULL
             WHERE {FENCED}"
        );
        let done = fence
            .bind(&sql)
            .bind(&new.id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if done != 1 {
            return Ok(None);
        }
        let row = sqlx::query_as(&format!(
            "INSERT INTO models (id, job_id, base_model, labels, metrics, path, created_at,
                 promoted_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {MODEL_COLUMNS}"
        ))
        .bind(&new.id)
        .bind(&fence.job_id)
        .bind(&new.base_model)
        .bind(Json(&new.labels))
        .bind(new.metrics.as_ref().map(Json))
        .bind(&new.path)
        .bind(now)
        .bind(promote.then_some(now))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(row))
    }

    /// One model.
    pub async fn get_model(&self, id: &str) -> Result<ModelRow, StoreError> {
        sqlx::query_as(&format!("SELECT {MODEL_COLUMNS} FROM models WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// Models, newest first, after model `after` (a page of at most `limit`).
    pub async fn list_models(
        &self,
        limit: i64,
        after: Option<&str>,
    ) -> Result<Vec<ModelRow>, StoreError> {
        let before = self.seq_of("models", "model", after).await?;
        Ok(sqlx::query_as(&format!(
            "SELECT {MODEL_COLUMNS} FROM models WHERE seq < $1 ORDER BY seq DESC LIMIT $2"
        ))
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The model promoted last (`/classify`'s default), if any.
    pub async fn latest_model(&self) -> Result<Option<ModelRow>, StoreError> {
        Ok(self.models_by_promotion(1).await?.pop())
    }

    pub(super) async fn models_by_promotion(
        &self,
        limit: i64,
    ) -> Result<Vec<ModelRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {MODEL_COLUMNS} FROM models WHERE promoted_at IS NOT NULL
             ORDER BY promoted_at DESC, seq DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Makes model `id` the one promoted last.
    pub async fn promote_model(&self, id: &str) -> Result<ModelRow, StoreError> {
        let mut tx = self.write().await?;
        // Strictly after every earlier promotion, even within one millisecond.
        let row = sqlx::query_as(&format!(
            "UPDATE models SET promoted_at = MAX($1,
                 COALESCE((SELECT MAX(promoted_at) FROM models), 0) + 1)
             WHERE id = $2 RETURNING {MODEL_COLUMNS}"
        ))
        .bind(now_ms())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| not_found(id))?;
        tx.commit().await?;
        Ok(row)
    }

    /// Deletes model `id`'s record (its folder is the caller's);
    /// [`StoreError::Conflict`] while it is `latest` or the base of a queued or
    /// running job.
    pub async fn delete_model(&self, id: &str) -> Result<ModelRow, StoreError> {
        let mut tx = self.write().await?;
        let row: ModelRow =
            sqlx::query_as(&format!("SELECT {MODEL_COLUMNS} FROM models WHERE id = $1"))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| not_found(id))?;
        let latest: Option<String> = sqlx::query_scalar(
            "SELECT id FROM models WHERE promoted_at IS NOT NULL
             ORDER BY promoted_at DESC, seq DESC LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await?;
        if latest.as_deref() == Some(id) {
            return Err(StoreError::Conflict(format!(
                "model `{id}` is `latest`; promote another model first"
            )));
        }
        let users: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE base_model = $1 AND status IN ('queued', 'running')",
        )
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
    }
}
