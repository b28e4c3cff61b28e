"""Inference speed and agreement, tuneserve against ONNX Runtime, interleaved (bench_ab.sh infer).

usage: infer_ab.py --bin target/release/tuneserve --python PY --ref reference --model DIR
                   --data FILE.jsonl [--limit 1000] [--batches 32,8,1] [--rounds 1] [--threads 2]
                   [--out DIR]

For each batch size, each round runs five sides one after another on the same texts (the first
--limit non-empty `text` fields of --data): `tuneserve classify --precision fp32|int8|bf16
--batch-size B --timings` and reference/ort_infer.py --precision fp32|int8. Both sides sort the
texts by length and pad each batch to its longest text; model load, export and quantization are
excluded from the times. Prints texts/s of every run, the medians, the ratios against the targets
(int8 >= 1.2x ONNX Runtime int8 and >= 2x tuneserve fp32; bf16 >= 1.5x fp32), and each narrow
side's agreement with its own fp32 (argmax agreement, mean |delta p| of the softmax, max |delta
logit|). Writes OUT/infer-ab.json.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path


def texts(path, limit, out):
    rows = []
    for line in open(path):
        if line.strip():
            t = json.loads(line)
            t = t["text"] if isinstance(t, dict) else t
            if t.strip():
                rows.append(t)
        if len(rows) == limit:
            break
    out.write_text("".join(json.dumps({"text": t}) + "\n" for t in rows))
    return len(rows)


def tuneserve(args, precision, batch, texts_file, out):
    cmd = [args.bin, "classify", "--model", str(args.model), "--input", str(texts_file),
           "--precision", precision, "--batch-size", str(batch), "--timings"]
    run = subprocess.run(cmd, capture_output=True, text=True, check=True)
    timing = json.loads(run.stderr.strip().splitlines()[-1])
    logits = [json.loads(line)["logits"] for line in run.stdout.splitlines() if line.strip()]
    out.write_text(json.dumps(logits))
    return timing["texts_per_s"], logits


def onnx(args, precision, batch, texts_file, out):
    cmd = [args.python, f"{args.ref}/ort_infer.py", "--model", str(args.model), "--texts", str(texts_file),
           "--precision", precision, "--batch", str(batch), "--threads", str(args.threads),
           "--limit", str(args.limit), "--onnx-dir", str(args.out / "onnx"), "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    return result["texts_per_s"], json.loads(out.read_text())["logits"]


def softmax(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    s = sum(e)
    return [v / s for v in e]


def agreement(base, other):
    argmax = lambda r: max(range(len(r)), key=r.__getitem__)  # noqa: E731
    agree = sum(argmax(a) == argmax(b) for a, b in zip(base, other)) / len(base)
    dp = [abs(x - y) for a, b in zip(base, other) for x, y in zip(softmax(a), softmax(b))]
    dl = max(abs(x - y) for a, b in zip(base, other) for x, y in zip(a, b))
    return {"argmax_agreement": round(agree, 4), "mean_abs_dp": round(sum(dp) / len(dp), 5),
            "max_abs_dlogit": round(dl, 4)}


SIDES = [("tuneserve", "fp32"), ("tuneserve", "int8"), ("tuneserve", "bf16"), ("onnxruntime", "fp32"),
         ("onnxruntime", "int8")]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--ref", default="reference")
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--data", required=True)
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--batches", default="32,8,1")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("target/bench-ab"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.update(RAYON_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    texts_file = args.out / "infer-texts.jsonl"
    n = texts(args.data, args.limit, texts_file)
    print(f"{n} texts of {args.data}, model {args.model}, {args.threads} threads, load average "
          f"{os.getloadavg()[0]:.2f} at start", flush=True)
    report = {"texts": n, "threads": args.threads, "model": str(args.model), "batches": {}}
    for batch in [int(b) for b in args.batches.split(",")]:
        speeds = {s: [] for s in SIDES}
        logits = {}
        for r in range(args.rounds):
            for engine, precision in SIDES:
                out = args.out / f"infer-{engine}-{precision}-b{batch}-{r}.json"
                side = tuneserve if engine == "tuneserve" else onnx
                tps, logits[(engine, precision)] = side(args, precision, batch, texts_file, out)
                speeds[(engine, precision)].append(tps)
                print(f"batch {batch:>2} round {r + 1}: {engine:<11} {precision}: {tps:8.1f} texts/s", flush=True)
        med = {s: statistics.median(v) for s, v in speeds.items()}
        ts, ort = lambda p: med[("tuneserve", p)], lambda p: med[("onnxruntime", p)]  # noqa: E731
        ratios = {"int8_vs_ort_int8": ts("int8") / ort("int8"), "int8_vs_fp32": ts("int8") / ts("fp32"),
                  "bf16_vs_fp32": ts("bf16") / ts("fp32"), "fp32_vs_ort_fp32": ts("fp32") / ort("fp32")}
        acc = {"tuneserve_int8": agreement(logits[("tuneserve", "fp32")], logits[("tuneserve", "int8")]),
               "tuneserve_bf16": agreement(logits[("tuneserve", "fp32")], logits[("tuneserve", "bf16")]),
               "onnxruntime_int8": agreement(logits[("onnxruntime", "fp32")], logits[("onnxruntime", "int8")]),
               "tuneserve_vs_ort_fp32": agreement(logits[("onnxruntime", "fp32")], logits[("tuneserve", "fp32")])}
        report["batches"][batch] = {"texts_per_s": {f"{e} {p}": v for (e, p), v in med.items()},
                                    "ratios": ratios, "agreement": acc}
        print(f"batch {batch}: " + ", ".join(f"{e} {p} {v:.1f}" for (e, p), v in med.items()) + " texts/s")
        print(f"  int8 / ORT int8 {ratios['int8_vs_ort_int8']:.2f}x (target 1.2), int8 / fp32 "
              f"{ratios['int8_vs_fp32']:.2f}x (target 2), bf16 / fp32 {ratios['bf16_vs_fp32']:.2f}x (target 1.5), "
              f"fp32 / ORT fp32 {ratios['fp32_vs_ort_fp32']:.2f}x")
        for k, v in acc.items():
            print(f"  {k}: {v}")
    report["load_average_end"] = os.getloadavg()[0]
    (args.out / "infer-ab.json").write_text(json.dumps(report, indent=1))
    print(f"load average {os.getloadavg()[0]:.2f} at the end; wrote {args.out / 'infer-ab.json'}")


if __name__ == "__main__":
    sys.exit(main())
