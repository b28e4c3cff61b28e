//! `/jobs`: submit, list, inspect and cancel fine-tuning jobs; their metrics and
//! checkpoints (the log is in [`super::events`]).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::job_records::{eval_record, train_record, EvalRecord};
use super::paging::{page_type, JobListParams};
use super::timestamp;
use crate::api::error::ErrorBody;
use crate::api::{ApiError, AppState, Json, Query, ServiceDevice};
use crate::integrations::{Integration, TrackingRun, WebhookTarget};
use crate::job::JobSettings;
use crate::queue::{local_config, BaseModelError};
use crate::store::{new_id, EventKind, JobRow, JobStatus, NewEvent, NewJob, Split, StoreError};
use crate::train::StepLog;

/// The body of `POST /jobs`. Everything is checked before the job is queued; a field
/// refused is named in the 422's `param`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// What to fine-tune: the id of a model of this service (continued
    /// fine-tuning), the name of a model folder under the server's model
    /// folders (`--model-dir`), or a Hugging Face Hub id (`gpt2`,
    /// `owner/name@revision`). Never a path.
    pub base_model: String,
    /// Training dataset id (`ds-…`, from `POST /datasets`).
    pub train_dataset: String,
    /// Evaluation dataset id; its labels must be the training set's (or a
    /// prefix of them). Without one the job trains without evaluations.
    pub eval_dataset: Option<String>,
    /// Hyperparameters (the trainer's and the service's, one object); each
    /// omitted one takes its default, unknown ones are refused (422 naming
    /// the field by its path, `hyperparameters.lora.r`).
    #[schema(value_type = Option<JobSettings>)]
    pub hyperparameters: Option<serde_json::Map<String, serde_json::Value>>,
    /// Up to 40 of `[a-z0-9-]`, put into the id of the model the job makes
    /// (`model-{suffix}-…`).
    pub suffix: Option<String>,
    /// Up to 8 receivers of this job's webhooks, besides the server's own
    /// (`--webhook-url`); only where the server allows it
    /// (`--allow-job-webhooks`; otherwise 422 on `webhooks`).
    pub webhooks: Option<Vec<WebhookTarget>>,
    /// Experiment trackers to log the run to: at most one
    /// `{"type": "mlflow", "experiment", "run_name"?, "tags"?}`, on the
    /// server's tracking server (`--mlflow-tracking-uri`; without one, 422).
    pub integrations: Option<Vec<Integration>>,
}

/// Training progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobProgress {
    /// Optimizer steps done as of the last logging window (at an attempt's start, the step
    /// it starts from).
    pub step: i64,
    /// Optimizer steps planned (known once training starts).
    pub total_steps: Option<i64>,
    /// Fractional epoch.
    pub epoch: Option<f64>,
    /// Real training tokens seen.
    pub tokens: i64,
    /// Real training tokens per second over the last logging window; null before the first.
    pub tokens_per_second: Option<f64>,
    /// Estimated seconds left while running.
    pub eta_seconds: Option<f64>,
}

/// The newest metrics of each kind.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct LatestMetrics {
    /// The newest training-loss window (as in the job's metrics; its
    /// `seconds_per_step` is the time per optimizer step without evaluations);
    /// null before the first.
    pub train: Option<StepLog>,
    /// The newest evaluation (as in the job's metrics); null before the first.
    pub eval: Option<EvalRecord>,
}

