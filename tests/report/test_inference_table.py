"""`runner compare --table inference`: frameworks side by side per precision and batch size, from
inference rows that went through the real bundle writer (events -> Parquet -> report)."""

from __future__ import annotations

import json

from runner.audit.verify import verify_bundle
from runner.bundle.writer import BundleWriter
from runner.fingerprint.redact import Redaction
from runner.report.load import load_bundles
from runner.report.output import markdown_table
from runner.report.tables import build_report
from tests.audit.synth import DATASET_SHA, default_values, environment, make_plan, write_events

SPEC = """\
name: quant
dataset: {name: cifar10, synthetic: {train_size: 256, test_size: 64, seed: 0}}
model: {name: simple_cnn}
frameworks: [pytorch, tensorflow]
repeats: 2
recipe: {epochs: 2, batch_size: 32, optimizer: sgd, lr: 0.05}
measurement: {inference: {precisions: [fp32, int8], batch_sizes: [1, 8], calibration_images: 64}}
"""
# framework -> precision -> (p50 ms per batch of 1, test accuracy, model bytes)
FIGURES = {"pytorch": {"fp32": (4.0, 0.80, 1_400_000), "int8": (1.0, 0.79, 370_000)},
           "tensorflow": {"fp32": (5.0, 0.81, 1_450_000), "int8": (2.5, 0.78, 368_000)}}


def inference_events(run, broken: bool = False) -> list[str]:
    lines = []
    fw = FIGURES[run.framework]
    for precision, (p50, acc, size) in fw.items():
        for bs in (1, 8):
            ms = p50 * bs * (1.0 + 0.01 * run.repeat)
            base = fw["fp32"][0] * bs * (1.0 + 0.01 * run.repeat)
            row = {"precision": precision, "batch_size": bs, "runtime": "x", "model_format": "y",
                   "model_bytes": size, "test_accuracy": acc, "accuracy_drop": fw["fp32"][1] - acc,
                   "inputs_sha256": "a" * 64, "calibration_sha256": "b" * 64 if precision == "int8" else None,
                   "p50_ms": ms, "p90_ms": ms * 1.1, "p99_ms": ms * 1.2, "per_image_p50_ms": ms / bs,
                   "per_image_p90_ms": ms * 1.1 / bs, "per_image_p99_ms": ms * 1.2 / bs, "images_per_s": 1000 * bs / ms,
                   "speedup": base / ms, "error": None}
            if broken and precision == "int8":
                row = {"precision": "int8", "batch_size": bs, "error": "RuntimeError: no kernel"}
            lines.append(json.dumps({"type": "inference", "t": 1.0, "run_id": run.id, **row}))
    return lines


def make(tmp_path, broken_run: int | None = None):
    plan, spec = make_plan(tmp_path / "_spec", SPEC)
    writer = BundleWriter.create(tmp_path / "results", plan, spec, Redaction(), fsync=False)
    for name, data in environment().items():
        writer.add_environment(name, data)
    for i, run in enumerate(plan.runs):
        out = tmp_path / "_runs" / run.id
        write_events(out, run, default_values(run))
        with (out / "events.jsonl").open("a") as fh:
            fh.write("\n".join(inference_events(run, broken=i == broken_run)) + "\n")
        writer.add_run(run, status="ok", out_dir=out, environment={"engine": "docker", "dataset_sha256": DATASET_SHA})
    return writer.finalize()


def test_inference_table_sets_frameworks_side_by_side(tmp_path):
    bundle = make(tmp_path)
    assert verify_bundle(bundle).problems == []
    table = build_report(load_bundles([bundle])).table("inference")
    assert table is not None
    keys = [(r["precision"], r["inference_batch"]) for r in table.rows]
    assert keys == [("fp32", 1), ("fp32", 8), ("int8", 1), ("int8", 8)]
    int8_b1 = table.rows[2]
    # medians over the two repeats (1.00x and 1.01x the base figures)
    assert abs(int8_b1["pytorch|p50_ms"].stat.median - 1.005) < 1e-9
    assert abs(int8_b1["tensorflow|per_image_p50_ms"].stat.median - 2.5125) < 1e-9
    assert abs(int8_b1["pytorch|speedup"].stat.median - 4.0) < 1e-9
    assert abs(int8_b1["tensorflow|speedup"].stat.median - 2.0) < 1e-9
    assert abs(int8_b1["pytorch|accuracy_drop"].stat.median - 0.01) < 1e-9
    assert abs(int8_b1["tensorflow|accuracy_drop"].stat.median - 0.03) < 1e-9
    assert int8_b1["pytorch|model_bytes"].stat.median == 370_000
    assert table.rows[0]["pytorch|speedup"].stat.median == 1.0
    text = markdown_table(table)
    assert "pytorch speedup vs fp32" in text and "tensorflow acc drop vs fp32" in text
    assert "ms/batch p99" in text and "ms/image p90" in text and "370,000" in text
    assert not any("DIFFERENT inputs" in n for n in table.notes)


def test_a_failed_precision_is_noted_not_averaged(tmp_path):
    bundle = make(tmp_path, broken_run=0)
    table = build_report(load_bundles([bundle])).table("inference")
    int8 = [r for r in table.rows if r["precision"] == "int8"]
    assert int8[0]["pytorch|p50_ms"].stat.n == 1  # the broken pytorch run's int8 rows are left out
    assert any("failed precisions" in n and "RuntimeError: no kernel" in n for n in table.notes)


def test_a_schema_2_bundle_without_the_table_still_verifies_and_reports(tmp_path):
    """Bundles written before the inference table (schema 2) verify clean and compare as before."""
    import hashlib

    import pyarrow.parquet as pq

    from runner.bundle.reader import FACTS_FILE
    from runner.bundle.schemas import ADDED_IN

    bundle = make(tmp_path)
    m = json.loads((bundle / "manifest.json").read_text())
    (bundle / m["tables"].pop("inference")["path"]).unlink()
    files = []
    for e in m["files"]:
        path = bundle / e["path"]
        if not path.exists():
            continue
        if e["path"].endswith(".parquet"):
            table = pq.read_table(path)
            name = table.schema.metadata[b"table"].decode()  # columns added since schema 2 are not there
            table = table.drop_columns([c for c in table.column_names if ADDED_IN.get((name, c), 1) > 2])
            meta = dict(table.schema.metadata) | {b"bundle_schema_version": b"2"}
            pq.write_table(table.replace_schema_metadata(meta), path)
        if e["path"] == FACTS_FILE:
            facts = json.loads(path.read_text())
            facts["bundle_schema_version"] = 2
            facts["tables"].pop("inference")
            path.write_text(json.dumps(facts))
        data = path.read_bytes()
        files.append(dict(e, size=len(data), sha256=hashlib.sha256(data).hexdigest()))
    m.update(bundle_schema_version=2, files=files)
    (bundle / "manifest.json").write_text(json.dumps(m))
    assert verify_bundle(bundle).problems == []
    report = build_report(load_bundles([bundle]))
    assert report.table("inference") is None and report.table("summary") is not None


def test_runner_report_writes_the_inference_table(tmp_path):
    from runner.report.write import write_report

    bundle = make(tmp_path)
    out, report = write_report([bundle], tmp_path / "report", plots=False)
    text = (out / "tables" / "inference.csv").read_text()
    assert "pytorch|speedup_median" in text.splitlines()[0] and len(text.splitlines()) == 5
