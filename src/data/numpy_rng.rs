//! numpy's default random generator, bit for bit, as far as
//! `np.random.default_rng(seed).permutation(n)` needs it.
//!
//! Hugging Face `datasets` implements `Dataset.shuffle(seed=s)` as
//! `np.random.default_rng(s).permutation(len(ds))`, so the fine-tuning recipe's
//! `ds.shuffle(seed=42).select(range(1000))` picks the rows
//! `numpy_permutation(len, 42)[..1000]`. Reproducing that exactly lets tuneserve
//! train and evaluate on the recipe's own rows.
//!
//! The pipeline, step by step, as numpy runs it for an integer seed:
//!
//! 1. [`SeedSequence`]: `default_rng(seed)` is `Generator(PCG64(SeedSequence(seed)))`.
//!    The seed is split into 32-bit words (lowest first), hashed into a pool of four
//!    words, and `generate_state(4, uint64)` stretches the pool into four 64-bit words.
//!    This spreads even tiny seeds (0, 1, 42) over all 256 bits of PCG64's state.
//! 2. [`Pcg64::from_seed_words`]: `PCG64.__init__` hands those words to
//!    `pcg64_set_seed`: words 0–1 are the initial state and words 2–3 the stream
//!    selector, high word first; the increment is `(stream << 1) | 1` (it must be odd)
//!    and the state is mixed by one LCG step before and after adding the seed, as in
//!    the PCG reference `pcg_setseq_128_srandom_r`.
//! 3. [`Pcg64::next_u64`]: one step of the 128-bit LCG, then the XSL-RR output of the
//!    *new* state (xor of the halves, rotated right by the state's top six bits).
//! 4. [`Pcg64::next_u32`]: numpy's `pcg64_next32` draws 64 bits, returns the low
//!    half and keeps the high half for the next call. The buffer matters: the
//!    shuffle draws 32 bits at a time, so each 64-bit output serves two draws.
//! 5. [`Pcg64::random_interval`]: numpy's `random_interval(max)` (in
//!    `distributions.c`), a uniform integer in `0..=max` by masked rejection: draw,
//!    keep the bits under the smallest all-ones mask covering `max`, retry while the
//!    result exceeds `max`. Bounds up to `u32::MAX` use 32-bit draws, larger ones
//!    64-bit draws. (`Generator.integers` uses a different, Lemire-style method;
//!    only the shuffle uses this one.)
//! 6. [`Pcg64::shuffle`]: `Generator.shuffle` (`_shuffle_raw`) is Fisher–Yates from
//!    the back: for `i = n-1` down to `1`, swap item `i` with item
//!    `random_interval(i)`. `permutation(n)` is `shuffle(arange(n))`.
//!
//! Checked against numpy 2.4.6 (the steps above follow numpy's own sources:
//! `bit_generator.pyx`, `_pcg64.pyx`, `pcg64.h`/`pcg64.c`, `_generator.pyx`,
//! `distributions.c`): `tests/fixtures/numpy_permutations.json`, written by
//! `reference/make_numpy_permutations.py`, holds `generate_state` words, seeded
//! PCG64 states, raw 64- and 32-bit outputs, permutation prefixes and checksums
//! for 11 seeds × 14 sizes, shuffle draws for sequences longer than 2³² (the
//! 64-bit branch) and the recipe's 1000-row selections; the tests below compare
//! against all of it.

/// `SeedSequence`'s hash constants (numpy `bit_generator.pyx`).
const INIT_A: u32 = 0x43b0_d7e5;
const MULT_A: u32 = 0x931e_8875;
const INIT_B: u32 = 0x8b51_f9dd;
const MULT_B: u32 = 0x58f3_8ded;
const MIX_MULT_L: u32 = 0xca01_f9dd;
const MIX_MULT_R: u32 = 0x4973_f715;
/// Half the bits of a 32-bit word: the xor-shift in the hash and mix functions.
const XSHIFT: u32 = 16;
/// numpy's default entropy pool size (32-bit words).
const POOL_SIZE: usize = 4;

