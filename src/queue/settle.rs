//! How an attempt ends, recorded in the store: cancelled, handed back on a
//! shutdown (not counted as an attempt), failed (queued again while attempts
//! remain), or succeeded — the model registered, promoted as the job's
//! `promote` says, and its checkpoints pruned as `keep_checkpoints` says.
//!
//! The outcome is written until the store takes it: a write that fails (a
//! full disk, say) is tried again every heartbeat while the attempt keeps its
//! lease, so the job ends with its real outcome and cause once the store
//! recovers, rather than with an expired lease.

use std::future::Future;

use serde_json::json;

use super::execute::{Executed, JobError};
use super::WorkerContext;
use crate::fault::Cause;
use crate::job::{KeepCheckpoints, Promote};
use crate::store::event_data::{ErrorData, SucceededData};
use crate::store::{
    EventKind, Fence, Finished, JobRow, JobStatus, Lease, Level, NewEvent, NewModel, StoreError,
};
use crate::train::{EvalMetrics, Finish};

/// Why the worker asked the trainer to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StopReason {
    Cancelled,
    Shutdown,
    LeaseLost,
}

/// Records how the attempt ended.
pub(super) async fn settle(
    shared: &WorkerContext,
    fence: &Fence,
    job: &JobRow,
    done: Result<Executed, JobError>,
    reason: Option<StopReason>,
) {
    let log = |event: NewEvent| shared.log.write(&job.id, Some(fence), event);
    if let (Some(_), Ok(Executed { model: Some(m), .. })) = (reason, &done) {
        // Exported just as the attempt was told to stop: no row will name it.
        discard_model(shared, &m.id);
    }
    match (done, reason) {
        (_, Some(StopReason::LeaseLost)) => {}
        (_, Some(StopReason::Cancelled)) => {
            let message = "cancelled at the client's request";
            let _ = log(NewEvent::info(EventKind::Cancelled, message, None)).await;
            tracing::info!("cancelled");
            let end = || shared.store.end_attempt(fence, JobStatus::Cancelled, None);
            count_outcome(persist(shared, fence, end).await, JobStatus::Cancelled);
        }
        (_, Some(StopReason::Shutdown)) => {
            let message =
                "interrupted by a shutdown; queued again to resume from its last checkpoint";
            let _ = log(NewEvent::info(EventKind::Interrupted, message, None)).await;
            tracing::info!("handed back to the queue for a shutdown");
            let _ = shared.store.hand_back(fence).await;
        }
        (Err(e), None) => settle_error(shared, fence, job, e).await,
        (Ok(exec), None) => match exec
            .model
            .clone()
            .filter(|_| exec.finish != Finish::Stopped)
        {
            Some(_) => succeed(shared, fence, job, exec).await,
            None => {
                let error = JobError::Thread("stopped unexpectedly".into());
                settle_error(shared, fence, job, error).await
            }
        },
    }
}

