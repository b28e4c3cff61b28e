//! Short products — a text's few rows against a weight stored row by row
//! (`x·W`, up to 16 rows with AVX-512) — without packing the weight: all rows
//! of `A` (packed once, a few KiB) against one vector's width of `B` per tile,
//! so each tile walks down one cache line of every row of `B`, and every line
//! of `B` is read exactly once. The columns are split among the tasks.

use rayon::prelude::*;

use super::block::{with_buffer, Dst, PACK_A};
use super::kernel::Kernel;
use super::{pack, MatRef};

/// Whether [`run`] takes a product of `m` rows with this `B` on this kernel.
pub(super) fn applies(kern: &Kernel, m: usize, b: &MatRef) -> bool {
    m <= kern.narrow.len() && b.cs == 1
}

/// `C (+)= A·B` for a product [`applies`] accepts; `C` row-major.
pub(super) fn run(
    kern: &Kernel,
    threads: usize,
    (m, n, k): (usize, usize, usize),
    (a, b): (&MatRef, &MatRef),
    dst: &Dst,
    accumulate: bool,
) {
    let w = kern.lanes;
    let panels = n.div_ceil(w);
    let tasks = if threads > 1 {
        (2 * threads).min(panels)
    } else {
        1
    };
    let per_task = panels.div_ceil(tasks);
    // No depth blocking: the packed rows of `A` (16 × k floats at most) stay in
    // L2, and each tile then writes its part of `C` once.
    with_buffer(&PACK_A, m * k, |pa| {
        pack::pack_a(a, (0, 0), (m, k), m, pa);
        let pa = &*pa;
        let task = |t: usize| {
            let cols = t * per_task..((t + 1) * per_task).min(panels);
            for j in cols {
                // SAFETY: `pa` holds the `m × k` packed rows; columns `j·w ..`
                // of `B` and of `C`'s `m` rows lie inside the regions
                // `sgemm_with` checked, and no other task touches panel `j`.
                unsafe { panel(kern, (m, n, k), pa, b, j, dst, accumulate) };
            }
        };
        if tasks > 1 {
            (0..tasks).into_par_iter().for_each(task);
        } else {
            (0..tasks).for_each(task);
        }
    });
}

/// Columns `j·w .. j·w+w` (fewer at the right edge, through scratch copies).
///
/// # Safety
/// As at the call in [`run`].
unsafe fn panel(
    kern: &Kernel,
    (m, n, kb): (usize, usize, usize),
    pa: &[f32],
    b: &MatRef,
    j: usize,
    dst: &Dst,
    acc: bool,
) {
    let w = kern.lanes;
    let tile = kern.narrow[m - 1];
    let a = (pa.as_ptr(), 1, m);
    let (col, width) = (j * w, w.min(n - j * w));
    // SAFETY: the caller guarantees the panel's columns of `C` are inside it.
    let c = unsafe { dst.ptr.add(col) };
    if width == w {
        let start = col;
        let b_panel = (b.data[start..].as_ptr(), b.rs);
        // SAFETY: a whole panel: `kb` rows of `w` floats of `B`, `m` of `C`.
        unsafe { tile(kb, a, b_panel, (c, dst.rs), acc) };
        return;
    }
    let mut b_copy = vec![0f32; kb * w];
    pack::pack_b_panel(b, (0, col), kb, width, w, &mut b_copy);
    let mut scratch = vec![0f32; m * w];
    // SAFETY: both copies hold exactly the floats the tile reads and writes.
    unsafe {
        tile(
            kb,
            a,
            (b_copy.as_ptr(), w),
            (scratch.as_mut_ptr(), w),
            false,
        )
    };
    for (i, src) in scratch.chunks_exact(w).enumerate() {
        // SAFETY: row `i < m` of `C`, `width` columns from `col`, is inside `C`.
        let out = unsafe { std::slice::from_raw_parts_mut(c.add(i * dst.rs), width) };
        for (o, &v) in out.iter_mut().zip(src) {
            *o = if acc { *o + v } else { v };
        }
    }
}
