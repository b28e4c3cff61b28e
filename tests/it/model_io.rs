//! Loading and export: both Hub layouts, round trips, and clear errors for
//! broken folders.

use std::path::Path;

use crate::fixtures::{fixture_dir, max_abs_diff, tweets, write_tiny_model};
use tuneserve::infer::Classifier;
use tuneserve::model::{load, LoadOptions, LoadedModel, ModelError, ModelSource, WeightLayout};

fn load_dir(dir: &Path) -> Result<LoadedModel, ModelError> {
    load(
        &ModelSource::Dir(dir.to_path_buf()),
        &LoadOptions::default(),
    )
}

fn logits_of(loaded: &LoadedModel, texts: &[String]) -> Vec<Vec<f32>> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let clf = Classifier::new(loaded, None).unwrap();
    clf.classify(&refs)
        .unwrap()
        .into_iter()
        .map(|p| p.logits)
        .collect()
}

/// Copies the fixture into a temp folder so a test can break it.
fn fixture_copy() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture_dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, tmp.path().join(path.file_name().unwrap())).unwrap();
    }
    tmp
}

fn expect_error(dir: &Path, needles: &[&str]) {
    let err = load_dir(dir)
        .expect_err("a broken folder must not load")
        .to_string();
    for needle in needles {
        assert!(
            err.contains(needle),
            "error {err:?} does not mention {needle:?}"
        );
    }
}

/// Rewrites `model.safetensors` with `edit` applied to its tensors.
fn edit_weights(
    dir: &Path,
    edit: impl FnOnce(&mut std::collections::HashMap<String, candle_core::Tensor>),
) {
    let file = dir.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&file, &candle_core::Device::Cpu).unwrap();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, &file).unwrap();
}

#[test]
fn exported_classifier_reloads_with_identical_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    write_tiny_model(&first, 3, WeightLayout::Classifier);
    let a = load_dir(&first).unwrap();
    assert_eq!(a.layout, WeightLayout::Classifier);
    assert!(!a.new_head);
    assert_eq!(a.config.labels, ["negative", "neutral", "positive"]);

    let second = tmp.path().join("second");
    tuneserve::model::save(
        &a.config,
        &a.weights,
        &a.tokenizer,
        WeightLayout::Classifier,
        &second,
    )
    .unwrap();
    let b = load_dir(&second).unwrap();
    let texts = tweets(8);
    assert_eq!(
        logits_of(&a, &texts),
        logits_of(&b, &texts),
        "bit-identical logits"
    );

    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(second.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["architectures"][0], "GPT2ForSequenceClassification");
    assert_eq!(config["id2label"]["2"], "positive");
    assert_eq!(config["label2id"]["neutral"], 1);
    assert_eq!(config["pad_token_id"], 50256);
    let st = std::fs::read(second.join("model.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&st).unwrap();
    assert!(meta
        .tensors()
        .contains_key("transformer.h.1.mlp.c_proj.weight"));
    assert!(meta.tensors().contains_key("score.weight"));
    assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");
    assert!(second.join("tokenizer.json").is_file());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary folders left behind: {leftovers:?}"
    );
}

#[test]
fn saving_over_an_existing_folder_replaces_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    write_tiny_model(&dir, 1, WeightLayout::Classifier);
    std::fs::write(dir.join("stale.txt"), "old").unwrap();
    let before = logits_of(&load_dir(&dir).unwrap(), &tweets(2));
    write_tiny_model(&dir, 2, WeightLayout::Classifier);
    assert!(!dir.join("stale.txt").exists());
    assert_ne!(before, logits_of(&load_dir(&dir).unwrap(), &tweets(2)));
}

#[test]
fn base_layout_loads_with_a_new_seeded_head() {
    let tmp = tempfile::tempdir().unwrap();
    write_tiny_model(tmp.path(), 5, WeightLayout::Base);
    let st = std::fs::read(tmp.path().join("model.safetensors")).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&st).unwrap();
    assert!(meta.tensors().contains_key("wte.weight"));
    assert!(meta.tensors().contains_key("h.0.attn.c_attn.weight"));
    assert!(!meta.tensors().contains_key("score.weight"));

    let opts = |seed| LoadOptions {
        labels: Some(vec!["neg".into(), "neu".into(), "pos".into()]),
        head_seed: seed,
        ..LoadOptions::default()
    };
    let source = ModelSource::Dir(tmp.path().to_path_buf());
    let a = load(&source, &opts(1)).unwrap();
    assert_eq!(a.layout, WeightLayout::Base);
    assert!(a.new_head);
    assert_eq!(a.config.labels, ["neg", "neu", "pos"]);
    let b = load(&source, &opts(1)).unwrap();
    let c = load(&source, &opts(2)).unwrap();
    let texts = tweets(3);
    assert_eq!(
        logits_of(&a, &texts),
        logits_of(&b, &texts),
        "same seed, same head"
    );
    let diff = max_abs_diff(&logits_of(&a, &texts)[0], &logits_of(&c, &texts)[0]);
    assert!(diff > 1e-6, "another seed gives another head");
}

#[test]
fn missing_tensor_is_named() {
    let dir = fixture_copy();
    edit_weights(dir.path(), |t| {
        t.remove("transformer.h.1.mlp.c_fc.bias");
    });
    expect_error(
        dir.path(),
        &[
            "missing tensor",
            "transformer.h.1.mlp.c_fc.bias",
            "model.safetensors",
        ],
    );
}

#[test]
fn wrong_shape_is_named() {
    let dir = fixture_copy();
    edit_weights(dir.path(), |t| {
        let w = t["transformer.h.0.attn.c_attn.weight"]
            .t()
            .unwrap()
            .contiguous()
            .unwrap();
        t.insert("transformer.h.0.attn.c_attn.weight".into(), w);
    });
    expect_error(
        dir.path(),
        &[
            "transformer.h.0.attn.c_attn.weight",
            "[192, 64]",
            "expected [64, 192]",
        ],
    );
}

#[test]
fn truncated_safetensors_is_reported() {
    let dir = fixture_copy();
    let file = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    expect_error(
        dir.path(),
        &["model.safetensors", "not a valid safetensors file"],
    );
}

#[test]
fn other_architecture_is_refused() {
    let dir = fixture_copy();
    let path = dir.path().join("config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace("\"gpt2\"", "\"llama\"").replace(
        "GPT2ForSequenceClassification",
        "LlamaForSequenceClassification",
    );
    std::fs::write(&path, text).unwrap();
    expect_error(
        dir.path(),
        &["config.json", "unsupported model_type \"llama\""],
    );
}

#[test]
fn missing_files_are_named() {
    let dir = fixture_copy();
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    expect_error(dir.path(), &["no tokenizer found", "tokenizer.json"]);
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    expect_error(dir.path(), &["no safetensors weights", "model.safetensors"]);
}

#[test]
fn bad_source_and_offline_hub_give_clear_errors() {
    let err = "./no/such/dir"
        .parse::<ModelSource>()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("neither an existing directory nor a Hugging Face Hub id"),
        "{err}"
    );

    // An empty cache with offline mode on: the Hub path runs without touching the network.
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tuneserve"))
        .args(["classify", "--model", "openai-community/gpt2", "hello"])
        .env("HF_HOME", home.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "`config.json` of Hub repo `openai-community/gpt2` is not in the local cache"
        ),
        "{stderr}"
    );
}
