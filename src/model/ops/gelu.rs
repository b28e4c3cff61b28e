//! GELU with the tanh approximation (`gelu_new`) and its derivative.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};

use super::{f32_slice, fast_tanh, for_chunks};
use crate::simd::host_f32;

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_K: f32 = 0.044_715;

/// `gelu_new`: `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    if host_f32(x) {
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
        Ok(Some(
            x.detach().apply_op2(&dy.contiguous()?, GeluTanhBackward)?,
        ))
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

#[cfg(test)]
mod tests {
    use super::super::testing::check;
    use super::*;

    #[test]
    fn gelu_matches_candle() {
        check(gelu_tanh, |x| x.gelu());
    }
}
