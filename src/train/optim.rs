//! AdamW with PyTorch's semantics, learning-rate schedules and gradient clipping.
//!
//! * AdamW: β1 0.9, β2 0.999, ε 1e-8, bias correction, decoupled weight decay
//!   (`p ← p·(1 − lr·wd)` before the Adam step) on the parameters given decay.
//! * Schedules as Hugging Face's `get_scheduler`: the learning rate of optimizer
//!   step `s` (1-based) is `lr · λ(s − 1)`, so step 1 of a warmup runs at 0.
//! * Clipping as `torch.nn.utils.clip_grad_norm_`: the pre-clip global L2 norm is
//!   returned, gradients are scaled by `min(1, max / (norm + 1e-6))`.
//!
//! The optimizer state (first and second moments, step count) is plain tensors
//! so it can be saved and loaded as safetensors, which candle-nn's `AdamW`
//! cannot do.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Tensor, Var};

use super::hyperparams::LrScheduler;
use super::TrainError;

/// Adam's decay rates and epsilon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Decoupled weight decay for parameters that take it.
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// One parameter under optimisation.
struct Slot {
    name: String,
    var: Var,
    decay: bool,
    m: Tensor,
    v: Tensor,
}

/// AdamW over named variables.
pub struct AdamW {
    slots: Vec<Slot>,
    config: AdamConfig,
    /// Optimizer steps taken so far (Adam's `t`).
    step: usize,
}

/// Whether Hugging Face's `Trainer` applies weight decay to a parameter: never to
/// biases or LayerNorm weights.
pub fn takes_weight_decay(name: &str) -> bool {
    let layer_norm = [".ln_1.", ".ln_2.", ".ln_f."]
        .iter()
        .any(|p| name.contains(p));
    !(name.ends_with(".bias") || layer_norm)
}

impl AdamW {
    /// An optimizer over `vars` (name, variable), with zeroed moments.
    pub fn new(vars: Vec<(String, Var)>, config: AdamConfig) -> candle_core::Result<Self> {
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                Ok(Slot {
                    decay: takes_weight_decay(&name),
                    m: var.zeros_like()?,
                    v: var.zeros_like()?,
                    name,
                    var,
                })
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            slots,
            config,
            step: 0,
        })
    }

    /// Optimizer steps taken.
    pub fn steps_taken(&self) -> usize {
        self.step
    }

    /// The variables, in a fixed order.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.slots.iter().map(|s| (s.name.as_str(), &s.var))
    }

    /// One AdamW update with `grads[i]` the gradient of the i-th variable.
    pub fn step(&mut self, grads: &[Tensor], lr: f64) -> candle_core::Result<()> {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        for (slot, g) in self.slots.iter_mut().zip(grads) {
            slot.m = ((&slot.m * c.beta1)? + (g * (1.0 - c.beta1))?)?;
            slot.v = ((&slot.v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let mut p = slot.var.as_tensor().clone();
            if slot.decay && c.weight_decay != 0.0 {
                p = (p * (1.0 - lr * c.weight_decay))?;
            }
            let denom = ((slot.v.sqrt()? / bc2_sqrt)? + c.eps)?;
            let update = (slot.m.div(&denom)? * (lr / bc1))?;
            slot.var.set(&(p - update)?)?;
        }
        Ok(())
    }

    /// Writes the moments and step count as safetensors.
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for s in &self.slots {
            tensors.insert(format!("m.{}", s.name), s.m.clone());
            tensors.insert(format!("v.{}", s.name), s.v.clone());
        }
        let meta = HashMap::from([("step".to_string(), self.step.to_string())]);
        safetensors::serialize_to_file(&tensors, Some(meta), path)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))
    }

    /// Restores moments and step count written by [`AdamW::save`].
    pub fn load(&mut self, path: &Path) -> Result<(), TrainError> {
        let bad = |why: String| TrainError::Checkpoint(format!("{}: {why}", path.display()));
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let (_, meta) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let step = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("step"))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no step count in metadata".into()))?;
        let dev = self.slots.first().map(|s| s.var.device().clone());
        let tensors =
            candle_core::safetensors::load_buffer(&bytes, &dev.unwrap_or(candle_core::Device::Cpu))
                .map_err(|e| bad(e.to_string()))?;
        for s in &mut self.slots {
            let get = |key: String| {
                tensors
                    .get(&key)
                    .filter(|t| t.shape() == s.var.shape())
                    .cloned()
                    .ok_or_else(|| bad(format!("moment `{key}` missing or misshaped")))
            };
            s.m = get(format!("m.{}", s.name))?;
            s.v = get(format!("v.{}", s.name))?;
        }
        self.step = step;
        Ok(())
    }
}

