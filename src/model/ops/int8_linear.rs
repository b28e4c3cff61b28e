//! The Conv1D layer for int8 inference: `y = x·W + b` with `W` quantized
//! once, when a model is loaded, and `x` quantized row by row as it comes.
//!
//! * Weights: symmetric per output column, `w ≈ s_j · q` with
//!   `s_j = max_k |w[k][j]| / 127` and `q` in −127..=127 (never −128, which
//!   the AVX2 kernel's sign trick cannot take).
//! * Activations: symmetric per row, dynamic: `x ≈ r_i · q` with
//!   `r_i = max_k |x[i][k]| / 127`, rounded to nearest (ties to even). The
//!   VNNI kernels read the bytes as `u8` with zero point 128 (`q + 128`) and
//!   subtract `128 · Σₖ q_w` per column; others read them as `i8`. Either way
//!   the integer sums are exact (see `qgemm`).
//! * Output: `y = r_i · s_j · Σₖ q_x q_w + b_j` in `f32`, written by the
//!   product itself.
//!
//! Symmetric rows lose one bit against an asymmetric zero point on inputs
//! that are all of one sign; the inputs here (LayerNorm outputs, attention
//! mixes, GELU outputs) straddle zero, and a symmetric scheme keeps the
//! correction to one precomputed column sum.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::f32_slice;
use super::qgemm::{self, PackedI8, PreparedA, QIsa, PANEL};
use crate::simd::vectorized;

/// A Conv1D layer's weight `[in, out]` and bias, quantized for int8 inference.
#[derive(Debug)]
pub struct Int8Weight {
    packed: PackedI8,
    /// `s_j`, padded with zeros to whole panels.
    scales: Vec<f32>,
    /// The bias, padded likewise.
    bias: Vec<f32>,
}

impl Int8Weight {
    /// Quantizes `w` (row-major `[n_in, n_out]`) and keeps `bias` (`n_out`).
    pub fn new(w: &[f32], bias: &[f32], (n_in, n_out): (usize, usize)) -> Self {
        assert!(w.len() == n_in * n_out && bias.len() == n_out);
        let padded = n_out.next_multiple_of(PANEL);
        let mut scales = vec![0f32; padded];
        for row in w.chunks_exact(n_out.max(1)) {
            for (s, v) in scales.iter_mut().zip(row) {
                *s = s.max(v.abs());
            }
        }
        scales.iter_mut().for_each(|s| *s /= 127.0);
        let q: Vec<i8> = w
            .chunks_exact(n_out.max(1))
            .flat_map(|row| {
                row.iter()
                    .zip(&scales)
                    .map(|(&v, &s)| quantize(v, inverse(s)))
            })
            .collect();
        let mut padded_bias = bias.to_vec();
        padded_bias.resize(padded, 0.0);
        Self {
            packed: PackedI8::new(&q, n_in, n_out),
            scales,
            bias: padded_bias,
        }
    }

    /// `[n_in, n_out]`.
    pub fn shape(&self) -> (usize, usize) {
        self.packed.shape()
    }

    /// Bytes held: the packed `i8` weights, their column sums, scales and bias.
    pub fn bytes(&self) -> usize {
        self.packed.bytes() + 4 * (self.scales.len() + self.bias.len())
    }

    /// `x·W + b` for `x` row-major `[rows, n_in]`, on `isa`.
    pub fn forward(&self, isa: QIsa, x: &[f32]) -> Vec<f32> {
        let (k, n) = self.shape();
        let rows = x.len() / k.max(1);
        let (a, row_scales) = quantize_rows(x, (rows, k), isa.offset());
        let threads = if rows * n * k >= qgemm::PARALLEL_MACS {
            rayon::current_num_threads()
        } else {
            1
        };
        let mut y = vec![0f32; rows * n];
        let cols = (&row_scales[..], &self.scales[..], &self.bias[..]);
        qgemm::qgemm_f32(isa, threads, &a, &self.packed, cols, &mut y);
        y
    }
}

/// `1/s`, or 0 for an all-zero row or column (its values quantize to 0).
fn inverse(s: f32) -> f32 {
    if s > 0.0 {
        1.0 / s
    } else {
        0.0
    }
}

/// `v/s` rounded to nearest (ties to even) and kept in −127..=127.
#[inline(always)]
fn quantize(v: f32, inv: f32) -> i8 {
    const MAGIC: f32 = 12_582_912.0; // 1.5·2²³: adding it rounds to an integer
    let r = ((v * inv).clamp(-127.0, 127.0) + MAGIC) - MAGIC;
    r as i8
}