/// PCG64's LCG multiplier (`PCG_DEFAULT_MULTIPLIER_128` in numpy's `pcg64.h`).
const PCG_MULTIPLIER: u128 = (2_549_297_995_355_413_924_u128 << 64) | 4_865_540_595_714_422_341;

/// numpy's `np.random.SeedSequence(seed)` for a non-negative integer seed (no
/// spawn key, default pool size): the mixed entropy pool that seeds bit
/// generators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedSequence {
    pool: [u32; POOL_SIZE],
}

/// numpy's `hashmix`: hashes `value` and advances the multiplier `hash_const`.
fn hashmix(value: u32, hash_const: &mut u32) -> u32 {
    let mut v = value ^ *hash_const;
    *hash_const = hash_const.wrapping_mul(MULT_A);
    v = v.wrapping_mul(*hash_const);
    v ^ (v >> XSHIFT)
}

/// numpy's `mix`: combines two pool words.
fn mix(x: u32, y: u32) -> u32 {
    let r = MIX_MULT_L
        .wrapping_mul(x)
        .wrapping_sub(MIX_MULT_R.wrapping_mul(y));
    r ^ (r >> XSHIFT)
}

impl SeedSequence {
    /// `SeedSequence(seed)`. numpy turns an integer seed into 32-bit words, lowest
    /// first, with no leading zero words (`_int_to_uint32_array`): 0 is `[0]`,
    /// 42 is `[42]`, 2³² is `[0, 1]`. So a seed below 2³² and the same seed given
    /// as a `u64` agree, as they do in numpy.
    pub fn new(seed: u64) -> Self {
        let (lo, hi) = (seed as u32, (seed >> 32) as u32);
        if hi == 0 {
            Self::from_entropy(&[lo])
        } else {
            Self::from_entropy(&[lo, hi])
        }
    }

    /// `mix_entropy` over an assembled entropy array (numpy's
    /// `get_assembled_entropy`, which for an integer seed without spawn key is
    /// just the seed's words).
    fn from_entropy(entropy: &[u32]) -> Self {
        let mut hash_const = INIT_A;
        let mut pool = [0u32; POOL_SIZE];
        // Hash the entropy into the pool; a pool longer than the entropy keeps
        // running the hash on zeros.
        for (i, slot) in pool.iter_mut().enumerate() {
            *slot = hashmix(entropy.get(i).copied().unwrap_or(0), &mut hash_const);
        }
        // Mix every word into every other one so late words affect early ones.
        for src in 0..POOL_SIZE {
            for dst in 0..POOL_SIZE {
                if src != dst {
                    let h = hashmix(pool[src], &mut hash_const);
                    pool[dst] = mix(pool[dst], h);
                }
            }
        }
        // Entropy beyond the pool size is folded into every pool word (never the
        // case for a u64 seed, which has at most two words; kept for fidelity).
        for &word in entropy.iter().skip(POOL_SIZE) {
            for slot in pool.iter_mut() {
                let h = hashmix(word, &mut hash_const);
                *slot = mix(*slot, h);
            }
        }
        Self { pool }
    }

    /// `generate_state(n_words, np.uint32)`: cycles through the pool, hashing each
    /// word with a multiplier that advances per output word.
    pub fn generate_state_u32(&self, n_words: usize) -> Vec<u32> {
        let mut hash_const = INIT_B;
        self.pool
            .iter()
            .cycle()
            .take(n_words)
            .map(|&word| {
                let mut v = word ^ hash_const;
                hash_const = hash_const.wrapping_mul(MULT_B);
                v = v.wrapping_mul(hash_const);
                v ^ (v >> XSHIFT)
            })
            .collect()
    }

    /// `generate_state(n_words, np.uint64)`: twice as many 32-bit words, paired
    /// little-endian (the first of each pair is the low half), as numpy's
    /// `.astype('<u4').view('<u8')` does.
    pub fn generate_state_u64(&self, n_words: usize) -> Vec<u64> {
        self.generate_state_u32(2 * n_words)
            .chunks_exact(2)
            .map(|pair| u64::from(pair[0]) | (u64::from(pair[1]) << 32))
            .collect()
    }
}

