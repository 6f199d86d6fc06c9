#!/usr/bin/env python3
"""Embed a text file (one text per line) into Parquet with Ray Data: `map_batches` over an actor
pool, each actor holding one `osq.Model`. Columns: `id` (line index among non-blank lines),
`text`, `embedding` (list<float32>).

    python3 tools/ray_embed.py --params out/os-w8a8 --data data/movie/eval.txt \
        --output out/emb.parquet [--workers 2] [--threads-per-worker 1] [--batch-size 64]

`ray.init()` starts a local cluster on this machine unless RAY_ADDRESS names one.
"""

import argparse
import sys

import numpy as np


class Embedder:
    """One actor: one osq.Model, reused for every batch it is given."""

    def __init__(self, params, threads):
        import osq

        self.model = osq.Model(params, threads=threads)

    def __call__(self, batch):
        texts = [str(t) for t in batch["text"]]
        emb = self.model.encode(texts)
        batch["embedding"] = list(emb.astype(np.float32))
        return batch


def read_texts(path):
    """The same lines osq reads: LF, CRLF and CR end lines, blank lines skipped, trimmed."""
    with open(path, "rb") as f:
        raw = f.read().decode("utf-8")
    lines = raw.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [l.strip() for l in lines if l.strip()]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads-per-worker", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    a = ap.parse_args(argv)
    if a.workers < 1 or a.threads_per_worker < 1 or a.batch_size < 1:
        ap.error("--workers, --threads-per-worker and --batch-size must be positive")

    import ray

    texts = read_texts(a.data)
    if not texts:
        sys.exit(f"{a.data}: no texts")
    ray.init(num_cpus=max(a.workers * a.threads_per_worker, 1), include_dashboard=False,
             log_to_driver=False, ignore_reinit_error=True)
    try:
        ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(texts)])
        out = ds.map_batches(
            Embedder,
            fn_constructor_args=(a.params, a.threads_per_worker),
            batch_size=a.batch_size,
            batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(size=a.workers),
            num_cpus=a.threads_per_worker,
        )
        out.write_parquet(a.output)
    finally:
        ray.shutdown()
    print(f"ray_embed: {len(texts)} texts → {a.output}")


if __name__ == "__main__":
    main()
