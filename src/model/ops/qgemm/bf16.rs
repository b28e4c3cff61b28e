//! The bf16 product on the same blocking and tiles as the int8 one: weights
//! stored in bf16 (pairs of `k` steps in each 32-bit lane of a 64-column
//! panel), rows of `A` rounded to bf16 as they come, sums in `f32`.
//!
//! With AVX512_BF16, `vdpbf16ps` multiplies both pairs and adds them in one
//! instruction. Elsewhere the pair is widened to two `f32` (a bf16 is the top
//! half of an f32: a shift or a mask) and multiplied with two FMAs on
//! AVX-512F or AVX2, or in plain Rust: the weights still take half the memory
//! of f32, and the sums agree with `vdpbf16ps`'s to rounding.

use std::cell::Cell;

use super::kernel::{instances, tile, Out, QKernel};
use super::lanes::QLanes;
use super::{run, Panels, PANEL};

/// `x` rounded to the nearest bf16 (ties to even), as its bits.
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// The instruction sets the bf16 kernel is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bf16Isa {
    /// AVX512_BF16 (`vdpbf16ps`).
    Avx512Bf16,
    /// AVX-512F, pairs widened to f32.
    Avx512,
    /// AVX2 with FMA, pairs widened to f32.
    Avx2,
    /// Plain Rust.
    Portable,
}

impl Bf16Isa {
    /// Every kernel, fastest first.
    pub const ALL: [Bf16Isa; 4] = [
        Bf16Isa::Avx512Bf16,
        Bf16Isa::Avx512,
        Bf16Isa::Avx2,
        Bf16Isa::Portable,
    ];

    /// Whether this CPU can run the kernel.
    pub fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let f = is_x86_feature_detected!("avx512f");
            match self {
                Bf16Isa::Avx512Bf16 => f && is_x86_feature_detected!("avx512bf16"),
                Bf16Isa::Avx512 => f,
                Bf16Isa::Avx2 => {
                    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
                }
                Bf16Isa::Portable => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Bf16Isa::Portable
        }
    }

    /// The kernel this thread's bf16 products use: the one
    /// [`with_bgemm_isa`] set, else the fastest this CPU has.
    pub fn current() -> Bf16Isa {
        if let Some(isa) = FORCED.get() {
            return isa;
        }
        static BEST: std::sync::OnceLock<Bf16Isa> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            *Bf16Isa::ALL
                .iter()
                .find(|i| i.available())
                .expect("portable")
        })
    }

    fn kernel(self) -> QKernel {
        assert!(self.available(), "{self:?} is not supported by this CPU");
        match self {
            #[cfg(target_arch = "x86_64")]
            Bf16Isa::Avx512Bf16 => x86::AVX512BF16,
            #[cfg(target_arch = "x86_64")]
            Bf16Isa::Avx512 => x86::AVX512,
            #[cfg(target_arch = "x86_64")]
            Bf16Isa::Avx2 => x86::AVX2,
            _ => PORTABLE,
        }
    }
}

thread_local! {
    static FORCED: Cell<Option<Bf16Isa>> = const { Cell::new(None) };
}

/// Runs `f` with this thread's bf16 products on `isa` (tests, benchmarks).
///
/// # Panics
/// If the CPU lacks `isa`.
pub fn with_bgemm_isa<R>(isa: Bf16Isa, f: impl FnOnce() -> R) -> R {
    assert!(isa.available(), "{isa:?} is not supported by this CPU");
    struct Restore(Option<Bf16Isa>);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCED.set(self.0);
        }
    }
    let _restore = Restore(FORCED.replace(Some(isa)));
    f()
}

/// A weight `[k, n]` in bf16, packed: panel `p`, pair step `q`, column `j`
/// holds `w[2q][64p+j]` in the low half of its lane, `w[2q+1][..]` in the
/// high half. Columns past `n` and steps past `k` are zero.
#[derive(Debug, Clone)]
pub struct PackedBf16 {
    k: usize,
    n: usize,
    data: Vec<i8>,
    zeros: Vec<i32>,
}

