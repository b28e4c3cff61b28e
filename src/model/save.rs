//! Export in Hugging Face's layouts, written all-or-nothing.
//!
//! The folder is built under a temporary name beside the target, every file and
//! the folder itself fsynced, then renamed into place; a crash leaves either the
//! old folder or the new one, never half of one.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use super::{Gpt2Config, ModelError, WeightLayout, Weights};
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
    write_dir_atomically(out, |tmp| {
        write_model_files(config, weights, tokenizer, layout, tmp)
    })
}

/// Writes the model's files into the existing folder `dir` (no atomicity of its
/// own: [`save`] and checkpoints wrap it in [`write_dir_atomically`]).
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
        safetensors::serialize_to_file(tensors, Some(metadata), &st_path).map_err(|e| {
            ModelError::Safetensors {
                file: st_path.clone(),
                reason: e.to_string(),
            }
        })?;
        tokenizer.save(&tmp.join("tokenizer.json"))?;
        Ok(())
    }
}

/// Builds the folder `out` by calling `fill` on a fresh temporary folder beside
/// it, fsyncs everything, then swaps it into place (replacing any old `out`).
pub fn write_dir_atomically<E>(
    out: &Path,
    fill: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E>
where
    E: From<ModelError>,
{
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| ModelError::io(&parent, e))?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.tmp-"))
        .tempdir_in(&parent)
        .map_err(|e| ModelError::io(&parent, e))?;
    fill(tmp.path())?;
    sync_tree(tmp.path())?;
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    let replaced = out.exists();
    if replaced {
        std::fs::rename(out, &old).map_err(|e| ModelError::io(out, e))?;
    }
    let tmp = tmp.keep();
    std::fs::rename(&tmp, out).map_err(|e| ModelError::io(out, e))?;
    sync_dir(&parent)?;
    if replaced {
        std::fs::remove_dir_all(&old).map_err(|e| ModelError::io(&old, e))?;
    }
    Ok(())
}

fn sync_tree(dir: &Path) -> Result<(), ModelError> {
    for entry in std::fs::read_dir(dir).map_err(|e| ModelError::io(dir, e))? {
        let path = entry.map_err(|e| ModelError::io(dir, e))?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| ModelError::io(&path, e))?;
        }
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), ModelError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| ModelError::io(dir, e))
}
