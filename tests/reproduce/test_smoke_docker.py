"""The README's main job (`experiments/smoke.yaml`) in real containers: both frameworks learn,
to the same band, and the bundle verifies and compares."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from tests.helpers import REPO
from tests.reproduce.conftest import LOCAL_BASE

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_smoke_in_containers(cpu_images, tmp_path, cli):
    argv = [sys.executable, "-m", "runner.cli", "reproduce", str(REPO / "experiments" / "smoke.yaml"),
            "--engine", "docker", "--base", LOCAL_BASE]
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (bundle,) = [p for p in (tmp_path / "results" / "smoke").iterdir()]
    runs = {r["framework"]: r for r in pq.read_table(bundle / "tables" / "runs.parquet").to_pylist()}
    assert {fw: r["status"] for fw, r in runs.items()} == {"pytorch": "ok", "tensorflow": "ok"}
    assert {fw: r["image_id"] for fw, r in runs.items()} == cpu_images
    acc = {fw: r["final_test_accuracy"] for fw, r in runs.items()}
    assert min(acc.values()) >= 0.85, acc  # learning, not just running
    assert abs(acc["pytorch"] - acc["tensorflow"]) <= 0.06, acc  # the same band
    engine = json.loads((bundle / "environment" / "engine.json").read_text())
    assert engine["kind"] == "docker" and engine["isolated"] is True
    verify = cli("bundle", "verify", str(bundle))
    assert verify.code == 0, verify.out + verify.err
    compare = cli("compare", str(bundle), "--format", "markdown")
    assert compare.code == 0 and "pytorch" in compare.out and "tensorflow" in compare.out, compare.err
