//! Training parity with PyTorch + Hugging Face on the Hugging Face fixture: per-step
//! losses, pre-clip gradient norms and learning rates, then the trained logits;
//! once on the CPU's hand-written kernels and once on the code path a GPU takes
//! (candle's composed ops, AdamW's device moments, device-side clipping and
//! `index_add` for the embedding), forced on the CPU.

use crate::fixtures::{fixture_dir, max_abs_diff, tweets_file};
use serde_json::Value;
use tuneserve::data::Example;
use tuneserve::infer::Classifier;
use tuneserve::model::{load, LoadOptions, LoadedModel, ModelSource};
use tuneserve::train::{self, Hyperparameters, LrScheduler, Strategy, TrainOutcome};

/// The first `n` rows of the tweets' `train.jsonl`, in file order.
pub fn first_rows(n: usize) -> Vec<Example> {
    let text = std::fs::read_to_string(tweets_file("train.jsonl")).unwrap();
    text.lines()
        .take(n)
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Example {
                text: v["text"].as_str().unwrap().to_string(),
                label: v["label"].as_u64().unwrap() as usize,
                idx: None,
            }
        })
        .collect()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

/// The settings `train_reference.json` was made with (its SOURCE.md).
pub fn reference_hyperparameters() -> Hyperparameters {
    Hyperparameters {
        epochs: 3,
        learning_rate: 1e-3,
        batch_size: 4,
        gradient_accumulation_steps: 2,
        max_length: Some(128),
        warmup_steps: 3,
        weight_decay: 0.01,
        max_grad_norm: 1.0,
        lr_scheduler: LrScheduler::Linear,
        shuffle: false,
        eval_strategy: Strategy::No,
        save_strategy: Strategy::No,
        logging_steps: 1,
        dropout: Some(0.0),
        ..Hyperparameters::default()
    }
}

/// Trains the fixture as the reference did (on the calling thread).
fn train_like_the_reference() -> (LoadedModel, TrainOutcome) {
    let model = load(&ModelSource::Dir(fixture_dir()), &LoadOptions::default()).unwrap();
    let data = first_rows(64);
    let tmp = tempfile::tempdir().unwrap();
    let spec = train::TrainSpec {
        model: model.clone(),
        train: &data,
        eval: None,
        hyperparameters: &reference_hyperparameters(),
        checkpoint_dir: tmp.path().to_path_buf(),
        resume: train::Resume::No,
    };
    (model, train::run(spec, &mut ()).unwrap())
}

fn assert_matches_pytorch(model: &LoadedModel, outcome: TrainOutcome) {
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_dir().join("train_reference.json")).unwrap(),
    )
    .unwrap();
    let expected = reference["steps"].as_array().unwrap();
    assert_eq!(
        outcome.history.steps.len(),
        expected.len(),
        "24 optimizer steps"
    );
    let mut worst = (0f64, 0f64);
    for (ours, theirs) in outcome.history.steps.iter().zip(expected).take(20) {
        let step = ours.step;
        assert_eq!(step as u64, theirs["step"].as_u64().unwrap());
        let (loss, norm, lr) = (
            theirs["loss"].as_f64().unwrap(),
            theirs["grad_norm"].as_f64().unwrap(),
            theirs["learning_rate"].as_f64().unwrap(),
        );
        worst = (
            worst.0.max(rel(ours.loss, loss)),
            worst.1.max(rel(ours.grad_norm, norm)),
        );
        assert!(
            rel(ours.loss, loss) <= 1e-3,
            "step {step}: loss {} vs {loss}",
            ours.loss
        );
        assert!(
            rel(ours.grad_norm, norm) <= 1e-3,
            "step {step}: grad norm {} vs {norm}",
            ours.grad_norm
        );
        assert!(
            (ours.learning_rate - lr).abs() <= 1e-12,
            "step {step}: lr {} vs {lr}",
            ours.learning_rate
        );
    }

    eprintln!(
        "max relative diff over 20 steps: loss {:e}, grad norm {:e}",
        worst.0, worst.1
    );

    // The trained weights classify the fixture's texts as PyTorch's do.
    let after = &reference["after_training"];
    let texts: Vec<String> = serde_json::from_value(after["texts"].clone()).unwrap();
    let logits: Vec<Vec<f32>> = serde_json::from_value(after["logits"].clone()).unwrap();
    let mut trained = model.clone();
    trained.weights = outcome.weights;
    let clf = Classifier::new(&trained, Some(128)).unwrap();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let preds = clf.classify(&refs).unwrap();
    let worst = preds
        .iter()
        .zip(&logits)
        .map(|(p, l)| max_abs_diff(&p.logits, l))
        .fold(0.0, f32::max);
    eprintln!("trained logits max abs diff: {worst:e}");
    assert!(
        worst <= 2e-3,
        "trained logits differ from PyTorch's by {worst:e}"
    );
}

#[test]
fn losses_grad_norms_and_learning_rates_match_pytorch() {
    let (model, outcome) = train_like_the_reference();
    assert_matches_pytorch(&model, outcome);
}

#[test]
fn the_gpu_code_path_matches_pytorch_too() {
    let (model, outcome) = tuneserve::simd::composed_ops(train_like_the_reference);
    assert_matches_pytorch(&model, outcome);
}
