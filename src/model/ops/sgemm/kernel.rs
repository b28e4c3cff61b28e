//! The register-blocked micro-kernel: one `MR × NR` tile of `C` accumulated in
//! vector registers over `kc` rank-1 updates, then written (or added) to `C`
//! once. Written once, generically over [`Lanes`], and compiled per
//! instruction set with that set enabled, so the generic body and the vector
//! methods inline into one straight-line loop per instance.
//!
//! Tile shapes keep the accumulators, one row of `B` and one broadcast of `A`
//! in registers: AVX-512 8 × 32 (16 accumulators of 32 registers), AVX2 6 × 16
//! (12 of 16), portable 4 × 8.

#[cfg(target_arch = "x86_64")]
use super::lanes::{Avx2, Avx512};
use super::lanes::{Lanes, Portable};

/// `C[h × NR] (+)= A · B` over `kc` steps, `h` the kernel's height. `a`: row
/// `i` of step `p` at `a[i·a_rs + p·a_cs]` (a packed panel: `1, MR`; `A` read in
/// place: its own strides). `b`: `kc` rows of `NR` floats, `ldb` apart (`NR` for
/// a packed panel, the matrix's row stride when read in place). `c`: row-major,
/// rows `ldc` apart.
pub(super) type TileFn = unsafe fn(
    kc: usize,
    a: (*const f32, usize, usize),
    b: (*const f32, usize),
    c: (*mut f32, usize),
    accumulate: bool,
);

/// A micro-kernel with the blocking that suits it.
#[derive(Clone, Copy)]
pub(super) struct Kernel {
    /// Rows of a full tile.
    pub mr: usize,
    /// Columns of a tile.
    pub nr: usize,
    /// Floats per vector register (the width of a `narrow` tile).
    pub lanes: usize,
    /// Rows of `A` packed per task (the block that stays in L2).
    pub mc: usize,
    /// Depth of one packed block (a `kc × nr` panel of `B` stays in L1).
    pub kc: usize,
    /// Columns of `B` packed at once (the block that stays in L3).
    pub nc: usize,
    /// `tiles[h - 1]` computes tiles of `h ≤ mr` rows.
    pub tiles: [TileFn; 8],
    /// The row-streaming kernel for products of a few rows.
    pub rows: RowsFn,
    /// `narrow[h - 1]`: tiles of all `h` rows of a short product, one vector
    /// wide, reading `B` in place (see `short.rs`); `narrow.len()` is the most
    /// rows such a tile takes.
    pub narrow: &'static [TileFn],
}

/// The largest `MR · NR` of any kernel: the edge tiles' scratch size.
pub(super) const MAX_TILE: usize = 8 * 32;

/// `H` rows, `NV` vectors wide; `S` independent sets of accumulators taking
/// turns over the steps, so that short tiles still have enough multiply-adds
/// in flight to hide their latency.
///
/// # Safety
/// `L` must be available, and every pointer valid for the accesses the
/// [`TileFn`] contract describes.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // fixed-size loops the compiler unrolls
unsafe fn tile<L: Lanes, const H: usize, const NV: usize, const S: usize>(
    kc: usize,
    (a, a_rs, a_cs): (*const f32, usize, usize),
    (b, ldb): (*const f32, usize),
    (c, ldc): (*mut f32, usize),
    accumulate: bool,
) {
    // SAFETY: the caller's contract (see above) covers every access below.
    unsafe {
        let mut acc = [[[L::zero(); NV]; H]; S];
        let mut rows = [a; H];
        for i in 0..H {
            rows[i] = a.add(i * a_rs);
        }
        for q in 0..kc / S {
            for s in 0..S {
                step::<L, H, NV>(q * S + s, &rows, a_cs, (b, ldb), &mut acc[s]);
            }
        }
        for p in kc / S * S..kc {
            step::<L, H, NV>(p, &rows, a_cs, (b, ldb), &mut acc[0]);
        }
        for i in 0..H {
            for j in 0..NV {
                let mut v = acc[0][i][j];
                for s in 1..S {
                    v = L::add(v, acc[s][i][j]);
                }
                let cp = c.add(i * ldc + j * L::WIDTH);
                L::store(
                    cp,
                    if accumulate {
                        L::add(L::load(cp), v)
                    } else {
                        v
                    },
                );
            }
        }
    }
}

