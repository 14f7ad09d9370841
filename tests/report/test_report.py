"""Report tables against hand-computed medians, t intervals and Welch verdicts; references; outputs."""

from __future__ import annotations

import csv
import dataclasses
import json

import pyarrow.parquet as pq
import pytest

from runner.errors import UsageError
from runner.report.load import load_bundles
from runner.report.stats import Stat, t975, within_noise
from runner.report.tables import STUDY, build_report
from runner.report.write import write_report
from tests.audit.cli_helpers import ensure_registered
from tests.audit.synth import default_values, make_bundle

SPEC = """\
name: hand
dataset: {name: cifar10, synthetic: {train_size: 256, test_size: 64, seed: 0}}
model: {name: simple_cnn}
frameworks: [pytorch, tensorflow]
repeats: 3
recipe: {epochs: 2, batch_size: 32, optimizer: sgd, lr: 0.05}
measurement: {warmup_steps: 1, latency_batch_sizes: [1], latency_iterations: 10, target_accuracy: 0.6}
references:
  - source: Study A (PyTorch, P100)
    match: {framework: pytorch}
    metrics: {test_accuracy: 0.8064, images_per_s: 1234.0, accuracy_epoch_2: 0.75, bogus_metric: 1.0}
"""
ACC = {"pytorch": [0.70, 0.72, 0.77], "tensorflow": [0.60, 0.61, 0.65]}
RATE = {"pytorch": [1000.0, 1100.0, 900.0], "tensorflow": [1050.0, 950.0, 1000.0]}


def values(run):
    acc, rate = ACC[run.framework][run.repeat], RATE[run.framework][run.repeat]
    ttt = None if (run.framework, run.repeat) == ("tensorflow", 0) else 10.0 + run.repeat
    return dataclasses.replace(default_values(run), test_accuracy=[acc - 0.1, acc], images_per_s=[rate, rate],
                               time_to_target_s=ttt)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("report"), spec=SPEC, values=values)


@pytest.fixture(scope="module")
def report(bundle):
    return build_report(load_bundles([bundle]))


def ours(table, **match):
    return [r for r in table.rows if r["source"] == "ours" and all(r.get(k) == v for k, v in match.items())]


def test_t_quantiles():
    assert t975(1) == 12.7062 and t975(2) == 4.3027 and t975(30) == 2.0423
    assert t975(60) == pytest.approx(2.000298, abs=2e-6)
    assert t975(120) == pytest.approx(1.979930, abs=2e-6)
    assert t975(3.5) == pytest.approx((3.1824 + 2.7764) / 2)


def test_stat_by_hand():
    s = Stat.of([0.70, 0.72, 0.77])
    # mean 0.73, s = sqrt(0.0026 / 2) = 0.0360555, half width = 4.3027 * s / sqrt(3) = 0.0895679
    assert (s.n, s.median, s.mean) == (3, 0.72, pytest.approx(0.73))
    assert s.std == pytest.approx(0.0360555128, abs=1e-9)
    assert (s.ci_low, s.ci_high) == (pytest.approx(0.6404321, abs=1e-6), pytest.approx(0.8195679, abs=1e-6))
    one = Stat.of([5.0, None])
    assert (one.n, one.median, one.ci_low) == (1, 5.0, None)
    assert Stat.of([None]) is None


def test_welch_by_hand():
    a, b = Stat.of(ACC["pytorch"]), Stat.of(ACC["tensorflow"])
    # se = sqrt(0.0013/3 + 0.0007/3) = 0.0258199, df = 3.6697, t = 2.91051: threshold 0.07515 < 0.11
    assert within_noise(a, b) is False
    assert within_noise(Stat.of(RATE["pytorch"]), Stat.of(RATE["tensorflow"])) is True
    assert within_noise(Stat.of([1.0]), b) is None


def test_summary_table(report):
    summary = report.table("summary")
    py, tf = ours(summary, framework="pytorch")[0], ours(summary, framework="tensorflow")[0]
    acc = py["final_test_accuracy"]
    assert acc.stat.median == 0.72 and acc.stat.ci_low == pytest.approx(0.6404321, abs=1e-6)
    assert acc.within_noise is False
    assert tf["final_test_accuracy"].stat.median == 0.61
    assert tf["final_test_accuracy"].stat.ci_high == pytest.approx(0.62 + 4.3027 * 0.0264575 / 3**0.5, abs=1e-6)
    assert (py["runs"], py["params"]) == ("3 ok", 62006)
    # the study's row sits right after ours, marked, with its number
    i = summary.rows.index(py)
    ref = summary.rows[i + 1]
    assert ref["source"] == f"{STUDY}: Study A (PyTorch, P100)" and ref["framework"] == "pytorch"
    assert ref["final_test_accuracy"].value == 0.8064 and ref["final_test_accuracy"].stat is None
    assert any("bogus_metric" in n for n in report.notes)


def test_throughput_gap_within_noise_is_marked(report):
    table = report.table("throughput")
    row = ours(table)[0]
    py, tf = row["pytorch|images_per_s"], row["tensorflow|images_per_s"]
    assert (py.stat.median, tf.stat.median) == (1000.0, 1000.0)
    assert py.within_noise is True and tf.within_noise is True
    assert "≈ noise" in row["gap"]
    ref = table.rows[table.rows.index(row) + 1]
    assert ref["pytorch|images_per_s"].value == 1234.0 and "tensorflow|images_per_s" not in ref


