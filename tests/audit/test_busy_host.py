"""End to end: a real CPU hog beside a real run is recorded as other load, and the verdict names it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from tests.helpers import REPO
from tests.reproduce.conftest import cpu_images, docker_client  # noqa: F401 - fixtures

pytest.importorskip("torch")

TINY = REPO / "tests" / "specs" / "tiny.yaml"
HOG = "import time\nend = time.time() + 120\nwhile time.time() < end:\n    pass\n"


def _bundles(results: Path) -> list[Path]:
    return sorted(p for p in (results / "tiny").iterdir() if p.is_dir() and not p.name.endswith(".partial"))


def test_a_cpu_hog_beside_a_local_run_is_recorded_and_named(cli, tmp_path, monkeypatch):
    from runner.audit.reproduction import RUN_METRICS
    from tests.width import fragments, widest_line

    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "one.yaml"
    spec.write_text(TINY.read_text().replace("frameworks: [pytorch, tensorflow]", "frameworks: [pytorch]"))
    hog = subprocess.Popen([sys.executable, "-c", HOG])
    try:
        result = cli("reproduce", spec, "--engine", "local")
    finally:
        hog.kill()
        hog.wait()
    assert result.code == 0, result.err
    (original,) = _bundles(tmp_path / "results")
    run = pq.read_table(original / "tables" / "runs.parquet").to_pylist()[0]
    one_core = 100 / psutil.cpu_count()  # the hog keeps one core busy: this share of the machine
    assert run["host_other_cpu_mean_pct"] > 0.5 * one_core, run
    assert run["host_other_cpu_max_pct"] >= run["host_other_cpu_mean_pct"]
    assert run["host_steal_mean_pct"] is not None
    telemetry = pq.read_table(original / "tables" / "telemetry.parquet").to_pylist()
    host = [r for r in telemetry if r["source"] == "host"]
    assert host and any(r["other_cpu_pct"] for r in host)
    assert {r["source"] for r in telemetry} >= {"host", "process"}

    monkeypatch.setenv("COLUMNS", "80")  # the rerun, quiet, and its verdict as an 80-column terminal shows it
    rerun = cli("reproduce", original, "--engine", "local")
    assert rerun.code in (0, 1), rerun.err
    ids = [run["run_id"]]
    assert fragments(rerun.out, [*RUN_METRICS, "latency_per_image_ms", "step_losses", *ids]) == [], rerun.out
    assert widest_line(rerun.out) <= 80
    assert "full table: " in rerun.out
    if rerun.code == 1:  # a timing moved beyond its band: the busy original is named
        assert "ORIGINAL" in rerun.err and ("host was busy" in rerun.err or "hosts were busy" in rerun.err)


@pytest.mark.docker
@pytest.mark.usefixtures("cpu_images")  # the CPU images, built if missing (tests/reproduce/conftest.py)
def test_a_cpu_hog_beside_a_container_run_is_other_load(cli, tmp_path, monkeypatch):
    """The same through the docker engine: the container's own CPU is the run's, the hog is other load."""
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "one.yaml"
    spec.write_text(TINY.read_text().replace("frameworks: [pytorch, tensorflow]", "frameworks: [pytorch]"))
    hog = subprocess.Popen([sys.executable, "-c", HOG])
    try:
        result = cli("reproduce", spec, "--engine", "docker", "--build", "never")
    finally:
        hog.kill()
        hog.wait()
    assert result.code == 0, result.err
    (bundle,) = _bundles(tmp_path / "results")
    run = pq.read_table(bundle / "tables" / "runs.parquet").to_pylist()[0]
    assert run["engine"] == "docker" and run["host_other_cpu_mean_pct"] > 0.5 * 100 / psutil.cpu_count(), run
    sources = {r["source"] for r in pq.read_table(bundle / "tables" / "telemetry.parquet").to_pylist()}
    assert sources >= {"host", "container"} and "gpu" not in sources  # a CPU run is given no GPU
