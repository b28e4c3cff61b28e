//! The training thread's side of a job: read the datasets, load the base
//! model, resume from the newest checkpoint, train, export the model and build
//! its classifier — all synchronous, on a dedicated OS thread. Progress goes to
//! the async side over a channel; a shared flag stops the trainer.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use candle_core::Device;
use tokio::sync::mpsc::UnboundedSender;

use crate::data::{Dataset, DatasetFormat, ParseOptions};
use crate::infer::{Classifier, ServedModel};
use crate::model::{self, LoadOptions, LoadedModel, ModelError, ModelSource, WeightLayout};
use crate::train::{
    self, EvalMetrics, Finish, History, Hyperparameters, Observer, TrainError, TrainEvent,
    TrainSpec,
};

/// Everything the thread needs, owned.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The model id to export under.
    pub model_id: String,
    /// Base model (folder or Hub id).
    pub base_model: String,
    /// Normalised training data.
    pub train_path: PathBuf,
    /// Normalised evaluation data.
    pub eval_path: Option<PathBuf>,
    /// The training dataset's class names.
    pub labels: Vec<String>,
    /// The run's settings.
    pub hyperparameters: Hyperparameters,
    /// `data/jobs/{id}/checkpoints`.
    pub checkpoint_dir: PathBuf,
    /// `data/models/{model_id}`.
    pub model_dir: PathBuf,
    /// Where to train.
    pub device: Device,
}

/// What the thread sends.
#[derive(Debug)]
pub(crate) enum Msg {
    /// A trainer event.
    Event(TrainEvent),
    /// The logged steps and evaluations of the checkpoint a run resumes from, to
    /// record again: a worker that lost its lease may have written that
    /// checkpoint after the store stopped taking its metrics.
    Backfill(History),
    /// A note for the job log.
    Note(String),
    /// The end of the run.
    Done(Result<Executed, Failure>),
}

/// A failed run.
#[derive(Debug)]
pub(crate) struct Failure {
    /// What went wrong.
    pub message: String,
    /// Retrying cannot help (bad data or hyperparameters, a model that does not load).
    pub permanent: bool,
}

impl Failure {
    fn transient(message: impl std::fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            permanent: false,
        }
    }

    fn permanent(message: impl std::fmt::Display) -> Self {
        Self {
            message: message.to_string(),
            permanent: true,
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
) -> Result<Executed, Failure> {
    // The stored copies were validated at upload; read them with the same label map.
    let opts = ParseOptions {
        labels: Some(&plan.labels),
        ..ParseOptions::default()
    };
    let read = |p: &PathBuf| {
        Dataset::from_path(p, Some(DatasetFormat::Jsonl), &opts)
            .map(|d| d.examples)
            .map_err(|e| Failure::transient(format!("{}: {e}", p.display())))
    };
    let train_examples = read(&plan.train_path)?;
    let eval_examples = plan.eval_path.as_ref().map(read).transpose()?;
    let source: ModelSource = plan.base_model.parse().map_err(Failure::permanent)?;
    let opts = LoadOptions {
        labels: Some(plan.labels.clone()),
        head_seed: plan.hyperparameters.seed,
        device: plan.device.clone(),
    };
    let base = model::load(&source, &opts).map_err(|e| {
        let message = format!("loading {source}: {e}");
        match e {
            // The Hub or the disk may come back; a bad checkpoint will not.
            ModelError::Hub(_) | ModelError::Io { .. } => Failure::transient(message),
            _ => Failure::permanent(message),
        }
    })?;
    let resume_from = train::list_checkpoints(&plan.checkpoint_dir)
        .pop()
        .map(|(step, path)| {
            let _ = tx.send(Msg::Note(format!("resuming from checkpoint step-{step}")));
            if let Ok(state) = train::read_trainer_state(&path) {
                let _ = tx.send(Msg::Backfill(state.history));
            }
            path
        });
    let (config, tokenizer) = (base.config.clone(), base.tokenizer.clone());
    let spec = TrainSpec {
        model: base,
        train: &train_examples,
        eval: eval_examples.as_deref(),
        hyperparameters: &plan.hyperparameters,
        checkpoint_dir: plan.checkpoint_dir.clone(),
        resume_from,
    };
    let mut observer = ChannelObserver {
        tx: tx.clone(),
        stop: stop.clone(),
    };
    let outcome = train::run(spec, &mut observer).map_err(|e| match e {
        TrainError::Hyperparameter(_) | TrainError::Data(_) => Failure::permanent(e),
        other => Failure::transient(other),
    })?;
    if outcome.finish == Finish::Stopped || stop.load(Ordering::Relaxed) {
        return Ok(Executed {
            finish: Finish::Stopped,
            model: None,
            final_metrics: outcome.final_metrics,
        });
    }
    let trained = LoadedModel {
        config,
        weights: outcome.weights,
        tokenizer,
        layout: WeightLayout::Classifier,
        new_head: false,
    };
    model::save(
        &trained.config,
        &trained.weights,
        &trained.tokenizer,
        WeightLayout::Classifier,
        &plan.model_dir,
    )
    .map_err(|e| Failure::transient(format!("exporting the model: {e}")))?;
    let classifier = Classifier::new(&trained, None).map_err(Failure::transient)?;
    Ok(Executed {
        finish: outcome.finish,
        model: Some(Arc::new(ServedModel {
            id: plan.model_id.clone(),
            classifier,
        })),
        final_metrics: outcome.final_metrics,
    })
}

/// Loads a model folder (or Hub id) as a served model; blocking.
pub fn load_served(id: &str, source: &str, device: &Device) -> Result<ServedModel, String> {
    let source: ModelSource = source.parse().map_err(|e| format!("{e}"))?;
    let opts = LoadOptions {
        device: device.clone(),
        ..LoadOptions::default()
    };
    let loaded = model::load(&source, &opts).map_err(|e| format!("loading {source}: {e}"))?;
    let classifier = Classifier::new(&loaded, None).map_err(|e| e.to_string())?;
    Ok(ServedModel {
        id: id.to_string(),
        classifier,
    })
}
