//! One `kb`-deep slice of one `nb`-wide column block of a product: the block
//! of `B` packed once (or read in place) and shared, then tasks of `mc` rows ×
//! a run of `nr`-wide panels spread over rayon's pool, each packing its rows of
//! `A` (or reading them in place) and walking its tiles.
//!
//! Tasks split both the rows and the panels, so a short product (one text: one
//! row block) still keeps every thread busy, each streaming its share of `B`.

use std::cell::Cell;

use rayon::prelude::*;

use super::kernel::{Kernel, MAX_TILE};
use super::{pack, MatRef};

/// `C` as a raw pointer that tasks share, each writing its own tiles: element
/// `(i, j)` at `ptr + i·rs + j·cs`.
pub(super) struct Dst {
    pub ptr: *mut f32,
    pub rs: usize,
    pub cs: usize,
}

// SAFETY: tasks write disjoint tiles of `C` (see `Block::run`), and
// `sgemm_with` holds the unique borrow of `C` until they have all finished.
unsafe impl Sync for Dst {}

/// The work of one slice (see the module docs): rows `0..m` of `C`, its columns
/// `jc..jc + nb`, depth `pc..pc + kb` of the product; `accumulate` adds to `C`.
pub(super) struct Block {
    pub kern: Kernel,
    pub m: usize,
    pub jc: usize,
    pub nb: usize,
    pub pc: usize,
    pub kb: usize,
    pub accumulate: bool,
    /// `A` has a unit stride and is read where it lies, unpacked.
    pub in_place_a: bool,
    /// Each task packs its own panels of `B` (a short product: one row block,
    /// so no two tasks share a panel, and each packed panel is used while it
    /// is still in cache) instead of one shared packing up front.
    pub b_per_task: bool,
}

