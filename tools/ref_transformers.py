#!/usr/bin/env python3
"""Sentence embeddings of a real checkpoint by Hugging Face transformers (the FP32 oracle).

Runs `AutoModel` in float64 on CPU, one sentence at a time, pools as the directory's
sentence-transformers metadata says (1_Pooling/config.json: mean / cls / max / mean_sqrt_len;
L2-normalised when modules.json has a Normalize module) and writes the texts, their token ids and
embeddings as JSON. `crates/osq-model/tests/real_families.rs` compares osq's FP32 forward with it
(cosine >= 0.99999 per sentence). The output for all-mpnet-base-v2 is committed
(tests/fixtures/real/all-mpnet-base-v2.json) so that CI needs no torch.

Usage (dev only; torch comes from tools/requirements-oracle.txt):
    tools/fetch_mpnet.sh
    /tmp/oracle/bin/python tools/ref_transformers.py --model models/all-mpnet-base-v2 \\
        --out tests/fixtures/real/all-mpnet-base-v2.json
"""
import argparse
import json
import os

import torch
from transformers import AutoModel, AutoTokenizer

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street corner.",
    "I absolutely loved this movie; the acting was superb and the plot kept me guessing!",
    "The stock market fell 3.5% on Tuesday after the central bank raised interest rates.",
    "Hi",
    "",
    "Can you recommend a good Italian restaurant near the train station?",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "This product broke after two days. Terrible quality, would not buy again.",
    "She said: \"Don't forget to water the plants while I'm away.\"",
    "The café on Rue de Rivoli serves crème brûlée and naïve little pastries.",
    "def main(): print('hello, world')  # code is text too",
    " ".join(["a long sentence that repeats its words to reach more than one hundred tokens"] * 9),
]


def pooling(model_dir):
    mode, normalize = "mean", True
    mods = os.path.join(model_dir, "modules.json")
    pool_dir = os.path.join(model_dir, "1_Pooling")
    if os.path.exists(mods):
        normalize = False
        for m in json.load(open(mods)):
            kind = m["type"].rsplit(".", 1)[-1]
            if kind == "Pooling":
                pool_dir = os.path.join(model_dir, m["path"])
            elif kind == "Normalize":
                normalize = True
    cfg = os.path.join(pool_dir, "config.json")
    if os.path.exists(cfg):
        c = json.load(open(cfg))
        for key, name in [("pooling_mode_mean_tokens", "mean"), ("pooling_mode_cls_token", "cls"),
                          ("pooling_mode_max_tokens", "max"),
                          ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len")]:
            if c.get(key):
                mode = name
    return mode, normalize


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-len", type=int, default=256)
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModel.from_pretrained(args.model).double().eval()
    mode, normalize = pooling(args.model)
    rows = []
    for text in SENTENCES:
        enc = tok(text, return_tensors="pt", truncation=True, max_length=args.max_len)
        with torch.no_grad():
            h = model(**enc).last_hidden_state[0]
        if mode == "mean":
            e = h.mean(0)
        elif mode == "cls":
            e = h[0]
        elif mode == "max":
            e = h.max(0).values
        else:
            e = h.sum(0) / (h.shape[0] ** 0.5)
        if normalize:
            e = e / e.norm().clamp(min=1e-12)
        rows.append({"text": text, "ids": enc["input_ids"][0].tolist(),
                     "embedding": [float(x) for x in e]})
    import transformers
    doc = {"model": os.path.basename(os.path.normpath(args.model)), "pooling": mode,
           "normalize": normalize, "max_len": args.max_len,
           "oracle": f"transformers {transformers.__version__}, torch {torch.__version__}, float64",
           "sentences": rows}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(doc, f)
        f.write("\n")
    print(f"{len(rows)} sentences ({mode}, normalize={normalize}) -> {args.out}")


if __name__ == "__main__":
    main()
