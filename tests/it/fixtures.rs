//! Helpers shared by the integration tests: paths to the fixtures, tiny random
//! GPT-2 models written to temporary folders, and comparisons.

use std::path::{Path, PathBuf};

use candle_core::Device;
use tuneserve::data::{TextTokenizer, TokenizerFiles};
use tuneserve::model::{random_weights, save, Gpt2Config, Preset, WeightLayout};

/// A path inside the repository (fixtures live in `tests/fixtures/`, the GPT-2
/// tokenizer in `assets/`).
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The parity fixture saved by Hugging Face.
pub fn fixture_dir() -> PathBuf {
    repo_path("tests/fixtures/gpt2-tiny-parity")
}

/// The real GPT-2 tokenizer files.
pub fn tokenizer_dir() -> PathBuf {
    repo_path("assets/gpt2-tokenizer")
}

/// A file of the tweet-sentiment sample (`train.jsonl`, `test.csv`, …).
pub fn tweets_file(name: &str) -> PathBuf {
    repo_path("tests/fixtures/tweets").join(name)
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

/// First `n` tweets of the train sample (mixed lengths).
pub fn tweets(n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(tweets_file("train.jsonl")).unwrap();
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