/// numpy's PCG64 bit generator (PCG XSL-RR 128/64: a 128-bit LCG with a
/// selectable odd increment, 64-bit output), including the 32-bit buffer of
/// numpy's `pcg64_next32`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcg64 {
    state: u128,
    inc: u128,
    /// High half of the last 64-bit draw, pending for the next `next_u32`.
    buffered_u32: Option<u32>,
}

impl Pcg64 {
    /// `np.random.PCG64(seed)`: the generator behind `np.random.default_rng(seed)`.
    pub fn new(seed: u64) -> Self {
        Self::from_seed_sequence(&SeedSequence::new(seed))
    }

    /// `PCG64(seed_seq)`: seeds from `seed_seq.generate_state(4, np.uint64)`.
    pub fn from_seed_sequence(seed_seq: &SeedSequence) -> Self {
        let w = seed_seq.generate_state_u64(4);
        Self::from_seed_words([w[0], w[1], w[2], w[3]])
    }

    /// numpy's `pcg64_set_seed(state, &w[0], &w[2])`: `w[0..2]` is the initial
    /// state and `w[2..4]` the stream, each high word first; then the PCG
    /// reference seeding (`pcg_setseq_128_srandom_r`): odd increment from the
    /// stream, one step from zero, add the initial state, one more step.
    pub fn from_seed_words(w: [u64; 4]) -> Self {
        let initstate = (u128::from(w[0]) << 64) | u128::from(w[1]);
        let initseq = (u128::from(w[2]) << 64) | u128::from(w[3]);
        let mut rng = Self {
            state: 0,
            inc: (initseq << 1) | 1,
            buffered_u32: None,
        };
        rng.step();
        rng.state = rng.state.wrapping_add(initstate);
        rng.step();
        rng
    }

    /// The LCG state and increment, as numpy's `bit_generator.state["state"]`
    /// reports them (`"state"`, `"inc"`).
    #[cfg(test)]
    pub fn state_and_inc(&self) -> (u128, u128) {
        (self.state, self.inc)
    }

    fn step(&mut self) {
        self.state = self
            .state
            .wrapping_mul(PCG_MULTIPLIER)
            .wrapping_add(self.inc);
    }

    /// Next 64-bit output (numpy's `next_uint64` / `random_raw`): step, then
    /// XSL-RR of the new state. Leaves the 32-bit buffer alone, as numpy does.
    pub fn next_u64(&mut self) -> u64 {
        self.step();
        let hi = (self.state >> 64) as u64;
        let lo = self.state as u64;
        (hi ^ lo).rotate_right((self.state >> 122) as u32)
    }

    /// Next 32-bit output (numpy's `pcg64_next32`): the buffered high half if
    /// one is pending, else the low half of a fresh 64-bit draw, buffering its
    /// high half.
    pub fn next_u32(&mut self) -> u32 {
        if let Some(v) = self.buffered_u32.take() {
            return v;
        }
        let next = self.next_u64();
        self.buffered_u32 = Some((next >> 32) as u32);
        next as u32
    }

    /// numpy's `random_interval(max)`: uniform in `0..=max` by masked rejection
    /// (32-bit draws when `max` fits in 32 bits, 64-bit draws otherwise).
    /// `max == 0` returns 0 without drawing.
    pub fn random_interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        // Smallest all-ones mask covering `max`.
        let mask = u64::MAX >> max.leading_zeros();
        if max <= u64::from(u32::MAX) {
            let (mask, max) = (mask as u32, max as u32);
            loop {
                let v = self.next_u32() & mask;
                if v <= max {
                    return u64::from(v);
                }
            }
        } else {
            loop {
                let v = self.next_u64() & mask;
                if v <= max {
                    return v;
                }
            }
        }
    }

    /// numpy's `Generator.shuffle` of a 1-d array: for `i = len-1` down to 1,
    /// swap items `i` and `random_interval(i)`.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.random_interval(i as u64) as usize;
            items.swap(i, j);
        }
    }
}

