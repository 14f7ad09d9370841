"""`runner reproduce` in real containers: both frameworks, every table, failures as rows,
Ctrl-C leaves no container and `--resume` completes the bundle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from runner.engine.docker_engine import LABEL_BUNDLE
from tests.helpers import REPO, files_under
from tests.reproduce.conftest import LOCAL_BASE

pytestmark = pytest.mark.docker

TINY = REPO / "tests" / "specs" / "tiny.yaml"
SECRET = "s3cr3t-in-docker-0815"


def _bundles(results: Path, name: str) -> list[Path]:
    folder = results / name
    return sorted(p for p in folder.iterdir() if not p.name.endswith(".partial")) if folder.exists() else []


def _reproduce(cwd: Path, spec: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "runner.cli", "reproduce", str(spec), "--engine", "docker", "--base", LOCAL_BASE,
            *extra]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env or os.environ.copy(), timeout=900)


@pytest.fixture(scope="module")
def docker_bundle(cpu_images, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("docker")
    env = os.environ | {"MY_API_TOKEN": SECRET}
    proc = _reproduce(work, TINY, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (bundle,) = _bundles(work / "results", "tiny")
    return bundle


def test_both_frameworks_in_their_images(docker_bundle: Path, cpu_images):
    manifest = json.loads((docker_bundle / "manifest.json").read_text())
    assert {r["status"] for r in manifest["runs"]} == {"ok"}
    runs = pq.read_table(docker_bundle / "tables" / "runs.parquet").to_pylist()
    assert {r["framework"]: r["image_id"] for r in runs} == cpu_images
    for table in ("runs", "epochs", "steps", "latency", "telemetry"):
        assert pq.read_table(docker_bundle / "tables" / f"{table}.parquet").num_rows > 0, table
    engine = json.loads((docker_bundle / "environment" / "engine.json").read_text())
    assert engine["kind"] == "docker" and engine["isolated"] is True
    for name in ("pytorch-cpu", "tensorflow-cpu"):
        info = json.loads((docker_bundle / "environment" / "images" / f"{name}.json").read_text())
        assert info["image"]["id"] == cpu_images[name.split("-")[0]]
        assert (docker_bundle / "environment" / "images" / f"{name}.pip-freeze.txt").is_file()


def test_secret_appears_nowhere(docker_bundle: Path):
    for path in files_under(docker_bundle):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_same_shape_as_local(docker_bundle: Path, tmp_path):
    from runner.cli.main import main

    os.chdir(tmp_path)
    try:
        with pytest.raises(SystemExit) as e:
            main(["reproduce", str(TINY), "--engine", "local"])
    finally:
        os.chdir(REPO)
    assert e.value.code == 0
    (local,) = _bundles(tmp_path / "results", "tiny")
    for table in ("runs", "epochs", "steps", "latency", "telemetry"):
        a = pq.read_schema(docker_bundle / "tables" / f"{table}.parquet")
        b = pq.read_schema(local / "tables" / f"{table}.parquet")
        assert a.names == b.names, table
    rel = lambda root: {p.relative_to(root).parts[0] for p in files_under(root)}  # noqa: E731
    assert rel(docker_bundle) == rel(local)


def _pytorch_sweep(tmp_path: Path, replace: dict[str, str], field: str, values: list[int]) -> dict:
    """The tiny spec with PyTorch only, `replace` applied, one sweep over `field`, reproduced in
    containers; its runs rows keyed by that field's value."""
    text = TINY.read_text().replace("frameworks: [pytorch, tensorflow]", "frameworks: [pytorch]")
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    spec = tmp_path / "sweep.yaml"
    spec.write_text(text + f"sweeps:\n  - {{name: s, grid: {{{field}: {values}}}}}\n")
    proc = _reproduce(tmp_path, spec)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (bundle,) = _bundles(tmp_path / "results", "tiny")
    return {r[field]: r for r in pq.read_table(bundle / "tables" / "runs.parquet").to_pylist()}


def test_time_limit_is_a_failed_row(cpu_images, tmp_path):
    rows = _pytorch_sweep(tmp_path, {"time_limit_s: 300": "time_limit_s: 25"}, "epochs", [1, 200])
    assert rows[1]["status"] == "ok"
    assert rows[200]["status"] == "failed" and "time limit" in rows[200]["failure_reason"]


def test_sigint_leaves_no_container_and_resume_completes(cpu_images, docker_client, tmp_path):
    argv = [sys.executable, "-m", "runner.cli", "reproduce", str(TINY), "--engine", "docker", "--base", LOCAL_BASE]
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    label = None
    while time.monotonic() < deadline and label is None:
        for c in docker_client.containers.list(filters={"label": LABEL_BUNDLE}):
            if (tmp_path / "results" / "tiny" / c.labels[LABEL_BUNDLE]).exists():
                label = c.labels[LABEL_BUNDLE]
        time.sleep(0.5)
    assert label, "no run container appeared"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert docker_client.containers.list(all=True, filters={"label": f"{LABEL_BUNDLE}={label}"}) == []
    partial = tmp_path / "results" / "tiny" / label
    assert partial.name.endswith(".partial") and partial.is_dir()
    assert "--resume" in out
    scratch = tmp_path / ".cache" / "runner" / "scratch"
    assert not scratch.exists() or list(scratch.iterdir()) == []  # the interrupted run's scratch is gone
    done = _reproduce(tmp_path, TINY, "--resume", str(partial))
    assert done.returncode == 0, done.stdout + done.stderr
    (bundle,) = _bundles(tmp_path / "results", "tiny")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert len(manifest["runs"]) == 2 and {r["status"] for r in manifest["runs"]} == {"ok"}
    assert not partial.exists()


def test_out_of_memory_is_a_failed_row(cpu_images, tmp_path):
    """A batch that cannot fit the container's memory limit: that run is an `oom` row, the other completes."""
    rows = _pytorch_sweep(tmp_path, {"train_size: 256": "train_size: 2048", "memory: 2g": "memory: 600m"},
                          "batch_size", [32, 2048])
    assert rows[32]["status"] == "ok"
    assert rows[2048]["status"] == "failed" and rows[2048]["failure_reason"].startswith("oom"), rows[2048]
