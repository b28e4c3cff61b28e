"""Build a randomly initialised GPT-2 (base, hub "gpt2" layout) + a GPT2ForSequenceClassification from it.

usage: make_model.py --preset {tiny,small,gpt2} --seed N --num-labels 3 --out DIR
                     [--tokenizer assets/gpt2-tokenizer]

DIR/base/       config.json (architectures=[GPT2LMHeadModel]), model.safetensors with the hub's
                UNPREFIXED names (wte.weight, h.0.attn.c_attn.weight, ln_f.weight, ...; no lm_head:
                it is tied to wte), tokenizer files.
DIR/classifier/ GPT2ForSequenceClassification.from_pretrained(DIR/base, num_labels, pad_token_id=50256)
                with the score head drawn after torch.manual_seed(seed + 1); save_pretrained (safetensors):
                names transformer.wte.weight, transformer.h.0..., score.weight.
"""
import argparse
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel  # noqa: E402

PRESETS = {
    "tiny": dict(n_layer=2, n_head=2, n_embd=64, n_positions=128),
    "small": dict(n_layer=4, n_head=4, n_embd=256, n_positions=256),
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, n_positions=1024),
}
EOS = 50256
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"]
DEFAULT_TOK = Path(__file__).resolve().parent.parent / "assets" / "gpt2-tokenizer"


def keys(path):
    with safe_open(str(path), "pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def show(title, ks):
    print(f"{title}: {len(ks)} tensors")
    for k in sorted(ks):
        print(f"  {k} {list(ks[k])}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", choices=PRESETS, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-labels", type=int, default=3)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokenizer", default=str(DEFAULT_TOK))
    ap.add_argument("--n-positions", type=int, default=None, help="override the preset's n_positions")
    ap.add_argument("--quiet", action="store_true", help="do not list every tensor name")
    a = ap.parse_args()
    out = Path(a.out)
    base_dir, cls_dir = out / "base", out / "classifier"

    shape = dict(PRESETS[a.preset])
    if a.n_positions:
        shape["n_positions"] = a.n_positions
    cfg = GPT2Config(vocab_size=50257, bos_token_id=EOS, eos_token_id=EOS, **shape)
    torch.manual_seed(a.seed)
    lm = GPT2LMHeadModel(cfg).eval()

    # hub layout: the bare GPT2Model state dict (unprefixed); config says GPT2LMHeadModel like the hub.
    lm.transformer.save_pretrained(base_dir)
    cfg.architectures = ["GPT2LMHeadModel"]
    cfg.save_pretrained(base_dir)
    with tempfile.TemporaryDirectory() as td:  # for the record: what GPT2LMHeadModel itself writes
        lm.save_pretrained(td)
        lm_keys = keys(Path(td) / "model.safetensors")

    torch.manual_seed(a.seed + 1)
    labels = ["negative", "neutral", "positive"] if a.num_labels == 3 else [f"LABEL_{i}" for i in range(a.num_labels)]
    clf = GPT2ForSequenceClassification.from_pretrained(
        base_dir, num_labels=a.num_labels, pad_token_id=EOS,
        id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    for k, v in lm.transformer.state_dict().items():  # body must be bit-identical to the base
        assert torch.equal(v, clf.transformer.state_dict()[k]), k
    clf.save_pretrained(cls_dir)

    for d in (base_dir, cls_dir):
        for f in TOKENIZER_FILES:  # the repository's assets hold tokenizer.json alone
            if (Path(a.tokenizer) / f).exists():
                shutil.copyfile(Path(a.tokenizer) / f, d / f)

    bk, ck = keys(base_dir / "model.safetensors"), keys(cls_dir / "model.safetensors")
    nparam = sum(v.numel() for v in clf.parameters())
    print(f"preset={a.preset} seed={a.seed} params(classifier)={nparam} score.weight[0,:4]={clf.score.weight[0, :4].tolist()}")
    print(f"GPT2LMHeadModel.save_pretrained writes {len(lm_keys)} tensors, e.g. {sorted(lm_keys)[:3]} "
          f"(lm_head.weight present: {'lm_head.weight' in lm_keys})")
    if a.quiet:
        print(f"base: {len(bk)} tensors, e.g. {sorted(bk)[:4]}; classifier: {len(ck)} tensors, e.g. {sorted(ck)[:4]}")
    else:
        show(f"{base_dir}/model.safetensors", bk)
        show(f"{cls_dir}/model.safetensors", ck)


if __name__ == "__main__":
    main()