impl PackedBf16 {
    /// Rounds `w` (row-major `[k, n]` f32) to bf16 and packs it.
    pub fn new(w: &[f32], k: usize, n: usize) -> Self {
        assert!(w.len() >= k * n, "PackedBf16: weight too short");
        let kq = k.div_ceil(2);
        let panels = n.div_ceil(PANEL);
        let mut data = vec![0i8; panels * kq * 4 * PANEL];
        for (p, row) in w.chunks_exact(n.max(1)).take(k).enumerate() {
            let (q, half) = (p / 2, p % 2);
            for (j, &v) in row.iter().enumerate() {
                let at = ((j / PANEL) * kq + q) * 4 * PANEL + 4 * (j % PANEL) + 2 * half;
                let [lo, hi] = to_bf16(v).to_le_bytes();
                (data[at], data[at + 1]) = (lo as i8, hi as i8);
            }
        }
        Self {
            k,
            n,
            data,
            zeros: vec![0; panels * PANEL],
        }
    }

    /// Depth and columns.
    pub fn shape(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() + 4 * self.zeros.len()
    }

    /// `C[i][j] = (bf16(A)·W)[i][j] + bias[j]` (`a` row-major `[m, k]` f32,
    /// `bias` whole panels long, `ones` at least as long as `m` and as
    /// `bias`), on `isa` in `threads` tasks.
    ///
    /// # Panics
    /// If `isa` is unavailable or a slice is too short.
    pub fn product(
        &self,
        (isa, threads): (Bf16Isa, usize),
        a: &[f32],
        (bias, ones): (&[f32], &[f32]),
        c: &mut [f32],
    ) {
        let (k, n) = (self.k, self.n);
        let m = a.len() / k.max(1);
        let kp = 4 * k.div_ceil(2);
        assert!(bias.len() >= n.next_multiple_of(PANEL) && ones.len() >= m.max(bias.len()));
        assert!(c.len() >= m * n, "bgemm: C too short");
        let mut rows = vec![0u8; m * kp];
        for (dst, src) in rows
            .chunks_exact_mut(kp.max(1))
            .zip(a.chunks_exact(k.max(1)))
        {
            for (d, &v) in dst.chunks_exact_mut(2).zip(src) {
                d.copy_from_slice(&to_bf16(v).to_le_bytes());
            }
        }
        let panels = Panels {
            n,
            kq: k.div_ceil(2),
            data: &self.data,
            corr: &self.zeros,
        };
        let out = Out::F32 {
            c: c.as_mut_ptr(),
            rows: ones.as_ptr(),
            cols: (ones.as_ptr(), bias.as_ptr()),
        };
        run(&isa.kernel(), threads, (&rows, m, kp), &panels, out);
    }
}

/// Any CPU: eight f32 lanes, each pair widened by hand.
struct Portable;

// SAFETY: plain Rust arithmetic; the pointer contracts are the trait's.
unsafe impl QLanes for Portable {
    type V = [u32; 8];
    const WIDTH: usize = 8;
    fn available() -> bool {
        true
    }
    unsafe fn zero() -> Self::V {
        [0; 8]
    }
    unsafe fn bcast(p: *const u8) -> Self::V {
        // SAFETY: the caller guarantees 4 readable bytes.
        [unsafe { p.cast::<u32>().read_unaligned() }; 8]
    }
    unsafe fn load(p: *const i8) -> Self::V {
        // SAFETY: the caller guarantees 32 readable bytes.
        unsafe { p.cast::<[u32; 8]>().read_unaligned() }
    }
    unsafe fn dot(acc: Self::V, a: Self::V, b: Self::V) -> Self::V {
        let (lo, hi) = (
            |x: u32| f32::from_bits(x << 16),
            |x: u32| f32::from_bits(x & 0xffff_0000),
        );
        std::array::from_fn(|l| {
            (f32::from_bits(acc[l]) + lo(a[l]) * lo(b[l]) + hi(a[l]) * hi(b[l])).to_bits()
        })
    }
    unsafe fn store_i32(_: *mut i32, _: Self::V, _: *const i32) {
        unreachable!("bf16 products have f32 outputs only")
    }
    unsafe fn store_f32(
        p: *mut f32,
        acc: Self::V,
        _: *const i32,
        row_scale: f32,
        (scale, bias): (*const f32, *const f32),
    ) {
        for (l, v) in acc.iter().enumerate() {
            // SAFETY: the caller guarantees 8 lanes at every pointer.
            unsafe { *p.add(l) = f32::from_bits(*v) * row_scale * *scale.add(l) + *bias.add(l) };
        }
    }
}

instances!(tile_portable, Portable);

/// Any CPU: 4 × 8 tiles.
const PORTABLE: QKernel = QKernel {
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

#[cfg(target_arch = "x86_64")]
mod x86;
