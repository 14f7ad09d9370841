"""What a Slurm job of runner looks like: its sbatch options and its batch script.

Runs whose jobs need the same resources (CPUs, memory, GPUs, time) share one job array; array
task i runs line i of the array's index file: a run folder holding `task.json` (the engine's
Launch). The script is three lines a person can read; everything else is sbatch options (argv,
never a shell string), so nothing a spec says is ever interpreted by a shell.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from runner.engine.base import Launch

# The job's Slurm limit when the spec gives no `execution.time` but a `resources.time_limit_s`:
# the run's own limit (enforced inside the job, from the run's start) plus this much for the
# container's start, the node-side Python and the outcome file.
TIME_MARGIN_S = 120
# ... and, with ship_images, this much more: a node that lacks the image loads its archive first
# (checked and loaded by podman: 11 s/GiB here, benchmarks/bench_ship.py; a CUDA image of 6 GiB on
# a slower shared disk fits; the run's own limit starts after it).
SHIP_MARGIN_S = 300
JOB_NAME_PREFIX = "runner-"
T = TypeVar("T")


@dataclass(frozen=True)
class SlurmSettings:
    """The Slurm side of a spec's `execution` (after the CLI's flags): sbatch options of every job."""

    partition: str | None = None
    time: str | None = None
    gres: str | None = None
    account: str | None = None
    qos: str | None = None
    max_parallel: int | None = None
    ship_images: bool = False  # nodes load images from archives on the shared filesystem (image_ship.py)
    hold: bool = False  # submit held (sbatch --hold): the submission benchmark only

    @classmethod
    def from_execution(cls, execution: Any) -> SlurmSettings:
        return cls(partition=execution.partition, time=execution.time, gres=execution.gres,
                   account=execution.account, qos=execution.qos, max_parallel=execution.max_parallel,
                   ship_images=execution.ship_images)

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None and k != "hold"}


@dataclass(frozen=True)
class JobShape:
    """What one job asks Slurm for; runs with equal shapes share a job array."""

    cpus: int
    mem_mb: int | None
    gpus: int
    time_s: int | None  # the run's own limit (resources.time_limit_s), None: none

    @classmethod
    def of_launch(cls, launch: Launch) -> JobShape:
        threads = launch.env.get("OMP_NUM_THREADS")
        return cls.of(launch.limits.cpus, launch.limits.memory, int(threads) if threads else None,
                      len(launch.devices), launch.limits.time_s)

    @classmethod
    def of_resources(cls, resources: Mapping[str, Any]) -> JobShape:
        """From a planned run's resolved `resources` section (the plan-time check)."""
        return cls.of(resources.get("cpus"), resources.get("memory"), resources.get("threads"),
                      int(resources.get("gpus") or 0), resources.get("time_limit_s"))

    @classmethod
    def of(cls, cpus: float | None, memory: str | None, threads: int | None, gpus: int,
           time_s: int | None) -> JobShape:
        want = max(math.ceil(cpus) if cpus else 1, threads or 1)
        return cls(cpus=want, mem_mb=memory_mb(memory), gpus=gpus, time_s=time_s)


def memory_mb(size: str | None) -> int | None:
    """Docker's size syntax ("8g", "512m", "1048576") as whole MiB for sbatch --mem (rounded up)."""
    if not size:
        return None
    m = re.fullmatch(r"([0-9]+)([kmgKMG]?)", size)
    if m is None:
        raise ValueError(f"not a size: {size!r}")
    scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[m.group(2).lower()]
    return max(1, math.ceil(int(m.group(1)) * scale / 2**20))


def slurm_minutes(seconds: int) -> str:
    """sbatch --time in whole minutes (Slurm's own granularity), rounded up."""
    return str(max(1, math.ceil(seconds / 60)))


def job_time(settings: SlurmSettings, shape: JobShape) -> str | None:
    if settings.time is not None:
        return settings.time
    if shape.time_s is not None:
        return slurm_minutes(shape.time_s + TIME_MARGIN_S + (SHIP_MARGIN_S if settings.ship_images else 0))
    return None  # the partition's default


def job_gres(settings: SlurmSettings, shape: JobShape) -> str | None:
    if settings.gres is not None:
        return settings.gres
    return f"gpu:{shape.gpus}" if shape.gpus else None


def resource_args(settings: SlurmSettings, shape: JobShape) -> list[str]:
    """The sbatch options that decide whether and where a job can run (also given to --test-only)."""
    args = ["--nodes=1", "--ntasks=1", f"--cpus-per-task={shape.cpus}"]
    if shape.mem_mb is not None:
        args.append(f"--mem={shape.mem_mb}M")
    optional = {"--partition": settings.partition, "--account": settings.account, "--qos": settings.qos,
                "--time": job_time(settings, shape), "--gres": job_gres(settings, shape)}
    args += [f"{flag}={value}" for flag, value in optional.items() if value is not None]
    return args


def array_args(settings: SlurmSettings, shape: JobShape, *, name: str, count: int, log_pattern: str,
               workdir: str) -> list[str]:
    """Every sbatch option of one job array of `count` runs."""
    throttle = f"%{settings.max_parallel}" if settings.max_parallel else ""
    args = [f"--job-name={name}", f"--array=0-{count - 1}{throttle}", f"--output={log_pattern}",
            f"--chdir={workdir}",
            "--export=NONE",  # the submitting shell's environment (tokens, keys) stays here
            "--no-requeue",  # a preempted or failed node's run is a failed row, never restarted by Slurm
            *resource_args(settings, shape)]
    if settings.hold:
        args.append("--hold")
    return args


def job_name(bundle_id: str) -> str:
    return (JOB_NAME_PREFIX + bundle_id)[:100]


def batch_script(index_file: str, python: str | None = None) -> str:
    """The array's script: task i runs the run named on line i of `index_file` on its node."""
    python = python or sys.executable
    return ("#!/bin/sh\n"
            "# written by runner (runner/executor/slurm_batch.py): array task i = the run on line i of the index\n"
            f"exec {_quote(python)} -m runner.executor.slurm_node {_quote(index_file)} \"$SLURM_ARRAY_TASK_ID\"\n")


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def group_by_shape(items: Sequence[T], launch_of: Callable[[T], Launch]) -> dict[JobShape, list[T]]:
    """Items (jobs) grouped by the shape of their launch, each group in submission order."""
    groups: dict[JobShape, list[T]] = {}
    for item in items:
        groups.setdefault(JobShape.of_launch(launch_of(item)), []).append(item)
    return groups
