"""The whole recipe, both sides, interleaved: `tuneserve train` against reference/hf_train.py.

Run by `scripts/bench_ab.sh train MODEL_DIR` (see there). For each seed, one run of each side:
1000 train / 1000 eval rows of the tweets (the same rows: numpy's seeded permutation of the split's
`idx`), batch 1 x gradient accumulation 4, one epoch, dynamic padding, evaluation before and after
training. Each run is timed as a whole process and wrapped in cpu_guard's accounting of what other
processes took meanwhile. Prints every run (time per optimizer step, training and evaluation apart,
whole process, peak RSS, accuracy and macro-F1 before and after), then the ratios of the medians
and each side's spread of final accuracy and macro-F1 over the seeds.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys


def tuneserve(a, seed, out):
    cmd = [a.bin, "train", "--model", a.model, "--train", a.train, "--eval", a.eval, "--drop-empty-text",
           "--out", out, "--train-subset", str(a.n_train), "--eval-subset", str(a.n_eval), "--epochs", "1",
           "--batch-size", "1", "--gradient-accumulation-steps", "4", "--seed", str(seed)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    m = json.load(open(f"{out}/metrics.json"))
    t = m["timing"]
    return {"s_per_step": t["seconds_per_step"], "train_s": t["train_s"], "eval_s": t["eval_s"],
            "rss": m["peak_rss_mib"], "before": m["baseline"], "after": m["final"]}


def pytorch(a, seed, out):
    positions = json.load(open(f"{a.model}/config.json"))["n_positions"]  # tuneserve's default max_length
    cmd = [a.python, f"{a.ref}/hf_train.py", "--model", a.model, "--train", a.train, "--eval", a.eval,
           "--n-train", str(a.n_train), "--n-eval", str(a.n_eval), "--epochs", "1", "--seed", str(seed),
           "--padding", "dynamic", "--max-length", str(positions), "--threads", str(a.threads), "--wait-idle-s", "0",
           "--workdir", os.path.abspath(f"{out}-work"), "--out", f"{out}.json"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = json.load(open(f"{out}.json"))
    tr = r["train"]
    return {"s_per_step": tr["s_per_optimizer_step"], "train_s": tr["train_runtime"],
            "eval_s": r["eval_before"]["runtime_s"] + r["eval_after"]["runtime_s"], "rss": r["peak_rss_mib"],
            "before": r["eval_before"], "after": r["eval_after"]}


def main():
    ap = argparse.ArgumentParser()
    for flag in ("--bin", "--python", "--ref", "--model", "--train", "--eval", "--out"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--seeds", default="42")
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--n-eval", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    sys.path.insert(0, a.ref)
    from cpu_guard import Guard

    runs = {"tuneserve": [], "pytorch": []}
    for seed in [int(s) for s in a.seeds.split()]:
        for side, run in (("tuneserve", tuneserve), ("pytorch", pytorch)):
            with Guard() as g:
                row = run(a, seed, os.path.abspath(f"{a.out}/train-{side}-{seed}"))
            row.update(seed=seed, wall=g.wall_s, other=g.other_share)
            runs[side].append(row)
            print(f"seed {seed} {side:<9}: {row['s_per_step']:.3f} s/step, training {row['train_s']:.1f} s, "
                  f"evaluations {row['eval_s']:.1f} s, process {row['wall']:.1f} s, peak RSS {row['rss']:.0f} MiB, "
                  f"accuracy {row['before']['accuracy']:.3f} -> {row['after']['accuracy']:.3f}, "
                  f"macro-F1 {row['before']['macro_f1']:.3f} -> {row['after']['macro_f1']:.3f}; "
                  f"other processes took {100 * row['other']:.0f}% of the machine", flush=True)
    med = {s: {k: statistics.median(x[k] for x in runs[s]) for k in ("s_per_step", "eval_s", "wall", "rss")}
           for s in runs}
    ts, pt = med["tuneserve"], med["pytorch"]
    for k, what in (("s_per_step", "s per optimizer step"), ("eval_s", "evaluations (both)"),
                    ("wall", "whole process")):
        print(f"{what}: tuneserve {ts[k]:.3f}, pytorch {pt[k]:.3f}, ratio {pt[k] / ts[k]:.2f}x "
              "(pytorch / tuneserve; above 1: tuneserve faster)")
    print(f"peak RSS: tuneserve {ts['rss']:.0f} MiB, pytorch {pt['rss']:.0f} MiB, ratio {ts['rss'] / pt['rss']:.2f}x "
          "(tuneserve / pytorch; at most 1 is the target)")
    for side in runs:
        for k in ("accuracy", "macro_f1"):
            v = [x["after"][k] for x in runs[side]]
            print(f"{side} final {k} over seeds {a.seeds}: " + ", ".join(f"{x:.3f}" for x in v)
                  + f" (min {min(v):.3f}, max {max(v):.3f})")
    json.dump({"runs": runs, "median": med}, open(f"{a.out}/train-ab.json", "w"), indent=1)


if __name__ == "__main__":
    main()
