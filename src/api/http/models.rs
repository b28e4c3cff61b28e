//! `GET /models`, `GET /models/{id}`: the fine-tuned models.

use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::timestamp;
use crate::api::error::ErrorBody;
use crate::api::{ApiError, AppState, Json};
use crate::store::ModelRow;

/// A fine-tuned model.
#[derive(Debug, Serialize, ToSchema)]
pub struct Model {
    /// Its id (what `/classify` takes as `model`).
    pub id: String,
    /// The job that made it.
    pub job: String,
    /// Its base model.
    pub base_model: String,
    /// Class names, by id.
    pub labels: Vec<String>,
    /// The final evaluation, if any.
    #[schema(value_type = Option<Object>)]
    pub metrics: Option<serde_json::Value>,
    /// Whether `/classify` answers with it by default.
    pub latest: bool,
    /// When registered (RFC 3339).
    pub created_at: String,
}

/// Fine-tuned models, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// The models.
    pub data: Vec<Model>,
}

fn view(state: &AppState, row: ModelRow) -> Model {
    let latest = state.registry.latest().is_some_and(|m| m.id == row.id);
    Model {
        id: row.id,
        job: row.job_id,
        base_model: row.base_model,
        labels: row.labels,
        metrics: row.metrics,
        latest,
        created_at: timestamp(row.created_at),
    }
}

/// Fine-tuned models, newest first.
#[utoipa::path(get, path = "/models", tag = "models",
    responses((status = 200, body = ModelList)), security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<ModelList>, ApiError> {
    let rows = state.store.list_models(1000).await?;
    Ok(Json(ModelList {
        data: rows.into_iter().map(|r| view(&state, r)).collect(),
    }))
}

/// One fine-tuned model.
#[utoipa::path(get, path = "/models/{id}", tag = "models",
    params(("id" = String, Path, description = "Model id")),
    responses((status = 200, body = Model), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Model>, ApiError> {
    let row = state.store.get_model(&id).await?;
    Ok(Json(view(&state, row)))
}
