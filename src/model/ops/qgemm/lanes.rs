//! The integer vector operations the int8 micro-kernel needs, once per
//! instruction set: AVX-512 VNNI and AVX-VNNI (`vpdpbusd`: four `u8 × i8`
//! products summed into each `i32` lane in one instruction), AVX2 (`vpmaddubsw`
//! then `vpmaddwd`, made safe from 16-bit saturation by the sign trick below)
//! and a portable array.
//!
//! One lane holds one output column's `i32` sum; the four bytes of a lane are
//! four consecutive steps of `k` (the packed layout of `pack.rs`). The
//! broadcast operand is four bytes of a row of `A`, the same in every lane.
//!
//! **Encoding of `A`.** `vpdpbusd` multiplies unsigned by signed bytes, so the
//! VNNI sets take `A` as `u8 = a + 128` (`QKernel::offset`) and the kernel
//! subtracts `128 · Σₖ w[k][j]` from each sum (exact). AVX2 takes `A` as plain
//! `i8` and multiplies `|a|` (as `u8`, at most 127) by `sign(a) · w`: each
//! 16-bit pair sum is then at most `2 · 127 · 127 = 32,258`, under `i16::MAX`,
//! so `vpmaddubsw` never saturates (weights are symmetric, never −128).

/// One vector register of `i32` lanes and the operations on it.
///
/// # Safety
/// Implementations may use instructions the CPU lacks: call only methods of a
/// type whose [`QLanes::available`] returned true; pointers must be valid for
/// `WIDTH` lanes (`4·WIDTH` bytes, or `WIDTH` `i32`/`f32`).
pub(super) unsafe trait QLanes {
    /// The register type.
    type V: Copy;
    /// `i32` lanes per register (output columns per vector).
    const WIDTH: usize;
    /// Whether this CPU can run the implementation.
    fn available() -> bool;
    /// All zeros.
    unsafe fn zero() -> Self::V;
    /// The four bytes at `p` in every lane.
    unsafe fn bcast(p: *const u8) -> Self::V;
    /// `4·WIDTH` bytes from `p`.
    unsafe fn load(p: *const i8) -> Self::V;
    /// `acc + Σ_{r<4} a[r]·b[4l+r]` in each lane `l`.
    unsafe fn dot(acc: Self::V, a: Self::V, b: Self::V) -> Self::V;
    /// `acc − corr` to `WIDTH` `i32` at `p`.
    unsafe fn store_i32(p: *mut i32, acc: Self::V, corr: *const i32);
    /// `(acc − corr)·row_scale·col_scale + bias` to `WIDTH` `f32` at `p`.
    unsafe fn store_f32(
        p: *mut f32,
        acc: Self::V,
        corr: *const i32,
        row_scale: f32,
        cols: (*const f32, *const f32),
    );
}

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// AVX-512 VNNI: 16 lanes, `vpdpbusd` on zmm registers.
#[cfg(target_arch = "x86_64")]
pub(super) struct Avx512Vnni;

