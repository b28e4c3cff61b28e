//! The training thread's side of a job: read the datasets, load the base
//! model, train (resuming from the newest checkpoint that loads), export the
//! model and build its classifier — all synchronous, on a dedicated OS thread.
//! The trainer's events go to the async side over a channel; a shared flag
//! stops the trainer.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::Device;
use tokio::sync::mpsc::UnboundedSender;

use super::{Backoff, BaseModelError};
use crate::data::{Dataset, DatasetError, DatasetFormat, ParseOptions};
use crate::fault::Cause;
use crate::infer::{Classifier, InferError, Registry, ServedModel};
use crate::model::{self, LoadOptions, ModelError, ModelSource};
use crate::store::StoreError;
use crate::train::{
    self, EvalMetrics, Finish, Hyperparameters, Observer, Provenance, Resume, TrainError,
    TrainEvent, TrainSpec,
};

/// Everything the thread needs, owned.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The id the trained model will get (`model-…`, with the job's `suffix`), new for
    /// each attempt; `model_dir` is named after it.
    pub model_id: String,
    /// Where the base model comes from.
    pub base_model: ModelSource,
    /// The base model and datasets as named by the user, for the model card.
    pub provenance: Provenance,
    /// The training dataset's normalised JSONL copy.
    pub train_path: PathBuf,
    /// The evaluation dataset's normalised JSONL copy, if the job evaluates.
    pub eval_path: Option<PathBuf>,
    /// The training dataset's class names.
    pub labels: Vec<String>,
    /// The job's hyperparameters as stored (defaults filled in at submission).
    pub hyperparameters: Hyperparameters,
    /// Where the job's checkpoints go (and are resumed from).
    pub checkpoint_dir: PathBuf,
    /// Where the model is exported.
    pub model_dir: PathBuf,
    /// Where to train.
    pub device: Device,
    /// Where the trained model is served: `/classify`'s device, and the
    /// bases its adapters share.
    pub registry: Arc<Registry>,
    /// How long to wait between tries of an export that failed on a cause
    /// that may pass.
    pub backoff: Backoff,
}

