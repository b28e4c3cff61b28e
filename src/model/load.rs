//! Loading classifiers from a local folder or the Hugging Face Hub.
//!
//! Two weight layouts are understood, told apart by their keys:
//! * the Hub's base checkpoints (`gpt2`, `distilgpt2` as `GPT2Model`): unprefixed
//!   keys `wte.weight`, `h.0.attn.c_attn.weight`, …; a new, seeded head is made;
//! * Hugging Face's model classes (`save_pretrained` of a classifier or LM head):
//!   keys prefixed `transformer.`, plus `score.weight` for a classifier.
//!
//! Every tensor the configuration calls for is checked for presence and shape
//! before a model is built, so a bad folder fails with a message naming the file
//! and the tensor.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Var};
use candle_nn::{VarBuilder, VarMap};

use super::{
    adapter_parameter_shapes, init_score_head, parameter_shapes, Adapter, Gpt2Config,
    Gpt2ForSequenceClassification, LoraNet, ModelError, Weights,
};
use crate::data::{TextTokenizer, TokenizerFiles};
use crate::hub::{HubRepo, RepoKind};

/// Where a model comes from: a folder, or a Hub repo (`gpt2`, `owner/name@rev`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A local folder in one of the Hub's layouts.
    Dir(PathBuf),
    /// A model repository on the Hugging Face Hub.
    Hub(HubRepo),
}

impl std::str::FromStr for ModelSource {
    type Err = ModelError;

    /// An existing directory wins; otherwise the text must be a Hub id.
    fn from_str(text: &str) -> Result<Self, ModelError> {
        let path = Path::new(text);
        if path.is_dir() {
            return Ok(Self::Dir(path.to_path_buf()));
        }
        let looks_like_path = text.starts_with('.') || text.starts_with('/') || text.contains('\\');
        match HubRepo::parse(text, RepoKind::Model) {
            Some(repo) if !looks_like_path => Ok(Self::Hub(repo)),
            _ => Err(ModelError::BadSource(text.to_string())),
        }
    }
}

impl ModelSource {
    /// The Hub id (no revision) of a model that comes from the Hub; `None`
    /// for a folder.
    pub fn hub_id(&self) -> Option<&str> {
        match self {
            Self::Dir(_) => None,
            Self::Hub(repo) => Some(&repo.id),
        }
    }

    /// The source as PEFT's `base_model_name_or_path` names a base: the
    /// folder's absolute path, or the Hub id (PEFT keeps a revision apart).
    pub fn peft_name(&self) -> String {
        match self {
            Self::Dir(dir) => std::path::absolute(dir)
                .unwrap_or_else(|_| dir.clone())
                .display()
                .to_string(),
            Self::Hub(repo) => repo.id.clone(),
        }
    }
}

impl std::fmt::Display for ModelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(dir) => write!(f, "{}", dir.display()),
            Self::Hub(repo) => match &repo.revision {
                Some(rev) => write!(f, "{}@{rev}", repo.id),
                None => write!(f, "{}", repo.id),
            },
        }
    }
}

/// The files that make up a model, found locally or fetched into the Hub cache.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// `config.json`.
    pub config: PathBuf,
    /// `model.safetensors`, or the shards named by `model.safetensors.index.json`.
    pub weights: Vec<PathBuf>,
    /// `tokenizer.json`, or GPT-2's `vocab.json` and `merges.txt`.
    pub tokenizer: TokenizerFiles,
}

/// Finds (or downloads) the files of `source`.
pub fn resolve(source: &ModelSource) -> Result<ModelFiles, ModelError> {
    match source {
        ModelSource::Dir(dir) => resolve_dir(dir),
        ModelSource::Hub(repo) => resolve_hub(repo),
    }
}

