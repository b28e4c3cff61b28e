//! Our own int8 matrix product, `C = A·W` with `A` `i8` rows and `W` `i8`
//! weights packed once, summed exactly in `i32`, for int8 inference of the
//! Conv1D layers (see `int8_linear.rs`): the result comes back as `i32`, or
//! de-quantized to `f32` with a bias in the same pass (no `i32` matrix is
//! written and read again).
//!
//! Chosen at run time, as `sgemm`'s kernels are: AVX-512 VNNI and AVX-VNNI
//! (`vpdpbusd`), AVX2 (`vpmaddubsw` made safe from saturation, see
//! `lanes.rs`) and a portable kernel. Every kernel gives the same integers
//! (the tests check each against a scalar `i32` product), so which one ran
//! changes nothing but speed.
//!
//! Blocking: the columns are split among tasks in whole 64-column panels
//! (each task streams its share of the weights); a task walks blocks of rows
//! small enough to stay in L2, and within a block each panel of weights
//! (a few tens of KiB) is reused by every row tile.

mod bf16;
mod kernel;
mod lanes;
mod pack;
#[cfg(test)]
mod tests;

use std::cell::Cell;

#[cfg(test)]
pub use bf16::to_bf16;
pub use bf16::{with_bgemm_isa, Bf16Isa, PackedBf16};
pub use pack::{PackedI8, PreparedA, PANEL};

use kernel::{Out, QKernel};

/// The instruction sets the int8 micro-kernel is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QIsa {
    /// AVX-512 VNNI (`vpdpbusd` on 16 lanes).
    Avx512Vnni,
    /// AVX-VNNI (`vpdpbusd` on 8 lanes, VEX-encoded).
    AvxVnni,
    /// AVX2 (`vpmaddubsw` + `vpmaddwd`, 8 lanes).
    Avx2,
    /// Plain Rust, for any CPU.
    Portable,
}

impl QIsa {
    /// Every kernel, fastest first.
    pub const ALL: [QIsa; 4] = [QIsa::Avx512Vnni, QIsa::AvxVnni, QIsa::Avx2, QIsa::Portable];

    /// Whether this CPU can run the kernel.
    pub fn available(self) -> bool {
        use lanes::QLanes;
        match self {
            #[cfg(target_arch = "x86_64")]
            QIsa::Avx512Vnni => lanes::Avx512Vnni::available(),
            #[cfg(target_arch = "x86_64")]
            QIsa::AvxVnni => lanes::AvxVnni::available(),
            #[cfg(target_arch = "x86_64")]
            QIsa::Avx2 => lanes::Avx2::available(),
            #[cfg(not(target_arch = "x86_64"))]
            QIsa::Avx512Vnni | QIsa::AvxVnni | QIsa::Avx2 => false,
            QIsa::Portable => true,
        }
    }

    /// The name used by `TUNESERVE_QGEMM` and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            QIsa::Avx512Vnni => "avx512vnni",
            QIsa::AvxVnni => "avxvnni",
            QIsa::Avx2 => "avx2",
            QIsa::Portable => "portable",
        }
    }

    /// The kernel products use on this thread: the one [`with_qgemm_isa`]
    /// set, else the one `TUNESERVE_QGEMM` names (when the CPU has it), else
    /// the fastest this CPU has.
    pub fn current() -> QIsa {
        if let Some(isa) = FORCED.get() {
            return isa;
        }
        static BEST: std::sync::OnceLock<QIsa> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            let named = std::env::var("TUNESERVE_QGEMM").ok();
            let by_name = QIsa::ALL
                .into_iter()
                .find(|i| named.as_deref() == Some(i.as_str()) && i.available());
            by_name.unwrap_or_else(|| *QIsa::ALL.iter().find(|i| i.available()).expect("portable"))
        })
    }

    /// Whether this kernel takes `A` as `a + 128` (see [`PreparedA`]).
    pub fn offset(self) -> bool {
        self.kernel().offset
    }

    fn kernel(self) -> QKernel {
        assert!(self.available(), "{self:?} is not supported by this CPU");
        match self {
            #[cfg(target_arch = "x86_64")]
            QIsa::Avx512Vnni => kernel::AVX512VNNI,
            #[cfg(target_arch = "x86_64")]
            QIsa::AvxVnni => kernel::AVXVNNI,
            #[cfg(target_arch = "x86_64")]
            QIsa::Avx2 => kernel::AVX2,
            _ => kernel::PORTABLE,
        }
    }
}