thread_local! {
    /// Packing buffers, kept between calls so a product allocates nothing.
    pub(super) static PACK_A: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    static PACK_B: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on `len` floats of this thread's buffer `key` (contents arbitrary).
pub(super) fn with_buffer<R>(
    key: &'static std::thread::LocalKey<Cell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    let mut buf = key.take();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    key.set(buf);
    r
}

impl Block {
    /// Packs this block's `B` (unless read in place) and runs its tasks.
    pub(super) fn run(&self, a: &MatRef, b: &MatRef, dst: &Dst, threads: usize) {
        let Kernel { nr, mc, .. } = self.kern;
        let panels = self.nb.div_ceil(nr);
        let row_blocks = self.m.div_ceil(mc);
        // Enough tasks to keep every thread busy, no more than one per panel.
        let per_row_block = (2 * threads).div_ceil(row_blocks).clamp(1, panels);
        let slice = panels.div_ceil(per_row_block);
        let slices = panels.div_ceil(slice);
        let packed_len = if self.b_per_task {
            0
        } else {
            panels * nr * self.kb
        };
        with_buffer(&PACK_B, packed_len, |bp| {
            if !self.b_per_task {
                self.pack_b(b, bp, threads);
            }
            let bp = &*bp;
            let task = |t: usize| {
                let (ib, s) = (t / slices, t % slices);
                let cols = s * slice..((s + 1) * slice).min(panels);
                self.task((a, b, bp), ib * mc, cols, dst);
            };
            if threads > 1 && row_blocks * slices > 1 {
                (0..row_blocks * slices).into_par_iter().for_each(task);
            } else {
                (0..row_blocks * slices).for_each(task);
            }
        });
    }

    fn pack_b(&self, b: &MatRef, out: &mut [f32], threads: usize) {
        let nr = self.kern.nr;
        let at = |i: usize| (self.pc, self.jc + i * nr);
        if threads > 1 {
            let panel = nr * self.kb;
            out.par_chunks_mut(panel).enumerate().for_each(|(i, o)| {
                let valid = nr.min(self.nb - i * nr);
                pack::pack_b_panel(b, at(i), self.kb, valid, nr, o);
            });
        } else {
            pack::pack_b(b, at(0), (self.kb, self.nb), nr, out);
        }
    }

    /// Rows `r0 .. r0+mc` of this block's product over the panels `cols`.
    fn task(
        &self,
        (a, b, packed_b): (&MatRef, &MatRef, &[f32]),
        r0: usize,
        cols: std::ops::Range<usize>,
        dst: &Dst,
    ) {
        let Kernel { mr, nr, mc, .. } = self.kern;
        let (kb, mb) = (self.kb, mc.min(self.m - r0));
        let packed_a_len = if self.in_place_a {
            0
        } else {
            mb.div_ceil(mr) * mr * kb
        };
        let own_b_len = if self.b_per_task {
            cols.len() * nr * kb
        } else {
            0
        };
        with_buffer(&PACK_A, packed_a_len + own_b_len, |buf| {
            let (pa, own_b) = buf.split_at_mut(packed_a_len);
            if !self.in_place_a {
                pack::pack_a(a, (r0, self.pc), (mb, kb), mr, pa);
            }
            let first = cols.start;
            if self.b_per_task {
                let width = (cols.end * nr).min(self.nb) - first * nr;
                pack::pack_b(b, (self.pc, self.jc + first * nr), (kb, width), nr, own_b);
            }
            let (packed_b, skip) = if self.b_per_task {
                (&*own_b, first)
            } else {
                (packed_b, 0)
            };
            for j in cols {
                let b_panel = (packed_b[(j - skip) * nr * kb..].as_ptr(), nr);
                let width = nr.min(self.nb - j * nr);
                for i in 0..mb.div_ceil(mr) {
                    let a_panel = if self.in_place_a {
                        let start = (r0 + i * mr) * a.rs + self.pc * a.cs;
                        (a.data[start..].as_ptr(), a.rs, a.cs)
                    } else {
                        (pa[i * mr * kb..].as_ptr(), 1, mr)
                    };
                    let at = (r0 + i * mr, self.jc + j * nr);
                    let shape = (mr.min(mb - i * mr), width);
                    // SAFETY: the `A` panel gives `shape.0` rows of `kb` steps
                    // (packed, or inside the view `sgemm_with` checked); the `B`
                    // panel is a packed `kb × nr` panel; the tile `at`, of
                    // `shape`, lies inside `C` as checked there, and no other
                    // task writes it (tasks split rows and panels).
                    unsafe { self.tile(a_panel, b_panel, dst, at, shape) };
                }
            }
        });
    }

    /// One tile: straight into `C` when whole and `C` is row-major, through a
    /// scratch tile otherwise.
    ///
    /// # Safety
    /// As at the call in [`Block::task`].
    unsafe fn tile(
        &self,
        a: (*const f32, usize, usize),
        b: (*const f32, usize),
        dst: &Dst,
        (row, col): (usize, usize),
        (height, width): (usize, usize),
    ) {
        let Kernel { nr, tiles, .. } = self.kern;
        let kernel = tiles[height - 1];
        // SAFETY: the caller guarantees the tile lies inside `C`.
        let c = unsafe { dst.ptr.add(row * dst.rs + col * dst.cs) };
        if width == nr && dst.cs == 1 {
            // SAFETY: a whole-width row-major tile: accesses as checked.
            unsafe { kernel(self.kb, a, b, (c, dst.rs), self.accumulate) };
            return;
        }
        let mut scratch = [0f32; MAX_TILE];
        // SAFETY: the scratch tile holds `height·nr` floats, rows `nr` apart.
        unsafe { kernel(self.kb, a, b, (scratch.as_mut_ptr(), nr), false) };
        for (i, src) in scratch.chunks_exact(nr).take(height).enumerate() {
            for (j, &v) in src[..width].iter().enumerate() {
                // SAFETY: element (i, j) of the tile is inside `C`.
                let out = unsafe { &mut *c.add(i * dst.rs + j * dst.cs) };
                *out = if self.accumulate { *out + v } else { v };
            }
        }
    }
}
