//! AdamW with PyTorch's semantics: β1 0.9, β2 0.999, ε 1e-8, bias correction,
//! decoupled weight decay (`p ← p·(1 − lr·wd)` before the Adam step) on the
//! parameters given decay. Schedules are in `schedule.rs`, clipping in `clip.rs`.
//!
//! The optimizer state (first and second moments, step count) is plain tensors
//! so it can be saved and loaded as safetensors, which candle-nn's `AdamW`
//! cannot do.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use candle_core::{Tensor, Var};

use super::TrainError;
use crate::simd::{host_f32, vectorized};

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

/// Adam's moments of one parameter.
enum Moments {
    /// On the CPU, updated in place by one fused, parallel pass.
    Host { m: Vec<f32>, v: Vec<f32> },
    /// Elsewhere, updated with tensor ops.
    Device { m: Tensor, v: Tensor },
}

/// One parameter under optimisation.
struct Slot {
    name: String,
    var: Var,
    decay: bool,
    moments: Moments,
}

impl Slot {
    fn set_moments(&mut self, m: Tensor, v: Tensor) -> candle_core::Result<()> {
        self.moments = if host_f32(self.var.as_tensor()) {
            Moments::Host {
                m: m.flatten_all()?.to_vec1()?,
                v: v.flatten_all()?.to_vec1()?,
            }
        } else {
            Moments::Device { m, v }
        };
        Ok(())
    }
}

/// The per-step constants of the fused update.
struct AdamKernel<'a> {
    moments: std::sync::Mutex<(&'a mut [f32], &'a mut [f32])>,
    beta1: f32,
    beta2: f32,
    eps: f32,
    /// `1 − lr·wd`, or 1 without decay.
    decay: f32,
    /// `lr / (1 − β1ᵗ)`.
    step_size: f32,
    /// `√(1 − β2ᵗ)`.
    bc2_sqrt: f32,
    /// Gradient scale from clipping.
    grad_scale: f32,
}

