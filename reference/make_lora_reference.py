"""LoRA (Hugging Face PEFT format) fixtures for a GPT-2 classifier: adapters, expected logits, per-step training.

Made with PEFT 0.21.2, transformers 5.24.0, torch 2.15.0 (CPU, fp32). Other PEFT versions may differ in key
names, in the adapter_config.json fields they write, or in the initialisation's random draws.

usage (from the repository root):
  HF_HUB_OFFLINE=1 reference/.venv/bin/python reference/make_lora_reference.py \
      --base tests/fixtures/gpt2-tiny-parity --train tests/fixtures/tweets/train.jsonl \
      --out tests/fixtures/gpt2-tiny-lora

Writes into --out:
  adapter-r8/          LoraConfig(SEQ_CLS, r 8, alpha 16, dropout 0.1, target c_attn); lora_A from PEFT's Kaiming
                       init after torch.manual_seed(7), then (same RNG stream, named_parameters order) every
                       lora_B ~ N(0, 0.05) and score += N(0, 0.05); + expected_logits.json (eval mode).
  adapter-r4-rslora/   base re-headed to 5 labels (score drawn by transformers after torch.manual_seed(3));
                       LoraConfig(SEQ_CLS, r 4, alpha 8, dropout 0, rslora, target c_attn/c_proj/c_fc); A from
                       PEFT's init after torch.manual_seed(11), then lora_B ~ N(0, 0.05), score += N(0, 0.05);
                       + expected_logits.json.
  train/initial/       fresh PEFT adapter (r 8, alpha 16, dropout 0, c_attn; A Kaiming after torch.manual_seed(5),
                       B = 0, score = the base's), saved BEFORE training.
  train/final/         the same adapter after 18 AdamW steps (Trainer maths in a plain loop, see --help).
  train/train_reference.json  per-step loss / pre-clip grad norm / learning rate, and after-training logits.
Cross-check of the training loop against transformers.Trainer itself: reference/check_lora_with_trainer.py.
Every adapter_config.json gets base_model_name_or_path = the base folder relative to the adapter folder
(../../gpt2-tiny-parity for the two adapters, ../../../gpt2-tiny-parity for train/initial and train/final).
"""
import argparse, json, os
os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
import torch
import transformers, peft
from transformers import GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors import safe_open

p = argparse.ArgumentParser()
p.add_argument("--base", required=True)
p.add_argument("--train", required=True)
p.add_argument("--out", required=True)
p.add_argument("--rows", type=int, default=36)
p.add_argument("--batch", type=int, default=2)
p.add_argument("--grad-accum", type=int, default=3)
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--weight-decay", type=float, default=0.01)
p.add_argument("--warmup-steps", type=int, default=3)
p.add_argument("--max-grad-norm", type=float, default=1.0)
p.add_argument("--max-length", type=int, default=128)
a = p.parse_args()
torch.set_num_threads(2)
torch.use_deterministic_algorithms(True)
VERSIONS = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
FIVE = ["very negative", "negative", "neutral", "positive", "very positive"]

tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(a.base, "tokenizer.json"), eos_token="<|endoftext|>", pad_token="<|endoftext|>")
tok.pad_token = tok.eos_token
tok.padding_side = "right"
texts = [json.loads(l)["text"] for l in open(os.path.join(a.base, "texts.jsonl"), encoding="utf-8") if l.strip()]
texts = [t for t in texts if tok(t)["input_ids"]]  # the empty text is undefined in HF (fully masked row)


def rel_base(adapter_dir):
    return os.path.relpath(os.path.abspath(a.base), os.path.abspath(adapter_dir))


def load_base(num_labels=None, no_dropout=False, score_seed=None):
    cfg = GPT2Config.from_pretrained(a.base)
    if no_dropout:
        cfg.attn_pdrop = cfg.embd_pdrop = cfg.resid_pdrop = 0.0
    kw = {}
    if num_labels is not None and num_labels != cfg.num_labels:
        names = FIVE if num_labels == 5 else [f"LABEL_{i}" for i in range(num_labels)]
        cfg.id2label = dict(enumerate(names)); cfg.label2id = {n: i for i, n in enumerate(names)}
        kw["ignore_mismatched_sizes"] = True  # score.weight [3, 64] in the file -> a new [5, 64] head
    if score_seed is not None:
        torch.manual_seed(score_seed)
    m = GPT2ForSequenceClassification.from_pretrained(a.base, config=cfg, attn_implementation="eager", **kw)
    m.config.pad_token_id = tok.pad_token_id
    return m


def pool_index(ids):
    mask = (ids != tok.pad_token_id).to(torch.int32)
    return (torch.arange(ids.shape[-1], dtype=torch.int32) * mask).argmax(-1)


