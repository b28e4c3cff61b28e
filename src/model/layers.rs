//! The layers GPT-2 is built from: LayerNorm, Hugging Face's Conv1D, and
//! dropout with its masks drawn from a seeded generator; plus [`Mode`], which
//! says whether a forward pass trains.

use std::sync::Arc;

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::ops::{self, GradSink};
use super::packed::{PackedConv, PackedLayers};
use super::precision::Precision;

/// Whether a forward pass trains (dropout on, drawn from a seeded generator) or
/// evaluates (dropout off).
pub enum Mode<'a> {
    /// Inference: deterministic, no dropout.
    Eval,
    /// Training: dropout masks drawn from this generator.
    Train(&'a mut ChaCha8Rng),
}

/// LayerNorm that trains (candle-nn's fused one has no backward).
#[derive(Debug, Clone)]
pub(super) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub(super) fn new(vb: VarBuilder, size: usize, eps: f64) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get(size, "weight")?,
            bias: vb.get(size, "bias")?,
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// Hugging Face's Conv1D: `y = x @ W + b` with `W` stored `[in, out]`, in
/// f32 or packed for int8/bf16 inference.
#[derive(Debug, Clone)]
pub(super) struct Conv1D {
    weight: ConvWeight,
    bias: Tensor,
    /// Takes the weight gradients, when the model trains with one.
    pub(super) sink: Option<Arc<GradSink>>,
}

impl Conv1D {
    /// The layer under `vb`; its weight from `packed` when packed there.
    pub(super) fn new(
        vb: VarBuilder,
        (n_in, n_out): (usize, usize),
        packed: Option<&PackedLayers>,
    ) -> candle_core::Result<Self> {
        let name = format!("{}.weight", vb.prefix());
        let weight = match packed.and_then(|p| p.get(&name)) {
            Some(p) => ConvWeight::Packed(p.clone()),
            None => ConvWeight::F32(vb.get((n_in, n_out), "weight")?),
        };
        Ok(Self {
            weight,
            bias: vb.get(n_out, "bias")?,
            sink: None,
        })
    }
}

impl Conv1D {
    /// `x` is `[rows, in]`; the product runs in `precision`'s dtype, and so
    /// does the result.
    /// A packed layer runs its own product (f32 in and out, no gradient).
    pub(super) fn forward(&self, x: &Tensor, precision: Precision) -> candle_core::Result<Tensor> {
        let weight = match &self.weight {
            ConvWeight::F32(w) => w,
            ConvWeight::Packed(PackedConv::Int8(w)) => return ops::int8_linear(x, w),
            ConvWeight::Packed(PackedConv::Bf16(w)) => return ops::bf16_linear(x, w),
        };
        let cast = |t: &Tensor| precision.cast(t);
        let (w, b) = (cast(weight)?, cast(&self.bias)?);
        // A cast copy is not the variable: its gradient must reach the variable
        // through candle's autograd.
        let sink = self.sink.as_ref().filter(|_| w.id() == weight.id());
        ops::linear(&cast(x)?, &w, &b, sink)
    }
}

/// A Conv1D weight: the f32 tensor, or its packed form.
#[derive(Debug, Clone)]
enum ConvWeight {
    F32(Tensor),
    Packed(PackedConv),
}

/// Inverted dropout with the mask drawn on the host from the step's seeded
/// generator, on every device: a run's masks are the same on a CPU and a GPU
/// (so are its losses, up to rounding), and no device random-number library is
/// needed. On a GPU the mask is an upload, never a copy back.
pub(super) fn dropout(x: &Tensor, p: f32, mode: &mut Mode) -> candle_core::Result<Tensor> {
    let Mode::Train(rng) = mode else {
        return Ok(x.clone());
    };
    if p == 0.0 {
        return Ok(x.clone());
    }
    let keep = 1.0 / (1.0 - p);
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| if rng.random::<f32>() < p { 0.0 } else { keep })
        .collect();
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
    x.mul(&mask)
}
