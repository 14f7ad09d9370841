"""One reproduction session: validate, plan, prepare data, pick images, fingerprint, run, bundle.

Failed runs are rows with a reason and the sweep goes on. Ctrl-C stops the current run (its
container is removed), leaves the partial bundle in place, and says how to `--resume` it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from runner.engine.base import Engine, RunOutcome, RunRequest
from runner.errors import RunnerError
from runner.spec.plan import Plan, Run
from runner.spec.workload_config import workload_config

POLL_S = 0.5


@dataclass
class SessionOptions:
    data_root: Path
    results_root: Path
    cache: Path
    engine: str = "auto"  # auto | docker | local
    build: str = "missing"  # missing | always | never
    resume: Path | None = None
    redact: bool = True
    telemetry_hz: float = 1.0
    quiet: bool = False


@dataclass
class RunRecord:
    run: Run
    status: str
    reason: str | None
    wall_s: float
    image_id: str | None
    summary: dict = field(default_factory=dict)


def _time_limit(run: Run) -> int | None:
    return run.resolved["resources"]["time_limit_s"]


def execute_run(engine: Engine, request: RunRequest, on_event, sampler_factory=None) -> tuple[RunOutcome, list]:
    """Start one run, follow its events, enforce its time limit, always finish it."""
    from runner.reproduce.tail import EventTail

    tail = EventTail(request.out_dir / "events.jsonl")
    handle = engine.start(request)
    sampler = sampler_factory(handle.sample_target) if sampler_factory else None
    if sampler:
        sampler.start()
    started = time.monotonic()
    try:
        while handle.poll() is None:
            for event in tail.poll():
                on_event(event)
            if request.time_limit_s and time.monotonic() - started > request.time_limit_s:
                handle.kill(f"time limit ({request.time_limit_s} s)")
                break
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        handle.kill("interrupted")
        try:
            handle.finish()
        finally:
            if sampler:
                sampler.stop()
        raise
    outcome = handle.finish()
    for event in tail.poll():
        on_event(event)
    samples = sampler.stop() if sampler else []
    return outcome, samples


def write_run_config(run: Run, run_dir: Path) -> Path:
    """The run's run.json, beside its output; readable by the container's unprivileged user."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "run.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(workload_config(run), indent=2, sort_keys=True))
    os.replace(tmp, path)
    os.chmod(path, 0o644)
    return path


def describe_plan(plan: Plan, console: Console) -> None:
    exp = plan.experiment
    frameworks = ", ".join(f.value for f in exp.frameworks)
    console.print(f"[bold]{exp.name}[/]: {len(plan.runs)} runs ({frameworks}; {exp.model.name.value} on "
                  f"{exp.dataset.name.value}, {exp.variant.value})")


def reason_line(exc: RunnerError) -> str:
    return exc.describe()
