"""MXNet bfloat16 runs on a CPU without AVX-512: refused before anything runs.

Runs placed on this machine (the inline executor) compute on this CPU; oneDNN's bfloat16 kernels,
which MXNet's CPU AMP uses, need AVX-512 (runner.workload.cpu_isa). Without it every such run
would start, fail at its first convolution and leave a failed row: the spec field cannot take
effect here, so it is refused at plan time, naming the field. Slurm places runs on nodes whose CPU
the host cannot see; there the workload refuses (a failed row saying why).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runner.errors import SpecError
from runner.workload.cpu_isa import cpu_flags, mxnet_bf16_refusal


def check_cpu_here(plan: Any, spec_path: Path, flags: set[str] | None = None) -> None:
    """Raise a one-line SpecError naming recipe.precision when a run needs CPU instructions this machine lacks."""
    needs = [run for run in plan.runs if run.framework == "mxnet" and run.recipe.get("precision") == "amp_bf16"
             and run.resolved.get("variant") in ("cpu", "ppc64le")]
    if not needs:
        return
    why = mxnet_bf16_refusal(cpu_flags() if flags is None else flags)
    if why is None:
        return
    raise SpecError(f"{len(needs)} mxnet run(s) ask for amp_bf16: {why}", file=spec_path, field="recipe.precision",
                    fix="run mxnet in fp32 here, leave mxnet out of the amp_bf16 runs, or run on a CPU with AVX-512")
