"""`variant: cuda` on a machine without the GPUs: one line naming the field, exit 2, before any run
(runner/reproduce/gpu_check.py); and the GPU execution options refused where they cannot take effect."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from runner.errors import SpecError
from runner.reproduce.gpu_check import check_gpus_here
from runner.spec.plan import plan_file
from tests.spec.test_field_walk import BASE


def _spec(tmp_path: Path, frameworks=("pytorch",), variant="cuda", resources=None, **recipe) -> Path:
    spec = {**copy.deepcopy(BASE), "frameworks": list(frameworks), "variant": variant}
    spec["recipe"].update(recipe)
    if resources is not None:
        spec["resources"] = resources
    elif variant == "cuda":
        spec["resources"] = {"gpus": 1}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _nvml(count: int | None, reason: str | None = None):
    def fingerprint() -> dict:
        if count is None:
            return {"available": False, "reason": reason or "no NVIDIA driver"}
        return {"available": bool(count), "count": count, "reason": None if count else "no GPU"}
    return fingerprint


def test_no_driver_refuses_a_cuda_plan_naming_variant(tmp_path):
    path = _spec(tmp_path)
    with pytest.raises(SpecError) as info:
        check_gpus_here(plan_file(path), path, _nvml(None, "no NVIDIA driver: NVML Shared Library Not Found"))
    err = info.value
    assert err.field == "variant" and err.file == path
    line = err.describe()
    assert "\n" not in line and "needs 1 NVIDIA GPU" in line and "NVML Shared Library" in line
    assert "variant: cpu" in line


def test_too_few_gpus_names_resources_gpus(tmp_path):
    path = _spec(tmp_path, resources={"gpus": 2, "parallel": "data"})
    with pytest.raises(SpecError) as info:
        check_gpus_here(plan_file(path), path, _nvml(1))
    assert info.value.field == "resources.gpus" and "needs 2" in info.value.message
    check_gpus_here(plan_file(path), path, _nvml(2))  # enough: no error


def test_a_cpu_plan_never_asks_nvml(tmp_path):
    path = _spec(tmp_path, variant="cpu")

    def fail() -> dict:
        raise AssertionError("NVML queried for a CPU plan")
    check_gpus_here(plan_file(path), path, fail)


def test_reproduce_refuses_before_anything_is_written(cli, tmp_path):
    """The real NVML of this machine (CI has no GPU): exit 2, one line, no bundle, no cache."""
    from runner.fingerprint.gpu import gpu_fingerprint

    if gpu_fingerprint().get("available"):
        pytest.skip("this machine has a GPU")
    path = _spec(tmp_path)
    results, cache = tmp_path / "results", tmp_path / "cache"
    r = cli("reproduce", path, "--engine", "local", "--results", results, "--cache", cache,
            "--data-root", tmp_path / "data")
    assert r.code == 2, r.out + r.err
    assert "variant" in r.err and "NVIDIA GPU" in r.err and "Traceback" not in r.err
    assert len([ln for ln in r.err.splitlines() if ln.strip()]) == 1
    assert not results.exists() or not any(results.iterdir())
    assert not cache.exists() or not any(cache.iterdir())


@pytest.mark.parametrize(("frameworks", "variant", "recipe", "field", "words"), [
    (["pytorch", "tensorflow"], "cuda", {"cuda_graphs": True}, "recipe.cuda_graphs", "XLA"),
    (["pytorch"], "cpu", {"cuda_graphs": True}, "recipe.cuda_graphs", "CPU run"),
    (["pytorch", "mxnet"], "cpu", {"channels_last": True}, "recipe.channels_last", "NCHW only"),
    (["mxnet"], "cuda", {"cuda_graphs": True}, "recipe.cuda_graphs", "mxnet"),
])
def test_gpu_options_refused_where_they_cannot_take_effect(tmp_path, frameworks, variant, recipe, field, words):
    path = _spec(tmp_path, frameworks, variant, **recipe)
    with pytest.raises(SpecError) as info:
        plan_file(path)
    assert info.value.field == field and info.value.line is not None
    assert words in info.value.describe() and "\n" not in info.value.describe()


def test_gpu_options_planned_where_they_take_effect(tmp_path):
    plan = plan_file(_spec(tmp_path, ["pytorch"], "cuda", cuda_graphs=True, channels_last=True,
                           precision="amp_bf16"))
    assert plan.runs[0].recipe["cuda_graphs"] is True
    plan = plan_file(_spec(tmp_path, ["pytorch", "tensorflow"], "cpu", channels_last=True))
    assert {r.framework for r in plan.runs} == {"pytorch", "tensorflow"}
