//! Our own fp32 matrix multiply, `C (+)= A·B`, for the Conv1D layers and their
//! gradients: BLIS-style blocking (a `kc × nc` block of `B` packed once and
//! shared, an `mc × kc` block of `A` packed per task, a register-blocked
//! micro-kernel over `mr × nr` tiles), chosen at run time among AVX-512F,
//! AVX2+FMA and a portable kernel, and spread over rayon's pool.
//!
//! Why not the `gemm` crate: the recipe's products are tall-thin (a short text
//! is 10–60 rows against a 768 × 2304 weight) and for those what counts is
//! reading the weight once. With few rows, a weight stored row by row is read
//! in place instead of being packed (packing would read it, write a copy and
//! read that again), and the work is split over the columns so both cores
//! stream half the weight each. Operands may be transposed through their
//! strides (`dy·Wᵀ`, `xᵀ·dy`), and the product may be added onto `C` (the
//! forward starts `C` as the bias).

mod kernel;
mod lanes;
mod pack;
#[cfg(test)]
mod tests;

use std::cell::Cell;

use rayon::prelude::*;

use kernel::{Kernel, MAX_TILE};

/// A read-only matrix view: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    /// The elements (the view may use any part of them).
    pub data: &'a [f32],
    /// Distance between rows.
    pub rs: usize,
    /// Distance between columns.
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: cols,
        }
    }

    /// Whether every element of an `m × n` view lies inside `data`.
    fn covers(&self, m: usize, n: usize) -> bool {
        m == 0 || n == 0 || (m - 1) * self.rs + (n - 1) * self.cs < self.data.len()
    }
}

/// The instruction sets the micro-kernel is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F, 16 lanes.
    Avx512,
    /// AVX2 with FMA, 8 lanes.
    Avx2,
    /// Plain Rust, for any CPU.
    Portable,
}

impl Isa {
    /// Every kernel, widest first.
    pub const ALL: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Portable];

    /// Whether this CPU can run the kernel.
    pub fn available(self) -> bool {
        use lanes::Lanes;
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => lanes::Avx512::available(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => lanes::Avx2::available(),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx512 | Isa::Avx2 => false,
            Isa::Portable => true,
        }
    }

    /// The widest kernel this CPU can run (detected once).
    pub fn best() -> Isa {
        static BEST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| *Isa::ALL.iter().find(|i| i.available()).expect("portable"))
    }

    fn kernel(self) -> Kernel {
        assert!(self.available(), "{self:?} is not supported by this CPU");
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => kernel::AVX512,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => kernel::AVX2,
            _ => kernel::PORTABLE,
        }
    }
}

/// Multiply-adds below which a product runs on the calling thread: waking an
/// idle pool thread costs tens of microseconds, more than it saves on a small
/// product (a short text on an idle server would pay it in every layer).
pub const PARALLEL_MACS: usize = 1 << 22;

/// Rows up to which a `B` stored row by row is read in place, not packed.
const IN_PLACE_ROWS: usize = 64;

/// `C[m×n] (+)= A[m×k] · B[k×n]` with `C` row-major, rows `ldc` apart: adds onto
/// `C` when `accumulate`, overwrites it otherwise. Uses the widest kernel this
/// CPU has, and rayon's pool when the product is large enough.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    (m, n, k): (usize, usize, usize),
    a: MatRef,
    b: MatRef,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    let threads = if m * n * k >= PARALLEL_MACS {
        rayon::current_num_threads()
    } else {
        1
    };
    sgemm_with(Isa::best(), threads, (m, n, k), a, b, c, ldc, accumulate);
}

/// [`sgemm`] with the kernel and the number of tasks chosen by the caller (for
/// tests and benchmarks; `threads` 1 keeps everything on the calling thread).
///
/// # Panics
/// If `isa` is not available, or a view or `c` is too short for its shape.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_with(
    isa: Isa,
    threads: usize,
    (m, n, k): (usize, usize, usize),
    a: MatRef,
    b: MatRef,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    assert!(a.covers(m, k) && b.covers(k, n), "sgemm: operand too short");
    assert!(
        ldc >= n && (m == 0 || c.len() >= (m - 1) * ldc + n),
        "sgemm: C too short"
    );
    let kern = isa.kernel();
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.chunks_mut(ldc).take(m).for_each(|r| r[..n].fill(0.0));
        }
        return;
    }
    let dst = Dst {
        ptr: c.as_mut_ptr(),
        ldc,
    };
    for jc in (0..n).step_by(kern.nc) {
        let nb = kern.nc.min(n - jc);
        for pc in (0..k).step_by(kern.kc) {
            let kb = kern.kc.min(k - pc);
            let block = Block {
                kern,
                m,
                jc,
                nb,
                pc,
                kb,
                accumulate: accumulate || pc > 0,
            };
            block.run(&a, &b, &dst, threads);
        }
    }
}

/// `C` as a raw pointer that tasks share, each writing its own tiles.
struct Dst {
    ptr: *mut f32,
    ldc: usize,
}

// SAFETY: tasks write disjoint tiles of `C` (see `Block::run`), and `sgemm_with`
// holds the unique borrow of `C` until they have all finished.
unsafe impl Sync for Dst {}

/// One `kb`-deep slice of one `nb`-wide column block of the product.
struct Block {
    kern: Kernel,
    m: usize,
    jc: usize,
    nb: usize,
    pc: usize,
    kb: usize,
    accumulate: bool,
}

