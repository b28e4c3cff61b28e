"""The recipe's shape, interleaved: `tuneserve bench --recipe` against reference/hf_train.py.

Run by `scripts/bench_ab.sh recipe` and `scripts/bench_ab.sh lora` (see there). Each run is wrapped in
cpu_guard's accounting of the CPU that other processes used meanwhile, which is printed beside the numbers:
on a shared machine a ratio is only as good as the load it was measured under.

--mode recipe: two sides a round, `tuneserve bench --recipe` and hf_train.py (full fine-tuning on both);
               writes OUT/recipe-{side}-{round}.json and OUT/recipe-ab.json.
--mode lora:   three sides a round, `tuneserve bench --recipe --lora` (tuneserve's LoRA), `tuneserve bench
               --recipe` (tuneserve's full fine-tuning) and `hf_train.py --lora` (PEFT on PyTorch);
               writes OUT/lora-{side}-{round}.json and OUT/lora-ab.json with the ratios and their targets.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

# mode -> [(side, runner, extra flags)]
SIDES = {
    "recipe": [("tuneserve", "tuneserve", []), ("pytorch", "hf", [])],
    "lora": [("tuneserve-lora", "tuneserve", ["--lora"]), ("tuneserve-full", "tuneserve", []),
             ("peft", "hf", ["--lora"])],
}

# quiet transformers' load report, progress bars and FutureWarnings on stderr (errors still show)
ENV = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
       "PYTHONWARNINGS": "ignore::FutureWarning"}


def rows_needed(data, steps):
    """hf_train.py keeps the rows of permutation(full_n)[:n] that the file has: for a whole split
    (the full file lacks only its empty-text row) 4 rows a step, the rows tuneserve trains on; for a
    sample of the split all of full_n (then it trains on as many of the sample's rows as it needs)."""
    idx = [json.loads(line).get("idx", i) for i, line in enumerate(open(data, encoding="utf-8")) if line.strip()]
    full_n = max(idx) + 1
    return 4 * steps if len(idx) >= 0.99 * full_n else full_n


def num_labels(data):
    """The head size the data needs (a base model folder has no num_labels; transformers would make 2)."""
    return 1 + max(json.loads(line)["label"] for line in open(data, encoding="utf-8") if line.strip())


def command(a, runner, extra, out, n_train):
    if runner == "tuneserve":
        return [a.bin, "bench", "--recipe", *extra, "--model", a.model, "--steps", str(a.steps),
                "--data", a.data, "--out", out]
    # tuneserve truncates to the model's positions; hf_train.py's default (1024) would fail the smaller presets
    positions = json.load(open(f"{a.model}/config.json"))["n_positions"]
    return [a.python, f"{a.ref}/hf_train.py", "--model", a.model, "--train", a.data, "--eval", a.data,
            "--n-train", str(n_train), "--n-eval", "8", "--max-steps", str(a.steps),
            "--max-length", str(positions), "--num-labels", str(num_labels(a.data)),
            "--padding", "dynamic", "--threads", str(a.threads), "--skip-eval", "--wait-idle-s", "0",
            "--workdir", os.path.abspath(f"{a.out}/trainer"), *extra, "--out", out]


def parse(runner, res):
    if runner == "tuneserve":
        m = res["recipe"][0]
        return {"s_per_step": m["step_median_s"], "phases": m["phase_mean_s"], "rss": m["peak_rss_mib"]}
    return {"s_per_step": res["train"]["step_time_median_s"], "phases": None, "rss": res["peak_rss_mib"]}


def run_all(a, Guard):
    """ROUNDS rounds of every side of the mode, interleaved; returns {side: [row per round]}."""
    sides = SIDES[a.mode]
    width = max(9, max(len(s) for s, _, _ in sides))
    n_train = rows_needed(a.data, a.steps)
    runs = {side: [] for side, _, _ in sides}
    for r in range(1, a.rounds + 1):
        for side, runner, extra in sides:
            out = os.path.abspath(f"{a.out}/{a.mode}-{side}-{r}.json")
            cmd = command(a, runner, extra, out, n_train)
            with Guard() as g:
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=ENV)
            res = json.load(open(out))
            row = parse(runner, res)
            if a.mode == "lora" and runner == "hf":
                row["trainable_parameters"] = res["lora"]["trainable_parameters"]
            row.update(wall=g.wall_s, other=g.other_share)
            runs[side].append(row)
            print(f"round {r} {side:<{width}}: {row['s_per_step']:.3f} s/step (median), peak RSS {row['rss']:.0f} MiB, "
                  f"process {g.wall_s:.1f} s, other processes took {100 * g.other_share:.0f}% of the machine",
                  flush=True)
    return runs


