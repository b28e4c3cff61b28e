//! `tuneserve train --mlflow-tracking-uri`: the run logged to MLflow as the
//! service's jobs are (see [`crate::integrations::mlflow`]): every
//! hyperparameter, the per-step and per-evaluation metrics, the final status,
//! the model card and `metrics.json`. The run is recorded in
//! `OUT/mlflow-run.json` (and tagged with the output folder), so a
//! `--resume-from` into the same folder continues it; what the tracker did
//! goes to stderr. The tracker runs on a small runtime of its own, off the
//! training thread; at the end the command waits at most
//! [`CLOSE_WITHIN`] for it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt as _;

use super::train::TrainArgs;
use crate::integrations::mlflow::client::Client;
use crate::integrations::mlflow::tracker::{Host, Setup, Tracker};
use crate::integrations::mlflow::{params, run_tags};
use crate::integrations::{is_http_url, MlflowIntegration, TrackingRun};
use crate::store::event_data::TrackingData;
use crate::store::{JobStatus, Level};
use crate::train::{Observer, TrainEvent};

/// How long the command waits for the tracker after training.
const CLOSE_WITHIN: Duration = Duration::from_secs(30);

/// The run's tracker and the runtime it runs on.
pub(super) struct Tracking {
    runtime: tokio::runtime::Runtime,
    tracker: Tracker,
}

/// The output folder, as a tracker's host.
struct OutFolder {
    out: PathBuf,
}

impl OutFolder {
    fn record_path(&self) -> PathBuf {
        self.out.join("mlflow-run.json")
    }
}

impl Host for OutFolder {
    fn record<'a>(&'a self, run: &'a TrackingRun) -> BoxFuture<'a, ()> {
        async move {
            let text = serde_json::to_string_pretty(run).unwrap_or_default();
            if let Err(e) = std::fs::write(self.record_path(), text) {
                eprintln!("mlflow: writing {}: {e}", self.record_path().display());
            }
        }
        .boxed()
    }

    fn say(&self, _level: Level, message: String, _data: TrackingData) -> BoxFuture<'_, ()> {
        async move { eprintln!("mlflow: {message}") }.boxed()
    }

    fn artifacts(&self, _status: JobStatus) -> BoxFuture<'_, Vec<(&'static str, Vec<u8>)>> {
        async move {
            let files = [
                ("metrics.json", "metrics.json"),
                ("README.md", "model/README.md"),
            ];
            let read = |(name, path): (&'static str, &str)| {
                std::fs::read(self.out.join(path))
                    .ok()
                    .map(|bytes| (name, bytes))
            };
            files.into_iter().filter_map(read).collect()
        }
        .boxed()
    }
}

impl Tracking {
    /// The tracker `args` ask for (`None` without `--mlflow-tracking-uri`).
    pub(super) fn start(args: &TrainArgs) -> anyhow::Result<Option<Self>> {
        let Some(uri) = args.mlflow_tracking_uri.as_deref() else {
            return Ok(None);
        };
        anyhow::ensure!(
            is_http_url(uri),
            "--mlflow-tracking-uri: `{uri}` is not an http:// or https:// URL"
        );
        std::fs::create_dir_all(&args.out)?;
        let host = OutFolder {
            out: args.out.clone(),
        };
        let known = std::fs::read_to_string(host.record_path())
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
        let key = format!("train:{}", absolute(&args.out).display());
        let mlflow = MlflowIntegration {
            experiment: args.mlflow_experiment.clone(),
            run_name: args.mlflow_run_name.clone(),
            tags: Default::default(),
        };
        let mut extra = vec![("train_dataset".to_string(), args.train.clone())];
        extra.extend(args.eval.clone().map(|e| ("eval_dataset".to_string(), e)));
        let datasets = std::iter::once(&args.train).chain(&args.eval);
        let datasets: Vec<&str> = datasets.map(String::as_str).collect();
        extra.push(("datasets".to_string(), datasets.join(", ")));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let _entered = runtime.enter();
        let tracker = Tracker::start(Setup {
            client: Client::new(uri)?,
            host: Arc::new(host),
            tags: run_tags(&key, &args.model, extra, &mlflow),
            key,
            known,
            mlflow,
            params: params(&args.hyperparameters),
            close_within: CLOSE_WITHIN,
        });
        Ok(Some(Self { runtime, tracker }))
    }

    /// Hands the tracker a trainer event (never waits).
    pub(super) fn observe(&self, event: &TrainEvent) {
        self.tracker.observe(event);
    }

    /// Ends the run with `status`, waiting for the tracker to send what is left.
    pub(super) fn finish(self, status: JobStatus) {
        let task = self.tracker.finish(Some(status));
        let _ = self.runtime.block_on(task);
    }
}

/// `path` made absolute (it may not exist yet).
fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| std::path::absolute(path).unwrap_or_default())
}

/// The command's progress bar with the tracker beside it.
pub(super) struct Observed<'a, O: Observer> {
    /// The progress bar.
    pub inner: &'a mut O,
    /// The tracker, if any.
    pub tracking: Option<&'a Tracking>,
}

impl<O: Observer> Observer for Observed<'_, O> {
    fn on_event(&mut self, event: &TrainEvent) {
        if let Some(t) = self.tracking {
            t.observe(event);
        }
        self.inner.on_event(event);
    }

    fn should_stop(&mut self) -> bool {
        self.inner.should_stop()
    }
}
