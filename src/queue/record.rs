//! What an attempt's trainer reports, written to the store: metrics, progress,
//! checkpoints and log entries, each fenced by the attempt so a worker that
//! lost its lease writes nothing.

use serde_json::json;

use super::WorkerContext;
use crate::store::event_data::{CheckpointData, CheckpointSkippedData, EvalData, PlanData};
use crate::store::{EventKind, Fence, Level, NewEvent, Progress, Split, StoreError};
use crate::train::{EvalLog, History, StepLog, TrainEvent};

/// Writes what the trainer reports, fenced by the attempt.
pub(super) struct Recorder<'a> {
    shared: &'a WorkerContext,
    fence: &'a Fence,
    total_steps: Option<i64>,
    /// Metrics the store refused (a full disk, the database away), written
    /// again before the next one and before the attempt settles: a fault
    /// that passes loses no step's metrics (the writes are upserts).
    pending: Vec<Metric>,
}

/// One metrics row, as [`crate::store::Store::record_metric`] takes it.
struct Metric {
    split: Split,
    step: usize,
    epoch: f64,
    loss: f64,
    data: serde_json::Value,
}

impl<'a> Recorder<'a> {
    pub(super) fn new(shared: &'a WorkerContext, fence: &'a Fence) -> Self {
        Self {
            shared,
            fence,
            total_steps: None,
            pending: Vec::new(),
        }
    }

    /// Writes the metrics the store refused so far, trying again every
    /// heartbeat while the attempt keeps its lease; gives up on a shutdown.
    /// (Not through `settle::persist`: its write closure cannot lend
    /// `&mut self` to the future it returns.)
    pub(super) async fn flush(&mut self) {
        while !self.pending.is_empty() && self.write_pending().await.is_err() {
            tokio::select! {
                _ = tokio::time::sleep(self.shared.config.heartbeat) => {}
                _ = self.shared.shutdown.cancelled() => return,
            }
            let lease = self
                .store()
                .heartbeat(self.fence, self.shared.config.lease_ms());
            if let Ok(crate::store::Lease::Lost) = lease.await {
                return;
            }
        }
    }

    /// Writes the pending metrics in order, keeping those not yet taken.
    async fn write_pending(&mut self) -> Result<(), StoreError> {
        while let Some(m) = self.pending.first() {
            let step = m.step as i64;
            let write = self.store().record_metric(
                self.fence,
                m.split,
                step,
                m.epoch,
                Some(m.loss),
                &m.data,
            );
            write.await?;
            self.pending.remove(0);
        }
        Ok(())
    }