def medians(runs):
    return {s: {k: statistics.median(x[k] for x in runs[s]) for k in ("s_per_step", "rss", "wall")} for s in runs}


def phases(rows):
    return {k: statistics.median(x["phases"][k] for x in rows) for k in rows[0]["phases"]}


def report_recipe(a, runs):
    med = medians(runs)
    ts, pt = med["tuneserve"], med["pytorch"]
    ph = phases(runs["tuneserve"])
    print(f"tuneserve phases (mean s/step): " + ", ".join(f"{k} {v:.3f}" for k, v in ph.items()))
    print(f"s/step: tuneserve {ts['s_per_step']:.3f}, pytorch {pt['s_per_step']:.3f}, "
          f"ratio {pt['s_per_step'] / ts['s_per_step']:.2f}x (pytorch / tuneserve; above 1: tuneserve faster)")
    print(f"whole process: tuneserve {ts['wall']:.1f} s, pytorch {pt['wall']:.1f} s, ratio {pt['wall'] / ts['wall']:.2f}x")
    print(f"peak RSS: tuneserve {ts['rss']:.0f} MiB, pytorch {pt['rss']:.0f} MiB, ratio {ts['rss'] / pt['rss']:.2f}x "
          f"(tuneserve / pytorch; at most 1 is the target)")
    json.dump({"runs": runs, "median": med}, open(f"{a.out}/recipe-ab.json", "w"), indent=1)


def report_lora(a, runs):
    med = medians(runs)
    lo, fu, pe = med["tuneserve-lora"], med["tuneserve-full"], med["peft"]
    for side in ("tuneserve-lora", "tuneserve-full"):
        ph = phases(runs[side])
        print(f"{side} phases (mean s/step): " + ", ".join(f"{k} {v:.3f}" for k, v in ph.items()))
    print(f"PEFT trains {runs['peft'][0]['trainable_parameters']:,} parameters (LoRA + head)")
    print(f"s/step: tuneserve-lora {lo['s_per_step']:.3f}, tuneserve-full {fu['s_per_step']:.3f}, "
          f"peft {pe['s_per_step']:.3f}")
    print(f"whole process: tuneserve-lora {lo['wall']:.1f} s, tuneserve-full {fu['wall']:.1f} s, "
          f"peft {pe['wall']:.1f} s")
    print(f"peak RSS: tuneserve-lora {lo['rss']:.0f} MiB, tuneserve-full {fu['rss']:.0f} MiB, peft {pe['rss']:.0f} MiB")
    # (name, value, target, met when value >= target (True) or <= target (False))
    ratios = [("tuneserve-full / tuneserve-lora s/step", fu["s_per_step"] / lo["s_per_step"], 2.0, True),
              ("peft / tuneserve-lora s/step", pe["s_per_step"] / lo["s_per_step"], 3.0, True),
              ("tuneserve-lora / peft peak RSS", lo["rss"] / pe["rss"], 0.6, False)]
    out = {}
    for name, v, target, at_least in ratios:
        met = v >= target if at_least else v <= target
        print(f"ratio {name}: {v:.2f}x (target {'>=' if at_least else '<='} {target:g}: "
              f"{'met' if met else 'NOT met'})")
        out[name] = {"value": v, "target": f"{'>=' if at_least else '<='} {target:g}", "met": met}
    json.dump({"runs": runs, "median": med, "ratios": out, "steps": a.steps, "rounds": a.rounds,
               "model": a.model, "data": a.data}, open(f"{a.out}/lora-ab.json", "w"), indent=1)


def main():
    ap = argparse.ArgumentParser()
    for flag in ("--bin", "--python", "--ref", "--model", "--data", "--out"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--mode", choices=sorted(SIDES), default="recipe")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    sys.path.insert(0, a.ref)
    from cpu_guard import Guard

    runs = run_all(a, Guard)
    (report_lora if a.mode == "lora" else report_recipe)(a, runs)


if __name__ == "__main__":
    main()
