//! Hugging Face's Conv1D, `y = x·W + b` with `W` stored `[in, out]`, as one op.
//!
//! Forward: the output starts as the bias, and one product adds `x·W` onto it
//! (candle would zero a buffer, multiply into it, then add the bias into a
//! second one). Backward: one product each for `dx = dy·Wᵀ` and `dW = xᵀ·dy`
//! reading the operands through transposed strides, and one column sum for
//! `db`, all into one buffer (candle's bias gradient is a separate reduction,
//! and the matmul's output gradient is first copied by the bias add's backward).
//!
//! In training, a [`GradSink`] may take the weight gradients instead: the
//! backward pass then computes `dx` alone and records `x` and `dy` for the sink
//! to multiply once per step (see `grad_sink.rs`).
//!
//! The products themselves are in `products.rs`, which the sink shares.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::f32_slice;
use super::grad_sink::GradSink;
use super::products::{gemm_into, input_gradient, weight_gradients};
use super::sgemm::MatRef;
use crate::simd::host_f32;

/// `x·w + b` for `x` `[rows, in]`, `w` `[in, out]`, `b` `[out]`; the gradients
/// of `w` and `b` go to `sink` when one is given and the fused op runs (f32 on
/// the host), to candle's autograd otherwise.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor, sink: Option<&Arc<GradSink>>) -> Result<Tensor> {
    if host_f32(x) && x.rank() == 2 {
        let op = Linear {
            sink: sink.cloned(),
        };
        x.contiguous()?
            .apply_op3(&w.contiguous()?, &b.contiguous()?, op)
    } else {
        x.matmul(w)?.broadcast_add(b)
    }
}

fn dims(x: &Layout, w: &Layout, op: &str) -> Result<(usize, usize, usize)> {
    match (x.dims(), w.dims()) {
        (&[rows, n_in], &[w_in, n_out]) if n_in == w_in => Ok((rows, n_in, n_out)),
        (a, b) => candle_core::bail!("{op}: shapes {a:?} and {b:?} do not multiply"),
    }
}

struct Linear {
    sink: Option<Arc<GradSink>>,
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "linear"
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
        let (rows, n_in, n_out) = dims(l1, l2, self.name())?;
        let x = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        let b = f32_slice(s3, l3, self.name())?;
        if b.len() != n_out {
            candle_core::bail!("linear: bias of {} for {n_out} outputs", b.len());
        }
        let mut y: Vec<f32> = b.repeat(rows);
        let (x, w) = (MatRef::rows(x, n_in), MatRef::rows(w, n_out));
        gemm_into(&mut y, (rows, n_out, n_in), x, w, true);
        Ok((CpuStorage::F32(y), Shape::from((rows, n_out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (rows, n_in) = x.dims2()?;
        let n_out = w.dim(1)?;
        if !w.track_op() && !b.track_op() {
            // Frozen (an adapter trains): only the input's gradient flows.
            let dx = dy
                .detach()
                .contiguous()?
                .apply_op2(&w.detach(), InputGradient)?;
            return Ok((Some(dx), None, None));
        }
        if let Some(sink) = &self.sink {
            let dy = dy.detach().contiguous()?;
            let dx = dy.apply_op2(&w.detach(), InputGradient)?;
            sink.record((w, b), x.detach(), dy)?;
            return Ok((Some(dx), None, None));
        }
        // dx, dW and db packed one after another in one flat buffer.
        let packed = x
            .detach()
            .apply_op3(&w.detach(), &dy.contiguous()?, LinearBackward)?;
        let dx = packed.narrow(0, 0, rows * n_in)?.reshape((rows, n_in))?;
        let dw = packed
            .narrow(0, rows * n_in, n_in * n_out)?
            .reshape((n_in, n_out))?;
        let db = packed.narrow(0, (rows + n_out) * n_in, n_out)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// `(dy, w)` → `dx = dy·wᵀ`.
struct InputGradient;

impl CustomOp2 for InputGradient {
    fn name(&self) -> &'static str {
        "linear-input-gradient"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (&[rows, n_out], &[n_in, w_out]) = (l1.dims(), l2.dims()) else {
            candle_core::bail!("{}: expected matrices", self.name());
        };
        if n_out != w_out {
            candle_core::bail!("{}: dy has {n_out} columns, w {w_out}", self.name());
        }
        let dy = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        let mut dx = vec![0f32; rows * n_in];
        input_gradient(&mut dx, dy, w, (rows, n_in, n_out));
        Ok((CpuStorage::F32(dx), Shape::from((rows, n_in))))
    }
}

/// `(x, w, dy)` → `[dx | dW | db]` flattened.
struct LinearBackward;

impl CustomOp3 for LinearBackward {
    fn name(&self) -> &'static str {
        "linear-backward"
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
        let (rows, n_in, n_out) = dims(l1, l2, self.name())?;
        let x = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        let dy = f32_slice(s3, l3, self.name())?;
        let len = rows * n_in + n_in * n_out + n_out;
        let mut out = vec![0f32; len];
        let (dx, rest) = out.split_at_mut(rows * n_in);
        input_gradient(dx, dy, w, (rows, n_in, n_out));
        weight_gradients(rest.split_at_mut(n_in * n_out), x, dy, (n_in, n_out), false);
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::super::testing::{assert_detached, close};
    use super::*;

    #[test]
    fn linear_matches_matmul_plus_bias_with_all_gradients() {
        let dev = Device::Cpu;
        let var = |shape: &[usize]| {
            Var::from_tensor(&Tensor::randn(0f32, 1.0, shape, &dev).unwrap()).unwrap()
        };
        let (x, w, b) = (var(&[7, 40]), var(&[40, 24]), var(&[24]));
        let dy = Tensor::randn(0f32, 1.0, (7, 24), &dev).unwrap();
        let fused = linear(&x, &w, &b, None).unwrap();
        let composed = x.matmul(&w).unwrap().broadcast_add(&b).unwrap();
        close(&fused, &composed, 1e-5);
        let grads = |y: Tensor| (y * &dy).unwrap().sum_all().unwrap().backward().unwrap();
        let (ga, gb) = (grads(fused), grads(composed));
        for v in [&x, &w, &b] {
            let (a, b) = (ga.get(v).unwrap(), gb.get(v).unwrap());
            assert_eq!(a.dims(), b.dims());
            close(a, b, 1e-4);
            assert_detached(a);
        }
    }

    #[test]
    fn mismatched_shapes_are_an_error() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((3, 5), candle_core::DType::F32, &dev).unwrap();
        let w = Tensor::zeros((4, 2), candle_core::DType::F32, &dev).unwrap();
        let b = Tensor::zeros(2, candle_core::DType::F32, &dev).unwrap();
        assert!(linear(&x, &w, &b, None).is_err());
    }
}
