//! Fused CPU kernels with their backward passes: GELU (tanh), LayerNorm and
//! the attention's masked softmax.
//!
//! candle composes these from many small ops (each allocating a tensor and
//! recording a backward node), and candle-nn's fused versions have no backward.
//! Here each is one parallel pass forward and one backward. On other devices or
//! dtypes the composed form runs instead, so results never depend on the path
//! beyond float rounding (the tests compare both).

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, D,
};
use rayon::prelude::*;

use crate::simd::vectorized;

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

fn fused(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_K: f32 = 0.044_715;

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

/// `gelu_new`: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    if fused(x) {
        x.contiguous()?.apply_op1(GeluTanh)
    } else {
        x.gelu()
    }
}

struct GeluTanh;

impl CustomOp1 for GeluTanh {
    fn name(&self) -> &'static str {
        "gelu-tanh"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let mut y = vec![0f32; x.len()];
        for_chunks(&mut y, [x], 1, |_, y, [x]| {
            for (y, &x) in y.iter_mut().zip(x) {
                let u = SQRT_2_OVER_PI * (x + GELU_K * x * x * x);
                *y = 0.5 * x * (1.0 + fast_tanh(u));
            }
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2(&dy.contiguous()?, GeluTanhBackward)?))
    }
}

struct GeluTanhBackward;

impl CustomOp2 for GeluTanhBackward {
    fn name(&self) -> &'static str {
        "gelu-tanh-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let dy = f32_slice(s2, l2, self.name())?;
        let mut dx = vec![0f32; x.len()];
        for_chunks(&mut dx, [x, dy], 1, |_, dx, [x, dy]| {
            for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                let u = SQRT_2_OVER_PI * (x + GELU_K * x * x * x);
                let t = fast_tanh(u);
                let du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_K * x * x);
                *dx = dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du);
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// LayerNorm over the last dimension with affine `weight` and `bias`.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    if fused(x) {
        let ln = LayerNormOp { eps: eps as f32 };
        return x
            .contiguous()?
            .apply_op3(&weight.contiguous()?, &bias.contiguous()?, ln);
    }
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(var + eps)?.sqrt()?)?;
    normed.broadcast_mul(weight)?.broadcast_add(bias)
}

struct LayerNormOp {
    eps: f32,
}

