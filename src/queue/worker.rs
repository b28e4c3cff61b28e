//! One job attempt, async side: start the training thread, record what it
//! reports (every write fenced by the attempt), renew the lease, watch for a
//! cancel or a shutdown, and settle the outcome.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use candle_core::Device;
use serde_json::json;
use tokio::sync::mpsc;

use super::execute::{self, FromTrainer, JobError, Plan};
use super::record::Recorder;
use super::settle::{persist, settle, settle_error, StopReason};
use super::WorkerContext;
use crate::store::event_data::{ExportRetryData, StartedData};
use crate::store::{new_id, EventKind, Fence, JobRow, Lease, Level, NewEvent, StoreError};
use crate::train::Provenance;

/// Runs one claimed attempt of `job` to its end, in the attempt's span (job
/// id, attempt, worker): every log line of the attempt, the training
/// thread's included, carries them.
#[tracing::instrument(name = "attempt", skip_all,
    fields(job = %job.id, attempt = job.attempt, worker = %owner))]
pub(super) async fn run_job(shared: &WorkerContext, owner: &str, device: &Device, job: JobRow) {
    tracing::info!("claimed");
    let fence = Fence {
        job_id: job.id.clone(),
        attempt: job.attempt,
        owner: owner.to_string(),
    };
    let plan = match plan(shared, device, &job).await {
        Ok(plan) => plan,
        Err(e) => return settle_error(shared, &fence, &job, e).await,
    };
    let plan_datasets = plan.provenance.datasets.clone();
    log_started(shared, &fence, &job).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = stop.clone();
    let span = tracing::Span::current();
    let spawned = std::thread::Builder::new()
        .name(format!("train-{}", job.id))
        .spawn(move || span.in_scope(|| execute::run(plan, tx, thread_stop)));
    if let Err(e) = spawned {
        let error = JobError::Thread(format!("cannot start: {e}"));
        return settle_error(shared, &fence, &job, error).await;
    }
    let tracker = super::tracking::tracker(shared, &job, &plan_datasets);
    let mut recorder = Recorder::new(shared, &fence);
    let mut heartbeat = tokio::time::interval(shared.config.heartbeat);
    let mut reason: Option<StopReason> = None;
    let done = loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(FromTrainer::Event(event)) => {
                    if let Some(t) = &tracker {
                        t.observe(&event);
                    }
                    recorder.record(&event).await
                }
                Some(FromTrainer::ExportRetry { error, delay }) => {
                    let message = format!(
                        "exporting the model failed: {}; trying again in {:.1} s (the trained weights are kept)",
                        shared.scrub(&error),
                        delay.as_secs_f64()
                    );
                    let event = NewEvent {
                        level: Level::Warning,
                        kind: EventKind::ExportRetry,
                        message,
                        data: Some(json!(ExportRetryData {
                            retry_in_ms: delay.as_millis() as u64
                        })),
                    };
                    // Kept until the store takes it: the disk may be what is full.
                    let write = || shared.log.write(&job.id, Some(&fence), event.clone());
                    let _ = persist(shared, &fence, write).await;
                }
                Some(FromTrainer::Done(result)) => break result,
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
    if reason.is_none() {
        recorder.flush().await;
    }
    settle(shared, &fence, &job, done, reason).await;
    if let Some(t) = tracker {
        let now = shared.store.get_job(&job.id).await;
        drop(t.finish(now.ok().map(|j| j.status).filter(|s| s.is_terminal())));
    }
    metrics::gauge!(crate::metric_names::TRAINING_TOKENS_PER_SECOND).set(0.0);
}

/// Renews the lease; a reason to stop when a cancel was asked for or the lease
/// is lost (and no reason was given before).
/// The attempt's `started` entry (best effort: the attempt runs without it).
async fn log_started(shared: &WorkerContext, fence: &Fence, job: &JobRow) {
    let message = format!(
        "attempt {} of {} started on {}",
        job.attempt, job.max_attempts, fence.owner
    );
    let data = json!(StartedData {
        attempt: job.attempt,
        worker: fence.owner.clone(),
    });
    let event = NewEvent::info(EventKind::Started, message, Some(data));
    let _ = shared.log.write(&job.id, Some(fence), event).await;
}

async fn beat(
    shared: &WorkerContext,
    fence: &Fence,
    given: Option<StopReason>,
) -> Option<StopReason> {
    match shared
        .store
        .heartbeat(fence, shared.config.lease_ms())
        .await
    {
        Ok(Lease::Held {
            cancel_requested: true,
        }) if given.is_none() => Some(StopReason::Cancelled),
        Ok(Lease::Held { .. }) => None,
        Ok(Lease::Lost) => {
            if given != Some(StopReason::LeaseLost) {
                tracing::warn!("lease lost; stopping");
            }
            Some(StopReason::LeaseLost)
        }
        Err(e) => {
            tracing::warn!("heartbeat failed: {e}");
            None
        }
    }
}

async fn plan(shared: &WorkerContext, device: &Device, job: &JobRow) -> Result<Plan, JobError> {
    let dataset = |id: String| async move {
        shared.store.get_dataset(&id).await.map_err(|e| match e {
            StoreError::NotFound { .. } => JobError::DatasetGone(id),
            other => JobError::Store(other),
        })
    };
    let train = dataset(job.train_dataset.clone()).await?;
    let eval = match &job.eval_dataset {
        Some(id) => Some(dataset(id.clone()).await?),
        None => None,
    };
    let base_model = shared
        .base_models
        .resolve(&job.base_model)
        .await
        .map_err(|source| JobError::BaseModelName {
            name: job.base_model.clone(),
            source,
        })?;
    let model_id = match &job.suffix {
        Some(suffix) => new_id(&format!("model-{suffix}")),
        None => new_id("model"),
    };
    let dir = &shared.config.data_dir;
    let named = |d: &crate::store::DatasetRow| d.name.clone().unwrap_or_else(|| d.id.clone());
    let hub_base_model = base_model.hub_id().map(str::to_string);
    Ok(Plan {
        model_dir: dir.model(&model_id),
        model_id,
        base_model,
        provenance: Provenance {
            base_model: job.base_model.clone(),
            hub_base_model,
            datasets: std::iter::once(&train).chain(&eval).map(named).collect(),
            hub_datasets: hub_ids(std::iter::once(&train).chain(&eval)),
        },
        train_path: dir.resolve(&train.path),
        eval_path: eval.as_ref().map(|e| dir.resolve(&e.path)),
        labels: train.labels,
        hyperparameters: job.settings.hyperparameters.clone(),
        checkpoint_dir: dir.checkpoints(&job.id),
        device: device.clone(),
        registry: shared.registry.clone(),
        backoff: shared.config.backoff,
    })
}

/// The Hub repositories the train and eval sets were imported from, once
/// each (the two splits of one repository are named once).
fn hub_ids<'a>(datasets: impl Iterator<Item = &'a crate::store::DatasetRow>) -> Vec<String> {
    let mut ids: Vec<String> = datasets.filter_map(|d| d.hub_repo.clone()).collect();
    ids.dedup();
    ids
}
