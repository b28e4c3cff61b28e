//! A job's records: its metrics (per logging window and per evaluation) and
//! its checkpoints still on disk.

use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::timestamp;
use crate::api::error::ErrorBody;
use crate::api::{ApiError, AppState, Json};
use crate::store::{CheckpointRow, MetricRow, Split};
use crate::train::{EvalMetrics, StepLog};

/// One evaluation as a job's metrics list it: when, its metrics, how long it took.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct EvalRecord {
    /// Optimizer steps done when evaluated (0: the baseline before training).
    pub step: i64,
    /// Fractional epoch at that step.
    pub epoch: f64,
    /// Loss, accuracy, macro-F1, per-class precision and recall, confusion matrix.
    #[serde(flatten)]
    pub metrics: EvalMetrics,
    /// Seconds the evaluation took; null for one recorded again from a
    /// checkpoint when a job resumed.
    pub seconds: Option<f64>,
}

/// A stored training window as the API shows it.
pub(super) fn train_record(row: &MetricRow) -> Result<StepLog, ApiError> {
    serde_json::from_value(row.data.clone())
        .map_err(|e| ApiError::internal_while("reading a stored training window", e))
}

/// A stored evaluation as the API shows it.
pub(super) fn eval_record(row: &MetricRow) -> Result<EvalRecord, ApiError> {
    let metrics = serde_json::from_value(row.data.clone())
        .map_err(|e| ApiError::internal_while("reading a stored evaluation", e))?;
    Ok(EvalRecord {
        step: row.step,
        epoch: row.epoch,
        metrics,
        seconds: row.data.get("seconds").and_then(|s| s.as_f64()),
    })
}

/// Stored evaluation metrics (a checkpoint's, a model's) as the API shows them.
pub(super) fn eval_metrics(
    stored: Option<serde_json::Value>,
) -> Result<Option<EvalMetrics>, ApiError> {
    stored
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| ApiError::internal_while("reading stored evaluation metrics", e))
}

/// Everything a job has logged so far, each list by step (an `eval` at step 0 is the
/// baseline, before training).
#[derive(Debug, Serialize, ToSchema)]
pub struct JobMetrics {
    /// Per logging window (training only: evaluations and checkpoints
    /// excluded from its timings).
    pub train: Vec<StepLog>,
    /// Per evaluation.
    pub eval: Vec<EvalRecord>,
}

/// Reads a job's metrics.
///
/// The training loss of every logging window and the metrics of every
/// evaluation so far (the baseline at step 0 included), as the dashboard
/// charts them.
#[utoipa::path(get, path = "/jobs/{id}/metrics", operation_id = "get_job_metrics", tag = "jobs",
    params(("id" = String, Path, description = "Job id (`job-…`)")),
    responses(
        (status = 200, description = "Every logged window and evaluation", body = JobMetrics),
        (status = 404, description = "No job has this id", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn metrics(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobMetrics>, ApiError> {
    state.store.get_job(&id).await?;
    let rows = state.store.list_metrics(&id).await?;
    let of = |split: Split| rows.iter().filter(move |m| m.split == split);
    Ok(Json(JobMetrics {
        train: of(Split::Train)
            .map(train_record)
            .collect::<Result<_, _>>()?,
        eval: of(Split::Eval).map(eval_record).collect::<Result<_, _>>()?,
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
    /// The evaluation at that step; null when none ran at it.
    pub metrics: Option<EvalMetrics>,
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

/// Lists a job's checkpoints.
///
/// The checkpoints still on disk, each with the evaluation at its step; a
/// retried or resumed attempt starts from the newest one that loads.
#[utoipa::path(get, path = "/jobs/{id}/checkpoints", operation_id = "list_job_checkpoints", tag = "jobs",
    params(("id" = String, Path, description = "Job id (`job-…`)")),
    responses(
        (status = 200, description = "The checkpoints on disk, by step", body = CheckpointList),
        (status = 404, description = "No job has this id", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn checkpoints(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CheckpointList>, ApiError> {
    state.store.get_job(&id).await?;
    let rows = state.store.list_checkpoints(&id).await?;
    let checkpoint = |c: CheckpointRow| {
        Ok(Checkpoint {
            step: c.step,
            path: c.path,
            metrics: eval_metrics(c.metrics)?,
            created_at: timestamp(c.created_at),
        })
    };
    let data = rows
        .into_iter()
        .map(checkpoint)
        .collect::<Result<_, ApiError>>()?;
    Ok(Json(CheckpointList { data }))
}
