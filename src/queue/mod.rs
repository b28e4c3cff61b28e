//! The job queue: the jobs table is the queue (see [`crate::store`]).
//!
//! One worker per device claims the oldest queued job atomically, holds a
//! lease it renews by heartbeat, and runs the training on an OS thread of its
//! own (never on the async runtime). A rescuer requeues jobs whose lease ran
//! out (their worker died, on this node or another), or fails them once their
//! attempts are spent; a requeued job resumes from its newest checkpoint,
//! on whichever node claims it. Workers are named `NODE/DEVICE`: the lease
//! owner says which node runs a job. Cancellation is a flag the
//! worker turns into the trainer's `should_stop`. On shutdown workers stop
//! their trainers and hand their jobs back to the queue.

mod base_model;
mod execute;
mod log;
mod record;
mod settle;
pub mod sweep;
mod tracking;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use candle_core::Device;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use base_model::{local_config, BaseModelError, BaseModels};
pub use log::{JobLog, LoggedEvent};

use crate::data_dir::DataDir;
use crate::infer::Registry;
use crate::store::{EventKind, Level, NewEvent, Store};

/// How the queue runs.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// `--node-id`: the first half of each worker's name.
    pub node_id: String,
    /// `--data-dir`: where datasets are read and checkpoints and models written.
    pub data_dir: DataDir,
    /// One worker per entry: its name (`cpu`, `cuda:0`) and device.
    pub devices: Vec<(String, Device)>,
    /// How long a lease lasts without a heartbeat.
    pub lease: Duration,
    /// How often a running job renews its lease (and notices a cancel).
    pub heartbeat: Duration,
    /// How often an idle worker looks for work (it is also woken on submit).
    pub poll: Duration,
    /// How long a job waits before its next attempt after a failure that
    /// may pass.
    pub backoff: Backoff,
    /// Folders whose subfolders are base models clients may name
    /// (`--model-dir`).
    pub model_dirs: Vec<std::path::PathBuf>,
    /// The MLflow tracking server jobs with an `mlflow` integration log to
    /// (`--mlflow-tracking-uri`); `None`: such jobs log nowhere.
    pub mlflow_tracking_uri: Option<String>,
}

/// Exponential backoff with jitter: the first retry waits `initial`, each
/// next one twice as long up to `max`; every wait is drawn within ±20% of
/// that, so jobs that failed together (a full disk fails them all) do not
/// all come back in the same second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first wait (`--retry-initial-secs`).
    pub initial: Duration,
    /// The longest wait (`--retry-max-secs`).
    pub max: Duration,
}

impl Backoff {
    /// The wait before the retry that follows `retries` earlier ones.
    pub fn delay(&self, retries: i64) -> Duration {
        let doublings = u32::try_from(retries.clamp(0, 30)).unwrap_or(30);
        let base = self.initial.saturating_mul(1u32 << doublings).min(self.max);
        base.mul_f64(rand::random_range(0.8..1.2))
    }
}

impl QueueConfig {
    /// `lease` in milliseconds, as the store takes it (`i64::MAX` past that range).
    pub fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }
}

/// State every worker shares.
pub(crate) struct WorkerContext {
    pub config: QueueConfig,
    pub store: Store,
    pub log: JobLog,
    pub registry: Arc<Registry>,
    pub base_models: BaseModels,
    pub shutdown: CancellationToken,
    pub wake: Notify,
}

impl WorkerContext {
    /// `text` without the server's folders: the data folder becomes `<data>`
    /// and each model folder `<model-dir>`, so a job's error tells a client
    /// which file is at fault but not where the server keeps it.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let text = self.config.data_dir.scrub(text);
        self.config.model_dirs.iter().fold(text, |text, dir| {
            let dir = dir.display().to_string();
            match dir.trim_end_matches('/') {
                "" => text,
                root => text.replace(root, "<model-dir>"),
            }
        })
    }
}

