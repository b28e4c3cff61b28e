//! LoRA adapters against Python's PEFT (fixtures in
//! `tests/fixtures/gpt2-tiny-lora/`, made by `reference/make_lora_reference.py`):
//! the logits of two PEFT-made adapters on the HF-made base, several adapters
//! in one forward pass, merging, our own files read back, and a LoRA run's
//! per-step losses and gradient norms against a PyTorch + PEFT loop.

use std::path::PathBuf;

use serde_json::Value;
use tuneserve::data::Padding;
use tuneserve::infer::Classifier;
use tuneserve::model::{
    load, BatchInput, LoadOptions, LoadedModel, LoraConfig, LoraNet, ModelSource, RowGroup,
};
use tuneserve::train::{self, Hyperparameters, Method};

use crate::fixtures::{max_abs_diff, repo_path};
use crate::train_parity::{first_rows, reference_hyperparameters};

fn lora_dir(name: &str) -> PathBuf {
    repo_path("tests/fixtures/gpt2-tiny-lora").join(name)
}

fn adapter(name: &str) -> LoadedModel {
    load(&ModelSource::Dir(lora_dir(name)), &LoadOptions::default()).unwrap()
}

/// `(texts, logits)` of an `expected_logits.json`.
fn expected(name: &str) -> (Vec<String>, Vec<Vec<f32>>) {
    let file = lora_dir(name).join("expected_logits.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let items = v["items"].as_array().unwrap();
    let texts = items
        .iter()
        .map(|i| i["text"].as_str().unwrap().to_string());
    let logits = items
        .iter()
        .map(|i| serde_json::from_value(i["logits"].clone()).unwrap());
    (texts.collect(), logits.collect())
}

/// The largest |difference| between `model`'s logits of `texts` and `logits`.
fn worst(model: &LoadedModel, texts: &[String], logits: &[Vec<f32>]) -> f32 {
    let clf = Classifier::new(model, Some(128)).unwrap();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let preds = clf.classify(&refs).unwrap();
    preds
        .iter()
        .zip(logits)
        .map(|(p, l)| max_abs_diff(&p.logits, l))
        .fold(0.0, f32::max)
}

#[test]
fn peft_adapters_give_peft_logits() {
    for (name, labels) in [("adapter-r8", 3), ("adapter-r4-rslora", 5)] {
        let model = adapter(name);
        assert_eq!(model.config.num_labels(), labels, "{name}");
        let lora = &model.adapter.as_ref().unwrap().lora;
        assert!(
            lora.r == 8 || (lora.r == 4 && lora.use_rslora),
            "{name}: {lora:?}"
        );
        let (texts, logits) = expected(name);
        let diff = worst(&model, &texts, &logits);
        eprintln!("{name}: max |Δ logit| against PEFT {diff:e}");
        assert!(
            diff <= 1e-4,
            "{name}: logits differ from PEFT's by {diff:e}"
        );
    }
}

#[test]
fn merging_gives_the_same_classifier() {
    let model = adapter("adapter-r4-rslora");
    let merged = model.merged().unwrap();
    assert!(merged.adapter.is_none());
    let (texts, logits) = expected("adapter-r4-rslora");
    let diff = worst(&merged, &texts, &logits);
    assert!(diff <= 1e-4, "merged logits differ from PEFT's by {diff:e}");
}

#[test]
fn exported_adapters_read_back_the_same() {
    let model = adapter("adapter-r8");
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("copy");
    let card = tuneserve::model::ModelCard {
        base_model: lora_dir("adapter-r8")
            .join("../../gpt2-tiny-parity")
            .display()
            .to_string(),
        hub_base_model: None,
        datasets: vec![],
        hub_datasets: vec![],
        labels: model.config.labels.clone(),
        hyperparameters: serde_json::json!({}),
        metrics: None,
        steps: 0,
        adapter: true,
    };
    let mut exported = model.clone();
    exported.adapter.as_mut().unwrap().base = Some(card.base_model.clone());
    tuneserve::model::export(&exported, &dir, &card).unwrap();
    let st = std::fs::metadata(dir.join("adapter_model.safetensors")).unwrap();
    assert!(
        st.len() < 64 * 1024,
        "an r 8 adapter of the tiny model is small"
    );
    assert!(
        !dir.join("model.safetensors").exists(),
        "the base is not copied"
    );
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(
        (
            &config["peft_type"],
            &config["task_type"],
            &config["fan_in_fan_out"]
        ),
        (
            &Value::from("LORA"),
            &Value::from("SEQ_CLS"),
            &Value::from(true)
        )
    );
    let back = load(&ModelSource::Dir(dir), &LoadOptions::default()).unwrap();
    assert_eq!(back.config.labels, model.config.labels);
    let (texts, logits) = expected("adapter-r8");
    assert!(worst(&back, &texts, &logits) <= 1e-4);
}

/// 64 rows over both adapters and the plain base in one pass, against each alone.
#[test]
fn one_batch_mixes_adapters_with_their_own_labels() {
    let (r8, r4) = (adapter("adapter-r8"), adapter("adapter-r4-rslora"));
    let base = r8.build().unwrap().base();
    let nets: Vec<LoraNet> = [&r8, &r4]
        .iter()
        .map(|m| {
            let a = m.adapter.as_ref().unwrap();
            LoraNet::new(&m.config, &a.lora, &a.weights).unwrap()
        })
        .collect();
    let (texts, _) = expected("adapter-r8");
    let tok = r8.tokenizer.with_settings(50256, 128, Padding::Longest);
    let texts: Vec<&str> = texts.iter().cycle().take(64).map(String::as_str).collect();
    let sizes = [20usize, 30, 14];
    let adapters = [Some(&nets[0]), Some(&nets[1]), None];
    let groups: Vec<RowGroup> = sizes
        .iter()
        .zip(adapters)
        .map(|(&rows, adapter)| RowGroup { rows, adapter })
        .collect();
    let enc = tok.encode_batch(&texts).unwrap();
    let input = BatchInput::new(&enc, &candle_core::Device::Cpu).unwrap();
    let mixed = base.forward_groups(&input, &groups).unwrap();
    let mut start = 0;
    for (g, logits) in groups.iter().zip(&mixed) {
        let alone_input = tok.encode_batch(&texts[start..start + g.rows]).unwrap();
        let alone_input = BatchInput::new(&alone_input, &candle_core::Device::Cpu).unwrap();
        let alone = base.forward_groups(&alone_input, &[*g]).unwrap().remove(0);
        let (a, b) = (
            logits.to_vec2::<f32>().unwrap(),
            alone.to_vec2::<f32>().unwrap(),
        );
        assert_eq!(a[0].len(), g.adapter.map_or(3, |n| n.score_rows()));
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| max_abs_diff(x, y))
            .fold(0.0, f32::max);
        assert!(diff <= 1e-5, "group of {} rows differs by {diff:e}", g.rows);
        start += g.rows;
    }
}

