//! LoRA adapters in Hugging Face PEFT's folder layout, both ways.
//!
//! A folder holds `adapter_config.json` (`peft_type` `LORA`, `task_type`
//! `SEQ_CLS`, `base_model_name_or_path`, `r`, `lora_alpha`, …) and
//! `adapter_model.safetensors`, whose keys are the canonical names prefixed
//! `base_model.model.` (`base_model.model.transformer.h.0.attn.c_attn.lora_A.weight`
//! `[r, in]`, `…lora_B.weight` `[out, r]`, `base_model.model.score.weight`).
//! tuneserve adds a `config.json` naming the labels (PEFT's loader does not
//! read it; an adapter without one takes its base's labels when their number
//! fits, else `LABEL_0`, …). The tokenizer is the base's, unless the folder
//! has one of its own. It loads in
//! Python with `PeftModel.from_pretrained(GPT2ForSequenceClassification
//! .from_pretrained(base), folder)`.
//!
//! The base is found as PEFT finds it: `base_model_name_or_path` names a folder
//! (tried as given, then relative to the adapter's folder) or a Hub id.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use super::lora::{Adapter, LoraConfig, LoraTarget};
use super::{
    init_score_head, Gpt2Config, LoadOptions, LoadedModel, ModelError, ModelSource, Weights,
};
use crate::data::{TextTokenizer, TokenizerFiles};

/// The adapter's settings as PEFT writes them (rank, alpha, targets, base model); a
/// folder holding it is an adapter folder.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The adapter's tensors, named as PEFT names them: its A and B matrices and its head.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// What PEFT puts before every canonical tensor name.
const KEY_PREFIX: &str = "base_model.model.";

/// `adapter_config.json`: the fields tuneserve reads and writes (others PEFT
/// writes are ignored when read).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PeftConfig {
    peft_type: String,
    #[serde(default)]
    task_type: Option<String>,
    #[serde(default)]
    base_model_name_or_path: Option<String>,
    r: usize,
    lora_alpha: f64,
    #[serde(default)]
    lora_dropout: f64,
    target_modules: serde_json::Value,
    #[serde(default)]
    fan_in_fan_out: bool,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    modules_to_save: Option<Vec<String>>,
    #[serde(default = "no_bias")]
    bias: String,
    #[serde(default)]
    use_dora: bool,
    #[serde(default)]
    layers_to_transform: serde_json::Value,
    #[serde(default)]
    rank_pattern: serde_json::Value,
    #[serde(default)]
    alpha_pattern: serde_json::Value,
    #[serde(default)]
    inference_mode: bool,
}

fn no_bias() -> String {
    "none".into()
}

fn refuse(file: &Path, reason: impl std::fmt::Display) -> ModelError {
    ModelError::Adapter {
        reason: format!("{}: {reason}", file.display()),
    }
}

fn empty(v: &serde_json::Value) -> bool {
    v.is_null() || v.as_object().is_some_and(|o| o.is_empty())
}

impl PeftConfig {
    /// The LoRA settings, refusing what tuneserve does not run (DoRA, biases,
    /// per-layer ranks, regex targets) rather than running it wrongly.
    fn lora(&self, file: &Path) -> Result<LoraConfig, ModelError> {
        if self.peft_type != "LORA" {
            return Err(refuse(
                file,
                format!("peft_type {:?} (tuneserve runs LORA)", self.peft_type),
            ));
        }
        if let Some(task) = self.task_type.as_deref().filter(|t| *t != "SEQ_CLS") {
            return Err(refuse(
                file,
                format!("task_type {task:?} (tuneserve classifies: SEQ_CLS)"),
            ));
        }
        let unsupported = [
            (self.use_dora, "use_dora"),
            (self.bias != "none", "bias other than \"none\""),
            (!self.layers_to_transform.is_null(), "layers_to_transform"),
            (!empty(&self.rank_pattern), "rank_pattern"),
            (!empty(&self.alpha_pattern), "alpha_pattern"),
            (self.r == 0, "r = 0"),
        ];
        if let Some((_, what)) = unsupported.iter().find(|(bad, _)| *bad) {
            return Err(refuse(file, format!("{what} is not supported")));
        }
        let targets = self.target_modules.as_array().ok_or_else(|| {
            refuse(
                file,
                "target_modules must be a list of names (a regex is not supported)",
            )
        })?;
        let target_modules = targets
            .iter()
            .map(|t| serde_json::from_value::<LoraTarget>(t.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                refuse(file, format!("target_modules {targets:?}: tuneserve adapts c_attn, c_proj, c_fc, attn.c_proj and mlp.c_proj"))
            })?;
        Ok(LoraConfig {
            r: self.r,
            alpha: self.lora_alpha,
            dropout: self.lora_dropout,
            target_modules,
            use_rslora: self.use_rslora,
        })
    }

