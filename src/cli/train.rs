//! `tuneserve train`: the recipe from the command line, with a progress bar, a
//! metrics file and the final model exported in Hugging Face's layout.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::peak_rss_mib;
use super::train_tracking::{Observed, Tracking};
use crate::data::{load_hub_split, Dataset, ParseOptions};
use crate::hub::{HubRepo, RepoKind};
use crate::model::{load, parse_device, LoadOptions, ModelSource};
use crate::store::JobStatus;
use crate::train::{
    self, EvalMetrics, Hyperparameters, Observer, Provenance, Resume, StepLog, TrainEvent,
    TrainOutcome,
};

/// Arguments of `train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Base model: folder (either Hub layout) or Hub id (`gpt2`, `distilgpt2`, `owner/name[@rev]`).
    #[arg(long, env = "TUNESERVE_MODEL")]
    pub model: String,
    /// Training data: a JSONL/CSV file, or a Hub dataset `owner/name[:split]` (split `train`).
    #[arg(long, env = "TUNESERVE_TRAIN")]
    pub train: String,
    /// Evaluation data, as --train (Hub split default `test`).
    #[arg(long, env = "TUNESERVE_EVAL")]
    pub eval: Option<String>,
    /// Drop rows with empty text instead of rejecting the file (the Kaggle CSV has one).
    #[arg(long, env = "TUNESERVE_DROP_EMPTY_TEXT")]
    pub drop_empty_text: bool,
    /// Output folder: `model/` (HF layout), `checkpoints/`, `metrics.json`.
    #[arg(long, env = "TUNESERVE_OUT")]
    pub out: PathBuf,
    /// Continue from this checkpoint folder (`OUT/checkpoints/step-N`).
    #[arg(long, env = "TUNESERVE_RESUME_FROM")]
    pub resume_from: Option<PathBuf>,
    /// `cpu` or `cuda:N`.
    #[arg(long, default_value = "cpu", env = "TUNESERVE_DEVICE")]
    pub device: String,
    /// An MLflow tracking server to log the run to (`http://HOST:5000`): every
    /// hyperparameter, the metrics at their steps, the model card and
    /// metrics.json; the run is recorded in OUT/mlflow-run.json, and a
    /// --resume-from into the same OUT continues it.
    #[arg(long, env = "TUNESERVE_MLFLOW_TRACKING_URI")]
    pub mlflow_tracking_uri: Option<String>,
    /// The MLflow experiment (made when missing).
    #[arg(long, env = "TUNESERVE_MLFLOW_EXPERIMENT", default_value = "tuneserve")]
    pub mlflow_experiment: String,
    /// The MLflow run's name [default: `train:` and the output folder].
    #[arg(long, env = "TUNESERVE_MLFLOW_RUN_NAME")]
    pub mlflow_run_name: Option<String>,
    /// Hyperparameters: the flags under "Hyperparameters" (added from the
    /// hyperparameters' definition, see `hyperparameter_flags`).
    #[arg(skip)]
    pub hyperparameters: Hyperparameters,
}

fn read_dataset(spec: &str, default_split: &str, opts: &ParseOptions) -> anyhow::Result<Dataset> {
    let path = Path::new(spec);
    if path.is_file() {
        return Dataset::from_path(path, None, opts).with_context(|| format!("reading {spec}"));
    }
    let (repo, split) = spec.split_once(':').unwrap_or((spec, default_split));
    load_hub_split(repo, split, opts)
        .with_context(|| format!("`{spec}` is not a file; as a Hub dataset"))
}

/// What the model card says the model came from: the base model and data as
/// given, and their Hub ids where they are on the Hub.
fn provenance(args: &TrainArgs) -> Provenance {
    let specs = || std::iter::once(&args.train).chain(&args.eval);
    let mut hub_datasets: Vec<String> = specs().filter_map(|s| hub_dataset(s)).collect();
    hub_datasets.dedup(); // the train and test splits of one repository
    let source = args.model.parse::<ModelSource>().ok();
    Provenance {
        base_model: args.model.clone(),
        hub_base_model: source.and_then(|s| s.hub_id().map(str::to_string)),
        datasets: specs().cloned().collect(),
        hub_datasets,
    }
}

