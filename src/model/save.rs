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

use super::{Gpt2Config, LoadedModel, ModelCard, ModelError, WeightLayout, Weights};
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

/// [`save`] in the classifier layout, with `card` as the folder's `README.md`.
pub fn export(model: &LoadedModel, out: &Path, card: &ModelCard) -> Result<(), ModelError> {
    atomic::write_dir(out, |tmp| {
        let (config, tok) = (&model.config, &model.tokenizer);
        write_model_files(config, &model.weights, tok, WeightLayout::Classifier, tmp)?;
        let readme = tmp.join("README.md");
        std::fs::write(&readme, card.render()).map_err(|e| ModelError::io(&readme, e))
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
        // safetensors writes through a private (0600) temporary file; the
        // weights are as readable as their siblings.
        let readable = std::os::unix::fs::PermissionsExt::from_mode(0o644);
        std::fs::set_permissions(&st_path, readable).map_err(|e| ModelError::io(&st_path, e))?;
        tokenizer.save(&tmp.join("tokenizer.json"))?;
        write_tokenizer_config(config, tokenizer, tmp)
    }
}

/// `tokenizer_config.json` and `special_tokens_map.json`: GPT-2's end-of-text
/// token as bos, eos, unk and pad, and the model's length as
/// `model_max_length`.
fn write_tokenizer_config(
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
