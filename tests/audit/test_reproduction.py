"""compare_runs: a bundle reproduces itself; a changed loss, accuracy or throughput is a named miss."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from runner.audit.reproduction import MISS, MISSING, PASS, SKIP, compare_runs, report_json
from runner.audit.tolerances import TOLERANCES
from runner.errors import BundleError
from tests.audit.synth import IMAGE_IDS, default_values, make_bundle, make_plan
from tests.audit.test_verify import SMALL

REPEATS = SMALL.replace("recipe:", "repeats: 3\nrecipe:").replace("deterministic: true", "deterministic: false")


def checks(report, metric: str, framework: str | None = None):
    return [c for c in report.checks if c.metric == metric and (framework is None or c.framework == framework)]


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("orig"), spec=SMALL)


def test_a_bundle_reproduces_itself(original):
    report = compare_runs(original, original)
    assert report.ok, report.misses
    steps = checks(report, "step_losses")
    assert len(steps) == 2 and all(c.verdict == PASS for c in steps)
    assert all(c.tolerance.startswith("bit-identical") for c in checks(report, "final_train_loss"))
    assert report.provenance == []
    assert "reproduced" in report.to_markdown()


def test_one_changed_loss_is_a_bit_identity_miss(original, tmp_path):
    plan, _ = make_plan(tmp_path / "spec", SMALL)
    victim = plan.runs[0].id

    def one_ulp_off(run):
        v = default_values(run)
        if run.id == victim:
            v.losses[3] = float(np.nextafter(v.losses[3], 10.0))  # the smallest possible change
        return v

    new = make_bundle(tmp_path, spec=SMALL, values=one_ulp_off, now=None)
    report = compare_runs(original, new)
    assert not report.ok
    assert [(c.run_id, c.metric, c.verdict) for c in report.misses] == [(victim, "step_losses", MISS)]
    miss = report.misses[0]
    assert "1 of 8 steps differ; first at epoch 0 step 3" in miss.detail
    md = report.to_markdown()
    assert "**MISS**" in md and "NOT reproduced" in md


def test_accuracy_band_from_the_seed_spread(tmp_path):
    plan, _ = make_plan(tmp_path / "spec", REPEATS)
    accs = {0: 0.70, 1: 0.72, 2: 0.74}  # std 0.02 -> band 3 x 0.02 = 0.06

    def values(shift: float, only_repeat: int | None = None):
        def make(run):
            v = default_values(run)
            acc = accs[run.repeat] + (shift if only_repeat in (None, run.repeat) else 0.0)
            return dataclasses.replace(v, test_accuracy=[acc - 0.1, acc])
        return make

    orig = make_bundle(tmp_path / "o", spec=REPEATS, values=values(0.0))
    close = make_bundle(tmp_path / "c", spec=REPEATS, values=values(0.05, only_repeat=0))
    far = make_bundle(tmp_path / "f", spec=REPEATS, values=values(0.07, only_repeat=0))

    ok = compare_runs(orig, close)
    acc = checks(ok, "final_test_accuracy", "pytorch")
    assert {c.verdict for c in acc} == {PASS}
    assert acc[0].tolerance.startswith("±0.06 (3 x std 0.02 of 3 repeats")
    # not deterministic: the step losses are not compared, the final losses use the spread rule
    assert {c.verdict for c in checks(ok, "step_losses")} == {SKIP}
    assert all("std" in c.tolerance or "fixed" in c.tolerance for c in checks(ok, "final_train_loss"))

    bad = compare_runs(orig, far)
    missed = {(c.framework, c.metric) for c in bad.misses}
    assert ("pytorch", "final_test_accuracy") in missed and ("tensorflow", "final_test_accuracy") in missed
    assert not any(m == "final_train_accuracy" for _, m in missed)


def test_fixed_accuracy_band_and_throughput_band(original, tmp_path):
    def shifted(acc_shift: float, rate: float):
        def make(run):
            v = default_values(run)
            return dataclasses.replace(v, test_accuracy=[a + acc_shift for a in v.test_accuracy],
                                       images_per_s=[r * rate for r in v.images_per_s])
        return make

    inside = compare_runs(original, make_bundle(tmp_path / "in", spec=SMALL, values=shifted(0.019, 1.09)))
    assert {c.verdict for c in checks(inside, "final_test_accuracy")} == {PASS}
    assert checks(inside, "final_test_accuracy")[0].tolerance.startswith("±0.02 (fixed")
    assert {c.verdict for c in checks(inside, "mean_images_per_s")} == {PASS}

    outside = compare_runs(original, make_bundle(tmp_path / "out", spec=SMALL, values=shifted(0.021, 1.11)))
    assert {c.verdict for c in checks(outside, "final_test_accuracy")} == {MISS}
    thr = checks(outside, "mean_images_per_s")
    assert {c.verdict for c in thr} == {MISS} and thr[0].detail == "+11.0%"
    assert thr[0].tolerance == f"±{TOLERANCES['mean_images_per_s'].relative['cpu']:.0%} (cpu)"


def test_a_missing_run_and_a_different_image_explain_the_miss(original, tmp_path):
    plan, _ = make_plan(tmp_path / "spec", SMALL)
    tf_run = next(r.id for r in plan.runs if r.framework == "tensorflow")
    new = make_bundle(tmp_path, spec=SMALL, skip={tf_run},
                      image_ids=IMAGE_IDS | {"pytorch": "sha256:" + "ee" * 32})
    report = compare_runs(original, new)
    assert not report.ok
    tf_checks = [c for c in report.checks if c.run_id == tf_run]
    assert {(c.metric, c.verdict) for c in tf_checks} >= {("status", MISS), ("final_test_accuracy", MISSING)}
    assert report.provenance[0].field == "pytorch.image_id"
    md = report.to_markdown()
    assert "What differs" in md and "pytorch.image_id" in md
    assert report_json(report)["ok"] is False


def test_a_failed_original_run_is_not_judged(tmp_path):
    plan, _ = make_plan(tmp_path / "spec", SMALL)
    failed = plan.runs[1].id

    def values(run):
        v = default_values(run)
        return dataclasses.replace(v, status="failed") if run.id == failed else v

    orig = make_bundle(tmp_path / "o", spec=SMALL, values=values)
    report = compare_runs(orig, orig)
    assert report.ok
    assert [c.verdict for c in report.checks if c.run_id == failed] == [SKIP]



def _loaded(rate: float, host_load: tuple[float, float] | None):
    def make(run):
        v = default_values(run)
        return dataclasses.replace(v, images_per_s=[r * rate for r in v.images_per_s], host_load=host_load)
    return make


@pytest.fixture(scope="module")
def busy_pair(tmp_path_factory):
    """The smoke case: recorded while another process loaded the CPU (92 img/s), rerun quiet (813)."""
    tmp = tmp_path_factory.mktemp("busy")
    busy = make_bundle(tmp / "busy", spec=SMALL, values=_loaded(92 / 1000, (48.0, 0.0)))
    quiet = make_bundle(tmp / "quiet", spec=SMALL, values=_loaded(813 / 1000, (2.0, 0.0)))
    return busy, quiet


def test_a_busy_original_host_is_named_as_the_likely_cause(busy_pair):
    busy, quiet = busy_pair
    report = compare_runs(busy, quiet)
    thr = checks(report, "mean_images_per_s")
    assert {c.verdict for c in thr} == {MISS}
    assert thr[0].cause == ("likely cause: the ORIGINAL run's host was busy (other processes used 48% of the "
                            "CPUs, steal 0%)")
    summary = report.summary()
    assert summary.startswith("NOT reproduced") and "\n" not in summary
    assert "mean_images_per_s" in summary and "likely cause: the ORIGINAL run's host was busy" in summary
    assert "likely cause: the ORIGINAL run's host was busy" in report.to_markdown()
    assert report_json(report)["checks"][0]["cause"] == ""  # status: not a timing check
    # accuracy checks never carry a host-load cause
    assert all(not c.cause for c in report.checks if c.metric != "mean_images_per_s")
    # the other way round: the NEW run's host is the busy one
    back = compare_runs(quiet, busy)
    assert checks(back, "mean_images_per_s")[0].cause.startswith("likely cause: the NEW run's host was busy")


def test_steal_alone_makes_a_host_busy_and_quiet_hosts_are_said_quiet(tmp_path):
    stolen = make_bundle(tmp_path / "s", spec=SMALL, values=_loaded(0.5, (3.0, 12.0)))
    quiet = make_bundle(tmp_path / "q", spec=SMALL, values=_loaded(1.0, (2.0, 0.0)))
    quiet_slow = make_bundle(tmp_path / "qs", spec=SMALL, values=_loaded(0.5, (1.0, 0.0)))
    cause = checks(compare_runs(stolen, quiet), "mean_images_per_s")[0].cause
    assert cause == "likely cause: the ORIGINAL run's host was busy (other processes used 3% of the CPUs, steal 12%)"
    cause = checks(compare_runs(quiet_slow, quiet), "mean_images_per_s")[0].cause
    assert cause.startswith("hosts were not busy (ORIGINAL: other processes used 1% of the CPUs")


def _as_schema_1(bundle: Path, dest: Path) -> Path:
    """A copy of a bundle as a runner of bundle schema 1 wrote it: no host-load columns, version 1."""
    import hashlib
    import json
    import shutil

    import pyarrow.parquet as pq

    from runner.bundle.schemas import ADDED_IN

    out = Path(shutil.copytree(bundle, dest / bundle.name))
    manifest = json.loads((out / "manifest.json").read_text())
    for name, info in manifest["tables"].items():
        path = out / info["path"]
        table = pq.read_table(path)
        table = table.drop_columns([c for c in table.column_names if (name, c) in ADDED_IN])
        meta = dict(table.schema.metadata) | {b"bundle_schema_version": b"1"}
        pq.write_table(table.replace_schema_metadata(meta), path)
    for entry in manifest["files"]:
        data = (out / entry["path"]).read_bytes()
        entry.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    manifest["bundle_schema_version"] = 1
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_a_schema_1_bundle_is_read_and_says_host_load_not_recorded(busy_pair, tmp_path):
    _, quiet = busy_pair
    old = _as_schema_1(make_bundle(tmp_path / "o", spec=SMALL, values=_loaded(0.5, None)), tmp_path / "v1")
    report = compare_runs(old, quiet)
    assert checks(report, "mean_images_per_s")[0].cause == "host load not recorded for the ORIGINAL run"
    assert "host load not recorded for the ORIGINAL run" in report.summary()


def _print(renderable, width: int) -> str:
    import io

    from rich.console import Console

    console = Console(width=width, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_the_verdict_at_80_columns_splits_no_word(busy_pair):
    from runner.audit.render import reproduction_table
    from runner.audit.reproduction import RUN_METRICS
    from tests.width import fragments, widest_line

    busy, quiet = busy_pair
    report = compare_runs(busy, quiet)
    text = _print(reproduction_table(report), 80)
    names = [*RUN_METRICS, "latency_per_image_ms", "step_losses", *(c.run_id for c in report.checks)]
    assert fragments(text, names) == [], text
    assert widest_line(text) <= 80
    assert "latency_per_image_ms[batch=1]" in text and "mean_images_per_s" in text
    miss = text.splitlines()[text.splitlines().index(next(ln for ln in text.splitlines()
                                                          if ln.lstrip().startswith("mean_images_per_s")))]
    assert miss.split()[-1] == "MISS"
    assert "likely cause: the ORIGINAL run's host was busy" in " ".join(text.split())
    # a wide terminal keeps one table, every column on one line per check
    wide = _print(reproduction_table(report), 400)
    header = next(line for line in wide.splitlines() if line.lstrip().startswith("run"))
    assert header.split() == ["run", "framework", "metric", "original", "new", "tolerance", "verdict", "detail"]
    assert len(wide.splitlines()) < len(report.checks) + 6


def test_a_non_finite_host_load_counts_as_not_recorded():
    from runner.audit.hostload import HostLoad, likely_cause

    nan = {"host_other_cpu_mean_pct": float("nan"), "host_steal_mean_pct": float("inf")}
    assert not HostLoad.of(nan).recorded and not HostLoad.of(nan).busy
    assert likely_cause(nan, {"host_other_cpu_mean_pct": 1.0, "host_steal_mean_pct": 0.0}) == (
        "host load not recorded for the ORIGINAL run")


def _on_cpu(model: str, flags: list[str]) -> dict:
    from tests.audit.synth import environment

    env = environment()
    env["host"]["cpu"] |= {"model": model, "flags": flags}
    return env


@pytest.mark.parametrize(("model", "flags", "says"), [
    ("Intel(R) Xeon(R) Processor", ["avx", "avx2", "fma"], "the original ran on AMD EPYC, this on Intel(R) Xeon(R)"),
    ("AMD EPYC", ["avx", "avx2", "avx512f", "fma"], "both ran on AMD EPYC, with other CPU features (+avx512f)"),
])
def test_bit_identity_is_a_same_cpu_promise(original, tmp_path, model, flags, says):
    """A deterministic run reproduced on another CPU (another model, or the same model with other
    instruction sets: oneDNN picks its kernels by them) is judged by the tolerances, and says why."""
    plan, _ = make_plan(tmp_path / "spec", SMALL)
    victim = plan.runs[0].id

    def rounding(run):
        v = default_values(run)
        if run.id == victim:
            v.losses = [float(np.nextafter(x, 10.0)) for x in v.losses]  # the last bit moves, as across CPUs
        return v

    elsewhere = make_bundle(tmp_path, spec=SMALL, values=rounding, env=_on_cpu(model, flags))
    report = compare_runs(original, elsewhere)
    assert report.ok, report.misses
    steps = checks(report, "step_losses")
    assert {c.verdict for c in steps} == {SKIP}
    assert all(c.detail.startswith("deterministic, but bit-identity holds on the same CPU only: ")
               and says in c.detail for c in steps), [c.detail for c in steps]
    assert all(not c.tolerance.startswith("bit-identical") for c in checks(report, "final_train_loss"))
    same = make_bundle(tmp_path / "same", spec=SMALL, values=rounding)  # same CPU: the last bit is a miss
    assert "step_losses" in {c.metric for c in compare_runs(original, same).misses}


def test_a_cpu_record_of_another_shape_is_no_crash(original, tmp_path):
    env = _on_cpu("AMD EPYC", ["avx"])
    env["host"]["cpu"].pop("model")
    env["host"]["cpu"]["frequency_mhz"] = None
    odd = make_bundle(tmp_path / "odd", spec=SMALL, env=env)
    report = compare_runs(original, odd)  # the CPU is unknown there: the strict rule stays
    assert {c.verdict for c in checks(report, "step_losses")} == {PASS}
    env["host"]["cpu"] |= {"flags": "avx"}  # not a list: the bundle is refused, one line naming the field
    wrong = make_bundle(tmp_path / "wrong", spec=SMALL, env=env)
    with pytest.raises(BundleError, match=r"host\.json: cpu\.flags is a string, expected a list"):
        compare_runs(original, wrong)


def test_runs_placed_on_nodes_are_judged_by_their_nodes_cpus(original, tmp_path):
    """Slurm: the bundle's host is the submitting machine; each run's node record says which CPU
    (model and flags) it computed on, and that is what is compared."""
    node = {"host": "n1", "cpu_model": "AMD EPYC", "cpu_flags": ["avx", "avx2", "fma", "amx_tile"]}
    on_node = make_bundle(tmp_path, spec=SMALL, run_env={"executor": "slurm", "node": node})
    steps = checks(compare_runs(original, on_node), "step_losses")
    assert {c.verdict for c in steps} == {SKIP} and all("(+amx_tile)" in c.detail for c in steps)
    same = make_bundle(tmp_path / "same", spec=SMALL,
                       run_env={"node": node | {"cpu_flags": ["fma", "avx2", "avx"]}})  # the host's, any order
    assert {c.verdict for c in checks(compare_runs(original, same), "step_losses")} == {PASS}
