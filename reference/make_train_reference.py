"""Per-step training reference for a GPT-2 classifier: PyTorch, Trainer semantics, fixed data order.

Mirrors HF Trainer maths (AdamW with decay off for biases and LayerNorm weights, linear schedule with
warmup, grad-norm clipping, gradient accumulation as the mean of micro-batch losses) in a plain loop so
the data order is the file order (no shuffle) and dropout is 0. Writes train_reference.json.
"""
import argparse, json, os
os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
import torch
from transformers import GPT2ForSequenceClassification, PreTrainedTokenizerFast

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--train", required=True)
p.add_argument("--texts", required=True, help="texts to score with the trained weights")
p.add_argument("--rows", type=int, default=64)
p.add_argument("--batch", type=int, default=4)
p.add_argument("--grad-accum", type=int, default=2)
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--weight-decay", type=float, default=0.01)
p.add_argument("--warmup-steps", type=int, default=3)
p.add_argument("--max-grad-norm", type=float, default=1.0)
p.add_argument("--max-length", type=int, default=128)
p.add_argument("--out", required=True)
a = p.parse_args()
torch.set_num_threads(2)
torch.use_deterministic_algorithms(True)

tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(a.model, "tokenizer.json"), eos_token="<|endoftext|>", pad_token="<|endoftext|>")
tok.pad_token = tok.eos_token
tok.padding_side = "right"
model = GPT2ForSequenceClassification.from_pretrained(
    a.model, attn_pdrop=0.0, embd_pdrop=0.0, resid_pdrop=0.0, attn_implementation="eager")
model.config.pad_token_id = tok.pad_token_id

rows = [json.loads(l) for l in open(a.train)][: a.rows]
micro = [rows[i:i + a.batch] for i in range(0, len(rows), a.batch)]
steps_per_epoch = len(micro) // a.grad_accum
total = steps_per_epoch * a.epochs

no_decay = [n for n, _ in model.named_parameters() if n.endswith(".bias") or ".ln_" in n or n.startswith("transformer.ln_f")]
groups = [
    {"params": [p_ for n, p_ in model.named_parameters() if n not in no_decay], "weight_decay": a.weight_decay},
    {"params": [p_ for n, p_ in model.named_parameters() if n in no_decay], "weight_decay": 0.0},
]
opt = torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
def lr_lambda(s):
    if s < a.warmup_steps:
        return s / max(1, a.warmup_steps)
    return max(0.0, (total - s) / max(1, total - a.warmup_steps))
sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)

log = []
model.train()
step = 0
for epoch in range(a.epochs):
    for s in range(steps_per_epoch):
        opt.zero_grad()
        losses = []
        for m in micro[s * a.grad_accum:(s + 1) * a.grad_accum]:
            enc = tok([r["text"] for r in m], padding="longest", truncation=True, max_length=a.max_length, return_tensors="pt")
            out = model(**enc, labels=torch.tensor([r["label"] for r in m]))
            (out.loss / a.grad_accum).backward()
            losses.append(out.loss.item())
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), a.max_grad_norm).item()
        lr = sched.get_last_lr()[0]
        opt.step(); sched.step(); step += 1
        log.append({"step": step, "epoch": epoch, "loss": sum(losses) / len(losses), "grad_norm": gn, "learning_rate": lr})

model.eval()
texts = [json.loads(l)["text"] for l in open(a.texts)]
texts = [t for t in texts if tok(t)["input_ids"]]
with torch.no_grad():
    enc = tok(texts, padding="longest", truncation=True, max_length=a.max_length, return_tensors="pt")
    logits = model(**enc).logits.tolist()
json.dump({
    "what": "per-optimizer-step loss (mean of micro-batch mean cross-entropies), pre-clip global grad norm, and the learning rate used at that step",
    "model": "the classifier in this folder, dropout disabled (attn_pdrop = embd_pdrop = resid_pdrop = 0)",
    "data": f"the first {a.rows} rows of train.jsonl (tests/fixtures/tweets/), in file order, no shuffle",
    "hyperparameters": {"batch_size": a.batch, "gradient_accumulation_steps": a.grad_accum, "epochs": a.epochs,
                        "learning_rate": a.lr, "weight_decay": a.weight_decay, "weight_decay_excludes": "biases and LayerNorm weights (ln_1, ln_2, ln_f)",
                        "warmup_steps": a.warmup_steps, "lr_scheduler": "linear", "max_grad_norm": a.max_grad_norm,
                        "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_epsilon": 1e-8, "max_length": a.max_length, "padding": "longest (right, 50256)"},
    "torch": torch.__version__, "transformers": __import__("transformers").__version__,
    "steps": log,
    "after_training": {"texts": texts, "logits": logits},
}, open(a.out, "w"), indent=1)
print(f"{total} steps; first losses", [round(x["loss"], 5) for x in log[:5]], "last", round(log[-1]["loss"], 5))
