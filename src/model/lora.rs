//! Low-rank adapters (LoRA) as Hugging Face PEFT defines them for GPT-2.
//!
//! An adapted Conv1D computes `y = x·W + b + scaling · dropout(x)·Aᵀ·Bᵀ` with
//! `A` `[r, in]`, `B` `[out, r]` and `scaling = alpha / r` (`alpha / √r` with
//! rsLoRA); the base `W` (stored `[in, out]`, PEFT's `fan_in_fan_out`) and `b`
//! stay frozen. The score head trains in full (PEFT's `modules_to_save`). A new
//! adapter starts with `A` Kaiming-uniform (`a = √5`, i.e. uniform in
//! `±1/√in`) and `B` zero, so it begins as the base model.
//!
//! An [`Adapter`] holds the trained tensors under canonical names
//! (`transformer.h.0.attn.c_attn.lora_A.weight`, …, `score.weight`); PEFT's
//! files prefix them with `base_model.model.` (see `peft.rs`).

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Uniform};
use serde::{Deserialize, Serialize};

use super::{Gpt2Config, Weights};

/// A Conv1D layer of a GPT-2 block, as PEFT's `target_modules` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum LoraTarget {
    /// The attention's query/key/value projection (`attn.c_attn`).
    #[serde(rename = "c_attn", alias = "attn.c_attn")]
    CAttn,
    /// Both output projections, attention's and the MLP's (PEFT matches the
    /// name `c_proj` in both places).
    #[serde(rename = "c_proj")]
    CProj,
    /// The MLP's first layer (`mlp.c_fc`).
    #[serde(rename = "c_fc", alias = "mlp.c_fc")]
    CFc,
    /// The attention's output projection only.
    #[serde(rename = "attn.c_proj")]
    AttnCProj,
    /// The MLP's output projection only.
    #[serde(rename = "mlp.c_proj")]
    MlpCProj,
}

/// Where a block's Conv1D layers sit, in forward order.
pub const MODULES: [&str; 4] = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"];

impl LoraTarget {
    /// Whether this target names `module` (one of [`MODULES`]): PEFT's rule,
    /// the whole name or its last dotted components.
    pub fn matches(self, module: &str) -> bool {
        let suffix = match self {
            Self::CAttn => "c_attn",
            Self::CProj => "c_proj",
            Self::CFc => "c_fc",
            Self::AttnCProj => "attn.c_proj",
            Self::MlpCProj => "mlp.c_proj",
        };
        module == suffix || module.ends_with(&format!(".{suffix}"))
    }

    /// The name PEFT writes in `target_modules`.
    pub fn peft_name(self) -> &'static str {
        match self {
            Self::CAttn => "c_attn",
            Self::CProj => "c_proj",
            Self::CFc => "c_fc",
            Self::AttnCProj => "attn.c_proj",
            Self::MlpCProj => "mlp.c_proj",
        }
    }
}

/// A LoRA adapter's shape and scaling (the `hyperparameters.lora` of a job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank of the update `B·A`.
    pub r: usize,
    /// Scales the update: `alpha / r` (or `alpha / √r` with `use_rslora`).
    pub alpha: f64,
    /// Dropout on the adapter's input (training only; the base path has none).
    pub dropout: f64,
    /// Which Conv1D layers get an adapter, in every block.
    pub target_modules: Vec<LoraTarget>,
    /// Rank-stabilised scaling `alpha / √r`.
    pub use_rslora: bool,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            r: 8,
            alpha: 16.0,
            dropout: 0.1,
            target_modules: vec![LoraTarget::CAttn],
            use_rslora: false,
        }
    }
}

impl LoraConfig {
    /// The factor the update `B·A` is multiplied by.
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    /// Whether the block's Conv1D `module` (one of [`MODULES`]) is adapted.
    pub fn adapts(&self, module: &str) -> bool {
        self.target_modules.iter().any(|t| t.matches(module))
    }

    /// Whether two adapters have the same tensors' shapes and scaling (the
    /// dropout may differ: it only acts in training).
    pub fn same_shape(&self, other: &Self) -> bool {
        self.r == other.r
            && self.scaling() == other.scaling()
            && MODULES.iter().all(|m| self.adapts(m) == other.adapts(m))
    }
}

/// `(in, out)` of a block's Conv1D `module`.
pub fn module_dims(cfg: &Gpt2Config, module: &str) -> (usize, usize) {
    let e = cfg.n_embd;
    match module {
        "attn.c_attn" => (e, 3 * e),
        "attn.c_proj" => (e, e),
        "mlp.c_fc" => (e, cfg.n_inner),
        _ => (cfg.n_inner, e),
    }
}

/// The canonical names of the `A` and `B` of `module` in block `layer`.
pub fn lora_names(layer: usize, module: &str) -> (String, String) {
    let p = format!("transformer.h.{layer}.{module}");
    (format!("{p}.lora_A.weight"), format!("{p}.lora_B.weight"))
}

/// Every tensor an adapter trains, with its shape, in a stable order: each
/// block's adapted layers in forward order, then `score.weight`.
pub fn adapter_parameter_shapes(cfg: &Gpt2Config, lora: &LoraConfig) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    for layer in 0..cfg.n_layer {
        for module in MODULES.iter().filter(|m| lora.adapts(m)) {
            let (n_in, n_out) = module_dims(cfg, module);
            let (a, b) = lora_names(layer, module);
            out.push((a, vec![lora.r, n_in]));
            out.push((b, vec![n_out, lora.r]));
        }
    }
    out.push(("score.weight".into(), vec![cfg.num_labels(), cfg.n_embd]));
    out
}