def test_accuracy_by_epoch_and_time_to_target(report):
    table = report.table("accuracy_by_epoch")
    epoch2 = ours(table, epoch=2)[0]
    assert epoch2["pytorch|test_accuracy"].stat.median == 0.72
    assert ours(table, epoch=1)[0]["tensorflow|test_accuracy"].stat.median == pytest.approx(0.51)
    ref = table.rows[table.rows.index(epoch2) + 1]
    assert ref["pytorch|test_accuracy"].value == 0.75 and ref["epoch"] == 2
    ttt = ours(report.table("time_to_target"))[0]
    assert ttt["reached"] == "pytorch 3/3; tensorflow 2/3"
    assert ttt["tensorflow|time_to_target_s"].stat.median == 11.5
    assert report.table("energy") is None and any("energy" in n for n in report.notes)


def test_written_report(bundle, tmp_path):
    out, report = write_report([bundle], tmp_path / "report")
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"report.md", "report.html", "sources.json", "tables/summary.csv", "tables/summary.parquet",
            "plots/throughput.png", "plots/accuracy_by_epoch.png", "plots/summary.png"} <= names
    rows = list(csv.DictReader((out / "tables/summary.csv").open()))
    py = next(r for r in rows if r["framework"] == "pytorch" and r["source"] == "ours")
    assert float(py["final_test_accuracy_median"]) == 0.72
    assert float(py["final_test_accuracy_ci_low"]) == pytest.approx(0.6404321, abs=1e-6)
    assert py["final_test_accuracy_n"] == "3" and py["model"] == "simple_cnn"
    table = pq.read_table(out / "tables/summary.parquet")
    assert table.schema.field("final_test_accuracy_median").metadata[b"unit"] == b"fraction"
    md = (out / "report.md").read_text()
    assert "72.00% [64.04, 81.96] n=3" in md and "plots/throughput.png" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len([n for n in names if n.endswith(".png")])
    assert "src='http" not in html and "href=" not in html
    assert json.loads((out / "sources.json").read_text())["bundles"][0]["runs"] == 6
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(UsageError, match="never overwritten"):
        write_report([bundle], tmp_path / "report")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_cli(bundle, tmp_path, cli, monkeypatch):
    ensure_registered()
    monkeypatch.setenv("COLUMNS", "250")
    out = cli("compare", bundle)
    assert out.code == 0 and "Final results" in out.out and "reported by the study" in out.out
    md = cli("compare", bundle, "--format", "markdown", "--table", "throughput")
    assert md.code == 0 and md.out.startswith("### Training throughput")
    bad = cli("compare", bundle, "--table", "nope")
    assert bad.code == 2 and "--table" in bad.err
    written = cli("report", bundle, "--out", tmp_path / "r", "--no-plots")
    assert written.code == 0 and not (tmp_path / "r" / "plots").exists()


def test_bad_bundles_are_refused_with_one_line(bundle, tmp_path, cli):
    ensure_registered()
    import shutil

    newer = shutil.copytree(bundle, tmp_path / "newer")
    m = json.loads((newer / "manifest.json").read_text())
    m["bundle_schema_version"] = 99
    (newer / "manifest.json").write_text(json.dumps(m))
    out = cli("compare", newer)
    assert out.code == 2 and "newer than this runner reads" in out.err and out.err.count("\n") == 1
    truncated = shutil.copytree(bundle, tmp_path / "truncated")
    runs = truncated / "tables/runs.parquet"
    runs.write_bytes(runs.read_bytes()[:100])
    out = cli("report", truncated, "--out", tmp_path / "never")
    assert out.code == 2 and "runs.parquet" in out.err
    assert not (tmp_path / "never").exists()
    escaping = shutil.copytree(bundle, tmp_path / "escaping")
    m = json.loads((escaping / "manifest.json").read_text())
    m["tables"]["epochs"]["path"] = "../truncated/tables/epochs.parquet"
    (escaping / "manifest.json").write_text(json.dumps(m))
    out = cli("compare", escaping)
    assert out.code == 2 and "unsafe path" in out.err


def _png_size(data: bytes) -> tuple[int, int]:
    import struct

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])  # the IHDR chunk: width, height


def test_figures_stay_figures_whatever_the_rows_hold():
    """A 10,000-character grid point (an edited bundle) or hundreds of configurations (a big sweep):
    labels are cut for display and a figure draws at most MAX_GROUPS bar groups / MAX_PANELS panels,
    so its size and the time to draw it stay bounded (a 10,000-character label took 94 s)."""
    pytest.importorskip("matplotlib")
    from runner.report import plots
    from runner.report.model import Cell, Column, ReportTable

    cols = [Column("params_json", "grid point"), Column("batch_size", "batch", kind="int"),
            Column("pytorch|acc", "acc", kind="cell")]
    long = ReportTable("summary", "long", cols, rows=[
        {"source": "ours", "params_json": "x" * 10_000, "pytorch|acc": Cell(value=0.5)},
        {"source": "ours", "params_json": "y" * 10_000, "pytorch|acc": Cell(value=0.6)}])
    width, height = _png_size(plots._bars(long, ["pytorch"], "acc", "accuracy"))
    assert width < 1500 and height < 1500
    many = ReportTable("summary", "many", cols, rows=[
        {"source": "ours", "params_json": f"lr={i}", "batch_size": b, "pytorch|acc": Cell(value=0.5)}
        for i in range(300) for b in (32, 64)])
    width, _ = _png_size(plots._bars(many, ["pytorch"], "acc", "accuracy"))
    assert width < 110 * (1.2 * plots.MAX_GROUPS * 0.6 + 2) + 400  # the figure of MAX_GROUPS groups
    width, _ = _png_size(plots._lines(many, ["pytorch"], "batch_size", "acc", "batch", "accuracy", ()))
    assert width < 110 * 5 * plots.MAX_PANELS + 400
