"""Disjoint train / calibration / test splits of a labelled corpus, written the way every
task's fetch script writes them (data/ is git-ignored): {train,calib,test}.tsv as
`label<TAB>text`, calib.txt (the calibration texts, osq calibrate) and eval.txt (the test texts,
osq verify), each written to a .part file and renamed, so an interrupted run leaves no half file.
"""
import os
import random
import unicodedata

OUTPUTS = ["train.tsv", "calib.tsv", "test.tsv", "calib.txt", "eval.txt"]


def clean(text):
    """NFC, tabs and newlines to spaces, runs of whitespace to one space (one text per line)."""
    return " ".join(unicodedata.normalize("NFC", text).replace("\t", " ").split())


def complete(out):
    return all(os.path.isfile(os.path.join(out, f)) for f in OUTPUTS)


def write_splits(out, data, labels, seed, n_calib, n_test, tag):
    """Shuffle `(label, text)` pairs with `random.Random(seed)`: calib first, then test, then
    train (the rest); write them and print the class counts of each split."""
    data = list(data)
    random.Random(seed).shuffle(data)
    calib, test = data[:n_calib], data[n_calib:n_calib + n_test]
    train = data[n_calib + n_test:]
    os.makedirs(out, exist_ok=True)

    def write(name, lines):
        part = os.path.join(out, name) + ".part"
        with open(part, "w", encoding="utf-8", newline="\n") as f:
            for line in lines:
                f.write(line + "\n")
        os.replace(part, os.path.join(out, name))

    for name, split in (("train", train), ("calib", calib), ("test", test)):
        write(f"{name}.tsv", (f"{l}\t{t}" for l, t in split))
        counts = [sum(1 for l, _ in split if l == k) for k in range(len(labels))]
        print(f"{tag}: {name:5s} {len(split):6d} texts {dict(zip(labels, counts))}")
    write("calib.txt", (t for _, t in calib))
    write("eval.txt", (t for _, t in test))
