//! Which rows a run uses, and in what order.
//!
//! * Subsets ([`select_indices`]) are the recipe's own rows: Hugging Face
//!   `datasets`' `shuffle(seed).select(range(n))` is NumPy's
//!   `default_rng(seed).permutation(len)[:n]` over the whole split, which
//!   [`numpy_permutation`] reproduces exactly. A split served with one row left
//!   out (our tweet files drop the one with an empty text) still picks the
//!   same rows, because each example keeps its row index in the full split
//!   ([`Example::idx`]) and the permutation runs over the full size.
//! * Epoch orders ([`shuffled_indices_in_stream`]) come from [`ChaCha8Rng`]
//!   seeded with `(seed, stream)` and `rand`'s Fisher–Yates shuffle: the same
//!   on every machine and run for the `rand` / `rand_chacha` versions in
//!   `Cargo.lock` (a test pins them), which a resumed run relies on.

use std::collections::HashMap;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::Example;
use crate::data::numpy_rng::numpy_permutation;

/// A permutation of `0..len` determined by `seed` and `stream`: independent
/// orders from one seed (the trainer draws epoch `e`'s from stream `e + 1`).
pub fn shuffled_indices_in_stream(len: usize, seed: u64, stream: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let mut indices: Vec<usize> = (0..len).collect();
    indices.shuffle(&mut rng);
    indices
}

/// Indices into `examples` of the recipe's subset of `n` rows (all of them,
/// shuffled, when `n` is at least their number): the rows of
/// `numpy.random.default_rng(seed).permutation(full_len)` in that order, where
/// `full_len` is one past the largest [`Example::idx`] when every example has
/// one (rows missing from the file are skipped), else the number of examples.
pub fn select_indices(examples: &[Example], n: usize, seed: u64) -> Vec<usize> {
    let by_idx: Option<HashMap<usize, usize>> = examples
        .iter()
        .enumerate()
        .map(|(pos, ex)| ex.idx.map(|idx| (idx, pos)))
        .collect();
    match by_idx {
        Some(by_idx) if !by_idx.is_empty() => {
            let full_len = by_idx.keys().max().map_or(0, |m| m + 1);
            numpy_permutation(full_len, seed)
                .into_iter()
                .filter_map(|idx| by_idx.get(&idx).copied())
                .take(n)
                .collect()
        }
        _ => numpy_permutation(examples.len(), seed)
            .into_iter()
            .take(n)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(idx: Option<usize>) -> Example {
        Example {
            text: format!("{idx:?}"),
            label: 0,
            idx,
        }
    }

    #[test]
    fn subsets_follow_numpy_over_the_full_split() {
        // numpy.random.default_rng(42).permutation(10) == [5 6 0 7 3 2 4 9 1 8]
        let perm = numpy_permutation(10, 42);
        assert_eq!(perm, [5, 6, 0, 7, 3, 2, 4, 9, 1, 8]);
        let plain: Vec<Example> = (0..10).map(|_| example(None)).collect();
        assert_eq!(select_indices(&plain, 4, 42), perm[..4]);
        assert_eq!(
            select_indices(&plain, 99, 42),
            perm,
            "n past the end: all, shuffled"
        );
        // Row idx 2 is missing from the file: the same rows are picked, minus it.
        let holed: Vec<Example> = (0..10)
            .filter(|&i| i != 2)
            .map(|i| example(Some(i)))
            .collect();
        let picked: Vec<usize> = select_indices(&holed, 3, 42)
            .into_iter()
            .map(|pos| holed[pos].idx.unwrap())
            .collect();
        let expected: Vec<usize> = perm.iter().copied().filter(|&i| i != 2).take(3).collect();
        assert_eq!(picked, expected);
    }
}
