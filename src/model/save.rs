//! Export in Hugging Face's layouts, written all-or-nothing (see
//! [`crate::atomic`]): a crash leaves either the old folder or the new one,
//! never half of one.
//!
//! A folder holds what `from_pretrained` and `pipeline` need: `config.json`,
//! `model.safetensors`, `tokenizer.json`, and `tokenizer_config.json` with
//! `special_tokens_map.json` naming the pad token (GPT-2 has none of its own:
//! it is the end-of-text token, as the recipe sets it), without which Python's
//! tokenizer cannot pad a batch. [`export`] adds the model card (`README.md`).

use std::collections::HashMap;
use std::path::Path;

use serde_json::json;

use super::{Adapter, Gpt2Config, LoadedModel, ModelCard, ModelError, WeightLayout, Weights};
use crate::atomic;
use crate::data::TextTokenizer;

/// Writes `config.json`, `model.safetensors` and `tokenizer.json` to `out`.
///
/// [`WeightLayout::Classifier`] gives what `GPT2ForSequenceClassification
/// .save_pretrained` writes (keys prefixed `transformer.`, plus `score.weight`);
/// [`WeightLayout::Base`] gives the Hub's `gpt2` layout (unprefixed, no head).
pub fn save(
    config: &Gpt2Config,
    weights: &Weights,
    tokenizer: &TextTokenizer,
    layout: WeightLayout,
    out: &Path,
) -> Result<(), ModelError> {
    atomic::write_dir(out, |tmp| {
        write_model_files(config, weights, tokenizer, layout, tmp)
    })
}

/// [`save`] in the classifier layout (PEFT's for a model with an adapter,
/// with the tokenizer files beside it), with `card` as the folder's
/// `README.md`.
pub fn export(model: &LoadedModel, out: &Path, card: &ModelCard) -> Result<(), ModelError> {
    atomic::write_dir(out, |tmp| {
        let trained = match &model.adapter {
            Some(adapter) => Trained::Adapter(adapter),
            None => Trained::Full(&model.weights),
        };
        write_trained(&model.config, &model.tokenizer, trained, tmp)?;
        if model.adapter.is_some() {
            // A checkpoint's adapter needs no tokenizer (the job has the
            // base's); a model handed to users carries it, as PEFT's examples
            // save it beside the adapter, so the folder alone serves.
            model.tokenizer.save(&tmp.join("tokenizer.json"))?;
            write_tokenizer_config(&model.config, &model.tokenizer, tmp)?;
        }
        let readme = tmp.join("README.md");
        std::fs::write(&readme, card.render()).map_err(|e| ModelError::io(&readme, e))
    })
}

