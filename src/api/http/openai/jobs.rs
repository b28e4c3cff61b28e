//! `/v1/fine_tuning/jobs`: OpenAI's fine-tuning jobs, which are tuneserve's
//! jobs. A submission is mapped onto `POST /jobs`'s ([`CreateJob`]) and goes
//! through the same checks and the same queue; its 422s name OpenAI's field
//! (`training_file`, `hyperparameters.n_epochs`, …).
//!
//! The hyperparameters: `n_epochs` is `epochs`, `batch_size` is
//! `batch_size`, `learning_rate_multiplier` × 5e-5 (tuneserve's default
//! learning rate) is `learning_rate`, `seed` is `seed`; `"auto"` (or leaving
//! one out) is tuneserve's default. Every other knob is accepted under the
//! extension field `tuneserve.hyperparameters`, in tuneserve's names.
//! `metadata` is kept in the job's `created` log entry (no column of its own).

use axum::extract::{Path, State};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{list_type, seconds, ListParams};
use crate::api::error::ErrorBody;
use crate::api::http::jobs::{request_cancel, submit};
use crate::api::{ApiError, AppState, Json, Query};
use crate::job::JobSettings;
use crate::store::{EventFilter, EventKind, JobRow, JobStatus};
use crate::train::Hyperparameters;

mod request;
pub use request::{CreateFineTuningJob, Metadata};

