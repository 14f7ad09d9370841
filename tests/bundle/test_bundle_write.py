"""BundleWriter: tables with declared schemas and units, partial -> final, never overwrite, resume."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from runner.bundle.reader import read_bundle, verify_bundle
from runner.bundle.schemas import BUNDLE_SCHEMA_VERSION, TABLES, unit
from runner.bundle.writer import BundleWriter
from runner.errors import BundleError
from runner.fingerprint.code import code_fingerprint
from runner.fingerprint.gpu import gpu_fingerprint
from runner.fingerprint.host import host_fingerprint
from runner.fingerprint.redact import Redaction
from runner.telemetry.sampler import TelemetrySampler
from tests.bundle.bundle_helpers import STEPS_PER_EPOCH, make_plan, write_run
from tests.fingerprint.fake_pynvml import FakeGpu, make_fake_nvml

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def gpu_samples(throttle: list[int]) -> list[dict]:
    nvml = make_fake_nvml([FakeGpu(energy_mj=[10_000, 60_000, 110_000], throttle=throttle)])
    sampler = TelemetrySampler(interval_s=10.0, gpus=[0], nvml=nvml, host=False)
    for _ in range(3):
        sampler.sample_once()
    return sampler.stop()


@pytest.fixture
def two_runs(tmp_path):
    """A bundle of two runs: one ok, one killed in its second epoch (torn events, no run_end)."""
    plan, text = make_plan(tmp_path)
    ok_run, killed_run = plan.runs
    write_run(tmp_path / "out-ok", ok_run)
    write_run(tmp_path / "out-killed", killed_run, kill_in_epoch=1)
    writer = BundleWriter.create(tmp_path / "results", plan, text, Redaction.for_this_machine(), now=NOW)
    writer.add_environment("host", host_fingerprint(client=None))
    writer.add_environment("gpu", gpu_fingerprint(make_fake_nvml()))
    writer.add_environment("dataset", {"root_sha256": "d" * 64, "files": 7, "bytes": 1000})
    writer.add_run(ok_run, status="ok", out_dir=tmp_path / "out-ok", log_text="epoch 0\nepoch 1\n",
                   image_id="sha256:" + "a" * 64, telemetry=gpu_samples([0, 0x40, 0]),
                   telemetry_status={"errors": {}}, environment={"engine": "docker"})
    writer.add_run(killed_run, status="failed", reason="killed: exit code 137", out_dir=tmp_path / "out-killed",
                   log_text="epoch 0\n", image_id="sha256:" + "b" * 64, telemetry=[],
                   telemetry_status={"errors": {"container": 2}}, environment={"engine": "docker"})
    return plan, writer


def test_every_table_has_its_declared_schema_and_units(two_runs):
    plan, writer = two_runs
    path = writer.finalize()
    bundle = read_bundle(path)
    assert set(bundle.tables) == set(TABLES)
    for name, table in bundle.tables.items():
        assert table.schema.equals(TABLES[name], check_metadata=True), name
        on_disk = pq.read_schema(path / f"tables/{name}.parquet")
        assert on_disk.metadata[b"bundle_schema_version"] == str(BUNDLE_SCHEMA_VERSION).encode()
    s = {n: t.schema for n, t in bundle.tables.items()}
    assert unit(s["steps"], "data_time_s") == "s" and unit(s["runs"], "mean_images_per_s") == "images/s"
    assert unit(s["latency"], "p50_ms") == "ms" and unit(s["runs"], "peak_host_memory_bytes") == "bytes"
    assert unit(s["telemetry"], "power_w") == "W" and unit(s["telemetry"], "energy_j") == "J"
    assert unit(s["runs"], "final_test_accuracy") == "fraction" and unit(s["runs"], "run_id") == ""

    ok_id, killed_id = (r.id for r in plan.runs)
    runs = {r["run_id"]: r for r in bundle.runs.to_pylist()}
    ok, killed = runs[ok_id], runs[killed_id]
    assert ok["status"] == "ok" and ok["failure_reason"] is None
    assert ok["epochs_completed"] == 2 and ok["final_test_accuracy"] == pytest.approx(0.35)
    assert ok["time_to_target_s"] == 0.4 and ok["target_accuracy"] == 0.3
    assert ok["mean_images_per_s"] == pytest.approx(1280.0) and ok["training_time_s"] == pytest.approx(0.4)
    assert json.loads(ok["latency_p50_ms_json"]) == {"1": 1.5, "8": 4.0}
    assert ok["params_trainable"] == 62006 and ok["flops_per_image"] == 1_300_000
    assert ok["gpu_energy_j"] == pytest.approx(100.0) and ok["gpu_energy_method"] == "counter"
    assert ok["throttle_flags"] == ["thermal"] and ok["telemetry_errors"] == 0
    assert killed["status"] == "failed" and killed["events_truncated"] is True
    assert "exit code 137" in killed["failure_reason"] and "without run_end" in killed["failure_reason"]
    assert killed["epochs_completed"] == 1 and killed["telemetry_errors"] == 2
    assert killed["latency_p50_ms_json"] is None and killed["throttle_flags"] == []
    for row in (ok, killed):  # environment on every row
        assert row["framework_version"] == "9.9.9" and row["host_cpu_model"]
        assert row["spec_sha256"] == plan.spec_hash and row["dataset_sha256"] == "d" * 64
        assert row["code_tree_sha256"] == code_fingerprint()["tree_sha256"]
        assert row["gpu_name"] == "NVIDIA H100 80GB HBM3" and row["gpu_driver_version"] == "550.54.15"
        assert row["engine"] == "docker" and row["image_id"].startswith("sha256:")

    steps = bundle.tables["steps"]
    assert steps.num_rows == 2 * STEPS_PER_EPOCH + STEPS_PER_EPOCH + STEPS_PER_EPOCH // 2 + 1
    assert bundle.tables["epochs"].num_rows == 3 and bundle.tables["latency"].num_rows == 2
    assert bundle.tables["telemetry"].num_rows == 3
    assert steps.column("warmup").to_pylist()[:3] == [True, True, False]

    m = bundle.manifest
    assert m["bundle_schema_version"] == BUNDLE_SCHEMA_VERSION and m["spec_sha256"] == plan.spec_hash
    assert [(r["id"], r["status"]) for r in m["runs"]] == [(ok_id, "ok"), (killed_id, "failed")]
    assert (path / "spec.yaml").read_text().startswith("# two frameworks")
    listed = {f["path"] for f in m["files"]}
    assert {"tables/steps.parquet", f"runs/{ok_id}/events.jsonl", f"runs/{ok_id}/result.json",
            f"logs/{killed_id}.log", "environment/host.json", "environment/gpu.json",
            "code/runner/workload/events.py"} <= listed
    assert all(len(f["sha256"]) == 64 and f["size"] >= 0 for f in m["files"])
    assert not any(p.startswith(".") or "/." in p for p in listed)  # no state, lock or fragments left
    assert verify_bundle(path) == []
    torn = (path / f"runs/{killed_id}/events.jsonl").read_bytes()
    assert torn.endswith(b'{"type":"step","t":17000000')  # the evidence is kept


def test_partial_is_renamed_only_at_finalize(two_runs):
    _, writer = two_runs
    partial, final = writer.partial, writer.final_path
    assert partial.name == "20260102T030405Z-" + final.name.split("-", 1)[1] + ".partial"
    assert partial.is_dir() and not final.exists()
    assert final.parent.name == "bundle-test"
    path = writer.finalize()
    assert path == final and final.is_dir() and not partial.exists()


def test_an_existing_bundle_is_never_overwritten(tmp_path):
    plan, text = make_plan(tmp_path)
    redaction = Redaction.for_this_machine()
    first = BundleWriter.create(tmp_path / "r", plan, text, redaction, now=NOW).finalize()
    before = {p: p.read_bytes() for p in first.rglob("*") if p.is_file()}
    with pytest.raises(BundleError, match="never overwritten"):
        BundleWriter.create(tmp_path / "r", plan, text, redaction, now=NOW)
    # Another writer finishing first: finalize refuses, the partial stays for a later try.
    (first.parent / "late").mkdir()
    first.rename(first.parent / "late" / first.name)
    writer = BundleWriter.create(tmp_path / "r", plan, text, redaction, now=NOW)
    (first.parent / "late" / first.name).rename(first)
    with pytest.raises(BundleError, match="never overwritten"):
        writer.finalize()
    assert {p: p.read_bytes() for p in first.rglob("*") if p.is_file()} == before
    assert writer.partial.is_dir()


def test_a_partial_in_the_way_is_an_error(tmp_path):
    plan, text = make_plan(tmp_path)
    writer = BundleWriter.create(tmp_path / "r", plan, text, Redaction.for_this_machine(), now=NOW)
    with pytest.raises(BundleError, match="resume it"):
        BundleWriter.create(tmp_path / "r", plan, text, Redaction.for_this_machine(), now=NOW)
    writer.close()


def test_resume_reports_completed_runs_and_finishes(tmp_path):
    plan, text = make_plan(tmp_path)
    a, b = plan.runs
    write_run(tmp_path / "a", a)
    write_run(tmp_path / "b", b, end={"status": "failed", "reason": "diverged", "error": "loss is nan",
                                      "wall_s": 2.0})
    redaction = Redaction.for_this_machine()
    writer = BundleWriter.create(tmp_path / "r", plan, text, redaction, now=NOW)
    writer.add_run(a, status="ok", out_dir=tmp_path / "a")
    with pytest.raises(BundleError, match="another runner process"):
        BundleWriter.resume(writer.partial, redaction)  # the first writer still holds it
    writer.close()  # interrupted

    resumed = BundleWriter.resume(writer.partial, redaction, plan)
    assert resumed.completed_run_ids == {a.id} and resumed.completed == {a.id: "ok"}
    resumed.add_run(b, status="ok", out_dir=tmp_path / "b")
    assert resumed.completed == {a.id: "ok", b.id: "failed"}
    resumed.close()

    again = BundleWriter.resume(writer.partial, redaction)
    (again.partial / f".fragments/steps/{b.id}.parquet").unlink()  # a run half-written
    again.close()
    again = BundleWriter.resume(writer.partial, redaction)
    assert again.completed_run_ids == {a.id}
    again.add_run(b, status="ok", out_dir=tmp_path / "b")
    path = again.finalize()
    runs = {r["run_id"]: r for r in read_bundle(path).runs.to_pylist()}
    assert runs[b.id]["status"] == "failed" and runs[b.id]["failure_reason"] == "diverged"
    assert runs[b.id]["error"] == "loss is nan"


def test_resume_refuses_another_spec_and_non_partials(tmp_path):
    plan, text = make_plan(tmp_path)
    (tmp_path / "other").mkdir()
    other, _ = make_plan(tmp_path / "other", text.replace("lr: 0.05", "lr: 0.1"))
    writer = BundleWriter.create(tmp_path / "r", plan, text, Redaction.for_this_machine(), now=NOW)
    writer.close()
    with pytest.raises(BundleError, match="different spec"):
        BundleWriter.resume(writer.partial, Redaction.for_this_machine(), other)
    with pytest.raises(BundleError, match="not an interrupted bundle"):
        BundleWriter.resume(tmp_path, Redaction.for_this_machine())


def test_runs_never_added_are_rows_with_status_not_run(tmp_path):
    plan, text = make_plan(tmp_path)
    write_run(tmp_path / "a", plan.runs[0])
    writer = BundleWriter.create(tmp_path / "r", plan, text, Redaction.for_this_machine(), now=NOW)
    writer.add_run(plan.runs[0], status="ok", out_dir=tmp_path / "a")
    bundle = read_bundle(writer.finalize())
    assert bundle.runs.column("status").to_pylist() == ["ok", "not_run"]
    assert [r["status"] for r in bundle.manifest["runs"]] == ["ok", "not_run"]


def test_a_run_that_never_started(tmp_path):
    plan, text = make_plan(tmp_path)
    writer = BundleWriter.create(tmp_path / "r", plan, text, Redaction.for_this_machine(), now=NOW)
    (tmp_path / "empty").mkdir()
    row = writer.add_run(plan.runs[0], status="failed", reason="image not found", out_dir=tmp_path / "empty")
    assert row["status"] == "failed"
    assert row["failure_reason"] == "image not found; no events were recorded (the workload did not start)"
    with pytest.raises(ValueError, match="status"):
        writer.add_run(plan.runs[1], status="weird", out_dir=tmp_path / "empty")
    writer.close()
