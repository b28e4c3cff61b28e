//! The crate's hand-written CPU loops: when they apply, and run-time choice of
//! vector instructions for them.
//!
//! Every hand-written CPU path has a composed counterpart made of candle's own
//! ops, which is what a GPU runs. [`composed_ops`] (or the environment variable
//! `TUNESERVE_COMPOSED_OPS=1`) turns the hand-written paths off on the CPU, so
//! the GPU's code path (device moments in AdamW, device-side clipping, the
//! embedding gradient's `index_add`, candle's composed kernels) is checked
//! number for number on a machine without a GPU.

use std::cell::Cell;
use std::sync::OnceLock;

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

/// Whether `t` is an f32 tensor in host memory and the hand-written paths are
/// on: the condition for the crate's hand-written CPU paths (other devices and
/// dtypes take candle's ops).
pub(crate) fn host_f32(t: &candle_core::Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == candle_core::DType::F32 && !composed_only()
}

thread_local! {
    static COMPOSED: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread (or the whole process, by `TUNESERVE_COMPOSED_OPS=1`)
/// takes the composed paths everywhere.
fn composed_only() -> bool {
    static FROM_ENV: OnceLock<bool> = OnceLock::new();
    COMPOSED.get()
        || *FROM_ENV.get_or_init(|| {
            std::env::var("TUNESERVE_COMPOSED_OPS").is_ok_and(|v| !v.is_empty() && v != "0")
        })
}

/// Runs `f` on this thread with every hand-written CPU path off: each op,
/// AdamW, clipping and the embedding gradient take the path a GPU takes. For
/// checking those paths without a GPU; objects that chose a path when made
/// (an [`crate::train::AdamW`]) keep it, so make them inside `f`.
pub fn composed_ops<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            COMPOSED.set(self.0);
        }
    }
    let _restore = Restore(COMPOSED.replace(true));
    f()
}