#[cfg(target_arch = "x86_64")]
// SAFETY: every method needs only AVX-512F/BW/VNNI, which `available` checks.
unsafe impl QLanes for Avx512Vnni {
    type V = __m512i;
    const WIDTH: usize = 16;
    fn available() -> bool {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn zero() -> Self::V {
        _mm512_setzero_si512()
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn bcast(p: *const u8) -> Self::V {
        // SAFETY: the caller guarantees 4 readable bytes.
        _mm512_set1_epi32(unsafe { p.cast::<i32>().read_unaligned() })
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn load(p: *const i8) -> Self::V {
        // SAFETY: the caller guarantees 64 readable bytes.
        unsafe { _mm512_loadu_si512(p.cast()) }
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn dot(acc: Self::V, a: Self::V, b: Self::V) -> Self::V {
        _mm512_dpbusd_epi32(acc, a, b)
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn store_i32(p: *mut i32, acc: Self::V, corr: *const i32) {
        // SAFETY: the caller guarantees 16 lanes at `p` and `corr`.
        unsafe {
            let v = _mm512_sub_epi32(acc, _mm512_loadu_si512(corr.cast()));
            _mm512_storeu_si512(p.cast(), v)
        }
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn store_f32(
        p: *mut f32,
        acc: Self::V,
        corr: *const i32,
        row_scale: f32,
        (scale, bias): (*const f32, *const f32),
    ) {
        // SAFETY: the caller guarantees 16 lanes at every pointer.
        unsafe {
            let v = _mm512_sub_epi32(acc, _mm512_loadu_si512(corr.cast()));
            let s = _mm512_mul_ps(_mm512_set1_ps(row_scale), _mm512_loadu_ps(scale));
            let y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), s, _mm512_loadu_ps(bias));
            _mm512_storeu_ps(p, y)
        }
    }
}

/// Declares the 8-lane (ymm) implementations, which differ only in `dot`.
#[cfg(target_arch = "x86_64")]
macro_rules! ymm_lanes {
    ($name:ident, $feature:literal, $avail:expr, |$acc:ident, $a:ident, $b:ident| $dot:expr) => {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: every method needs only the features `available` checks.
        unsafe impl QLanes for $name {
            type V = __m256i;
            const WIDTH: usize = 8;
            fn available() -> bool {
                $avail
            }
            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn zero() -> Self::V {
                _mm256_setzero_si256()
            }
            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn bcast(p: *const u8) -> Self::V {
                // SAFETY: the caller guarantees 4 readable bytes.
                _mm256_set1_epi32(unsafe { p.cast::<i32>().read_unaligned() })
            }
            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn load(p: *const i8) -> Self::V {
                // SAFETY: the caller guarantees 32 readable bytes.
                unsafe { _mm256_loadu_si256(p.cast()) }
            }
            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn dot($acc: Self::V, $a: Self::V, $b: Self::V) -> Self::V {
                $dot
            }
            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn store_i32(p: *mut i32, acc: Self::V, corr: *const i32) {
                // SAFETY: the caller guarantees 8 lanes at `p` and `corr`.
                unsafe {
                    let v = _mm256_sub_epi32(acc, _mm256_loadu_si256(corr.cast()));
                    _mm256_storeu_si256(p.cast(), v)
                }
            }
            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn store_f32(
                p: *mut f32,
                acc: Self::V,
                corr: *const i32,
                row_scale: f32,
                (scale, bias): (*const f32, *const f32),
            ) {
                // SAFETY: the caller guarantees 8 lanes at every pointer.
                unsafe {
                    let v = _mm256_sub_epi32(acc, _mm256_loadu_si256(corr.cast()));
                    let s = _mm256_mul_ps(_mm256_set1_ps(row_scale), _mm256_loadu_ps(scale));
                    let y = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), s, _mm256_loadu_ps(bias));
                    _mm256_storeu_ps(p, y)
                }
            }
        }
    };
}

/// AVX-VNNI: 8 lanes, the VEX-encoded `vpdpbusd` (Alder Lake, Zen 5).
#[cfg(target_arch = "x86_64")]
pub(super) struct AvxVnni;

#[cfg(target_arch = "x86_64")]
ymm_lanes!(
    AvxVnni,
    "avx2,fma,avxvnni",
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("avxvnni"),
    |acc, a, b| _mm256_dpbusd_avx_epi32(acc, a, b)
);

/// AVX2: 8 lanes, `|a| · (sign(a)·b)` through `vpmaddubsw` and `vpmaddwd`.
#[cfg(target_arch = "x86_64")]
pub(super) struct Avx2;

#[cfg(target_arch = "x86_64")]
ymm_lanes!(
    Avx2,
    "avx2,fma",
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
    |acc, a, b| {
        let pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(a), _mm256_sign_epi8(b, a));
        _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }
);

/// Any CPU: eight `i32` lanes in an array, plain integer arithmetic.
pub(super) struct Portable;

// SAFETY: plain Rust arithmetic; the pointer contracts are the trait's.
unsafe impl QLanes for Portable {
    type V = [i32; 8];
    const WIDTH: usize = 8;
    fn available() -> bool {
        true
    }
    #[inline(always)]
    unsafe fn zero() -> Self::V {
        [0; 8]
    }
    #[inline(always)]
    unsafe fn bcast(p: *const u8) -> Self::V {
        // SAFETY: the caller guarantees 4 readable bytes.
        [unsafe { p.cast::<i32>().read_unaligned() }; 8]
    }
    #[inline(always)]
    unsafe fn load(p: *const i8) -> Self::V {
        // SAFETY: the caller guarantees 32 readable bytes.
        let bytes = unsafe { p.cast::<[i8; 32]>().read_unaligned() };
        std::array::from_fn(|l| i32::from_le_bytes(std::array::from_fn(|r| bytes[4 * l + r] as u8)))
    }
    #[inline(always)]
    unsafe fn dot(acc: Self::V, a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|l| {
            let (x, y) = (a[l].to_le_bytes(), b[l].to_le_bytes());
            acc[l]
                + (0..4)
                    .map(|r| i32::from(x[r] as i8) * i32::from(y[r] as i8))
                    .sum::<i32>()
        })
    }
    #[inline(always)]
    unsafe fn store_i32(p: *mut i32, acc: Self::V, corr: *const i32) {
        for (l, v) in acc.iter().enumerate() {
            // SAFETY: the caller guarantees 8 lanes at `p` and `corr`.
            unsafe { *p.add(l) = v - *corr.add(l) };
        }
    }
    #[inline(always)]
    unsafe fn store_f32(
        p: *mut f32,
        acc: Self::V,
        corr: *const i32,
        row_scale: f32,
        (scale, bias): (*const f32, *const f32),
    ) {
        for (l, v) in acc.iter().enumerate() {
            // SAFETY: the caller guarantees 8 lanes at every pointer.
            unsafe {
                let s = row_scale * *scale.add(l);
                // A plain multiply and add: `mul_add` without hardware FMA is a
                // slow library call.
                *p.add(l) = (v - *corr.add(l)) as f32 * s + *bias.add(l);
            }
        }
    }
}
