"""The small Resbench variant (experiments/resbench-small.yaml: ResNet-50 v1.5 with the CIFAR stem,
256 synthetic CIFAR-100-format images, one epoch) in real containers, PyTorch, TensorFlow AND MXNet:
every run ok in its own image, the same model (parameter counts) and the same start (first-step
loss) in all three, every table filled, and `runner compare` shows three framework columns.
A missing MXNet image under `--build never` is a failed row naming the build command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers import REPO
from tests.reproduce.conftest import LOCAL_BASE

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SPEC = REPO / "experiments" / "resbench-small.yaml"
FRAMEWORKS = {"pytorch", "tensorflow", "mxnet"}


def _reproduce(cwd: Path, spec: Path, *extra: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "runner.cli", "reproduce", str(spec), "--engine", "docker", "--base", LOCAL_BASE,
            *extra]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=os.environ.copy(), timeout=1800)


@pytest.fixture(scope="module")
def bundle(cpu_images, mxnet_cpu_image, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("resbench")
    proc = _reproduce(work, SPEC)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (found,) = [p for p in (work / "results" / "resbench-small").iterdir() if p.is_dir()]
    return found


def test_three_frameworks_run_in_their_own_images(bundle, cpu_images, mxnet_cpu_image):
    runs = {r["framework"]: r for r in pq.read_table(bundle / "tables" / "runs.parquet").to_pylist()}
    assert set(runs) == FRAMEWORKS
    assert {fw: r["status"] for fw, r in runs.items()} == dict.fromkeys(FRAMEWORKS, "ok"), runs
    assert {fw: r["image_id"] for fw, r in runs.items()} == {**cpu_images, "mxnet": mxnet_cpu_image}
    assert runs["mxnet"]["framework_version"] == "1.9.1" and runs["mxnet"]["engine"] == "docker"
    framework_of = {r["run_id"]: fw for fw, r in runs.items()}
    for table in ("epochs", "steps", "latency", "telemetry"):
        rows = pq.read_table(bundle / "tables" / f"{table}.parquet").to_pylist()
        assert {framework_of[r["run_id"]] for r in rows if r["run_id"] in framework_of} == FRAMEWORKS, table


def test_same_model_and_same_start_in_all_three(bundle):
    runs = pq.read_table(bundle / "tables" / "runs.parquet").to_pylist()
    counts = {(r["params_trainable"], r["params_total"]) for r in runs}
    assert counts == {(23_705_252, 23_758_372)}, counts  # ResNet-50 v1.5, 100 classes (CIFAR stem)
    framework_of = {r["run_id"]: r["framework"] for r in runs}
    steps = pq.read_table(bundle / "tables" / "steps.parquet").to_pylist()
    first = {framework_of[s["run_id"]]: s["loss"] for s in steps if s["global_step"] == 0}
    # Same canonical weights, first batch, augmentation and loss: the first step's loss of a
    # 50-layer float32 net agrees in three kernel libraries (measured here: 4.96278 / 4.96279 / 4.96279).
    assert set(first) == FRAMEWORKS
    assert max(first.values()) - min(first.values()) <= 1e-4 * max(first.values()), first


def test_compare_shows_three_framework_columns(bundle, cli):
    result = cli("compare", str(bundle), "--format", "markdown")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    throughput = next(line for line in lines if line.startswith("| batch |"))  # one column per framework
    assert all(f"{fw} images/s" in throughput for fw in FRAMEWORKS), throughput
    accuracy = next(line for line in lines if line.startswith("| optimizer |"))
    assert all(f"{fw} test acc" in accuracy for fw in FRAMEWORKS), accuracy
    rows = {line.split("|")[1].strip() for line in lines if line.startswith("| ") and "1 ok" in line}
    assert rows == FRAMEWORKS, rows  # the final-results table: one row per framework, each ok


def test_missing_mxnet_image_is_a_failed_row_naming_the_build_command(mxnet_cpu_image, docker_client, tmp_path):
    """`--build never` with runner/mxnet-cpu untagged (kept alive under a spare tag meanwhile)."""
    from runner.images.catalog import load_catalog

    tag = load_catalog().get("mxnet-cpu").tag
    repository, _, version = tag.rpartition(":")
    spare = ("runner-test/mxnet-cpu-kept", "1")
    docker_client.api.tag(mxnet_cpu_image, *spare)
    spec = tmp_path / "mx.yaml"
    spec.write_text((REPO / "tests" / "specs" / "tiny.yaml").read_text()
                    .replace("frameworks: [pytorch, tensorflow]", "frameworks: [mxnet]"))
    try:
        docker_client.images.remove(tag)
        proc = _reproduce(tmp_path, spec, "--build", "never")
    finally:
        docker_client.api.tag(mxnet_cpu_image, repository, version)
        docker_client.images.remove(":".join(spare))
    assert "runner images build mxnet-cpu" in proc.stdout + proc.stderr, proc.stdout[-2000:] + proc.stderr[-2000:]
    (found,) = [p for p in (tmp_path / "results" / "tiny").iterdir() if p.is_dir()]
    (row,) = pq.read_table(found / "tables" / "runs.parquet").to_pylist()
    assert row["framework"] == "mxnet" and row["status"] == "failed"
    assert "runner images build mxnet-cpu" in row["failure_reason"]
