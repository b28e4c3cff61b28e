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

mod block;
mod kernel;
mod lanes;
mod pack;
mod short;
#[cfg(test)]
mod tests;

use block::{Block, Dst};

/// A read-only matrix view: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    /// The elements (the view may use any part of them).
    pub data: &'a [f32],
    /// Elements between one row and the next (the column count, row-major).
    pub rs: usize,
    /// Elements between one column and the next (1, row-major).
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

    /// The transpose of this view: the strides swapped, nothing copied.
    fn t(self) -> Self {
        Self {
            data: self.data,
            rs: self.cs,
            cs: self.rs,
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

    fn kernel(self) -> kernel::Kernel {
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

/// Rows up to which a product counts as short: a transposed `B` is then
/// multiplied the other way round (see [`sgemm_with`]).
const SHORT: usize = 64;

/// `C[m×n] (+)= A[m×k] · B[k×n]` with `C` row-major, rows `ldc` apart: adds onto
/// `C` when `accumulate`, overwrites it otherwise. Uses the widest kernel this
/// CPU has, and rayon's pool when the product is large enough.
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
/// A short product with a transposed `B` (`dy·Wᵀ`: a few rows against a weight
/// stored row by row) runs as `Cᵀ = Bᵀ·Aᵀ`: the weight becomes the left operand,
/// read in place row by row, and only the short operand is packed; otherwise
/// the whole weight would be packed (read, written and read again) for a few
/// rows' worth of work.
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
    let ptr = c.as_mut_ptr();
    if m <= FEW && b.cs == 1 {
        let dst = Dst {
            ptr,
            rs: ldc,
            cs: 1,
        };
        return few_rows(kern, threads, (m, n, k), &a, &b, &dst, accumulate);
    }
    if short::applies(&kern, m, &b) {
        let dst = Dst {
            ptr,
            rs: ldc,
            cs: 1,
        };
        return short::run(&kern, threads, (m, n, k), (&a, &b), &dst, accumulate);
    }
    if m <= SHORT && n > m && b.rs == 1 && b.cs != 1 {
        let dst = Dst {
            ptr,
            rs: 1,
            cs: ldc,
        };
        return run(kern, threads, (n, m, k), &b.t(), &a.t(), &dst, accumulate);
    }
    run(
        kern,
        threads,
        (m, n, k),
        &a,
        &b,
        &Dst {
            ptr,
            rs: ldc,
            cs: 1,
        },
        accumulate,
    );
}

/// Rows up to which a product whose `B` is stored row by row streams `B` row
/// by row (`kernel::rows`) instead of tiling.
const FEW: usize = 2;

/// Floats of `C` one task of [`few_rows`] adds onto at most: they stay in L1.
const FEW_FLOATS: usize = 8192;

/// A product of at most [`FEW`] rows: the columns split among tasks, each
/// streaming its columns of `B` row by row.
fn few_rows(
    kern: kernel::Kernel,
    threads: usize,
    (m, n, k): (usize, usize, usize),
    a: &MatRef,
    b: &MatRef,
    dst: &Dst,
    accumulate: bool,
) {
    let most = (FEW_FLOATS / m).next_multiple_of(16);
    let chunk = n.div_ceil(threads.max(1)).next_multiple_of(16).min(most);
    let task = |t: usize| {
        let (j0, w) = (t * chunk, chunk.min(n - t * chunk));
        let a = (a.data.as_ptr(), a.rs, a.cs);
        let b_cols = (b.data[j0..].as_ptr(), b.rs);
        // SAFETY: `sgemm_with` checked that `A` (m × k), `B` (k × n) and `C`
        // (m × n, rows `dst.rs` apart) lie inside their buffers; this task's
        // columns `j0 .. j0+w` are its own.
        unsafe { (kern.rows)((m, w, k), a, b_cols, (dst.ptr.add(j0), dst.rs), accumulate) };
    };
    let tasks = n.div_ceil(chunk);
    if threads > 1 && tasks > 1 {
        use rayon::prelude::*;
        (0..tasks).into_par_iter().for_each(task);
    } else {
        (0..tasks).for_each(task);
    }
}

/// The loops over column blocks (`nc`) and depth blocks (`kc`); see `block.rs`
/// for the rest.
fn run(
    kern: kernel::Kernel,
    threads: usize,
    (m, n, k): (usize, usize, usize),
    a: &MatRef,
    b: &MatRef,
    dst: &Dst,
    accumulate: bool,
) {
    let in_place_a = (a.cs == 1 || a.rs == 1) && n <= SHORT;
    let b_per_task = m <= kern.mc;
    for jc in (0..n).step_by(kern.nc) {
        let nb = kern.nc.min(n - jc);
        for pc in (0..k).step_by(kern.kc) {
            let block = Block {
                kern,
                m,
                jc,
                nb,
                pc,
                kb: kern.kc.min(k - pc),
                accumulate: accumulate || pc > 0,
                in_place_a,
                b_per_task,
            };
            block.run(a, b, dst, threads);
        }
    }
}
