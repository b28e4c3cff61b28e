#!/usr/bin/env bash
# A/B speed comparison: tuneserve's `bench` against reference/hf_bench.py
# (PyTorch + Transformers) on the same model folders, interleaved, same threads.
#
#   scripts/bench_ab.sh [PRESET ...]        (default: small gpt2)
#   scripts/bench_ab.sh recipe [PRESET|DIR] (default: gpt2)
#   scripts/bench_ab.sh lora [PRESET|DIR]   (default: gpt2)
#   scripts/bench_ab.sh matmul
#   scripts/bench_ab.sh train [PRESET|DIR]  (default: gpt2)
#   scripts/bench_ab.sh infer [PRESET|DIR]  (default: gpt2)
#
# `infer` times inference (scripts/infer_ab.py): `tuneserve classify
# --precision fp32|int8|bf16` against ONNX Runtime fp32 and dynamic int8
# (reference/ort_infer.py), interleaved ROUNDS times (default 1) on the first
# LIMIT (default 1000) non-empty texts of DATA (default the repository's
# test tweets), for each batch size in BATCHES (default "32 8 1"; BATCH sets
# one), each side sorting the texts by length and padding each batch to its
# longest, model load excluded. Prints texts/s, the ratios with their
# targets, and int8/bf16 agreement with fp32. The ONNX side needs torch,
# transformers, onnx and onnxruntime in PYTHON's environment (see
# reference/README.md); a DIR must be a classifier in Hugging Face's layout.
#
# `matmul` times the matrix products alone on the recipe's shapes: our sgemm
# and the gemm crate (`tuneserve bench --matmul`) against torch.matmul
# (`hf_bench.py --matmul-shapes`), interleaved ROUNDS times; prints GFLOP/s.
#
# `recipe` times the recipe's own shape: STEPS optimizer steps (default 20) of
# batch 1 x gradient accumulation 4 over the tweets of DATA (default the
# repository's sample), `tuneserve bench --recipe` against
# `reference/hf_train.py --max-steps STEPS --padding dynamic`, interleaved
# ROUNDS times, each run wrapped in reference/cpu_guard.py's accounting of the
# CPU other processes took meanwhile. Prints s/step (median), phases, peak RSS
# and the ratios. (scripts/recipe_ab.py --mode recipe; the model's head gets
# as many labels as DATA has, hf_train.py truncates to its n_positions.)
#
# `lora` times LoRA training on the same shape and data, three sides a round,
# interleaved ROUNDS times, each wrapped in the same CPU accounting
# (scripts/recipe_ab.py --mode lora): `tuneserve bench --recipe --lora`
# (tuneserve's LoRA: r 8, alpha 16, dropout 0.1 on c_attn, and the head),
# `tuneserve bench --recipe` (tuneserve's full fine-tuning) and
# `reference/hf_train.py --lora` (PEFT on PyTorch, same settings). Prints each
# run's s/step, peak RSS and other processes' share, the medians, and the
# ratios with their targets: tuneserve-full / tuneserve-lora s/step (>= 2),
# PEFT / tuneserve-lora s/step (>= 3), tuneserve-lora / PEFT peak RSS (<= 0.6).
# Writes OUT/lora-ab.json.
#
# `train` runs the whole recipe on each side (scripts/train_ab.py): `tuneserve
# train` against `reference/hf_train.py --epochs 1 --padding dynamic`, 1000 train
# and 1000 eval rows of TRAIN_DATA / EVAL_DATA (the full tweet splits), one run
# of each per seed in SEEDS (default "42"). Prints s/step, training and
# evaluation apart, the whole process, peak RSS, accuracy and macro-F1 of every
# run, the ratios, and each side's spread over the seeds.
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
BIN=${BIN:-target/release/tuneserve}
OUT=${OUT:-target/bench-ab}
mkdir -p "$OUT"
# A model folder for a preset name (random weights), or the folder given.
model_dir() {
  if [ -d "$1" ]; then echo "$1"; return; fi
  local d="$OUT/models/$1"
  [ -f "$d/model.safetensors" ] || "$BIN" init-model --preset "$1" --tokenizer assets/gpt2-tokenizer --out "$d" >&2
  echo "$d"
}
export RAYON_NUM_THREADS=$THREADS CANDLE_NUM_THREADS=$THREADS
if [ "${1:-}" = matmul ]; then
  for r in $(seq 1 "$ROUNDS"); do
    "$BIN" bench --matmul --warmup 2 --iters 7 --out "$OUT/matmul-tuneserve-$r.json" >/dev/null
    "$PYTHON" "$REF/hf_bench.py" --matmul-shapes --threads "$THREADS" --warmup 2 --iters 7 \
      --out "$OUT/matmul-pytorch-$r.json" >/dev/null
  done
  exec "$PYTHON" - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
ts = [json.load(open(f"{out}/matmul-tuneserve-{r}.json"))["matmul"]["shapes"] for r in range(1, rounds + 1)]
pt = [json.load(open(f"{out}/matmul-pytorch-{r}.json"))["matmul"]["shapes"] for r in range(1, rounds + 1)]
print(f"{'shape':<26} {'sgemm':>8} {'gemm':>8} {'torch':>8}  sgemm/torch  sgemm/gemm  (GFLOP/s, median of rounds)")
for i, s in enumerate(ts[0]):
    a = statistics.median(r[i]["sgemm_best_gflops"] for r in ts)
    g = statistics.median(r[i]["gemm_crate_gflops"] for r in ts)
    t = statistics.median(r[i]["gflops"] for r in pt)
    print(f"{s['label']:<26} {a:>8.1f} {g:>8.1f} {t:>8.1f}  {a / t:>10.2f}x  {a / g:>9.2f}x")
PY
fi
if [ "${1:-}" = train ]; then
  : "${TRAIN_DATA:?TRAIN_DATA=the full train split as JSONL}" "${EVAL_DATA:?EVAL_DATA=the full test split as JSONL}"
  exec "$PYTHON" scripts/train_ab.py --bin "$BIN" --python "$PYTHON" --ref "$REF" \
    --model "$(model_dir "${2:-gpt2}")" --train "$TRAIN_DATA" --eval "$EVAL_DATA" \
    --seeds "${SEEDS:-42}" --threads "$THREADS" --out "$OUT"
fi
if [ "${1:-}" = infer ]; then
  batches=${BATCH:-${BATCHES:-32 8 1}}
  exec "$PYTHON" scripts/infer_ab.py --bin "$BIN" --python "$PYTHON" --ref "$REF" \
    --model "$(model_dir "${2:-gpt2}")" --data "${DATA:-tests/fixtures/tweets/test.jsonl}" \
    --limit "${LIMIT:-1000}" --batches "${batches// /,}" --rounds "${ROUNDS_INFER:-1}" \
    --threads "$THREADS" --out "$OUT"
fi
if [ "${1:-}" = recipe ] || [ "${1:-}" = lora ]; then
  exec "$PYTHON" scripts/recipe_ab.py --mode "$1" --bin "$BIN" --python "$PYTHON" --ref "$REF" \
    --model "$(model_dir "${2:-gpt2}")" --data "${DATA:-tests/fixtures/tweets/train.jsonl}" \
    --steps "${STEPS:-20}" --rounds "$ROUNDS" --threads "$THREADS" --out "$OUT"
fi
presets=("${@:-small gpt2}")
[ $# -eq 0 ] && presets=(small gpt2)
dirs=()
for p in "${presets[@]}"; do
  dirs+=("$(model_dir "$p")")
done
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
