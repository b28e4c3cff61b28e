//! Gradient clipping as `torch.nn.utils.clip_grad_norm_`: the pre-clip global L2
//! norm is returned, gradients are scaled by `min(1, max / (norm + 1e-6))` (folded
//! into the optimizer's pass).

use candle_core::Tensor;

use crate::simd::{host_f32, vectorized};

/// Global L2 norm of `grads`: on the CPU in f64, in parallel; gradients on a
/// device are reduced there and read back once (one synchronisation per call,
/// not one per gradient).
pub fn global_norm(grads: &[Tensor]) -> candle_core::Result<f64> {
    let mut sum_sq = 0f64;
    let mut on_device = Vec::new();
    for g in grads {
        if !host_f32(g) {
            on_device.push(g.to_dtype(candle_core::DType::F32)?.sqr()?.sum_all()?);
            continue;
        }
        use rayon::prelude::*;
        let g = g.contiguous()?;
        let (storage, layout) = g.storage_and_layout();
        let candle_core::Storage::Cpu(cpu) = &*storage else {
            unreachable!("checked to be on the CPU")
        };
        let (a, b) = layout.contiguous_offsets().expect("made contiguous");
        let data = &cpu.as_slice::<f32>()?[a..b];
        sum_sq += if data.len() <= 1 << 15 {
            sum_of_squares(data)
        } else {
            data.par_chunks(1 << 15).map(sum_of_squares).sum()
        };
    }
    if !on_device.is_empty() {
        let total = Tensor::stack(&on_device, 0)?.sum_all()?;
        sum_sq += f64::from(total.to_scalar::<f32>()?);
    }
    Ok(sum_sq.sqrt())
}

/// `Σ x²`: 16 f32 lanes over blocks of 1024 (so it vectorises), blocks summed in f64.
fn sum_of_squares(data: &[f32]) -> f64 {
    vectorized(|| {
        data.chunks(1024)
            .map(|block| {
                let mut lanes = [0f32; 16];
                let mut rows = block.chunks_exact(16);
                for row in &mut rows {
                    for (lane, &x) in lanes.iter_mut().zip(row) {
                        *lane += x * x;
                    }
                }
                let tail: f32 = rows.remainder().iter().map(|x| x * x).sum();
                lanes.iter().map(|&l| f64::from(l)).sum::<f64>() + f64::from(tail)
            })
            .sum()
    })
}

/// The factor `torch.nn.utils.clip_grad_norm_` scales gradients by:
/// `min(1, max_norm / (norm + 1e-6))`, or 1 when `max_norm` is 0 (off).
pub fn clip_scale(norm: f64, max_norm: f64) -> f64 {
    if max_norm > 0.0 {
        (max_norm / (norm + 1e-6)).min(1.0)
    } else {
        1.0
    }
}