/// The Hub dataset id (`owner/name`) a `--train`/`--eval` spec names; `None`
/// for a file.
fn hub_dataset(spec: &str) -> Option<String> {
    if Path::new(spec).is_file() {
        return None;
    }
    let repo = spec.split_once(':').map_or(spec, |(repo, _)| repo);
    HubRepo::parse(repo, RepoKind::Dataset).map(|r| r.id)
}

/// Reports progress: a bar on a terminal, plain lines (one per logging window,
/// evaluation and checkpoint, with an ETA) when the output goes to a file.
struct Progress {
    /// `None` when stdout is not a terminal.
    bar: Option<ProgressBar>,
    labels: Vec<String>,
    started: Instant,
    start_step: usize,
    total_steps: usize,
}

impl Progress {
    fn new(labels: Vec<String>) -> Self {
        let bar = std::io::stdout().is_terminal().then(|| {
            let template = "{bar:30} {pos}/{len} steps | {msg} | {elapsed} elapsed, ETA {eta}";
            let style = ProgressStyle::with_template(template).expect("a valid template");
            ProgressBar::new(0).with_style(style)
        });
        Self {
            bar,
            labels,
            started: Instant::now(),
            start_step: 0,
            total_steps: 0,
        }
    }

    /// A line above the bar, or on stdout.
    fn say(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => println!("{line}"),
        }
    }

    fn eval_line(&self, step: usize, m: &EvalMetrics) -> String {
        let per_class: Vec<String> = self
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{l} P {:.3} R {:.3}", m.precision[i], m.recall[i]))
            .collect();
        format!(
            "eval @ step {step}: accuracy {:.4}, macro-F1 {:.4}, loss {:.4} ({})",
            m.accuracy,
            m.macro_f1,
            m.loss,
            per_class.join("; ")
        )
    }

    fn step(&self, log: &StepLog) {
        let summary = format!(
            "loss {:.4} | lr {:.2e} | {:.0} tok/s",
            log.loss, log.learning_rate, log.tokens_per_second
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(log.step as u64);
                bar.set_message(summary);
            }
            None => {
                let done = (log.step - self.start_step).max(1) as f64;
                let left = self.total_steps.saturating_sub(log.step) as f64;
                let eta = self.started.elapsed().as_secs_f64() / done * left;
                let total = self.total_steps;
                println!("step {}/{total}: {summary} | ETA {eta:.0} s", log.step);
            }
        }
    }
}

impl Observer for Progress {
    fn on_event(&mut self, event: &TrainEvent) {
        match event {
            TrainEvent::Started {
                total_steps,
                start_step,
                train_examples,
                eval_examples,
                ..
            } => {
                (self.start_step, self.total_steps) = (*start_step, *total_steps);
                self.started = Instant::now();
                if let Some(bar) = &self.bar {
                    bar.set_length(*total_steps as u64);
                    bar.set_position(*start_step as u64);
                }
                self.say(format!(
                    "training on {train_examples} examples, evaluating on {eval_examples}, \
                     {total_steps} optimizer steps (from step {start_step})"
                ));
            }
            TrainEvent::Step(log) => self.step(log),
            TrainEvent::Eval(e) => self.say(self.eval_line(e.step, &e.metrics)),
            TrainEvent::Checkpoint { path, .. } => {
                self.say(format!("checkpoint {}", path.display()))
            }
            TrainEvent::CheckpointSkipped { path, reason } => {
                self.say(format!("checkpoint {} skipped: {reason}", path.display()))
            }
            TrainEvent::Resumed { path, .. } => {
                self.say(format!("resuming from {}", path.display()))
            }
            TrainEvent::EarlyStopped { step } => self.say(format!("early stopping at step {step}")),
            TrainEvent::CheckpointRemoved { .. } => {}
        }
    }
}

