//! `GET /models/{id}/files[/{name}]`: a model's files in Hugging Face's
//! layout (config, weights, tokenizer, model card), listed and downloaded
//! one by one, so that `from_pretrained` can load what the service trained.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::error::ErrorBody;
use crate::api::{ApiError, AppState, Json};
use crate::model::ModelSource;

/// One file of a model.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelFile {
    /// The file's name (`config.json`, `model.safetensors`, …): what
    /// `/models/{id}/files/{name}` takes.
    pub name: String,
    /// Size of the file in bytes.
    pub bytes: u64,
}

/// A model's files, by name.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelFileList {
    /// Every file of the model's folder, by name.
    pub data: Vec<ModelFile>,
}

/// The folder holding model `id`'s files.
async fn folder(state: &AppState, id: &str) -> Result<std::path::PathBuf, ApiError> {
    if state.preloaded.as_deref() == Some(id) {
        return match state.config.model.as_deref().map(str::parse) {
            Some(Ok(ModelSource::Dir(dir))) => Ok(dir),
            _ => Err(ApiError::Conflict(format!(
                "model `{id}` comes from the Hugging Face Hub; download it from there"
            ))),
        };
    }
    let row = state.store.get_model(id).await?;
    Ok(state.data_dir.resolve(&row.path))
}

fn files_of(dir: &std::path::Path) -> std::io::Result<Vec<ModelFile>> {
    let mut files: Vec<ModelFile> = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let bytes = e.metadata().ok()?.len();
            (!name.starts_with('.')).then_some(ModelFile { name, bytes })
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Lists a model's files.
///
/// Every file of the model's folder (Hugging Face's layout, or PEFT's for an
/// adapter) with its size; each downloads from `/models/{id}/files/{name}`.
#[utoipa::path(get, path = "/models/{id}/files", operation_id = "list_model_files", tag = "models",
    params(("id" = String, Path, description = "Model id")),
    responses(
        (status = 200, description = "The files, by name", body = ModelFileList),
        (status = 404, description = "No model has this id", body = ErrorBody),
        (status = 409, description = "Its files are gone, or on the Hub", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelFileList>, ApiError> {
    let dir = folder(&state, &id).await?;
    let files = files_of(&dir).map_err(|_| {
        ApiError::Conflict(format!(
            "model `{id}` is registered but its files are missing"
        ))
    })?;
    Ok(Json(ModelFileList { data: files }))
}

/// Downloads a model's file.
///
/// The bytes of one file the listing names, streamed from disk.
#[utoipa::path(get, path = "/models/{id}/files/{name}", operation_id = "get_model_file", tag = "models",
    params(
        ("id" = String, Path, description = "Model id"),
        ("name" = String, Path, description = "File name, as `/models/{id}/files` lists it"),
    ),
    responses(
        (status = 200, description = "The file's bytes: `.json` files as `application/json`, the \
            model card (`README.md`) as `text/markdown`, anything else as `application/octet-stream`",
            content(
                (String = "application/octet-stream"),
                (serde_json::Value = "application/json"),
                (String = "text/markdown"),
            )),
        (status = 404, description = "No model has this id, or it has no such file", body = ErrorBody),
        (status = 409, description = "Its files are gone, or on the Hub", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn download(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let dir = folder(&state, &id).await?;
    // Only a name the listing shows: no path can leave the model's folder.
    let listed = files_of(&dir)
        .unwrap_or_default()
        .into_iter()
        .find(|f| f.name == name);
    let Some(file) = listed else {
        return Err(ApiError::NotFound {
            what: "file",
            id: format!("{id}/{name}"),
        });
    };
    let opened = tokio::fs::File::open(dir.join(&file.name))
        .await
        .map_err(|e| ApiError::internal_while("opening a model file", e))?;
    let stream = tokio_util::io::ReaderStream::new(opened);
    let kind = match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("json") => "application/json",
        Some("md") => "text/markdown; charset=utf-8",
        _ => "application/octet-stream",
    };
    let headers = [
        (CONTENT_TYPE, kind.to_string()),
        (CONTENT_LENGTH, file.bytes.to_string()),
        (
            CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ),
    ];
    Ok((headers, Body::from_stream(stream)).into_response())
}
