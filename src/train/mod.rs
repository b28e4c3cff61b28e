//! Fine-tuning: the Hugging Face `Trainer`'s maths on a GPT-2 classifier.
//!
//! A library with no HTTP or SQL in it. [`run`] (or a [`Trainer`] driven step
//! by step) takes a loaded model, labelled examples and [`Hyperparameters`],
//! trains on the calling thread (run it on a thread of its own), reports
//! progress through an [`Observer`], writes resumable checkpoints (`step-N/`)
//! into a folder and resumes from them ([`Resume`]); [`TrainOutcome::export`]
//! writes the trained model for Hugging Face.
//!
//! Determinism: the data order of epoch `e` is a function of `(seed, e)` and the
//! dropout masks of step `s` of `(seed, s)`, so a run resumed from step `k`
//! replays exactly what an uninterrupted run would have done (for a given number
//! of threads).

mod batches;
mod checkpoint;
mod clip;
mod hyperparams;
mod metrics;
mod optim;
mod resume;
mod schedule;
mod setup;
mod step;
mod trainer;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use checkpoint::list_checkpoints;
pub use clip::{clip_scale, global_norm};
pub use hyperparams::{
    BestMetric, Bound, Hyperparameters, InvalidHyperparameter, LrScheduler, Method, Strategy,
};
pub use metrics::EvalMetrics;
pub use optim::{AdamConfig, AdamW};
pub use resume::Resume;
pub use setup::evaluation_network;
pub use step::{step_gradients, MicroBatch, StepTiming};
pub use trainer::{run, TrainSpec, Trainer};

/// Training failures.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The hyperparameters are out of range.
    #[error(transparent)]
    Hyperparameter(#[from] InvalidHyperparameter),
    /// The data cannot be trained on (for example, no examples, unknown label).
    #[error("data: {0}")]
    Data(String),
    /// A tensor operation failed (out of device memory, a driver error, shapes that do
    /// not fit); whether a retry helps is unknown.
    #[error("training step failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// Tokenization failed.
    #[error(transparent)]
    Tokenizer(#[from] crate::data::TokenizerError),
    /// Building, loading or saving the model failed.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// A checkpoint could not be read (or is not one this run can resume).
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// Writing checkpoint `step-{step}` failed.
    #[error("writing checkpoint step-{step}: {source}")]
    WritingCheckpoint {
        /// The optimizer step it was for.
        step: usize,
        /// What failed (the model, optimizer or state file); `step-{step}` was not put in
        /// place.
        source: Box<TrainError>,
    },
    /// A file could not be written or read.
    #[error(transparent)]
    Io(#[from] crate::atomic::IoError),
    /// The loss became NaN or infinite.
    #[error("loss is not finite at step {step} (try a lower learning_rate)")]
    NonFiniteLoss {
        /// The optimizer step (1-based) being taken; nothing of it was applied.
        step: usize,
    },
}

impl TrainError {
    /// Whether retrying the run can help (see [`crate::fault`]).
    pub fn cause(&self) -> crate::fault::Cause {
        use crate::fault::Cause;
        match self {
            Self::Hyperparameter(_) | Self::Data(_) | Self::NonFiniteLoss { .. } => {
                Cause::Permanent
            }
            Self::Io(e) => crate::fault::io_cause(&e.source),
            Self::Model(e) => e.cause(),
            Self::WritingCheckpoint { source, .. } => source.cause(),
            Self::Candle(_) | Self::Tokenizer(_) | Self::Checkpoint(_) => Cause::Unknown,
        }
    }
}

/// The training loss of one logging window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepLog {
    /// Optimizer step (1-based) at the end of the window.
    pub step: usize,
    /// Fractional epoch at that step.
    pub epoch: f64,
    /// Mean training loss over the window's steps (each the mean of its micro-batches).
    pub loss: f64,
    /// Learning rate used at `step`.
    pub learning_rate: f64,
    /// Global gradient norm before clipping, at `step`.
    pub grad_norm: f64,
    /// Real (unpadded) training tokens seen so far.
    pub tokens: u64,
    /// Real tokens per second over the window.
    pub tokens_per_second: f64,
    /// Mean seconds per optimizer step over the window: forward, backward and
    /// update, evaluations and checkpoints excluded (0 in logs written before
    /// it was recorded).
    #[serde(default)]
    pub seconds_per_step: f64,
}

/// An evaluation at a step (step 0: the baseline before training).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalLog {
    /// Optimizer steps done when evaluated.
    pub step: usize,
    /// Fractional epoch.
    pub epoch: f64,
    /// Loss, accuracy, macro F1, per-class precision and recall, the confusion matrix.
    pub metrics: EvalMetrics,
    /// Seconds the evaluation took (0 in logs written before it was recorded).
    #[serde(default)]
    pub seconds: f64,
}