/// Runs `train`.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let h = &args.hyperparameters;
    h.validate()?;
    let opts = ParseOptions {
        drop_empty_text: args.drop_empty_text,
        ..ParseOptions::default()
    };
    let train_set = read_dataset(&args.train, "train", &opts)?;
    let eval_opts = ParseOptions {
        labels: Some(&train_set.labels),
        ..opts
    };
    let eval_set = args
        .eval
        .as_deref()
        .map(|e| read_dataset(e, "test", &eval_opts))
        .transpose()?;
    let source: ModelSource = args.model.parse()?;
    let load_opts = LoadOptions {
        labels: Some(train_set.labels.clone()),
        head_seed: h.seed,
        device: parse_device(&args.device).map_err(anyhow::Error::msg)?,
    };
    let model = load(&source, &load_opts).with_context(|| format!("loading model {source}"))?;
    let mut progress = Progress::new(train_set.labels.clone());
    let started = Instant::now();
    let resume = match &args.resume_from {
        Some(dir) => Resume::From(dir.clone()),
        None => Resume::No,
    };
    let spec = train::TrainSpec {
        model,
        train: &train_set.examples,
        eval: eval_set.as_ref().map(|d| d.examples.as_slice()),
        hyperparameters: h,
        checkpoint_dir: args.out.join("checkpoints"),
        resume,
    };
    let tracking = Tracking::start(&args)?;
    let mut observed = Observed {
        inner: &mut progress,
        tracking: tracking.as_ref(),
    };
    let outcome = match train::run(spec, &mut observed) {
        Ok(outcome) => outcome,
        Err(e) => {
            if let Some(t) = tracking {
                t.finish(JobStatus::Failed);
            }
            return Err(e.into());
        }
    };
    let runtime = started.elapsed().as_secs_f64();
    if let Some(bar) = &progress.bar {
        bar.finish();
    }
    let model_dir = args.out.join("model");
    let provenance = provenance(&args);
    outcome.export(&model_dir, &provenance)?;
    let metrics_path = args.out.join("metrics.json");
    let metrics = metrics_json(&outcome, runtime, &train_set.labels);
    std::fs::write(&metrics_path, serde_json::to_string_pretty(&metrics)?)?;
    let tokens = outcome.history.steps.last().map_or(0, |s| s.tokens);
    eprintln!(
        "{:?} after {} steps in {runtime:.1} s ({:.0} tokens/s); model in {}, metrics in {}",
        outcome.finish,
        outcome.step,
        tokens as f64 / runtime,
        model_dir.display(),
        metrics_path.display()
    );
    if let Some(t) = tracking {
        t.finish(JobStatus::Succeeded);
    }
    Ok(())
}

/// `metrics.json`: how the run ended, its timing (optimizer steps and
/// evaluations apart), the baseline and final evaluations, and its history.
fn metrics_json(outcome: &TrainOutcome, runtime: f64, labels: &[String]) -> serde_json::Value {
    let tokens = outcome.history.steps.last().map_or(0, |s| s.tokens);
    let t = &outcome.timing;
    json!({
        "finish": outcome.finish,
        "steps": outcome.step,
        "train_runtime_s": runtime,
        "timing": {
            "train_s": t.train_seconds,
            "eval_s": t.eval_seconds,
            "checkpoint_s": t.checkpoint_seconds,
            "steps_run": t.steps,
            "seconds_per_step": t.train_seconds / t.steps.max(1) as f64,
        },
        "train_tokens": tokens,
        "train_tokens_per_s": tokens as f64 / runtime,
        "baseline": outcome.history.evals.first().map(|e| &e.metrics),
        "final": outcome.final_metrics,
        "best_checkpoint": outcome.best_checkpoint,
        "peak_rss_mib": peak_rss_mib(),
        "hyperparameters": outcome.hyperparameters,
        "labels": labels,
        "history": outcome.history,
    })
}