/// A LoRA adapter: its settings, its tensors and the base it adapts.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// Rank, scaling and targets.
    pub lora: LoraConfig,
    /// `lora_A`/`lora_B` of every adapted layer and `score.weight`, named as
    /// in [`adapter_parameter_shapes`].
    pub weights: Weights,
    /// The base model as PEFT's `base_model_name_or_path` names it (a Hub id
    /// or a folder); `None` for an adapter trained here from a plain model,
    /// whose exporter names the base.
    pub base: Option<String>,
}

impl Adapter {
    /// A new adapter as PEFT makes one: every `A` Kaiming-uniform from `seed`,
    /// every `B` zero, and `score` (the base's head, or a new one) as the
    /// trained head.
    pub fn init(
        cfg: &Gpt2Config,
        lora: &LoraConfig,
        score: Tensor,
        base: Option<String>,
        seed: u64,
        dev: &Device,
    ) -> candle_core::Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(2); // apart from the body's (0) and the head's (1) draws
        let mut weights = Weights::new();
        for (name, shape) in adapter_parameter_shapes(cfg, lora) {
            let tensor = if name.ends_with("lora_A.weight") {
                let bound = 1.0 / (shape[1] as f32).sqrt();
                let dist = Uniform::new(-bound, bound).expect("a non-empty range");
                let data: Vec<f32> = (0..shape[0] * shape[1])
                    .map(|_| dist.sample(&mut rng))
                    .collect();
                Tensor::from_vec(data, shape.as_slice(), dev)?
            } else if name.ends_with("lora_B.weight") {
                Tensor::zeros(shape.as_slice(), candle_core::DType::F32, dev)?
            } else {
                score.clone()
            };
            weights.insert(name, tensor);
        }
        Ok(Self {
            lora: lora.clone(),
            weights,
            base,
        })
    }

    /// Bytes of the adapter's tensors (what it adds to a loaded base).
    pub fn bytes(&self) -> usize {
        self.weights
            .values()
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }

    /// `weights` with this adapter merged in: every adapted `W` `[in, out]`
    /// plus `scaling · (B·A)ᵀ`, and the adapter's head as `score.weight`. The
    /// result is a plain classifier (Hugging Face's `merge_and_unload`).
    pub fn merge_into(&self, cfg: &Gpt2Config, weights: &Weights) -> candle_core::Result<Weights> {
        let mut merged = weights.clone();
        for layer in 0..cfg.n_layer {
            for module in MODULES.iter().filter(|m| self.lora.adapts(m)) {
                let (a, b) = lora_names(layer, module);
                let key = format!("transformer.h.{layer}.{module}.weight");
                let delta =
                    (self.weights[&b].matmul(&self.weights[&a])?.t()? * self.lora.scaling())?;
                let w = (&weights[&key] + delta)?;
                merged.insert(key, w);
            }
        }
        merged.insert("score.weight".into(), self.weights["score.weight"].clone());
        Ok(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_match_as_peft_matches_names() {
        use LoraTarget::*;
        let hits = |t: LoraTarget| MODULES.iter().filter(|m| t.matches(m)).count();
        assert_eq!(
            [CAttn, CProj, CFc, AttnCProj, MlpCProj].map(hits),
            [1, 2, 1, 1, 1]
        );
        assert!(CProj.matches("mlp.c_proj") && !AttnCProj.matches("mlp.c_proj"));
    }

    #[test]
    fn scaling_and_shapes_follow_the_config() {
        let cfg = crate::model::Preset::Tiny.config();
        let lora = LoraConfig::default();
        assert_eq!(lora.scaling(), 2.0);
        let rs = LoraConfig {
            r: 4,
            use_rslora: true,
            ..lora.clone()
        };
        assert_eq!(rs.scaling(), 8.0);
        let shapes = adapter_parameter_shapes(&cfg, &lora);
        assert_eq!(shapes.len(), 2 * cfg.n_layer + 1);
        assert_eq!(shapes[0].1, vec![8, 64]);
        assert_eq!(shapes[1].1, vec![192, 8]);
        assert!(lora.same_shape(&LoraConfig {
            dropout: 0.0,
            ..lora.clone()
        }));
        assert!(!lora.same_shape(&rs));
    }

    #[test]
    fn a_new_adapter_is_kaiming_a_and_zero_b() {
        let cfg = crate::model::Preset::Tiny.config();
        let score = Tensor::zeros((3, 64), candle_core::DType::F32, &Device::Cpu).unwrap();
        let lora = LoraConfig::default();
        let ad = Adapter::init(&cfg, &lora, score, None, 5, &Device::Cpu).unwrap();
        let (a, b) = lora_names(0, "attn.c_attn");
        let a = ad.weights[&a]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let bound = 1.0 / 8.0;
        assert!(a.iter().all(|v| v.abs() <= bound));
        assert!(a.iter().any(|v| v.abs() > bound / 2.0));
        let b = ad.weights[&b]
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(b, 0.0);
    }
}
