//! One job attempt, async side: start the training thread, record what it
//! reports (every write fenced by the attempt), renew the lease, watch for a
//! cancel or a shutdown, and settle the outcome.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use candle_core::Device;
use serde_json::json;
use tokio::sync::mpsc;

use super::execute::{self, Executed, Failure, Msg, Plan};
use super::Shared;
use crate::store::{Fence, JobRow, JobStatus, NewEvent, NewModel, Progress, Split, StoreError};
use crate::train::{Finish, History, TrainEvent};

/// Why the worker asked the trainer to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Cancelled,
    Shutdown,
    LeaseLost,
}

use crate::store::NewEvent as Ev;

fn info(kind: &'static str, message: impl Into<String>, data: Option<serde_json::Value>) -> Ev {
    Ev::info(kind, message, data)
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
        Err(message) => {
            // A plan that cannot be made will not be made by retrying.
            settle_error(shared, &fence, &job, message, true).await;
            return;
        }
    };
    let _ = shared
        .store
        .add_event(
            &job.id,
            Some(&fence),
            info(
                "started",
                format!(
                    "attempt {} of {} started on {owner}",
                    job.attempt, job.max_attempts
                ),
                Some(json!({"attempt": job.attempt, "worker": owner})),
            ),
        )
        .await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = stop.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("train-{}", job.id))
        .spawn(move || execute::run(plan, tx, thread_stop));
    if let Err(e) = spawned {
        settle_error(
            shared,
            &fence,
            &job,
            format!("cannot start a thread: {e}"),
            false,
        )
        .await;
        return;
    }
    let mut recorder = Recorder::new(shared, &fence);
    let mut heartbeat = tokio::time::interval(shared.config.heartbeat);
    let mut reason: Option<StopReason> = None;
    let done = loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Event(event)) => recorder.record(&event).await,
                Some(Msg::Note(note)) => recorder.event(info("note", note, None)).await,
                Some(Msg::Backfill(history)) => recorder.backfill(&history).await,
                Some(Msg::Done(result)) => break result,
                None => break Err(Failure {
                    message: "the training thread panicked".into(),
                    permanent: false,
                }),
            },
            _ = heartbeat.tick() => match shared.store.heartbeat(&fence, shared.config.lease_ms()).await {
                Ok(Some(true)) if reason.is_none() => {
                    reason = Some(StopReason::Cancelled);
                    stop.store(true, Ordering::Relaxed);
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    if reason.is_none() {
                        tracing::warn!(job = %job.id, attempt = job.attempt, "lease lost; stopping");
                    }
                    reason = Some(StopReason::LeaseLost);
                    stop.store(true, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(job = %job.id, "heartbeat failed: {e}"),
            },
            _ = shared.shutdown.cancelled(), if reason.is_none() => {
                reason = Some(StopReason::Shutdown);
                stop.store(true, Ordering::Relaxed);
            }
        }
    };
    settle(shared, &fence, &job, done, reason).await;
}

async fn plan(shared: &Shared, device: &Device, job: &JobRow) -> Result<Plan, String> {
    let hyperparameters = job.hyperparameters.clone();
    let train = shared
        .store
        .get_dataset(&job.train_dataset)
        .await
        .map_err(|e| e.to_string())?;
    let eval_path = match &job.eval_dataset {
        Some(id) => Some(
            shared
                .store
                .get_dataset(id)
                .await
                .map_err(|e| e.to_string())?
                .path
                .into(),
        ),
        None => None,
    };
    let short = uuid::Uuid::new_v4().simple().to_string();
    let model_id = match &job.suffix {
        Some(suffix) => format!("model-{suffix}-{}", &short[..12]),
        None => format!("model-{}", &short[..12]),
    };
    let data_dir = &shared.config.data_dir;
    Ok(Plan {
        model_dir: data_dir.join("models").join(&model_id),
        model_id,
        base_model: job.base_model.clone(),
        train_path: train.path.into(),
        eval_path,
        labels: train.labels,
        hyperparameters,
        checkpoint_dir: data_dir.join("jobs").join(&job.id).join("checkpoints"),
        device: device.clone(),
    })
}