    fn of(adapter: &Adapter) -> Self {
        let names: Vec<_> = adapter
            .lora
            .target_modules
            .iter()
            .map(|t| t.peft_name())
            .collect();
        Self {
            peft_type: "LORA".into(),
            task_type: Some("SEQ_CLS".into()),
            base_model_name_or_path: adapter.base.clone(),
            r: adapter.lora.r,
            lora_alpha: adapter.lora.alpha,
            lora_dropout: adapter.lora.dropout,
            target_modules: serde_json::json!(names),
            fan_in_fan_out: true,
            use_rslora: adapter.lora.use_rslora,
            modules_to_save: Some(vec!["classifier".into(), "score".into()]),
            bias: "none".into(),
            use_dora: false,
            layers_to_transform: serde_json::Value::Null,
            rank_pattern: serde_json::json!({}),
            alpha_pattern: serde_json::json!({}),
            inference_mode: true,
        }
    }
}

/// Whether `dir` holds a PEFT adapter.
pub fn is_adapter_dir(dir: &Path) -> bool {
    dir.join(CONFIG_FILE).is_file()
}

/// The canonical name of a key of `adapter_model.safetensors`, or `None` for
/// one tuneserve does not use (PEFT's copy of the original head).
fn canonical(key: &str) -> Option<String> {
    if key.contains("original_module") {
        return None;
    }
    let name = key.strip_prefix(KEY_PREFIX).unwrap_or(key);
    Some(
        name.replace(".modules_to_save.default.", ".")
            .replace(".modules_to_save.", ".")
            .replace(".default.", "."),
    )
}

/// The tensors of an adapter file under their canonical names, in f32 on `device`.
fn read_tensors(file: &Path, device: &Device) -> Result<Weights, ModelError> {
    let bad = |reason: String| ModelError::Safetensors {
        file: file.to_path_buf(),
        reason,
    };
    let tensors =
        candle_core::safetensors::load(file, &Device::Cpu).map_err(|e| bad(e.to_string()))?;
    let mut out = Weights::new();
    for (key, t) in tensors {
        if let Some(name) = canonical(&key) {
            out.insert(name, t.to_dtype(DType::F32)?.to_device(device)?);
        }
    }
    Ok(out)
}

/// Where the base of an adapter in `dir` is: `named` as a folder as given, as
/// a folder relative to `dir`, or a Hub id.
fn base_source(dir: &Path, named: &str) -> Result<ModelSource, ModelError> {
    let beside = dir.join(named);
    if !Path::new(named).is_dir() && beside.is_dir() {
        return Ok(ModelSource::Dir(beside));
    }
    named.parse()
}

/// The settings file of the adapter in `dir`, read and checked: its LoRA
/// settings and the base as named.
fn read_config(dir: &Path) -> Result<(LoraConfig, String), ModelError> {
    let file = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&file).map_err(|e| ModelError::io(&file, e))?;
    let peft: PeftConfig = serde_json::from_str(&text).map_err(|e| refuse(&file, e))?;
    let lora = peft.lora(&file)?;
    let named = peft
        .base_model_name_or_path
        .ok_or_else(|| refuse(&file, "no base_model_name_or_path"))?;
    Ok((lora, named))
}

/// Where the base of the adapter in `dir` is (see the module docs).
pub fn adapter_base(dir: &Path) -> Result<ModelSource, ModelError> {
    let (_, named) = read_config(dir)?;
    base_source(dir, &named)
}

/// Loads the adapter in `dir` onto its base (see the module docs); the
/// model's head and labels are the adapter's unless `opts.labels` asks for
/// another number of classes (then a new head is drawn).
pub fn load_adapter(dir: &Path, opts: &LoadOptions) -> Result<LoadedModel, ModelError> {
    let base_opts = LoadOptions {
        labels: None,
        ..opts.clone()
    };
    let base = super::load(&adapter_base(dir)?, &base_opts)?;
    load_adapter_on(dir, &base, opts)
}

