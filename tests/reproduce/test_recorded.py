"""Binding today's plan of a bundle's spec to the runs the bundle recorded (runner.reproduce.recorded)."""

from __future__ import annotations

import json

from runner.reproduce.recorded import RecordedRun, bind_recorded, config_differences, run_key
from runner.spec.plan import plan_file
from runner.spec.workload_config import workload_config
from tests.helpers import REPO

TINY = REPO / "tests" / "specs" / "tiny.yaml"


def _recorded(run, run_id: str, config=None) -> RecordedRun:
    return RecordedRun(run_id, run_key(run.framework, run.sweep, run.params, run.repeat, run.seed), config)


def _old_config(run, run_id: str) -> dict:
    config = workload_config(run) | {"run_id": run_id}
    config["train"] = {k: v for k, v in config["train"].items() if k != "augment_on"}  # an older runner's
    return config


def test_each_run_takes_its_twins_id_and_config():
    plan = plan_file(TINY)
    py, tf = plan.runs
    binding = bind_recorded(plan, [_recorded(tf, "te-old", _old_config(tf, "te-old")),
                                   _recorded(py, "py-old", _old_config(py, "py-old"))])
    assert [r.id for r in binding.plan.runs] == ["py-old", "te-old"]  # today's order, the recorded ids
    assert binding.plan.runs[0].recorded_config == _old_config(py, "py-old")
    assert "augment_on" not in binding.plan.runs[0].recorded_config["train"]
    assert binding.plan.runs[0].resolved is py.resolved  # the host side still plans from today's spec
    assert binding.notes == ["today's planner adds train.augment_on; the bundle's own code reads its recorded "
                             "run.json without them"]


def test_a_recorded_value_that_differs_is_rerun_as_recorded_and_said():
    plan = plan_file(TINY)
    py, tf = plan.runs
    old = workload_config(py) | {"run_id": "py-old"}
    old["optimizer"] = old["optimizer"] | {"epsilon": 1e-7}
    binding = bind_recorded(plan, [_recorded(py, "py-old", old), _recorded(tf, tf.id, workload_config(tf))])
    assert binding.plan.runs[0].recorded_config["optimizer"]["epsilon"] == 1e-7
    assert binding.notes == ["py-old (pytorch): rerun as recorded; today's planner would set optimizer.epsilon "
                             "otherwise"]


def test_runs_without_a_twin_or_a_config_are_left_out_and_said():
    plan = plan_file(TINY)
    py, tf = plan.runs
    stranger = RecordedRun("mx-old", ("mxnet", "main", "{}", 0, 0), {"run_id": "mx-old"})
    binding = bind_recorded(plan, [_recorded(py, "py-old", None), stranger])
    assert binding.plan.runs == []
    assert binding.notes == [
        "py-old (pytorch): never ran in the bundle and has no recorded run.json; not rerun",
        f"{tf.id} (tensorflow): the bundle never planned this run; not rerun",
        "mx-old (mxnet): recorded, but today's plan of the spec has no such run; not rerun",
    ]
    same_id = bind_recorded(plan, [_recorded(py, py.id, None), _recorded(tf, tf.id, None)])
    assert [r.id for r in same_id.plan.runs] == [py.id, tf.id]  # same planner: today's config is the one
    assert all(r.recorded_config is None for r in same_id.plan.runs) and same_id.notes == []


def test_two_recorded_runs_at_one_spec_point_are_not_guessed_between():
    plan = plan_file(TINY)
    py, _ = plan.runs
    twins = [_recorded(py, "a", workload_config(py)), _recorded(py, "b", workload_config(py))]
    binding = bind_recorded(plan, twins)
    assert py.id not in [r.id for r in binding.plan.runs]
    assert any("2 recorded runs share its spec point" in n for n in binding.notes)


def test_config_differences_names_paths():
    assert config_differences({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3, "d": 4}, "e": 5}) == (
        ["a.c"], ["a.d", "e"])
    assert config_differences({"a": [1, 2]}, {"a": [1, 2]}) == ([], [])
    assert config_differences({"gone": 1}, {}) == (["gone"], [])
    assert json.dumps(run_key("pytorch", "main", {"b": 1, "a": 2}, 0, 0)[2]) == json.dumps('{"a": 2, "b": 1}')


def test_a_recorded_run_with_a_null_key_column_is_refused_naming_it(tmp_path):
    """An edited bundle's runs table: a null repeat (or seed, framework, sweep) cannot be matched to
    today's plan; one BundleError naming the table and the column, not a TypeError from int()."""
    import pytest

    from runner.errors import BundleError
    from runner.reproduce.recorded import recorded_runs
    from tests.audit.cli_helpers import ensure_registered
    from tests.audit.synth import make_bundle
    from tests.audit.test_bundle_table_values import with_value
    from tests.audit.test_verify import SMALL

    ensure_registered()
    bundle = make_bundle(tmp_path / "b", spec=SMALL)
    assert len(recorded_runs(bundle)) == 2
    for column in ("repeat", "seed", "framework", "sweep"):
        edited = with_value(bundle, tmp_path / column, "runs", column, None)
        with pytest.raises(BundleError, match=rf"runs\.parquet: {column}: run \S+ has no {column} \(null\)"):
            recorded_runs(edited)