/// The API's handle on the queue.
#[derive(Clone)]
pub struct Queue {
    shared: Arc<WorkerContext>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

impl Queue {
    /// Starts the workers and the rescuer on the current runtime. They stop
    /// when `shutdown` is cancelled; await the handles to let running jobs
    /// hand themselves back.
    pub fn start(
        config: QueueConfig,
        store: Store,
        registry: Arc<Registry>,
        shutdown: CancellationToken,
    ) -> (Self, Vec<JoinHandle<()>>) {
        let base_models = BaseModels::new(
            store.clone(),
            config.data_dir.clone(),
            config.model_dirs.clone(),
        );
        let shared = Arc::new(WorkerContext {
            config,
            base_models,
            log: JobLog::new(store.clone()),
            store,
            registry,
            shutdown,
            wake: Notify::new(),
        });
        let mut handles: Vec<JoinHandle<()>> = shared
            .config
            .devices
            .iter()
            .map(|(name, device)| {
                let owner = format!("{}/{name}", shared.config.node_id);
                tokio::spawn(work(shared.clone(), owner, device.clone()))
            })
            .collect();
        handles.push(tokio::spawn(rescue(shared.clone())));
        (Self { shared }, handles)
    }

    /// Wakes an idle worker (a job was just queued, here or on another node).
    pub fn notify(&self) {
        self.shared.wake.notify_one();
    }

    /// The job log, which the API writes clients' actions to and follows live.
    pub fn log(&self) -> &JobLog {
        &self.shared.log
    }

    /// How jobs' base model names are resolved.
    pub fn base_models(&self) -> &BaseModels {
        &self.shared.base_models
    }
}

/// The node of a worker named `owner` (`NODE/DEVICE`).
pub fn owner_node(owner: &str) -> &str {
    owner.split_once('/').map_or(owner, |(node, _)| node)
}

async fn work(shared: Arc<WorkerContext>, owner: String, device: Device) {
    tracing::info!(worker = %owner, "worker started");
    while !shared.shutdown.is_cancelled() {
        match shared
            .store
            .claim_job(&owner, shared.config.lease_ms())
            .await
        {
            Ok(Some(job)) => {
                worker::run_job(&shared, &owner, &device, job).await;
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(worker = %owner, "claiming a job failed: {e}"),
        }
        tokio::select! {
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep(shared.config.poll) => {}
            _ = shared.shutdown.cancelled() => {}
        }
    }
    tracing::info!(worker = %owner, "worker stopped");
}

async fn rescue(shared: Arc<WorkerContext>) {
    let every = (shared.config.lease / 2).max(Duration::from_millis(50));
    let mut swept = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shared.shutdown.cancelled() => return,
        }
        if swept.elapsed() >= sweep::EVERY {
            sweep::sweep(&shared.config.data_dir, &shared.store, sweep::STALE).await;
            swept = std::time::Instant::now();
        }
        let rescued = match shared.store.rescue_expired().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("rescuing expired leases failed: {e}");
                continue;
            }
        };
        for r in rescued {
            tracing::warn!(job = %r.job_id, status = r.status.as_str(), "lease expired");
            let event = NewEvent {
                level: Level::Warning,
                kind: EventKind::LeaseExpired,
                message: format!(
                    "the worker's lease expired; job is now {}",
                    r.status.as_str()
                ),
                data: None,
            };
            let _ = shared.log.write(&r.job_id, None, event).await;
            shared.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter() {
        let backoff = Backoff {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(300),
        };
        for (retries, base) in [(0, 5.0), (1, 10.0), (3, 40.0), (6, 300.0), (1000, 300.0)] {
            let waits: Vec<f64> = (0..50)
                .map(|_| backoff.delay(retries).as_secs_f64())
                .collect();
            assert!(
                waits.iter().all(|w| (0.8 * base..=1.2 * base).contains(w)),
                "{retries}: {waits:?}"
            );
            assert!(
                waits.iter().any(|w| (w - waits[0]).abs() > 1e-9),
                "jittered"
            );
        }
    }
}
