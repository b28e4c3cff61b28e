//! The register-blocked int8 micro-kernel: one `H × (NV·WIDTH)` tile of `C`
//! held in `i32` accumulators over all of `k` (four steps per instruction),
//! then corrected, de-quantized and written once. Written once over
//! [`QLanes`] and compiled per instruction set, as `sgemm`'s kernel is.
//!
//! Tile shapes keep the accumulators, one row of the packed weights and a
//! broadcast of `A` in registers: AVX-512 VNNI 6 × 64 (24 of 32 registers),
//! AVX-VNNI 6 × 16, AVX2 4 × 16 (its sign trick needs temporaries), portable
//! 4 × 8.

#[cfg(target_arch = "x86_64")]
use super::lanes::{Avx2, Avx512Vnni, AvxVnni};
use super::lanes::{Portable, QLanes};

/// Where a tile's results go; pointers are at the tile's first row and
/// column, `ldc` elements between rows.
#[derive(Clone, Copy)]
pub(super) enum Out {
    /// The corrected `i32` sums.
    #[cfg_attr(not(test), allow(dead_code))]
    I32(*mut i32),
    /// `sum · rows[i] · cols.0[j] + cols.1[j]` in `f32`.
    F32 {
        c: *mut f32,
        rows: *const f32,
        cols: (*const f32, *const f32),
    },
}

/// `C[h × cols] = A · B` over `kq` four-byte steps. `a`: `(ptr, row stride in
/// bytes)`, rows in the lanes' encoding; `b`: `(ptr, bytes per step)` into a
/// packed panel; `corr`: the per-column correction (`cols` entries); `ldc`:
/// elements between rows of the output.
pub(super) type TileFn = unsafe fn(
    kq: usize,
    a: (*const u8, usize),
    b: (*const i8, usize),
    corr: *const i32,
    out: Out,
    ldc: usize,
);

/// A micro-kernel with its shape.
#[derive(Clone, Copy)]
pub(super) struct QKernel {
    /// Rows of a full tile.
    pub mr: usize,
    /// Columns of a tile (a divisor of the panel width, 64).
    pub cols: usize,
    /// Whether `A` is taken as `a + 128`.
    pub offset: bool,
    /// `tiles[h - 1]` computes tiles of `h ≤ mr` rows.
    pub tiles: [TileFn; 6],
}

/// # Safety
/// `L` available; pointers valid for the accesses [`TileFn`] describes.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // fixed-size loops the compiler unrolls
pub(super) unsafe fn tile<L: QLanes, const H: usize, const NV: usize>(
    kq: usize,
    (a, lda): (*const u8, usize),
    (b, ldb): (*const i8, usize),
    corr: *const i32,
    out: Out,
    ldc: usize,
) {
    // SAFETY: the caller's contract covers every access below.
    unsafe {
        let mut acc = [[L::zero(); NV]; H];
        for q in 0..kq {
            let bp = b.add(q * ldb);
            let mut row = [L::zero(); NV];
            for v in 0..NV {
                row[v] = L::load(bp.add(v * 4 * L::WIDTH));
            }
            for i in 0..H {
                let ai = L::bcast(a.add(i * lda + 4 * q));
                for v in 0..NV {
                    acc[i][v] = L::dot(acc[i][v], ai, row[v]);
                }
            }
        }
        for i in 0..H {
            for v in 0..NV {
                let j = v * L::WIDTH;
                match out {
                    Out::I32(c) => L::store_i32(c.add(i * ldc + j), acc[i][v], corr.add(j)),
                    Out::F32 { c, rows, cols } => L::store_f32(
                        c.add(i * ldc + j),
                        acc[i][v],
                        corr.add(j),
                        *rows.add(i),
                        (cols.0.add(j), cols.1.add(j)),
                    ),
                }
            }
        }
    }
}

/// Declares the tile instances of one instruction set, generic over height
/// `H` and width `NV` (vectors).
macro_rules! instances {
    ($name:ident, $lanes:ty) => {
        /// # Safety
        /// Pointers per the [`TileFn`] contract.
        unsafe fn $name<const H: usize, const NV: usize>(
            kq: usize,
            a: (*const u8, usize),
            b: (*const i8, usize),
            corr: *const i32,
            out: Out,
            ldc: usize,
        ) {
            // SAFETY: plain arithmetic; pointers per the contract.
            unsafe { tile::<$lanes, H, NV>(kq, a, b, corr, out, ldc) }
        }
    };
    ($name:ident, $lanes:ty, $feature:literal) => {
        #[target_feature(enable = $feature)]
        unsafe fn $name<const H: usize, const NV: usize>(
            kq: usize,
            a: (*const u8, usize),
            b: (*const i8, usize),
            corr: *const i32,
            out: Out,
            ldc: usize,
        ) {
            // SAFETY: dispatched only where the features are detected
            // (`QIsa::kernel`); pointers per the `TileFn` contract.
            unsafe { tile::<$lanes, H, NV>(kq, a, b, corr, out, ldc) }
        }
    };
}

pub(super) use instances;

#[cfg(target_arch = "x86_64")]
instances!(tile_avx512vnni, Avx512Vnni, "avx512f,avx512bw,avx512vnni");
#[cfg(target_arch = "x86_64")]
instances!(tile_avxvnni, AvxVnni, "avx2,fma,avxvnni");
#[cfg(target_arch = "x86_64")]
instances!(tile_avx2, Avx2, "avx2,fma");

instances!(tile_portable, Portable);

/// AVX-512 VNNI: 6 × 64 tiles.
#[cfg(target_arch = "x86_64")]
pub(super) const AVX512VNNI: QKernel = QKernel {
    mr: 6,
    cols: 64,
    offset: true,
    tiles: [
        tile_avx512vnni::<1, 4>,
        tile_avx512vnni::<2, 4>,
        tile_avx512vnni::<3, 4>,
        tile_avx512vnni::<4, 4>,
        tile_avx512vnni::<5, 4>,
        tile_avx512vnni::<6, 4>,
    ],
};

/// AVX-VNNI: 6 × 16 tiles.
#[cfg(target_arch = "x86_64")]
pub(super) const AVXVNNI: QKernel = QKernel {
    mr: 6,
    cols: 16,
    offset: true,
    tiles: [
        tile_avxvnni::<1, 2>,
        tile_avxvnni::<2, 2>,
        tile_avxvnni::<3, 2>,
        tile_avxvnni::<4, 2>,
        tile_avxvnni::<5, 2>,
        tile_avxvnni::<6, 2>,
    ],
};

/// AVX2: 4 × 16 tiles.
#[cfg(target_arch = "x86_64")]
pub(super) const AVX2: QKernel = QKernel {
    mr: 4,
    cols: 16,
    offset: false,
    tiles: [
        tile_avx2::<1, 2>,
        tile_avx2::<2, 2>,
        tile_avx2::<3, 2>,
        tile_avx2::<4, 2>,
        tile_avx2::<4, 2>,
        tile_avx2::<4, 2>,
    ],
};

/// Any CPU: 4 × 8 tiles.
pub(super) const PORTABLE: QKernel = QKernel {
    mr: 4,
    cols: 8,
    offset: false,
    tiles: [
        tile_portable::<1, 1>,
        tile_portable::<2, 1>,
        tile_portable::<3, 1>,
        tile_portable::<4, 1>,
        tile_portable::<4, 1>,
        tile_portable::<4, 1>,
    ],
};
