"""Classify texts with ONNX Runtime, fp32 and dynamic int8: the engine one would serve a GPT-2
classifier with on CPUs instead of tuneserve.

usage: ort_infer.py --model DIR --texts FILE.jsonl --precision {fp32,int8} [--limit 1000]
                    [--batch 32] [--threads 2] [--onnx-dir DIR/onnx] [--out OUT.json]

DIR: a GPT2ForSequenceClassification folder (Hugging Face layout: config.json, model.safetensors,
tokenizer.json), e.g. make_model.py's DIR/classifier or a model tuneserve exported.

Export (once, cached in --onnx-dir): torch.onnx.export of a wrapper module that passes input_ids
and attention_mask BY KEYWORD with use_cache=False (positionally, the mask would land in
past_key_values), dynamic batch and sequence axes, opset 17. int8: onnxruntime's
quantize_dynamic(weight_type=QInt8), as Hugging Face Optimum does it: weights int8 per tensor,
activations quantized dynamically (uint8) at run time.

Texts: the first --limit non-empty `text` fields of FILE.jsonl, tokenized with DIR/tokenizer.json
(no special tokens, truncated to n_positions), sorted by length (stable) and cut into batches of
--batch, each padded on the right to its longest text with the pad id (50256) - the batches
`tuneserve classify --batch-size N` makes. Timed: the session runs over all batches (session
creation, export and tokenization excluded), after one warm-up batch. Prints one JSON line:
{"engine", "precision", "texts", "batch", "threads", "seconds", "texts_per_s"}; --out also writes
the logits, in input order.
"""
import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402


def read_texts(path, limit):
    texts = []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            text = json.loads(line)
            text = text["text"] if isinstance(text, dict) else text
            if text.strip():
                texts.append(text)
            if len(texts) == limit:
                break
    return texts


def export(model_dir, onnx_dir):
    import torch
    from transformers import GPT2ForSequenceClassification

    fp32 = onnx_dir / "model.onnx"
    if fp32.exists():
        return fp32
    onnx_dir.mkdir(parents=True, exist_ok=True)
    model = GPT2ForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()

    class Wrapper(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits

    ids = torch.full((2, 8), 464, dtype=torch.int64)
    mask = torch.ones((2, 8), dtype=torch.int64)
    tmp = onnx_dir / "model.tmp.onnx"
    torch.onnx.export(
        Wrapper(model), (ids, mask), str(tmp), input_names=["input_ids", "attention_mask"],
        output_names=["logits"], opset_version=17, dynamo=False,
        dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                      "logits": {0: "batch"}})
    tmp.rename(fp32)
    return fp32


def quantized(fp32, onnx_dir):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    int8 = onnx_dir / "model.int8.onnx"
    if not int8.exists():
        quantize_dynamic(str(fp32), str(onnx_dir / "model.int8.tmp.onnx"), weight_type=QuantType.QInt8)
        (onnx_dir / "model.int8.tmp.onnx").rename(int8)
    return int8


def batches(tokenizer_file, texts, batch, max_length, pad_id):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    rows = [e.ids[:max_length] for e in tok.encode_batch(texts, add_special_tokens=False)]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    out = []
    for s in range(0, len(order), batch):
        chunk = order[s:s + batch]
        width = max(len(rows[i]) for i in chunk)
        ids = np.full((len(chunk), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(chunk), width), dtype=np.int64)
        for r, i in enumerate(chunk):
            ids[r, :len(rows[i])] = rows[i]
            mask[r, :len(rows[i])] = 1
        out.append((chunk, ids, mask))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--texts", required=True)
    ap.add_argument("--precision", choices=["fp32", "int8"], default="fp32")
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--onnx-dir", type=Path)
    ap.add_argument("--out")
    args = ap.parse_args()

    import onnxruntime as ort

    config = json.loads((args.model / "config.json").read_text())
    onnx_dir = args.onnx_dir or args.model / "onnx"
    path = export(args.model, onnx_dir)
    if args.precision == "int8":
        path = quantized(path, onnx_dir)
    texts = read_texts(args.texts, args.limit)
    pad_id = config.get("pad_token_id") or 50256
    work = batches(args.model / "tokenizer.json", texts, args.batch, config.get("n_positions", 1024), pad_id)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    sess.run(None, {"input_ids": work[0][1], "attention_mask": work[0][2]})
    logits = [None] * len(texts)
    start = time.perf_counter()
    for chunk, ids, mask in work:
        out = sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        for r, i in enumerate(chunk):
            logits[i] = out[r].tolist()
    seconds = time.perf_counter() - start
    result = {"engine": "onnxruntime " + ort.__version__, "precision": args.precision, "texts": len(texts),
              "batch": args.batch, "threads": args.threads, "seconds": round(seconds, 3),
              "texts_per_s": round(len(texts) / seconds, 1)}
    print(json.dumps(result), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({**result, "logits": logits}))


if __name__ == "__main__":
    main()