/// A fine-tuning job in OpenAI's shape (a tuneserve job: the same id works
/// on `/jobs/{id}`).
#[derive(Debug, Serialize, ToSchema)]
pub struct FineTuningJob {
    /// Always `fine_tuning.job`.
    pub object: &'static str,
    /// The job's id (`job-…`).
    pub id: String,
    /// The base model, as submitted.
    pub model: String,
    /// Submission time (Unix seconds).
    pub created_at: i64,
    /// When it reached `succeeded`, `failed` or `cancelled` (Unix seconds);
    /// null before.
    pub finished_at: Option<i64>,
    /// The model it made (a `/v1/models` id); null until it succeeds.
    pub fine_tuned_model: Option<String>,
    /// Always `tuneserve` (the service has no organizations).
    pub organization_id: &'static str,
    /// Always empty: results are the job's metrics, events and checkpoints.
    pub result_files: Vec<String>,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`
    /// (`validating_files` never: files are validated when uploaded).
    pub status: JobStatus,
    /// The evaluation file (dataset) id; null without one.
    pub validation_file: Option<String>,
    /// The training file (dataset) id.
    pub training_file: String,
    /// The OpenAI-named hyperparameters, as they apply (defaults filled in).
    pub hyperparameters: JobHyperparameters,
    /// Real (non-padding) training tokens seen; null until it succeeds.
    pub trained_tokens: Option<i64>,
    /// The seed of shuffling, subsets, dropout and a new head.
    pub seed: u64,
    /// When a running job is estimated to finish (Unix seconds); null
    /// otherwise.
    pub estimated_finish: Option<i64>,
    /// Always empty (no integrations are served).
    pub integrations: Vec<Value>,
    /// The metadata given at submission; null when none was.
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
    /// Always `supervised`, with the same hyperparameters.
    pub method: JobMethod,
    /// Why it failed; null unless `failed`.
    pub error: Option<JobError>,
    /// tuneserve's own view: every hyperparameter, defaults filled in.
    pub tuneserve: TuneserveJob,
}

/// OpenAI's hyperparameters of a job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobHyperparameters {
    /// Passes over the training set (`epochs`).
    pub n_epochs: usize,
    /// Examples per micro-batch (`batch_size`).
    pub batch_size: usize,
    /// The learning rate over tuneserve's default, 5e-5.
    pub learning_rate_multiplier: f64,
}

/// `{"type": "supervised", "supervised": {"hyperparameters"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobMethod {
    /// Always `supervised`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The supervised method's settings.
    pub supervised: JobSupervised,
}

/// The supervised method's settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobSupervised {
    /// As the job's `hyperparameters`.
    pub hyperparameters: JobHyperparameters,
}

/// Why a job failed, in OpenAI's error shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobError {
    /// Always `job_failed`.
    pub code: &'static str,
    /// The last attempt's error.
    pub message: String,
    /// Always null (the submission was valid).
    pub param: Option<String>,
}

/// tuneserve's extension of a job.
#[derive(Debug, Serialize, ToSchema)]
pub struct TuneserveJob {
    /// Every hyperparameter, in tuneserve's names.
    pub hyperparameters: JobSettings,
}

list_type! {
    /// A page of fine-tuning jobs, newest first.
    FineTuningJobList of FineTuningJob
}

/// `learning_rate` over the default, rounded to 9 significant digits (so
/// that 1e-3 reads 20, not 20.000000000000004).
fn multiplier(learning_rate: f64) -> f64 {
    let m = learning_rate / Hyperparameters::default().learning_rate;
    match m {
        0.0 => 0.0,
        m if m.is_finite() => {
            let scale = 10f64.powi(8 - m.abs().log10().floor() as i32);
            (m * scale).round() / scale
        }
        m => m,
    }
}

/// `row` in OpenAI's shape, with the metadata its submission gave.
pub(super) fn view(row: JobRow, metadata: Option<Metadata>) -> FineTuningJob {
    let hp = &row.settings.hyperparameters;
    let hyperparameters = JobHyperparameters {
        n_epochs: hp.epochs,
        batch_size: hp.batch_size,
        learning_rate_multiplier: multiplier(hp.learning_rate),
    };
    let p = &row.progress;
    let estimated_finish = match (row.status, row.started_at, p.total_steps) {
        (JobStatus::Running, Some(start), Some(total)) if p.step > 0 => {
            let now = crate::store::now_ms();
            let per_step = (now - start) as f64 / p.step as f64;
            Some(seconds(
                now + (per_step * (total - p.step).max(0) as f64) as i64,
            ))
        }
        _ => None,
    };
    FineTuningJob {
        object: "fine_tuning.job",
        model: row.base_model,
        created_at: seconds(row.created_at),
        finished_at: row.finished_at.map(seconds),
        fine_tuned_model: row.model_id,
        organization_id: "tuneserve",
        result_files: Vec::new(),
        validation_file: row.eval_dataset,
        training_file: row.train_dataset,
        trained_tokens: (row.status == JobStatus::Succeeded).then_some(p.tokens),
        seed: hp.seed,
        estimated_finish,
        integrations: Vec::new(),
        metadata,
        method: JobMethod {
            kind: "supervised",
            supervised: JobSupervised {
                hyperparameters: hyperparameters.clone(),
            },
        },
        hyperparameters,
        error: match (row.status, row.error) {
            (JobStatus::Failed, Some(message)) => Some(JobError {
                code: "job_failed",
                message,
                param: None,
            }),
            _ => None,
        },
        tuneserve: TuneserveJob {
            hyperparameters: row.settings.clone(),
        },
        status: row.status,
        id: row.id,
    }
}

/// The metadata job `id` was submitted with (its `created` entry's).
async fn metadata(state: &AppState, id: &str) -> Result<Option<Metadata>, ApiError> {
    let first = state
        .store
        .list_events(id, 0, 1, &EventFilter::default())
        .await?;
    let created = first.into_iter().find(|e| e.kind == EventKind::Created);
    let data = created.and_then(|e| e.data);
    Ok(data
        .and_then(|d| d.get("metadata").cloned())
        .and_then(|m| serde_json::from_value(m).ok()))
}

/// Creates a fine-tuning job.
///
/// OpenAI's request mapped onto a tuneserve job (the same job `/jobs` and the
/// dashboard show): `n_epochs`, `batch_size` and `learning_rate_multiplier`
/// (× 5e-5) become tuneserve's hyperparameters, `"auto"` its defaults; any
/// other knob goes under `tuneserve.hyperparameters`.
#[utoipa::path(post, path = "/v1/fine_tuning/jobs", operation_id = "openai_create_fine_tuning_job",
    tag = "openai", request_body = CreateFineTuningJob,
    responses(
        (status = 200, description = "Queued", body = FineTuningJob),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 422, description = "Invalid field (named in `param`)", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Json(req): Json<CreateFineTuningJob>,
) -> Result<Json<FineTuningJob>, ApiError> {
    let (job, metadata, names) = req.into_job()?;
    let data = metadata.as_ref().map(|m| {
        serde_json::json!(crate::store::event_data::CreatedData {
            metadata: m.clone()
        })
    });
    let row = submit(&state, job, data)
        .await
        .map_err(|e| names.rename(e))?;
    Ok(Json(view(row, metadata)))
}

/// Lists fine-tuning jobs.
///
/// Newest first, paged with `after` (a job id) and `limit`; `has_more` says
/// whether another page follows.
#[utoipa::path(get, path = "/v1/fine_tuning/jobs", operation_id = "openai_list_fine_tuning_jobs",
    tag = "openai", params(ListParams),
    responses((status = 200, description = "A page of jobs", body = FineTuningJobList),
        (status = 422, description = "A bad `limit`, or an unknown `after`", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListParams>,
) -> Result<Json<FineTuningJobList>, ApiError> {
    let limit = q.limit()?;
    let rows = state
        .store
        .list_jobs_newest(limit + 1, q.after.as_deref())
        .await
        .map_err(|e| q.unknown_after(e))?;
    let mut jobs = Vec::with_capacity(rows.len());
    for row in rows {
        let meta = metadata(&state, &row.id).await?;
        jobs.push(view(row, meta));
    }
    Ok(Json(FineTuningJobList::page(jobs, limit)))
}

/// Retrieves a fine-tuning job.
///
/// Its status, the model it made (`fine_tuned_model`, null until it
/// succeeds), tokens trained and, when it failed, the error.
#[utoipa::path(get, path = "/v1/fine_tuning/jobs/{fine_tuning_job_id}",
    operation_id = "openai_retrieve_fine_tuning_job", tag = "openai",
    params(("fine_tuning_job_id" = String, Path, description = "Job id (`job-…`)")),
    responses((status = 200, description = "The job", body = FineTuningJob),
        (status = 404, description = "No such job", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn retrieve(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<FineTuningJob>, ApiError> {
    let row = state.store.get_job(&id).await?;
    let meta = metadata(&state, &id).await?;
    Ok(Json(view(row, meta)))
}

/// Cancels a fine-tuning job.
///
/// A queued one at once, a running one within a heartbeat (it answers
/// `running` until then).
#[utoipa::path(post, path = "/v1/fine_tuning/jobs/{fine_tuning_job_id}/cancel",
    operation_id = "openai_cancel_fine_tuning_job", tag = "openai",
    params(("fine_tuning_job_id" = String, Path, description = "Job id (`job-…`)")),
    responses((status = 200, description = "Cancelled, or cancel requested", body = FineTuningJob),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "Already finished", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<FineTuningJob>, ApiError> {
    let row = request_cancel(&state, &id).await?;
    let meta = metadata(&state, &id).await?;
    Ok(Json(view(row, meta)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn multipliers_read_as_written() {
        assert_eq!(super::multiplier(1e-3), 20.0);
        assert_eq!(super::multiplier(5e-5), 1.0);
        assert_eq!(super::multiplier(1.5e-5), 0.3);
        assert_eq!(super::multiplier(0.0), 0.0);
    }
}
