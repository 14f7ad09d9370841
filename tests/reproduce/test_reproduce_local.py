"""`runner reproduce` through the local engine: a complete bundle, failed runs as rows, no secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers import REPO, files_under

pytest.importorskip("torch")
pytest.importorskip("tensorflow")

TINY = REPO / "tests" / "specs" / "tiny.yaml"
SECRET = "s3cr3t-token-value-4711"


def _bundle(results: Path) -> Path:
    bundles = [p for p in (results / "tiny").iterdir() if not p.name.endswith(".partial")]
    assert len(bundles) == 1, bundles
    return bundles[0]


@pytest.fixture(scope="module")
def local_bundle(tmp_path_factory):
    """One local reproduction shared by the tests below (it takes a while on 2 cores)."""
    import os

    from runner.cli.main import main

    work = tmp_path_factory.mktemp("local")
    old = os.getcwd()
    os.environ["MY_API_TOKEN"] = SECRET
    os.chdir(work)
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["reproduce", str(TINY), "--engine", "local"])
    finally:
        os.chdir(old)
        del os.environ["MY_API_TOKEN"]
    assert exit_info.value.code == 0
    return _bundle(work / "results")


def test_every_table_and_file(local_bundle: Path):
    manifest = json.loads((local_bundle / "manifest.json").read_text())
    assert {r["status"] for r in manifest["runs"]} == {"ok"}
    for table in ("runs", "epochs", "steps", "latency", "telemetry"):
        assert (local_bundle / "tables" / f"{table}.parquet").is_file()
    runs = pq.read_table(local_bundle / "tables" / "runs.parquet").to_pylist()
    assert {r["framework"] for r in runs} == {"pytorch", "tensorflow"}
    assert pq.read_table(local_bundle / "tables" / "steps.parquet").num_rows >= 2 * (256 // 32)
    assert pq.read_table(local_bundle / "tables" / "latency.parquet").num_rows >= 2
    for run in manifest["runs"]:
        assert (local_bundle / "runs" / run["id"] / "run.json").is_file()
        assert (local_bundle / "logs" / f"{run['id']}.log").is_file()
    engine = json.loads((local_bundle / "environment" / "engine.json").read_text())
    assert engine["kind"] == "local" and engine["isolated"] is False
    assert (local_bundle / "code" / "runner" / "workload" / "__main__.py").is_file()


def test_no_secret_anywhere(local_bundle: Path):
    for path in files_under(local_bundle):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_bad_spec_writes_nothing(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = REPO / "tests" / "specs" / "bad" / "08-negative-batch.yaml"
    result = cli("reproduce", bad, "--engine", "local")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1
    assert files_under(tmp_path) == set()


def test_missing_dataset_is_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # the published spec on this machine's CPU (as a cuda spec it is refused for the GPU first)
    text = (REPO / "experiments" / "cnn-cifar10.yaml").read_text()
    spec = tmp_path / "cnn-cifar10-cpu.yaml"
    spec.write_text(text.replace("variant: cuda", "variant: cpu").replace("{gpus: 1, shm: 2g}", "{shm: 2g}"))
    result = cli("reproduce", spec, "--engine", "local")
    assert result.code == 2, result
    assert "dataset.path" in result.err and "runner data fetch" in result.err
    assert not (tmp_path / "results").exists()


def test_failed_run_is_a_row(cli, tmp_path, monkeypatch):
    """A framework that cannot run (a diverging lr here) gives a failed row; the others complete."""
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "div.yaml"
    text = TINY.read_text().replace("name: tiny", "name: tiny").replace("lr: 0.01", "lr: 1.0e+30")
    text += "sweeps:\n  - {name: s, grid: {lr: [0.01, 1.0e+30]}}\n"
    spec.write_text(text.replace("frameworks: [pytorch, tensorflow]", "frameworks: [pytorch]"))
    result = cli("reproduce", spec, "--engine", "local")
    assert result.code == 0, result.err
    runs = pq.read_table(_bundle(tmp_path / "results") / "tables" / "runs.parquet").to_pylist()
    by_lr = {r["lr"]: r for r in runs}
    assert by_lr[0.01]["status"] == "ok"
    assert by_lr[1e30]["status"] == "failed" and by_lr[1e30]["failure_reason"]
