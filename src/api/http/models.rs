//! `/models`: the fine-tuned models (and the model the service was started
//! with, `--model`), which of them is `latest`, promoting and deleting them.
//! Their files are in [`super::model_files`].

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::job_records::eval_metrics;
use super::paging::{page_type, PageParams};
use super::timestamp;
use crate::api::error::ErrorBody;
use crate::api::{ApiError, AppState, Json, Query};
use crate::infer::InferError;
use crate::model::{InferPrecision, LoraConfig, ModelError, ModelSource};
use crate::store::ModelRow;
use crate::train::{EvalMetrics, Method};

/// A model `/classify` can answer with.
#[derive(Debug, Serialize, ToSchema)]
pub struct Model {
    /// What `/classify` takes as `model` and jobs as `base_model`:
    /// `model-…` for a fine-tuned model, the folder's name (or the Hub id)
    /// for the model the service was started with.
    pub id: String,
    /// The job that made it; null for the model the service was started with.
    pub job: Option<String>,
    /// The model it was fine-tuned from; null for the model the service was
    /// started with.
    pub base_model: Option<String>,
    /// Class names, by label id.
    pub labels: Vec<String>,
    /// `full` for a whole classifier, `lora` for an adapter on `base_model`
    /// (served beside the other adapters of the same base).
    #[schema(inline)]
    pub method: Method,
    /// The adapter's rank, scaling and target layers; null for a whole
    /// classifier.
    pub lora: Option<LoraConfig>,
    /// Size of its files on disk in bytes (an adapter's without its base);
    /// null for the model the service was started with.
    pub bytes: Option<u64>,
    /// Its job's final evaluation (`loss`, `accuracy`, `macro_f1`,
    /// `precision`, `recall`, `confusion`); null without an evaluation set.
    pub metrics: Option<EvalMetrics>,
    /// Whether `/classify` answers with it when no model is named.
    pub latest: bool,
    /// When registered (RFC 3339, UTC); null for the model the service was
    /// started with.
    pub created_at: Option<String>,
    /// When last made `latest` (RFC 3339, UTC); null if never.
    pub promoted_at: Option<String>,
    /// What `/classify` runs it in (`serve --infer-precision`): `fp32`,
    /// `int8` or `bf16`.
    #[schema(inline)]
    pub precision: InferPrecision,
    /// Bytes of weights it holds in memory while loaded for `/classify`
    /// (int8 or bf16 layers at their packed size; an adapter's own tensors,
    /// not its base's); null while it is not loaded.
    pub loaded_bytes: Option<usize>,
}

page_type! {
    /// A page of models, newest first (the one the service was started with
    /// first, on the first page).
    ModelList of Model
}

/// Bytes of the files directly in `dir`.
fn folder_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

pub(super) fn view(state: &AppState, row: ModelRow) -> Result<Model, ApiError> {
    let latest = state.registry.latest().is_some_and(|m| m.id == row.id);
    let dir = state.data_dir.resolve(&row.path);
    let lora = crate::model::adapter_settings(&dir);
    let loaded_bytes = state.registry.peek(&row.id).map(|m| m.bytes());
    Ok(Model {
        id: row.id,
        job: Some(row.job_id),
        base_model: Some(row.base_model),
        labels: row.labels,
        method: if lora.is_some() {
            Method::Lora
        } else {
            Method::Full
        },
        lora,
        bytes: Some(folder_bytes(&dir)),
        metrics: eval_metrics(row.metrics)?,
        latest,
        created_at: Some(timestamp(row.created_at)),
        promoted_at: row.promoted_at.map(timestamp),
        precision: state.registry.precision(),
        loaded_bytes,
    })
}

/// The model the service was started with (`--model`), when it is loaded.
pub(super) fn preloaded(state: &AppState) -> Option<Model> {
    let id = state.preloaded.as_deref()?;
    let served = state.registry.get(id)?;
    Some(Model {
        id: id.to_string(),
        job: None,
        base_model: None,
        labels: served.classifier.labels().to_vec(),
        method: match served.classifier.adapter() {
            Some(_) => Method::Lora,
            None => Method::Full,
        },
        lora: served.classifier.adapter().cloned(),
        bytes: None,
        metrics: None,
        latest: state.registry.latest().is_some_and(|m| m.id == id),
        created_at: None,
        promoted_at: None,
        precision: served.classifier.precision(),
        loaded_bytes: Some(served.bytes()),
    })
}