/// Step `p` of [`tile`]: one row of `B` times one column of `A` into `acc`.
///
/// # Safety
/// As [`tile`].
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn step<L: Lanes, const H: usize, const NV: usize>(
    p: usize,
    rows: &[*const f32; H],
    a_cs: usize,
    (b, ldb): (*const f32, usize),
    acc: &mut [[L::V; NV]; H],
) {
    // SAFETY: as in `tile`.
    unsafe {
        let bp = b.add(p * ldb);
        let mut row = [L::zero(); NV];
        for j in 0..NV {
            row[j] = L::load(bp.add(j * L::WIDTH));
        }
        for i in 0..H {
            let ai = L::splat(*rows[i].add(p * a_cs));
            for j in 0..NV {
                acc[i][j] = L::mul_add(ai, row[j], acc[i][j]);
            }
        }
    }
}

/// Declares the kernel instances of one instruction set, generic over height
/// `H`, accumulator sets `S` and width `NV` (vectors).
macro_rules! instances {
    ($name:ident, $lanes:ty, $feature:literal) => {
        #[target_feature(enable = $feature)]
        unsafe fn $name<const H: usize, const S: usize, const NV: usize>(
            kc: usize,
            a: (*const f32, usize, usize),
            b: (*const f32, usize),
            c: (*mut f32, usize),
            accumulate: bool,
        ) {
            // SAFETY: dispatched only where the features are detected
            // (`Isa::kernel`); pointers per the `TileFn` contract.
            unsafe { tile::<$lanes, H, NV, S>(kc, a, b, c, accumulate) }
        }
    };
}

#[cfg(target_arch = "x86_64")]
instances!(tile_avx512, Avx512, "avx512f");
#[cfg(target_arch = "x86_64")]
instances!(tile_avx2, Avx2, "avx2,fma");

/// # Safety
/// Pointers per the [`TileFn`] contract.
unsafe fn tile_portable<const H: usize, const S: usize, const NV: usize>(
    kc: usize,
    a: (*const f32, usize, usize),
    b: (*const f32, usize),
    c: (*mut f32, usize),
    accumulate: bool,
) {
    // SAFETY: plain arithmetic; pointers per the contract.
    unsafe { tile::<Portable, H, NV, S>(kc, a, b, c, accumulate) }
}

/// AVX-512F: 8 × 32 tiles.
#[cfg(target_arch = "x86_64")]
pub(super) const AVX512: Kernel = Kernel {
    mr: 8,
    nr: 32,
    lanes: 16,
    mc: 128,
    kc: 256,
    nc: 3072,
    tiles: [
        tile_avx512::<1, 4, 2>,
        tile_avx512::<2, 2, 2>,
        tile_avx512::<3, 2, 2>,
        tile_avx512::<4, 1, 2>,
        tile_avx512::<5, 1, 2>,
        tile_avx512::<6, 1, 2>,
        tile_avx512::<7, 1, 2>,
        tile_avx512::<8, 1, 2>,
    ],
    rows: rows_avx512,
    narrow: &[
        tile_avx512::<1, 8, 1>,
        tile_avx512::<2, 4, 1>,
        tile_avx512::<3, 3, 1>,
        tile_avx512::<4, 2, 1>,
        tile_avx512::<5, 2, 1>,
        tile_avx512::<6, 2, 1>,
        tile_avx512::<7, 2, 1>,
        tile_avx512::<8, 1, 1>,
        tile_avx512::<9, 1, 1>,
        tile_avx512::<10, 1, 1>,
        tile_avx512::<11, 1, 1>,
        tile_avx512::<12, 1, 1>,
        tile_avx512::<13, 1, 1>,
        tile_avx512::<14, 1, 1>,
        tile_avx512::<15, 1, 1>,
        tile_avx512::<16, 1, 1>,
    ],
};

/// AVX2 + FMA: 6 × 16 tiles.
#[cfg(target_arch = "x86_64")]
pub(super) const AVX2: Kernel = Kernel {
    mr: 6,
    nr: 16,
    lanes: 8,
    mc: 96,
    kc: 256,
    nc: 3072,
    tiles: [
        tile_avx2::<1, 4, 2>,
        tile_avx2::<2, 2, 2>,
        tile_avx2::<3, 2, 2>,
        tile_avx2::<4, 1, 2>,
        tile_avx2::<5, 1, 2>,
        tile_avx2::<6, 1, 2>,
        tile_avx2::<6, 1, 2>,
        tile_avx2::<6, 1, 2>,
    ],
    rows: rows_avx2,
    narrow: &[
        tile_avx2::<1, 8, 1>,
        tile_avx2::<2, 4, 1>,
        tile_avx2::<3, 3, 1>,
        tile_avx2::<4, 2, 1>,
        tile_avx2::<5, 2, 1>,
        tile_avx2::<6, 2, 1>,
        tile_avx2::<7, 2, 1>,
        tile_avx2::<8, 1, 1>,
        tile_avx2::<9, 1, 1>,
        tile_avx2::<10, 1, 1>,
        tile_avx2::<11, 1, 1>,
        tile_avx2::<12, 1, 1>,
    ],
};

