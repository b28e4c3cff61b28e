//! The arithmetic of forward and backward passes: fp32 throughout, or bf16
//! autocast.
//!
//! `bf16` is PyTorch's `torch.autocast(dtype=torch.bfloat16)` as GPU
//! fine-tuning uses it: the matrix products (Conv1D layers, attention scores and
//! their weighted sum, the score head) and the activation between the MLP's two
//! layers run in bf16, with f32 accumulation inside each product; LayerNorm,
//! the attention softmax, the residual stream, the logits and the loss stay
//! f32, and so do the master weights, their gradients and AdamW's state. The
//! casts are candle ops, so gradients flow back through them into the f32
//! weights. `fp32` casts nothing and is the parity setting.

use candle_core::{DType, Result, Tensor};
use serde::{Deserialize, Serialize};

/// The arithmetic of the matrix products: `fp32`, or `bf16` autocast.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Everything in f32 (the default, and what parity is measured in).
    #[default]
    Fp32,
    /// bf16 autocast: bf16 matrix products, f32 weights, normalisation, softmax
    /// and loss.
    Bf16,
}

impl Precision {
    /// The dtype the matrix products run in.
    pub fn compute_dtype(self) -> DType {
        match self {
            Self::Fp32 => DType::F32,
            Self::Bf16 => DType::BF16,
        }
    }

    /// `t` in the compute dtype (the same tensor when it already is).
    pub(crate) fn cast(self, t: &Tensor) -> Result<Tensor> {
        t.to_dtype(self.compute_dtype())
    }

    /// The name used in hyperparameters and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Bf16 => "bf16",
        }
    }
}

/// `t` back in f32 (the same tensor when it already is).
pub(crate) fn to_f32(t: &Tensor) -> Result<Tensor> {
    t.to_dtype(DType::F32)
}

/// The arithmetic a model answers `/classify` (and `classify`) in; training
/// is unaffected. The Conv1D products of attention and MLP change; token and
/// position embeddings, LayerNorm, the attention scores and softmax, the
/// residual stream and the score head stay f32.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum InferPrecision {
    /// f32 weights and products (the default).
    #[default]
    Fp32,
    /// Weights quantized to int8 per output channel when the model loads,
    /// activations per row as they come; exact `i32` sums, f32 output.
    Int8,
    /// Weights stored in bf16, activations rounded to bf16, f32 sums.
    Bf16,
}

impl InferPrecision {
    /// The name used on the command line and in responses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Int8 => "int8",
            Self::Bf16 => "bf16",
        }
    }
}

impl std::fmt::Display for InferPrecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
