//! Packing: copying a block of `A` or `B` into the order the micro-kernel reads
//! it, one contiguous panel per tile row (column), zero-padded at the edges.
//!
//! Packed, the kernel streams both operands with unit stride whatever the
//! matrices' strides were (a transposed operand costs nothing more than a plain
//! one), the block of `B` being multiplied stays in cache, and edge tiles need
//! no special cases in the kernel. Each copy loop walks the source along its
//! unit-stride dimension.

use super::MatRef;

/// Packs `A[r0 .. r0+rows, p0 .. p0+depth]` into `rows.div_ceil(mr)` panels of
/// `mr × depth`, each stored step by step (`mr` floats per step of `k`).
pub(super) fn pack_a(
    a: &MatRef,
    (r0, p0): (usize, usize),
    (rows, depth): (usize, usize),
    mr: usize,
    out: &mut [f32],
) {
    for (panel, dst) in out.chunks_exact_mut(mr * depth).enumerate() {
        let first = panel * mr;
        if first >= rows {
            break;
        }
        let valid = mr.min(rows - first);
        if valid < mr {
            dst.fill(0.0);
        }
        let base = |i: usize, p: usize| (r0 + first + i) * a.rs + (p0 + p) * a.cs;
        if a.cs == 1 {
            for i in 0..valid {
                let src = &a.data[base(i, 0)..base(i, 0) + depth];
                for (p, &v) in src.iter().enumerate() {
                    dst[p * mr + i] = v;
                }
            }
        } else {
            for p in 0..depth {
                for i in 0..valid {
                    dst[p * mr + i] = a.data[base(i, p)];
                }
            }
        }
    }
}

/// Packs `B[p0 .. p0+depth, c0 .. c0+cols]` into `cols.div_ceil(nr)` panels of
/// `depth × nr`, each stored row by row (`nr` floats per step of `k`).
pub(super) fn pack_b(
    b: &MatRef,
    (p0, c0): (usize, usize),
    (depth, cols): (usize, usize),
    nr: usize,
    out: &mut [f32],
) {
    if b.cs != 1 {
        for (panel, dst) in out.chunks_exact_mut(nr * depth).enumerate() {
            let valid = nr.min(cols - panel * nr);
            pack_b_panel(b, (p0, c0 + panel * nr), depth, valid, nr, dst);
        }
        return;
    }
    // Row by row across all panels: each row of `B` is read once, front to
    // back, instead of once per panel in `nr`-wide pieces a page apart.
    let (full, rest) = (cols / nr, cols % nr);
    if rest > 0 {
        out[full * nr * depth..].fill(0.0);
    }
    for p in 0..depth {
        let start = (p0 + p) * b.rs + c0;
        let src = &b.data[start..start + cols];
        for (j, piece) in src.chunks(nr).enumerate() {
            let at = j * nr * depth + p * nr;
            out[at..at + piece.len()].copy_from_slice(piece);
        }
    }
}

/// One panel of [`pack_b`]: `valid` real columns from `c0`, padded to `nr`.
pub(super) fn pack_b_panel(
    b: &MatRef,
    (p0, c0): (usize, usize),
    depth: usize,
    valid: usize,
    nr: usize,
    dst: &mut [f32],
) {
    if valid < nr {
        dst.fill(0.0);
    }
    let base = |p: usize, j: usize| (p0 + p) * b.rs + (c0 + j) * b.cs;
    if b.cs == 1 {
        for (p, row) in dst.chunks_exact_mut(nr).enumerate() {
            row[..valid].copy_from_slice(&b.data[base(p, 0)..base(p, 0) + valid]);
        }
    } else if b.rs == 1 {
        for j in 0..valid {
            let src = &b.data[base(0, j)..base(0, j) + depth];
            for (p, &v) in src.iter().enumerate() {
                dst[p * nr + j] = v;
            }
        }
    } else {
        for p in 0..depth {
            for j in 0..valid {
                dst[p * nr + j] = b.data[base(p, j)];
            }
        }
    }
}
