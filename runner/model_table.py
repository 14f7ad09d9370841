"""`runner models`: the parameter table the studies printed, measured in each framework and
checked equal across frameworks. The host never imports a framework: it asks the workload
(`python -m runner.workload models --json`) in the local Python or in the framework's image.
"""

from __future__ import annotations

import json
from pathlib import Path

from runner.errors import EngineError, UsageError

KNOWN_FRAMEWORKS = ("pytorch", "tensorflow", "mxnet")


def _workload_argv(framework: str, classes: int, input_size: int | None, stem: str) -> list[str]:
    argv = ["-m", "runner.workload", "models", "--framework", framework, "--json", "--classes", str(classes),
            "--stem", stem]
    if input_size is not None:
        argv += ["--input-size", str(input_size)]
    return argv


def _package_root() -> Path:
    import runner

    return Path(runner.__file__).resolve().parent.parent


def _run_local(argv: list[str]) -> str:
    from runner.engine.local_engine import run_workload_tool

    proc = run_workload_tool(argv, _package_root())
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EngineError(f"the workload could not describe the models: {last}",
                          fix="install the framework (just setup) or use --engine docker")
    return proc.stdout


def _run_docker(framework: str, argv: list[str]) -> str:
    from runner.engine.docker_client import connect
    from runner.engine.docker_engine import run_workload_tool
    from runner.images.build import ensure_image
    from runner.images.catalog import load_catalog

    client = connect()
    image_id = ensure_image(client, load_catalog().for_run(framework, "cpu"), "never")
    return run_workload_tool(client, image_id, argv, _package_root())


def model_table(frameworks: list[str], classes: int, input_size: int | None, stem: str,
                engine: str) -> list[dict]:
    """One row per (model, framework), each with `equal`: same counts and FLOPs in every framework."""
    unknown = [f for f in frameworks if f not in KNOWN_FRAMEWORKS]
    if unknown:
        raise UsageError(f"unknown framework {unknown[0]!r}", field="--framework",
                         fix=f"use one of {', '.join(KNOWN_FRAMEWORKS)}")
    if engine not in ("local", "docker"):
        raise UsageError(f"unknown engine {engine!r}", field="--engine", fix="use local or docker")
    rows: list[dict] = []
    for fw in frameworks:
        argv = _workload_argv(fw, classes, input_size, stem)
        text = _run_local(argv) if engine == "local" else _run_docker(fw, argv)
        for row in json.loads(text):
            rows.append({"model": row["model"], "framework": fw, "trainable": row["trainable"],
                         "total": row["total"], "flops_per_image": row["flops_per_image"],
                         "input_size": row["config"]["input_size"], "matches_architecture": row["matches_arch"]})
    by_model: dict[str, set] = {}
    for row in rows:
        by_model.setdefault(row["model"], set()).add((row["trainable"], row["total"], row["flops_per_image"]))
    for row in rows:
        row["equal"] = len(by_model[row["model"]]) == 1 and row["matches_architecture"]
    return rows
