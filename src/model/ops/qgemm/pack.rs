//! The operands of the int8 product in the order the micro-kernel reads them:
//! weights packed once (when a model is loaded) into 64-column panels, four
//! steps of `k` per `i32` lane; rows of `A` padded to a multiple of four
//! bytes, in the encoding the kernel takes.

/// Columns of one packed panel (every kernel's tile width divides it).
pub const PANEL: usize = 64;

/// An `i8` weight matrix `[k, n]` packed for [`super::qgemm_i32`] and
/// [`super::qgemm_f32`]: panel `p` (columns `64p ..`) holds, for each step
/// `q` of `k/4`, 64 columns × 4 bytes (`w[4q+r][64p+j]` at `q·256 + 4j + r`).
/// Columns past `n` and steps past `k` are zero.
#[derive(Debug, Clone)]
pub struct PackedI8 {
    k: usize,
    n: usize,
    data: Vec<i8>,
    /// `128 · Σₖ w[k][j]`, padded to whole panels: what `A`'s offset adds.
    offset_corr: Vec<i32>,
    /// Zeros, as long: the correction of the kernels that take plain `i8`.
    no_corr: Vec<i32>,
}

impl PackedI8 {
    /// Packs `w` (row-major `[k, n]`).
    ///
    /// # Panics
    /// If `w` holds fewer than `k·n` values, or holds −128 (weights are
    /// symmetric, in −127..=127: the AVX2 kernel's sign trick needs it).
    pub fn new(w: &[i8], k: usize, n: usize) -> Self {
        assert!(w.len() >= k * n, "PackedI8: weight too short");
        assert!(
            !w.contains(&i8::MIN),
            "PackedI8: weights must be in -127..=127"
        );
        let kq = k.div_ceil(4);
        let panels = n.div_ceil(PANEL);
        let mut data = vec![0i8; panels * kq * 4 * PANEL];
        let mut sums = vec![0i32; panels * PANEL];
        for (p, row) in w.chunks_exact(n.max(1)).take(k).enumerate() {
            let (q, r) = (p / 4, p % 4);
            for (j, &v) in row.iter().enumerate() {
                let (panel, col) = (j / PANEL, j % PANEL);
                data[(panel * kq + q) * 4 * PANEL + 4 * col + r] = v;
                sums[j] += i32::from(v);
            }
        }
        Self {
            k,
            n,
            data,
            offset_corr: sums.iter().map(|s| 128 * s).collect(),
            no_corr: vec![0; panels * PANEL],
        }
    }

    /// Depth and columns, as given.
    pub fn shape(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    /// The panels as the tasks read them, with the correction of a kernel
    /// that takes `A` offset (or not).
    pub(super) fn panels(&self, offset: bool) -> super::Panels<'_> {
        super::Panels {
            n: self.n,
            kq: self.k.div_ceil(4),
            data: &self.data,
            corr: if offset {
                &self.offset_corr
            } else {
                &self.no_corr
            },
        }
    }

    /// Bytes held (the packed weights and their corrections).
    pub fn bytes(&self) -> usize {
        self.data.len() + 4 * (self.offset_corr.len() + self.no_corr.len())
    }
}

/// Rows of `A` as a kernel reads them: `kp = 4·⌈k/4⌉` bytes per row, each
/// `a + 128` when `offset` (the VNNI kernels) or plain `i8` otherwise.
#[derive(Debug, Clone, Default)]
pub struct PreparedA {
    /// `m × kp` bytes (the padding bytes are zero weights' partners: any value).
    pub data: Vec<u8>,
    /// Rows.
    pub m: usize,
    /// Bytes per row.
    pub kp: usize,
    /// Whether the bytes are `a + 128`.
    pub offset: bool,
}

impl PreparedA {
    /// Room for `m` rows of depth `k`, to be filled by the caller (see
    /// [`PreparedA::encode`]).
    pub fn zeroed(m: usize, k: usize, offset: bool) -> Self {
        let kp = k.div_ceil(4) * 4;
        Self {
            data: vec![if offset { 128 } else { 0 }; m * kp],
            m,
            kp,
            offset,
        }
    }

    /// The rows as the tasks read them.
    pub(super) fn rows(&self) -> super::Rows<'_> {
        (&self.data, self.m, self.kp)
    }

    /// The byte that stands for `v` in this encoding.
    #[inline(always)]
    pub fn encode(offset: bool, v: i8) -> u8 {
        if offset {
            (v as u8) ^ 0x80
        } else {
            v as u8
        }
    }

    /// `a` (row-major `[m, k]`) in the encoding.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn from_i8(a: &[i8], (m, k): (usize, usize), offset: bool) -> Self {
        let mut out = Self::zeroed(m, k, offset);
        for (dst, src) in out
            .data
            .chunks_exact_mut(out.kp)
            .zip(a.chunks_exact(k.max(1)))
        {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = Self::encode(offset, s);
            }
        }
        out
    }
}