/// Values of `x` from which quantizing is spread over rayon's pool. Below it
/// (every product of a batch of 32 tweets: at most 2.4 M values, about a
/// millisecond) it stays on the calling thread: one parallel region per
/// product (the product's own) instead of two, and a region costs a wake-up
/// of the other threads, far more than that when the CPU is shared.
const PARALLEL_QUANTIZE: usize = 1 << 23;

/// Rows handed to one task at least when quantizing in parallel.
const QUANTIZE_ROWS: usize = 64;

/// Each row of `x` quantized with its own scale, in the kernel's encoding.
fn quantize_rows(x: &[f32], (rows, k): (usize, usize), offset: bool) -> (PreparedA, Vec<f32>) {
    let mut a = PreparedA::zeroed(rows, k, offset);
    let mut scales = vec![0f32; rows];
    let kp = a.kp;
    let one = |(dst, (src, scale)): (&mut [u8], (&[f32], &mut f32))| {
        vectorized(|| {
            let amax = src.iter().fold(0f32, |m, v| m.max(v.abs()));
            *scale = amax / 127.0;
            let inv = inverse(*scale);
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = PreparedA::encode(offset, quantize(v, inv));
            }
        })
    };
    let pairs = x.chunks_exact(k.max(1)).zip(scales.iter_mut());
    if rows * k >= PARALLEL_QUANTIZE {
        a.data
            .par_chunks_mut(kp.max(1))
            .zip(x.par_chunks_exact(k.max(1)).zip(scales.par_iter_mut()))
            .with_min_len(QUANTIZE_ROWS)
            .for_each(one);
    } else {
        a.data.chunks_mut(kp.max(1)).zip(pairs).for_each(one);
    }
    (a, scales)
}

/// `x·W + b` through an [`Int8Weight`], for `x` `[rows, in]` f32 on the host.
pub fn int8_linear(x: &Tensor, w: &std::sync::Arc<Int8Weight>) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&Int8Linear(w.clone()))
}

struct Int8Linear(std::sync::Arc<Int8Weight>);

impl CustomOp1 for Int8Linear {
    fn name(&self) -> &'static str {
        "int8-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (k, n) = self.0.shape();
        let &[rows, n_in] = l.dims() else {
            candle_core::bail!("int8-linear: expected a matrix, got {:?}", l.dims());
        };
        if n_in != k {
            candle_core::bail!("int8-linear: {n_in} inputs for a weight of {k}");
        }
        let x = f32_slice(s, l, self.name())?;
        let y = self.0.forward(QIsa::current(), x);
        Ok((CpuStorage::F32(y), Shape::from((rows, n))))
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn quantized_product_is_close_to_the_float_one_on_every_kernel() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (rows, k, n) = (70, 200, 130);
        let mut v =
            |len: usize| -> Vec<f32> { (0..len).map(|_| rng.random_range(-1f32..1.0)).collect() };
        let (x, w, b) = (v(rows * k), v(k * n), v(n));
        let weight = Int8Weight::new(&w, &b, (k, n));
        let want: Vec<f32> = (0..rows * n)
            .map(|e| {
                (0..k)
                    .map(|p| x[e / n * k + p] * w[p * n + e % n])
                    .sum::<f32>()
                    + b[e % n]
            })
            .collect();
        let mut first: Option<Vec<f32>> = None;
        for isa in QIsa::ALL.into_iter().filter(|i| i.available()) {
            let y = weight.forward(isa, &x);
            // Each product's quantization error: about sqrt(k) · (1/127)² of
            // the operands' range, well under 0.1 here.
            let worst = y
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 0.1, "{isa:?}: max |Δ| {worst}");
            // Every kernel computes the same integers: the floats agree to rounding.
            if let Some(f) = &first {
                let d = y
                    .iter()
                    .zip(f)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(d < 1e-4, "{isa:?} differs from the first kernel by {d}");
            }
            if first.is_none() {
                first = Some(y);
            }
        }
    }

    #[test]
    fn zero_rows_and_columns_quantize_to_zero() {
        let w = vec![0f32; 8 * 3];
        let weight = Int8Weight::new(&w, &[1.0, 2.0, 3.0], (8, 3));
        let y = weight.forward(QIsa::Portable, &[0.0; 8]);
        assert_eq!(y, vec![1.0, 2.0, 3.0]);
    }
}