fn resolve_dir(dir: &Path) -> Result<ModelFiles, ModelError> {
    let config = dir.join("config.json");
    if !config.is_file() {
        return Err(ModelError::MissingFile {
            dir: dir.to_path_buf(),
            what: "model configuration",
            looked_for: "config.json".into(),
        });
    }
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    let weights = if single.is_file() {
        vec![single]
    } else if index.is_file() {
        shard_names(&index)?.iter().map(|s| dir.join(s)).collect()
    } else {
        return Err(ModelError::MissingFile {
            dir: dir.to_path_buf(),
            what: "safetensors weights",
            looked_for: "model.safetensors, model.safetensors.index.json".into(),
        });
    };
    let tokenizer = TokenizerFiles::in_dir(dir).map_err(|_| ModelError::MissingFile {
        dir: dir.to_path_buf(),
        what: "tokenizer",
        looked_for: "tokenizer.json, vocab.json + merges.txt".into(),
    })?;
    Ok(ModelFiles {
        config,
        weights,
        tokenizer,
    })
}

fn resolve_hub(repo: &HubRepo) -> Result<ModelFiles, ModelError> {
    let config = repo.get("config.json")?;
    let weights = match repo.get("model.safetensors") {
        Ok(file) => vec![file],
        Err(first) => match repo.get("model.safetensors.index.json") {
            Ok(index) => shard_names(&index)?
                .iter()
                .map(|s| repo.get(s))
                .collect::<Result<_, _>>()?,
            Err(_) => return Err(first.into()),
        },
    };
    let tokenizer = match repo.get("tokenizer.json") {
        Ok(file) => TokenizerFiles::Json(file),
        Err(first) => match (repo.get("vocab.json"), repo.get("merges.txt")) {
            (Ok(vocab), Ok(merges)) => TokenizerFiles::VocabMerges { vocab, merges },
            _ => return Err(first.into()),
        },
    };
    Ok(ModelFiles {
        config,
        weights,
        tokenizer,
    })
}

fn shard_names(index: &Path) -> Result<Vec<String>, ModelError> {
    let text = std::fs::read_to_string(index).map_err(|e| ModelError::io(index, e))?;
    let bad = |reason: String| ModelError::Config {
        file: index.to_path_buf(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let map = value["weight_map"]
        .as_object()
        .ok_or_else(|| bad("no weight_map object".into()))?;
    let mut names: Vec<String> = map
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// How the weights on disk were named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightLayout {
    /// Unprefixed keys (`wte.weight`), as the Hub's `gpt2`.
    Base,
    /// `transformer.`-prefixed keys, as Hugging Face's model classes save them.
    Classifier,
}

impl WeightLayout {
    /// The key of a canonical parameter name in this layout.
    pub fn file_key(self, canonical: &str) -> &str {
        match self {
            Self::Base => canonical.strip_prefix("transformer.").unwrap_or(canonical),
            Self::Classifier => canonical,
        }
    }
}

/// What to load a model as.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Class names to use. When their number differs from the checkpoint's head
    /// (or there is no head), a new head is drawn from `head_seed`.
    pub labels: Option<Vec<String>>,
    /// Seed of a newly made score head.
    pub head_seed: u64,
    /// Where the weights go.
    pub device: Device,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            labels: None,
            head_seed: 42,
            device: Device::Cpu,
        }
    }
}

/// A checked configuration, its weights and its tokenizer.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The configuration (labels as requested).
    pub config: Gpt2Config,
    /// Every parameter of [`parameter_shapes`], in f32.
    pub weights: Weights,
    /// The tokenizer shipped with the model (pad id and length still to be set).
    pub tokenizer: TextTokenizer,
    /// How the weights file named the tensors: unprefixed (a base model such as the Hub's
    /// `gpt2`) or `transformer.`-prefixed (a classifier).
    pub layout: WeightLayout,
    /// Whether the score head was newly made rather than loaded.
    pub new_head: bool,
    /// The LoRA adapter on top of `weights`, for an adapter folder (then
    /// `weights` is its base, with the adapter's head as `score.weight`).
    pub adapter: Option<Adapter>,
    /// Where `weights` were read from, as an adapter's
    /// `base_model_name_or_path` names its base (an absolute folder or a Hub
    /// id), so an adapter trained on them records its base from the start
    /// (checkpoints included); `None` for weights made in memory.
    pub origin: Option<String>,
    /// The Conv1D weights of attention and MLP packed for int8 or bf16
    /// inference (see [`LoadedModel::pack`]), shared by every adapter loaded
    /// on this base; those weights are then absent from `weights`. `None`
    /// for fp32.
    pub packed: Option<std::sync::Arc<super::PackedLayers>>,
}

