//! Conv1D weights held in a narrower form for inference: int8 (quantized per
//! output channel) or bf16, made once when a model is loaded to serve
//! (`serve --infer-precision`, `classify --precision`).
//!
//! The packed weights replace the f32 ones in the [`LoadedModel`], so the
//! memory a served model holds is the narrow one (int8: about a quarter of
//! the Conv1D bytes, bf16 half), and every adapter loaded on a packed base
//! shares its packing: the base's products run packed, the adapters'
//! low-rank updates in f32. Embeddings, LayerNorm, biases and the score head
//! stay f32. Packed weights run on the CPU only (the GPU keeps candle's f32
//! kernels), and a packed model cannot train or merge.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::Device;

use super::ops::{Bf16Weight, Int8Weight};
use super::{InferPrecision, LoadedModel, ModelError};

/// One Conv1D layer's packed weight (and bias).
#[derive(Debug, Clone)]
pub enum PackedConv {
    /// Quantized to int8.
    Int8(Arc<Int8Weight>),
    /// Stored in bf16.
    Bf16(Arc<Bf16Weight>),
}

impl PackedConv {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        match self {
            Self::Int8(w) => w.bytes(),
            Self::Bf16(w) => w.bytes(),
        }
    }
}

/// A model's packed Conv1D layers, by their weight's parameter name
/// (`transformer.h.0.attn.c_attn.weight`, …).
#[derive(Debug)]
pub struct PackedLayers {
    /// What they were packed for.
    pub precision: InferPrecision,
    layers: HashMap<String, PackedConv>,
}

impl PackedLayers {
    /// The packed layer whose weight is named `name`, if it was packed.
    pub fn get(&self, name: &str) -> Option<&PackedConv> {
        self.layers.get(name)
    }

    /// Bytes held by all of them.
    pub fn bytes(&self) -> usize {
        self.layers.values().map(PackedConv::bytes).sum()
    }
}

/// The Conv1D layers that get packed: `(weight name, bias name, [in, out])`.
fn packed_layers(cfg: &super::Gpt2Config) -> Vec<(String, String, (usize, usize))> {
    let e = cfg.n_embd;
    let shapes = [
        ("attn.c_attn", (e, 3 * e)),
        ("attn.c_proj", (e, e)),
        ("mlp.c_fc", (e, cfg.n_inner)),
        ("mlp.c_proj", (cfg.n_inner, e)),
    ];
    (0..cfg.n_layer)
        .flat_map(|i| {
            shapes.iter().map(move |(m, s)| {
                let p = format!("transformer.h.{i}.{m}");
                (format!("{p}.weight"), format!("{p}.bias"), *s)
            })
        })
        .collect()
}

/// The error for a packed precision on a device other than the CPU.
pub(super) fn cpu_only(precision: InferPrecision, device: &Device) -> ModelError {
    ModelError::Precision {
        reason: format!(
            "{precision} inference runs on the CPU only, not on {device:?}; \
             serve fp32 there (candle's CUDA kernels)"
        ),
    }
}

impl LoadedModel {
    /// The model with its Conv1D weights packed for `precision` (the same
    /// model for fp32, or when already packed so). Refused off the CPU, and
    /// for a model already packed for another precision.
    pub fn pack(mut self, precision: InferPrecision) -> Result<Self, ModelError> {
        if precision == self.precision() {
            return Ok(self);
        }
        if self.packed.is_some() {
            return Err(ModelError::Precision {
                reason: format!("the model is packed for {} already", self.precision()),
            });
        }
        let device = self.weights_device();
        if !device.is_cpu() {
            return Err(cpu_only(precision, &device));
        }
        let mut layers = HashMap::new();
        for (weight, bias, shape) in packed_layers(&self.config) {
            let w = self
                .weights
                .remove(&weight)
                .ok_or_else(|| ModelError::Precision {
                    reason: format!("no tensor `{weight}` to pack"),
                })?;
            let w = w.flatten_all()?.to_vec1::<f32>()?;
            let b = self.weights[&bias].to_vec1::<f32>()?;
            let conv = match precision {
                InferPrecision::Int8 => PackedConv::Int8(Arc::new(Int8Weight::new(&w, &b, shape))),
                InferPrecision::Bf16 => PackedConv::Bf16(Arc::new(Bf16Weight::new(&w, &b, shape))),
                InferPrecision::Fp32 => unreachable!("fp32 returned above"),
            };
            layers.insert(weight, conv);
        }
        self.packed = Some(Arc::new(PackedLayers { precision, layers }));
        Ok(self)
    }

    /// The precision the model answers in.
    pub fn precision(&self) -> InferPrecision {
        self.packed
            .as_ref()
            .map_or(InferPrecision::Fp32, |p| p.precision)
    }

    /// Bytes of the weights held: f32 tensors at their size, packed layers
    /// at theirs (an adapter's own tensors not counted).
    pub fn weight_bytes(&self) -> usize {
        let dense: usize = self
            .weights
            .values()
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum();
        dense + self.packed.as_ref().map_or(0, |p| p.bytes())
    }

    /// Refuses `what` on a packed model (it needs the f32 weights).
    pub(super) fn require_fp32(&self, what: &str) -> Result<(), ModelError> {
        match self.packed {
            None => Ok(()),
            Some(_) => Err(ModelError::Precision {
                reason: format!(
                    "{what} needs the f32 weights; the model is packed for {}",
                    self.precision()
                ),
            }),
        }
    }
}
