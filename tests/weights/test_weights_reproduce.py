"""`runner reproduce --engine local` with pinned weights: used, recorded in run.json, events, result
and the bundle; a bad pin is one line, exit 2, before anything runs or is written."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from runner.workload.models.npz import save_npz
from tests.helpers import files_under
from tests.weights.conftest import tiny_spec

pytest.importorskip("torch")
pytest.importorskip("tensorflow")


def _in(folder: Path, cli, *args):
    old = os.getcwd()
    os.chdir(folder)
    try:
        return cli(*args)
    finally:
        os.chdir(old)


@pytest.fixture
def store(canonical, tmp_path) -> tuple[Path, str]:
    root = tmp_path / "root"
    (root / "weights").mkdir(parents=True)
    tmp = tmp_path / "w.npz"
    sha = save_npz(tmp, canonical)
    shutil.move(tmp, root / "weights" / f"{sha}.npz")
    return root, sha


def test_pinned_weights_run_and_are_recorded(cli, store, tmp_path):
    root, sha = store
    spec = tiny_spec(tmp_path, sha)
    r = _in(tmp_path, cli, "reproduce", spec, "--engine", "local", "--data-root", root)
    assert r.code == 0, r.out + r.err
    (bundle,) = [p for p in (tmp_path / "results" / "tiny-pretrained").iterdir()]
    env = json.loads((bundle / "environment" / "weights.json").read_text())
    assert env["sha256"] == sha and env["tensors"] == 21
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert "environment/weights.json" in {f["path"] for f in manifest["files"]}  # covered by the digest
    runs = list((bundle / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        pinned = json.loads((run / "run.json").read_text())["model"]["pretrained"]
        assert pinned == {"sha256": sha, "skip": ["fc3"]}
        start = next(json.loads(line) for line in (run / "events.jsonl").open() if '"run_start"' in line)
        result = json.loads((run / "result.json").read_text())
        for record in (start["weights"], result["weights"]):
            assert record["sha256"] == sha and record["loaded"] == 19
            assert record["kept_init"] == ["fc3.weight", "fc3.bias"]
            assert record["path"] == str((root / "weights" / f"{sha}.npz").resolve())
        assert json.loads((run / "environment.json").read_text())["environment"]["weights_sha256"] == sha


@pytest.mark.parametrize("case", ["malformed_sha", "absent", "hint_mismatch", "wrong_shape", "skip_names_nothing",
                                  "store_is_a_fifo"])
def test_a_bad_pin_stops_everything_before_any_run(case, cli, store, canonical, tmp_path):
    root, sha = store
    extra = ""
    if case == "malformed_sha":
        sha = sha[:-1] + "G"
    elif case == "absent":
        sha = "ab" * 32
    elif case == "hint_mismatch":  # the hint holds other bytes; the store does not hold the pinned ones
        other = root / "other.npz"
        save_npz(other, {k: v + 1 for k, v in canonical.items()})
        (root / "weights" / f"{sha}.npz").unlink()
        extra = ", path: other.npz"
    elif case == "wrong_shape":  # the pinned file is for 10 classes, the spec's fc2 is kept, fc3 skipped...
        extra = ""
    elif case == "skip_names_nothing":
        extra = ", skip: [fc9]"
    elif case == "store_is_a_fifo":
        (root / "weights" / f"{sha}.npz").unlink()
        os.mkfifo(root / "weights" / f"{sha}.npz")
    spec = tiny_spec(tmp_path, sha, extra=extra)
    if case == "skip_names_nothing":
        spec.write_text(spec.read_text().replace("skip: [fc3], skip: [fc9]", "skip: [fc9]"))
    if case == "wrong_shape":  # no skip: a 100-class head cannot come from a 10-class file
        spec.write_text(spec.read_text().replace("skip: [fc3]", "skip: []").replace("name: cifar10", "name: cifar100"))
    before = files_under(root)
    t0 = time.monotonic()
    r = _in(tmp_path, cli, "reproduce", spec, "--engine", "local", "--data-root", root)
    assert r.code == 2, r.out + r.err
    err = r.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert time.monotonic() - t0 < 2
    assert not (tmp_path / "results").exists() and not (tmp_path / ".cache").exists()
    assert files_under(root) == before
    expected = {"malformed_sha": "64 lowercase hex", "absent": "no weights with sha256",
                "hint_mismatch": "other.npz: sha256", "wrong_shape": "fc3.weight",
                "skip_names_nothing": "'fc9' names no tensor", "store_is_a_fifo": "not a regular file"}[case]
    assert expected in err, err