/// Writes what the trainer reports, fenced by the attempt.
struct Recorder<'a> {
    shared: &'a Shared,
    fence: &'a Fence,
    last_eval: Option<(usize, serde_json::Value)>,
    total_steps: Option<i64>,
}

impl<'a> Recorder<'a> {
    fn new(shared: &'a Shared, fence: &'a Fence) -> Self {
        Self {
            shared,
            fence,
            last_eval: None,
            total_steps: None,
        }
    }

    async fn event(&self, event: NewEvent) {
        self.log(
            self.shared
                .store
                .add_event(&self.fence.job_id, Some(self.fence), event)
                .await,
        );
    }

    fn log(&self, result: Result<bool, StoreError>) {
        match result {
            Ok(true) => {}
            Ok(false) => tracing::debug!(job = %self.fence.job_id, "write fenced off (lease lost)"),
            Err(e) => tracing::warn!(job = %self.fence.job_id, "recording progress failed: {e}"),
        }
    }

    /// Records the metrics of a resumed checkpoint's history again (upserts, so
    /// steps already recorded stay once).
    async fn backfill(&mut self, history: &History) {
        let store = &self.shared.store;
        for log in &history.steps {
            let data = serde_json::to_value(log).unwrap_or_default();
            let m = store.record_metric(
                self.fence,
                Split::Train,
                log.step as i64,
                log.epoch,
                Some(log.loss),
                &data,
            );
            self.log(m.await);
        }
        for log in &history.evals {
            let data = serde_json::to_value(&log.metrics).unwrap_or_default();
            let m = store.record_metric(
                self.fence,
                Split::Eval,
                log.step as i64,
                log.epoch,
                Some(log.metrics.loss),
                &data,
            );
            self.log(m.await);
        }
    }

    async fn record(&mut self, event: &TrainEvent) {
        let store = &self.shared.store;
        match event {
            TrainEvent::Started {
                total_steps,
                start_step,
                train_examples,
                eval_examples,
                ..
            } => {
                self.total_steps = Some(*total_steps as i64);
                let progress = Progress {
                    step: *start_step as i64,
                    total_steps: self.total_steps,
                    ..Progress::default()
                };
                self.log(store.update_progress(self.fence, &progress).await);
                let message = format!(
                    "training {total_steps} steps on {train_examples} examples \
                     ({eval_examples} for evaluation) from step {start_step}"
                );
                let data = json!({"total_steps": total_steps, "start_step": start_step});
                self.event(info("plan", message, Some(data))).await;
            }
            TrainEvent::Step(log) => {
                let data = serde_json::to_value(log).unwrap_or_default();
                let (step, epoch) = (log.step as i64, log.epoch);
                let m = store.record_metric(
                    self.fence,
                    Split::Train,
                    step,
                    epoch,
                    Some(log.loss),
                    &data,
                );
                self.log(m.await);
                let progress = Progress {
                    step,
                    total_steps: self.total_steps,
                    epoch: Some(epoch),
                    tokens: log.tokens as i64,
                    tokens_per_second: Some(log.tokens_per_second),
                };
                self.log(store.update_progress(self.fence, &progress).await);
                metrics::gauge!("tuneserve_training_tokens_per_second").set(log.tokens_per_second);
                let message = format!("step {step}: loss {:.4}", log.loss);
                self.event(info("step", message, Some(data))).await;
            }
            TrainEvent::Eval(log) => {
                let data = serde_json::to_value(&log.metrics).unwrap_or_default();
                let step = log.step as i64;
                let m = store.record_metric(
                    self.fence,
                    Split::Eval,
                    step,
                    log.epoch,
                    Some(log.metrics.loss),
                    &data,
                );
                self.log(m.await);
                self.last_eval = Some((log.step, data.clone()));
                let message = format!(
                    "eval at step {step}: loss {:.4}, accuracy {:.4}, macro-F1 {:.4}",
                    log.metrics.loss, log.metrics.accuracy, log.metrics.macro_f1
                );
                self.event(info("eval", message, Some(data))).await;
            }
            TrainEvent::Checkpoint { step, path } => {
                let metrics = self
                    .last_eval
                    .as_ref()
                    .filter(|(s, _)| s == step)
                    .map(|(_, m)| m);
                let path = path.display().to_string();
                let c = store.add_checkpoint(self.fence, *step as i64, &path, metrics);
                self.log(c.await);
                let data = json!({"step": step, "path": path});
                self.event(info(
                    "checkpoint",
                    format!("checkpoint at step {step}"),
                    Some(data),
                ))
                .await;
            }
            TrainEvent::CheckpointRemoved { step, .. } => {
                self.log(store.remove_checkpoint(self.fence, *step as i64).await);
            }
            TrainEvent::EarlyStopped { step } => {
                let message = format!("early stopping at step {step}");
                self.event(info("early_stopped", message, None)).await;
            }
        }
    }
}

