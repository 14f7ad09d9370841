"""One schema: the spec's defaults are the workload's, the planner runs the workload's readers,
and every run.json field maps back to the spec field that set it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner.data.augment import normalize_ops
from runner.errors import SpecError
from runner.spec.check import spec_location
from runner.spec.plan import plan_file
from runner.spec.workload_config import workload_config
from runner.workload.models import ModelConfig
from runner.workload.optim import OptimConfig
from runner.workload.schedule import ScheduleConfig
from tests.helpers import EXPERIMENTS, REPO
from tests.spec.test_field_walk import BASE, spec_fields


def _doc(tmp_path: Path, **recipe) -> dict:
    spec = {**BASE, "recipe": {**BASE["recipe"], **recipe}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return workload_config(plan_file(path).runs[0])


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_optimizer_defaults_are_optimconfig_defaults(optimizer: str, tmp_path: Path):
    doc = _doc(tmp_path, optimizer=optimizer)
    assert doc["optimizer"] == OptimConfig(name=optimizer, lr=0.01).to_dict()


def test_rmsprop_rho_is_pytorchs_alpha(tmp_path: Path):
    """The decision (docs/spec.md): canonical formulas are PyTorch's, so rho defaults to alpha 0.99."""
    assert _doc(tmp_path, optimizer="rmsprop")["optimizer"]["rho"] == 0.99


def test_model_and_schedule_defaults_are_the_dataclasses(tmp_path: Path):
    doc = _doc(tmp_path)
    assert doc["model"] == ModelConfig(name="simple_cnn", num_classes=10).to_dict()
    assert doc["schedule"] == {k: v for k, v in ScheduleConfig().to_dict().items() if k != "total_epochs"}


def test_augmentation_defaults_are_normalize_ops_defaults(tmp_path: Path):
    ops = [{"op": "random_crop"}, {"op": "horizontal_flip"}, {"op": "brightness"}, {"op": "resize", "size": 32}]
    doc = _doc(tmp_path, augmentation=ops)
    assert doc["data"]["augmentation"] == list(normalize_ops(ops))


def test_every_run_json_field_maps_to_a_spec_field(tmp_path: Path):
    doc = _doc(tmp_path, augmentation=[{"op": "random_crop"}], normalize={"mean": [0, 0, 0], "std": [1, 1, 1]})
    leaves = {f.split("[")[0] for f in spec_fields()}
    known = {".".join(f.split(".")[:n]) for f in leaves for n in range(1, f.count(".") + 2)}
    skip = {"schema", "run_id", "sweep"}  # sweep: sweeps[i].name of the run's sweep (main has none)
    for section, value in doc.items():
        keys = [f"{section}.{k}" for k in value] if isinstance(value, dict) else [section]
        for key in keys:
            if key in skip:
                continue
            loc = spec_location(key, doc)
            dotted = ".".join(str(p) for p in loc if not isinstance(p, int))
            assert dotted in known, (key, loc)


def test_rmsprop_momentum_error_names_rmsprop_momentum(tmp_path: Path):
    params = {"rmsprop_momentum": 1.0}
    with pytest.raises(SpecError) as info:
        _doc(tmp_path, optimizer="rmsprop", optimizer_params=params)
    assert info.value.field == "recipe.optimizer_params.rmsprop_momentum" and info.value.line is not None


def test_mxnet_runs_are_still_planned(tmp_path: Path):
    """MXNet runs are planned beside the others (what MXNet lacks: tests/spec/test_mxnet_capabilities.py)."""
    spec = {**BASE, "frameworks": ["pytorch", "mxnet"]}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert {r.framework for r in plan_file(path).runs} == {"pytorch", "mxnet"}


def test_planning_imports_no_framework():
    code = ("import sys; from runner.spec.plan import plan_file; plan_file(sys.argv[1]); "
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(EXPERIMENTS / "smoke.yaml")], cwd=REPO,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
