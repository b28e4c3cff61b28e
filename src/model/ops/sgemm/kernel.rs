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

/// `C[MR × NR] (+)= A · B` over `kc` steps. `a`: packed `A` panel, `MR` floats
/// per step. `b`: `kc` rows of `NR` floats, `ldb` apart (`NR` for a packed panel,
/// the matrix's row stride when read in place). `c`: row-major, `ldc` apart.
pub(super) type TileFn = unsafe fn(
    kc: usize,
    a: *const f32,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
);

/// A micro-kernel with the blocking that suits it.
#[derive(Clone, Copy)]
pub(super) struct Kernel {
    /// Rows of a tile.
    pub mr: usize,
    /// Columns of a tile.
    pub nr: usize,
    /// Rows of `A` packed per task (the block that stays in L2).
    pub mc: usize,
    /// Depth of one packed block (a `kc × nr` panel of `B` stays in L1).
    pub kc: usize,
    /// Columns of `B` packed at once (the block that stays in L3).
    pub nc: usize,
    pub tile: TileFn,
}

/// The largest `MR · NR` of any kernel: the edge tiles' scratch size.
pub(super) const MAX_TILE: usize = 8 * 32;

/// # Safety
/// `L` must be available, and every pointer valid for the accesses the
/// [`TileFn`] contract describes.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // fixed-size loops the compiler unrolls
unsafe fn tile<L: Lanes, const MR: usize, const NV: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: the caller's contract (see above) covers every access below.
    unsafe {
        let mut acc = [[L::zero(); NV]; MR];
        let mut row = [L::zero(); NV];
        for p in 0..kc {
            let bp = b.add(p * ldb);
            for j in 0..NV {
                row[j] = L::load(bp.add(j * L::WIDTH));
            }
            let ap = a.add(p * MR);
            for i in 0..MR {
                let ai = L::splat(*ap.add(i));
                for j in 0..NV {
                    acc[i][j] = L::mul_add(ai, row[j], acc[i][j]);
                }
            }
        }
        for i in 0..MR {
            for j in 0..NV {
                let cp = c.add(i * ldc + j * L::WIDTH);
                let v = if accumulate {
                    L::add(L::load(cp), acc[i][j])
                } else {
                    acc[i][j]
                };
                L::store(cp, v);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512(
    kc: usize,
    a: *const f32,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: dispatched only where AVX-512F is detected; pointers per contract.
    unsafe { tile::<Avx512, 8, 2>(kc, a, b, ldb, c, ldc, accumulate) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(
    kc: usize,
    a: *const f32,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: dispatched only where AVX2 and FMA are detected; pointers per contract.
    unsafe { tile::<Avx2, 6, 2>(kc, a, b, ldb, c, ldc, accumulate) }
}

unsafe fn tile_portable(
    kc: usize,
    a: *const f32,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: plain arithmetic; pointers per contract.
    unsafe { tile::<Portable, 4, 1>(kc, a, b, ldb, c, ldc, accumulate) }
}

/// AVX-512F: 8 × 32 tiles.
#[cfg(target_arch = "x86_64")]
pub(super) const AVX512: Kernel = Kernel {
    mr: 8,
    nr: 32,
    mc: 128,
    kc: 256,
    nc: 3072,
    tile: tile_avx512,
};

/// AVX2 + FMA: 6 × 16 tiles.
#[cfg(target_arch = "x86_64")]
pub(super) const AVX2: Kernel = Kernel {
    mr: 6,
    nr: 16,
    mc: 96,
    kc: 256,
    nc: 3072,
    tile: tile_avx2,
};

/// Any CPU: 4 × 8 tiles.
pub(super) const PORTABLE: Kernel = Kernel {
    mr: 4,
    nr: 8,
    mc: 64,
    kc: 256,
    nc: 2048,
    tile: tile_portable,
};
