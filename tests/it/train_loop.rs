//! The training loop's promises: it learns, it resumes to the bit, it stops
//! when asked, and it keeps checkpoints as configured.

use std::path::Path;

use crate::fixtures::write_tiny_model;
use tuneserve::data::Example;
use tuneserve::model::{load, LoadOptions, LoadedModel, ModelSource, WeightLayout};
use tuneserve::train::{
    self, list_checkpoints, EvalLog, Finish, Hyperparameters, Observer, Resume, StepLog, Strategy,
    TrainEvent, TrainOutcome,
};

/// Three classes told apart by their words.
fn synthetic(n: usize) -> Vec<Example> {
    let words = [
        ["awful", "terrible", "sad", "hate", "worst", "bad"],
        ["table", "window", "paper", "chair", "street", "door"],
        ["great", "lovely", "happy", "love", "best", "good"],
    ];
    (0..n)
        .map(|i| {
            let label = i % 3;
            let w = &words[label];
            Example {
                text: format!(
                    "{} {} day {}",
                    w[i % 6],
                    w[(i / 3 + 1) % 6],
                    w[(i / 7 + 2) % 6]
                ),
                label,
                idx: None,
            }
        })
        .collect()
}

fn tiny(dir: &Path) -> LoadedModel {
    write_tiny_model(dir, 21, WeightLayout::Classifier);
    load(
        &ModelSource::Dir(dir.to_path_buf()),
        &LoadOptions::default(),
    )
    .unwrap()
}

fn run(
    model: &LoadedModel,
    data: &[Example],
    h: &Hyperparameters,
    ckpt: &Path,
    resume: Option<&Path>,
    observer: &mut dyn Observer,
) -> TrainOutcome {
    train::run(
        train::TrainSpec {
            model: model.clone(),
            train: data,
            eval: Some(data),
            hyperparameters: h,
            checkpoint_dir: ckpt.to_path_buf(),
            resume: resume.map_or(Resume::No, |p| Resume::From(p.to_path_buf())),
        },
        observer,
    )
    .unwrap()
}

#[test]
fn a_tiny_model_learns_a_separable_task() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny(&tmp.path().join("m"));
    let data = synthetic(48);
    let h = Hyperparameters {
        epochs: 8,
        learning_rate: 2e-3,
        batch_size: 8,
        save_strategy: Strategy::No,
        ..Hyperparameters::default()
    };
    let out = run(&model, &data, &h, &tmp.path().join("ckpt"), None, &mut ());
    let evals = &out.history.evals;
    assert_eq!(evals[0].step, 0, "a baseline evaluation comes first");
    assert_eq!(evals.len(), 9, "baseline plus one per epoch");
    let final_acc = out.final_metrics.as_ref().unwrap().accuracy;
    assert!(
        final_acc >= 0.95,
        "accuracy after 48 steps: {final_acc} (baseline {})",
        evals[0].metrics.accuracy
    );
    assert!(out.history.steps.last().unwrap().loss < out.history.steps[0].loss);
    // Step time and evaluation time are reported apart.
    assert!(out.history.steps.iter().all(|s| s.seconds_per_step > 0.0));
    assert!(evals.iter().all(|e| e.seconds > 0.0));
}

/// Stops the run after `after` optimizer steps.
struct StopAfter {
    after: usize,
    seen: usize,
}

impl Observer for StopAfter {
    fn on_event(&mut self, event: &TrainEvent) {
        if let TrainEvent::Step(log) = event {
            self.seen = log.step;
        }
    }
    fn should_stop(&mut self) -> bool {
        self.seen >= self.after
    }
}

fn without_timing(logs: &[StepLog]) -> Vec<StepLog> {
    logs.iter()
        .cloned()
        .map(|mut l| {
            l.tokens_per_second = 0.0;
            l.seconds_per_step = 0.0;
            l
        })
        .collect()
}

fn evals_without_timing(logs: &[EvalLog]) -> Vec<EvalLog> {
    logs.iter()
        .cloned()
        .map(|mut l| {
            l.seconds = 0.0;
            l
        })
        .collect()
}

