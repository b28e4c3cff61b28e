//! What a job log entry's `data` holds, one type per shape: the code that
//! writes an entry builds one of these, and the API document describes the
//! same types, so a client generated from it reads `data` typed by the
//! entry's `kind` and the two cannot drift apart. The entry is stored as JSON
//! (`events.data`); fields that do not apply are left out (never `null`).
//!
//! Kinds not listed carry no data: `resumed`, `early_stopped`,
//! `cancel_requested`, `cancelled`, `retried`, `interrupted`, `lease_expired`.
//! `step` carries the trainer's [`crate::train::StepLog`] and `eval` its
//! [`crate::train::EvalMetrics`] with the evaluation's `seconds` ([`EvalData`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::JobStatus;
use crate::fault::Cause;
use crate::train::EvalMetrics;

/// `created` through `POST /v1/fine_tuning/jobs`: the submission's
/// `metadata` (the entry carries no data when there was none).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedData {
    /// OpenAI's job metadata: up to 16 string pairs.
    pub metadata: BTreeMap<String, String>,
}

/// `started`: which attempt, on which worker.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StartedData {
    /// The attempt, counting from 1.
    pub attempt: i64,
    /// The worker (`node/device`) running it.
    pub worker: String,
}

/// `plan`: the optimizer steps of the whole run, and where this attempt starts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PlanData {
    /// Optimizer steps in the whole run.
    pub total_steps: u64,
    /// Steps already done (from a checkpoint); 0 for a fresh start.
    pub start_step: u64,
}

/// `eval`: an evaluation's metrics and how long it took.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EvalData {
    /// Loss, accuracy, macro-F1, per-class precision and recall, confusion matrix.
    #[serde(flatten)]
    pub metrics: EvalMetrics,
    /// Seconds the evaluation took.
    pub seconds: f64,
}

/// `checkpoint`: a checkpoint written.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckpointData {
    /// The optimizer step it holds.
    pub step: u64,
    /// Its folder, relative to the server's data folder.
    pub path: String,
}

/// `checkpoint_skipped`: a checkpoint that does not load, passed over when resuming.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckpointSkippedData {
    /// The checkpoint's folder name (`step-N`).
    pub checkpoint: String,
    /// Why it does not load.
    pub reason: String,
}

/// `export_retry`: writing the model failed in a way that may pass.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExportRetryData {
    /// Milliseconds until the next try.
    pub retry_in_ms: u64,
}

/// `succeeded`: the model the job produced.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SucceededData {
    /// The model's id.
    pub model: String,
    /// Whether it became `latest` (see the job's `promote`).
    pub promoted: bool,
}

/// `error`: an attempt failed; what happens next.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorData {
    /// The job's status after the failure: `queued` (retried) or `failed`.
    pub next_status: JobStatus,
    /// Whether the cause may pass.
    pub cause: Cause,
    /// Milliseconds until the retry; absent when the job failed for good.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub retry_in_ms: Option<u64>,
    /// Whether the retry uses up one of `max_attempts`; absent when the
    /// job failed for good.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub counted: Option<bool>,
}

/// `webhook_delivered` and `webhook_failed`: one try to deliver a webhook.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookData {
    /// The webhook's event type (`job.succeeded`, …).
    pub event: String,
    /// The receiver's URL.
    pub url: String,
    /// The delivery's `webhook-id` header (the same on every try).
    pub webhook_id: String,
    /// The try, counting from 1.
    pub attempt: i64,
    /// The receiver's HTTP status; only when delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub status: Option<u16>,
    /// Why the try failed; only when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<String>,
    /// Whether this failed try was the last; only when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub gave_up: Option<bool>,
    /// Milliseconds until the next try; only when one follows.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub retry_in_ms: Option<u64>,
}

/// `tracking`: what the experiment tracker did. `run_id`, `experiment_id`,
/// `url` and `resumed` when a run was created or resumed; `error` when the
/// tracker stopped taking data; `sent`, `unsent`, `dropped` and `errors` when
/// the job ended with points not delivered.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct TrackingData {
    /// The tracker (`mlflow`).
    pub tracker: String,
    /// The tracker's run id.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub run_id: Option<String>,
    /// The tracker's experiment id.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub experiment_id: Option<String>,
    /// The run's page in the tracker's UI.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub url: Option<String>,
    /// Whether an earlier attempt's run was continued.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub resumed: Option<bool>,
    /// What the tracker answered when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<String>,
    /// Metric points sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sent: Option<u64>,
    /// Metric points still waiting when the job ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub unsent: Option<u64>,
    /// Metric points dropped (the queue was full).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub dropped: Option<u64>,
    /// The errors met while closing the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub errors: Option<Vec<String>>,
}

impl TrackingData {
    /// MLflow's entry, the fields of what it did still to fill in.
    pub fn mlflow() -> Self {
        Self {
            tracker: "mlflow".into(),
            ..Self::default()
        }
    }
}
