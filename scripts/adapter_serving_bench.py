"""Many LoRA adapters served from one base: memory, throughput, first-request latency.

    python scripts/adapter_serving_bench.py --bin target/release/tuneserve \
        --base target/bench-ab/models/gpt2 --counts 1,100,1000 --out target/bench-ab/adapters

Writes COUNT adapters in PEFT's layout (r 8 on c_attn, alpha 16, a 3-label head;
random A, B and head, every adapter different) beside a copy-free link to BASE under
a model folder, starts `tuneserve serve --model-dir` on it, and measures:

- the server's RSS (VmRSS, MiB) with no model loaded and after the first request to
  1, 100, ... adapters (each adapter loads on its first request; `/health` counts them);
- the latency of those first requests (load + answer), p50 and p90, and of later
  requests to adapters already loaded;
- `/classify` throughput (texts/s) with CONCURRENCY clients, one tweet a request:
  requests spread evenly over the first 100 adapters, against all of them sent to one
  adapter and to the base as a plain model; the three interleaved ROUNDS times on the
  same server.

Needs numpy and safetensors (the reference's environment: reference/README.md). Prints
each figure and the ratios, and writes OUT/adapter-serving.json.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
from safetensors.numpy import save_file


def write_adapters(base, models, count, seed=0):
    """COUNT adapters under models/adapters/a{i}, each naming BASE as its base."""
    cfg = json.load(open(os.path.join(base, "config.json")))
    n_layer, width = cfg["n_layer"], cfg["n_embd"]
    rng = np.random.default_rng(seed)
    a = rng.uniform(-0.05, 0.05, (n_layer, 8, width)).astype(np.float32)
    b = rng.normal(0, 0.02, (n_layer, 3 * width, 8)).astype(np.float32)
    head = rng.normal(0, 0.02, (3, width)).astype(np.float32)
    config = {
        "peft_type": "LORA", "task_type": "SEQ_CLS", "base_model_name_or_path": os.path.abspath(base),
        "r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": ["c_attn"],
        "fan_in_fan_out": True, "use_rslora": False, "modules_to_save": ["classifier", "score"],
        "bias": "none", "use_dora": False, "inference_mode": True,
    }
    dirs = []
    for i in range(count):
        d = os.path.join(models, "adapters", f"a{i}")
        dirs.append(f"adapters/a{i}")
        if os.path.exists(os.path.join(d, "adapter_model.safetensors")):
            continue
        os.makedirs(d, exist_ok=True)
        f = np.float32(1 + i / count)
        tensors = {"base_model.model.score.weight": head * f}
        for layer in range(n_layer):
            key = f"base_model.model.transformer.h.{layer}.attn.c_attn"
            tensors[f"{key}.lora_A.weight"] = a[layer] * f
            tensors[f"{key}.lora_B.weight"] = b[layer] / f
        save_file(tensors, os.path.join(d, "adapter_model.safetensors"), metadata={"format": "pt"})
        json.dump(config, open(os.path.join(d, "adapter_config.json"), "w"))
    return dirs


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def post(port, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/classify", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as r:
        answer = json.load(r)
    return time.perf_counter() - started, answer


def health(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
        return json.load(r)


def throughput(port, models, texts, concurrency, requests):
    """texts/s of REQUESTS one-text requests, request k to models[k % len(models)]."""
    jobs = [(models[k % len(models)], texts[k % len(texts)]) for k in range(requests)]
    lock, errors = threading.Lock(), []

    def client():
        while True:
            with lock:
                if not jobs:
                    return
                model, text = jobs.pop()
            try:
                post(port, {"inputs": text, "model": model})
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed: {errors[0]}")
    return requests / (time.perf_counter() - started)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="target/release/tuneserve")
    ap.add_argument("--base", required=True, help="a classifier folder (tuneserve init-model --preset gpt2)")
    ap.add_argument("--counts", default="1,100,1000", help="adapters loaded at each RSS reading")
    ap.add_argument("--texts", default="tests/fixtures/tweets/test.jsonl")
    ap.add_argument("--port", type=int, default=18431)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--requests", type=int, default=400, help="requests per throughput run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default="target/bench-ab/adapters")
    a = ap.parse_args()
    counts = [int(c) for c in a.counts.split(",")]
    models = os.path.join(a.out, "models")
    os.makedirs(models, exist_ok=True)
    if not os.path.exists(os.path.join(models, "base")):
        os.symlink(os.path.abspath(a.base), os.path.join(models, "base"))
    names = write_adapters(a.base, models, max(counts))
    texts = [json.loads(l)["text"] for l in open(a.texts) if l.strip() and json.loads(l)["text"].strip()]
    data = os.path.join(a.out, "data")
    subprocess.run(["rm", "-rf", data], check=True)
    server = subprocess.Popen([a.bin, "serve", "--port", str(a.port), "--data-dir", data, "--model-dir", models,
                               "--adapter-memory-mib", "4096", "--max-loaded-models", "2"],
                              stdout=subprocess.DEVNULL, stderr=open(os.path.join(a.out, "server.log"), "w"))
    try:
        run(a, server.pid, counts, names, texts)
    finally:
        server.terminate()
        server.wait()


def run(a, pid, counts, names, texts):
    for _ in range(600):
        try:
            health(a.port)
            break
        except OSError:
            time.sleep(0.1)
    res = {"rss_mib": {"no model": rss_mib(pid)}, "first_request_s": [], "later_request_s": []}
    loaded = 0
    for count in counts:
        for name in names[loaded:count]:
            took, _ = post(a.port, {"inputs": texts[0], "model": name})
            res["first_request_s"].append(took)
        loaded = count
        h = health(a.port)
        res["rss_mib"][f"{count} adapters"] = rss_mib(pid)
        print(f"{count:>5} adapters loaded ({h.get('loaded_adapters')} per /health, "
              f"{h.get('loaded_adapter_bytes', 0) / 2**20:.0f} MiB of adapters): RSS {rss_mib(pid):.0f} MiB", flush=True)
    for name in names[:min(100, len(names))]:
        res["later_request_s"].append(post(a.port, {"inputs": texts[0], "model": name})[0])
    first, later = res["first_request_s"], res["later_request_s"]
    print(f"first request to an adapter (loads it): p50 {pct(first, .5) * 1e3:.1f} ms, p90 {pct(first, .9) * 1e3:.1f} ms"
          f" over {len(first)}; a loaded adapter: p50 {pct(later, .5) * 1e3:.1f} ms", flush=True)
    spread = names[:min(100, len(names))]
    sides = {"100 adapters": spread, "one adapter": names[:1], "base model": ["base"]}
    tput = {k: [] for k in sides}
    throughput(a.port, ["base"], texts, a.concurrency, 32)  # loads the base as a plain model
    for r in range(a.rounds):
        for side, ms in sides.items():
            tput[side].append(throughput(a.port, ms, texts, a.concurrency, a.requests))
            print(f"round {r + 1} {side:<13}: {tput[side][-1]:.1f} texts/s", flush=True)
    res["throughput_texts_per_s"] = tput
    med = {k: statistics.median(v) for k, v in tput.items()}
    rss = res["rss_mib"]
    n = max(counts)
    print(f"RSS: {n} adapters - 1 adapter = {rss[f'{n} adapters'] - rss[f'{counts[0]} adapters']:.0f} MiB "
          f"(target: 1,000 adapters <= base + 1.5 GB)")
    print(f"throughput, 100 adapters / one model (the base): {med['100 adapters'] / med['base model']:.2f}x "
          f"(target >= 0.7); 100 adapters / one adapter: {med['100 adapters'] / med['one adapter']:.2f}x")
    json.dump(res, open(os.path.join(a.out, "adapter-serving.json"), "w"), indent=1)


if __name__ == "__main__":
    sys.exit(main())
