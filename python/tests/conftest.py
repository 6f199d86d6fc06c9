"""Shared fixtures: the osq CLI binary and a tiny generated model calibrated through the wheel."""

import os
import subprocess
from pathlib import Path

import pytest

import osq

ROOT = Path(__file__).resolve().parents[2]
OSQ = os.environ.get("OSQ_BIN", str(ROOT / "target" / "release" / "osq"))
# the tiny model writer (`cargo build --release --example tiny_fixture`; tools/test.sh builds it)
FIXTURE = str(ROOT / "target" / "release" / "examples" / "tiny_fixture")
# the texts of the tiny model, filled from the sentences.txt that tiny_fixture writes
SENTENCES: list = []


@pytest.fixture(scope="session")
def params(tmp_path_factory):
    """A tiny generated BERT (the CLI's test fixture writer), calibrated through the wheel."""
    root = tmp_path_factory.mktemp("osq")
    model = root / "model"
    subprocess.run([FIXTURE, str(model)], check=True)
    data = model / "sentences.txt"
    SENTENCES[:] = [l for l in data.read_text().splitlines() if l.strip()]
    out = root / "params"
    report = osq.calibrate(model, data, out, method="minmax", bits="w8a8", threads=1)
    assert report["method"] == "minmax" and report["samples"] == len(SENTENCES)
    return out


