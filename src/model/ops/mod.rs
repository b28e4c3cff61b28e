//! Fused CPU kernels with their backward passes: GELU (tanh), LayerNorm, the
//! attention's masked softmax and the Conv1D layer (matmul plus bias), and the
//! sink that sums the Conv1D layers' weight gradients over a step; and the
//! Conv1D layer's int8 and bf16 forms for inference (`qgemm`, no backward).
//!
//! candle composes these from many small ops (each allocating a tensor and
//! recording a backward node), and candle-nn's fused versions have no backward.
//! Here each is one parallel pass forward and one backward. On other devices or
//! dtypes the composed form runs instead, so results never depend on the path
//! beyond float rounding (the tests compare both).

mod bf16_linear;
mod gelu;
mod grad_sink;
mod int8_linear;
mod layer_norm;
mod linear;
mod products;
pub mod qgemm;
pub mod sgemm;
mod softmax;

use candle_core::{CpuStorage, Layout, Result};
use rayon::prelude::*;

use crate::simd::vectorized;

pub use bf16_linear::{bf16_linear, Bf16Weight};
pub use gelu::gelu_tanh;
pub use grad_sink::GradSink;
pub use int8_linear::{int8_linear, Int8Weight};
pub use layer_norm::layer_norm;
pub use linear::linear;
pub use softmax::masked_softmax;

/// Elements handed to one rayon task at least: below this, handing work to
/// another thread costs more than the work (a 64-token batch runs on one thread).
const TASK_ELEMS: usize = 1 << 15;

/// Splits `out` and the equally long `ins` into chunks of whole rows (`row`
/// elements each) and calls `f(first_row, out_chunk, in_chunks)` on every chunk:
/// in parallel when there is more than one task's worth of work, on the calling
/// thread otherwise.
fn for_chunks<const N: usize, R: Send>(
    out: &mut [f32],
    ins: [&[f32]; N],
    row: usize,
    f: impl Fn(usize, &mut [f32], [&[f32]; N]) -> R + Sync + Send,
) -> Vec<R> {
    let row = row.max(1);
    let chunk = (TASK_ELEMS / row).max(1) * row;
    if out.len() <= chunk {
        return vec![vectorized(|| f(0, out, ins))];
    }
    out.par_chunks_mut(chunk)
        .enumerate()
        .map(|(i, o)| {
            let start = i * chunk;
            let ins = ins.map(|s| &s[start..start + o.len()]);
            vectorized(|| f(start / row, o, ins))
        })
        .collect()
}

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op}: the input must be contiguous"),
    }
}

/// `eˣ` to about 2e-7 relative error, in plain arithmetic the compiler vectorizes
/// (libm's `expf`/`tanhf` are called one element at a time and were a fifth of
/// the forward pass): `2ⁿ · e^g` with `n = round(x·log₂e)`, `|g| ≤ ln2/2`, and a
/// degree-6 Taylor polynomial for `e^g`.
#[inline(always)]
fn fast_exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5·2²³: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + MAGIC) - MAGIC;
    // ln 2 split in two (Cody–Waite) so that `g` keeps its precision for large |x|.
    let g = (x - n * 0.693_145_75) - n * 1.428_606_8e-6;
    let p = 1.0
        + g * (1.0
            + g * (0.5
                + g * (1.0 / 6.0 + g * (1.0 / 24.0 + g * (1.0 / 120.0 + g * (1.0 / 720.0))))));
    let y = p * f32::from_bits(((n as i32 + 127) as u32) << 23);
    // Exactly 0 below the clamp: masked attention scores must not leave tiny
    // values behind, whose subnormal products slow the next matmul 25-fold.
    if x > -87.0 {
        y
    } else {
        0.0
    }
}

/// `tanh(u) = 1 − 2/(e^{2u} + 1)`, exact at the saturated ends.
#[inline(always)]
fn fast_tanh(u: f32) -> f32 {
    1.0 - 2.0 / (fast_exp(2.0 * u) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_and_tanh_are_accurate() {
        let mut worst = (0f32, 0f32);
        for i in -20_000..=20_000 {
            let x = i as f32 * 0.004_3;
            let rel = (fast_exp(x) - x.exp()).abs() / x.exp();
            worst = (
                worst.0.max(rel),
                worst.1.max((fast_tanh(x) - x.tanh()).abs()),
            );
        }
        assert!(worst.0 < 5e-7 && worst.1 < 5e-7, "{worst:?}");
        assert_eq!(fast_tanh(100.0), 1.0);
        assert_eq!(fast_tanh(-100.0), -1.0);
        assert_eq!(fast_exp(-200.0), 0.0, "underflows to exactly 0");
        assert!(
            fast_exp(200.0).is_finite(),
            "saturates instead of overflowing"
        );
    }
}

/// Comparisons shared by the kernels' tests.
#[cfg(test)]
pub(super) mod testing {
    use candle_core::{Device, Result, Tensor, Var};

    /// Asserts the largest absolute difference is at most `tol`.
    pub fn close(a: &Tensor, b: &Tensor, tol: f32) {
        let d = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d <= tol, "max abs diff {d:e}");
    }

    /// Compares a fused op and its composed reference, values and gradients.
    pub fn check(
        f: impl Fn(&Tensor) -> Result<Tensor>,
        reference: impl Fn(&Tensor) -> Result<Tensor>,
    ) {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&(Tensor::randn(0f32, 2.0, (3, 5, 40), &dev).unwrap())).unwrap();
        let weights = Tensor::randn(0f32, 1.0, (3, 5, 40), &dev).unwrap();
        let (a, b) = (f(&x).unwrap(), reference(&x).unwrap());
        close(&a, &b, 1e-5);
        let ga = (a * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gb = (b * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        close(ga.get(&x).unwrap(), gb.get(&x).unwrap(), 1e-4);
        assert_detached(ga.get(&x).unwrap());
    }

    /// Asserts a gradient records no backward graph of its own. A fused op's
    /// backward that computes from tracked tensors (the weight is a `Var`) gives
    /// gradients that point back at their inputs; summed over micro-batches they
    /// keep every micro-batch's buffers alive until the step ends (at GPT-2 size,
    /// 2.7 GB more at the peak).
    pub fn assert_detached(grad: &Tensor) {
        assert!(!grad.track_op(), "the gradient tracks a backward graph");
    }
}
