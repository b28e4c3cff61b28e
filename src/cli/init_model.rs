//! `tuneserve init-model`: a random GPT-2 in the Hub's base layout.

use std::path::PathBuf;

use anyhow::Context;
use candle_core::Device;

use crate::data::{TextTokenizer, TokenizerFiles};
use crate::model::{random_weights, save, Preset, WeightLayout};

/// Arguments of `init-model`.
#[derive(Debug, clap::Args)]
pub struct InitModelArgs {
    /// The shape: tiny (2×64), small (4×256), gpt2 (12×768), distilgpt2 (6×768).
    #[arg(long, value_enum, env = "TUNESERVE_PRESET")]
    pub preset: Preset,
    /// Folder with tokenizer.json (or vocab.json + merges.txt) to ship with the
    /// model; without it, GPT-2's own tokenizer (built into tuneserve).
    #[arg(long, env = "TUNESERVE_TOKENIZER")]
    pub tokenizer: Option<PathBuf>,
    /// Seed of the random weights (same seed, same weights).
    #[arg(long, default_value_t = 0, env = "TUNESERVE_SEED")]
    pub seed: u64,
    /// Override the preset's number of positions (longest input).
    #[arg(long, env = "TUNESERVE_N_POSITIONS")]
    pub n_positions: Option<usize>,
    /// Output folder (created; replaced if it exists).
    #[arg(long, env = "TUNESERVE_OUT")]
    pub out: PathBuf,
}

/// Runs `init-model`.
pub fn run(args: InitModelArgs) -> anyhow::Result<()> {
    let mut config = args.preset.config();
    if let Some(n) = args.n_positions {
        anyhow::ensure!(n > 0, "--n-positions must be positive");
        config.n_positions = n;
    }
    let tokenizer = match &args.tokenizer {
        Some(dir) => TextTokenizer::load(&TokenizerFiles::in_dir(dir)?)?,
        None => TextTokenizer::gpt2()?,
    };
    let weights = random_weights(&config, args.seed, &Device::Cpu)?;
    save(&config, &weights, &tokenizer, WeightLayout::Base, &args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let params: usize = weights.values().map(|t| t.elem_count()).sum();
    eprintln!(
        "wrote {} ({:?}: {} layers, {} heads, {} wide, {} positions, {:.1}M parameters)",
        args.out.display(),
        args.preset,
        config.n_layer,
        config.n_head,
        config.n_embd,
        config.n_positions,
        params as f64 / 1e6
    );
    Ok(())
}
