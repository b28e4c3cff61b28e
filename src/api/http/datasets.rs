//! `POST /datasets` (raw JSONL or CSV body), `GET /datasets`, `GET /datasets/{id}`.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{new_id, timestamp};
use crate::api::error::ErrorBody;
use crate::api::{ApiError, AppState, Json, Query};
use crate::data::{load_hub_split, Dataset as Parsed, DatasetError, DatasetFormat, ParseOptions};
use crate::store::{DatasetRow, NewDataset};

/// A stored dataset.
#[derive(Debug, Serialize, ToSchema)]
pub struct Dataset {
    /// Its id.
    pub id: String,
    /// The name given at upload.
    pub name: Option<String>,
    /// `jsonl` or `csv`.
    pub format: String,
    /// Number of examples.
    pub rows: i64,
    /// Class names, by label id.
    pub labels: Vec<String>,
    /// Examples per class.
    pub label_counts: BTreeMap<String, i64>,
    /// Upload time (RFC 3339).
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
            created_at: timestamp(row.created_at),
        }
    }
}

/// A list of datasets, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetList {
    /// The datasets.
    pub data: Vec<Dataset>,
}

/// Upload options.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadParams {
    /// `jsonl` or `csv` (default: from `Content-Type`, else guessed from the body).
    pub format: Option<String>,
    /// A name to remember the dataset by.
    pub name: Option<String>,
}

/// `?format=`, else the file name's extension (multipart), else the content
/// type, else the content itself.
fn format_of(
    params: &UploadParams,
    content_type: &str,
    file_name: Option<&str>,
    body: &[u8],
) -> Result<DatasetFormat, ApiError> {
    if let Some(f) = &params.format {
        return f
            .parse()
            .map_err(|e: DatasetError| ApiError::invalid("format", e.to_string()));
    }
    if let Some(f) = file_name.and_then(|n| DatasetFormat::from_extension(std::path::Path::new(n)))
    {
        return Ok(f);
    }
    if content_type.starts_with("text/csv") {
        return Ok(DatasetFormat::Csv);
    }
    if ["ndjson", "jsonl", "json-lines"]
        .iter()
        .any(|t| content_type.contains(t))
    {
        return Ok(DatasetFormat::Jsonl);
    }
    Ok(DatasetFormat::sniff(body))
}

/// The `file` part (or the first part with a file name) of a multipart form:
/// its bytes, file name and content type.
async fn multipart_file(
    content_type: &str,
    body: Bytes,
) -> Result<(Bytes, Option<String>, String), ApiError> {
    let bad = |e: multer::Error| ApiError::BadRequest(format!("malformed multipart body: {e}"));
    let boundary = multer::parse_boundary(content_type).map_err(bad)?;
    let stream = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    while let Some(field) = form.next_field().await.map_err(bad)? {
        if field.name() == Some("file") || field.file_name().is_some() {
            let name = field.file_name().map(str::to_string);
            let part_type = field
                .content_type()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let data = field.bytes().await.map_err(bad)?;
            return Ok((data, name, part_type));
        }
    }
    Err(ApiError::invalid(
        "file",
        "the multipart form has no `file` part",
    ))
}

/// Uploads a dataset: JSONL (`{"text", "label"[, "label_text"]}` per line) or
/// CSV with `text` and `label` columns, as the raw body or as the `file` part
/// of a `multipart/form-data` form (`curl -F file=@train.jsonl`).
#[utoipa::path(post, path = "/datasets", tag = "datasets", params(UploadParams),
    request_body(content = String, description = "JSONL or CSV rows (raw, or the `file` part of a multipart form)", content_type = "application/x-ndjson"),
    responses(
        (status = 201, description = "Stored", body = Dataset),
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
    let bytes = axum::body::to_bytes(body, state.config.max_dataset_bytes)
        .await
        .map_err(|e| {
            let e = e.into_inner();
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::TooLarge
            } else {
                ApiError::BadRequest(format!("cannot read the body: {e}"))
            }
        })?;
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (bytes, file_name, content_type) = if content_type.starts_with("multipart/form-data") {
        multipart_file(&content_type, bytes).await?
    } else {
        (bytes, None, content_type)
    };
    let format = format_of(&params, &content_type, file_name.as_deref(), &bytes)?;
    // Parsing is CPU work: off the runtime's workers.
    let parsed = tokio::task::spawn_blocking(move || {
        Parsed::from_bytes(&bytes, format, &ParseOptions::default()).map_err(dataset_error)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    let row = store(&state, parsed, format, params.name).await?;
    Ok((StatusCode::CREATED, Json(row)))
}

/// Writes the normalised copy (JSONL) and records the dataset.
async fn store(
    state: &AppState,
    parsed: Parsed,
    format: DatasetFormat,
    name: Option<String>,
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
            std::io::Write::write_all(f, &jsonl).map_err(|source| crate::atomic::IoError {
                path: file.clone(),
                source,
            })
        })
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let row = state
        .store
        .insert_dataset(NewDataset {
            id,
            name,
            format: format.as_str().into(),
            rows,
            labels: parsed.labels,
            label_counts,
            path: state.data_dir.relative(&path),
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
    /// A name to remember it by.
    pub name: Option<String>,
}

/// Imports a dataset split from the Hugging Face Hub (JSONL or CSV files).
#[utoipa::path(post, path = "/datasets/import", tag = "datasets", request_body = ImportRequest,
    responses(
        (status = 201, description = "Stored", body = Dataset),
        (status = 422, description = "Bad repo or split name, or invalid rows", body = ErrorBody),
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
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| match e {
        DatasetError::BadRepo(_) => ApiError::invalid("repo", e.to_string()),
        DatasetError::BadSplit(_) => ApiError::invalid("split", e.to_string()),
        DatasetError::Hub { .. } => ApiError::BadGateway(e.to_string()),
        other => dataset_error(other),
    })?;
    let name = req.name.or(Some(format!("{}:{}", req.repo, req.split)));
    let row = store(&state, parsed, DatasetFormat::Jsonl, name).await?;
    Ok((StatusCode::CREATED, Json(row)))
}

/// 422 naming the body; row errors (line, field, message) in `details`.
fn dataset_error(e: DatasetError) -> ApiError {
    let rows = e.row_errors();
    ApiError::Validation {
        message: e.to_string(),
        param: Some("body".into()),
        details: (!rows.is_empty()).then(|| serde_json::to_value(rows).unwrap_or_default()),
    }
}

/// Datasets, newest first.
#[utoipa::path(get, path = "/datasets", tag = "datasets",
    responses((status = 200, body = DatasetList)), security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>) -> Result<Json<DatasetList>, ApiError> {
    let rows = state.store.list_datasets(1000).await?;
    Ok(Json(DatasetList {
        data: rows.into_iter().map(Into::into).collect(),
    }))
}

/// One dataset.
#[utoipa::path(get, path = "/datasets/{id}", tag = "datasets",
    params(("id" = String, Path, description = "Dataset id")),
    responses((status = 200, body = Dataset), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Dataset>, ApiError> {
    Ok(Json(state.store.get_dataset(&id).await?.into()))
}
