"""A cuda spec on a machine without the GPUs it asks for: refused before anything runs.

Runs placed on this machine (the inline executor: the local engine, or a Docker/Podman engine on
this host) need `variant: cuda`'s GPUs here; NVML says how many there are (the driver, not a
framework: the host never imports torch). Runs placed by Slurm get their GPUs on a node: the
Slurm executor checks its GRES instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.errors import SpecError


def gpus_needed(plan: Any) -> int:
    """The most GPUs one run of the plan asks for (0 unless the variant is cuda)."""
    exp = plan.experiment
    if exp.variant.value != "cuda":
        return 0
    return max(1, exp.resources.gpus)


def check_gpus_here(plan: Any, spec_path: Path, fingerprint: Callable[[], dict[str, Any]] | None = None) -> None:
    """Raise a one-line SpecError naming `variant` when this machine lacks the plan's GPUs."""
    need = gpus_needed(plan)
    if need == 0:
        return
    if fingerprint is None:
        from runner.fingerprint.gpu import gpu_fingerprint as fingerprint
    fp = fingerprint()
    have = int(fp.get("count") or 0) if fp.get("available") else 0
    if have >= need:
        return
    why = fp.get("reason") or f"{have} GPU(s) found"
    raise SpecError(f"variant cuda needs {need} NVIDIA GPU(s) on this machine, and it has {have} ({why})",
                    file=spec_path, field="variant" if need == 1 or have == 0 else "resources.gpus",
                    fix="run on a machine with the GPUs (or through Slurm: execution.executor: slurm), "
                        "or set variant: cpu")
