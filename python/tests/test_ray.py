"""tools/ray_embed.py on a local Ray cluster (this machine, 2 workers): every Parquet row equals
the library's embedding of the same text, bit for bit. Skipped with the reason when Ray is not
installed (tools/setup.sh --tests installs it)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import osq

ray = pytest.importorskip("ray", reason="ray is not installed (tools/requirements-test.txt)")
pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed")

ROOT = Path(__file__).resolve().parents[2]


def test_ray_embed_matches_the_library(params, tmp_path):
    texts = [f"the cat {'sat ' * (i % 7)}on the mat {i}" for i in range(150)]
    data = tmp_path / "texts.txt"
    data.write_text("\n".join(texts) + "\n")
    out = tmp_path / "emb.parquet"
    r = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "ray_embed.py"), "--params", str(params),
         "--data", str(data), "--output", str(out), "--workers", "2", "--batch-size", "16"],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    table = pq.read_table(out).to_pandas().sort_values("id")
    assert list(table["id"]) == list(range(len(texts)))
    assert list(table["text"]) == texts
    want = osq.Model(params, threads=1).encode(texts)
    got = np.stack([np.asarray(e, dtype=np.float32) for e in table["embedding"]])
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
