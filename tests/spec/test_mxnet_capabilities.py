"""What MXNet cannot run is refused at plan time, naming the spec field and its line, from the
workload's own table (runner.workload.capabilities); the workload's reader refuses the same
run.json; planning imports no framework."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner.errors import SpecError
from runner.spec.plan import plan_file
from tests.helpers import EXPERIMENTS, REPO
from tests.spec.test_field_walk import BASE


def _plan(tmp_path: Path, frameworks: list[str], variant: str = "cpu", sweeps: list | None = None, **recipe):
    spec = {**copy.deepcopy(BASE), "frameworks": frameworks, "variant": variant}
    spec["recipe"].update(recipe)
    if variant == "cuda":
        spec["resources"] = {"gpus": 1}
    if sweeps is not None:
        spec["sweeps"] = sweeps
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return plan_file(path), path


@pytest.mark.parametrize(("variant", "recipe", "field", "words"), [
    ("cuda", {"precision": "amp_bf16"}, "recipe.precision", "CPUs only"),
    ("cpu", {"precision": "amp_fp16"}, "recipe.precision", "GPUs only"),
    ("cpu", {"compile": True}, "recipe.compile", "hybridize"),
    ("cuda", {"compile": True}, "recipe.compile", "hybridize"),
])
def test_mxnet_refused_at_plan_time_naming_the_field(tmp_path, variant, recipe, field, words):
    with pytest.raises(SpecError) as info:
        _plan(tmp_path, ["pytorch", "mxnet"], variant=variant, **recipe)
    err = info.value
    assert err.field == field and err.line is not None and err.file == tmp_path / "spec.yaml"
    line = err.describe()
    assert "mxnet" in line and words in line and "\n" not in line
    # the line points at the field in the YAML
    key = field.split(".")[-1]
    assert (tmp_path / "spec.yaml").read_text().splitlines()[err.line - 1].strip().startswith(f"{key}:")


def test_the_same_recipe_without_mxnet_is_planned(tmp_path):
    plan, _ = _plan(tmp_path, ["pytorch", "tensorflow"], precision="amp_bf16", compile=True)
    assert {r.framework for r in plan.runs} == {"pytorch", "tensorflow"}


@pytest.mark.parametrize(("variant", "precision"), [("cuda", "amp_fp16"), ("cpu", "amp_bf16"), ("cpu", "fp32")])
def test_what_mxnet_can_run_is_planned(tmp_path, variant, precision):
    plan, _ = _plan(tmp_path, ["mxnet"], variant=variant, precision=precision)
    assert [r.framework for r in plan.runs] == ["mxnet"]


def test_a_grid_value_mxnet_lacks_names_the_grid(tmp_path):
    sweeps = [{"name": "prec", "grid": {"precision": ["fp32", "amp_bf16", "amp_fp16"]}}]
    with pytest.raises(SpecError) as info:
        _plan(tmp_path, ["mxnet"], sweeps=sweeps)
    assert info.value.field == "sweeps[0].grid.precision" and "amp_fp16" in info.value.message


def test_the_workload_reader_refuses_a_hand_written_run_json(tmp_path):
    from runner.spec.workload_config import workload_config
    from runner.workload.harness.config import parse_config

    plan, _ = _plan(tmp_path, ["mxnet"])
    doc = workload_config(plan.runs[0])
    assert parse_config(doc, tmp_path / "run.json").framework == "mxnet"
    doc["train"]["precision"] = "amp_fp16"  # on cpu
    with pytest.raises(SpecError) as info:
        parse_config(doc, tmp_path / "run.json")
    assert info.value.field == "train.precision"


def test_planning_the_three_framework_spec_imports_no_framework():
    code = ("import sys; from runner.spec.plan import plan_file; p = plan_file(sys.argv[1]); "
            "print(sorted({r.framework for r in p.runs}), "
            "sorted(m for m in ('torch', 'tensorflow', 'keras', 'mxnet') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(EXPERIMENTS / "resbench-small.yaml")], cwd=REPO,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['mxnet', 'pytorch', 'tensorflow'] []"
