//! `tuneserve merge`: a LoRA adapter folded into its base, written as a plain
//! Hugging Face classifier (PEFT's `merge_and_unload` then `save_pretrained`).

use std::path::PathBuf;

use anyhow::Context;

use crate::model::{load, save, LoadOptions, ModelSource, WeightLayout};

/// Arguments of `merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The adapter folder (PEFT's layout; its base is found as PEFT finds it).
    #[arg(long, env = "TUNESERVE_MODEL")]
    pub model: PathBuf,
    /// Output folder (created; replaced if it exists).
    #[arg(long, env = "TUNESERVE_OUT")]
    pub out: PathBuf,
}

/// Runs `merge`.
pub fn run(args: MergeArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        crate::model::is_adapter_dir(&args.model),
        "{}: not a LoRA adapter (no adapter_config.json)",
        args.model.display()
    );
    let source = ModelSource::Dir(args.model.clone());
    let loaded = load(&source, &LoadOptions::default())
        .with_context(|| format!("loading {}", args.model.display()))?;
    let merged = loaded.merged()?;
    let (config, tok) = (&merged.config, &merged.tokenizer);
    save(
        config,
        &merged.weights,
        tok,
        WeightLayout::Classifier,
        &args.out,
    )
    .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "wrote {}: the adapter merged into its base ({} labels)",
        args.out.display(),
        config.num_labels()
    );
    Ok(())
}