/// [`load_adapter`] onto `base`, already loaded (on `opts.device`): the
/// result shares its weights, so adapters loaded onto one base hold it once.
pub fn load_adapter_on(
    dir: &Path,
    base: &LoadedModel,
    opts: &LoadOptions,
) -> Result<LoadedModel, ModelError> {
    let (lora, named) = read_config(dir)?;
    let mut weights = read_tensors(&dir.join(WEIGHTS_FILE), &opts.device)?;
    let score = weights
        .get("score.weight")
        .cloned()
        .unwrap_or_else(|| base.weights["score.weight"].clone());
    let mut config = base.config.clone();
    let rows = score.dim(0)?;
    // Without labels of its own (PEFT saves none), the base's when they fit.
    let base_fits = base.config.num_labels() == rows;
    config.labels = match saved_labels(dir)? {
        Some(labels) => labels,
        None if base_fits => base.config.labels.clone(),
        None => super::default_labels(rows),
    };
    if config.labels.len() != rows {
        let n = config.labels.len();
        return Err(refuse(
            dir,
            format!("config.json names {n} labels, the head has {rows}"),
        ));
    }
    let mut new_head = false;
    let score = match &opts.labels {
        Some(labels) if labels.len() != rows => {
            config.labels = labels.clone();
            new_head = true;
            init_score_head(&config, opts.head_seed, &opts.device)?
        }
        Some(labels) => {
            config.labels = labels.clone();
            score
        }
        None => score,
    };
    weights.insert("score.weight".into(), score.clone());
    // The base where it was found (an absolute folder, or the Hub id), so a
    // copy of this adapter written elsewhere still finds it.
    let adapter = Adapter {
        lora,
        weights,
        base: Some(base.origin.clone().unwrap_or(named)),
    };
    super::LoraNet::new(&config, &adapter.lora, &adapter.weights)?;
    let tokenizer = match TokenizerFiles::in_dir(dir) {
        Ok(files) => TextTokenizer::load(&files)?,
        Err(_) => base.tokenizer.clone(),
    };
    let mut base_weights = base.weights.clone();
    base_weights.insert("score.weight".into(), score);
    Ok(LoadedModel {
        config,
        weights: base_weights,
        tokenizer,
        layout: base.layout,
        new_head,
        adapter: Some(adapter),
        origin: base.origin.clone(),
        packed: base.packed.clone(),
    })
}

/// The labels of the `config.json` beside an adapter, if it has one.
fn saved_labels(dir: &Path) -> Result<Option<Vec<String>>, ModelError> {
    let file = dir.join("config.json");
    if !file.is_file() {
        return Ok(None);
    }
    Ok(Some(Gpt2Config::from_file(&file)?.labels))
}

/// Writes `adapter`'s files (and `config`'s labels) into the existing folder
/// `tmp`; atomicity is the caller's (see `save.rs`). No tokenizer: a
/// checkpoint uses the base's, and an exported model adds it (`export`).
pub fn write_adapter_files(
    config: &Gpt2Config,
    adapter: &Adapter,
    tmp: &Path,
) -> Result<(), ModelError> {
    let path = tmp.join(CONFIG_FILE);
    let text = serde_json::to_string_pretty(&PeftConfig::of(adapter)).expect("config serializes");
    std::fs::write(&path, text).map_err(|e| ModelError::io(&path, e))?;
    let st_path = tmp.join(WEIGHTS_FILE);
    let keys: HashMap<String, &candle_core::Tensor> = adapter
        .weights
        .iter()
        .map(|(name, t)| (format!("{KEY_PREFIX}{name}"), t))
        .collect();
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(
        keys.iter().map(|(k, t)| (k.as_str(), *t)),
        Some(metadata),
        &st_path,
    )
    .map_err(|e| super::writing_safetensors(&st_path, e))?;
    super::save::readable(&st_path)?;
    let config_path = tmp.join("config.json");
    let json = serde_json::to_string_pretty(&config.to_hf_json("GPT2ForSequenceClassification"))
        .expect("config serializes");
    std::fs::write(&config_path, json).map_err(|e| ModelError::io(&config_path, e))
}

/// The folder of an adapter's `adapter_model.safetensors`, read back with
/// canonical names (for resuming from a checkpoint).
pub fn read_adapter_weights(dir: &Path, device: &Device) -> Result<Weights, ModelError> {
    read_tensors(&dir.join(WEIGHTS_FILE), device)
}

/// The LoRA settings of the adapter in `dir`, or `None` when it holds none
/// (or its settings do not read).
pub fn adapter_settings(dir: &Path) -> Option<LoraConfig> {
    let file = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&file).ok()?;
    let peft: PeftConfig = serde_json::from_str(&text).ok()?;
    peft.lora(&file).ok()
}