impl LoadedModel {
    /// Builds the network over these weights (for inference), with the
    /// adapter on every row when there is one.
    pub fn build(&self) -> Result<Gpt2ForSequenceClassification, ModelError> {
        let vb = VarBuilder::from_tensors(self.weights.clone(), DType::F32, &self.weights_device());
        let packed = self.packed.as_deref();
        let net = Gpt2ForSequenceClassification::new_packed(&self.config, vb, packed)?;
        match &self.adapter {
            Some(a) => Ok(net.with_adapter(LoraNet::new(&self.config, &a.lora, &a.weights)?)),
            None => Ok(net),
        }
    }

    /// The network with the base frozen and `adapter`'s tensors as fresh
    /// variables, listed in [`adapter_parameter_shapes`] order (the
    /// optimizer's and the checkpoints'): only they get gradients.
    pub fn build_adapter_trainable(
        &self,
        adapter: &Adapter,
    ) -> Result<(Gpt2ForSequenceClassification, Vec<(String, Var)>), ModelError> {
        self.require_fp32("training an adapter")?;
        let vars = adapter_parameter_shapes(&self.config, &adapter.lora)
            .into_iter()
            .map(|(name, _)| {
                let t = adapter
                    .weights
                    .get(&name)
                    .ok_or_else(|| ModelError::Adapter {
                        reason: format!("missing tensor `{name}`"),
                    })?;
                Ok((name, Var::from_tensor(t)?))
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let tensors = vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        let vb = VarBuilder::from_tensors(self.weights.clone(), DType::F32, &self.weights_device());
        let net = Gpt2ForSequenceClassification::new(&self.config, vb)?;
        let lora = LoraNet::new(&self.config, &adapter.lora, &tensors)?;
        Ok((net.with_adapter(lora), vars))
    }

    /// A plain classifier with the adapter (if any) merged into its weights.
    pub fn merged(&self) -> Result<Self, ModelError> {
        let Some(adapter) = &self.adapter else {
            return Ok(self.clone());
        };
        self.require_fp32("merging an adapter")?;
        Ok(Self {
            weights: adapter.merge_into(&self.config, &self.weights)?,
            adapter: None,
            ..self.clone()
        })
    }

    /// Builds the network over fresh variables holding these weights (for
    /// training): gradients of a loss reach the returned map's variables.
    pub fn build_trainable(&self) -> Result<(Gpt2ForSequenceClassification, VarMap), ModelError> {
        self.require_fp32("training")?;
        let varmap = VarMap::new();
        {
            let mut vars = varmap
                .data()
                .lock()
                .expect("a fresh VarMap is not poisoned");
            for (name, tensor) in &self.weights {
                vars.insert(name.clone(), Var::from_tensor(tensor)?);
            }
        }
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &self.weights_device());
        let model = Gpt2ForSequenceClassification::new(&self.config, vb)?;
        Ok((model, varmap))
    }

    /// [`Self::build_trainable`] with the variables listed in
    /// [`parameter_shapes`] order (the optimizer's and the checkpoints'), and a
    /// gradient sink for `train::step_gradients` (see
    /// [`Gpt2ForSequenceClassification::with_gradient_sink`]).
    pub fn build_trainable_ordered(
        &self,
    ) -> Result<(Gpt2ForSequenceClassification, Vec<(String, Var)>), ModelError> {
        let (net, varmap) = self.build_trainable()?;
        let net = net.with_gradient_sink();
        let map = varmap.data().lock().expect("varmap lock");
        let vars = parameter_shapes(&self.config)
            .into_iter()
            .map(|(name, _)| (name.clone(), map[&name].clone()))
            .collect();
        Ok((net, vars))
    }

    /// The model with its weights on `device` (the same model when they are
    /// there already).
    pub fn to_device(self, device: &Device) -> Result<Self, ModelError> {
        if self.weights_device().same_device(device) {
            return Ok(self);
        }
        if self.packed.is_some() {
            return Err(super::packed::cpu_only(self.precision(), device));
        }
        let weights = self
            .weights
            .into_iter()
            .map(|(name, t)| Ok((name, t.to_device(device)?)))
            .collect::<Result<_, candle_core::Error>>()?;
        let adapter = match self.adapter {
            Some(a) => Some(Adapter {
                weights: a
                    .weights
                    .into_iter()
                    .map(|(name, t)| Ok((name, t.to_device(device)?)))
                    .collect::<Result<_, candle_core::Error>>()?,
                ..a
            }),
            None => None,
        };
        Ok(Self {
            weights,
            adapter,
            ..self
        })
    }

    pub(super) fn weights_device(&self) -> Device {
        self.weights
            .values()
            .next()
            .map_or(Device::Cpu, |t| t.device().clone())
    }
}

/// Loads `source`: resolves its files, reads and checks config and weights.
/// A folder holding a PEFT adapter loads as the adapter on its base (see
/// `peft.rs`).
pub fn load(source: &ModelSource, opts: &LoadOptions) -> Result<LoadedModel, ModelError> {
    if let ModelSource::Dir(dir) = source {
        if super::peft::is_adapter_dir(dir) {
            return super::peft::load_adapter(dir, opts);
        }
    }
    let files = resolve(source)?;
    let mut config = Gpt2Config::from_file(&files.config)?;
    let mut reuse_head = true;
    if let Some(labels) = &opts.labels {
        reuse_head = labels.len() == config.num_labels();
        config.labels = labels.clone();
        config.validate().map_err(|reason| ModelError::Config {
            file: files.config.clone(),
            reason,
        })?;
    }
    let tokenizer = TextTokenizer::load(&files.tokenizer)?;
    let (weights, layout, new_head) = read_weights(&files.weights, &config, reuse_head, opts)?;
    Ok(LoadedModel {
        config,
        weights,
        tokenizer,
        layout,
        new_head,
        adapter: None,
        origin: Some(source.peft_name()),
        packed: None,
    })
}

fn read_weights(
    paths: &[PathBuf],
    cfg: &Gpt2Config,
    reuse_head: bool,
    opts: &LoadOptions,
) -> Result<(Weights, WeightLayout, bool), ModelError> {
    let files = paths
        .iter()
        .map(|p| {
            // SAFETY: the file is mapped read-only and only read while `files` lives;
            // tuneserve never writes into a checkpoint it has open.
            unsafe { candle_core::safetensors::MmapedSafetensors::new(p) }.map_err(|e| {
                ModelError::Safetensors {
                    file: p.clone(),
                    reason: e.to_string(),
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let find = |key: &str| {
        files
            .iter()
            .zip(paths)
            .find_map(|(st, p)| st.get(key).ok().map(|view| (view, p)))
    };
    let layout = if find("transformer.wte.weight").is_some() {
        WeightLayout::Classifier
    } else {
        WeightLayout::Base
    };
    let mut weights = Weights::new();
    let mut new_head = false;
    for (name, shape) in parameter_shapes(cfg) {
        let key = layout.file_key(&name);
        let found = find(key);
        if name == "score.weight" {
            let head_fits = found.as_ref().is_some_and(|(v, _)| v.shape() == shape);
            if !(reuse_head && head_fits) {
                weights.insert(name, init_score_head(cfg, opts.head_seed, &opts.device)?);
                new_head = true;
                continue;
            }
        }
        let (view, file) = found.ok_or_else(|| ModelError::MissingTensor {
            file: paths[0].clone(),
            name: key.to_string(),
        })?;
        if view.shape() != shape {
            return Err(ModelError::WrongShape {
                file: file.clone(),
                name: key.to_string(),
                expected: shape,
                got: view.shape().to_vec(),
            });
        }
        let tensor = candle_core::safetensors::Load::load(&view, &Device::Cpu)
            .map_err(|e| ModelError::Safetensors {
                file: file.clone(),
                reason: format!("tensor `{key}`: {e}"),
            })?
            .to_dtype(DType::F32)?
            .to_device(&opts.device)?;
        weights.insert(name, tensor);
    }
    Ok((weights, layout, new_head))
}
