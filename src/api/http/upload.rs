//! `POST /datasets`: the upload itself (its query, its form, and how its row
//! errors are answered; the route is in [`super::datasets`]). The body (raw, or the `file` part of a
//! multipart form) streams to a temporary file in the datasets folder while
//! its size is counted against `--max-dataset-bytes`, so a large upload never
//! sits in memory whole; the file is then parsed through a memory map on a
//! blocking thread, and its normalised copy written all-or-nothing.

use std::path::Path;

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use futures::{Stream, StreamExt, TryStreamExt};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, ToSchema};

use crate::api::{ApiError, AppState};
use crate::atomic::IoError;
use crate::data::{Dataset, DatasetError, DatasetFormat, ParseOptions};

/// The query of `POST /datasets` (the body is the file, raw or as a multipart form).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadParams {
    /// `jsonl` or `csv` (default: the file name's extension in a multipart
    /// form, else `Content-Type`, else the content's look).
    pub format: Option<String>,
    /// Shown as the dataset's `name`; null when absent.
    pub name: Option<String>,
    /// Drop rows whose text is empty (counted, not refused); default false.
    /// The Kaggle CSV of the tweets has one such row.
    pub drop_empty_text: Option<bool>,
}

/// The multipart form `POST /datasets` takes.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The JSONL or CSV file (its name's extension tells the format).
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    file: String,
}

/// 422 naming the body; row errors (line, field, message) in `details`.
pub(super) fn dataset_error(e: DatasetError) -> ApiError {
    let rows = e.row_errors();
    ApiError::Validation {
        message: e.to_string(),
        param: Some("body".into()),
        details: (!rows.is_empty()).then(|| serde_json::to_value(rows).unwrap_or_default()),
    }
}

/// An upload on disk, not yet parsed: its temporary file (removed when
/// dropped) and what the request said about it.
pub(super) struct Received {
    file: tempfile::NamedTempFile,
    content_type: String,
    file_name: Option<String>,
    /// The form's other parts of up to [`MAX_FIELD_BYTES`], as text, by
    /// name (`purpose`, for `POST /v1/files`); empty for a raw body.
    pub(super) fields: std::collections::BTreeMap<String, String>,
}

/// Bytes of a form part other than `file` that is kept (as text); longer
/// ones are read past.
const MAX_FIELD_BYTES: usize = 1024;

impl Received {
    /// The uploaded file's name, as the multipart form gave it.
    pub(super) fn file_name(&self) -> Option<&str> {
        self.file_name.as_deref()
    }
}

/// Streams the request's dataset to a temporary file.
pub(super) async fn receive(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Received, ApiError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let dir = state.data_dir.datasets();
    let file = tempfile::Builder::new()
        .prefix(".upload.tmp-")
        .tempfile_in(&dir)
        .map_err(|e| IoError::new(&dir, e))?;
    let limit = state.config.max_dataset_bytes;
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    if !content_type.starts_with("multipart/form-data") {
        copy(stream, &file, limit).await?;
        return Ok(Received {
            file,
            content_type,
            file_name: None,
            fields: Default::default(),
        });
    }
    let form = receive_form(stream, &content_type, &file, limit).await?;
    Ok(Received {
        file,
        content_type: form.content_type,
        file_name: form.file_name,
        fields: form.fields,
    })
}

/// What a multipart form said beside its `file` part's bytes.
struct Form {
    content_type: String,
    file_name: Option<String>,
    fields: std::collections::BTreeMap<String, String>,
}

