//! The attention's `softmax(scores + mask)` in one pass, and its backward.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, D};

use super::{f32_slice, fast_exp, for_chunks};
use crate::simd::host_f32;

/// `softmax(scores + mask)` over the last dimension, for attention: `scores` is
/// `[b, h, t, t]`, `mask` an additive `[b, 1, t, t]` (no gradient). One pass
/// instead of a broadcast add and a softmax.
pub fn masked_softmax(scores: &Tensor, mask: &Tensor) -> Result<Tensor> {
    if host_f32(scores) && mask.dtype() == DType::F32 {
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
        Ok((
            Some(y.detach().apply_op2(&dy.contiguous()?, SoftmaxBackward)?),
            None,
        ))
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

    use super::super::testing::{assert_detached, close};
    use super::*;

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
        assert_detached(ga.get(&x).unwrap());
    }
}
