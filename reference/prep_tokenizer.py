"""Build HF GPT-2 tokenizer files from OpenAI's encoder.json + vocab.bpe and verify them.

usage: prep_tokenizer.py --dir DIR_WITH_ENCODER_JSON_AND_VOCAB_BPE [--check-jsonl FILE ...]

DIR must contain encoder.json and vocab.bpe. Writes vocab.json, merges.txt (byte copies) and,
via GPT2TokenizerFast.save_pretrained, tokenizer.json + tokenizer_config.json.

Note (transformers 5.x): GPT2TokenizerFast(vocab_file=..., merges_file=...) silently builds an
EMPTY tokenizer (len 1, encodes "Hello world" to []), so we load with from_pretrained(DIR),
which reads vocab.json/merges.txt.  Verification: an independent pure-Python byte-level BPE
(OpenAI's algorithm, written here) must agree with tokenizer.json on every text given.
"""
import argparse
import json
import shutil
from functools import lru_cache
from pathlib import Path

import regex

PAT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


class RefBPE:
    """Plain GPT-2 byte-level BPE, no special-token handling."""

    def __init__(self, encoder, merges):
        self.encoder = encoder
        self.ranks = {tuple(m.split(" ")): i for i, m in enumerate(merges)}
        self.b2u = bytes_to_unicode()
        self.bpe = lru_cache(maxsize=None)(self._bpe)

    def _bpe(self, token):
        word = list(token)
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            new, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    new.append(word[i] + word[i + 1])
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = new
        return word

    def encode(self, text):
        ids = []
        for piece in PAT.findall(text):
            mapped = "".join(self.b2u[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(mapped))
        return ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--check-jsonl", nargs="*", default=[])
    a = ap.parse_args()
    d = Path(a.dir)
    shutil.copyfile(d / "encoder.json", d / "vocab.json")
    shutil.copyfile(d / "vocab.bpe", d / "merges.txt")

    encoder = json.loads((d / "encoder.json").read_text(encoding="utf-8"))
    lines = (d / "vocab.bpe").read_text(encoding="utf-8").split("\n")
    assert lines[0].startswith("#version"), lines[0]
    merges = [l for l in lines[1:] if l]
    print(f"vocab entries={len(encoder)} ids=[{min(encoder.values())},{max(encoder.values())}] "
          f"distinct_ids={len(set(encoder.values()))}; merges={len(merges)} header={lines[0]!r}")
    assert len(encoder) == 50257 and len(merges) == 50000

    from transformers import GPT2TokenizerFast
    broken = GPT2TokenizerFast(vocab_file=str(d / "encoder.json"), merges_file=str(d / "vocab.bpe"))
    print(f"GPT2TokenizerFast(vocab_file=, merges_file=): len={len(broken)} 'Hello world'->{broken('Hello world')['input_ids']}")
    tok = GPT2TokenizerFast.from_pretrained(str(d), model_max_length=1024)
    tok.save_pretrained(str(d))
    print(f"from_pretrained: len={len(tok)} eos={tok.eos_token!r}/{tok.eos_token_id} model_max_length={tok.model_max_length}")

    from tokenizers import Tokenizer
    tj = Tokenizer.from_file(str(d / "tokenizer.json"))
    hw = tj.encode("Hello world").ids
    print(f"tokenizer.json: vocab_size(with added)={tj.get_vocab_size()} 'Hello world'->{hw} "
          f"' Hello world'->{tj.encode(' Hello world').ids} 'a<|endoftext|>'->{tj.encode('a<|endoftext|>').ids}")
    assert hw == [15496, 995]

    ref = RefBPE(encoder, merges)
    n = bad = 0
    for f in a.check_jsonl:
        for line in open(f, encoding="utf-8"):
            t = json.loads(line)["text"]
            n += 1
            if tj.encode(t).ids != ref.encode(t) or tok(t)["input_ids"] != ref.encode(t):
                bad += 1
                if bad <= 5:
                    print("MISMATCH", repr(t))
    if a.check_jsonl:
        print(f"independent BPE vs tokenizer.json vs transformers: {n} texts, {bad} mismatches")


if __name__ == "__main__":
    main()