/// The settings of `train/train_reference.json` (its SOURCE.md).
fn lora_reference_hyperparameters() -> Hyperparameters {
    Hyperparameters {
        method: Method::Lora,
        lora: LoraConfig {
            dropout: 0.0,
            ..LoraConfig::default()
        },
        batch_size: 2,
        gradient_accumulation_steps: 3,
        ..reference_hyperparameters()
    }
}

#[test]
fn lora_training_matches_pytorch_and_peft() {
    lora_run_matches_the_reference();
}

/// The same run on the code path a GPU takes (candle's composed ops), forced
/// on the CPU.
#[test]
fn lora_training_on_the_gpu_code_path_matches_too() {
    tuneserve::simd::composed_ops(lora_run_matches_the_reference);
}

fn lora_run_matches_the_reference() {
    let model = adapter("train/initial");
    let data = first_rows(36);
    let tmp = tempfile::tempdir().unwrap();
    let h = lora_reference_hyperparameters();
    let spec = train::TrainSpec {
        model: model.clone(),
        train: &data,
        eval: None,
        hyperparameters: &h,
        checkpoint_dir: tmp.path().to_path_buf(),
        resume: train::Resume::No,
    };
    let outcome = train::run(spec, &mut ()).unwrap();
    let file = lora_dir("train/train_reference.json");
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let steps = reference["steps"].as_array().unwrap();
    assert_eq!(outcome.history.steps.len(), 18);
    let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-12);
    let mut worst_seen = (0f64, 0f64);
    for (ours, theirs) in outcome.history.steps.iter().zip(steps) {
        let (loss, norm) = (
            theirs["loss"].as_f64().unwrap(),
            theirs["grad_norm"].as_f64().unwrap(),
        );
        worst_seen = (
            worst_seen.0.max(rel(ours.loss, loss)),
            worst_seen.1.max(rel(ours.grad_norm, norm)),
        );
        assert!(
            rel(ours.loss, loss) <= 1e-3,
            "step {}: loss {} vs {loss}",
            ours.step,
            ours.loss
        );
        assert!(
            rel(ours.grad_norm, norm) <= 1e-3,
            "step {}: grad norm {} vs {norm}",
            ours.step,
            ours.grad_norm
        );
    }
    eprintln!(
        "LoRA: max relative diff over 18 steps: loss {:e}, grad norm {:e}",
        worst_seen.0, worst_seen.1
    );
    let after = &reference["after_training"];
    let texts: Vec<String> = serde_json::from_value(after["texts"].clone()).unwrap();
    let logits: Vec<Vec<f32>> = serde_json::from_value(after["logits"].clone()).unwrap();
    let diff = worst(&outcome.model(), &texts, &logits);
    eprintln!("LoRA: trained logits max abs diff {diff:e}");
    assert!(
        diff <= 1e-3,
        "trained logits differ from PEFT's by {diff:e}"
    );
}
