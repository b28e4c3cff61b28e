//! The Conv1D layer for bf16 inference: `y = bf16(x)·bf16(W) + b`, the
//! weight rounded to bf16 once when the model loads (half the memory of f32),
//! each input rounded as it comes, sums and bias in f32 (see `qgemm/bf16.rs`
//! for the kernels).

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::f32_slice;
use super::qgemm::{Bf16Isa, PackedBf16, PANEL};

/// A Conv1D layer's weight `[in, out]` in bf16, and its f32 bias.
#[derive(Debug)]
pub struct Bf16Weight {
    packed: PackedBf16,
    /// The bias, padded with zeros to whole panels.
    bias: Vec<f32>,
}

impl Bf16Weight {
    /// Rounds `w` (row-major `[n_in, n_out]`) to bf16 and keeps `bias`.
    pub fn new(w: &[f32], bias: &[f32], (n_in, n_out): (usize, usize)) -> Self {
        assert!(w.len() == n_in * n_out && bias.len() == n_out);
        let mut padded = bias.to_vec();
        padded.resize(n_out.next_multiple_of(PANEL), 0.0);
        Self {
            packed: PackedBf16::new(w, n_in, n_out),
            bias: padded,
        }
    }

    /// `[n_in, n_out]`.
    pub fn shape(&self) -> (usize, usize) {
        self.packed.shape()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.packed.bytes() + 4 * self.bias.len()
    }

    /// `x·W + b` for `x` row-major `[rows, n_in]`, on `isa`.
    pub fn forward(&self, isa: Bf16Isa, x: &[f32]) -> Vec<f32> {
        let (k, n) = self.shape();
        let rows = x.len() / k.max(1);
        // Products a quarter of sgemm's size go parallel: a bf16 product
        // reads half the bytes of an f32 one.
        let threads = if rows * n * k >= super::sgemm::PARALLEL_MACS {
            rayon::current_num_threads()
        } else {
            1
        };
        let ones = vec![1f32; rows.max(self.bias.len())];
        let mut y = vec![0f32; rows * n];
        self.packed
            .product((isa, threads), x, (&self.bias, &ones), &mut y);
        y
    }
}

/// `x·W + b` through a [`Bf16Weight`], for `x` `[rows, in]` f32 on the host.
pub fn bf16_linear(x: &Tensor, w: &Arc<Bf16Weight>) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&Bf16Linear(w.clone()))
}

struct Bf16Linear(Arc<Bf16Weight>);

impl CustomOp1 for Bf16Linear {
    fn name(&self) -> &'static str {
        "bf16-linear"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (k, n) = self.0.shape();
        let &[rows, n_in] = l.dims() else {
            candle_core::bail!("bf16-linear: expected a matrix, got {:?}", l.dims());
        };
        if n_in != k {
            candle_core::bail!("bf16-linear: {n_in} inputs for a weight of {k}");
        }
        let x = f32_slice(s, l, self.name())?;
        let y = self.0.forward(Bf16Isa::current(), x);
        Ok((CpuStorage::F32(y), Shape::from((rows, n))))
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::super::qgemm::to_bf16;
    use super::*;

    fn widen(b: u16) -> f64 {
        f64::from(f32::from_bits(u32::from(b) << 16))
    }

    #[test]
    fn every_kernel_matches_the_rounded_product() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for (rows, k, n) in [(1, 1, 1), (3, 7, 65), (13, 129, 200), (70, 96, 64)] {
            let mut v = |len: usize| -> Vec<f32> {
                (0..len).map(|_| rng.random_range(-1f32..1.0)).collect()
            };
            let (x, w, b) = (v(rows * k), v(k * n), v(n));
            let weight = Bf16Weight::new(&w, &b, (k, n));
            for isa in Bf16Isa::ALL.into_iter().filter(|i| i.available()) {
                let y = weight.forward(isa, &x);
                assert_eq!(y.len(), rows * n);
                for (e, &got) in y.iter().enumerate() {
                    let (i, j) = (e / n, e % n);
                    let want: f64 = (0..k)
                        .map(|p| widen(to_bf16(x[i * k + p])) * widen(to_bf16(w[p * n + j])))
                        .sum::<f64>()
                        + f64::from(b[j]);
                    let got = f64::from(got);
                    assert!(
                        (got - want).abs() < 1e-5 * (k as f64).sqrt() + 1e-6,
                        "{isa:?} {rows}x{k}x{n} at {e}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn rounding_to_bf16_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: ties to the even 1.
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(to_bf16(-2.5), 0xc020);
    }
}
