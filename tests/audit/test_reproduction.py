"""compare_runs: a bundle reproduces itself; a changed loss, accuracy or throughput is a named miss."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from runner.audit.reproduction import MISS, MISSING, PASS, SKIP, compare_runs, report_json
from runner.audit.tolerances import TOLERANCES
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

