"""Planner: expansion, stable ids, limits; every seed study spec plans."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.spec.plan import plan_file
from runner.spec.workload_config import workload_config
from tests.helpers import EXPERIMENTS, REPO

SPECS = sorted(EXPERIMENTS.glob("*.yaml"))


def test_all_seed_specs_are_there():
    names = {p.stem for p in SPECS}
    assert {"resnet50-cifar100", "resnet50-imagenet", "resnet50-cifar10", "alexnet-cifar10", "vgg16-cifar100",
            "cnn-cifar10", "alexnet-finetune-cifar10", "smoke"} <= names


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_seed_specs_plan_and_render(spec: Path, cli):
    result = cli("plan", spec)
    assert result.code == 0, result.err
    plan = plan_file(spec)
    assert plan.runs
    assert len({r.id for r in plan.runs}) == len(plan.runs)
    for run in plan.runs:
        assert run.id in result.out or len(plan.runs) > 50
        cfg = workload_config(run)
        json.dumps(cfg, allow_nan=False)  # plain JSON for the workload


def test_alexnet_sweeps_match_the_study():
    plan = plan_file(EXPERIMENTS / "alexnet-cifar10.yaml")
    throughput = [r for r in plan.runs if r.sweep == "throughput"]
    convergence = [r for r in plan.runs if r.sweep == "convergence"]
    assert sorted({r.recipe["batch_size"] for r in throughput}) == [250, 500, 1000, 2000, 5000]
    assert {(r.recipe["optimizer"], r.recipe["lr"]) for r in convergence} == {
        (o, lr) for o in ("sgd", "adam", "rmsprop") for lr in (0.01, 0.001, 0.0001)}
    assert all(r.recipe["epochs"] == 30 for r in convergence)
    assert {r.framework for r in plan.runs} == {"pytorch", "tensorflow"}


def test_ids_are_stable_across_processes():
    """Same spec -> same ids, computed in a fresh interpreter (hash randomisation differs)."""
    spec = EXPERIMENTS / "vgg16-cifar100.yaml"
    code = ("import json,sys; from runner.spec.plan import plan_file; "
            "print(json.dumps([r.id for r in plan_file(sys.argv[1]).runs]))")
    outs = {subprocess.run([sys.executable, "-c", code, str(spec)], capture_output=True, text=True, check=True,
                           cwd=REPO, env={"PYTHONHASHSEED": str(seed), "PATH": "/usr/bin:/bin"}).stdout
            for seed in (1, 2)}
    assert len(outs) == 1
    assert json.loads(outs.pop()) == [r.id for r in plan_file(spec).runs]


def test_ids_change_with_any_resolved_field(tmp_path):
    text = (EXPERIMENTS / "smoke.yaml").read_text()
    (tmp_path / "a.yaml").write_text(text)
    (tmp_path / "b.yaml").write_text(text.replace("epsilon: 1.0e-5}", "epsilon: 1.0e-3}"))
    a, b = plan_file(tmp_path / "a.yaml"), plan_file(tmp_path / "b.yaml")
    assert {r.id for r in a.runs}.isdisjoint({r.id for r in b.runs})


def test_frameworks_share_seed_and_recipe():
    plan = plan_file(EXPERIMENTS / "cnn-cifar10.yaml")
    by_repeat: dict[int, list] = {}
    for run in plan.runs:
        by_repeat.setdefault(run.repeat, []).append(run)
    for runs in by_repeat.values():
        assert len({r.seed for r in runs}) == 1
        assert len({json.dumps(r.recipe, sort_keys=True) for r in runs}) == 1
        assert {r.framework for r in runs} == {"pytorch", "tensorflow"}


def test_every_default_is_resolved_explicitly():
    run = plan_file(EXPERIMENTS / "smoke.yaml").runs[0]
    cfg = workload_config(run)
    assert cfg["model"]["bn_momentum"] == 0.1 and cfg["model"]["bn_epsilon"] == 1e-5
    assert cfg["optimizer"]["epsilon"] == 1e-8
    assert cfg["optimizer"]["weight_decay_mode"] == "l2"
    assert None not in (cfg["data"]["mean"], cfg["data"]["std"])


def test_max_runs_flag(cli):
    result = cli("plan", EXPERIMENTS / "alexnet-cifar10.yaml", "--max-runs", "10")
    assert result.code == 2 and "above the limit of 10" in result.err


def test_plan_json(cli):
    result = cli("plan", EXPERIMENTS / "smoke.yaml", "--json")
    data = json.loads(result.out)
    assert data["experiment"] == "smoke" and len(data["runs"]) == 2


# Rendering: readable at 80 columns (the width of many terminals and of CI logs).

def _rendered(plan, width: int) -> str:
    from rich.console import Console

    from runner.cli.render import plan_view

    console = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(plan_view(plan))
    return console.export_text()


@pytest.mark.parametrize("spec", ["alexnet-cifar10", "smoke", "resnet50-cifar10"])
def test_plan_at_80_columns_splits_no_word(spec: str):
    from tests.width import fragments, widest_line

    plan = plan_file(EXPERIMENTS / f"{spec}.yaml")
    text = _rendered(plan, 80)
    ids = [r.id for r in plan.runs]
    words = ids + ["framework", "tensorflow", "pytorch", "throughput", "convergence", "epochs"]
    assert fragments(text, words) == [], text
    assert widest_line(text) <= 80
    assert all(i in text for i in ids)  # every run id whole
    assert "…" not in text
    wide = _rendered(plan, 200)  # a wide terminal keeps one table with every column
    assert any(line.split()[:3] == ["id", "sweep", "framework"] for line in wide.splitlines())


def test_plan_cli_at_80_columns_and_markdown(cli, monkeypatch):
    from tests.width import fragments, widest_line

    monkeypatch.setenv("COLUMNS", "80")
    spec = EXPERIMENTS / "alexnet-cifar10.yaml"
    ids = [r.id for r in plan_file(spec).runs]
    out = cli("plan", spec)
    assert out.code == 0 and widest_line(out.out) <= 80
    assert fragments(out.out, ids + ["tensorflow", "throughput", "convergence"]) == []
    assert "sweep throughput: 10 runs" in out.out
    md = cli("plan", spec, "--format", "markdown")
    assert md.code == 0
    lines = md.out.splitlines()
    assert lines[2] == "| id | sweep | framework | rep | seed | batch | optim | lr | epochs | grid |"
    assert len(lines) == 4 + len(ids)
    assert json.loads(cli("plan", spec, "--format", "json").out)["experiment"] == "alexnet-cifar10"
    assert cli("plan", spec, "--format", "html").code == 2
