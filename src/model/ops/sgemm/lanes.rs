//! The few vector operations the micro-kernel needs, once per instruction set:
//! AVX-512F (16 lanes), AVX2 with FMA (8 lanes), and a portable 8-lane array
//! that the compiler lowers to whatever the baseline target has.
//!
//! The kernel is written once against [`Lanes`]; each implementation's methods
//! carry their own `#[target_feature]`, so they inline into the kernel instance
//! compiled for the same features (see `kernel.rs`) and nowhere else.

/// One vector register's worth of `f32` and the operations on it.
///
/// # Safety
/// Implementations may use instructions the CPU lacks: callers must only call
/// the methods of a type whose [`Lanes::available`] returned true, and every
/// pointer must be valid for `WIDTH` consecutive `f32` reads or writes.
pub(super) unsafe trait Lanes {
    /// The register type (`__m512`, `__m256`, or `[f32; 8]` for the portable one).
    type V: Copy;
    /// `f32` per register.
    const WIDTH: usize;
    /// Whether this CPU can run the implementation.
    fn available() -> bool;
    /// All zeros.
    unsafe fn zero() -> Self::V;
    /// `x` in every lane.
    unsafe fn splat(x: f32) -> Self::V;
    /// `WIDTH` floats from `p` (any alignment).
    unsafe fn load(p: *const f32) -> Self::V;
    /// `v` to `WIDTH` floats at `p` (any alignment).
    unsafe fn store(p: *mut f32, v: Self::V);
    /// `a·b + c` lane by lane.
    unsafe fn mul_add(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `a + b` lane by lane.
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
}

/// AVX-512F: 16 lanes, 32 registers.
#[cfg(target_arch = "x86_64")]
pub(super) struct Avx512;

#[cfg(target_arch = "x86_64")]
// SAFETY: every method needs only AVX-512F, which `available` checks.
unsafe impl Lanes for Avx512 {
    type V = std::arch::x86_64::__m512;
    const WIDTH: usize = 16;
    fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn zero() -> Self::V {
        std::arch::x86_64::_mm512_setzero_ps()
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn splat(x: f32) -> Self::V {
        std::arch::x86_64::_mm512_set1_ps(x)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load(p: *const f32) -> Self::V {
        // SAFETY: the caller guarantees 16 readable floats at `p`.
        unsafe { std::arch::x86_64::_mm512_loadu_ps(p) }
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn store(p: *mut f32, v: Self::V) {
        // SAFETY: the caller guarantees 16 writable floats at `p`.
        unsafe { std::arch::x86_64::_mm512_storeu_ps(p, v) }
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn mul_add(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        std::arch::x86_64::_mm512_fmadd_ps(a, b, c)
    }
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V {
        std::arch::x86_64::_mm512_add_ps(a, b)
    }
}

/// AVX2 with FMA: 8 lanes, 16 registers.
#[cfg(target_arch = "x86_64")]
pub(super) struct Avx2;

#[cfg(target_arch = "x86_64")]
// SAFETY: every method needs only AVX and FMA, which `available` checks.
unsafe impl Lanes for Avx2 {
    type V = std::arch::x86_64::__m256;
    const WIDTH: usize = 8;
    fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn zero() -> Self::V {
        std::arch::x86_64::_mm256_setzero_ps()
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn splat(x: f32) -> Self::V {
        std::arch::x86_64::_mm256_set1_ps(x)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load(p: *const f32) -> Self::V {
        // SAFETY: the caller guarantees 8 readable floats at `p`.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(p) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn store(p: *mut f32, v: Self::V) {
        // SAFETY: the caller guarantees 8 writable floats at `p`.
        unsafe { std::arch::x86_64::_mm256_storeu_ps(p, v) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn mul_add(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        std::arch::x86_64::_mm256_fmadd_ps(a, b, c)
    }
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V {
        std::arch::x86_64::_mm256_add_ps(a, b)
    }
}

/// Any CPU: eight floats in an array, plain multiply and add (a fused
/// multiply-add without hardware support would be a slow library call).
pub(super) struct Portable;

// SAFETY: plain Rust arithmetic; the pointer contracts are the trait's.
unsafe impl Lanes for Portable {
    type V = [f32; 8];
    const WIDTH: usize = 8;
    fn available() -> bool {
        true
    }
    #[inline(always)]
    unsafe fn zero() -> Self::V {
        [0.0; 8]
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self::V {
        [x; 8]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self::V {
        // SAFETY: the caller guarantees 8 readable floats at `p`.
        unsafe { p.cast::<[f32; 8]>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self::V) {
        // SAFETY: the caller guarantees 8 writable floats at `p`.
        unsafe { p.cast::<[f32; 8]>().write_unaligned(v) }
    }
    #[inline(always)]
    unsafe fn mul_add(a: Self::V, b: Self::V, c: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i] * b[i] + c[i])
    }
    #[inline(always)]
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V {
        std::array::from_fn(|i| a[i] + b[i])
    }
}
