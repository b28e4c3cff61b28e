//! `/datasets`: upload (see [`super::upload`]), import from the Hub, list,
//! inspect and delete labelled datasets.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::paging::{page_type, PageParams};
use super::timestamp;
use super::upload::{self, dataset_error, UploadForm, UploadParams};
use crate::api::error::ErrorBody;
use crate::api::{ApiError, AppState, Json, Query};
use crate::data::{load_hub_split, Dataset as Parsed, DatasetError, DatasetFormat, ParseOptions};
use crate::hub::{HubError, HubRepo, RepoKind};
use crate::store::{new_id, DatasetRow, NewDataset};

/// A labelled dataset, parsed and stored at upload or import; jobs name it by `id`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Dataset {
    /// `ds-` and 16 hex digits: what jobs name it by.
    pub id: String,
    /// The name given at upload (or `repo:split` for an import); null when none.
    pub name: Option<String>,
    /// The format it was uploaded in.
    pub format: DatasetFormat,
    /// Number of examples kept (rows with empty text dropped on request are
    /// not counted).
    pub rows: i64,
    /// Class names, by label id (the classifier's `id2label`).
    pub labels: Vec<String>,
    /// Examples per class name.
    pub label_counts: BTreeMap<String, i64>,
    /// The Hub dataset repository it was imported from (`owner/name`, no
    /// revision), named in the model cards of models trained on it; null
    /// for an upload.
    pub hub_repo: Option<String>,
    /// Upload time (RFC 3339, UTC).
    pub created_at: String,
}

impl From<DatasetRow> for Dataset {
    fn from(row: DatasetRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            format: row.format,
            rows: row.rows,
            labels: row.labels,
            label_counts: row.label_counts,
            hub_repo: row.hub_repo,
            created_at: timestamp(row.created_at),
        }
    }
}

page_type! {
    /// A page of datasets, newest first.
    DatasetList of Dataset
}