    /// Records one trainer event.
    pub(super) async fn record(&mut self, event: &TrainEvent) {
        match event {
            TrainEvent::CheckpointSkipped { path, reason } => {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                let name = name.unwrap_or_default();
                let message = format!("checkpoint {name} skipped: it does not load ({reason})");
                tracing::warn!("{message}");
                let data = json!(CheckpointSkippedData {
                    checkpoint: name,
                    reason: reason.clone(),
                });
                self.log(
                    Level::Warning,
                    EventKind::CheckpointSkipped,
                    message,
                    Some(data),
                )
                .await;
            }
            TrainEvent::Resumed { step, history, .. } => self.resumed(*step, history).await,
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
                let written = self.store().update_progress(self.fence, &progress).await;
                self.check(written);
                let message = format!(
                    "training {total_steps} steps on {train_examples} examples \
                     ({eval_examples} for evaluation) from step {start_step}"
                );
                tracing::info!("started: {message}");
                let data = json!(PlanData {
                    total_steps: *total_steps as u64,
                    start_step: *start_step as u64,
                });
                self.info(EventKind::Plan, message, Some(data)).await;
            }
            TrainEvent::Step(log) => self.step(log).await,
            TrainEvent::Eval(log) => self.eval(log).await,
            TrainEvent::Checkpoint { step, path, eval } => {
                let dir = &self.shared.config.data_dir;
                let path = dir.relative(path);
                let metrics = eval.as_ref().map(|m| json!(m));
                let c =
                    self.store()
                        .add_checkpoint(self.fence, *step as i64, &path, metrics.as_ref());
                self.check(c.await);
                let data = json!(CheckpointData {
                    step: *step as u64,
                    path,
                });
                let message = format!("checkpoint at step {step}");
                tracing::info!("{message}");
                self.info(EventKind::Checkpoint, message, Some(data)).await;
            }
            TrainEvent::CheckpointRemoved { step, .. } => {
                let removed = self.store().remove_checkpoint(self.fence, *step as i64);
                self.check(removed.await);
            }
            TrainEvent::EarlyStopped { step } => {
                let message = format!("early stopping at step {step}");
                tracing::info!("{message}");
                self.info(EventKind::EarlyStopped, message, None).await;
            }
        }
    }

    /// Records the logged steps and evaluations of the checkpoint a run
    /// resumes from again (upserts: steps already recorded stay once). A worker
    /// that lost its lease may have written that checkpoint after the store
    /// stopped taking its metrics.
    async fn resumed(&mut self, step: usize, history: &History) {
        for log in &history.steps {
            self.metric(Split::Train, log.step, log.epoch, log.loss, json!(log))
                .await;
        }
        for log in &history.evals {
            let m = &log.metrics;
            self.metric(Split::Eval, log.step, log.epoch, m.loss, json!(m))
                .await;
        }
        let message = format!("resuming from checkpoint step-{step}");
        tracing::info!("{message}");
        self.info(EventKind::Resumed, message, None).await;
    }

    async fn step(&mut self, log: &StepLog) {
        let data = json!(log);
        self.metric(Split::Train, log.step, log.epoch, log.loss, data.clone())
            .await;
        let progress = Progress {
            step: log.step as i64,
            total_steps: self.total_steps,
            epoch: Some(log.epoch),
            tokens: log.tokens as i64,
            tokens_per_second: Some(log.tokens_per_second),
        };
        let written = self.store().update_progress(self.fence, &progress).await;
        self.check(written);
        metrics::gauge!(crate::metric_names::TRAINING_TOKENS_PER_SECOND).set(log.tokens_per_second);
        let message = format!("step {}: loss {:.4}", log.step, log.loss);
        self.info(EventKind::Step, message, Some(data)).await;
    }

    async fn eval(&mut self, log: &EvalLog) {
        let m = &log.metrics;
        let data = json!(EvalData {
            metrics: m.clone(),
            seconds: log.seconds,
        });
        self.metric(Split::Eval, log.step, log.epoch, m.loss, data.clone())
            .await;
        let message = format!(
            "eval at step {}: loss {:.4}, accuracy {:.4}, macro-F1 {:.4}",
            log.step, m.loss, m.accuracy, m.macro_f1
        );
        tracing::info!("{message}");
        self.info(EventKind::Eval, message, Some(data)).await;
    }

    async fn metric(
        &mut self,
        split: Split,
        step: usize,
        epoch: f64,
        loss: f64,
        data: serde_json::Value,
    ) {
        self.pending.push(Metric {
            split,
            step,
            epoch,
            loss,
            data,
        });
        if let Err(e) = self.write_pending().await {
            let waiting = self.pending.len();
            tracing::warn!(
                waiting,
                "recording metrics failed (kept to write again): {e}"
            );
        }
    }

    async fn info(&self, kind: EventKind, message: String, data: Option<serde_json::Value>) {
        self.log(Level::Info, kind, message, data).await;
    }

    async fn log(
        &self,
        level: Level,
        kind: EventKind,
        message: String,
        data: Option<serde_json::Value>,
    ) {
        let event = NewEvent {
            level,
            kind,
            message,
            data,
        };
        let written = self
            .shared
            .log
            .write(&self.fence.job_id, Some(self.fence), event);
        self.check(written.await.map(|row| row.is_some()));
    }

    fn store(&self) -> &crate::store::Store {
        &self.shared.store
    }

    fn check(&self, result: Result<bool, StoreError>) {
        match result {
            Ok(true) => {}
            Ok(false) => tracing::debug!("write fenced off (lease lost)"),
            Err(e) => tracing::warn!("recording progress failed: {e}"),
        }
    }
}
