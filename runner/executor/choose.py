"""Which executor places a session's runs: the spec's `execution`, with the CLI's flags over it.

An explicit table (inline, slurm), no discovery. The flags go through the same pydantic model
as the spec, so `--time soon` is refused exactly like `time: soon`; the Slurm executor checks the
cluster (`SlurmExecutor.check`) here, before the session writes anything.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from runner.errors import UsageError


@dataclass(frozen=True)
class ExecutionFlags:
    """`runner reproduce --executor ... --partition ...`; None: the spec's value."""

    executor: str | None = None
    partition: str | None = None
    time: str | None = None
    gres: str | None = None
    account: str | None = None
    qos: str | None = None
    max_parallel: int | None = None
    ship_images: bool | None = None

    def apply(self, execution: Any, engine: str | None = None) -> Any:
        """The spec's Execution with these flags (and the CLI's engine, unless `spec`) over it."""
        from pydantic import ValidationError

        update = {k: v for k, v in asdict(self).items() if v is not None}
        if engine not in (None, "spec"):
            update["engine"] = engine
        if not update:
            return execution
        try:
            return type(execution).model_validate({**execution.model_dump(), **update})
        except ValidationError as e:
            err = e.errors()[0]
            loc = [str(x) for x in err.get("loc", ())]
            message = err.get("msg", "invalid").removeprefix("Value error, ")
            if not loc:  # a rule over several fields: the flag of the field it names first
                named = [f for f in re.findall(r"`([a-z_]+)`", message) if f in self.__dataclass_fields__]
                loc = named[:1]
            flag = f"--{loc[0].replace('_', '-')}" if loc else "--executor"
            raise UsageError(message, field=flag, fix="see `runner reproduce --help` and docs/slurm.md") from None


def make_executor(execution: Any, engine: Any, sampler_factory: Callable | None, shapes_of: Callable[[], list],
                  telemetry_hz: float = 1.0) -> Any:
    """The executor `execution.executor` names. `shapes_of()` gives the planned runs' JobShapes
    (the Slurm check needs them: CPUs, memory, GPUs, time of every job)."""
    if execution.executor == "inline":
        from runner.executor.inline import InlineExecutor

        return InlineExecutor(engine, sampler_factory)
    if execution.executor == "slurm":
        from runner.executor.slurm import SlurmExecutor
        from runner.executor.slurm_batch import SlurmSettings

        executor = SlurmExecutor(SlurmSettings.from_execution(execution), telemetry_hz=telemetry_hz)
        executor.check(shapes_of())  # one line, exit 2, nothing submitted (nothing written either)
        return executor
    from runner.errors import ExecutorError

    raise ExecutorError(f"no executor {execution.executor!r}", field="execution.executor", fix="inline or slurm")


def plan_shapes(plan: Any) -> list:
    """The distinct JobShapes of a plan's runs (their resolved `resources`)."""
    from runner.executor.slurm_batch import JobShape

    return list(dict.fromkeys(JobShape.of_resources(run.resolved["resources"]) for run in plan.runs))