/// What the thread sends.
#[derive(Debug)]
pub(crate) enum FromTrainer {
    /// A trainer event, for the worker to record (log, metrics, progress, checkpoints).
    Event(TrainEvent),
    /// Writing the model failed on a cause that may pass; it is tried again
    /// after `delay` (the trained weights wait in memory).
    ExportRetry {
        /// Why it failed, in words.
        error: String,
        /// How long until the next try.
        delay: Duration,
    },
    /// The last message, sent once however the run ended.
    Done(Result<Executed, JobError>),
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JobError {
    /// The store could not be asked what the job needs.
    #[error("reading the job's inputs from the database: {0}")]
    Store(#[from] StoreError),
    /// A dataset the job names was deleted.
    #[error("dataset `{0}` no longer exists")]
    DatasetGone(String),
    /// The base model's name does not resolve.
    #[error("base_model `{name}`: {source}")]
    BaseModelName {
        /// The job's `base_model`, as submitted.
        name: String,
        /// Why it does not resolve.
        source: BaseModelError,
    },
    /// A stored dataset could not be read.
    #[error("reading {}: {source}", path.display())]
    Data {
        /// The dataset's normalised JSONL copy in the data folder.
        path: PathBuf,
        source: DatasetError,
    },
    /// The base model did not load (files missing or damaged, not a GPT-2, the Hub out of
    /// reach); the [`ModelError`]'s cause decides whether a retry may help.
    #[error("loading the base model {source_name}: {source}")]
    BaseModel {
        /// The job's `base_model`, as submitted.
        source_name: String,
        source: ModelError,
    },
    /// Training failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// Writing the model failed.
    #[error("exporting the model: {0}")]
    Export(TrainError),
    /// The trained model could not be made ready to serve.
    #[error("preparing the model to serve: {0}")]
    Serve(InferError),
    /// The training thread could not start, or died.
    #[error("the training thread {0}")]
    Thread(String),
}

impl JobError {
    /// Whether retrying can help: bad data or hyperparameters, a base model
    /// that is not a usable GPT-2 never; disk, database, network and device
    /// trouble may pass (see [`crate::fault`]).
    pub(crate) fn cause(&self) -> Cause {
        match self {
            Self::Store(e) => e.cause(),
            Self::DatasetGone(_) => Cause::Permanent,
            Self::BaseModelName { source, .. } => match source {
                BaseModelError::Store(_) => Cause::Transient,
                BaseModelError::Unknown
                | BaseModelError::NotOnHub(_)
                | BaseModelError::Missing(_) => Cause::Permanent,
            },
            Self::Data { source, .. } => match source {
                DatasetError::Read { source, .. } => crate::fault::io_cause(source),
                _ => Cause::Permanent,
            },
            Self::BaseModel { source, .. } => source.cause(),
            Self::Train(e) | Self::Export(e) => e.cause(),
            Self::Serve(_) | Self::Thread(_) => Cause::Unknown,
        }
    }
}

/// A run that ended without an error: completed, stopped early, or stopped at the
/// worker's asking (then without a model).
#[derive(Debug)]
pub(crate) struct Executed {
    /// How it ended.
    pub finish: Finish,
    /// The exported model, ready to serve (absent when stopped).
    pub model: Option<Arc<ServedModel>>,
    /// The last evaluation's metrics: what `promote: if_better` compares and the model
    /// records; `None` when the job did not evaluate.
    pub final_metrics: Option<EvalMetrics>,
    /// The step of the best checkpoint (by `metric_for_best_model`), if any.
    pub best_step: Option<usize>,
}

struct ChannelObserver {
    tx: UnboundedSender<FromTrainer>,
    stop: Arc<AtomicBool>,
}

impl Observer for ChannelObserver {
    fn on_event(&mut self, event: &TrainEvent) {
        let _ = self.tx.send(FromTrainer::Event(event.clone()));
    }

    fn should_stop(&mut self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Runs the plan to its end, sending events and finally [`FromTrainer::Done`].
pub(crate) fn run(plan: Plan, tx: UnboundedSender<FromTrainer>, stop: Arc<AtomicBool>) {
    let result = execute(&plan, &tx, &stop);
    let _ = tx.send(FromTrainer::Done(result));
}

fn execute(
    plan: &Plan,
    tx: &UnboundedSender<FromTrainer>,
    stop: &Arc<AtomicBool>,
) -> Result<Executed, JobError> {
    // The stored copies were validated at upload; read them with the same label map.
    let opts = ParseOptions {
        labels: Some(&plan.labels),
        ..ParseOptions::default()
    };
    let read = |path: &PathBuf| {
        Dataset::from_path(path, Some(DatasetFormat::Jsonl), &opts)
            .map(|d| d.examples)
            .map_err(|source| JobError::Data {
                path: path.clone(),
                source,
            })
    };
    let train_examples = read(&plan.train_path)?;
    let eval_examples = plan.eval_path.as_ref().map(read).transpose()?;
    let opts = LoadOptions {
        labels: Some(plan.labels.clone()),
        head_seed: plan.hyperparameters.seed,
        device: plan.device.clone(),
    };
    let base = model::load(&plan.base_model, &opts).map_err(|source| JobError::BaseModel {
        source_name: plan.provenance.base_model.clone(),
        source,
    })?;
    let spec = TrainSpec {
        model: base,
        train: &train_examples,
        eval: eval_examples.as_deref(),
        hyperparameters: &plan.hyperparameters,
        checkpoint_dir: plan.checkpoint_dir.clone(),
        resume: Resume::Latest,
    };
    let mut observer = ChannelObserver {
        tx: tx.clone(),
        stop: stop.clone(),
    };
    // An adapter records its base where this node found it (the model's
    // `origin`), so it loads again from its folder alone.
    let outcome = train::run(spec, &mut observer)?;
    if outcome.finish == Finish::Stopped || stop.load(Ordering::Relaxed) {
        return Ok(Executed {
            finish: Finish::Stopped,
            model: None,
            final_metrics: outcome.final_metrics,
            best_step: None,
        });
    }
    export(plan, &outcome, tx, stop)?;
    Ok(Executed {
        finish: outcome.finish,
        model: Some(Arc::new(served(plan, &outcome).map_err(JobError::Serve)?)),
        final_metrics: outcome.final_metrics,
        best_step: outcome.best_step,
    })
}

/// The trained model, ready for `/classify`. An adapter is read back from its
/// exported folder (a few MB) onto the base the registry's adapters share, so
/// it joins their batches; a whole model moves to the serving device as it is.
fn served(plan: &Plan, outcome: &train::TrainOutcome) -> Result<ServedModel, InferError> {
    if plan.hyperparameters.method == train::Method::Lora {
        let source = ModelSource::Dir(plan.model_dir.clone());
        return plan.registry.load_blocking(&plan.model_id, &source);
    }
    let trained = outcome
        .model()
        .to_device(plan.registry.device())
        .and_then(|m| m.pack(plan.registry.precision()))?;
    Ok(ServedModel {
        id: plan.model_id.clone(),
        classifier: Classifier::new(&trained, None)?,
        base: None,
    })
}

/// Writes the trained model, trying again while the failure may pass (a
/// full disk): the trained weights exist only in memory, and giving up would
/// mean training them again. Stops trying once the worker asks the thread to
/// stop (a cancel, a shutdown, a lost lease).
fn export(
    plan: &Plan,
    outcome: &train::TrainOutcome,
    tx: &UnboundedSender<FromTrainer>,
    stop: &AtomicBool,
) -> Result<(), JobError> {
    let mut tries = 0;
    loop {
        let error = match outcome.export(&plan.model_dir, &plan.provenance) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if error.cause() != Cause::Transient || stop.load(Ordering::Relaxed) {
            return Err(JobError::Export(error));
        }
        let delay = plan.backoff.delay(tries);
        tries += 1;
        let error = error.to_string();
        let _ = tx.send(FromTrainer::ExportRetry { error, delay });
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return Err(JobError::Thread(
                    "stopped while the export waited to retry".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