@torch.no_grad()
def score_texts(model):
    model.eval()
    enc = tok(texts, padding="longest", truncation=True, max_length=a.max_length, return_tensors="pt")
    logits = model(**enc).logits
    pidx = pool_index(enc["input_ids"])
    items = []
    for i, t in enumerate(texts):
        n = int(enc["attention_mask"][i].sum())
        items.append({"text": t, "input_ids": enc["input_ids"][i, :n].tolist(), "pool_index": int(pidx[i]),
                      "logits": logits[i].tolist(), "argmax": int(logits[i].argmax())})
    return items


def set_rel_base_and_save(pm, d):
    pm.peft_config["default"].base_model_name_or_path = rel_base(d)
    pm.save_pretrained(d)
    # save_pretrained also writes a boilerplate model card (README.md, ~5 KB, with the cwd-relative base path):
    # not needed to load the adapter, so it is not kept in the fixture
    if os.path.exists(os.path.join(d, "README.md")):
        os.remove(os.path.join(d, "README.md"))
    os.chmod(os.path.join(d, "adapter_model.safetensors"), 0o644)  # safetensors writes it 0600
    # PEFT keeps target_modules as a Python set and writes it in set-iteration order, which changes with
    # PYTHONHASHSEED from run to run; rewrite it sorted (same json.dumps(indent=2, sort_keys=True) as PEFT)
    # so the fixture is byte-for-byte reproducible. PEFT reads it back as a set either way.
    f = os.path.join(d, "adapter_config.json")
    c = json.load(open(f))
    c["target_modules"] = sorted(c["target_modules"])
    open(f, "w").write(json.dumps(c, indent=2, sort_keys=True))


def randomise_b_and_head(pm):
    with torch.no_grad():
        for n, prm in pm.named_parameters():
            if "lora_B" in n:
                prm.normal_(0.0, 0.05)
        for n, prm in pm.named_parameters():
            if n.endswith("score.modules_to_save.default.weight"):
                prm.add_(torch.randn_like(prm) * 0.05)


def describe(d):
    with safe_open(os.path.join(d, "adapter_model.safetensors"), "pt") as f:
        return {k: list(f.get_slice(k).get_shape()) for k in sorted(f.keys())}


def max_diff(x, y):
    return max(abs(u - v) for p_, q_ in zip(x, y) for u, v in zip(p_["logits"], q_["logits"]))


def check_reload(d, items, num_labels=None, what=""):
    base = load_base(num_labels=num_labels)
    pm = PeftModel.from_pretrained(base, d).eval()
    diff = max_diff(score_texts(pm), items)
    print(f"  reload {d}{what}: max |Δ logits| = {diff:.3g}")
    assert diff <= 1e-6, diff
    return diff


def write_expected(d, items, cfg, num_labels, labels, diff):
    json.dump({"what": "logits of the PEFT model (base + this adapter), eval mode, per text of the base's texts.jsonl "
                       "(the empty text left out); right padding with 50256, padding longest, truncation 128, eager attention",
               "base": rel_base(d), "adapter": ".", "num_labels": num_labels, "labels": labels,
               "lora": {"r": cfg.r, "lora_alpha": cfg.lora_alpha, "use_rslora": cfg.use_rslora,
                        "scaling": cfg.lora_alpha / (cfg.r ** 0.5 if cfg.use_rslora else cfg.r),
                        "target_modules": sorted(cfg.target_modules)},
               **VERSIONS, "max_abs_diff_reloaded": diff, "items": items},
              open(os.path.join(d, "expected_logits.json"), "w", encoding="utf-8"), ensure_ascii=False, indent=1)


report = {"versions": VERSIONS}

# ---------------------------------------------------------------- adapter-r8
d = os.path.join(a.out, "adapter-r8")
base = load_base()
torch.manual_seed(7)
cfg = LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["c_attn"],
                 fan_in_fan_out=True, bias="none")
pm = get_peft_model(base, cfg)
report["r8_trainable"] = {n: list(p_.shape) for n, p_ in pm.named_parameters() if p_.requires_grad}
randomise_b_and_head(pm)
items = score_texts(pm)
base_items = score_texts(load_base())
print("adapter-r8: max |Δ| vs base logits", max_diff(items, base_items))
set_rel_base_and_save(pm, d)
diff = check_reload(d, items)
write_expected(d, items, cfg, 3, base.config.id2label, diff)
report["r8_keys"] = describe(d)

# ---------------------------------------------------------------- adapter-r4-rslora
d = os.path.join(a.out, "adapter-r4-rslora")
base = load_base(num_labels=5, score_seed=3)
assert base.score.weight.shape == (5, 64)
torch.manual_seed(11)
cfg = LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, lora_dropout=0.0, use_rslora=True,
                 target_modules=["c_attn", "c_proj", "c_fc"], fan_in_fan_out=True)
