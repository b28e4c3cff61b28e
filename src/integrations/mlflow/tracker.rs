//! One job attempt's MLflow run, kept up to date by a task of its own on the
//! async runtime. The worker hands it the trainer's events without waiting
//! (`try_send` on a bounded channel; a full channel drops the points and
//! counts them); the task buffers metric points (at most [`MAX_PENDING`],
//! the oldest dropped and counted beyond), sends them with `log-batch` about
//! once a second, and while the server is away keeps them and tries again
//! with a growing pause. When the attempt ends it has [`CLOSE_WITHIN`] to
//! catch up, upload the artifacts (the model card and `metrics.json`) and
//! set the final status; what it could not send is said through its
//! [`Host`]: the job's log (`tracking` entries) in the service, stderr for
//! `tuneserve train`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::client::{Client, Metric, MlflowError, RunInfo};
use crate::integrations::{MlflowIntegration, TrackingRun};
use crate::store::event_data::TrackingData;
use crate::store::{now_ms, JobStatus, Level};
use crate::train::TrainEvent;

/// Metric points held while the server is away, at most.
pub const MAX_PENDING: usize = 50_000;
/// Trainer events waiting for the task, at most.
const CHANNEL: usize = 4096;
/// How often points are sent.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Longest pause between tries while the server is away.
const MAX_PAUSE: Duration = Duration::from_secs(30);
/// How long a job's tracker may go on after the attempt ends (the job does
/// not wait for it).
pub const CLOSE_WITHIN: Duration = Duration::from_secs(120);
/// Longest pause between tries after the attempt ended.
const CLOSE_PAUSE: Duration = Duration::from_secs(5);
/// The tag that finds a job's run again.
pub const JOB_TAG: &str = "tuneserve.job_id";

/// What a tracker reports to, besides MLflow: a job of the service, or the
/// `train` command.
pub(crate) trait Host: Send + Sync {
    /// Records the run, so that a later attempt resumes it.
    fn record<'a>(&'a self, run: &'a TrackingRun) -> BoxFuture<'a, ()>;
    /// Says what the tracker did (`data`: the details).
    fn say(&self, level: Level, message: String, data: TrackingData) -> BoxFuture<'_, ()>;
    /// The artifacts of a run that ended with `status`: file name and bytes.
    fn artifacts(&self, status: JobStatus) -> BoxFuture<'_, Vec<(&'static str, Vec<u8>)>>;
}

/// What a tracker needs.
pub(crate) struct Setup {
    /// The tracking server.
    pub client: Client,
    /// Where the run is recorded and what the tracker did is said.
    pub host: Arc<dyn Host>,
    /// The value of the run's [`JOB_TAG`], which finds it again.
    pub key: String,
    /// The run recorded earlier, if any.
    pub known: Option<TrackingRun>,
    /// Experiment, run name and the caller's tags.
    pub mlflow: MlflowIntegration,
    /// The run's params (every hyperparameter).
    pub params: Vec<(String, String)>,
    /// The run's tags ([`JOB_TAG`] among them).
    pub tags: Vec<(String, String)>,
    /// How long the tracker may go on after the attempt ends, catching up.
    pub close_within: Duration,
}

