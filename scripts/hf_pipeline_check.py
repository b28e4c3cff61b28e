"""Checks that a model folder tuneserve exported batches in Hugging Face
Transformers' `pipeline("text-classification")` and scores as tuneserve does.

Classifies texts of very different lengths (one past the model's positions,
so truncation too) with `batch_size` > 1, then compares every class's
probability, and the raw logits, with tuneserve's answers for the same
texts: from the CLI (`tuneserve classify --model DIR`, the default) or from a
running service's `/classify` (`--url`). Exits non-zero on any difference
over `--tolerance` (default 1e-4).

Needs torch and transformers (not a CI dependency: run it by hand):

    python scripts/hf_pipeline_check.py --model data/models/<id>
    python scripts/hf_pipeline_check.py --model DIR --tuneserve target/release/tuneserve
    python scripts/hf_pipeline_check.py --model DIR --url http://127.0.0.1:8080 \\
        --model-id <id> [--api-key KEY]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import urllib.request

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import transformers  # noqa: E402

TEXTS = [
    "ok",
    "I love this, it is great",
    "the meeting moved to noon and nobody told me, so I waited outside for an hour",
    "worst day ever",
    "@user thanks for the follow! see you at the show tonight :)",
    " ".join(["this sentence keeps going and going"] * 40),  # past 128 positions: truncated
    "meh.",
    "Not sure what to think about the new update; some things are better, others are worse.",
]


def tuneserve_cli(binary, model_dir, texts, labels):
    """tuneserve's answers from `tuneserve classify` (one JSON object a line)."""
    out = subprocess.run(
        [binary, "--log", "warn", "classify", "--model", model_dir, *texts],
        check=True, capture_output=True, text=True,
    ).stdout
    answers = [json.loads(line) for line in out.splitlines() if line.strip()]
    for a in answers:
        a["logits"] = dict(zip(labels, a["logits"]))  # by label, as /classify gives them
    return answers


def tuneserve_http(url, model_id, api_key, texts):
    """tuneserve's answers from a running service's `/classify` (logits too)."""
    body = {"inputs": texts, "raw_scores": False}
    if model_id:
        body["model"] = model_id
    headers = {"content-type": "application/json"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"

    def post(payload):
        request = urllib.request.Request(
            url.rstrip("/") + "/classify", json.dumps(payload).encode(), headers
        )
        with urllib.request.urlopen(request) as response:
            return json.load(response)["predictions"]

    predictions = post(body)
    logits = post({**body, "raw_scores": True})
    for p, raw in zip(predictions, logits):
        p["logits"] = raw["scores"]  # by label
    return predictions


def worst_difference(hf_scores, hf_logits, ours, labels):
    """The largest |difference| over every text's probabilities and logits."""
    worst = 0.0
    for probs, logits, mine in zip(hf_scores, hf_logits, ours):
        by_label = {d["label"]: d["score"] for d in probs}
        raw = {d["label"]: d["score"] for d in logits}
        for label in labels:
            worst = max(worst, abs(by_label[label] - mine["scores"][label]))
            worst = max(worst, abs(raw[label] - mine["logits"][label]))
    return worst


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model folder exported by tuneserve")
    parser.add_argument("--tuneserve", help="tuneserve binary (default: on PATH, else target/release)")
    parser.add_argument("--url", help="a running service instead of the CLI")
    parser.add_argument("--model-id", help="the model's id in the service (default: latest)")
    parser.add_argument("--api-key")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()

    classifier = transformers.pipeline("text-classification", model=args.model, device="cpu")
    labels = [classifier.model.config.id2label[i] for i in range(classifier.model.config.num_labels)]
    call = {"batch_size": args.batch_size, "top_k": None, "truncation": True}
    hf_scores = classifier(TEXTS, **call)
    hf_logits = classifier(TEXTS, function_to_apply="none", **call)

    if args.url:
        ours = tuneserve_http(args.url, args.model_id, args.api_key, TEXTS)
        source = f"{args.url}/classify"
    else:
        binary = args.tuneserve or shutil.which("tuneserve") or "target/release/tuneserve"
        ours = tuneserve_cli(binary, args.model, TEXTS, labels)
        source = f"{binary} classify"

    worst = worst_difference(hf_scores, hf_logits, ours, labels)
    same_labels = all(
        max(p, key=lambda d: d["score"])["label"] == mine["label"] for p, mine in zip(hf_scores, ours)
    )
    print(json.dumps({
        "transformers": transformers.__version__,
        "texts": len(TEXTS),
        "batch_size": args.batch_size,
        "tuneserve": source,
        "max_abs_difference": worst,
        "same_labels": same_labels,
    }))
    if worst > args.tolerance or not same_labels:
        sys.exit(f"tuneserve and the HF pipeline differ by {worst:.3g} (tolerance {args.tolerance})")


if __name__ == "__main__":
    main()
