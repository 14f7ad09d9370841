"""`runner reproduce --engine podman` against the real podman: the tiny spec runs in the CPU
images (moved from Docker), its bundle verifies, each run records podman, the inline executor
and its node, telemetry follows the container's processes, no container is left, and
`bundle diff` against the same spec under Docker finds the same image IDs (only the engine differs)."""

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
from tests.helpers import REPO
from tests.reproduce.conftest import LOCAL_BASE

pytestmark = [pytest.mark.podman, pytest.mark.docker]

TINY = REPO / "tests" / "specs" / "tiny.yaml"


def _runner(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner.cli", *argv], cwd=cwd, capture_output=True, text=True,
                          env=os.environ.copy(), timeout=900)


def _bundle(cwd: Path, engine: str) -> Path:
    proc = _runner(cwd, "reproduce", str(TINY), "--engine", engine, "--base", LOCAL_BASE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (bundle,) = [p for p in (cwd / "results" / "tiny").iterdir() if not p.name.endswith(".partial")]
    return bundle


@pytest.fixture(scope="module")
def podman_bundle(podman_images, tmp_path_factory) -> Path:
    return _bundle(tmp_path_factory.mktemp("podman"), "podman")


def test_the_bundle_verifies_and_every_run_is_ok(podman_bundle: Path, cpu_images):
    proc = _runner(REPO, "bundle", "verify", str(podman_bundle))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = pq.read_table(podman_bundle / "tables" / "runs.parquet").to_pylist()
    assert {r["status"] for r in runs} == {"ok"}
    assert {r["framework"]: r["image_id"] for r in runs} == cpu_images  # Docker's IDs: the same images
    assert {r["engine"] for r in runs} == {"podman"}
    engine = json.loads((podman_bundle / "environment" / "engine.json").read_text())
    assert engine["kind"] == "podman" and engine["isolated"] is True and engine["version"]
    executor = json.loads((podman_bundle / "environment" / "executor.json").read_text())
    assert executor["kind"] == "inline"
    for name in ("pytorch-cpu", "tensorflow-cpu"):
        info = json.loads((podman_bundle / "environment" / "images" / f"{name}.json").read_text())
        assert info["image"]["podman_id"] == info["image"]["id"] == cpu_images[name.split("-")[0]]
        assert info.get("framework_version"), info  # `runner.workload info` ran in podman


def test_each_run_records_its_node_and_telemetry(podman_bundle: Path):
    for env_file in sorted((podman_bundle / "runs").glob("*/environment.json")):
        doc = json.loads(env_file.read_text())
        env = doc["environment"]
        assert env["engine"] == "podman" and env["executor"] == "inline"
        node = env["node"]
        assert node["host"] and node["gpu_indices"] == [] and node["gpus"] == [] and node["cpu_threads"] >= 1
        assert env["container_name"].startswith("runner-")
        assert doc["telemetry"]["rows"] > 0 and doc["telemetry"]["errors"] == {}
    sources = {r["source"] for r in pq.read_table(podman_bundle / "tables" / "telemetry.parquet").to_pylist()}
    assert "process" in sources  # the container's process tree, sampled beside the run


def test_no_container_is_left(podman_bundle: Path):
    proc = subprocess.run(["podman", "ps", "--all", "--quiet", "--filter", f"label={LABEL_BUNDLE}"],
                          capture_output=True, text=True, check=True)
    names = subprocess.run(["podman", "ps", "--all", "--format", "{{.Names}}"], capture_output=True, text=True,
                           check=True).stdout.split()
    assert proc.stdout.split() == [] and not [n for n in names if n.startswith("runner-")]


def test_diff_against_docker_sees_the_same_images(podman_bundle: Path, tmp_path):
    docker_bundle = _bundle(tmp_path, "docker")
    proc = _runner(REPO, "bundle", "diff", str(docker_bundle), str(podman_bundle))
    out = proc.stdout + proc.stderr
    assert "engine.kind" in out and "podman" in out
    assert "image_id" not in out and ".image.id" not in out and "podman_id" not in out, out


def _running() -> list[tuple[str, str]]:
    """(bundle label, container name) of every running runner container."""
    proc = subprocess.run(["podman", "ps", "--filter", f"label={LABEL_BUNDLE}", "--format", "json"],
                          capture_output=True, text=True, check=True)
    return [(c["Labels"][LABEL_BUNDLE], c["Names"][0]) for c in json.loads(proc.stdout or "[]")]


def test_sigint_leaves_no_container_and_no_waiter(podman_images, tmp_path):
    argv = [sys.executable, "-m", "runner.cli", "reproduce", str(TINY), "--engine", "podman", "--base", LOCAL_BASE]
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline, ours = time.monotonic() + 300, None
    while time.monotonic() < deadline and ours is None:
        ours = next((c for c in _running() if (tmp_path / "results" / "tiny" / c[0]).exists()), None)
        time.sleep(0.5)
    assert ours, "no run container appeared"
    label, name = ours
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    left = subprocess.run(["podman", "ps", "--all", "--quiet", "--filter", f"label={LABEL_BUNDLE}={label}"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert left == []
    waiter = subprocess.run(["pgrep", "-f", f"podman wait {name}"], capture_output=True, text=True).stdout.split()
    assert waiter == []  # the `podman wait` child ended with its container
    assert "--resume" in out and (tmp_path / "results" / "tiny" / label).is_dir()