impl candle_core::InplaceOp2 for AdamKernel<'_> {
    fn name(&self) -> &'static str {
        "adamw"
    }

    fn cpu_fwd(
        &self,
        dst: &mut candle_core::CpuStorage,
        dst_l: &candle_core::Layout,
        src: &candle_core::CpuStorage,
        src_l: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        use rayon::prelude::*;
        let (Some((p0, p1)), Some((g0, g1))) =
            (dst_l.contiguous_offsets(), src_l.contiguous_offsets())
        else {
            candle_core::bail!("adamw: parameter and gradient must be contiguous");
        };
        let candle_core::CpuStorage::F32(dst) = dst else {
            candle_core::bail!("adamw: parameters must be f32");
        };
        let p = &mut dst[p0..p1];
        let g = &src.as_slice::<f32>()?[g0..g1];
        let mut guard = self.moments.lock().expect("adam moments lock");
        let (m, v) = &mut *guard;
        let (b1, b2, eps, decay) = (self.beta1, self.beta2, self.eps, self.decay);
        let (step_size, bc2_sqrt, scale) = (self.step_size, self.bc2_sqrt, self.grad_scale);
        let update = |(p, g, m, v): (&mut [f32], &[f32], &mut [f32], &mut [f32])| {
            vectorized(|| {
                let moments = m.iter_mut().zip(v.iter_mut());
                for ((p, &g), (m, v)) in p.iter_mut().zip(g).zip(moments) {
                    let g = g * scale;
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * g * g;
                    *p = *p * decay - step_size * *m / (v.sqrt() / bc2_sqrt + eps);
                }
            })
        };
        // Small parameters (biases, LayerNorms) stay on this thread: a hand-off to
        // the pool costs more than their update.
        const CHUNK: usize = 1 << 15;
        if p.len() <= CHUNK {
            update((p, g, m, v));
        } else {
            p.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
                .for_each(|((p, g), (m, v))| update((p, g, m, v)));
        }
        Ok(())
    }
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
                let moments = if host_f32(var.as_tensor()) {
                    let n = var.elem_count();
                    Moments::Host {
                        m: vec![0.0; n],
                        v: vec![0.0; n],
                    }
                } else {
                    Moments::Device {
                        m: var.zeros_like()?,
                        v: var.zeros_like()?,
                    }
                };
                Ok(Slot {
                    decay: takes_weight_decay(&name),
                    moments,
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

    /// One AdamW update with `grads[i] · grad_scale` the gradient of the i-th
    /// variable (`grad_scale` carries gradient clipping into the same pass).
    pub fn step(&mut self, grads: &[Tensor], lr: f64, grad_scale: f64) -> candle_core::Result<()> {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        for (slot, g) in self.slots.iter_mut().zip(grads) {
            let decay = if slot.decay {
                1.0 - lr * c.weight_decay
            } else {
                1.0
            };
            match &mut slot.moments {
                Moments::Host { m, v } => {
                    let kernel = AdamKernel {
                        moments: std::sync::Mutex::new((m.as_mut_slice(), v.as_mut_slice())),
                        beta1: c.beta1 as f32,
                        beta2: c.beta2 as f32,
                        eps: c.eps as f32,
                        decay: decay as f32,
                        step_size: (lr / bc1) as f32,
                        bc2_sqrt: bc2_sqrt as f32,
                        grad_scale: grad_scale as f32,
                    };
                    slot.var
                        .as_tensor()
                        .inplace_op2(&g.contiguous()?, &kernel)?;
                }
                Moments::Device { m, v } => {
                    let g = (g * grad_scale)?;
                    *m = ((&*m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
                    *v = ((&*v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
                    let p = (slot.var.as_tensor() * decay)?;
                    let denom = ((v.sqrt()? / bc2_sqrt)? + c.eps)?;
                    let update = (m.div(&denom)? * (lr / bc1))?;
                    slot.var.set(&(p - update)?)?;
                }
            }
        }
        Ok(())
    }

    /// Writes the moments and step count as safetensors, streaming host
    /// moments straight from their buffers (copying them first doubled the
    /// optimizer's memory at every checkpoint).
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let mut tensors: Vec<(String, MomentView)> = Vec::with_capacity(2 * self.slots.len());
        for s in &self.slots {
            let shape = s.var.dims().to_vec();
            let (m, v) = match &s.moments {
                Moments::Host { m, v } => {
                    (Cow::Borrowed(m.as_slice()), Cow::Borrowed(v.as_slice()))
                }
                Moments::Device { m, v } => (
                    Cow::Owned(m.flatten_all()?.to_vec1()?),
                    Cow::Owned(v.flatten_all()?.to_vec1()?),
                ),
            };
            let view = |data| MomentView {
                data,
                shape: shape.clone(),
            };
            tensors.push((format!("m.{}", s.name), view(m)));
            tensors.push((format!("v.{}", s.name), view(v)));
        }
        let meta = HashMap::from([("step".to_string(), self.step.to_string())]);
        safetensors::serialize_to_file(tensors, Some(meta), path)
            .map_err(|e| crate::model::writing_safetensors(path, e).into())
    }

    /// Reads and checks moments and step count written by [`AdamW::save`],
    /// without applying them (see [`AdamW::restore`]).
    pub(crate) fn read(&self, path: &Path) -> Result<SavedMoments, TrainError> {
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
        let moments = self
            .slots
            .iter()
            .map(|s| {
                let get = |key: String| {
                    tensors
                        .get(&key)
                        .filter(|t| t.shape() == s.var.shape())
                        .cloned()
                        .ok_or_else(|| bad(format!("moment `{key}` missing or misshaped")))
                };
                Ok((get(format!("m.{}", s.name))?, get(format!("v.{}", s.name))?))
            })
            .collect::<Result<_, TrainError>>()?;
        Ok(SavedMoments { step, moments })
    }

    /// Applies moments read by [`AdamW::read`].
    pub(crate) fn restore(&mut self, saved: SavedMoments) -> candle_core::Result<()> {
        for (slot, (m, v)) in self.slots.iter_mut().zip(saved.moments) {
            slot.set_moments(m, v)?;
        }
        self.step = saved.step;
        Ok(())
    }
}

/// Optimizer state read from a checkpoint, checked against the optimizer's
/// variables: `(m, v)` per variable, in order, and Adam's step count.
pub(crate) struct SavedMoments {
    step: usize,
    moments: Vec<(Tensor, Tensor)>,
}

/// An f32 moment as a safetensors tensor, borrowed where it lives on the host.
struct MomentView<'a> {
    data: Cow<'a, [f32]>,
    shape: Vec<usize>,
}

impl safetensors::View for MomentView<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        if cfg!(target_endian = "little") {
            Cow::Borrowed(bytemuck::cast_slice(&self.data))
        } else {
            Cow::Owned(self.data.iter().flat_map(|x| x.to_le_bytes()).collect())
        }
    }

    fn data_len(&self) -> usize {
        self.data.len() * std::mem::size_of::<f32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        opt.step(&[g], 0.01, 1.0).unwrap();
        // Step 1: m̂ = g, v̂ = g², update = lr·g/(|g|+ε) ≈ lr·sign(g); decay first.
        let p = var.as_tensor().to_vec1::<f32>().unwrap();
        let expect = [1.0 * (1.0 - 0.001) - 0.01, -2.0 * (1.0 - 0.001) + 0.01];
        for (a, b) in p.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
