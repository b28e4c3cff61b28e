"""Cross-check of make_lora_reference.py's plain training loop against HF Trainer itself.

usage (repository root):  reference/.venv/bin/python reference/check_lora_with_trainer.py \
    [--fixture tests/fixtures/gpt2-tiny-lora] [--base tests/fixtures/gpt2-tiny-parity] [--train tests/fixtures/tweets/train.jsonl]

Loads train/initial with PeftModel.from_pretrained(is_trainable=True) on the dropout-free base and trains it with
transformers.Trainer (train_sampling_strategy="sequential", batch 2, grad accumulation 3, 3 epochs, AdamW torch,
lr 1e-3, wd 0.01, linear schedule with 3 warmup steps, clip 1.0, logging every step), with the 5.24 gradient-accumulation
quirk switched off (model_accepts_loss_kwargs = False, so Trainer divides each micro-batch loss by 3 as the reference
does). Compares the logged per-step loss and grad_norm with train/train_reference.json and the trained model's
logits with after_training; exits 1 when any differs by more than --tol (default 1e-5).
Tested with PEFT 0.21.2, transformers 5.24.0, torch 2.15.0.
"""
import argparse, json, os, sys, tempfile
os.environ.setdefault("HF_HUB_OFFLINE", "1"); os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
import torch
from peft import PeftModel
from transformers import (DataCollatorWithPadding, GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast,
                          Trainer, TrainerCallback, TrainingArguments)

ap = argparse.ArgumentParser()
ap.add_argument("--fixture", default="tests/fixtures/gpt2-tiny-lora")
ap.add_argument("--base", default="tests/fixtures/gpt2-tiny-parity")
ap.add_argument("--train", default="tests/fixtures/tweets/train.jsonl")
ap.add_argument("--tol", type=float, default=1e-5)
a = ap.parse_args()
torch.set_num_threads(2)
ref = json.load(open(os.path.join(a.fixture, "train", "train_reference.json")))
h = ref["hyperparameters"]

tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(a.base, "tokenizer.json"), eos_token="<|endoftext|>", pad_token="<|endoftext|>")
tok.padding_side = "right"
cfg = GPT2Config.from_pretrained(a.base)
cfg.attn_pdrop = cfg.embd_pdrop = cfg.resid_pdrop = 0.0
base = GPT2ForSequenceClassification.from_pretrained(a.base, config=cfg, attn_implementation="eager")
model = PeftModel.from_pretrained(base, os.path.join(a.fixture, "train", "initial"), is_trainable=True)
n_rows = int(ref["data"].split("first ")[1].split()[0])
rows = [json.loads(l) for l in open(a.train)][:n_rows]
ds = [{**tok(r["text"], truncation=True, max_length=h["max_length"]), "labels": r["label"]} for r in rows]


class Log(TrainerCallback):
    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            self.logs.append({"step": state.global_step, **logs})


log = Log()
with tempfile.TemporaryDirectory() as tmp:
    args = TrainingArguments(
        output_dir=tmp, per_device_train_batch_size=h["batch_size"], gradient_accumulation_steps=h["gradient_accumulation_steps"],
        num_train_epochs=h["epochs"], learning_rate=h["learning_rate"], weight_decay=h["weight_decay"],
        warmup_steps=h["warmup_steps"], lr_scheduler_type="linear", max_grad_norm=h["max_grad_norm"],
        adam_beta1=h["adam_beta1"], adam_beta2=h["adam_beta2"], adam_epsilon=h["adam_epsilon"], optim="adamw_torch",
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, train_sampling_strategy="sequential",
        dataloader_drop_last=False, disable_tqdm=True, remove_unused_columns=False)
    tr = Trainer(model=model, args=args, train_dataset=ds, data_collator=DataCollatorWithPadding(tok), callbacks=[log])
    tr.model_accepts_loss_kwargs = False  # undo the 5.24 GA quirk: divide each micro-batch loss by G
    tr.train()

ok = True
worst = {"loss": 0.0, "grad_norm": 0.0}
for r, t in zip(ref["steps"], log.logs):
    for k in worst:
        worst[k] = max(worst[k], abs(r[k] - t[k]))
print(f"{len(log.logs)} Trainer steps vs {len(ref['steps'])} reference steps; max |Δ loss| = {worst['loss']:.3g}, "
      f"max |Δ grad_norm| = {worst['grad_norm']:.3g}")
print("Trainer's first steps:", [(t["step"], round(t["loss"], 6), round(t["grad_norm"], 6), t["learning_rate"]) for t in log.logs[:3]])
ok = len(log.logs) == len(ref["steps"]) and max(worst.values()) <= a.tol
model.eval()
with torch.no_grad():
    enc = tok(ref["after_training"]["texts"], padding="longest", truncation=True, max_length=h["max_length"], return_tensors="pt")
    lg = model(**enc).logits
d = (lg - torch.tensor(ref["after_training"]["logits"])).abs().max().item()
print(f"after_training logits: max |Δ| = {d:.3g}")
ok = ok and d <= a.tol
sys.exit(0 if ok else 1)
