//! Fused CPU kernels with their backward passes: GELU (tanh), LayerNorm and
//! softmax over the last dimension.
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

/// Rows handed to one rayon task at least.
const MIN_ROWS: usize = 16;

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
        y.par_chunks_mut(4096)
            .zip(x.par_chunks(4096))
            .for_each(|(y, x)| {
                for (y, &x) in y.iter_mut().zip(x) {
                    let u = SQRT_2_OVER_PI * (x + GELU_K * x * x * x);
                    *y = 0.5 * x * (1.0 + u.tanh());
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
        dx.par_chunks_mut(4096)
            .zip(x.par_chunks(4096).zip(dy.par_chunks(4096)))
            .for_each(|(dx, (x, dy))| {
                for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                    let u = SQRT_2_OVER_PI * (x + GELU_K * x * x * x);
                    let t = u.tanh();
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
        y.par_chunks_mut(n)
            .zip(x.par_chunks(n))
            .with_min_len(MIN_ROWS)
            .for_each(|(y, x)| {
                let (mean, rstd) = row_stats(x, self.eps);
                for i in 0..n {
                    y[i] = (x[i] - mean) * rstd * w[i] + b[i];
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
        // dx row by row; partial dw/db per task, added up afterwards.
        let partials: Vec<Vec<f32>> = dx
            .par_chunks_mut(n)
            .zip(x.par_chunks(n).zip(dy.par_chunks(n)))
            .with_min_len(MIN_ROWS)
            .fold(
                || vec![0f32; 2 * n],
                |mut acc, (dx, (x, dy))| {
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
                    acc
                },
            )
            .collect();
        for p in partials {
            for (s, v) in sums.iter_mut().zip(p) {
                *s += v;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((rows + 2, n))))
    }
}

/// Softmax over the last dimension.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if fused(x) {
        x.contiguous()?.apply_op1(SoftmaxLastDim)
    } else {
        candle_nn::ops::softmax(x, D::Minus1)
    }
}

struct SoftmaxLastDim;

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "softmax-last-dim"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let n = l.dims().last().copied().unwrap_or(1);
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(n)
            .zip(x.par_chunks(n))
            .with_min_len(MIN_ROWS)
            .for_each(|(y, x)| {
                let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = (x - max).exp();
                    sum += *y;
                }
                let inv = 1.0 / sum;
                y.iter_mut().for_each(|y| *y *= inv);
            });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(y.apply_op2(&dy.contiguous()?, SoftmaxBackward)?))
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
        dx.par_chunks_mut(n)
            .zip(y.par_chunks(n).zip(dy.par_chunks(n)))
            .with_min_len(MIN_ROWS)
            .for_each(|(dx, (y, dy))| {
                let dot: f32 = y.iter().zip(dy).map(|(a, b)| a * b).sum();
                for ((dx, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
                    *dx = y * (dy - dot);
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
    fn gelu_matches_candle() {
        check(gelu_tanh, |x| x.gelu());
    }

    #[test]
    fn softmax_matches_composed() {
        check(softmax_last_dim, |x| candle_nn::ops::softmax(x, D::Minus1));
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