thread_local! {
    /// Packing buffers, kept between calls so a product allocates nothing.
    static PACK_A: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    static PACK_B: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on `len` floats of this thread's buffer `key` (contents arbitrary).
fn with_buffer<R>(
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
    /// Packs this block's `B` (unless read in place) and runs its tasks: each a
    /// block of `mc` rows times a run of `nr`-wide panels.
    fn run(&self, a: &MatRef, b: &MatRef, dst: &Dst, threads: usize) {
        let Kernel { nr, mc, .. } = self.kern;
        let panels = self.nb.div_ceil(nr);
        let row_blocks = self.m.div_ceil(mc);
        // Enough tasks to keep every thread busy, no more than one per panel.
        let per_row_block = (2 * threads).div_ceil(row_blocks).min(panels);
        let slice = panels.div_ceil(per_row_block.max(1));
        let tasks = row_blocks * panels.div_ceil(slice);
        let in_place = b.cs == 1 && self.m <= IN_PLACE_ROWS;
        let packed_len = if in_place {
            nr * self.kb
        } else {
            panels * nr * self.kb
        };
        with_buffer(&PACK_B, packed_len, |bp| {
            if in_place {
                // Only a ragged last panel is packed, into the buffer's start.
                let (full, rest) = (self.nb / nr, self.nb % nr);
                if rest > 0 {
                    let at = (self.pc, self.jc + full * nr);
                    pack::pack_b_panel(b, at, self.kb, rest, nr, bp);
                }
            } else {
                self.pack_b(b, bp, threads);
            }
            let bp = &*bp;
            let task = |t: usize| {
                let (ib, s) = (t / panels.div_ceil(slice), t % panels.div_ceil(slice));
                let cols = s * slice..((s + 1) * slice).min(panels);
                self.task(a, b, bp, in_place, ib * mc, cols, dst);
            };
            if threads > 1 && tasks > 1 {
                (0..tasks).into_par_iter().for_each(task);
            } else {
                (0..tasks).for_each(task);
            }
        });
    }

    fn pack_b(&self, b: &MatRef, out: &mut [f32], threads: usize) {
        let nr = self.kern.nr;
        let panel = nr * self.kb;
        let at = |i: usize| (self.pc, self.jc + i * nr);
        if threads > 1 {
            out.par_chunks_mut(panel).enumerate().for_each(|(i, o)| {
                let valid = nr.min(self.nb - i * nr);
                pack::pack_b_panel(b, at(i), self.kb, valid, nr, o);
            });
        } else {
            pack::pack_b(b, at(0), (self.kb, self.nb), nr, out);
        }
    }
}

impl Block {
    /// Rows `r0 .. r0+mc` of this block's product over the panels `cols`.
    #[allow(clippy::too_many_arguments)]
    fn task(
        &self,
        a: &MatRef,
        b: &MatRef,
        packed_b: &[f32],
        in_place: bool,
        r0: usize,
        cols: std::ops::Range<usize>,
        dst: &Dst,
    ) {
        let Kernel { mr, nr, mc, .. } = self.kern;
        let (kb, mb) = (self.kb, mc.min(self.m - r0));
        let full_panels = self.nb / nr;
        with_buffer(&PACK_A, mb.div_ceil(mr) * mr * kb, |pa| {
            pack::pack_a(a, (r0, self.pc), (mb, kb), mr, pa);
            for j in cols {
                let (bptr, ldb) = if !in_place {
                    (packed_b[j * nr * kb..].as_ptr(), nr)
                } else if j < full_panels {
                    let start = self.pc * b.rs + self.jc + j * nr;
                    (b.data[start..].as_ptr(), b.rs)
                } else {
                    (packed_b.as_ptr(), nr)
                };
                let width = nr.min(self.nb - j * nr);
                for (i, ap) in pa.chunks_exact(mr * kb).enumerate() {
                    let height = mr.min(mb - i * mr);
                    let at = (r0 + i * mr, self.jc + j * nr);
                    // SAFETY: `ap` holds `mr·kb` packed floats; `bptr` gives `kb`
                    // rows of `nr` floats `ldb` apart (a packed panel, or a full
                    // panel of `B` inside the view `sgemm_with` checked); the tile
                    // `at`, `height × width`, lies inside `C` as checked there, and
                    // no other task writes it (tasks split rows and panels).
                    unsafe { self.tile(ap, (bptr, ldb), dst, at, (height, width)) };
                }
            }
        });
    }

    /// One tile: straight into `C` when whole, through a scratch tile at edges.
    ///
    /// # Safety
    /// As at the call in [`Block::task`].
    unsafe fn tile(
        &self,
        a: &[f32],
        (b, ldb): (*const f32, usize),
        dst: &Dst,
        (row, col): (usize, usize),
        (height, width): (usize, usize),
    ) {
        let Kernel { mr, nr, tile, .. } = self.kern;
        let kb = self.kb;
        // SAFETY: the caller guarantees the tile lies inside `C`.
        let c = unsafe { dst.ptr.add(row * dst.ldc + col) };
        if height == mr && width == nr {
            // SAFETY: a whole tile: every access is inside the checked regions.
            unsafe { tile(kb, a.as_ptr(), b, ldb, c, dst.ldc, self.accumulate) };
            return;
        }
        let mut scratch = [0f32; MAX_TILE];
        // SAFETY: the scratch tile holds `mr·nr` floats, rows `nr` apart.
        unsafe { tile(kb, a.as_ptr(), b, ldb, scratch.as_mut_ptr(), nr, false) };
        for (i, src) in scratch.chunks_exact(nr).take(height).enumerate() {
            // SAFETY: row `i < height` of the tile, `width` columns, is inside `C`.
            let out = unsafe { std::slice::from_raw_parts_mut(c.add(i * dst.ldc), width) };
            if self.accumulate {
                out.iter_mut().zip(src).for_each(|(o, s)| *o += s);
            } else {
                out.copy_from_slice(&src[..width]);
            }
        }
    }
}
