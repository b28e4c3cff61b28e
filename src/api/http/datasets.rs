//! `POST /datasets` (raw JSONL or CSV body), `GET /datasets`, `GET /datasets/{id}`.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{new_id, timestamp};
use crate::api::error::ErrorBody;
use crate::api::upload::{self, Format};
use crate::api::{ApiError, AppState, Json, Query};
use crate::queue::write_examples;
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

fn format_of(params: &UploadParams, headers: &HeaderMap, body: &[u8]) -> Result<Format, ApiError> {
    if let Some(f) = &params.format {
        return match f.as_str() {
            "jsonl" | "json" | "ndjson" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            other => Err(ApiError::invalid(
                "format",
                format!("unknown format `{other}`: use `jsonl` or `csv`"),
            )),
        };
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("text/csv") {
        return Ok(Format::Csv);
    }
    if content_type.contains("ndjson")
        || content_type.contains("jsonl")
        || content_type.contains("json-lines")
    {
        return Ok(Format::Jsonl);
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    Ok(if first == Some(&b'{') {
        Format::Jsonl
    } else {
        Format::Csv
    })
}

/// Uploads a dataset: JSONL (`{"text", "label"[, "label_text"]}` per line) or
/// CSV with `text` and `label` columns, as the raw body.
#[utoipa::path(post, path = "/datasets", tag = "datasets", params(UploadParams),
    request_body(content = String, description = "JSONL or CSV rows", content_type = "application/x-ndjson"),
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
            if format!("{e:?}").contains("LengthLimit") {
                ApiError::TooLarge
            } else {
                ApiError::BadRequest(format!("cannot read the body: {e}"))
            }
        })?;
    let format = format_of(&params, &headers, &bytes)?;
    let id = new_id("ds");
    let path = state
        .config
        .data_dir
        .join("datasets")
        .join(format!("{id}.jsonl"));
    let file = path.clone();
    // Parsing and writing are CPU and disk work: off the runtime's workers.
    let parsed = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let parsed = upload::parse(&bytes, format).map_err(row_errors)?;
        write_examples(&file, &parsed.examples)
            .map_err(|e| ApiError::Internal(format!("{}: {e}", file.display())))?;
        Ok(parsed)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    let mut label_counts: BTreeMap<String, i64> =
        parsed.labels.iter().map(|l| (l.clone(), 0)).collect();
    for e in &parsed.examples {
        *label_counts
            .entry(parsed.labels[e.label].clone())
            .or_default() += 1;
    }
    let row = state
        .store
        .insert_dataset(NewDataset {
            id,
            name: params.name,
            format: format.as_str().into(),
            rows: parsed.examples.len() as i64,
            labels: parsed.labels,
            label_counts,
            path: path.display().to_string(),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

fn row_errors(errors: Vec<upload::RowError>) -> ApiError {
    let first = &errors[0];
    let message = format!(
        "the dataset has errors; first at line {}{}: {}",
        first.line,
        first
            .field
            .as_ref()
            .map(|f| format!(" (`{f}`)"))
            .unwrap_or_default(),
        first.message
    );
    ApiError::Validation {
        message,
        param: Some("body".into()),
        details: serde_json::to_value(&errors).ok(),
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
