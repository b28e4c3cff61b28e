//! The row-major matrix products of the Conv1D layer: its forward product,
//! its input gradient and its weight gradients, which the layer's backward pass
//! and the gradient sink both compute (a leaf, so neither depends on the other).
//!
//! Each product goes to our [`sgemm`] or to the `gemm` crate, whichever is the
//! faster for its shape (see [`prefer_sgemm`]).

use super::sgemm::{self, MatRef};
use crate::simd::vectorized;

/// Multiply-adds below which a product runs on the calling thread (see
/// [`sgemm::PARALLEL_MACS`]).
const PARALLEL_MACS: usize = sgemm::PARALLEL_MACS;

/// Whether our [`sgemm`] beats the `gemm` crate on a product (`tuneserve bench
/// --matmul` compares them shape by shape): a transposed right operand (the
/// input gradient `dy·Wᵀ`, which the crate answers by packing the whole
/// weight) and products of one or two rows (a single token against a weight).
fn prefer_sgemm(m: usize, rhs: &MatRef) -> bool {
    (rhs.rs == 1 && rhs.cs != 1) || m <= 2
}

/// `dst[m×n] (+)= lhs[m×k] · rhs[k×n]` (`dst` row-major); adds onto `dst` when
/// `accumulate`, overwrites it otherwise. Multi-threaded on rayon's pool.
pub(super) fn gemm_into(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    lhs: MatRef,
    rhs: MatRef,
    accumulate: bool,
) {
    assert!(dst.len() == m * n);
    if prefer_sgemm(m, &rhs) {
        return sgemm::sgemm((m, n, k), lhs, rhs, dst, n, accumulate);
    }
    let covers = |v: &MatRef, r: usize, c: usize| {
        r == 0 || c == 0 || (r - 1) * v.rs + (c - 1) * v.cs < v.data.len()
    };
    assert!(covers(&lhs, m, k) && covers(&rhs, k, n));
    if m == 0 || n == 0 {
        return;
    }
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 && m * n * k >= PARALLEL_MACS {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the assert above keeps every strided access of the three matrices
    // inside its slice; `dst` is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `dx = dy·wᵀ` for `dy` `[rows, n_out]` and `w` `[n_in, n_out]`, into `dx`
/// `[rows, n_in]` (overwritten).
pub(super) fn input_gradient(
    dx: &mut [f32],
    dy: &[f32],
    w: &[f32],
    (rows, n_in, n_out): (usize, usize, usize),
) {
    let (dy, wt) = (MatRef::rows(dy, n_out), MatRef::transposed(w, n_out));
    gemm_into(dx, (rows, n_in, n_out), dy, wt, false);
}

/// `dW (+)= xᵀ·dy` and `db (+)= Σ dy` over the rows of `x` `[rows, n_in]` and
/// `dy` `[rows, n_out]`: added onto `dw` `[n_in, n_out]` and `db` `[n_out]` when
/// `accumulate`, overwriting them otherwise.
pub(super) fn weight_gradients(
    (dw, db): (&mut [f32], &mut [f32]),
    x: &[f32],
    dy: &[f32],
    (n_in, n_out): (usize, usize),
    accumulate: bool,
) {
    let rows = x.len() / n_in.max(1);
    let (xt, dy_rows) = (MatRef::transposed(x, n_in), MatRef::rows(dy, n_out));
    gemm_into(dw, (n_in, n_out, rows), xt, dy_rows, accumulate);
    vectorized(|| {
        if !accumulate {
            db.fill(0.0);
        }
        for row in dy.chunks_exact(n_out) {
            db.iter_mut().zip(row).for_each(|(s, v)| *s += v);
        }
    });
}
