//! GPT-2 configuration, read from and written to Hugging Face's `config.json`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};

use super::ModelError;

/// Architectures whose weights hold a GPT-2 body tuneserve can use.
const GPT2_ARCHITECTURES: &[&str] = &[
    "GPT2Model",
    "GPT2LMHeadModel",
    "GPT2ForSequenceClassification",
    "GPT2DoubleHeadsModel",
    "GPT2ForTokenClassification",
    "GPT2ForQuestionAnswering",
];

/// The feed-forward activation (`activation_function` in `config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`: the tanh approximation GPT-2 uses.
    GeluTanh,
    /// `gelu`: the exact, erf-based GELU.
    GeluErf,
    /// `relu`.
    Relu,
}

impl Activation {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Self::GeluTanh),
            "gelu" => Some(Self::GeluErf),
            "relu" => Some(Self::Relu),
            _ => None,
        }
    }

    fn hf_name(self) -> &'static str {
        match self {
            Self::GeluTanh => "gelu_new",
            Self::GeluErf => "gelu",
            Self::Relu => "relu",
        }
    }
}

/// A GPT-2 classifier's configuration.
///
/// Invariants (checked by [`Gpt2Config::from_json`]): `n_embd % n_head == 0`,
/// every size is positive, `labels` is non-empty.
#[derive(Debug, Clone, PartialEq)]
pub struct Gpt2Config {
    /// Tokens in the vocabulary (rows of `wte`).
    pub vocab_size: usize,
    /// Longest sequence the model accepts (rows of `wpe`).
    pub n_positions: usize,
    /// Hidden width.
    pub n_embd: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Attention heads per block.
    pub n_head: usize,
    /// Feed-forward width (`n_inner`, default `4 * n_embd`).
    pub n_inner: usize,
    /// Feed-forward activation.
    pub activation: Activation,
    /// LayerNorm epsilon.
    pub layer_norm_epsilon: f64,
    /// Dropout after each residual branch.
    pub resid_pdrop: f32,
    /// Dropout on token + position embeddings.
    pub embd_pdrop: f32,
    /// Dropout on attention probabilities.
    pub attn_pdrop: f32,
    /// Standard deviation of the initial weights.
    pub initializer_range: f64,
    /// Divide attention scores by `sqrt(head_dim)`.
    pub scale_attn_weights: bool,
    /// Further divide attention scores by `layer_index + 1`.
    pub scale_attn_by_inverse_layer_idx: bool,
    /// Padding token; `None` means "use eos", as the recipe does.
    pub pad_token_id: Option<u32>,
    /// Beginning-of-sequence token.
    pub bos_token_id: u32,
    /// End-of-sequence token (GPT-2: 50256).
    pub eos_token_id: u32,
    /// Class names by id: `labels[i]` is `id2label[i]`.
    pub labels: Vec<String>,
}

#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    architectures: Option<Vec<String>>,
    vocab_size: Option<usize>,
    n_positions: Option<usize>,
    n_embd: Option<usize>,
    n_layer: Option<usize>,
    n_head: Option<usize>,
    n_inner: Option<usize>,
    activation_function: Option<String>,
    layer_norm_epsilon: Option<f64>,
    resid_pdrop: Option<f32>,
    embd_pdrop: Option<f32>,
    attn_pdrop: Option<f32>,
    initializer_range: Option<f64>,
    scale_attn_weights: Option<bool>,
    scale_attn_by_inverse_layer_idx: Option<bool>,
    pad_token_id: Option<u32>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<u32>,
    id2label: Option<BTreeMap<String, String>>,
    num_labels: Option<usize>,
}