/// `np.random.default_rng(seed).permutation(n)`: the row order of Hugging Face
/// `datasets`' `shuffle(seed=seed)` on `n` rows.
pub fn numpy_permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    Pcg64::new(seed).shuffle(&mut order);
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn fixture() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/numpy_permutations.json"
        );
        let text = std::fs::read_to_string(path).expect("numpy fixture");
        serde_json::from_str(&text).expect("fixture JSON")
    }

    fn u64s(v: &Value) -> Vec<u64> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_u64().expect("u64"))
            .collect()
    }

    fn u128_str(v: &Value) -> u128 {
        v.as_str().expect("string").parse().expect("u128")
    }

    /// sum((k+1) * p[k]) mod 2^64, as the fixture script computes it.
    fn checksum(p: &[usize]) -> u64 {
        p.iter().enumerate().fold(0u64, |acc, (k, &v)| {
            acc.wrapping_add((k as u64 + 1).wrapping_mul(v as u64))
        })
    }

    #[test]
    fn known_values_for_seed_42() {
        // np.random.SeedSequence(42).generate_state(4, np.uint64)
        assert_eq!(
            SeedSequence::new(42).generate_state_u64(4),
            [
                11465652750463011511,
                15382171918060459190,
                9018504550953525431,
                3703499796004394495
            ]
        );
        // np.random.PCG64(42).random_raw(3)
        let mut rng = Pcg64::new(42);
        let raw: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        assert_eq!(
            raw,
            [
                14276969152011380360,
                8095878257575067585,
                15838336090824644132
            ]
        );
    }

    #[test]
    fn recipe_rows_for_the_tweet_train_split() {
        // The tutorial's first five train rows are the tweets with textIDs
        // fd8e3ede29, 9206b5221d, d6b51b539f, 5bd1a6d051, e7948d93b8, i.e. these
        // `idx` values (data-row numbers in the 27,481-row Kaggle/mteb split).
        let first5 = [12554, 7987, 10281, 17412, 14051];
        assert_eq!(numpy_permutation(27481, 42)[..5], first5);
        let fx = fixture();
        let train = &fx["tutorial_selections"][0];
        assert_eq!(train["split"], "train");
        assert_eq!(u64s(&train["first_1000"])[..5], first5.map(|v| v as u64));
    }

    #[test]
    fn recipe_selections_match_numpy() {
        let fx = fixture();
        let selections = fx["tutorial_selections"].as_array().unwrap();
        assert_eq!(selections.len(), 2);
        for sel in selections {
            let n = sel["n"].as_u64().unwrap() as usize;
            let seed = sel["seed"].as_u64().unwrap();
            let want = u64s(&sel["first_1000"]);
            assert_eq!(want.len(), 1000);
            let got: Vec<u64> = numpy_permutation(n, seed)[..1000]
                .iter()
                .map(|&v| v as u64)
                .collect();
            assert_eq!(got, want, "split {}", sel["split"]);
        }
    }

    #[test]
    fn seed_sequence_and_raw_stream_match_numpy() {
        let fx = fixture();
        let cases = fx["seed_sequence"].as_array().unwrap();
        assert!(cases.len() >= 10);
        for case in cases {
            let seed = case["seed"].as_u64().unwrap();
            let words = SeedSequence::new(seed).generate_state_u64(4);
            assert_eq!(words, u64s(&case["words_u64"]), "seed {seed}");
            let mut rng = Pcg64::new(seed);
            assert_eq!(
                rng.state_and_inc(),
                (u128_str(&case["pcg_state"]), u128_str(&case["pcg_inc"])),
                "seed {seed}"
            );
            let want = u64s(&case["random_raw"]);
            let got: Vec<u64> = want.iter().map(|_| rng.next_u64()).collect();
            assert_eq!(got, want, "seed {seed}");
        }
    }

    #[test]
    fn u32_draws_use_low_half_then_buffered_high_half() {
        let fx = fixture();
        for case in fx["next_uint32"].as_array().unwrap() {
            let seed = case["seed"].as_u64().unwrap();
            let want = u64s(&case["values"]);
            let mut rng = Pcg64::new(seed);
            let got: Vec<u64> = want.iter().map(|_| u64::from(rng.next_u32())).collect();
            assert_eq!(got, want, "seed {seed}");
            // And the same numbers come from splitting the 64-bit stream.
            let mut raw = Pcg64::new(seed);
            let split: Vec<u64> = (0..want.len().div_ceil(2))
                .flat_map(|_| {
                    let r = raw.next_u64();
                    [r & 0xffff_ffff, r >> 32]
                })
                .take(want.len())
                .collect();
            assert_eq!(split, want, "seed {seed}");
        }
    }

    #[test]
    fn permutations_match_numpy() {
        let fx = fixture();
        let cases = fx["permutations"].as_array().unwrap();
        assert!(cases.len() >= 100);
        for case in cases {
            let n = case["n"].as_u64().unwrap() as usize;
            let seed = case["seed"].as_u64().unwrap();
            let head = u64s(&case["head"]);
            assert_eq!(head.len(), n.min(50));
            let p = numpy_permutation(n, seed);
            let got: Vec<u64> = p[..head.len()].iter().map(|&v| v as u64).collect();
            assert_eq!(got, head, "n {n} seed {seed}");
            assert_eq!(
                checksum(&p),
                case["checksum"].as_u64().unwrap(),
                "n {n} seed {seed}"
            );
        }
    }

    #[test]
    fn permutation_is_a_permutation() {
        for n in [0, 1, 2, 3, 1000, 27481] {
            let mut p = numpy_permutation(n, 7);
            p.sort_unstable();
            assert!(p.iter().copied().eq(0..n));
        }
    }

    /// The 64-bit branch of `random_interval` only runs for sequences longer
    /// than 2^32 + 1; the fixture recorded numpy's first swap partners for such
    /// lengths (including the switch back to 32-bit draws below 2^32).
    #[test]
    fn draws_for_sequences_longer_than_2_pow_32_match_numpy() {
        let fx = fixture();
        let cases = fx["large_shuffle_draws"].as_array().unwrap();
        assert!(cases
            .iter()
            .all(|c| c["n"].as_u64().unwrap() > (1 << 32) + 1));
        for case in cases {
            let n = case["n"].as_u64().unwrap();
            let seed = case["seed"].as_u64().unwrap();
            let want = u64s(&case["swaps"]);
            let mut rng = Pcg64::new(seed);
            let got: Vec<u64> = (0..want.len() as u64)
                .map(|k| rng.random_interval(n - 1 - k))
                .collect();
            assert_eq!(got, want, "n {n} seed {seed}");
        }
    }

    #[test]
    fn random_interval_edges() {
        let mut a = Pcg64::new(3);
        let b = a.clone();
        assert_eq!(a.random_interval(0), 0);
        assert_eq!(a, b, "max 0 draws nothing");
        // A full 32-bit mask never rejects: the value is the raw 32-bit draw.
        let mut c = b.clone();
        assert_eq!(
            a.random_interval(u64::from(u32::MAX)),
            u64::from(c.next_u32())
        );
        // Likewise for a full 64-bit mask.
        let mut d = Pcg64::new(3);
        let mut e = d.clone();
        assert_eq!(d.random_interval(u64::MAX), e.next_u64());
        for max in [1, 2, 5, 255, 256, 1 << 20, (1 << 32) + 1, 1 << 40] {
            for _ in 0..100 {
                assert!(d.random_interval(max) <= max);
            }
        }
    }

    #[test]
    fn shuffle_of_items_follows_the_permutation() {
        let mut words = ["a", "b", "c", "d", "e", "f", "g"];
        Pcg64::new(42).shuffle(&mut words);
        let order = numpy_permutation(7, 42);
        let expected: Vec<&str> = order
            .iter()
            .map(|&i| ["a", "b", "c", "d", "e", "f", "g"][i])
            .collect();
        assert_eq!(words.to_vec(), expected);
    }
}