/// Any CPU: 4 × 8 tiles.
pub(super) const PORTABLE: Kernel = Kernel {
    mr: 4,
    nr: 8,
    lanes: 8,
    mc: 64,
    kc: 256,
    nc: 2048,
    tiles: [
        tile_portable::<1, 4, 1>,
        tile_portable::<2, 2, 1>,
        tile_portable::<3, 1, 1>,
        tile_portable::<4, 1, 1>,
        tile_portable::<4, 1, 1>,
        tile_portable::<4, 1, 1>,
        tile_portable::<4, 1, 1>,
        tile_portable::<4, 1, 1>,
    ],
    rows: rows_portable,
    narrow: &[
        tile_portable::<1, 4, 1>,
        tile_portable::<2, 2, 1>,
        tile_portable::<3, 1, 1>,
        tile_portable::<4, 1, 1>,
    ],
};

/// `C[m × w] (+)= A[m × k] · B[k × w]` four rows of `B` at a time, added onto
/// every row of `C` (which stays in L1): for a product of a few rows, `B` is
/// read once, front to back, as fast as memory delivers it, and each row of
/// `C` is loaded and stored once per four rows of `B`.
/// `a`: `(ptr, rs, cs)`; `b`: `(ptr, row stride)`; `c`: `(ptr, row stride)`.
pub(super) type RowsFn = unsafe fn(
    shape: (usize, usize, usize),
    a: (*const f32, usize, usize),
    b: (*const f32, usize),
    c: (*mut f32, usize),
    accumulate: bool,
);

/// # Safety
/// `L` available; `a` valid for `m × k`, `b` for `k × w`, `c` for `m × w`.
#[inline(always)]
unsafe fn rows<L: Lanes>(
    (m, w, k): (usize, usize, usize),
    (a, a_rs, a_cs): (*const f32, usize, usize),
    (b, ldb): (*const f32, usize),
    (c, ldc): (*mut f32, usize),
    accumulate: bool,
) {
    const U: usize = 4;
    let whole = w / L::WIDTH * L::WIDTH;
    // SAFETY: every access is inside the regions the caller vouches for.
    unsafe {
        if !accumulate {
            for i in 0..m {
                std::ptr::write_bytes(c.add(i * ldc), 0, w);
            }
        }
        let mut p = 0;
        while p < k {
            let u = U.min(k - p);
            let bp: [*const f32; U] = std::array::from_fn(|q| b.add((p + q.min(u - 1)) * ldb));
            for i in 0..m {
                // Steps past `u` repeat the last row with a zero weight.
                let s: [f32; U] = std::array::from_fn(|q| {
                    if q < u {
                        *a.add(i * a_rs + (p + q) * a_cs)
                    } else {
                        0.0
                    }
                });
                let sv = [
                    L::splat(s[0]),
                    L::splat(s[1]),
                    L::splat(s[2]),
                    L::splat(s[3]),
                ];
                let cp = c.add(i * ldc);
                for j in (0..whole).step_by(L::WIDTH) {
                    let mut v = L::load(cp.add(j));
                    for q in 0..U {
                        v = L::mul_add(sv[q], L::load(bp[q].add(j)), v);
                    }
                    L::store(cp.add(j), v);
                }
                for j in whole..w {
                    let mut v = *cp.add(j);
                    for q in 0..U {
                        v += s[q] * *bp[q].add(j);
                    }
                    *cp.add(j) = v;
                }
            }
            p += u;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rows_avx512(
    s: (usize, usize, usize),
    a: (*const f32, usize, usize),
    b: (*const f32, usize),
    c: (*mut f32, usize),
    accumulate: bool,
) {
    // SAFETY: dispatched only where AVX-512F is detected; pointers per contract.
    unsafe { rows::<Avx512>(s, a, b, c, accumulate) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2(
    s: (usize, usize, usize),
    a: (*const f32, usize, usize),
    b: (*const f32, usize),
    c: (*mut f32, usize),
    accumulate: bool,
) {
    // SAFETY: dispatched only where AVX2 and FMA are detected; pointers per contract.
    unsafe { rows::<Avx2>(s, a, b, c, accumulate) }
}

unsafe fn rows_portable(
    s: (usize, usize, usize),
    a: (*const f32, usize, usize),
    b: (*const f32, usize),
    c: (*mut f32, usize),
    accumulate: bool,
) {
    // SAFETY: plain arithmetic; pointers per contract.
    unsafe { rows::<Portable>(s, a, b, c, accumulate) }
}
