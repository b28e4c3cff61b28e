#!/usr/bin/env bash
# A/B speed comparison: tuneserve's `bench` against reference/hf_bench.py
# (PyTorch + Transformers) on the same model folders, interleaved, same threads.
#
#   scripts/bench_ab.sh [PRESET ...]        (default: small gpt2)
#
# Needs a release build (cargo build --release) and the reference's Python
# environment: PYTHON=/path/to/venv/bin/python (see reference/README.md).
# Prints each run and the ratios tuneserve / PyTorch of the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
REF=${REF:-reference}
ROUNDS=${ROUNDS:-2}
THREADS=${THREADS:-2}
BIN=target/release/tuneserve
OUT=${OUT:-target/bench-ab}
presets=("${@:-small gpt2}")
[ $# -eq 0 ] && presets=(small gpt2)
mkdir -p "$OUT"
dirs=()
for p in "${presets[@]}"; do
  d="$OUT/models/$p"
  [ -f "$d/model.safetensors" ] || "$BIN" init-model --preset "$p" --tokenizer assets/gpt2-tokenizer --out "$d"
  dirs+=("$d")
done
export RAYON_NUM_THREADS=$THREADS CANDLE_NUM_THREADS=$THREADS
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r: tuneserve"
  "$BIN" bench --model "${dirs[@]}" --out "$OUT/tuneserve-$r.json"
  echo "== round $r: pytorch"
  "$PYTHON" "$REF/hf_bench.py" --model "${dirs[@]}" --threads "$THREADS" --out "$OUT/pytorch-$r.json"
done
"$PYTHON" - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
ts = [json.load(open(f"{out}/tuneserve-{r}.json")) for r in range(1, rounds + 1)]
pt = [json.load(open(f"{out}/pytorch-{r}.json")) for r in range(1, rounds + 1)]
mt = statistics.median(r["matmul_fp32_gflops"] for r in ts)
mp = statistics.median(r["matmul_fp32"]["gflops"] for r in pt)
print(f"matmul 2048^3 fp32 (the gemm kernel alone): tuneserve {mt:.1f} GFLOP/s, pytorch {mp:.1f} GFLOP/s, ratio {mt/mp:.2f}x")
print(f"{'model':<28} {'work':<14} {'tuneserve':>12} {'pytorch':>12} {'ratio':>7}")
for i, m in enumerate(ts[0]["models"]):
    for work in ("train_step", "forward"):
        a = statistics.median(r["models"][i][work]["median_s"] for r in ts)
        b = statistics.median(r["models"][i][work]["median_s"] for r in pt)
        print(f"{m['model'][-28:]:<28} {work:<14} {a*1e3:>10.1f}ms {b*1e3:>10.1f}ms {b/a:>6.2f}x")
    ph = {k: statistics.median(r["models"][i]["train_step"]["phase_median_s"][k] for r in ts) for k in ("forward", "backward", "optimizer")}
    pp = {k: statistics.median(r["models"][i]["train_step"]["phase_median_s"][k] for r in pt) for k in ("forward", "backward", "optimizer")}
    print("   phases ms (tuneserve / pytorch): " + ", ".join(f"{k} {ph[k]*1e3:.1f}/{pp[k]*1e3:.1f}" for k in ph))
print("ratio = pytorch time / tuneserve time (above 1: tuneserve faster)")
PY
