//! The training thread's side of a job: read the datasets, load the base
//! model, train (resuming from the newest checkpoint that loads), export the
//! model and build its classifier — all synchronous, on a dedicated OS thread.
//! The trainer's events go to the async side over a channel; a shared flag
//! stops the trainer.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use candle_core::Device;
use tokio::sync::mpsc::UnboundedSender;

use crate::data::{Dataset, DatasetError, DatasetFormat, ParseOptions};
use crate::infer::{Classifier, ServedModel};
use crate::model::{self, LoadOptions, ModelError, ModelSource};
use crate::train::{
    self, EvalMetrics, Finish, Hyperparameters, Observer, Provenance, Resume, TrainError,
    TrainEvent, TrainSpec,
};

/// Everything the thread needs, owned.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The model id to export under.
    pub model_id: String,
    /// Where the base model comes from.
    pub base_model: ModelSource,
    /// The base model and datasets as named by the user, for the model card.
    pub provenance: Provenance,
    /// Normalised training data.
    pub train_path: PathBuf,
    /// Normalised evaluation data.
    pub eval_path: Option<PathBuf>,
    /// The training dataset's class names.
    pub labels: Vec<String>,
    /// The run's settings.
    pub hyperparameters: Hyperparameters,
    /// Where the job's checkpoints go (and are resumed from).
    pub checkpoint_dir: PathBuf,
    /// Where the model is exported.
    pub model_dir: PathBuf,
    /// Where to train.
    pub device: Device,
}

/// What the thread sends.
#[derive(Debug)]
pub(crate) enum Msg {
    /// A trainer event.
    Event(TrainEvent),
    /// The end of the run.
    Done(Result<Executed, JobError>),
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JobError {
    /// The job cannot be planned (its dataset is gone, say).
    #[error("{0}")]
    Plan(String),
    /// A stored dataset could not be read.
    #[error("reading {}: {source}", path.display())]
    Data {
        /// The dataset's file.
        path: PathBuf,
        /// Why.
        source: DatasetError,
    },
    /// The base model did not load.
    #[error("loading the base model {source_name}: {source}")]
    BaseModel {
        /// The base model as named.
        source_name: String,
        /// Why.
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
    Serve(ModelError),
    /// The training thread could not start, or died.
    #[error("the training thread {0}")]
    Thread(String),
}

impl JobError {
    /// Whether retrying cannot help: bad data or hyperparameters, a base model
    /// that is not a usable GPT-2. Disk, network and device trouble may pass.
    pub(crate) fn is_permanent(&self) -> bool {
        match self {
            Self::Plan(_) => true,
            Self::Data { source, .. } => !matches!(source, DatasetError::Read { .. }),
            Self::BaseModel { source, .. } => {
                !matches!(source, ModelError::Hub(_) | ModelError::Io { .. })
            }
            Self::Train(e) => matches!(e, TrainError::Hyperparameter(_) | TrainError::Data(_)),
            Self::Export(_) | Self::Serve(_) | Self::Thread(_) => false,
        }
    }
}

/// A finished run.
#[derive(Debug)]
pub(crate) struct Executed {
    /// How it ended.
    pub finish: Finish,
    /// The exported model, ready to serve (absent when stopped).
    pub model: Option<Arc<ServedModel>>,
    /// The last evaluation.
    pub final_metrics: Option<EvalMetrics>,
    /// The step of the best checkpoint (by `metric_for_best_model`), if any.
    pub best_step: Option<usize>,
}

struct ChannelObserver {
    tx: UnboundedSender<Msg>,
    stop: Arc<AtomicBool>,
}

impl Observer for ChannelObserver {
    fn on_event(&mut self, event: &TrainEvent) {
        let _ = self.tx.send(Msg::Event(event.clone()));
    }

    fn should_stop(&mut self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Runs the plan to its end, sending events and finally [`Msg::Done`].
pub(crate) fn run(plan: Plan, tx: UnboundedSender<Msg>, stop: Arc<AtomicBool>) {
    let result = execute(&plan, &tx, &stop);
    let _ = tx.send(Msg::Done(result));
}

fn execute(
    plan: &Plan,
    tx: &UnboundedSender<Msg>,
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
    let outcome = train::run(spec, &mut observer)?;
    if outcome.finish == Finish::Stopped || stop.load(Ordering::Relaxed) {
        return Ok(Executed {
            finish: Finish::Stopped,
            model: None,
            final_metrics: outcome.final_metrics,
            best_step: None,
        });
    }
    outcome
        .export(&plan.model_dir, &plan.provenance)
        .map_err(JobError::Export)?;
    let classifier = Classifier::new(&outcome.model(), None).map_err(JobError::Serve)?;
    Ok(Executed {
        finish: outcome.finish,
        model: Some(Arc::new(ServedModel {
            id: plan.model_id.clone(),
            classifier,
        })),
        final_metrics: outcome.final_metrics,
        best_step: outcome.best_step,
    })
}
