//! LayerNorm over the last dimension, with gradients for input, weight and bias.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, D};

use super::{f32_slice, for_chunks};
use crate::simd::host_f32;

/// LayerNorm over the last dimension with affine `weight` and `bias`.
pub fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    if host_f32(x) {
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
        let packed = x.detach().apply_op3(
            &w.detach(),
            &dy.contiguous()?,
            LayerNormBackward { eps: self.eps },
        )?;
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

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::super::testing::{assert_detached, check, close};
    use super::*;

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
        assert_detached(ga.get(&w).unwrap());
    }
}