impl Gpt2Config {
    /// GPT-2 of the given shape with Hugging Face's defaults for everything else.
    pub fn with_shape(n_layer: usize, n_head: usize, n_embd: usize, n_positions: usize) -> Self {
        Self {
            vocab_size: 50257,
            n_positions,
            n_embd,
            n_layer,
            n_head,
            n_inner: 4 * n_embd,
            activation: Activation::GeluTanh,
            layer_norm_epsilon: 1e-5,
            resid_pdrop: 0.1,
            embd_pdrop: 0.1,
            attn_pdrop: 0.1,
            initializer_range: 0.02,
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
            pad_token_id: None,
            bos_token_id: 50256,
            eos_token_id: 50256,
            labels: default_labels(2),
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// The id used for padding: `pad_token_id`, else `eos_token_id`.
    pub fn pad_id(&self) -> u32 {
        self.pad_token_id.unwrap_or(self.eos_token_id)
    }

    /// Number of classes of the head.
    pub fn num_labels(&self) -> usize {
        self.labels.len()
    }

    /// Reads and validates `config.json`; `file` names it in errors.
    pub fn from_file(file: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(file).map_err(|e| ModelError::io(file, e))?;
        Self::from_json(&text, file)
    }

    /// Parses and validates the text of a `config.json`; `file` names it in errors.
    pub fn from_json(text: &str, file: &Path) -> Result<Self, ModelError> {
        let bad = |reason: String| ModelError::Config {
            file: file.to_path_buf(),
            reason,
        };
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        if let Some(kind) = raw.model_type.as_deref().filter(|k| *k != "gpt2") {
            return Err(ModelError::UnsupportedArchitecture {
                file: file.to_path_buf(),
                found: format!("model_type \"{kind}\""),
            });
        }
        if let Some(archs) = &raw.architectures {
            if let Some(other) = archs
                .iter()
                .find(|a| !GPT2_ARCHITECTURES.contains(&a.as_str()))
            {
                return Err(ModelError::UnsupportedArchitecture {
                    file: file.to_path_buf(),
                    found: format!("architecture \"{other}\""),
                });
            }
        }
        let base = Self::with_shape(12, 12, 768, 1024);
        let n_embd = raw.n_embd.unwrap_or(base.n_embd);
        let activation = match raw.activation_function.as_deref() {
            None => Activation::GeluTanh,
            Some(name) => Activation::parse(name)
                .ok_or_else(|| bad(format!("unsupported activation_function \"{name}\"")))?,
        };
        let labels = match raw.id2label {
            Some(map) if !map.is_empty() => labels_from_id2label(&map).map_err(bad)?,
            _ => default_labels(raw.num_labels.unwrap_or(2)),
        };
        let config = Self {
            vocab_size: raw.vocab_size.unwrap_or(base.vocab_size),
            n_positions: raw.n_positions.unwrap_or(base.n_positions),
            n_embd,
            n_layer: raw.n_layer.unwrap_or(base.n_layer),
            n_head: raw.n_head.unwrap_or(base.n_head),
            n_inner: raw.n_inner.unwrap_or(4 * n_embd),
            activation,
            layer_norm_epsilon: raw.layer_norm_epsilon.unwrap_or(base.layer_norm_epsilon),
            resid_pdrop: raw.resid_pdrop.unwrap_or(base.resid_pdrop),
            embd_pdrop: raw.embd_pdrop.unwrap_or(base.embd_pdrop),
            attn_pdrop: raw.attn_pdrop.unwrap_or(base.attn_pdrop),
            initializer_range: raw.initializer_range.unwrap_or(base.initializer_range),
            scale_attn_weights: raw.scale_attn_weights.unwrap_or(true),
            scale_attn_by_inverse_layer_idx: raw.scale_attn_by_inverse_layer_idx.unwrap_or(false),
            pad_token_id: raw.pad_token_id,
            bos_token_id: raw.bos_token_id.unwrap_or(base.bos_token_id),
            eos_token_id: raw.eos_token_id.unwrap_or(base.eos_token_id),
            labels,
        };
        config.validate().map_err(bad)?;
        Ok(config)
    }

    /// Checks the invariants documented on the type.
    pub fn validate(&self) -> Result<(), String> {
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("n_positions", self.n_positions),
            ("n_embd", self.n_embd),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_inner", self.n_inner),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive"));
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return Err(format!(
                "n_embd ({}) is not a multiple of n_head ({})",
                self.n_embd, self.n_head
            ));
        }
        if self.labels.is_empty() {
            return Err("the classifier needs at least one label".into());
        }
        for p in [self.resid_pdrop, self.embd_pdrop, self.attn_pdrop] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("dropout probability {p} is outside [0, 1)"));
            }
        }
        Ok(())
    }

    /// The `config.json` Hugging Face Transformers writes for this model.
    ///
    /// `architecture` is `GPT2ForSequenceClassification` for a classifier and
    /// `GPT2LMHeadModel` for a base checkpoint like the Hub's `gpt2`.
    pub fn to_hf_json(&self, architecture: &str) -> Value {
        let id2label: BTreeMap<String, &String> = self
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), l))
            .collect();
        let label2id: BTreeMap<&String, usize> = self
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l, i))
            .collect();
        json!({
            "architectures": [architecture],
            "model_type": "gpt2",
            "activation_function": self.activation.hf_name(),
            "attn_pdrop": self.attn_pdrop,
            "bos_token_id": self.bos_token_id,
            "embd_pdrop": self.embd_pdrop,
            "eos_token_id": self.eos_token_id,
            "pad_token_id": self.pad_id(),
            "id2label": id2label,
            "label2id": label2id,
            "initializer_range": self.initializer_range,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "n_embd": self.n_embd,
            "n_head": self.n_head,
            "n_inner": self.n_inner,
            "n_layer": self.n_layer,
            "n_positions": self.n_positions,
            "resid_pdrop": self.resid_pdrop,
            "scale_attn_weights": self.scale_attn_weights,
            "scale_attn_by_inverse_layer_idx": self.scale_attn_by_inverse_layer_idx,
            "reorder_and_upcast_attn": false,
            "summary_activation": null,
            "summary_first_dropout": 0.1,
            "summary_proj_to_labels": true,
            "summary_type": "cls_index",
            "summary_use_proj": true,
            "tie_word_embeddings": true,
            "torch_dtype": "float32",
            "use_cache": true,
            "vocab_size": self.vocab_size,
        })
    }
}

/// `LABEL_0`, `LABEL_1`, … as Hugging Face names classes it was not told about.
pub fn default_labels(n: usize) -> Vec<String> {
    (0..n).map(crate::data::default_label).collect()
}

fn labels_from_id2label(map: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
    let mut labels = vec![None; map.len()];
    for (id, name) in map {
        let i: usize = id
            .parse()
            .map_err(|_| format!("id2label key \"{id}\" is not an integer"))?;
        let slot = labels
            .get_mut(i)
            .ok_or_else(|| format!("id2label ids must be 0..{}, found {i}", map.len()))?;
        *slot = Some(name.clone());
    }
    let labels: Vec<String> = labels
        .into_iter()
        .enumerate()
        .map(|(i, l)| l.ok_or_else(|| format!("id2label has no name for id {i}")))
        .collect::<Result<_, _>>()?;
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = labels.iter().find(|l| !seen.insert(*l)) {
        return Err(format!("id2label names \"{dup}\" twice"));
    }
    Ok(labels)
}