/// Mean and reciprocal standard deviation of one row.
fn row_stats(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        let b = f32_slice(s3, l3, self.name())?;
        let n = w.len();
        let mut y = vec![0f32; x.len()];
        for_chunks(&mut y, [x], n, |_, y, [x]| {
            for (y, x) in y.chunks_mut(n).zip(x.chunks(n)) {
                let (mean, rstd) = row_stats(x, self.eps);
                for i in 0..n {
                    y[i] = (x[i] - mean) * rstd * w[i] + b[i];
                }
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let n = w.elem_count();
        let rows = x.elem_count() / n;
        // One pass gives dx (rows × n) followed by dw and db, packed in one tensor.
        let packed = x.apply_op3(w, &dy.contiguous()?, LayerNormBackward { eps: self.eps })?;
        let dx = packed.narrow(0, 0, rows)?.reshape(x.shape())?;
        let dw = packed.narrow(0, rows, 1)?.reshape(n)?;
        let db = packed.narrow(0, rows + 1, 1)?.reshape(n)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

struct LayerNormBackward {
    eps: f32,
}

impl CustomOp3 for LayerNormBackward {
    fn name(&self) -> &'static str {
        "layer-norm-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        let dy = f32_slice(s3, l3, self.name())?;
        let n = w.len();
        let rows = x.len() / n;
        let mut out = vec![0f32; (rows + 2) * n];
        let (dx, sums) = out.split_at_mut(rows * n);
        // dx row by row; partial dw/db per chunk, added up afterwards.
        let partials = for_chunks(dx, [x, dy], n, |_, dx, [x, dy]| {
            let mut acc = vec![0f32; 2 * n];
            for ((dx, x), dy) in dx.chunks_mut(n).zip(x.chunks(n)).zip(dy.chunks(n)) {
                let (mean, rstd) = row_stats(x, self.eps);
                let (mut sum_g, mut sum_gx) = (0f32, 0f32);
                for i in 0..n {
                    let xh = (x[i] - mean) * rstd;
                    let g = dy[i] * w[i];
                    sum_g += g;
                    sum_gx += g * xh;
                    acc[i] += dy[i] * xh;
                    acc[n + i] += dy[i];
                }
                let (mg, mgx) = (sum_g / n as f32, sum_gx / n as f32);
                for i in 0..n {
                    let xh = (x[i] - mean) * rstd;
                    dx[i] = rstd * (dy[i] * w[i] - mg - xh * mgx);
                }
            }
            acc
        });
        for p in partials {
            for (s, v) in sums.iter_mut().zip(p) {
                *s += v;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((rows + 2, n))))
    }
}

/// `softmax(scores + mask)` over the last dimension, for attention: `scores` is
/// `[b, h, t, t]`, `mask` an additive `[b, 1, t, t]` (no gradient). One pass
/// instead of a broadcast add and a softmax.
pub fn masked_softmax(scores: &Tensor, mask: &Tensor) -> Result<Tensor> {
    if fused(scores) && mask.dtype() == DType::F32 {
        let heads = scores.dim(1)?;
        scores
            .contiguous()?
            .apply_op2(&mask.contiguous()?, MaskedSoftmax { heads })
    } else {
        candle_nn::ops::softmax(&scores.broadcast_add(mask)?, D::Minus1)
    }
}

struct MaskedSoftmax {
    heads: usize,
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let mask = f32_slice(s2, l2, self.name())?;
        let t = l1.dims().last().copied().unwrap_or(1);
        let heads = self.heads;
        let mut y = vec![0f32; x.len()];
        for_chunks(&mut y, [x], t, |first, y, [x]| {
            for (r, (y, x)) in y.chunks_mut(t).zip(x.chunks(t)).enumerate() {
                let row = first + r;
                // row = (batch · heads + head) · t + query; the mask has no head axis.
                let (batch, query) = (row / (heads * t), row % t);
                let m = &mask[(batch * t + query) * t..][..t];
                let max = x
                    .iter()
                    .zip(m)
                    .map(|(x, m)| x + m)
                    .fold(f32::NEG_INFINITY, f32::max);
                for ((y, &x), &m) in y.iter_mut().zip(x).zip(m) {
                    *y = fast_exp(x + m - max);
                }
                let inv = 1.0 / y.iter().sum::<f32>();
                y.iter_mut().for_each(|y| *y *= inv);
            }
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _mask: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(y.apply_op2(&dy.contiguous()?, SoftmaxBackward)?), None))
    }
}

struct SoftmaxBackward;

impl CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "softmax-last-dim-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = f32_slice(s1, l1, self.name())?;
        let dy = f32_slice(s2, l2, self.name())?;
        let n = l1.dims().last().copied().unwrap_or(1);
        let mut dx = vec![0f32; y.len()];
        for_chunks(&mut dx, [y, dy], n, |_, dx, [y, dy]| {
            for ((dx, y), dy) in dx.chunks_mut(n).zip(y.chunks(n)).zip(dy.chunks(n)) {
                let dot: f32 = y.iter().zip(dy).map(|(a, b)| a * b).sum();
                for ((dx, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
                    *dx = y * (dy - dot);
                }
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    fn close(a: &Tensor, b: &Tensor, tol: f32) {
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
    fn check(f: impl Fn(&Tensor) -> Result<Tensor>, reference: impl Fn(&Tensor) -> Result<Tensor>) {
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
    }

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

    #[test]
    fn gelu_matches_candle() {
        check(gelu_tanh, |x| x.gelu());
    }

    #[test]
    fn masked_softmax_matches_add_then_softmax() {
        let dev = Device::Cpu;
        let (b, h, t) = (3, 4, 70);
        let mut mask = vec![0f32; b * t * t];
        for (i, m) in mask.iter_mut().enumerate() {
            if (i % t) > (i / t) % t || i % 7 == 0 {
                *m = f32::MIN;
            }
        }
        let mask = Tensor::from_vec(mask, (b, 1, t, t), &dev).unwrap();
        let x = Var::from_tensor(&Tensor::randn(0f32, 2.0, (b, h, t, t), &dev).unwrap()).unwrap();
        let dy = Tensor::randn(0f32, 1.0, (b, h, t, t), &dev).unwrap();
        let a = masked_softmax(&x, &mask).unwrap();
        let r = candle_nn::ops::softmax(&x.broadcast_add(&mask).unwrap(), D::Minus1).unwrap();
        close(&a, &r, 1e-6);
        let ga = (a * &dy).unwrap().sum_all().unwrap().backward().unwrap();
        let gr = (r * &dy).unwrap().sum_all().unwrap().backward().unwrap();
        close(ga.get(&x).unwrap(), gr.get(&x).unwrap(), 1e-5);
    }

    #[test]
    fn layer_norm_matches_composed_with_parameter_gradients() {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.5, 40, &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.5, 40, &dev).unwrap()).unwrap();
        let composed = |x: &Tensor| {
            let mean = x.mean_keepdim(D::Minus1)?;
            let c = x.broadcast_sub(&mean)?;
            let var = c.sqr()?.mean_keepdim(D::Minus1)?;
            c.broadcast_div(&(var + 1e-5)?.sqrt()?)?
                .broadcast_mul(&w)?
                .broadcast_add(&b)
        };
        check(|x| layer_norm(x, &w, &b, 1e-5), composed);
        let x = Tensor::randn(0f32, 2.0, (7, 40), &dev).unwrap();
        let dy = Tensor::randn(0f32, 1.0, (7, 40), &dev).unwrap();
        let ga = (layer_norm(&x, &w, &b, 1e-5).unwrap() * &dy)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gb = (composed(&x).unwrap() * &dy)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        close(ga.get(&w).unwrap(), gb.get(&w).unwrap(), 1e-4);
        close(ga.get(&b).unwrap(), gb.get(&b).unwrap(), 1e-4);
    }
}
