//! `/v1/models`: tuneserve's models (fine-tuned ones, and the one the
//! service was started with) as OpenAI's `model` objects.

use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::{seconds, Deleted};
use crate::api::error::ErrorBody;
use crate::api::http::models;
use crate::api::{ApiError, AppState, Json};
use crate::store::ModelRow;

/// A model as OpenAI's `model`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiModel {
    /// The model's id (what `/classify`, `POST /models/{id}` and jobs'
    /// `model` take).
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// When registered (Unix seconds); 0 for the model the service was
    /// started with.
    pub created: i64,
    /// Always `tuneserve`.
    pub owned_by: &'static str,
}

/// Every model, the one the service was started with first, then newest
/// first (OpenAI's model list is not paged).
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiModelList {
    /// Always `list`.
    pub object: &'static str,
    /// The models.
    pub data: Vec<OpenAiModel>,
}

fn view(row: &ModelRow) -> OpenAiModel {
    OpenAiModel {
        id: row.id.clone(),
        object: "model",
        created: seconds(row.created_at),
        owned_by: "tuneserve",
    }
}

fn started_with(id: String) -> OpenAiModel {
    OpenAiModel {
        id,
        object: "model",
        created: 0,
        owned_by: "tuneserve",
    }
}

/// Lists models.
///
/// Every model this service can answer with: the fine-tuned ones and the one
/// it was started with, as OpenAI's `model` objects.
#[utoipa::path(get, path = "/v1/models", operation_id = "openai_list_models", tag = "openai",
    responses((status = 200, description = "Every model", body = OpenAiModelList)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<OpenAiModelList>, ApiError> {
    let mut data: Vec<OpenAiModel> = models::preloaded(&state)
        .map(|m| started_with(m.id))
        .into_iter()
        .collect();
    let mut after: Option<String> = None;
    loop {
        let page = state.store.list_models(100, after.as_deref()).await?;
        data.extend(page.iter().map(view));
        match page.last() {
            Some(last) if page.len() == 100 => after = Some(last.id.clone()),
            _ => break,
        }
    }
    Ok(Json(OpenAiModelList {
        object: "list",
        data,
    }))
}

/// Retrieves a model.
///
/// Its id, when it was made and who owns it (`tuneserve`).
#[utoipa::path(get, path = "/v1/models/{model}", operation_id = "openai_retrieve_model", tag = "openai",
    params(("model" = String, Path, description = "Model id")),
    responses((status = 200, description = "The model", body = OpenAiModel),
        (status = 404, description = "No such model", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn retrieve(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<OpenAiModel>, ApiError> {
    if let Some(m) = models::preloaded(&state).filter(|m| m.id == id) {
        return Ok(Json(started_with(m.id)));
    }
    Ok(Json(view(&state.store.get_model(&id).await?)))
}

/// Deletes a model.
///
/// A fine-tuned model and its files, as `DELETE /models/{id}` does (409
/// while it is `latest` or a queued job's base model).
#[utoipa::path(delete, path = "/v1/models/{model}", operation_id = "openai_delete_model", tag = "openai",
    params(("model" = String, Path, description = "Model id (`model-…`)")),
    responses((status = 200, description = "Deleted", body = Deleted),
        (status = 404, description = "No such model", body = ErrorBody),
        (status = 409, description = "`latest`, the service's own model, or in use by a job", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    models::delete(State(state), Path(id.clone())).await?;
    Ok(Json(Deleted {
        id,
        object: "model",
        deleted: true,
    }))
}