#[test]
fn resuming_from_a_checkpoint_ends_where_an_uninterrupted_run_does() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny(&tmp.path().join("m"));
    let data = synthetic(30);
    let h = Hyperparameters {
        epochs: 2,
        learning_rate: 1e-3,
        batch_size: 4,
        gradient_accumulation_steps: 2,
        dropout: Some(0.1),
        weight_decay: 0.01,
        warmup_steps: 2,
        save_strategy: Strategy::Steps,
        save_steps: Some(3),
        save_total_limit: 10,
        logging_steps: 1,
        ..Hyperparameters::default()
    };
    let straight = run(&model, &data, &h, &tmp.path().join("a"), None, &mut ());
    assert_eq!(straight.finish, Finish::Completed);
    assert_eq!(
        straight.step, 8,
        "8 micro-batches of 4, accumulated by 2: 4 steps an epoch"
    );

    let dir = tmp.path().join("b");
    let stopped = run(
        &model,
        &data,
        &h,
        &dir,
        None,
        &mut StopAfter { after: 3, seen: 0 },
    );
    assert_eq!((stopped.finish, stopped.step), (Finish::Stopped, 3));
    let (step, ckpt) = list_checkpoints(&dir).pop().unwrap();
    assert_eq!(step, 3);
    for file in [
        "model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
        "config.json",
    ] {
        assert!(
            ckpt.join(file).is_file(),
            "{file} missing from the checkpoint"
        );
    }
    let resumed = run(&model, &data, &h, &dir, Some(&ckpt), &mut ());
    assert_eq!(resumed.step, 8);

    let mut worst = 0f32;
    for (name, a) in &straight.weights {
        let b = &resumed.weights[name];
        let d = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        worst = worst.max(d);
    }
    assert!(worst <= 1e-6, "final weights differ by {worst:e}");
    assert_eq!(
        without_timing(&straight.history.steps),
        without_timing(&resumed.history.steps)
    );
    assert_eq!(
        evals_without_timing(&straight.history.evals),
        evals_without_timing(&resumed.history.evals)
    );
}

#[test]
fn save_total_limit_keeps_the_newest_and_the_best() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny(&tmp.path().join("m"));
    let data = synthetic(24);
    let h = Hyperparameters {
        epochs: 4,
        learning_rate: 1e-3,
        batch_size: 8,
        save_total_limit: 2,
        ..Hyperparameters::default()
    };
    let dir = tmp.path().join("ckpt");
    let out = run(&model, &data, &h, &dir, None, &mut ());
    let kept: Vec<usize> = list_checkpoints(&dir).into_iter().map(|(s, _)| s).collect();
    assert!(kept.len() <= 3, "at most the limit plus the best: {kept:?}");
    assert!(kept.contains(&12), "the newest is kept: {kept:?}");
    if let Some(best) = &out.best_checkpoint {
        assert!(best.is_dir(), "the best checkpoint is kept");
    }
}

#[test]
fn early_stopping_stops_when_the_metric_stalls() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny(&tmp.path().join("m"));
    let data = synthetic(12);
    let h = Hyperparameters {
        epochs: 50,
        learning_rate: 1e-9,
        batch_size: 12,
        early_stopping_patience: Some(2),
        save_strategy: Strategy::No,
        ..Hyperparameters::default()
    };
    let out = run(&model, &data, &h, &tmp.path().join("c"), None, &mut ());
    assert_eq!(out.finish, Finish::EarlyStopped);
    assert!(out.step < 50, "stopped at step {}", out.step);
}

/// Records what the trainer said about resuming.
#[derive(Default)]
struct ResumeLog {
    skipped: Vec<(std::path::PathBuf, String)>,
    resumed_at: Option<usize>,
}

impl Observer for ResumeLog {
    fn on_event(&mut self, event: &TrainEvent) {
        match event {
            TrainEvent::CheckpointSkipped { path, reason } => {
                self.skipped.push((path.clone(), reason.clone()))
            }
            TrainEvent::Resumed { step, .. } => self.resumed_at = Some(*step),
            _ => {}
        }
    }
}

#[test]
fn a_truncated_newest_checkpoint_is_skipped_for_the_one_before() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny(&tmp.path().join("m"));
    let data = synthetic(24);
    let h = Hyperparameters {
        epochs: 1,
        batch_size: 4,
        save_strategy: Strategy::Steps,
        save_steps: Some(1),
        save_total_limit: 10,
        logging_steps: 1,
        ..Hyperparameters::default()
    };
    let dir = tmp.path().join("run");
    let stop = &mut StopAfter { after: 3, seen: 0 };
    assert_eq!(run(&model, &data, &h, &dir, None, stop).step, 3);
    let (newest, ckpt) = list_checkpoints(&dir).pop().unwrap();
    assert_eq!(newest, 3);
    let weights = ckpt.join("model.safetensors");
    let len = std::fs::metadata(&weights).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&weights)
        .unwrap();
    file.set_len(len / 2).unwrap();

    let mut log = ResumeLog::default();
    let spec = train::TrainSpec {
        model: model.clone(),
        train: &data,
        eval: Some(&data),
        hyperparameters: &h,
        checkpoint_dir: dir.clone(),
        resume: Resume::Latest,
    };
    let outcome = train::run(spec, &mut log).unwrap();
    assert_eq!(outcome.finish, Finish::Completed);
    assert_eq!(
        log.resumed_at,
        Some(2),
        "resumed from the intact checkpoint"
    );
    let [(path, reason)] = log.skipped.as_slice() else {
        panic!("one checkpoint skipped: {:?}", log.skipped)
    };
    assert_eq!(path, &ckpt);
    assert!(
        reason.contains("model.safetensors"),
        "names the file: {reason}"
    );
}
