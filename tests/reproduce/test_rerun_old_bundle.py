"""Bundles made by an older runner still verify and rerun, with their own code and recorded configs.

The fixture (tests/fixtures/bundles/README.md) was written by runner at commit 1458243: bundle schema
3, run.json without the keys today's planner adds. Its workload code refuses those keys, so a rerun
must hand each run the run.json the bundle recorded, under the recorded run id.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from tests.helpers import REPO

FIXTURE = REPO / "tests" / "fixtures" / "bundles" / "tiny-schema3.tar.gz"
IDS = {"py-a4d2009776c9", "te-e0c875f68836"}


@pytest.fixture
def old_bundle(tmp_path) -> Path:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path / "old", filter="data")
    (bundle,) = (tmp_path / "old").iterdir()
    return bundle


def _rewrite_table(bundle: Path, rel: str, drop: str) -> None:
    """Drop one column from a table and re-hash it in the manifest (the bundle's facts are unchanged)."""
    import pyarrow.parquet as pq

    path = bundle / rel
    table = pq.read_table(path)
    pq.write_table(table.drop_columns([drop]), path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["path"] == rel:
            entry.update(size=path.stat().st_size, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_a_schema_3_bundle_verifies_in_both_its_shapes(old_bundle, cli):
    """Schema 3 bundles were written with and without inference.cpu_p50_ms: both are intact."""
    from runner.bundle.reader import read_bundle

    assert json.loads((old_bundle / "manifest.json").read_text())["bundle_schema_version"] == 3
    ok = cli("bundle", "verify", old_bundle)
    assert ok.code == 0 and "intact" in ok.out, ok.out + ok.err
    assert read_bundle(old_bundle).runs.num_rows == 2
    _rewrite_table(old_bundle, "tables/inference.parquet", "cpu_p50_ms")
    again = cli("bundle", "verify", old_bundle)
    assert again.code == 0 and "intact" in again.out, again.out + again.err


def test_a_schema_3_bundle_lacking_a_column_of_its_version_is_a_problem(old_bundle):
    from runner.audit.verify import verify_bundle

    _rewrite_table(old_bundle, "tables/runs.parquet", "host_steal_max_pct")  # schema 2's column
    problems = [p.line() for p in verify_bundle(old_bundle).problems]
    assert any("lacks the declared columns ['host_steal_max_pct']" in p for p in problems), problems


def test_an_old_bundle_reruns_with_its_recorded_configs(old_bundle, cli, tmp_path, monkeypatch):
    """The bundle's own workload reads its own run.json: same run ids, bit-identical losses on the
    fixture's CPU; on another CPU the losses within their tolerances and the report says why."""
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    from runner.audit.facts import load_facts
    from runner.audit.reproduction import _other_cpu, compare_runs

    monkeypatch.chdir(tmp_path)
    result = cli("reproduce", old_bundle, "--engine", "local")
    assert result.code in (0, 1), result.out + result.err  # 1 only if a timing moved beyond its band
    assert "today's planner adds" in " ".join(result.out.split())
    (new,) = [p for p in (tmp_path / "results" / "tiny").iterdir() if p.is_dir()]
    manifest = json.loads((new / "manifest.json").read_text())
    assert {r["id"] for r in manifest["runs"]} == IDS and all(r["status"] == "ok" for r in manifest["runs"])
    for rid in IDS:  # the config the workload read is the recorded one
        assert json.loads((new / "runs" / rid / "run.json").read_text()) == json.loads(
            (old_bundle / "runs" / rid / "run.json").read_text())
    report = compare_runs(old_bundle, new)
    exact = {(c.run_id, c.metric): c.verdict for c in report.checks
             if c.metric in ("step_losses", "final_train_loss", "final_test_loss", "status")}
    assert len(exact) == 8
    other_cpu = _other_cpu(load_facts(old_bundle).cpu("py-a4d2009776c9"), load_facts(new).cpu("py-a4d2009776c9"))
    if other_cpu is None:  # the fixture's CPU (an AMD EPYC, avx512 without AMX): bit for bit
        assert set(exact.values()) == {"pass"}, exact
    else:  # another CPU: oneDNN's kernels differ, so the losses are judged by their tolerances, and it says so
        steps = [c for c in report.checks if c.metric == "step_losses"]
        assert {c.verdict for c in steps} == {"skip"} and all(other_cpu in c.detail for c in steps)
        assert {v for (_, m), v in exact.items() if m != "step_losses"} == {"pass"}, exact
