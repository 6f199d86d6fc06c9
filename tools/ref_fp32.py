#!/usr/bin/env python3
"""Independent FP32 reference for osq's Rust forward (crates/osq-model/src/fp32.rs).

Reads models/all-MiniLM-L6-v2/model.safetensors with a hand-written safetensors reader (numpy
only), tokenizes with the `tokenizers` pip package (an independent check of the Rust side's
tokenization), runs a plain BERT encoder in float64 one sentence at a time (no padding) and
writes, for ~16 varied English sentences, the token ids, the last hidden states and the
sentence-transformers embedding (mask-aware mean pooling + L2 normalisation) to
out/ref_fp32/all-MiniLM-L6-v2.json. crates/osq-model/tests/fp32_reference.rs compares Rust
against it (max abs <= 1e-4).

Usage:  ./tools/fetch_model.sh && python3 tools/ref_fp32.py [--model DIR] [--out FILE]
Needs:  python3 -m pip install numpy tokenizers
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_LEN = 128

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
    "Quantum computers exploit superposition and entanglement to solve certain problems faster.",
    "The café on Rue de Rivoli serves crème brûlée and naïve little pastries.",
    "def main(): print('hello, world')  # code is text too",
    "In 1969, Neil Armstrong became the first person to walk on the Moon.",
    "What's the weather like tomorrow in São Paulo?",
    # longer than 128 tokens: exercises truncation on both sides
    " ".join(
        [
            "Outlier suppression keeps the accuracy of low-bit transformer language models by",
            "migrating the scaling parameter of LayerNorm into the following linear layers and by",
            "clipping the rare token-wise outliers that dominate the quantization range."
        ]
        * 5
    ),
]


def read_safetensors(path):
    """Minimal safetensors reader: 8-byte LE header length, JSON header, raw LE data."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    dtypes = {"F32": np.float32, "F16": np.float16, "F64": np.float64}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[a:b]
        if info["dtype"] == "BF16":
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32)
        elif info["dtype"] in dtypes:
            arr = np.frombuffer(raw, dtype=np.dtype(dtypes[info["dtype"]]).newbyteorder("<"))
        else:
            continue  # e.g. I64 position_ids
        out[name] = arr.reshape(info["shape"]).astype(np.float64)
    return out


_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


class Bert:
    def __init__(self, model_dir):
        self.cfg = json.load(open(os.path.join(model_dir, "config.json")))
        t = read_safetensors(os.path.join(model_dir, "model.safetensors"))
        self.t = {k[5:] if k.startswith("bert.") else k: v for k, v in t.items()}

        self.cache = {}

    def w(self, name, dtype):
        key = (name, np.dtype(dtype).name)
        if key not in self.cache:
            self.cache[key] = self.t[name].astype(dtype)
        return self.cache[key]

    def lin(self, x, name):
        return x @ self.w(name + ".weight", x.dtype).T + self.w(name + ".bias", x.dtype)

    def ln(self, x, name):
        eps = np.asarray(self.cfg["layer_norm_eps"], dtype=x.dtype)
        return layer_norm(x, self.w(name + ".weight", x.dtype), self.w(name + ".bias", x.dtype), eps)

    def forward(self, ids, type_ids, dtype=np.float64):
        """Last hidden states [n, hidden] of one unpadded sequence."""
        c, t = self.cfg, self.t
        n = len(ids)
        x = (
            t["embeddings.word_embeddings.weight"][ids]
            + t["embeddings.token_type_embeddings.weight"][type_ids]
        ) + t["embeddings.position_embeddings.weight"][:n]
        x = self.ln(x.astype(dtype), "embeddings.LayerNorm")
        heads = c["num_attention_heads"]
        d = c["hidden_size"] // heads
        for l in range(c["num_hidden_layers"]):
            p = f"encoder.layer.{l}"
            q = self.lin(x, f"{p}.attention.self.query").reshape(n, heads, d).transpose(1, 0, 2)
            k = self.lin(x, f"{p}.attention.self.key").reshape(n, heads, d).transpose(1, 0, 2)
            v = self.lin(x, f"{p}.attention.self.value").reshape(n, heads, d).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / np.asarray(math.sqrt(d), dtype=dtype)
            s = np.exp(s - s.max(-1, keepdims=True))
            prob = s / s.sum(-1, keepdims=True)
            ctx = (prob @ v).transpose(1, 0, 2).reshape(n, heads * d)
            x = self.ln(self.lin(ctx, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
            h = gelu(self.lin(x, f"{p}.intermediate.dense")).astype(dtype)
            x = self.ln(self.lin(h, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
        return x


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--out", default=os.path.join(ROOT, "out", "ref_fp32", "all-MiniLM-L6-v2.json"))
    args = ap.parse_args()
    if not os.path.isfile(os.path.join(args.model, "model.safetensors")):
        sys.exit(f"{args.model}: model missing; run tools/fetch_model.sh first")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=MAX_LEN)
    bert = Bert(args.model)

    records = []
    worst32 = 0.0
    for text in SENTENCES:
        enc = tok.encode(text)
        ids, types = list(enc.ids), list(enc.type_ids)
        h = bert.forward(np.array(ids), np.array(types))
        emb = h.mean(0)
        emb = emb / max(np.linalg.norm(emb), 1e-12)
        # how far a plain float32 evaluation of the same math lands (context for the tolerance)
        h32 = bert.forward(np.array(ids), np.array(types), dtype=np.float32)
        worst32 = max(worst32, float(np.abs(h32 - h).max()))
        records.append(
            {
                "text": text,
                "ids": ids,
                "type_ids": types,
                "hidden": np.round(h, 9).tolist(),
                "embedding": np.round(emb, 10).tolist(),
            }
        )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(
            {
                "model": os.path.basename(os.path.normpath(args.model)),
                "max_len": MAX_LEN,
                "precision": "float64",
                "sentences": records,
            },
            f,
        )
    n_tok = sum(len(r["ids"]) for r in records)
    print(
        f"wrote {args.out}: {len(records)} sentences, {n_tok} tokens; "
        f"numpy float32 vs float64 max abs diff {worst32:.3g}"
    )


if __name__ == "__main__":
    main()
