"""Logits of a GPT-2 classifier + a LoRA adapter in Hugging Face PEFT's format, per text; optionally compare.

usage: peft_logits.py --base DIR --adapter DIR --texts F.jsonl --out O.json [--num-labels N]
                      [--compare O2.json [--tol 1e-4]] [--batch 64] [--max-length N] [--threads 2]

Loads PeftModel.from_pretrained(GPT2ForSequenceClassification.from_pretrained(base, attn_implementation="eager"),
adapter) exactly as a PEFT user would (the adapter's base_model_name_or_path is ignored: --base is used).
Tested with PEFT 0.21.2, transformers 5.24.0, torch 2.15.0.

--num-labels: the classifier's label count. Default: the rows of the adapter's `base_model.model.score.weight`
(the head PEFT saves as modules_to_save), else the base's. When it differs from the base's config, the base
is loaded with ignore_mismatched_sizes=True (a throw-away new head) and the adapter's head replaces it.
PEFT stores no label names in the adapter; the "labels" written are the base config's or LABEL_i.

Tokenizer = base/tokenizer.json (GPT-2 byte-level BPE, no BOS/EOS added), pad = eos = 50256, right padding,
padding longest per batch, truncation to --max-length (default: the base's n_positions), eval mode.
The empty text (0 tokens) is left out (its row is fully masked; HF's value for it is undefined).

Writes {"items": [{"text", "input_ids", "pool_index", "logits", "argmax"}, ...], ...}, the format of
tests/fixtures/gpt2-tiny-lora/*/expected_logits.json.

--compare O2.json: max |Δ logits| against another file: one with "items" (this format or hf_logits.py's),
or a train_reference.json ("after_training": {"texts", "logits"}). Items are matched by text; prints the max
and per-text worst, exits 1 when over --tol (default 1e-4) or when a text or its argmax is missing/mismatched.
"""
import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
import peft  # noqa: E402
from peft import PeftModel  # noqa: E402
from safetensors import safe_open  # noqa: E402
from transformers import GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast  # noqa: E402


def adapter_head_rows(adapter):
    f = os.path.join(adapter, "adapter_model.safetensors")
    if not os.path.exists(f):
        return None
    with safe_open(f, "pt") as s:
        for k in s.keys():
            if k.endswith("score.weight") or k.endswith("score.modules_to_save.default.weight"):
                return s.get_slice(k).get_shape()[0]
    return None


def load(base, adapter, num_labels=None):
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(base, "tokenizer.json"),
                                  eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    tok.truncation_side = "right"
    cfg = GPT2Config.from_pretrained(base)
    n = num_labels or adapter_head_rows(adapter) or cfg.num_labels
    kw = {}
    if n != cfg.num_labels:
        cfg.id2label = {i: f"LABEL_{i}" for i in range(n)}
        cfg.label2id = {v: k for k, v in cfg.id2label.items()}
        kw["ignore_mismatched_sizes"] = True
    model = GPT2ForSequenceClassification.from_pretrained(base, config=cfg, attn_implementation="eager", **kw)
    model.config.pad_token_id = tok.pad_token_id
    model = PeftModel.from_pretrained(model, adapter).eval()
    assert tok.pad_token_id == 50256, tok.pad_token_id
    return tok, model, n


def pool_index(input_ids, pad_id):
    mask = (input_ids != pad_id).to(torch.int32)
    return (torch.arange(input_ids.shape[-1], dtype=torch.int32) * mask).argmax(-1)


@torch.no_grad()
def classify(tok, model, texts, max_length, batch):
    items = []
    for s in range(0, len(texts), batch):
        chunk = texts[s:s + batch]
        enc = tok(chunk, padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
        logits = model(**enc).logits
        pidx = pool_index(enc["input_ids"], tok.pad_token_id)
        for i, t in enumerate(chunk):
            n = int(enc["attention_mask"][i].sum())
            items.append({"text": t, "input_ids": enc["input_ids"][i, :n].tolist(), "pool_index": int(pidx[i]),
                          "logits": logits[i].tolist(), "argmax": int(logits[i].argmax())})
    return items


def load_logits(path):
    d = json.load(open(path, encoding="utf-8"))
    if "items" in d:
        return {it["text"]: it["logits"] for it in d["items"] if not it.get("hf_undefined")}
    if "after_training" in d:
        return dict(zip(d["after_training"]["texts"], d["after_training"]["logits"]))
    raise SystemExit(f"{path}: neither 'items' nor 'after_training'")


def compare(items, path, tol):
    other = load_logits(path)
    worst, bad = 0.0, []
    for it in items:
        if it["text"] not in other:
            bad.append(f"missing in {path}: {it['text'][:40]!r}")
            continue
        o = other[it["text"]]
        if len(o) != len(it["logits"]):
            bad.append(f"label count {len(it['logits'])} vs {len(o)}: {it['text'][:40]!r}")
            continue
        d = max(abs(x - y) for x, y in zip(it["logits"], o))
        if max(range(len(o)), key=lambda j: o[j]) != it["argmax"] and d > tol:
            bad.append(f"argmax {it['argmax']} vs other's: {it['text'][:40]!r}")
        worst = max(worst, d)
    extra = set(other) - {it["text"] for it in items}
    print(f"compare with {path}: {len(items)} texts, max |Δ logits| = {worst:.3g} (tol {tol:g})"
          + (f"; {len(extra)} texts only in the other file (ignored)" if extra else ""))
    for b in bad:
        print("  " + b)
    return worst <= tol and not bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--texts", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--num-labels", type=int, default=None)
    ap.add_argument("--compare", default=None)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--max-length", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tok, model, n = load(a.base, a.adapter, a.num_labels)
    max_length = a.max_length or model.config.n_positions
    texts = [json.loads(l)["text"] for l in open(a.texts, encoding="utf-8") if l.strip()]
    texts = [t for t in texts if tok(t)["input_ids"]]
    items = classify(tok, model, texts, max_length, a.batch)
    pc = model.peft_config["default"]
    out = {"base": a.base, "adapter": a.adapter, "num_labels": n,
           "labels": {str(k): v for k, v in model.config.id2label.items()},
           "lora": {"r": pc.r, "lora_alpha": pc.lora_alpha, "use_rslora": pc.use_rslora,
                    "target_modules": sorted(pc.target_modules)},
           "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
           "max_length": max_length, "batch": a.batch, "padding_side": "right", "pad_token_id": 50256,
           "items": items}
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
    print(f"{len(items)} texts -> {a.out}; {n} labels, r {pc.r}, alpha {pc.lora_alpha}, rslora {pc.use_rslora}")
    if a.compare and not compare(items, a.compare, a.tol):
        sys.exit(1)


if __name__ == "__main__":
    main()
