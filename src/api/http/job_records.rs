//! A job's records: its metrics (per logging window and per evaluation) and
//! its checkpoints still on disk.

use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::timestamp;
use crate::api::error::ErrorBody;
use crate::api::{ApiError, AppState, Json};
use crate::store::Split;

/// A metrics row as one flat object: `step`, `epoch` and the row's numbers.
pub(super) fn flatten(step: i64, epoch: f64, data: &serde_json::Value) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    out.insert("step".into(), step.into());
    out.insert("epoch".into(), epoch.into());
    if let Some(obj) = data.as_object() {
        for (k, v) in obj {
            out.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    out.into()
}

/// Everything a job has logged so far, each list by step (an `eval` at step 0 is the
/// baseline, before training).
#[derive(Debug, Serialize, ToSchema)]
pub struct JobMetrics {
    /// Per logging window: step, epoch, loss, learning_rate, grad_norm, tokens, tokens_per_second,
    /// seconds_per_step (training only: evaluations and checkpoints excluded).
    #[schema(value_type = Vec<Object>)]
    pub train: Vec<serde_json::Value>,
    /// Per evaluation: step, epoch, loss, accuracy, macro_f1, precision, recall, confusion,
    /// seconds (how long the evaluation took).
    #[schema(value_type = Vec<Object>)]
    pub eval: Vec<serde_json::Value>,
}

/// Per-step training loss and per-evaluation metrics.
#[utoipa::path(get, path = "/jobs/{id}/metrics", operation_id = "get_job_metrics", tag = "jobs",
    params(("id" = String, Path, description = "Job id (`job-…`)")),
    responses((status = 200, body = JobMetrics), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn metrics(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobMetrics>, ApiError> {
    state.store.get_job(&id).await?;
    let rows = state.store.list_metrics(&id).await?;
    let pick = |split: Split| {
        rows.iter()
            .filter(|m| m.split == split)
            .map(|m| flatten(m.step, m.epoch, &m.data))
            .collect()
    };
    Ok(Json(JobMetrics {
        train: pick(Split::Train),
        eval: pick(Split::Eval),
    }))
}

/// A checkpoint still on disk; a later attempt resumes from the newest one that loads.
#[derive(Debug, Serialize, ToSchema)]
pub struct Checkpoint {
    /// The optimizer step it was written after (1-based; `step-N` folder).
    pub step: i64,
    /// Its folder, relative to the server's data folder (a model in Hugging
    /// Face's classifier layout).
    pub path: String,
    /// The evaluation at that step, if any.
    #[schema(value_type = Option<Object>)]
    pub metrics: Option<serde_json::Value>,
    /// When written (RFC 3339).
    pub created_at: String,
}

/// A job's checkpoints still on disk: `save_total_limit` prunes them while it runs,
/// `keep_checkpoints` once it has succeeded.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointList {
    /// By step.
    pub data: Vec<Checkpoint>,
}

/// The checkpoints still on disk.
#[utoipa::path(get, path = "/jobs/{id}/checkpoints", operation_id = "list_job_checkpoints", tag = "jobs",
    params(("id" = String, Path, description = "Job id (`job-…`)")),
    responses((status = 200, body = CheckpointList), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn checkpoints(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CheckpointList>, ApiError> {
    state.store.get_job(&id).await?;
    let rows = state.store.list_checkpoints(&id).await?;
    Ok(Json(CheckpointList {
        data: rows
            .into_iter()
            .map(|c| Checkpoint {
                step: c.step,
                path: c.path,
                metrics: c.metrics,
                created_at: timestamp(c.created_at),
            })
            .collect(),
    }))
}
