//! Seeded shuffles and subsets.
//!
//! The order comes from [`ChaCha8Rng`] seeded with `seed_from_u64(seed)` and
//! `rand`'s Fisher–Yates [`SliceRandom::shuffle`]: the same seed gives the same order
//! on every machine and run (for the `rand` / `rand_chacha` versions in
//! `Cargo.lock`; a test pins it). It does **not** reproduce Python `datasets`'
//! `shuffle(seed=42)`, which draws from NumPy's PCG64: subsets have the recipe's
//! sizes, not its rows.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::Dataset;

/// A permutation of `0..len` determined by `seed`.
pub fn shuffled_indices(len: usize, seed: u64) -> Vec<usize> {
    shuffled_indices_in_stream(len, seed, 0)
}

/// A permutation of `0..len` determined by `seed` and `stream`: independent
/// orders from one seed (stream 0 is [`shuffled_indices`]).
pub fn shuffled_indices_in_stream(len: usize, seed: u64, stream: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let mut indices: Vec<usize> = (0..len).collect();
    indices.shuffle(&mut rng);
    indices
}

impl Dataset {
    /// Reorders the examples by [`shuffled_indices`]`(len, seed)`.
    pub fn shuffle(&mut self, seed: u64) {
        let order = shuffled_indices(self.examples.len(), seed);
        let mut slots: Vec<Option<_>> = self.examples.drain(..).map(Some).collect();
        self.examples = order.iter().filter_map(|&i| slots[i].take()).collect();
    }

    /// A copy with the examples in seeded order (see [`Dataset::shuffle`]).
    pub fn shuffled(&self, seed: u64) -> Dataset {
        let mut copy = self.clone();
        copy.shuffle(seed);
        copy
    }

    /// A copy holding the first `n` examples (all of them when `n` ≥ the length).
    /// The label map is kept whole, even for labels the subset lacks.
    pub fn subset(&self, n: usize) -> Dataset {
        Dataset {
            examples: self.examples.iter().take(n).cloned().collect(),
            labels: self.labels.clone(),
            dropped: self.dropped.clone(),
        }
    }

    /// The recipe's `train_subset` / `eval_subset`: like Python's
    /// `dataset.shuffle(seed).select(range(n))`, the first `n` examples after a
    /// seeded shuffle; `None` keeps every example. With `shuffle` false the first
    /// `n` in file order are taken. Same sizes as Python's, not the same rows.
    pub fn select(&self, n: Option<usize>, seed: u64, shuffle: bool) -> Dataset {
        let len = n.map_or(self.len(), |n| n.min(self.len()));
        if !shuffle {
            return self.subset(len);
        }
        let order = shuffled_indices(self.examples.len(), seed);
        Dataset {
            examples: order[..len]
                .iter()
                .map(|&i| self.examples[i].clone())
                .collect(),
            labels: self.labels.clone(),
            dropped: self.dropped.clone(),
        }
    }
}
