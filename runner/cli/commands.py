"""Top-level commands: plan, doctor, models. Thin: parse flags, call the library, print."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer

from runner.cli.options import DEFAULT_DATA_ROOT, DataRoot, JsonFlag, MaxRuns, SpecPath
from runner.spec.limits import MAX_RUNS


class PlanFormat(StrEnum):
    table = "table"
    markdown = "markdown"
    json = "json"


FormatOpt = Annotated[PlanFormat, typer.Option(
    "--format", help="table (fits the terminal: blocks per sweep when narrow), markdown (every column), json.")]


def plan(spec: SpecPath, as_json: JsonFlag = False, max_runs: MaxRuns = MAX_RUNS,
         fmt: FormatOpt = PlanFormat.table) -> None:
    """Expand a spec into its runs (sweeps x grid x frameworks x repeats) and show them."""
    from runner.spec.plan import plan_file

    the_plan = plan_file(spec, max_runs=max_runs)
    if as_json or fmt is PlanFormat.json:
        typer.echo(json.dumps({
            "experiment": the_plan.experiment.name,
            "spec_sha256": the_plan.spec_hash,
            "weights": None if the_plan.experiment.model.pretrained is None
            else the_plan.experiment.model.pretrained.model_dump(mode="json"),
            "runs": [r.row() for r in the_plan.runs],
        }, indent=2))
        return
    from runner.cli.render import plan_markdown, plan_table

    if fmt is PlanFormat.markdown:
        typer.echo(plan_markdown(the_plan), nl=False)
        return
    plan_table(the_plan)


def doctor(data_root: DataRoot = DEFAULT_DATA_ROOT, as_json: JsonFlag = False) -> None:
    """Check this machine: container engine, GPUs, disk, datasets, images. Exit 1 on any FAIL."""
    from runner.doctor import run_checks

    checks = run_checks(data_root=data_root)
    if as_json:
        typer.echo(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        from runner.cli.render import doctor_table

        doctor_table(checks)
    if any(c.status == "FAIL" for c in checks):
        raise typer.Exit(1)


def models(
    framework: Annotated[
        list[str] | None, typer.Option("--framework", "-f", help="pytorch, tensorflow, mxnet (default: all three).")
    ] = None,
    classes: Annotated[int, typer.Option(min=1, help="Number of classes.")] = 10,
    input_size: Annotated[int | None, typer.Option(
        "--input-size", min=8, help="Input height = width (default: each model's own).")] = None,
    stem: Annotated[str, typer.Option(help="ResNet-50 stem: imagenet or cifar.")] = "imagenet",
    engine: Annotated[str, typer.Option(help="local (host Python) or docker (the framework's image).")] = (
        "local"
    ),
    as_json: JsonFlag = False,
) -> None:
    """Parameter counts and FLOPs per image of every model, per framework, checked equal."""
    from runner.model_table import model_table

    table = model_table(frameworks=framework or ["pytorch", "tensorflow", "mxnet"], classes=classes,
                        input_size=input_size, stem=stem, engine=engine)
    if as_json:
        typer.echo(json.dumps(table, indent=2))
        return
    from runner.cli.render import models_table

    models_table(table)
