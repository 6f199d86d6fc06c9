"""The wheel as a Python user runs it: results equal the Rust CLI's bit for bit, one model
shared by threads, errors as ValueError / OSError with the Rust message."""

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import osq

from conftest import OSQ, SENTENCES


def cli_embeddings(params, texts):
    r = subprocess.run(
        [OSQ, "run", "--params", str(params), "--json", "--embeddings", *texts],
        check=True,
        capture_output=True,
        text=True,
    )
    rows = json.loads(r.stdout)
    return np.array([row["embedding"] for row in rows], dtype=np.float32)


def test_encode_equals_cli_bit_for_bit(params):
    m = osq.Model(params, threads=2)
    e = m.encode(SENTENCES, batch_size=3)
    assert e.shape == (len(SENTENCES), m.dim) and e.dtype == np.float32
    want = cli_embeddings(params, SENTENCES)
    assert np.array_equal(e.view(np.uint32), want.view(np.uint32))
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    raw = m.encode(SENTENCES[:1], normalize=False)
    assert np.allclose(raw[0] / np.linalg.norm(raw[0]), e[0], atol=1e-6)


def test_classify_equals_cli(params):
    m = osq.Model(params, threads=1)
    task, labels = m.head()
    assert task == "single_label_classification" and labels == ["LABEL_0", "LABEL_1"]
    got = m.classify(SENTENCES[:3])
    r = subprocess.run([OSQ, "run", "--params", str(params), "--json", *SENTENCES[:3]],
                       check=True, capture_output=True, text=True)
    want = json.loads(r.stdout)
    for g, w in zip(got, want):
        assert g["label"] == w["label"] and g["logits"] == w["logits"]
        assert abs(sum(g["scores"].values()) - 1.0) < 1e-5


def test_threads_share_one_model(params):
    m = osq.Model(params, threads=2)
    alone = [m.encode([t])[0] for t in SENTENCES]
    with ThreadPoolExecutor(max_workers=8) as ex:
        results = list(ex.map(lambda i: (i, m.encode([SENTENCES[i % len(SENTENCES)]])[0]), range(64)))
    for i, row in results:
        assert np.array_equal(row, alone[i % len(SENTENCES)])


def test_verify_and_info(params):
    m = osq.Model(params, threads=1)
    r = m.verify(SENTENCES[:3], isas=["scalar"])
    assert r["bit_exact"] is True
    assert r["isas"]["scalar"]["stats"]["percent_equal"] == 100.0
    info = m.info()
    assert info["bits"] == "w8a8" and info["dim"] == m.dim
    assert m.count_tokens(["the cat"]) == [4]
    assert "osq.Model(" in repr(m)


def test_bad_input_raises_with_the_message(params, tmp_path):
    with pytest.raises(OSError, match="quant.json"):
        osq.Model(tmp_path / "missing")
    with pytest.raises(ValueError, match="isa"):
        osq.Model(params, isa="sparc")
    m = osq.Model(params, truncate=False)
    with pytest.raises(ValueError, match="tokens, more than the maximum length"):
        m.encode(["the cat " * 100])
    with pytest.raises(ValueError, match="batch_size"):
        m.encode(["a"], batch_size=0)
    with pytest.raises(TypeError):
        m.encode("not a list of str but a str is a sequence" and 5)
    with pytest.raises(ValueError, match="method"):
        osq.calibrate(tmp_path, tmp_path / "x.txt", tmp_path / "out", method="kmeans")
    with pytest.raises(ValueError, match="loss"):
        osq.calibrate(tmp_path, tmp_path / "x.txt", tmp_path / "out", method="os", loss="kl")
    # a corrupt parameter file names the file
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in params.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    b = bytearray((bad / "quant.safetensors").read_bytes())
    b[len(b) // 2] ^= 1
    (bad / "quant.safetensors").write_bytes(bytes(b))
    with pytest.raises(ValueError, match="quant.safetensors.*SHA-256"):
        osq.Model(bad)


def test_calibrate_max_len_truncates_the_texts(params, tmp_path):
    """`max_len` caps the tokens of every calibration text (long-document tasks calibrate at
    their own length); below 3 tokens it is a ValueError naming it."""
    model = params.parent / "model"
    data = model / "sentences.txt"
    full = osq.calibrate(model, data, tmp_path / "full", threads=1)
    short = osq.calibrate(model, data, tmp_path / "short", threads=1, max_len=4)
    assert short["samples"] == full["samples"] == len(SENTENCES)
    assert short["tokens"] <= 4 * len(SENTENCES) < full["tokens"]
    with pytest.raises(ValueError, match="max-len"):
        osq.calibrate(model, data, tmp_path / "none", threads=1, max_len=2)
