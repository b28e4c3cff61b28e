//! A job's MLflow run, from the queue's side: the tracker a claimed attempt
//! starts when the job has an `mlflow` integration and the node a tracking
//! server, reporting to the job itself (the run recorded on the job, what the
//! tracker did in its log, the model card and the job's metrics as the run's
//! artifacts).

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt as _;
use serde_json::{json, Value};

use super::{JobLog, WorkerContext};
use crate::data_dir::DataDir;
use crate::integrations::mlflow::client::Client;
use crate::integrations::mlflow::tracker::{Host, Setup, Tracker};
use crate::integrations::mlflow::{params, run_tags};
use crate::integrations::TrackingRun;
use crate::store::event_data::TrackingData;
use crate::store::{EventKind, JobRow, JobStatus, Level, NewEvent, Split, Store};

/// The job's tracker, when it has an `mlflow` integration and the node a
/// tracking server; `datasets` are the datasets' names.
pub(super) fn tracker(
    shared: &WorkerContext,
    job: &JobRow,
    datasets: &[String],
) -> Option<Tracker> {
    let uri = shared.config.mlflow_tracking_uri.as_deref()?;
    let integrations = job.integrations.as_deref().unwrap_or_default();
    let mlflow = integrations.iter().find_map(|i| i.mlflow())?;
    let client = match Client::new(uri) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("MLflow client: {e}");
            return None;
        }
    };
    let mut extra = vec![
        ("train_dataset".to_string(), job.train_dataset.clone()),
        ("datasets".to_string(), datasets.join(", ")),
    ];
    extra.extend(
        job.eval_dataset
            .clone()
            .map(|e| ("eval_dataset".to_string(), e)),
    );
    let host = JobHost {
        store: shared.store.clone(),
        log: shared.log.clone(),
        data_dir: shared.config.data_dir.clone(),
        job_id: job.id.clone(),
    };
    Some(Tracker::start(Setup {
        client,
        host: Arc::new(host),
        key: job.id.clone(),
        known: job.tracking.clone(),
        params: params(&job.settings),
        tags: run_tags(&job.id, &job.base_model, extra, &mlflow),
        mlflow,
        close_within: crate::integrations::mlflow::tracker::CLOSE_WITHIN,
    }))
}

/// A job, as a tracker's host.
struct JobHost {
    store: Store,
    log: JobLog,
    data_dir: DataDir,
    job_id: String,
}

impl Host for JobHost {
    fn record<'a>(&'a self, run: &'a TrackingRun) -> BoxFuture<'a, ()> {
        async move {
            if let Err(e) = self.store.set_tracking(&self.job_id, run).await {
                tracing::warn!("recording the MLflow run on the job: {e}");
            }
        }
        .boxed()
    }

    fn say(&self, level: Level, message: String, data: TrackingData) -> BoxFuture<'_, ()> {
        async move {
            let event = NewEvent {
                level,
                kind: EventKind::Tracking,
                message,
                data: Some(serde_json::json!(data)),
            };
            if let Err(e) = self.log.write(&self.job_id, None, event).await {
                tracing::warn!("recording what MLflow did: {e}");
            }
        }
        .boxed()
    }

    /// `metrics.json` (every metrics row of the job, the final evaluation)
    /// and the model card of a job that made a model.
    fn artifacts(&self, status: JobStatus) -> BoxFuture<'_, Vec<(&'static str, Vec<u8>)>> {
        async move {
            let rows = self
                .store
                .list_metrics(&self.job_id)
                .await
                .unwrap_or_default();
            let split = |s: Split| -> Vec<Value> {
                let rows = rows.iter().filter(|m| m.split == s);
                rows.map(|m| json!({"step": m.step, "epoch": m.epoch, "metrics": m.data}))
                    .collect()
            };
            let (train, eval) = (split(Split::Train), split(Split::Eval));
            let document = json!({"job": self.job_id, "status": status.as_str(),
                                  "final": eval.last().map(|e| e["metrics"].clone()),
                                  "train": train, "eval": eval});
            let bytes = serde_json::to_vec_pretty(&document).unwrap_or_default();
            let mut out = vec![("metrics.json", bytes)];
            let model = self
                .store
                .get_job(&self.job_id)
                .await
                .ok()
                .and_then(|j| j.model_id);
            if let Some(model) = model {
                let card = self.data_dir.model(&model).join("README.md");
                if let Ok(bytes) = tokio::fs::read(&card).await {
                    out.push(("README.md", bytes));
                }
            }
            out
        }
        .boxed()
    }
}