/// The learning rate of optimizer step `step` (1-based) out of `total`.
pub fn learning_rate(
    kind: LrScheduler,
    peak: f64,
    warmup: usize,
    total: usize,
    step: usize,
) -> f64 {
    let current = step.saturating_sub(1) as f64;
    let (warmup, total) = (warmup as f64, total as f64);
    if current < warmup {
        return peak * current / warmup.max(1.0);
    }
    let progress = (current - warmup) / (total - warmup).max(1.0);
    let factor = match kind {
        LrScheduler::Constant => 1.0,
        LrScheduler::Linear => ((total - current) / (total - warmup).max(1.0)).max(0.0),
        LrScheduler::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
    };
    peak * factor
}

/// Global L2 norm of `grads` before clipping; scales them to `max_norm` when larger
/// (no-op when `max_norm` is 0).
pub fn clip_grad_norm(grads: &mut [Tensor], max_norm: f64) -> candle_core::Result<f64> {
    let mut sum_sq = 0f64;
    for g in grads.iter() {
        sum_sq += f64::from(
            g.sqr()?
                .sum_all()?
                .to_dtype(candle_core::DType::F32)?
                .to_scalar::<f32>()?,
        );
    }
    let norm = sum_sq.sqrt();
    if max_norm > 0.0 {
        let coef = (max_norm / (norm + 1e-6)).min(1.0);
        if coef < 1.0 {
            for g in grads.iter_mut() {
                *g = (&*g * coef)?;
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_warmup_matches_hf() {
        let lr = |s| learning_rate(LrScheduler::Linear, 1e-3, 3, 24, s);
        assert_eq!(lr(1), 0.0);
        assert!((lr(2) - 1e-3 / 3.0).abs() < 1e-12);
        assert!((lr(4) - 1e-3).abs() < 1e-12);
        assert!((lr(24) - 1e-3 / 21.0).abs() < 1e-12);
        let cos = |s| learning_rate(LrScheduler::Cosine, 1.0, 0, 10, s);
        assert_eq!(cos(1), 1.0);
        assert!((cos(6) - 0.5).abs() < 1e-12);
        assert_eq!(learning_rate(LrScheduler::Constant, 0.1, 2, 10, 9), 0.1);
    }

    #[test]
    fn decay_skips_biases_and_layer_norms() {
        assert!(takes_weight_decay("transformer.h.0.attn.c_attn.weight"));
        assert!(takes_weight_decay("score.weight"));
        assert!(takes_weight_decay("transformer.wte.weight"));
        assert!(!takes_weight_decay("transformer.h.0.attn.c_attn.bias"));
        assert!(!takes_weight_decay("transformer.h.3.ln_1.weight"));
        assert!(!takes_weight_decay("transformer.ln_f.weight"));
    }

    #[test]
    fn adamw_first_step_matches_hand_computation() {
        let dev = candle_core::Device::Cpu;
        let var = Var::new(&[1.0f32, -2.0], &dev).unwrap();
        let mut opt = AdamW::new(
            vec![("w.weight".into(), var.clone())],
            AdamConfig {
                weight_decay: 0.1,
                ..Default::default()
            },
        )
        .unwrap();
        let g = Tensor::new(&[0.5f32, -0.25], &dev).unwrap();
        opt.step(&[g], 0.01).unwrap();
        // Step 1: m̂ = g, v̂ = g², update = lr·g/(|g|+ε) ≈ lr·sign(g); decay first.
        let p = var.as_tensor().to_vec1::<f32>().unwrap();
        let expect = [1.0 * (1.0 - 0.001) - 0.01, -2.0 * (1.0 - 0.001) + 0.01];
        for (a, b) in p.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