thread_local! {
    static FORCED: Cell<Option<QIsa>> = const { Cell::new(None) };
}

/// Runs `f` with this thread's int8 products on `isa` (for tests and
/// benchmarks: a forward pass on every kernel the CPU has).
///
/// # Panics
/// If the CPU lacks `isa`.
pub fn with_qgemm_isa<R>(isa: QIsa, f: impl FnOnce() -> R) -> R {
    assert!(isa.available(), "{isa:?} is not supported by this CPU");
    struct Restore(Option<QIsa>);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCED.set(self.0);
        }
    }
    let _restore = Restore(FORCED.replace(Some(isa)));
    f()
}

/// Multiply-adds below which a product stays on the calling thread (four
/// times `sgemm`'s: an int8 product is about that much faster).
pub const PARALLEL_MACS: usize = 1 << 24;

/// `C[m×n] = A[m×k]·W[k×n]` exactly, in `i32` (`C` row-major, `n` wide), on
/// `isa`, in `threads` tasks.
///
/// # Panics
/// If `isa` is unavailable or `a`/`c` are too short.
#[cfg_attr(not(test), allow(dead_code))] // the exact form the tests check
pub fn qgemm_i32(isa: QIsa, threads: usize, a: &[i8], m: usize, w: &PackedI8, c: &mut [i32]) {
    let (k, n) = w.shape();
    assert!(
        a.len() >= m * k && c.len() >= m * n,
        "qgemm: operand too short"
    );
    let a = PreparedA::from_i8(a, (m, k), isa.offset());
    let kern = isa.kernel();
    let panels = w.panels(kern.offset);
    run(&kern, threads, a.rows(), &panels, Out::I32(c.as_mut_ptr()));
}

/// `C[i][j] = (A·W)[i][j] · row_scale[i] · col_scale[j] + bias[j]` in `f32`
/// (`C` row-major, `n` wide), on `isa` in `threads` tasks. `col_scale` and
/// `bias` hold whole panels (`n` rounded up to [`PANEL`]); `a` must be in
/// `isa`'s encoding.
///
/// # Panics
/// If `isa` is unavailable, `a` is in the other encoding or is not `k`
/// deep, or a slice is too short.
pub fn qgemm_f32(
    isa: QIsa,
    threads: usize,
    a: &PreparedA,
    w: &PackedI8,
    (row_scale, col_scale, bias): (&[f32], &[f32], &[f32]),
    c: &mut [f32],
) {
    let (k, n) = w.shape();
    let padded = n.next_multiple_of(PANEL);
    assert_eq!(a.offset, isa.offset(), "qgemm: A is in the other encoding");
    assert_eq!(a.kp, k.div_ceil(4) * 4, "qgemm: A is not {k} deep");
    assert!(row_scale.len() >= a.m && col_scale.len() >= padded && bias.len() >= padded);
    assert!(c.len() >= a.m * n, "qgemm: C too short");
    let out = Out::F32 {
        c: c.as_mut_ptr(),
        rows: row_scale.as_ptr(),
        cols: (col_scale.as_ptr(), bias.as_ptr()),
    };
    let kern = isa.kernel();
    run(&kern, threads, a.rows(), &w.panels(kern.offset), out);
}

/// Shared pointers the tasks write through, each its own columns.
#[derive(Clone, Copy)]
struct Shared(Out);

// SAFETY: tasks write disjoint column ranges of `C` (see `run`), and the
// caller holds the unique borrow of `C` until they have all finished.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

/// Bytes of `A` one row block holds at most (it stays in L2).
const BLOCK_BYTES: usize = 256 << 10;

/// Packed weights as the tasks read them: `kq` four-byte steps per panel of
/// [`PANEL`] columns, `n` real columns, the per-column correction.
struct Panels<'a> {
    pub n: usize,
    pub kq: usize,
    /// Panel after panel, `kq · 4 · PANEL` bytes each.
    pub data: &'a [i8],
    /// Whole panels' worth.
    pub corr: &'a [i32],
}

impl Panels<'_> {
    fn panel(&self, p: usize) -> &[i8] {
        let len = self.kq * 4 * PANEL;
        &self.data[p * len..(p + 1) * len]
    }
}