/// The worker's end of a tracker.
pub(crate) struct Tracker {
    events: mpsc::Sender<TrainEvent>,
    end: oneshot::Sender<Option<JobStatus>>,
    dropped: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Tracker {
    /// Starts the task.
    pub(crate) fn start(setup: Setup) -> Self {
        let (events, rx) = mpsc::channel(CHANNEL);
        let (end, end_rx) = oneshot::channel();
        let dropped = Arc::new(AtomicU64::new(0));
        let task = Task {
            setup,
            run: None,
            params_due: false,
            pending: VecDeque::new(),
            through: HashMap::new(),
            sent: 0,
            overflow: 0,
            dropped: dropped.clone(),
            error: None,
            next_try: Instant::now(),
            pause: FLUSH_EVERY,
        };
        let task = tokio::spawn(task.run(rx, end_rx));
        Self {
            events,
            end,
            dropped,
            task,
        }
    }

    /// Passes on a trainer event, never waiting.
    pub(crate) fn observe(&self, event: &TrainEvent) {
        let points = match event {
            TrainEvent::Step(_) | TrainEvent::Eval(_) => 3,
            TrainEvent::Resumed { history, .. } => 3 * (history.steps.len() + history.evals.len()),
            _ => return,
        };
        if self.events.try_send(event.clone()).is_err() {
            self.dropped.fetch_add(points as u64, Ordering::Relaxed);
        }
    }

    /// The attempt ended: with the job's final status, or `None` when the
    /// job goes on (queued again, handed back, taken by another node). The
    /// task ends within its `close_within`; nobody need wait for it.
    pub(crate) fn finish(self, status: Option<JobStatus>) -> JoinHandle<()> {
        let _ = self.end.send(status);
        self.task
    }
}

struct Task {
    setup: Setup,
    run: Option<RunInfo>,
    /// The run has no params yet.
    params_due: bool,
    pending: VecDeque<Metric>,
    /// Per metric, the newest step logged or buffered.
    through: HashMap<&'static str, i64>,
    sent: u64,
    overflow: u64,
    dropped: Arc<AtomicU64>,
    /// The last failure, while the server is away.
    error: Option<String>,
    next_try: Instant,
    pause: Duration,
}

impl Task {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<TrainEvent>,
        mut end: oneshot::Receiver<Option<JobStatus>>,
    ) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        let status = loop {
            tokio::select! {
                Some(event) = rx.recv() => self.take(&event),
                _ = tick.tick() => self.flush().await,
                status = &mut end => break status.ok().flatten(),
            }
        };
        while let Ok(event) = rx.try_recv() {
            self.take(&event);
        }
        self.close(status).await;
    }

    /// Buffers an event's points (each metric's steps once, in order).
    fn take(&mut self, event: &TrainEvent) {
        match event {
            TrainEvent::Step(s) => self.step(s),
            TrainEvent::Eval(e) => self.eval(e),
            TrainEvent::Resumed { history, .. } => {
                history.steps.iter().for_each(|s| self.step(s));
                history.evals.iter().for_each(|e| self.eval(e));
            }
            _ => {}
        }
    }

    fn step(&mut self, s: &crate::train::StepLog) {
        let step = s.step as i64;
        self.push("train_loss", s.loss, step);
        self.push("learning_rate", s.learning_rate, step);
        self.push("grad_norm", s.grad_norm, step);
    }

    fn eval(&mut self, e: &crate::train::EvalLog) {
        let step = e.step as i64;
        self.push("eval_loss", e.metrics.loss, step);
        self.push("eval_accuracy", e.metrics.accuracy, step);
        self.push("eval_macro_f1", e.metrics.macro_f1, step);
    }

    fn push(&mut self, key: &'static str, value: f64, step: i64) {
        let through = self.through.entry(key).or_insert(-1);
        if step <= *through || !value.is_finite() {
            return;
        }
        *through = step;
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
            self.overflow += 1;
        }
        let timestamp = now_ms();
        self.pending.push_back(Metric {
            key,
            value,
            timestamp,
            step,
        });
    }

    /// Sends what is buffered (making or finding the run first), unless the
    /// server failed lately and its pause has not passed.
    async fn flush(&mut self) {
        if Instant::now() < self.next_try {
            return;
        }
        match self.try_flush().await {
            Ok(()) => {
                if let Some(was) = self.error.take() {
                    let message =
                        format!("MLflow answers again (it failed with: {was}); caught up");
                    self.say(Level::Info, message, TrackingData::mlflow()).await;
                }
                self.pause = FLUSH_EVERY;
            }
            Err(e) => {
                if self.error.is_none() {
                    let message = format!(
                        "MLflow did not take the run's data: {e}; the job goes on and the \
                         points wait (up to {MAX_PENDING}) to be sent again"
                    );
                    let data = TrackingData {
                        error: Some(e.0.clone()),
                        ..TrackingData::mlflow()
                    };
                    self.say(Level::Warning, message, data).await;
                }
                self.error = Some(e.0);
                self.next_try = Instant::now() + self.pause;
                self.pause = (self.pause * 2).min(MAX_PAUSE);
            }
        }
    }

    async fn try_flush(&mut self) -> Result<(), MlflowError> {
        let run_id = match &self.run {
            Some(run) => run.run_id.clone(),
            None => self.open_run().await?,
        };
        let client = &self.setup.client;
        if self.params_due {
            for chunk in self.setup.params.chunks(100) {
                client.log_batch(&run_id, &[], chunk, &[]).await?;
            }
            self.params_due = false;
        }
        while !self.pending.is_empty() {
            let n = self.pending.len().min(1000);
            let batch: Vec<Metric> = self.pending.iter().take(n).cloned().collect();
            client.log_batch(&run_id, &batch, &[], &[]).await?;
            self.pending.drain(..n);
            self.sent += n as u64;
        }
        Ok(())
    }

    /// Finds the job's run (recorded on the job, or tagged with its id: a
    /// retry, or another node, resumes it) or makes it; records it on the job.
    async fn open_run(&mut self) -> Result<String, MlflowError> {
        let client = &self.setup.client;
        let found = match &self.setup.known {
            Some(t) => Some(t.run_id.clone()),
            None => {
                let experiment = client.experiment_id(&self.setup.mlflow.experiment).await?;
                let tagged = client
                    .find_run(&experiment, JOB_TAG, &self.setup.key)
                    .await?;
                match tagged {
                    Some(run) => Some(run.run_id),
                    None => {
                        let name = self.setup.mlflow.run_name.clone();
                        let name = name.unwrap_or_else(|| self.setup.key.clone());
                        let run = client
                            .create_run(&experiment, &name, &self.setup.tags)
                            .await?;
                        self.params_due = true;
                        self.adopt(run.clone(), false).await;
                        return Ok(run.run_id);
                    }
                }
            }
        };
        let run_id = found.expect("found or returned");
        let (run, logged, has_params) = client.get_run(&run_id).await?;
        client.set_status(&run_id, "RUNNING").await?;
        self.params_due = !has_params;
        for (key, step) in logged {
            let Some(k) = super::METRIC_KEYS.iter().copied().find(|k| *k == key) else {
                continue;
            };
            let through = self.through.entry(k).or_insert(-1);
            *through = (*through).max(step);
            self.pending.retain(|m| m.key != k || m.step > step);
        }
        self.adopt(run, true).await;
        Ok(run_id)
    }

    /// Uses `run` from now on, records it on the job and says so.
    async fn adopt(&mut self, run: RunInfo, resumed: bool) {
        let url = self.setup.client.run_url(&run);
        let tracking = TrackingRun {
            run_id: run.run_id.clone(),
            experiment_id: run.experiment_id.clone(),
            url: url.clone(),
        };
        self.setup.host.record(&tracking).await;
        let verb = if resumed { "resumed" } else { "created" };
        let message = format!("MLflow run {} {verb}: {url}", run.run_id);
        let data = TrackingData {
            run_id: Some(run.run_id.clone()),
            experiment_id: Some(run.experiment_id.clone()),
            url: Some(url),
            resumed: Some(resumed),
            ..TrackingData::mlflow()
        };
        self.run = Some(run);
        self.say(Level::Info, message, data).await;
    }

    /// Catches up, then (when the job ended) the artifacts and final status.
    async fn close(mut self, status: Option<JobStatus>) {
        let deadline = Instant::now() + self.setup.close_within;
        let mut last = self.try_flush().await;
        self.pause = self.pause.min(CLOSE_PAUSE);
        while last.is_err() && Instant::now() + self.pause < deadline {
            tokio::time::sleep(self.pause).await;
            self.pause = (self.pause * 2).min(CLOSE_PAUSE);
            last = self.try_flush().await;
        }
        let mut trouble: Vec<String> = last.err().map(|e| e.0).into_iter().collect();
        if let (Some(status), Some(run)) = (status, self.run.clone()) {
            if let Err(e) = self.finish_run(status, &run).await {
                trouble.push(e.0);
            }
        }
        let dropped = self.dropped.load(Ordering::Relaxed) + self.overflow;
        let unsent = self.pending.len() as u64;
        if dropped + unsent > 0 || !trouble.is_empty() {
            let message = format!(
                "MLflow: {unsent} metric points not sent and {dropped} dropped; {}",
                if trouble.is_empty() {
                    "no error".into()
                } else {
                    trouble.join("; ")
                }
            );
            let data = TrackingData {
                sent: Some(self.sent),
                unsent: Some(unsent),
                dropped: Some(dropped),
                errors: Some(trouble),
                ..TrackingData::mlflow()
            };
            self.say(Level::Warning, message, data).await;
        }
    }

    /// Uploads the artifacts, sets the final status.
    async fn finish_run(&self, status: JobStatus, run: &RunInfo) -> Result<(), MlflowError> {
        let client = &self.setup.client;
        for (name, bytes) in self.setup.host.artifacts(status).await {
            client
                .upload_artifact(&run.artifact_uri, name, bytes)
                .await?;
        }
        let final_status = match status {
            JobStatus::Succeeded => "FINISHED",
            JobStatus::Cancelled => "KILLED",
            _ => "FAILED",
        };
        client.set_status(&run.run_id, final_status).await
    }

    async fn say(&self, level: Level, message: String, data: TrackingData) {
        self.setup.host.say(level, message, data).await;
    }
}
