//! One job attempt, async side: start the training thread, record what it
//! reports (every write fenced by the attempt), renew the lease, watch for a
//! cancel or a shutdown, and settle the outcome.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use candle_core::Device;
use serde_json::json;
use tokio::sync::mpsc;

use super::execute::{self, Executed, JobError, Msg, Plan};
use super::record::Recorder;
use super::Shared;
use crate::store::{Fence, JobRow, JobStatus, Level, NewEvent, NewModel, StoreError};
use crate::train::{Finish, Provenance};

/// Why the worker asked the trainer to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Cancelled,
    Shutdown,
    LeaseLost,
}

/// Runs one claimed attempt of `job` to its end.
pub(super) async fn run_job(shared: &Shared, owner: &str, device: &Device, job: JobRow) {
    let fence = Fence {
        job_id: job.id.clone(),
        attempt: job.attempt,
        owner: owner.to_string(),
    };
    let plan = match plan(shared, device, &job).await {
        Ok(plan) => plan,
        Err(e) => return settle_error(shared, &fence, &job, e).await,
    };
    let message = format!(
        "attempt {} of {} started on {owner}",
        job.attempt, job.max_attempts
    );
    let data = json!({"attempt": job.attempt, "worker": owner});
    let _ = shared
        .log
        .write(
            &job.id,
            Some(&fence),
            NewEvent::info("started", message, Some(data)),
        )
        .await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = stop.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("train-{}", job.id))
        .spawn(move || execute::run(plan, tx, thread_stop));
    if let Err(e) = spawned {
        let error = JobError::Thread(format!("cannot start: {e}"));
        return settle_error(shared, &fence, &job, error).await;
    }
    let mut recorder = Recorder::new(shared, &fence);
    let mut heartbeat = tokio::time::interval(shared.config.heartbeat);
    let mut reason: Option<StopReason> = None;
    let done = loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Event(event)) => recorder.record(&event).await,
                Some(Msg::Done(result)) => break result,
                None => break Err(JobError::Thread("panicked".into())),
            },
            _ = heartbeat.tick() => {
                if let Some(why) = beat(shared, &fence, reason).await {
                    reason = Some(why);
                    stop.store(true, Ordering::Relaxed);
                }
            }
            _ = shared.shutdown.cancelled(), if reason.is_none() => {
                reason = Some(StopReason::Shutdown);
                stop.store(true, Ordering::Relaxed);
            }
        }
    };
    settle(shared, &fence, &job, done, reason).await;
}

/// Renews the lease; a reason to stop when a cancel was asked for or the lease
/// is lost (and no reason was given before).
async fn beat(shared: &Shared, fence: &Fence, given: Option<StopReason>) -> Option<StopReason> {
    match shared
        .store
        .heartbeat(fence, shared.config.lease_ms())
        .await
    {
        Ok(Some(true)) if given.is_none() => Some(StopReason::Cancelled),
        Ok(Some(_)) => None,
        Ok(None) => {
            if given != Some(StopReason::LeaseLost) {
                tracing::warn!(job = %fence.job_id, attempt = fence.attempt, "lease lost; stopping");
            }
            Some(StopReason::LeaseLost)
        }
        Err(e) => {
            tracing::warn!(job = %fence.job_id, "heartbeat failed: {e}");
            None
        }
    }
}

async fn plan(shared: &Shared, device: &Device, job: &JobRow) -> Result<Plan, JobError> {
    let dataset = |id: String| async move {
        shared
            .store
            .get_dataset(&id)
            .await
            .map_err(|e| JobError::Plan(e.to_string()))
    };
    let train = dataset(job.train_dataset.clone()).await?;
    let eval = match &job.eval_dataset {
        Some(id) => Some(dataset(id.clone()).await?),
        None => None,
    };
    let base_model = job
        .base_model
        .parse()
        .map_err(|e: crate::model::ModelError| JobError::Plan(e.to_string()))?;
    let short = uuid::Uuid::new_v4().simple().to_string();
    let model_id = match &job.suffix {
        Some(suffix) => format!("model-{suffix}-{}", &short[..12]),
        None => format!("model-{}", &short[..12]),
    };
    let dir = &shared.config.data_dir;
    let named = |d: &crate::store::DatasetRow| d.name.clone().unwrap_or_else(|| d.id.clone());
    Ok(Plan {
        model_dir: dir.model(&model_id),
        model_id,
        base_model,
        provenance: Provenance {
            base_model: job.base_model.clone(),
            datasets: std::iter::once(&train).chain(&eval).map(named).collect(),
        },
        train_path: dir.resolve(&train.path),
        eval_path: eval.as_ref().map(|e| dir.resolve(&e.path)),
        labels: train.labels,
        hyperparameters: job.hyperparameters.clone(),
        checkpoint_dir: dir.checkpoints(&job.id),
        device: device.clone(),
    })
}

