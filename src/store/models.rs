//! The `models` table: a job's model registered with its success (fenced),
//! and the registered models, newest first.

use serde_json::Value;
use sqlx::types::Json;

use super::dialect::begin_write;
use super::jobs::FENCED;
use super::steps::{channel, Steps};
use super::{now_ms, with_pool, Fence, Store, StoreError};

/// A fine-tuned model.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ModelRow {
    /// Registration order over every node: the highest is the newest model,
    /// `latest` everywhere.
    pub seq: i64,
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

const MODEL_COLUMNS: &str = "seq, id, job_id, base_model, labels, metrics, path, created_at";

impl Store {
    /// Registers the job's model and marks it succeeded, in one transaction;
    /// `None` (and nothing written) when the fence no longer holds. Every
    /// node is told at commit (the model becomes `latest` everywhere).
    pub async fn finish_succeeded(
        &self,
        fence: &Fence,
        new: NewModel,
    ) -> Result<Option<ModelRow>, StoreError> {
        let now = now_ms();
        let update = format!(
            "UPDATE jobs SET status = 'succeeded', model_id = $4, lease_owner = NULL,
                 lease_expires_at = NULL, finished_at = $5, updated_at = $5, error = NULL
             WHERE {FENCED}"
        );
        let insert = format!(
            "INSERT INTO models (id, job_id, base_model, labels, metrics, path, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {MODEL_COLUMNS}"
        );
        with_pool!(self, |pool, Db| {
            let mut tx = begin_write(pool).await?;
            if !Db::fence_held(&mut tx, fence).await? {
                return Ok(None);
            }
            let statement = fence.bind::<Db>(&update).bind(&new.id).bind(now);
            if statement.execute(&mut *tx).await?.rows_affected() != 1 {
                return Ok(None);
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
            Db::notify(&mut tx, channel::MODELS, &row.id).await?;
            tx.commit().await?;
            Ok(Some(row))
        })
    }

    /// One model.
    pub async fn get_model(&self, id: &str) -> Result<ModelRow, StoreError> {
        let sql = format!("SELECT {MODEL_COLUMNS} FROM models WHERE id = $1");
        let row: Option<ModelRow> = with_pool!(self, |pool, Db| {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        });
        row.ok_or_else(|| StoreError::NotFound {
            what: "model",
            id: id.to_string(),
        })
    }

    /// Models, newest first.
    pub async fn list_models(&self, limit: i64) -> Result<Vec<ModelRow>, StoreError> {
        let sql = format!("SELECT {MODEL_COLUMNS} FROM models ORDER BY seq DESC LIMIT $1");
        with_pool!(self, |pool, Db| {
            Ok(sqlx::query_as(&sql).bind(limit).fetch_all(pool).await?)
        })
    }
}