/// A failed attempt. A permanent cause fails the job; one that may pass
/// queues it again after a backoff (a transient cause gives the attempt back,
/// an unknown one counts it, failing the job once `max_attempts` are spent).
/// The error, with its cause, is recorded either way.
pub(super) async fn settle_error(
    shared: &WorkerContext,
    fence: &Fence,
    job: &JobRow,
    error: JobError,
) {
    let cause = error.cause();
    let exhausted = cause == Cause::Unknown && job.attempt >= job.max_attempts;
    let message = shared.scrub(&error.to_string());
    let (status, delay) = match cause {
        Cause::Permanent => (JobStatus::Failed, None),
        _ if exhausted => (JobStatus::Failed, None),
        _ => (
            JobStatus::Queued,
            Some(shared.config.backoff.delay(job.retries)),
        ),
    };
    let counted = cause != Cause::Transient;
    tracing::warn!(?cause, next = status.as_str(), "attempt failed: {message}");
    let (text, data) = match delay {
        Some(delay) => (
            format!(
                "attempt {} failed: {message}; retrying in {:.1} s ({})",
                job.attempt,
                delay.as_secs_f64(),
                match counted {
                    true => "counted against max_attempts",
                    false => "a cause that may pass: not counted against max_attempts",
                }
            ),
            json!(ErrorData {
                next_status: status,
                cause,
                retry_in_ms: Some(delay.as_millis() as u64),
                counted: Some(counted),
            }),
        ),
        None => (
            format!("attempt {} failed: {message}", job.attempt),
            json!(ErrorData {
                next_status: status,
                cause,
                retry_in_ms: None,
                counted: None,
            }),
        ),
    };
    let event = NewEvent {
        level: Level::Error,
        kind: EventKind::Error,
        message: text,
        data: Some(data),
    };
    // Written while the attempt still holds its lease (the end write releases
    // it), and until the store takes it: a full disk's error must be kept.
    let write = || shared.log.write(&job.id, Some(fence), event.clone());
    let _ = persist(shared, fence, write).await;
    let ended = match delay {
        Some(delay) => {
            let ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            let end = || shared.store.retry_later(fence, &message, ms, counted);
            persist(shared, fence, end).await
        }
        None => {
            let end = || shared.store.end_attempt(fence, status, Some(&message));
            persist(shared, fence, end).await
        }
    };
    count_outcome(ended, status);
}

/// A succeeded attempt: register the model (promoted or not), serve it if
/// promoted, prune the checkpoints.
async fn succeed(shared: &WorkerContext, fence: &Fence, job: &JobRow, exec: Executed) {
    let Some(model) = exec.model else { return };
    let (promote, why) = promotion(shared, job, exec.final_metrics.as_ref()).await;
    let dir = &shared.config.data_dir;
    let new = NewModel {
        id: model.id.clone(),
        base_model: job.base_model.clone(),
        labels: model.classifier.labels().to_vec(),
        metrics: exec.final_metrics.as_ref().map(|m| json!(m)),
        path: dir.relative(&dir.model(&model.id)),
    };
    let message = match promote {
        true => format!("succeeded; model {} is now `latest`", model.id),
        false => format!(
            "succeeded; model {} registered, not promoted: {why}",
            model.id
        ),
    };
    let data = json!(SucceededData {
        model: model.id.clone(),
        promoted: promote,
    });
    // Pruned before the job reads `succeeded`, so a client that sees it sees
    // the checkpoints that stay; a retried attempt resumes from the kept one.
    prune(shared, job, exec.best_step).await;
    let finish = || shared.store.finish_succeeded(fence, new.clone(), promote);
    // Logged unfenced once the outcome is known: the write that decides it
    // also releases the lease.
    let log = |kind, message, data| async move {
        let event = NewEvent::info(kind, message, data);
        let _ = shared.log.write(&job.id, None, event).await;
    };
    match persist(shared, fence, finish).await {
        Ok(Finished::Registered(row)) => {
            tracing::info!(model = %model.id, promoted = promote, "{message}");
            log(EventKind::Succeeded, message, Some(data)).await;
            if let Some(rank) = row.promoted_at {
                shared.registry.promote(model, rank);
            }
            count_outcome(Ok(true), JobStatus::Succeeded);
        }
        Ok(Finished::Cancelled) => {
            discard_model(shared, &model.id);
            let message = "cancelled at the client's request, as the model was being registered; \
                           the model was not kept";
            tracing::info!("cancelled at success");
            log(EventKind::Cancelled, message.to_string(), None).await;
            count_outcome(Ok(true), JobStatus::Cancelled);
        }
        Ok(Finished::Fenced) => {
            discard_model(shared, &model.id);
            tracing::warn!("finished after losing its lease; model not registered")
        }
        Err(e) => tracing::error!("recording success failed: {e}"),
    }
}

/// Removes the folder of a model that no row will name (the job was
/// cancelled, or the attempt had lost its lease).
fn discard_model(shared: &WorkerContext, model_id: &str) {
    let dir = shared.config.data_dir.model(model_id);
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        tracing::warn!("removing the unregistered model folder: {e}");
    }
}

