"""Reference values for the Rust port of `np.random.default_rng(seed).permutation(n)`.

usage: make_numpy_permutations.py [OUT_JSON]   (default: tests/fixtures/numpy_permutations.json,
relative to the repository root)

Needs only Python 3 and numpy; the committed fixture was written with numpy 2.4.6 (Python 3.11).
Hugging Face `datasets` implements `Dataset.shuffle(seed=s)` as
`np.random.default_rng(s).permutation(len(ds))`, so these are exactly the row orders the
fine-tuning tutorial's `ds.shuffle(seed=42).select(range(1000))` uses.

The JSON holds, for `src/data/numpy_rng.rs`'s tests:
  * `seed_sequence`: `SeedSequence(seed).generate_state(4, uint64)` words, the PCG64 state and
    increment right after seeding, and the first raw 64-bit outputs (`bit_generator.random_raw`);
  * `next_uint32`: 32-bit draws as `Generator.integers(0, 2**32, dtype=uint32)` makes them
    (one `next_uint32` call per value: low half of a 64-bit draw, then the buffered high half);
  * `permutations`: for several seeds and sizes, the first 50 values of the permutation (all of
    them when n <= 50) and a checksum of the whole of it, sum((k+1) * p[k]) mod 2**64;
  * `large_shuffle_draws`: the first swap partners `Generator.shuffle` draws for sequences longer
    than 2**32 (the 64-bit branch of numpy's bounded draw, which `permutation` of an array never
    reaches at sizes we can allocate; obtained by shuffling a fake sequence that records the swaps
    and stops the shuffle early);
  * `tutorial_selections`: the full first 1000 rows of the tweet train (27481 rows) and test
    (3534 rows) splits at seed 42.
"""
import json
import sys
from collections.abc import MutableSequence
from pathlib import Path

import numpy as np

SEEDS = [0, 1, 2, 42, 1234, 12345, 2**32 - 1, 2**32, 2**32 + 5, 2**63 - 1, 2**64 - 1]
SIZES = [0, 1, 2, 3, 10, 50, 51, 1000, 3534, 27480, 27481, 65536, 65537, 1_000_003]
HEAD = 50
RAW_DRAWS = 8

# The first five rows the tutorial selects from the tweet train split are the tweets with textIDs
# fd8e3ede29, 9206b5221d, d6b51b539f, 5bd1a6d051, e7948d93b8; in the Kaggle CSV (same row order
# as mteb/tweet_sentiment_extraction) these are data rows 12554, 7987, 10281, 17412, 14051.
TUTORIAL_TRAIN_FIRST5 = [12554, 7987, 10281, 17412, 14051]


def checksum(perm):
    k = np.arange(1, len(perm) + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return int(np.sum(k * perm.astype(np.uint64), dtype=np.uint64))


class _Stop(Exception):
    pass


class SwapRecorder(MutableSequence):
    """A sequence of any length whose shuffle records the swap partners, then stops early."""

    def __init__(self, length, swaps):
        self.length, self.swaps, self.seen = length, swaps, []

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        # The untyped path of Generator.shuffle runs `x[i], x[j] = x[j], x[i]` for
        # i = n-1 down to 1: reads x[j] then x[i] for each draw j.
        self.seen.append(i)
        if len(self.seen) == 2 * self.swaps:
            raise _Stop
        return 0

    def __setitem__(self, i, v):
        pass

    def __delitem__(self, i):
        raise NotImplementedError

    def insert(self, i, v):
        raise NotImplementedError


def large_shuffle_draws(n, seed, swaps):
    rec = SwapRecorder(n, swaps)
    try:
        np.random.default_rng(seed).shuffle(rec)
    except _Stop:
        pass
    pairs = list(zip(rec.seen[0::2], rec.seen[1::2]))
    assert [i for _, i in pairs] == list(range(n - 1, n - 1 - swaps, -1)), pairs
    return [j for j, _ in pairs]


def dump(doc):
    """JSON with one line per top-level scalar and per list entry (small, diff-friendly)."""
    lines = []
    for key, value in doc.items():
        if isinstance(value, list):
            items = [json.dumps(v, separators=(",", ":")) for v in value]
            lines.append(f"{json.dumps(key)}:[\n" + ",\n".join(items) + "\n]")
        else:
            lines.append(f"{json.dumps(key)}:{json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main():
    root = Path(__file__).resolve().parent.parent
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "tests/fixtures/numpy_permutations.json"

    seed_sequence = []
    for seed in SEEDS:
        words = np.random.SeedSequence(seed).generate_state(4, np.uint64)
        bitgen = np.random.PCG64(seed)
        st = bitgen.state["state"]
        raw = bitgen.random_raw(RAW_DRAWS)
        seed_sequence.append({
            "seed": seed,
            "words_u64": [int(w) for w in words],
            "pcg_state": str(st["state"]),
            "pcg_inc": str(st["inc"]),
            "random_raw": [int(r) for r in raw],
        })

    next_uint32 = []
    for seed in [42, 2**63 - 1]:
        draws = np.random.default_rng(seed).integers(0, 2**32, size=9, dtype=np.uint32)
        next_uint32.append({"seed": seed, "values": [int(v) for v in draws]})

    permutations = []
    for seed in SEEDS:
        for n in SIZES:
            p = np.random.default_rng(seed).permutation(n)
            permutations.append({
                "seed": seed, "n": n, "head": [int(v) for v in p[:HEAD]], "checksum": checksum(p),
            })

    large = []
    for n, seed in [(2**32 + 2, 42), (2**33, 0), (2**40 + 7, 1234), (2**62 + 3, 2**63 - 1)]:
        large.append({"seed": seed, "n": n, "swaps": large_shuffle_draws(n, seed, 6)})

    train = np.random.default_rng(42).permutation(27481)[:1000]
    test = np.random.default_rng(42).permutation(3534)[:1000]
    assert [int(v) for v in train[:5]] == TUTORIAL_TRAIN_FIRST5, train[:5]

    doc = {
        "description": "numpy reference values for src/data/numpy_rng.rs, written by "
        "reference/make_numpy_permutations.py",
        "numpy_version": np.__version__,
        "generator": "np.random.default_rng(seed) = Generator(PCG64(SeedSequence(seed)))",
        "seed_sequence": seed_sequence,
        "next_uint32": next_uint32,
        "permutations": permutations,
        "large_shuffle_draws": large,
        "tutorial_selections": [
            {"split": "train", "seed": 42, "n": 27481, "first_1000": [int(v) for v in train]},
            {"split": "test", "seed": 42, "n": 3534, "first_1000": [int(v) for v in test]},
        ],
    }
    out.write_text(dump(doc))
    print(f"wrote {out} ({out.stat().st_size} bytes) with numpy {np.__version__}")


if __name__ == "__main__":
    main()