/// Lists models.
///
/// Newest first, a page at a time; `latest` is marked, and the models the
/// service was started with (`--model`) are listed too.
#[utoipa::path(get, path = "/models", operation_id = "list_models", tag = "models",
    params(PageParams),
    responses(
        (status = 200, description = "A page of models", body = ModelList),
        (status = 422, description = "A bad `limit` or `after`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Query(page): Query<PageParams>,
) -> Result<Json<ModelList>, ApiError> {
    let limit = page.limit()?;
    let rows = state
        .store
        .list_models(limit + 1, page.after.as_deref())
        .await
        .map_err(|e| page.unknown_after(e))?;
    let (rows, has_more) = page.cut(rows);
    let first_page = page.after.is_none();
    let data = first_page
        .then(|| preloaded(&state))
        .flatten()
        .map(Ok)
        .into_iter()
        .chain(rows.into_iter().map(|r| view(&state, r)))
        .collect::<Result<_, _>>()?;
    Ok(Json(ModelList { data, has_more }))
}

/// Gets a model.
///
/// Its labels, base, method (full or LoRA), final metrics and size on disk.
#[utoipa::path(get, path = "/models/{id}", operation_id = "get_model", tag = "models",
    params(("id" = String, Path, description = "Model id")),
    responses(
        (status = 200, description = "The model", body = Model),
        (status = 404, description = "No model has this id", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Model>, ApiError> {
    if let Some(model) = preloaded(&state).filter(|m| m.id == id) {
        return Ok(Json(model));
    }
    let row = state.store.get_model(&id).await?;
    Ok(Json(view(&state, row)?))
}

/// Promotes a model.
///
/// Makes it `latest`: `/classify` answers with it from now on (requests
/// in flight finish on the model they started with).
#[utoipa::path(post, path = "/models/{id}/promote", operation_id = "promote_model", tag = "models",
    params(("id" = String, Path, description = "Model id")),
    responses(
        (status = 200, description = "Now `latest`", body = Model),
        (status = 404, description = "No model has this id", body = ErrorBody),
        (status = 409, description = "Its files cannot be loaded", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn promote(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Model>, ApiError> {
    if let Some(served) = preloaded(&state).and_then(|m| state.registry.get(&m.id)) {
        if served.id == id {
            // `--model` is this node's own: it outranks nothing but is
            // served again here (other nodes keep their `latest`).
            state.registry.promote(served, state.registry.rank());
            return get(State(state), Path(id)).await;
        }
    }
    let row = state.store.get_model(&id).await?;
    let source = ModelSource::Dir(state.data_dir.resolve(&row.path));
    let served = state
        .registry
        .get_or_load(&id, source)
        .await
        .map_err(|e| unloadable(&id, e))?;
    let row = state.store.promote_model(&id).await?;
    state
        .registry
        .promote(served, row.promoted_at.unwrap_or(i64::MAX));
    tracing::info!(model = %id, "promoted to `latest` by a client");
    Ok(Json(view(&state, row)?))
}

/// Deletes a model.
///
/// A fine-tuned model and its files go; 409 while it is `latest` or the base
/// model of a job still to run.
#[utoipa::path(delete, path = "/models/{id}", operation_id = "delete_model", tag = "models",
    params(("id" = String, Path, description = "Model id (`model-…`)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No model has this id", body = ErrorBody),
        (status = 409, description = "`latest`, the service's own model, or in use by a job", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.preloaded.as_deref() == Some(id.as_str()) {
        return Err(ApiError::Conflict(format!(
            "model `{id}` is the one the service was started with (--model); it cannot be deleted"
        )));
    }
    if state.registry.latest().is_some_and(|m| m.id == id) {
        return Err(ApiError::Conflict(format!(
            "model `{id}` is `latest`; promote another model first"
        )));
    }
    let row = state.store.delete_model(&id).await?;
    state.registry.forget(&id);
    let folder = state.data_dir.resolve(&row.path);
    if let Err(e) = std::fs::remove_dir_all(&folder) {
        tracing::warn!(model = %id, "removing its files: {e}");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A model that is registered but does not load: 409 when its files are gone
/// or damaged (the client can promote or name another), 500 otherwise.
pub(crate) fn unloadable(id: &str, e: InferError) -> ApiError {
    match e {
        InferError::Load(
            ModelError::MissingFile { .. }
            | ModelError::Io(_)
            | ModelError::Safetensors { .. }
            | ModelError::MissingTensor { .. }
            | ModelError::WrongShape { .. }
            | ModelError::Config { .. },
        ) => ApiError::Conflict(format!(
            "model `{id}` is registered but its files are missing or damaged; delete it, or use another"
        )),
        other => ApiError::internal(other),
    }
}