/// A fine-tuning job.
#[derive(Debug, Serialize, ToSchema)]
pub struct Job {
    /// `job-` and 16 hex digits; what every `/jobs/{id}` route takes.
    pub id: String,
    /// Where it is in its life.
    pub status: JobStatus,
    /// The model it fine-tunes, as submitted: a model id of this service,
    /// a folder name under `--model-dir`, or a Hub id.
    pub base_model: String,
    /// Id of the dataset it trains on (`ds-…`).
    pub train_dataset: String,
    /// Id of the dataset it evaluates on; null when the job does not
    /// evaluate.
    pub eval_dataset: Option<String>,
    /// Every hyperparameter, defaults filled in.
    pub hyperparameters: JobSettings,
    /// Text appended to the produced model's id; null when none was given.
    pub suffix: Option<String>,
    /// The current (or last) attempt, from 1; 0 while queued before its
    /// first start. A shutdown's hand-back does not count.
    pub attempt: i64,
    /// Attempts allowed before the job fails (`hyperparameters.max_attempts`).
    /// Failures whose cause may pass (a full disk, the database or the Hub
    /// out of reach) are retried without using one up.
    pub max_attempts: i64,
    /// Times the job was queued again after a failure that may pass; each
    /// retry waits twice as long as the one before (`--retry-initial-secs`
    /// up to `--retry-max-secs`).
    pub retries: i64,
    /// When a queued job waiting out a retry's backoff may start again (RFC
    /// 3339); null when it may start now or is not queued. `error` says why
    /// the last attempt failed.
    pub retry_at: Option<String>,
    /// A cancel was asked for; a running job stops within one heartbeat.
    pub cancel_requested: bool,
    /// The node running it (`--node-id`), while it runs; any node answers
    /// for any job.
    pub node: Option<String>,
    /// Steps done and planned, throughput and the estimated time left.
    pub progress: JobProgress,
    /// Newest metrics (single-job answers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_metrics: Option<LatestMetrics>,
    /// Bytes its checkpoints take on disk (single-job answers only; the
    /// exported model is counted in its own folder).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
    /// Why it failed (or why the last attempt did); null otherwise.
    pub error: Option<String>,
    /// The job's own webhook receivers (the server's are not listed).
    pub webhooks: Vec<WebhookTarget>,
    /// The experiment trackers it logs to.
    pub integrations: Vec<Integration>,
    /// The MLflow run it logs to (its ids and page); null until the run is
    /// made (when training starts) or without an MLflow integration.
    pub tracking: Option<TrackingRun>,
    /// Id of the model it produced; null until it succeeds.
    pub model: Option<String>,
    /// Submission time (RFC 3339).
    pub created_at: String,
    /// When its first attempt started (RFC 3339); null while queued.
    pub started_at: Option<String>,
    /// When it reached `succeeded`, `failed` or `cancelled` (RFC 3339);
    /// null before.
    pub finished_at: Option<String>,
}

impl From<JobRow> for Job {
    fn from(row: JobRow) -> Self {
        let p = &row.progress;
        let eta_seconds = match (row.status, row.started_at, p.total_steps) {
            (JobStatus::Running, Some(start), Some(total)) if p.step > 0 => {
                let elapsed = (crate::store::now_ms() - start) as f64 / 1000.0;
                Some(elapsed / p.step as f64 * (total - p.step).max(0) as f64)
            }
            _ => None,
        };
        Self {
            id: row.id,
            status: row.status,
            base_model: row.base_model,
            train_dataset: row.train_dataset,
            eval_dataset: row.eval_dataset,
            hyperparameters: row.settings,
            suffix: row.suffix,
            attempt: row.attempt,
            max_attempts: row.max_attempts,
            retries: row.retries,
            retry_at: (row.status == JobStatus::Queued)
                .then_some(row.retry_at)
                .flatten()
                .map(timestamp),
            cancel_requested: row.cancel_requested,
            node: (row.status == JobStatus::Running)
                .then_some(row.lease_owner.as_deref())
                .flatten()
                .map(|owner| crate::queue::owner_node(owner).to_string()),
            progress: JobProgress {
                step: row.progress.step,
                total_steps: row.progress.total_steps,
                epoch: row.progress.epoch,
                tokens: row.progress.tokens,
                tokens_per_second: row.progress.tokens_per_second,
                eta_seconds,
            },
            latest_metrics: None,
            disk_bytes: None,
            error: row.error,
            webhooks: row.webhooks.unwrap_or_default(),
            integrations: row.integrations.unwrap_or_default(),
            tracking: row.tracking,
            model: row.model_id,
            created_at: timestamp(row.created_at),
            started_at: row.started_at.map(timestamp),
            finished_at: row.finished_at.map(timestamp),
        }
    }
}