/// Rows of `A` as the tasks read them: `(bytes, rows, bytes per row)`, `kq`
/// four-byte steps of each row in use.
type Rows<'a> = (&'a [u8], usize, usize);

/// Splits the panels among tasks and runs them.
fn run(kern: &QKernel, threads: usize, a: Rows, w: &Panels, out: Out) {
    let n = w.n;
    if a.1 == 0 || n == 0 {
        return;
    }
    let panels = n.div_ceil(PANEL);
    let tasks = threads.clamp(1, panels);
    let per_task = panels.div_ceil(tasks);
    let shared = Shared(out);
    let task = |t: usize| {
        let first = t * per_task;
        let last = panels.min(first + per_task);
        // SAFETY: the asserts of the callers keep every access in bounds;
        // this task writes only the columns of its panels.
        unsafe { panels_task(kern, a, w, first..last, shared) };
    };
    let tasks = panels.div_ceil(per_task);
    if tasks > 1 {
        use rayon::prelude::*;
        (0..tasks).into_par_iter().for_each(task);
    } else {
        (0..tasks).for_each(task);
    }
}

/// One task: every row block against the panels `range`.
///
/// # Safety
/// `out` valid for `a.m × n` outputs (and the de-quantizing pointers for
/// their rows and whole panels).
unsafe fn panels_task(
    kern: &QKernel,
    (a, m, lda): Rows,
    w: &Panels,
    range: std::ops::Range<usize>,
    Shared(out): Shared,
) {
    let (n, kq, corr) = (w.n, w.kq, w.corr);
    let mc = (BLOCK_BYTES / lda.max(1)).max(kern.mr) / kern.mr * kern.mr;
    for r0 in (0..m).step_by(mc) {
        let r1 = m.min(r0 + mc);
        for p in range.clone() {
            let panel = w.panel(p);
            for sub in (0..PANEL).step_by(kern.cols) {
                let j0 = p * PANEL + sub;
                if j0 >= n {
                    break;
                }
                let valid = kern.cols.min(n - j0);
                let b = (panel[4 * sub..].as_ptr(), 4 * PANEL);
                for i0 in (r0..r1).step_by(kern.mr) {
                    let h = kern.mr.min(r1 - i0);
                    let a_rows = (a[i0 * lda..].as_ptr(), lda);
                    // SAFETY: per this function's contract.
                    unsafe {
                        tile_at(
                            kern,
                            (kq, h),
                            a_rows,
                            b,
                            corr[j0..].as_ptr(),
                            out,
                            (i0, j0, valid, n),
                        )
                    };
                }
            }
        }
    }
}

/// One tile at `(i0, j0)` with `valid` real columns of the output's `n`:
/// written in place when whole, through a scratch tile at the right edge.
///
/// # Safety
/// As [`panels_task`].
#[allow(clippy::too_many_arguments)]
unsafe fn tile_at(
    kern: &QKernel,
    (kq, h): (usize, usize),
    a: (*const u8, usize),
    b: (*const i8, usize),
    corr: *const i32,
    out: Out,
    (i0, j0, valid, n): (usize, usize, usize, usize),
) {
    let f = kern.tiles[h - 1];
    // SAFETY: per the contract; offsets stay inside the output.
    unsafe {
        let at = match out {
            Out::I32(c) => Out::I32(c.add(i0 * n + j0)),
            Out::F32 { c, rows, cols } => Out::F32 {
                c: c.add(i0 * n + j0),
                rows: rows.add(i0),
                cols: (cols.0.add(j0), cols.1.add(j0)),
            },
        };
        if valid == kern.cols {
            return f(kq, a, b, corr, at, n);
        }
        let mut scratch = [0u32; 6 * PANEL];
        let sp = scratch.as_mut_ptr();
        let tmp = match at {
            Out::I32(_) => Out::I32(sp.cast()),
            Out::F32 { rows, cols, .. } => Out::F32 {
                c: sp.cast(),
                rows,
                cols,
            },
        };
        f(kq, a, b, corr, tmp, kern.cols);
        let dst: *mut u32 = match at {
            Out::I32(c) => c.cast(),
            Out::F32 { c, .. } => c.cast(),
        };
        for i in 0..h {
            std::ptr::copy_nonoverlapping(sp.add(i * kern.cols), dst.add(i * n), valid);
        }
    }
}