/// Uploads a dataset.
///
/// JSONL (`{"text", "label"[, "label_text"][, "idx"]}` per line) or CSV with
/// `text` and `label` columns, as the raw body or as the `file` part of a
/// `multipart/form-data` form (`curl -F file=@train.jsonl`). Every row is
/// checked before anything is stored; the 422 lists the bad rows by line.
#[utoipa::path(post, path = "/datasets", tag = "datasets", operation_id = "upload_dataset",
    params(UploadParams),
    request_body(
        description = "JSONL or CSV rows: the raw body, or the `file` part of a multipart form. \
            The raw body may also be sent as `application/x-ndjson` or `text/csv` (the format is \
            `format`, else the file name's extension, else the content type, else sniffed from the \
            first line); only `application/octet-stream` is listed here because client generators \
            take no other raw type",
        content(
            (String = "application/octet-stream"),
            (UploadForm = "multipart/form-data"),
        )
    ),
    responses(
        (status = 201, description = "Stored", body = Dataset),
        (status = 400, description = "Unreadable body or multipart form", body = ErrorBody),
        (status = 413, description = "Larger than --max-dataset-bytes", body = ErrorBody),
        (status = 422, description = "Row errors, by line (in `error.details`)", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn upload(
    State(state): State<AppState>,
    Query(params): Query<UploadParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Dataset>), ApiError> {
    let received = upload::receive(&state, &headers, body).await?;
    // Parsing is CPU work: off the runtime's workers.
    let name = params.name.clone();
    let (parsed, format) = tokio::task::spawn_blocking(move || received.parse(&params)).await??;
    let row = store(&state, parsed, format, name, None).await?;
    Ok((StatusCode::CREATED, Json(row)))
}

/// Writes the normalised copy (JSONL) and records the dataset.
pub(super) async fn store(
    state: &AppState,
    parsed: Parsed,
    format: DatasetFormat,
    name: Option<String>,
    hub_repo: Option<String>,
) -> Result<Dataset, ApiError> {
    let id = new_id("ds");
    let path = state.data_dir.dataset(&id);
    let label_counts: BTreeMap<String, i64> = parsed
        .named_label_counts()
        .into_iter()
        .map(|(name, n)| (name.to_string(), n as i64))
        .collect();
    let rows = parsed.examples.len() as i64;
    let file = path.clone();
    let jsonl = parsed.to_jsonl();
    tokio::task::spawn_blocking(move || {
        crate::atomic::write_file(&file, |f| {
            std::io::Write::write_all(f, &jsonl)
                .map_err(|source| crate::atomic::IoError::new(&file, source))
        })
    })
    .await??;
    let row = state
        .store
        .insert_dataset(NewDataset {
            id,
            name,
            format,
            rows,
            labels: parsed.labels,
            label_counts,
            path: state.data_dir.relative(&path),
            hub_repo,
        })
        .await?;
    Ok(row.into())
}

/// A Hub dataset split to import.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// Dataset repository (`owner/name[@revision]`), e.g. `mteb/tweet_sentiment_extraction`.
    pub repo: String,
    /// The split (`train`, `test`, …).
    pub split: String,
    /// The dataset's `name` in listings; `repo:split`, as given, when absent.
    pub name: Option<String>,
}

/// Imports a dataset split from the Hugging Face Hub.
///
/// The split's JSONL or CSV files are fetched through the Hub's cache
/// (`HF_HOME`), checked row by row as an upload is, and stored as one dataset.
#[utoipa::path(post, path = "/datasets/import", tag = "datasets", operation_id = "import_dataset",
    request_body = ImportRequest,
    responses(
        (status = 201, description = "Stored", body = Dataset),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 422, description = "Bad repo or split name, no such repo or split, or invalid rows", body = ErrorBody),
        (status = 502, description = "The Hub failed or is out of reach", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn import(
    State(state): State<AppState>,
    Json(req): Json<ImportRequest>,
) -> Result<(StatusCode, Json<Dataset>), ApiError> {
    let (repo, split) = (req.repo.clone(), req.split.clone());
    let parsed = tokio::task::spawn_blocking(move || {
        load_hub_split(&repo, &split, &ParseOptions::default())
    })
    .await?
    .map_err(|e| match e {
        DatasetError::BadRepo(_) => ApiError::invalid("repo", e.to_string()),
        DatasetError::BadSplit(_) => ApiError::invalid("split", e.to_string()),
        DatasetError::Hub { ref source, .. } if matches!(**source, HubError::NotFound { .. }) => {
            ApiError::invalid("repo", e.to_string())
        }
        DatasetError::Hub { .. } => ApiError::BadGateway(e.to_string()),
        other => dataset_error(other),
    })?;
    let name = req.name.or(Some(format!("{}:{}", req.repo, req.split)));
    let hub_repo = HubRepo::parse(&req.repo, RepoKind::Dataset).map(|r| r.id);
    let row = store(&state, parsed, DatasetFormat::Jsonl, name, hub_repo).await?;
    Ok((StatusCode::CREATED, Json(row)))
}

/// Lists datasets.
///
/// Newest first, a page at a time: pass the page's `next` as `after` for the
/// next one.
#[utoipa::path(get, path = "/datasets", tag = "datasets", operation_id = "list_datasets",
    params(PageParams),
    responses(
        (status = 200, description = "A page of datasets", body = DatasetList),
        (status = 422, description = "A bad `limit` or `after`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Query(page): Query<PageParams>,
) -> Result<Json<DatasetList>, ApiError> {
    let limit = page.limit()?;
    let rows = state
        .store
        .list_datasets(limit + 1, page.after.as_deref())
        .await
        .map_err(|e| page.unknown_after(e))?;
    let (rows, has_more) = page.cut(rows);
    Ok(Json(DatasetList {
        data: rows.into_iter().map(Into::into).collect(),
        has_more,
    }))
}

/// Gets a dataset.
///
/// Its row count, labels and how many rows each label has.
#[utoipa::path(get, path = "/datasets/{id}", tag = "datasets", operation_id = "get_dataset",
    params(("id" = String, Path, description = "Dataset id (`ds-…`)")),
    responses(
        (status = 200, description = "The dataset", body = Dataset),
        (status = 404, description = "No dataset has this id", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Dataset>, ApiError> {
    Ok(Json(state.store.get_dataset(&id).await?.into()))
}

/// Deletes a dataset.
///
/// Its record and stored copy go; 409 while a job (of any status) names it.
#[utoipa::path(delete, path = "/datasets/{id}", tag = "datasets", operation_id = "delete_dataset",
    params(("id" = String, Path, description = "Dataset id (`ds-…`)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No dataset has this id", body = ErrorBody),
        (status = 409, description = "Used by a job", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let row = state.store.delete_dataset(&id).await?;
    let file = state.data_dir.resolve(&row.path);
    if let Err(e) = std::fs::remove_file(&file) {
        tracing::warn!(dataset = %id, "removing its file: {e}");
    }
    Ok(StatusCode::NO_CONTENT)
}