fn validate(
    req: &CreateJob,
    settings: &JobSettings,
    devices: &[ServiceDevice],
) -> Result<(), ApiError> {
    if req.base_model.trim().is_empty() {
        return Err(ApiError::invalid("base_model", "must not be empty"));
    }
    if let Some(s) = &req.suffix {
        let ok = !s.is_empty()
            && s.len() <= 40
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(ApiError::invalid(
                "suffix",
                "must be 1 to 40 of `a-z`, `0-9` and `-`",
            ));
        }
    }
    settings
        .validate()
        .map_err(|e| ApiError::invalid(format!("hyperparameters.{}", e.field), e.to_string()))?;
    let hp = &settings.hyperparameters;
    let mut training = devices.iter().filter(|d| d.training);
    if !training.any(|d| hp.validate_for_device(&d.device).is_ok()) {
        let names: Vec<&str> = devices
            .iter()
            .filter(|d| d.training)
            .map(|d| d.name.as_str())
            .collect();
        return Err(ApiError::invalid(
            "hyperparameters.precision",
            format!(
                "\"bf16\" needs a GPU worker and this service trains on {} \
                 (start it with --devices cuda:N); use \"fp32\"",
                names.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Resolves the base model and checks the hyperparameters against its
/// configuration when it can be read without a download (`max_length`).
async fn check_base_model(
    state: &AppState,
    name: &str,
    hp: &crate::train::Hyperparameters,
) -> Result<(), ApiError> {
    let source = state
        .queue
        .base_models()
        .resolve(name)
        .await
        .map_err(|e| match e {
            BaseModelError::Store(s) => s.into(),
            other => ApiError::invalid("base_model", other.to_string()),
        })?;
    let config = tokio::task::spawn_blocking(move || local_config(&source)).await?;
    match (config, hp.max_length) {
        (Some(cfg), Some(max)) if max > cfg.n_positions => Err(ApiError::invalid(
            "hyperparameters.max_length",
            format!(
                "must be at most the base model's n_positions ({})",
                cfg.n_positions
            ),
        )),
        _ => Ok(()),
    }
}

async fn dataset_labels(state: &AppState, param: &str, id: &str) -> Result<Vec<String>, ApiError> {
    match state.store.get_dataset(id).await {
        Ok(row) => Ok(row.labels),
        Err(StoreError::NotFound { .. }) => Err(ApiError::invalid(
            param,
            format!("dataset `{id}` not found (upload it with POST /datasets)"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Queues a fine-tuning job.
///
/// Checks the base model, the datasets and every hyperparameter before
/// anything is stored (a 422 names the field at fault); the job then waits
/// for a free worker on any node. Follow it with `GET /jobs/{id}` or its
/// live log, `GET /jobs/{id}/events`.
#[utoipa::path(post, path = "/jobs", operation_id = "create_job", tag = "jobs", request_body = CreateJob,
    responses(
        (status = 202, description = "Queued", body = Job),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 422, description = "Invalid field (named in `param`)", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Json(req): Json<CreateJob>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let row = submit(&state, req, None).await?;
    Ok((StatusCode::ACCEPTED, Json(row.into())))
}

/// Checks a job against the devices, its base model and its datasets, queues
/// it and logs its `created` entry (with `data` when given): what every route
/// that submits a job does (`POST /jobs`, `POST /v1/fine_tuning/jobs`). A
/// 422 names the field of [`CreateJob`] at fault.
pub(super) async fn submit(
    state: &AppState,
    req: CreateJob,
    data: Option<serde_json::Value>,
) -> Result<JobRow, ApiError> {
    let settings = JobSettings::from_object(req.hyperparameters.clone().unwrap_or_default())
        .map_err(|e| {
            let param = format!("hyperparameters.{}", e.path);
            ApiError::invalid(&param, format!("{param}: {}", e.message))
        })?;
    validate(&req, &settings, &state.devices)?;
    super::job_integrations::validate(
        req.webhooks.as_deref().unwrap_or_default(),
        req.integrations.as_deref().unwrap_or_default(),
        &state.config,
    )?;
    check_base_model(state, &req.base_model, &settings.hyperparameters).await?;
    let train_labels = dataset_labels(state, "train_dataset", &req.train_dataset).await?;
    if let Some(eval) = &req.eval_dataset {
        let eval_labels = dataset_labels(state, "eval_dataset", eval).await?;
        if !train_labels.starts_with(&eval_labels) {
            return Err(ApiError::invalid(
                "eval_dataset",
                format!(
                    "its labels {eval_labels:?} differ from the training set's {train_labels:?}"
                ),
            ));
        }
    }
    let row = state
        .store
        .insert_job(NewJob {
            id: new_id("job"),
            base_model: req.base_model,
            train_dataset: req.train_dataset,
            eval_dataset: req.eval_dataset,
            settings,
            suffix: req.suffix,
            webhooks: req.webhooks.unwrap_or_default(),
            integrations: req.integrations.unwrap_or_default(),
        })
        .await?;
    let event = NewEvent::info(EventKind::Created, "job queued", data);
    state.queue.log().write(&row.id, None, event).await?;
    state.queue.notify();
    Ok(row)
}

page_type! {
    /// A page of jobs, in submission order (oldest first).
    JobList of Job
}

/// Lists jobs.
///
/// In submission order (oldest first), a page at a time, optionally only
/// those with one `status`.
#[utoipa::path(get, path = "/jobs", operation_id = "list_jobs", tag = "jobs", params(JobListParams),
    responses(
        (status = 200, description = "A page of jobs", body = JobList),
        (status = 422, description = "A bad `status`, `limit` or `after`", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<JobListParams>,
) -> Result<Json<JobList>, ApiError> {
    let status = q
        .status
        .as_deref()
        .map(|name| {
            name.parse::<JobStatus>().map_err(|_| {
                let all = <JobStatus as strum::VariantArray>::VARIANTS.iter();
                let names: Vec<&str> = all.map(|s| s.as_str()).collect();
                let names = names.join(", ");
                ApiError::invalid("status", format!("unknown status `{name}` ({names})"))
            })
        })
        .transpose()?;
    let page = q.page();
    let limit = page.limit()?;
    let rows = (state
        .store
        .list_jobs(status, limit + 1, page.after.as_deref())
        .await)
        .map_err(|e| page.unknown_after(e))?;
    let (rows, has_more) = page.cut(rows);
    Ok(Json(JobList {
        data: rows.into_iter().map(Into::into).collect(),
        has_more,
    }))
}

/// Gets a job.
///
/// Its status, progress (steps, tokens per second, time left) and newest
/// training and evaluation metrics.
#[utoipa::path(get, path = "/jobs/{id}", operation_id = "get_job", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job, with its newest metrics", body = Job),
        (status = 404, description = "No job has this id", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let row = state.store.get_job(&id).await?;
    let metrics = state.store.list_metrics(&id).await?;
    let newest = |split: Split| {
        metrics
            .iter()
            .filter(|m| m.split == split)
            .max_by_key(|m| m.step)
    };
    let mut job: Job = row.into();
    job.latest_metrics = Some(LatestMetrics {
        train: newest(Split::Train).map(train_record).transpose()?,
        eval: newest(Split::Eval).map(eval_record).transpose()?,
    });
    let folder = state.data_dir.job(&id);
    let bytes = tokio::task::spawn_blocking(move || disk_bytes(&folder)).await?;
    job.disk_bytes = Some(bytes);
    Ok(Json(job))
}

/// Bytes of the files under `dir` (0 when it does not exist).
fn disk_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => disk_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// Deletes a finished job.
///
/// Its checkpoints, log, metrics and record go. 409 while it is queued or
/// running, or while the model it produced exists (delete the model first).
#[utoipa::path(delete, path = "/jobs/{id}", operation_id = "delete_job", tag = "jobs",
    params(("id" = String, Path, description = "Job id (`job-…`)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No job has this id", body = ErrorBody),
        (status = 409, description = "Not finished, or its model still exists", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_job(&id).await?;
    let folder = state.data_dir.job(&id);
    if let Err(e) = std::fs::remove_dir_all(&folder) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(job = %id, "removing its checkpoints: {e}");
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Cancels a job.
///
/// A queued one at once; a running one (on any node) stops within a
/// heartbeat and keeps no model.
#[utoipa::path(post, path = "/jobs/{id}/cancel", operation_id = "cancel_job", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "Cancelled, or cancel requested", body = Job),
        (status = 404, description = "No job has this id", body = ErrorBody),
        (status = 409, description = "Already finished", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(request_cancel(&state, &id).await?.into()))
}

/// Cancels job `id` and logs it (409 when it has finished).
pub(super) async fn request_cancel(state: &AppState, id: &str) -> Result<JobRow, ApiError> {
    let row = state.store.request_cancel(id).await?;
    let message = match row.status {
        JobStatus::Cancelled => "cancelled while queued",
        _ => "cancel requested; the trainer stops at its next step",
    };
    let event = NewEvent::info(EventKind::CancelRequested, message, None);
    state.queue.log().write(id, None, event).await?;
    Ok(row)
}

/// Retries a failed job.
///
/// Queues it again with fresh attempts (`max_attempts` more); it
/// resumes from its newest checkpoint that loads, so the steps it finished
/// are not trained again.
#[utoipa::path(post, path = "/jobs/{id}/retry", operation_id = "retry_job", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "Queued again", body = Job),
        (status = 404, description = "No job has this id", body = ErrorBody),
        (status = 409, description = "Not failed (only failed jobs can be retried)", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let row = state.store.retry_failed(&id).await?;
    let event = NewEvent::info(
        EventKind::Retried,
        "queued again by a client; resumes from its newest checkpoint",
        None,
    );
    state.queue.log().write(&id, None, event).await?;
    state.queue.notify();
    Ok(Json(row.into()))
}
