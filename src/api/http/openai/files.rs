//! `/v1/files`: OpenAI's files, which in tuneserve are datasets. An upload
//! (multipart `file` + `purpose=fine-tune`) is parsed and validated exactly as
//! `POST /datasets` parses one (JSONL rows `{"text", "label"}`, or CSV with
//! those columns; not OpenAI's chat `messages` rows) and stored as a dataset,
//! whose id (`ds-…`) is the file's id.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use super::{list_type, seconds, Deleted, ListParams};
use crate::api::error::ErrorBody;
use crate::api::http::datasets::{self, Dataset};
use crate::api::http::upload::{self, UploadParams};
use crate::api::{ApiError, AppState, Json, Query};
use crate::store::DatasetRow;

/// A file (a tuneserve dataset).
#[derive(Debug, Serialize, ToSchema)]
pub struct FileObject {
    /// The dataset's id (`ds-…`): what jobs take as `training_file`.
    pub id: String,
    /// Always `file`.
    pub object: &'static str,
    /// Bytes of the stored copy (the rows normalised to JSONL, which is what
    /// training reads; not the upload's own size).
    pub bytes: u64,
    /// When uploaded (Unix seconds).
    pub created_at: i64,
    /// The uploaded file's name (the dataset's name; `ds-….jsonl` when it
    /// has none).
    pub filename: String,
    /// Always `fine-tune`.
    pub purpose: &'static str,
    /// Always `processed`: a file is validated before it is stored.
    pub status: &'static str,
}

list_type! {
    /// A page of files, newest first.
    FileList of FileObject
}

fn view(state: &AppState, row: DatasetRow) -> FileObject {
    let path = state.data_dir.resolve(&row.path);
    FileObject {
        bytes: std::fs::metadata(path).map_or(0, |m| m.len()),
        filename: row.name.unwrap_or_else(|| format!("{}.jsonl", row.id)),
        id: row.id,
        object: "file",
        created_at: seconds(row.created_at),
        purpose: "fine-tune",
        status: "processed",
    }
}

/// The multipart form `POST /v1/files` takes.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct FileForm {
    /// The rows: JSONL (`{"text": …, "label": …}` per line) or CSV with
    /// `text` and `label` columns (the file name's extension tells which).
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    file: String,
    /// `fine-tune` (the only purpose served).
    purpose: String,
}

/// Uploads a file.
///
/// A training or validation file (`purpose: fine-tune`) of tuneserve's
/// text/label JSON lines, stored as a dataset and validated as `POST /datasets`
/// validates one; the file's id is the dataset's.
#[utoipa::path(post, path = "/v1/files", operation_id = "openai_create_file", tag = "openai",
    request_body(content = FileForm, content_type = "multipart/form-data",
        description = "The file (`file`) and its purpose (`purpose`: `fine-tune`)"),
    responses(
        (status = 200, description = "Stored", body = FileObject),
        (status = 400, description = "Unreadable multipart form", body = ErrorBody),
        (status = 413, description = "Larger than --max-dataset-bytes", body = ErrorBody),
        (status = 422, description = "No `file` part, a purpose other than `fine-tune`, or row \
            errors by line (in `error.details`; `param` is `file`)", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<FileObject>, ApiError> {
    let is_form = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !is_form {
        return Err(ApiError::BadRequest(
            "expected a multipart/form-data body with `file` and `purpose` parts".into(),
        ));
    }
    let received = upload::receive(&state, &headers, body).await?;
    match received.fields.get("purpose").map(String::as_str) {
        Some("fine-tune") => {}
        Some(other) => {
            let message = format!("`{other}` is not served here; only `fine-tune` is");
            return Err(ApiError::invalid("purpose", message));
        }
        None => return Err(ApiError::invalid("purpose", "missing (send `fine-tune`)")),
    }
    let name = received.file_name().map(str::to_string);
    let parsed = tokio::task::spawn_blocking(move || {
        let params = UploadParams {
            format: None,
            name: None,
            drop_empty_text: None,
        };
        received.parse(&params)
    })
    .await?
    .map_err(|e| match e {
        ApiError::Validation {
            message, details, ..
        } => ApiError::Validation {
            message,
            param: Some("file".into()),
            details,
        },
        other => other,
    })?;
    let (parsed, format) = parsed;
    let dataset: Dataset = datasets::store(&state, parsed, format, name, None).await?;
    let row = state.store.get_dataset(&dataset.id).await?;
    Ok(Json(view(&state, row)))
}

/// Lists files.
///
/// The uploaded files (every dataset), newest first, paged with `after` and
/// `limit`.
#[utoipa::path(get, path = "/v1/files", operation_id = "openai_list_files", tag = "openai",
    params(ListParams),
    responses((status = 200, description = "A page of files", body = FileList),
        (status = 422, description = "A bad `limit`, or an unknown `after`", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListParams>,
) -> Result<Json<FileList>, ApiError> {
    let limit = q.limit()?;
    let rows = state
        .store
        .list_datasets(limit + 1, q.after.as_deref())
        .await
        .map_err(|e| q.unknown_after(e))?;
    let files = rows.into_iter().map(|r| view(&state, r)).collect();
    Ok(Json(FileList::page(files, limit)))
}

/// Retrieves a file.
///
/// Its name, size in bytes and when it was uploaded.
#[utoipa::path(get, path = "/v1/files/{file_id}", operation_id = "openai_retrieve_file", tag = "openai",
    params(("file_id" = String, Path, description = "File (dataset) id, `ds-…`")),
    responses((status = 200, description = "The file", body = FileObject),
        (status = 404, description = "No such file", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn retrieve(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<FileObject>, ApiError> {
    let row = state.store.get_dataset(&id).await?;
    Ok(Json(view(&state, row)))
}

/// Deletes a file.
///
/// The dataset and its stored copy go; 409 while a job uses it.
#[utoipa::path(delete, path = "/v1/files/{file_id}", operation_id = "openai_delete_file", tag = "openai",
    params(("file_id" = String, Path, description = "File (dataset) id, `ds-…`")),
    responses((status = 200, description = "Deleted", body = Deleted),
        (status = 404, description = "No such file", body = ErrorBody),
        (status = 409, description = "A job (of any status) uses it", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    let status = datasets::delete(State(state), Path(id.clone())).await?;
    debug_assert_eq!(status, StatusCode::NO_CONTENT);
    Ok(Json(Deleted {
        id,
        object: "file",
        deleted: true,
    }))
}
