//! A fine-tuning job's events and checkpoints in OpenAI's shapes: the job's
//! log (`/jobs/{id}/events`) and its kept checkpoints
//! (`/jobs/{id}/checkpoints`), newest first.

use axum::extract::{Path, State};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{list_type, seconds, ListParams};
use crate::api::error::ErrorBody;
use crate::api::{ApiError, AppState, Json, Query};
use crate::store::{EventKind, EventRow, Level, Split};

/// A job log entry as OpenAI's `fine_tuning.job.event`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FineTuningJobEvent {
    /// Always `fine_tuning.job.event`.
    pub object: &'static str,
    /// The entry's number in the job's log, as a decimal string (what
    /// `after` takes).
    pub id: String,
    /// When written (Unix seconds).
    pub created_at: i64,
    /// `info`, `warn` or `error`.
    pub level: &'static str,
    /// Human-readable text.
    pub message: String,
    /// `metrics` for a training-loss window or an evaluation, else `message`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// What the entry carries, as on `/jobs/{id}/events` (a step's `loss`,
    /// `learning_rate`, …; an evaluation's `accuracy`, `macro_f1`, …); null
    /// when nothing. `tuneserve_kind` names tuneserve's kind of entry.
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
}

list_type! {
    /// A page of a job's events, newest first.
    FineTuningJobEventList of FineTuningJobEvent
}

fn event(row: EventRow) -> FineTuningJobEvent {
    let kind = match row.kind {
        EventKind::Step | EventKind::Eval => "metrics",
        _ => "message",
    };
    let mut data = row.data.unwrap_or(Value::Object(Default::default()));
    if let Some(obj) = data.as_object_mut() {
        obj.insert("tuneserve_kind".into(), row.kind.as_str().into());
    }
    FineTuningJobEvent {
        object: "fine_tuning.job.event",
        id: row.seq.to_string(),
        created_at: seconds(row.created_at),
        level: match row.level {
            Level::Info => "info",
            Level::Warning => "warn",
            Level::Error => "error",
        },
        message: row.message,
        kind,
        data: Some(data),
    }
}

/// Lists a fine-tuning job's events.
///
/// Its log, newest first, as OpenAI's `fine_tuning.job.event` objects: a
/// training window or an evaluation is `type: metrics` with its numbers in
/// `data`, everything else `type: message`. Paged with `after` and `limit`.
#[utoipa::path(get, path = "/v1/fine_tuning/jobs/{fine_tuning_job_id}/events",
    operation_id = "openai_list_fine_tuning_events", tag = "openai",
    params(("fine_tuning_job_id" = String, Path, description = "Job id (`job-…`)"), ListParams),
    responses((status = 200, description = "A page of events", body = FineTuningJobEventList),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 422, description = "A bad `limit` or `after`", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ListParams>,
) -> Result<Json<FineTuningJobEventList>, ApiError> {
    let limit = q.limit()?;
    let before = q
        .after
        .as_deref()
        .map(|a| {
            a.parse::<i64>()
                .map_err(|_| ApiError::invalid("after", "must be an event id (a number)"))
        })
        .transpose()?;
    state.store.get_job(&id).await?;
    let rows = state
        .store
        .list_events_newest(&id, before, limit + 1)
        .await?;
    let events = rows.into_iter().map(event).collect();
    Ok(Json(FineTuningJobEventList::page(events, limit)))
}

/// A kept checkpoint as OpenAI's `fine_tuning.job.checkpoint`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FineTuningJobCheckpoint {
    /// Always `fine_tuning.job.checkpoint`.
    pub object: &'static str,
    /// `{job}-step-{N}` (what `after` takes).
    pub id: String,
    /// When written (Unix seconds).
    pub created_at: i64,
    /// Its folder under the server's data folder (a model in Hugging Face's
    /// classifier layout; checkpoints are not served by `/classify`).
    pub fine_tuned_model_checkpoint: String,
    /// The job's id.
    pub fine_tuning_job_id: String,
    /// The optimizer step it was written after.
    pub step_number: i64,
    /// Its numbers at that step.
    pub metrics: CheckpointMetrics,
}

/// A checkpoint's numbers: OpenAI's names where they mean the same, the
/// classifier's own beside them; each null when not measured.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointMetrics {
    /// The optimizer step.
    pub step: f64,
    /// The mean training loss of the newest logging window up to the step.
    pub train_loss: Option<f64>,
    /// The evaluation's loss at the step (null without one).
    pub valid_loss: Option<f64>,
    /// The evaluation's accuracy (0–1).
    pub valid_accuracy: Option<f64>,
    /// The evaluation's macro-averaged F1 (0–1).
    pub valid_macro_f1: Option<f64>,
}

list_type! {
    /// A page of a job's checkpoints, newest first.
    FineTuningJobCheckpointList of FineTuningJobCheckpoint
}

/// Lists a fine-tuning job's checkpoints.
///
/// The checkpoints still on disk, newest first, as OpenAI's
/// `fine_tuning.job.checkpoint` objects with the training and validation
/// metrics at their step.
#[utoipa::path(get, path = "/v1/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints",
    operation_id = "openai_list_fine_tuning_checkpoints", tag = "openai",
    params(("fine_tuning_job_id" = String, Path, description = "Job id (`job-…`)"), ListParams),
    responses((status = 200, description = "A page of checkpoints", body = FineTuningJobCheckpointList),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 422, description = "A bad `limit`, or an unknown `after`", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn checkpoints(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ListParams>,
) -> Result<Json<FineTuningJobCheckpointList>, ApiError> {
    let limit = q.limit()?;
    state.store.get_job(&id).await?;
    let metrics = state.store.list_metrics(&id).await?;
    let mut rows = state.store.list_checkpoints(&id).await?;
    rows.reverse();
    if let Some(after) = &q.after {
        let at = rows
            .iter()
            .position(|c| &checkpoint_id(&id, c.step) == after);
        let at = at
            .ok_or_else(|| ApiError::invalid("after", format!("checkpoint `{after}` not found")))?;
        rows.drain(..=at);
    }
    rows.truncate(limit as usize + 1);
    let number = |m: &Option<Value>, key: &str| m.as_ref().and_then(|m| m.get(key)?.as_f64());
    let checkpoints = rows
        .into_iter()
        .map(|c| {
            let train_loss = (metrics.iter())
                .filter(|m| m.split == Split::Train && m.step <= c.step)
                .max_by_key(|m| m.step)
                .and_then(|m| m.loss);
            FineTuningJobCheckpoint {
                object: "fine_tuning.job.checkpoint",
                id: checkpoint_id(&id, c.step),
                created_at: seconds(c.created_at),
                fine_tuned_model_checkpoint: c.path,
                fine_tuning_job_id: id.clone(),
                step_number: c.step,
                metrics: CheckpointMetrics {
                    step: c.step as f64,
                    train_loss,
                    valid_loss: number(&c.metrics, "loss"),
                    valid_accuracy: number(&c.metrics, "accuracy"),
                    valid_macro_f1: number(&c.metrics, "macro_f1"),
                },
            }
        })
        .collect();
    Ok(Json(FineTuningJobCheckpointList::page(checkpoints, limit)))
}

fn checkpoint_id(job: &str, step: i64) -> String {
    format!("{job}-step-{step}")
}