async fn settle(
    shared: &Shared,
    fence: &Fence,
    job: &JobRow,
    done: Result<Executed, Failure>,
    reason: Option<StopReason>,
) {
    let store = &shared.store;
    let exec = match (done, reason) {
        (_, Some(StopReason::LeaseLost)) => return,
        (_, Some(StopReason::Cancelled)) => {
            let _ = store
                .add_event(
                    &job.id,
                    Some(fence),
                    info("cancelled", "cancelled at the client's request", None),
                )
                .await;
            finished(
                store.end_attempt(fence, JobStatus::Cancelled, None).await,
                JobStatus::Cancelled,
            );
            return;
        }
        (_, Some(StopReason::Shutdown)) => {
            let message =
                "interrupted by a shutdown; queued again to resume from its last checkpoint";
            let _ = store
                .add_event(&job.id, Some(fence), info("interrupted", message, None))
                .await;
            let _ = store.end_attempt(fence, JobStatus::Queued, None).await;
            return;
        }
        (Err(failure), None) => {
            return settle_error(shared, fence, job, failure.message, failure.permanent).await
        }
        (Ok(exec), None) => exec,
    };
    let Executed {
        finish,
        model,
        final_metrics,
    } = exec;
    let Some(model) = model.filter(|_| finish != Finish::Stopped) else {
        return settle_error(
            shared,
            fence,
            job,
            "the trainer stopped unexpectedly".into(),
            false,
        )
        .await;
    };
    let labels = model.classifier.labels().to_vec();
    let new = NewModel {
        id: model.id.clone(),
        base_model: job.base_model.clone(),
        labels,
        metrics: final_metrics.map(|m| serde_json::to_value(m).unwrap_or_default()),
        path: shared
            .config
            .data_dir
            .join("models")
            .join(&model.id)
            .display()
            .to_string(),
    };
    let message = format!("succeeded; model {} is now `latest`", model.id);
    let _ = store
        .add_event(
            &job.id,
            Some(fence),
            info("succeeded", message, Some(json!({"model": model.id}))),
        )
        .await;
    match store.finish_succeeded(fence, new).await {
        Ok(Some(_)) => {
            shared.registry.promote(model);
            finished(Ok(true), JobStatus::Succeeded);
        }
        Ok(None) => {
            tracing::warn!(job = %job.id, "finished after losing its lease; model not promoted")
        }
        Err(e) => tracing::error!(job = %job.id, "recording success failed: {e}"),
    }
}

async fn settle_error(
    shared: &Shared,
    fence: &Fence,
    job: &JobRow,
    message: String,
    permanent: bool,
) {
    let status = if permanent || job.attempt >= job.max_attempts {
        JobStatus::Failed
    } else {
        JobStatus::Queued
    };
    tracing::warn!(job = %job.id, attempt = job.attempt, "attempt failed: {message}");
    let event = NewEvent {
        level: crate::store::Level::Error,
        kind: "error",
        message: format!("attempt {} failed: {message}", job.attempt),
        data: Some(json!({"next_status": status.as_str()})),
    };
    let _ = shared.store.add_event(&job.id, Some(fence), event).await;
    finished(
        shared
            .store
            .end_attempt(fence, status, Some(&message))
            .await,
        status,
    );
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