/// What a training run writes: every weight, or an adapter (its base is not
/// copied).
#[derive(Debug, Clone, Copy)]
pub enum Trained<'a> {
    /// Every weight, written in Hugging Face's classifier layout (a model that loads alone).
    Full(&'a Weights),
    /// A LoRA adapter, in PEFT's layout.
    Adapter(&'a Adapter),
}

/// Writes `trained` with `config`'s labels and the tokenizer into the existing
/// folder `tmp` (atomicity is the caller's, as for [`write_model_files`]).
pub fn write_trained(
    config: &Gpt2Config,
    tokenizer: &TextTokenizer,
    trained: Trained,
    tmp: &Path,
) -> Result<(), ModelError> {
    match trained {
        Trained::Full(weights) => {
            write_model_files(config, weights, tokenizer, WeightLayout::Classifier, tmp)
        }
        Trained::Adapter(adapter) => super::peft::write_adapter_files(config, adapter, tmp),
    }
}

/// The tensors a folder of [`write_trained`] holds, under canonical names, in
/// f32 on `device`.
pub fn read_trained(dir: &Path, device: &candle_core::Device) -> Result<Weights, ModelError> {
    if super::peft::is_adapter_dir(dir) {
        return super::peft::read_adapter_weights(dir, device);
    }
    let file = dir.join("model.safetensors");
    candle_core::safetensors::load(&file, device).map_err(|e| ModelError::Safetensors {
        file,
        reason: e.to_string(),
    })
}

/// Writes the model's files into the existing folder `tmp` (no atomicity of its
/// own: [`save`], [`export`] and checkpoints wrap it in [`atomic::write_dir`]).
pub fn write_model_files(
    config: &Gpt2Config,
    weights: &Weights,
    tokenizer: &TextTokenizer,
    layout: WeightLayout,
    tmp: &Path,
) -> Result<(), ModelError> {
    {
        let mut json = match layout {
            WeightLayout::Classifier => config.to_hf_json("GPT2ForSequenceClassification"),
            WeightLayout::Base => config.to_hf_json("GPT2LMHeadModel"),
        };
        if layout == WeightLayout::Base {
            let obj = json.as_object_mut().expect("config is an object");
            obj.remove("id2label");
            obj.remove("label2id");
        }
        let config_path = tmp.join("config.json");
        let text = serde_json::to_string_pretty(&json).expect("config serializes");
        std::fs::write(&config_path, text).map_err(|e| ModelError::io(&config_path, e))?;

        let tensors: Vec<(&str, &candle_core::Tensor)> = weights
            .iter()
            .filter(|(name, _)| layout == WeightLayout::Classifier || *name != "score.weight")
            .map(|(name, t)| (layout.file_key(name), t))
            .collect();
        let st_path = tmp.join("model.safetensors");
        let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize_to_file(tensors, Some(metadata), &st_path)
            .map_err(|e| writing_safetensors(&st_path, e))?;
        readable(&st_path)?;
        tokenizer.save(&tmp.join("tokenizer.json"))?;
        write_tokenizer_config(config, tokenizer, tmp)
    }
}

/// Makes a safetensors file as readable as its siblings: the crate writes
/// through a private (0600) temporary file.
pub(super) fn readable(file: &Path) -> Result<(), ModelError> {
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    std::fs::set_permissions(file, mode).map_err(|e| ModelError::io(file, e))
}

/// `tokenizer_config.json` and `special_tokens_map.json`: GPT-2's end-of-text
/// token as bos, eos, unk and pad, and the model's length as
/// `model_max_length`.
pub(super) fn write_tokenizer_config(
    config: &Gpt2Config,
    tokenizer: &TextTokenizer,
    dir: &Path,
) -> Result<(), ModelError> {
    let eos = tokenizer
        .token(config.pad_id())
        .unwrap_or_else(|| "<|endoftext|>".to_string());
    let special = json!({"bos_token": eos, "eos_token": eos, "pad_token": eos, "unk_token": eos});
    let mut full = special.clone();
    let extra = json!({
        "add_prefix_space": false,
        "clean_up_tokenization_spaces": false,
        "errors": "replace",
        "model_max_length": config.n_positions,
        "padding_side": "right",
        "tokenizer_class": "GPT2Tokenizer",
    });
    if let (Some(f), Some(e)) = (full.as_object_mut(), extra.as_object()) {
        f.extend(e.clone());
    }
    for (name, value) in [
        ("tokenizer_config.json", full),
        ("special_tokens_map.json", special),
    ] {
        let path = dir.join(name);
        let text = serde_json::to_string_pretty(&value).expect("JSON values serialize");
        std::fs::write(&path, text).map_err(|e| ModelError::io(&path, e))?;
    }
    Ok(())
}

/// A failed safetensors write as what it is: an I/O error (a full disk, say)
/// stays one, so it reads and retries as such, not as a corrupt file.
pub(crate) fn writing_safetensors(file: &Path, e: safetensors::SafeTensorError) -> ModelError {
    match e {
        safetensors::SafeTensorError::IoError(io) => ModelError::io(file, io),
        other => ModelError::Safetensors {
            file: file.to_path_buf(),
            reason: other.to_string(),
        },
    }
}
