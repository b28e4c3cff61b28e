//! The x86 bf16 lanes: `vdpbf16ps` on AVX512_BF16, and the widening
//! fallback (shift / mask each pair to two f32, two FMAs) on AVX-512F and
//! AVX2. Tiles: 6 × 64 with `vdpbf16ps`; 4 × 64 widened on AVX-512 (the
//! widened weights take eight registers); 4 × 16 on AVX2.

use std::arch::x86_64::*;

use super::super::kernel::{instances, tile, Out, QKernel};
use super::super::lanes::QLanes;

/// Declares one bf16 lanes type: f32 accumulators, bf16 pairs in the lanes.
macro_rules! bf16_lanes {
    ($name:ident, $v:ty, $w:literal, $feature:literal, $avail:expr,
     zero: $zero:expr, bcast: |$p:ident| $bcast:expr, load: |$q:ident| $load:expr,
     dot: |$acc:ident, $a:ident, $b:ident| $dot:expr,
     store: |$dst:ident, $val:ident, $s:ident, $scale:ident, $bias:ident| $store:expr) => {
        pub(super) struct $name;

        // SAFETY: every method needs only the features `available` checks.
        unsafe impl QLanes for $name {
            type V = $v;
            const WIDTH: usize = $w;
            fn available() -> bool {
                $avail
            }
            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn zero() -> Self::V {
                $zero
            }
            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn bcast($p: *const u8) -> Self::V {
                // SAFETY: the caller guarantees 4 readable bytes.
                unsafe { $bcast }
            }
            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn load($q: *const i8) -> Self::V {
                // SAFETY: the caller guarantees a register's worth of bytes.
                unsafe { $load }
            }
            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn dot($acc: Self::V, $a: Self::V, $b: Self::V) -> Self::V {
                $dot
            }
            unsafe fn store_i32(_: *mut i32, _: Self::V, _: *const i32) {
                unreachable!("bf16 products have f32 outputs only")
            }
            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn store_f32(
                $dst: *mut f32,
                $val: Self::V,
                _: *const i32,
                $s: f32,
                ($scale, $bias): (*const f32, *const f32),
            ) {
                // SAFETY: the caller guarantees a register's worth at each pointer.
                unsafe { $store }
            }
        }
    };
}

bf16_lanes!(Avx512Bf16, __m512, 16, "avx512f,avx512bf16",
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16"),
    zero: _mm512_setzero_ps(),
    bcast: |p| _mm512_castsi512_ps(_mm512_set1_epi32(p.cast::<i32>().read_unaligned())),
    load: |p| _mm512_loadu_ps(p.cast()),
    dot: |acc, a, b| {
        // SAFETY: same size; the bits are bf16 pairs.
        let (a, b) = unsafe {
            (
                std::mem::transmute::<__m512, __m512bh>(a),
                std::mem::transmute::<__m512, __m512bh>(b),
            )
        };
        _mm512_dpbf16_ps(acc, a, b)
    },
    store: |p, v, s, scale, bias| {
        let s = _mm512_mul_ps(_mm512_set1_ps(s), _mm512_loadu_ps(scale));
        _mm512_storeu_ps(p, _mm512_fmadd_ps(v, s, _mm512_loadu_ps(bias)))
    }
);

bf16_lanes!(Avx512Wide, __m512, 16, "avx512f",
    is_x86_feature_detected!("avx512f"),
    zero: _mm512_setzero_ps(),
    bcast: |p| _mm512_castsi512_ps(_mm512_set1_epi32(p.cast::<i32>().read_unaligned())),
    load: |p| _mm512_loadu_ps(p.cast()),
    dot: |acc, a, b| {
        let mask = _mm512_set1_epi32(0xffff_0000u32 as i32);
        let lo = |x: __m512| _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_castps_si512(x)));
        let hi = |x: __m512| _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), mask));
        _mm512_fmadd_ps(hi(a), hi(b), _mm512_fmadd_ps(lo(a), lo(b), acc))
    },
    store: |p, v, s, scale, bias| {
        let s = _mm512_mul_ps(_mm512_set1_ps(s), _mm512_loadu_ps(scale));
        _mm512_storeu_ps(p, _mm512_fmadd_ps(v, s, _mm512_loadu_ps(bias)))
    }
);

bf16_lanes!(Avx2Wide, __m256, 8, "avx2,fma",
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
    zero: _mm256_setzero_ps(),
    bcast: |p| _mm256_castsi256_ps(_mm256_set1_epi32(p.cast::<i32>().read_unaligned())),
    load: |p| _mm256_loadu_ps(p.cast()),
    dot: |acc, a, b| {
        let mask = _mm256_set1_epi32(0xffff_0000u32 as i32);
        let lo = |x: __m256| _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_castps_si256(x)));
        let hi = |x: __m256| _mm256_castsi256_ps(_mm256_and_si256(_mm256_castps_si256(x), mask));
        _mm256_fmadd_ps(hi(a), hi(b), _mm256_fmadd_ps(lo(a), lo(b), acc))
    },
    store: |p, v, s, scale, bias| {
        let s = _mm256_mul_ps(_mm256_set1_ps(s), _mm256_loadu_ps(scale));
        _mm256_storeu_ps(p, _mm256_fmadd_ps(v, s, _mm256_loadu_ps(bias)))
    }
);

instances!(tile_avx512bf16, Avx512Bf16, "avx512f,avx512bf16");
instances!(tile_avx512, Avx512Wide, "avx512f");
instances!(tile_avx2, Avx2Wide, "avx2,fma");

/// AVX512_BF16: 6 × 64 tiles.
pub(super) const AVX512BF16: QKernel = QKernel {
    mr: 6,
    cols: 64,
    offset: false,
    tiles: [
        tile_avx512bf16::<1, 4>,
        tile_avx512bf16::<2, 4>,
        tile_avx512bf16::<3, 4>,
        tile_avx512bf16::<4, 4>,
        tile_avx512bf16::<5, 4>,
        tile_avx512bf16::<6, 4>,
    ],
};

/// AVX-512F, widened: 4 × 64 tiles.
pub(super) const AVX512: QKernel = QKernel {
    mr: 4,
    cols: 64,
    offset: false,
    tiles: [
        tile_avx512::<1, 4>,
        tile_avx512::<2, 4>,
        tile_avx512::<3, 4>,
        tile_avx512::<4, 4>,
        tile_avx512::<4, 4>,
        tile_avx512::<4, 4>,
    ],
};

/// AVX2, widened: 4 × 16 tiles.
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
