//! Helpers shared by the integration tests: paths into `../shared`, tiny random
//! GPT-2 models written to temporary folders, and comparisons.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::Device;
use tuneserve::data::{TextTokenizer, TokenizerFiles};
use tuneserve::model::{random_weights, save, Gpt2Config, Preset, WeightLayout};

/// `../shared` beside the checkout (the CI clone has it there too).
pub fn shared() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    assert!(
        dir.is_dir(),
        "{} is missing: tests need the shared fixtures beside the checkout",
        dir.display()
    );
    dir
}

/// The parity fixture saved by Hugging Face.
pub fn fixture_dir() -> PathBuf {
    shared().join("fixtures/gpt2-tiny-parity")
}

/// The real GPT-2 tokenizer files.
pub fn tokenizer_dir() -> PathBuf {
    shared().join("data/gpt2-tokenizer")
}

/// The real GPT-2 tokenizer.
pub fn gpt2_tokenizer() -> TextTokenizer {
    TextTokenizer::load(&TokenizerFiles::in_dir(&tokenizer_dir()).unwrap()).unwrap()
}

/// The `tiny` preset with the given labels.
pub fn tiny_config(labels: &[&str]) -> Gpt2Config {
    let mut cfg = Preset::Tiny.config();
    cfg.labels = labels.iter().map(|s| s.to_string()).collect();
    cfg
}

/// Writes a random tiny classifier (seeded) in `layout` to `dir`.
pub fn write_tiny_model(dir: &Path, seed: u64, layout: WeightLayout) -> Gpt2Config {
    let cfg = tiny_config(&["negative", "neutral", "positive"]);
    let weights = random_weights(&cfg, seed, &Device::Cpu).unwrap();
    save(&cfg, &weights, &gpt2_tokenizer(), layout, dir).unwrap();
    cfg
}

/// First `n` tweets of the shared train split (mixed lengths).
pub fn tweets(n: usize) -> Vec<String> {
    let text =
        std::fs::read_to_string(shared().join("data/tweet_sentiment_extraction/train.jsonl"))
            .unwrap();
    text.lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .filter(|t| !t.trim().is_empty())
        .take(n)
        .collect()
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