async fn settle(
    shared: &Shared,
    fence: &Fence,
    job: &JobRow,
    done: Result<Executed, JobError>,
    reason: Option<StopReason>,
) {
    let log = |event: NewEvent| shared.log.write(&job.id, Some(fence), event);
    let store = &shared.store;
    let exec = match (done, reason) {
        (_, Some(StopReason::LeaseLost)) => return,
        (_, Some(StopReason::Cancelled)) => {
            let message = "cancelled at the client's request";
            let _ = log(NewEvent::info("cancelled", message, None)).await;
            let ended = store.end_attempt(fence, JobStatus::Cancelled, None).await;
            return finished(ended, JobStatus::Cancelled);
        }
        (_, Some(StopReason::Shutdown)) => {
            let message =
                "interrupted by a shutdown; queued again to resume from its last checkpoint";
            let _ = log(NewEvent::info("interrupted", message, None)).await;
            let _ = store.end_attempt(fence, JobStatus::Queued, None).await;
            return;
        }
        (Err(e), None) => return settle_error(shared, fence, job, e).await,
        (Ok(exec), None) => exec,
    };
    let Some(model) = exec.model.filter(|_| exec.finish != Finish::Stopped) else {
        let error = JobError::Thread("stopped unexpectedly".into());
        return settle_error(shared, fence, job, error).await;
    };
    let new = NewModel {
        id: model.id.clone(),
        base_model: job.base_model.clone(),
        labels: model.classifier.labels().to_vec(),
        metrics: exec.final_metrics.map(|m| json!(m)),
        path: shared
            .config
            .data_dir
            .relative(&shared.config.data_dir.model(&model.id)),
    };
    let message = format!("succeeded; model {} is now `latest`", model.id);
    let data = json!({"model": model.id});
    let _ = log(NewEvent::info("succeeded", message, Some(data))).await;
    match store.finish_succeeded(fence, new).await {
        Ok(Some(row)) => {
            tracing::info!(job = %job.id, model = %model.id, "succeeded; model promoted to `latest`");
            shared.registry.promote(model, row.seq);
            finished(Ok(true), JobStatus::Succeeded);
        }
        Ok(None) => {
            tracing::warn!(job = %job.id, "finished after losing its lease; model not promoted")
        }
        Err(e) => tracing::error!(job = %job.id, "recording success failed: {e}"),
    }
}

async fn settle_error(shared: &Shared, fence: &Fence, job: &JobRow, error: JobError) {
    let status = if error.is_permanent() || job.attempt >= job.max_attempts {
        JobStatus::Failed
    } else {
        JobStatus::Queued
    };
    let message = error.to_string();
    tracing::warn!(job = %job.id, attempt = job.attempt, "attempt failed: {message}");
    let event = NewEvent {
        level: Level::Error,
        kind: "error",
        message: format!("attempt {} failed: {message}", job.attempt),
        data: Some(json!({"next_status": status.as_str()})),
    };
    let _ = shared.log.write(&job.id, Some(fence), event).await;
    let ended = shared
        .store
        .end_attempt(fence, status, Some(&message))
        .await;
    finished(ended, status);
}

fn finished(result: Result<bool, StoreError>, status: JobStatus) {
    match result {
        Ok(true) => {
            // Attempts that end in a requeue are not counted: the job is not finished.
            if status.is_terminal() {
                metrics::counter!("tuneserve_jobs_finished_total", "status" => status.as_str())
                    .increment(1);
            }
        }
        Ok(false) => tracing::debug!("outcome fenced off (lease lost)"),
        Err(e) => tracing::error!("recording the outcome failed: {e}"),
    }
}