/// Copies the one part named `file` of a multipart form into `file`, and
/// returns its content type and file name, and the other parts that are
/// short text. Longer parts are read past; none or several named `file` are
/// a 422 (taking one of several would store data the client may not have
/// meant).
async fn receive_form(
    stream: impl Stream<Item = std::io::Result<axum::body::Bytes>> + Send + 'static,
    content_type: &str,
    file: &tempfile::NamedTempFile,
    limit: usize,
) -> Result<Form, ApiError> {
    let bad = |e: multer::Error| ApiError::BadRequest(format!("malformed multipart body: {e}"));
    let boundary = multer::parse_boundary(content_type).map_err(bad)?;
    let mut form = multer::Multipart::new(stream, boundary);
    let mut found = None;
    let mut fields = std::collections::BTreeMap::new();
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
        if field.name() != Some("file") {
            let name = field.name().unwrap_or_default().to_string();
            let mut text = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(bad)? {
                text.extend_from_slice(&chunk);
                if text.len() > MAX_FIELD_BYTES {
                    break;
                }
            }
            if let (true, Ok(text)) = (text.len() <= MAX_FIELD_BYTES, String::from_utf8(text)) {
                fields.insert(name, text);
            }
            continue;
        }
        if found.is_some() {
            let message = "the multipart form has several `file` parts; send one";
            return Err(ApiError::invalid("file", message));
        }
        let file_name = field.file_name().map(str::to_string);
        let part_type = field.content_type().map(|m| m.to_string());
        copy(field.map_err(std::io::Error::other), file, limit).await?;
        found = Some((part_type.unwrap_or_default(), file_name));
    }
    let message =
        "the multipart form has no part named `file` (send the dataset as `-F file=@data.jsonl`)";
    let (content_type, file_name) = found.ok_or_else(|| ApiError::invalid("file", message))?;
    Ok(Form {
        content_type,
        file_name,
        fields,
    })
}

/// Writes `stream` into `file`; 413 once it passes `limit` bytes.
async fn copy(
    mut stream: impl Stream<Item = std::io::Result<axum::body::Bytes>> + Unpin,
    file: &tempfile::NamedTempFile,
    limit: usize,
) -> Result<(), ApiError> {
    let io = |e: std::io::Error| ApiError::from(IoError::new(file.path(), e));
    let mut out = tokio::fs::File::from_std(file.reopen().map_err(io)?);
    let mut written = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
        written += chunk.len();
        if written > limit {
            return Err(ApiError::TooLarge);
        }
        out.write_all(&chunk).await.map_err(io)?;
    }
    out.flush().await.map_err(io)
}

impl Received {
    /// Parses the upload (blocking: run it off the async runtime) in the format
    /// `?format=` names, else the file name's extension, else the content type,
    /// else the content's own look.
    pub(super) fn parse(
        &self,
        params: &UploadParams,
    ) -> Result<(Dataset, DatasetFormat), ApiError> {
        let io = |e: std::io::Error| ApiError::internal_while("reading an upload", e);
        let file = self.file.as_file();
        // SAFETY: the temporary file is private to this request and nothing
        // writes to it while it is mapped.
        let map = match file.metadata().map_err(io)?.len() {
            0 => None,
            _ => Some(unsafe { memmap2::Mmap::map(file) }.map_err(io)?),
        };
        let bytes: &[u8] = map.as_deref().unwrap_or_default();
        let format = self.format(params, bytes)?;
        let opts = ParseOptions {
            drop_empty_text: params.drop_empty_text.unwrap_or(false),
            ..ParseOptions::default()
        };
        let parsed = Dataset::from_bytes(bytes, format, &opts).map_err(dataset_error)?;
        Ok((parsed, format))
    }

    fn format(&self, params: &UploadParams, body: &[u8]) -> Result<DatasetFormat, ApiError> {
        if let Some(f) = &params.format {
            return f
                .parse()
                .map_err(|e: DatasetError| ApiError::invalid("format", e.to_string()));
        }
        let by_name = self.file_name.as_deref().map(Path::new);
        if let Some(f) = by_name.and_then(DatasetFormat::from_extension) {
            return Ok(f);
        }
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'[') {
            return Err(ApiError::invalid(
                "body",
                "the body is a JSON array; upload JSON lines (one object per line) or CSV",
            ));
        }
        let ct = self.content_type.as_str();
        if ct.starts_with("text/csv") {
            return Ok(DatasetFormat::Csv);
        }
        let json_lines = ["ndjson", "jsonl", "json-lines", "application/json"];
        if json_lines.iter().any(|t| ct.contains(t)) {
            return Ok(DatasetFormat::Jsonl);
        }
        Ok(DatasetFormat::sniff(body))
    }
}
