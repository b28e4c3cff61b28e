//! `tuneserve train`: the recipe from the command line, with a progress bar, a
//! metrics file and the final model exported in Hugging Face's layout.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::bench::peak_rss_mib;
use super::parse_device;
use crate::data::{load_hub_split, Dataset, ParseOptions};
use crate::model::{load, save, LoadOptions, ModelSource, WeightLayout};
use crate::train::{self, EvalMetrics, Hyperparameters, Observer, TrainEvent};

/// Arguments of `train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Base model: folder (either Hub layout) or Hub id (`gpt2`, `distilgpt2`, `owner/name[@rev]`).
    #[arg(long, env = "TUNESERVE_MODEL")]
    pub model: String,
    /// Training data: a JSONL/CSV file, or a Hub dataset `owner/name[:split]` (split `train`).
    #[arg(long)]
    pub train: String,
    /// Evaluation data, as --train (Hub split default `test`).
    #[arg(long)]
    pub eval: Option<String>,
    /// Drop rows with empty text instead of rejecting the file (the Kaggle CSV has one).
    #[arg(long)]
    pub drop_empty_text: bool,
    /// Output folder: `model/` (HF layout), `checkpoints/`, `metrics.json`.
    #[arg(long, env = "TUNESERVE_OUT")]
    pub out: PathBuf,
    /// Continue from this checkpoint folder (`OUT/checkpoints/step-N`).
    #[arg(long)]
    pub resume_from: Option<PathBuf>,
    /// `cpu` or `cuda:N`.
    #[arg(long, default_value = "cpu", env = "TUNESERVE_DEVICE")]
    pub device: String,
    /// Hyperparameters (DESIGN.md §3), with the service's defaults.
    #[command(flatten)]
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

/// Draws the progress bar and prints evaluations above it.
struct Progress {
    bar: ProgressBar,
    labels: Vec<String>,
}

impl Progress {
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
                self.bar.set_length(*total_steps as u64);
                self.bar.set_position(*start_step as u64);
                self.bar.println(format!(
                    "training on {train_examples} examples, evaluating on {eval_examples}, {total_steps} optimizer steps"
                ));
            }
            TrainEvent::Step(log) => {
                self.bar.set_position(log.step as u64);
                self.bar.set_message(format!(
                    "loss {:.4} | lr {:.2e} | {:.0} tok/s",
                    log.loss, log.learning_rate, log.tokens_per_second
                ));
            }
            TrainEvent::Eval(e) => self.bar.println(self.eval_line(e.step, &e.metrics)),
            TrainEvent::Checkpoint { path, .. } => {
                self.bar.println(format!("checkpoint {}", path.display()))
            }
            TrainEvent::EarlyStopped { step } => {
                self.bar.println(format!("early stopping at step {step}"))
            }
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
        device: parse_device(&args.device)?,
    };
    let model = load(&source, &load_opts).with_context(|| format!("loading model {source}"))?;

    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps | {msg} | {elapsed} elapsed, ETA {eta}",
        )
        .expect("a valid template"),
    );
    let mut progress = Progress {
        bar,
        labels: train_set.labels.clone(),
    };
    let (config, tokenizer) = (model.config.clone(), model.tokenizer.clone());
    let started = Instant::now();
    let outcome = train::run(
        train::TrainSpec {
            model,
            train: &train_set.examples,
            eval: eval_set.as_ref().map(|d| d.examples.as_slice()),
            hyperparameters: h,
            checkpoint_dir: args.out.join("checkpoints"),
            resume_from: args.resume_from.clone(),
        },
        &mut progress,
    )?;
    let runtime = started.elapsed().as_secs_f64();
    progress.bar.finish();

    let model_dir = args.out.join("model");
    save(
        &config,
        &outcome.weights,
        &tokenizer,
        WeightLayout::Classifier,
        &model_dir,
    )?;
    let tokens = outcome.history.steps.last().map_or(0, |s| s.tokens);
    let metrics = json!({
        "finish": outcome.finish,
        "steps": outcome.step,
        "train_runtime_s": runtime,
        "train_tokens": tokens,
        "train_tokens_per_s": tokens as f64 / runtime,
        "baseline": outcome.history.evals.first().map(|e| &e.metrics),
        "final": outcome.final_metrics,
        "best_checkpoint": outcome.best_checkpoint,
        "peak_rss_mib": peak_rss_mib(),
        "hyperparameters": h,
        "labels": train_set.labels,
        "history": outcome.history,
    });
    let metrics_path = args.out.join("metrics.json");
    std::fs::write(&metrics_path, serde_json::to_string_pretty(&metrics)?)?;
    eprintln!(
        "{:?} after {} steps in {runtime:.1} s ({:.0} tokens/s); model in {}, metrics in {}",
        outcome.finish,
        outcome.step,
        tokens as f64 / runtime,
        model_dir.display(),
        metrics_path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};
    use crate::train::Hyperparameters;

    #[test]
    fn flag_defaults_equal_the_library_defaults() {
        let cli = Cli::parse_from([
            "tuneserve",
            "train",
            "--model",
            "m",
            "--train",
            "t",
            "--out",
            "o",
        ]);
        let Command::Train(args) = cli.command else {
            panic!("not train")
        };
        assert_eq!(args.hyperparameters, Hyperparameters::default());
        let cli = Cli::parse_from([
            "tuneserve",
            "train",
            "--model",
            "m",
            "--train",
            "t",
            "--out",
            "o",
            "--batch-size",
            "1",
            "--gradient-accumulation-steps",
            "4",
            "--shuffle",
            "false",
            "--padding",
            "max_length",
            "--metric-for-best-model",
            "macro_f1",
        ]);
        let Command::Train(args) = cli.command else {
            panic!("not train")
        };
        let h = args.hyperparameters;
        assert_eq!(
            (h.batch_size, h.gradient_accumulation_steps, h.shuffle),
            (1, 4, false)
        );
    }
}