pm = get_peft_model(base, cfg)
report["r4_trainable"] = {n: list(p_.shape) for n, p_ in pm.named_parameters() if p_.requires_grad}
randomise_b_and_head(pm)
items = score_texts(pm)
set_rel_base_and_save(pm, d)
report["r4_files_written_by_save_pretrained"] = sorted(os.listdir(d)) + ["README.md (removed)"]
diff = check_reload(d, items, num_labels=5)
write_expected(d, items, cfg, 5, {str(k): v for k, v in base.config.id2label.items()}, diff)
report["r4_keys"] = describe(d)

# ---------------------------------------------------------------- train
tdir = os.path.join(a.out, "train")
model = load_base(no_dropout=True)
torch.manual_seed(5)
cfg = LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["c_attn"],
                 fan_in_fan_out=True, bias="none")
model = get_peft_model(model, cfg)
set_rel_base_and_save(model, os.path.join(tdir, "initial"))
report["train_keys"] = describe(os.path.join(tdir, "initial"))

rows = [json.loads(l) for l in open(a.train)][: a.rows]
micro = [rows[i:i + a.batch] for i in range(0, len(rows), a.batch)]
steps_per_epoch = len(micro) // a.grad_accum
total = steps_per_epoch * a.epochs
trainable = [(n, p_) for n, p_ in model.named_parameters() if p_.requires_grad]
# HF Trainer: decay off for biases and LayerNorm weights only; here no trainable param is either
no_decay = [n for n, _ in trainable if n.endswith(".bias") or ".ln_" in n or "ln_f" in n]
groups = [
    {"params": [p_ for n, p_ in trainable if n not in no_decay], "weight_decay": a.weight_decay},
    {"params": [p_ for n, p_ in trainable if n in no_decay], "weight_decay": 0.0},
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
        gn = torch.nn.utils.clip_grad_norm_([p_ for _, p_ in trainable], a.max_grad_norm).item()
        lr = sched.get_last_lr()[0]
        opt.step(); sched.step(); step += 1
        log.append({"step": step, "epoch": epoch, "loss": sum(losses) / len(losses), "grad_norm": gn, "learning_rate": lr})

items = score_texts(model)
set_rel_base_and_save(model, os.path.join(tdir, "final"))
diff = check_reload(os.path.join(tdir, "final"), items, what=" (vs after_training)")
init_items = score_texts(PeftModel.from_pretrained(load_base(), os.path.join(tdir, "initial")))
diff_init = max_diff(init_items, score_texts(load_base()))
print(f"  train/initial vs base logits: max |Δ| = {diff_init:.3g} (B = 0, so the adapter is a no-op)")
json.dump({
    "what": "per-optimizer-step loss (mean of micro-batch mean cross-entropies), pre-clip global grad norm over the "
            "trainable (LoRA + score) parameters, and the learning rate used at that step",
    "model": "base = tests/fixtures/gpt2-tiny-parity with attn_pdrop = embd_pdrop = resid_pdrop = 0; adapter = train/initial "
             "(PEFT LoRA r 8, alpha 16, lora_dropout 0, target c_attn, score trained as modules_to_save); base weights frozen",
    "data": f"the first {a.rows} rows of tests/fixtures/tweets/train.jsonl, in file order, no shuffle",
    "lora": {"r": 8, "lora_alpha": 16, "scaling": 2.0, "lora_dropout": 0.0, "target_modules": ["c_attn"],
             "init": "lora_A kaiming_uniform(a=sqrt(5)) after torch.manual_seed(5); lora_B zeros; score = base's"},
    "trainable_parameters": {n: list(p_.shape) for n, p_ in trainable},
    "hyperparameters": {"batch_size": a.batch, "gradient_accumulation_steps": a.grad_accum, "epochs": a.epochs,
                        "learning_rate": a.lr, "weight_decay": a.weight_decay,
                        "weight_decay_excludes": "biases and LayerNorm weights (none are trainable here: lora_A, lora_B and score all decay)",
                        "warmup_steps": a.warmup_steps, "lr_scheduler": "linear", "max_grad_norm": a.max_grad_norm,
                        "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_epsilon": 1e-8, "max_length": a.max_length,
                        "padding": "longest (right, 50256)"},
    **VERSIONS,
    "steps": log,
    "after_training": {"texts": texts, "logits": [it["logits"] for it in items], "max_abs_diff_reloaded_final": diff},
}, open(os.path.join(tdir, "train_reference.json"), "w", encoding="utf-8"), ensure_ascii=False, indent=1)
report["train_trainable"] = {n: list(p_.shape) for n, p_ in trainable}
print(f"{total} steps; first losses", [round(x["loss"], 5) for x in log[:5]], "last", round(log[-1]["loss"], 5))
print(json.dumps(report, indent=1))
