//! The crate's hand-written CPU loops: when they apply, and run-time choice of
//! vector instructions for them.

/// Runs `f` compiled for the widest vector unit this CPU has (AVX-512, AVX2+FMA,
/// or the baseline), chosen at run time.
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// Whether `t` is an f32 tensor in host memory: the condition for the crate's
/// hand-written CPU paths (other devices and dtypes take candle's ops).
pub(crate) fn host_f32(t: &candle_core::Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == candle_core::DType::F32
}