/// Whether the job's model becomes `latest`, and why not when it does not.
async fn promotion(
    shared: &WorkerContext,
    job: &JobRow,
    metrics: Option<&EvalMetrics>,
) -> (bool, String) {
    let h = &job.settings.hyperparameters;
    match job.settings.options.promote {
        Promote::Always => return (true, String::new()),
        Promote::Never => return (false, "the job's `promote` is `never`".into()),
        Promote::IfBetter => {}
    }
    let Ok(Some(latest)) = shared.store.latest_model().await else {
        return (true, String::new());
    };
    let (Some(ours), Some(theirs)) = (metrics, latest.metrics.as_ref()) else {
        return (
            false,
            "no evaluation to compare with the current `latest`".into(),
        );
    };
    let same_set = match shared.store.get_job(&latest.job_id).await {
        Ok(other) => {
            let o = &other.settings.hyperparameters;
            other.eval_dataset == job.eval_dataset
                && (o.eval_subset, o.seed) == (h.eval_subset, h.seed)
        }
        Err(_) => false,
    };
    let theirs: Option<EvalMetrics> = serde_json::from_value(theirs.clone()).ok();
    match theirs.filter(|_| same_set) {
        None => (
            false,
            format!("`latest` ({}) was evaluated on another set", latest.id),
        ),
        Some(theirs) => {
            let metric = h.metric_for_best_model;
            match ours.score(metric) > theirs.score(metric) {
                true => (true, String::new()),
                false => (
                    false,
                    format!("not better than `latest` ({}) by {metric:?}", latest.id),
                ),
            }
        }
    }
}

/// Deletes the succeeded job's checkpoints that `keep_checkpoints` does not
/// keep (the best one, by default).
async fn prune(shared: &WorkerContext, job: &JobRow, best_step: Option<usize>) {
    let keep = match job.settings.options.keep_checkpoints {
        KeepCheckpoints::All => return,
        KeepCheckpoints::Best => best_step.map(|s| s as i64),
        KeepCheckpoints::None => None,
    };
    let Ok(rows) = shared.store.list_checkpoints(&job.id).await else {
        return;
    };
    for row in rows.into_iter().filter(|r| Some(r.step) != keep) {
        let path = shared.config.data_dir.resolve(&row.path);
        if let Err(e) = std::fs::remove_dir_all(&path) {
            tracing::warn!(step = row.step, "removing a checkpoint: {e}");
            continue;
        }
        let _ = shared.store.forget_checkpoint(&job.id, row.step).await;
    }
}

/// Runs `write` until the store takes it, renewing the lease between tries;
/// gives up when the lease is lost or the service shuts down.
pub(super) async fn persist<T, F, Fut>(
    shared: &WorkerContext,
    fence: &Fence,
    mut write: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    loop {
        let error = match write().await {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        tracing::warn!("recording the outcome failed (will retry): {error}");
        tokio::select! {
            _ = tokio::time::sleep(shared.config.heartbeat) => {}
            _ = shared.shutdown.cancelled() => return Err(error),
        }
        if let Ok(Lease::Lost) = shared
            .store
            .heartbeat(fence, shared.config.lease_ms())
            .await
        {
            return Err(error); // the lease is gone: the outcome is no longer ours to write
        }
    }
}

/// Counts a job that reached a final status (`Ok(true)`: the write applied).
fn count_outcome(result: Result<bool, StoreError>, status: JobStatus) {
    match result {
        Ok(false) => tracing::debug!("outcome fenced off (lease lost)"),
        Ok(true) => {
            // Attempts that end in a requeue are not counted: the job is not finished.
            if status.is_terminal() {
                metrics::counter!(crate::metric_names::JOBS_FINISHED, "status" => status.as_str())
                    .increment(1);
            }
        }
        Err(e) => tracing::error!("recording the outcome failed: {e}"),
    }
}
