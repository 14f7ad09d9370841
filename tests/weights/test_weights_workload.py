"""`python -m runner.workload run --weights`: the workload checks the file itself (it may be run by
hand, or by another host): wrong bytes, a missing file or flag, an unpinned file: exit 2, one line,
nothing written to --out."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from runner.workload.models.npz import save_npz
from tests.helpers import REPO


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from runner.data import prepare, write_synthetic

    root = tmp_path_factory.mktemp("data")
    synth = write_synthetic("cifar10", root / "synth", train=64, test=16, seed=0)
    prepare(synth.folder, root / "prepared")
    return root / "prepared"


@pytest.mark.parametrize("case", ["other_bytes", "no_flag", "unpinned", "missing_file"])
def test_the_workload_refuses_weights_that_are_not_the_pinned_ones(case, prepared, canonical, tmp_path):
    from tests.workload.test_harness_run import BASE_CONFIG

    sha = save_npz(tmp_path / "w.npz", canonical)
    save_npz(tmp_path / "other.npz", {k: v * 2 for k, v in canonical.items()})
    doc = copy.deepcopy(BASE_CONFIG)
    doc["model"]["pretrained"] = None if case == "unpinned" else {"sha256": sha, "skip": []}
    (tmp_path / "run.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    out.mkdir()
    weights = {"other_bytes": ["--weights", str(tmp_path / "other.npz")], "no_flag": [],
               "unpinned": ["--weights", str(tmp_path / "w.npz")],
               "missing_file": ["--weights", str(tmp_path / "gone.npz")]}[case]
    proc = subprocess.run([sys.executable, "-m", "runner.workload", "run", "--config", str(tmp_path / "run.json"),
                           "--data", str(prepared), "--out", str(out), *weights],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert list(out.iterdir()) == []
    expected = {"other_bytes": "run.json pins", "no_flag": "no --weights file", "unpinned": "pins no pretrained",
                "missing_file": "no such weights file"}[case]
    assert expected in proc.stderr