/// Progress reported while training.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    /// A checkpoint was skipped while looking for one to resume from.
    CheckpointSkipped {
        /// The `step-N` folder that does not load.
        path: PathBuf,
        /// Why it does not load (naming the file at fault).
        reason: String,
    },
    /// The run continues from a checkpoint; `history` is what the run logged
    /// up to it (steps and evaluations), so an observer that missed them (a new
    /// attempt of a job) can record them.
    Resumed {
        /// The `step-N` folder it resumes from.
        path: PathBuf,
        /// Its optimizer step; the run continues with the next one.
        step: usize,
        /// Logged steps and evaluations up to that step.
        history: History,
    },
    /// The run starts (or resumes) with this plan.
    Started {
        /// Optimizer steps of the whole run.
        total_steps: usize,
        /// Optimizer steps per epoch.
        steps_per_epoch: usize,
        /// Training examples.
        train_examples: usize,
        /// Evaluation examples (0 without an eval set).
        eval_examples: usize,
        /// The step a resumed run continues after (0 for a fresh run).
        start_step: usize,
    },
    /// A logging window ended: every `logging_steps` optimizer steps, and at the last.
    Step(StepLog),
    /// An evaluation finished: the baseline at step 0 of a fresh run, then as
    /// `eval_strategy` says (only with an eval set).
    Eval(EvalLog),
    /// A checkpoint was written (fsynced and renamed into place).
    Checkpoint {
        /// Step of the checkpoint.
        step: usize,
        /// The `step-N` folder under the run's checkpoint folder.
        path: PathBuf,
        /// The evaluation taken at that step, if one was.
        eval: Option<EvalMetrics>,
    },
    /// An old checkpoint was deleted under `save_total_limit`.
    CheckpointRemoved {
        /// Step of the checkpoint.
        step: usize,
        /// The `step-N` folder deleted.
        path: PathBuf,
    },
    /// Training stopped early: no improvement for `early_stopping_patience` evaluations.
    EarlyStopped {
        /// The last step taken; a checkpoint is written there.
        step: usize,
    },
}

/// Receives progress and may stop the run.
pub trait Observer {
    /// Called for each event, in order.
    fn on_event(&mut self, event: &TrainEvent);
    /// Polled once per optimizer step; `true` stops the run before its next step.
    fn should_stop(&mut self) -> bool {
        false
    }
}

/// An observer that ignores everything.
impl Observer for () {
    fn on_event(&mut self, _: &TrainEvent) {}
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// Every planned step ran.
    Completed,
    /// Early stopping ended the run.
    EarlyStopped,
    /// [`Observer::should_stop`] said so (in the service: a cancel, a shutdown, a lost
    /// lease).
    Stopped,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// How it ended.
    pub finish: Finish,
    /// The last optimizer step taken.
    pub step: usize,
    /// The weights after the last step (named as `model::parameter_shapes`);
    /// for an adapter, its frozen base with the trained head.
    pub weights: crate::model::Weights,
    /// The trained adapter (`method` `lora`).
    pub adapter: Option<crate::model::Adapter>,
    /// The model's configuration as trained (labels, dropout).
    pub config: crate::model::Gpt2Config,
    /// The starting model's tokenizer as loaded (the run's `max_length` and padding
    /// are not applied to it).
    pub tokenizer: crate::data::TextTokenizer,
    /// The last evaluation, if any.
    pub final_metrics: Option<EvalMetrics>,
    /// The checkpoint with the best `metric_for_best_model`, if any.
    pub best_checkpoint: Option<PathBuf>,
    /// The optimizer step of `best_checkpoint`.
    pub best_step: Option<usize>,
    /// Every logged step and evaluation of the run (a resumed run includes the
    /// history up to its checkpoint).
    pub history: History,
    /// Where this run's time went.
    pub timing: RunTiming,
    /// The hyperparameters the run used (the exported model card records them).
    pub hyperparameters: Hyperparameters,
}

/// Seconds a run spent in each kind of work (a resumed run counts its own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RunTiming {
    /// Optimizer steps this run took (a resumed run counts its own).
    pub steps: usize,
    /// Those steps: forward, backward and update.
    pub train_seconds: f64,
    /// Evaluations, the baseline included.
    pub eval_seconds: f64,
    /// Writing checkpoints.
    pub checkpoint_seconds: f64,
}

impl TrainOutcome {
    /// The trained model, ready to serve.
    pub fn model(&self) -> crate::model::LoadedModel {
        crate::model::LoadedModel {
            config: self.config.clone(),
            weights: self.weights.clone(),
            tokenizer: self.tokenizer.clone(),
            layout: crate::model::WeightLayout::Classifier,
            new_head: false,
            adapter: self.adapter.clone(),
            origin: None,
            packed: None,
        }
    }

    /// Writes the trained model to `dir` in Hugging Face's classifier layout,
    /// with a model card saying where it came from and how it was trained.
    pub fn export(&self, dir: &std::path::Path, from: &Provenance) -> Result<(), TrainError> {
        let card = crate::model::ModelCard {
            base_model: from.base_model.clone(),
            hub_base_model: from.hub_base_model.clone(),
            datasets: from.datasets.clone(),
            hub_datasets: from.hub_datasets.clone(),
            labels: self.config.labels.clone(),
            hyperparameters: serde_json::to_value(&self.hyperparameters).unwrap_or_default(),
            metrics: self
                .final_metrics
                .as_ref()
                .map(|m| serde_json::to_value(m).unwrap_or_default()),
            steps: self.step,
            adapter: self.adapter.is_some(),
        };
        let mut model = self.model();
        if let Some(adapter) = model.adapter.as_mut() {
            adapter.base.get_or_insert_with(|| from.base_model.clone());
        }
        crate::model::export(&model, dir, &card)?;
        Ok(())
    }
}

/// Where a trained model came from, for its model card.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// The base model as the user named it (Hub id or model name).
    pub base_model: String,
    /// Its Hub id (no revision) when it came from the Hub: the card's
    /// `base_model` metadata.
    pub hub_base_model: Option<String>,
    /// The training and evaluation data, as named when uploaded.
    pub datasets: Vec<String>,
    /// The Hub dataset ids they were imported from, once each: the card's
    /// `datasets` metadata.
    pub hub_datasets: Vec<String>,
}

/// The log of a run, kept in `trainer_state.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Training-loss windows.
    pub steps: Vec<StepLog>,
    /// Evaluations.
    pub evals: Vec<EvalLog>,
}
