"""What each framework's backend can run: the one table the planner and the workload both read.

A run asking a framework for something it lacks is refused before anything runs: by `runner
plan` / `reproduce` (runner.spec.check, naming the spec field and its line) and again by the
workload's run.json reader (exit 2), for a run.json written by hand. Pure Python: the host never
imports a framework to decide this.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import SpecError


@dataclass(frozen=True)
class Lack:
    """One thing a framework cannot do: run.json `field` set to `value` (on `variants`, or any)."""

    field: str
    value: Any
    why: str
    fix: str
    variants: tuple[str, ...] = ()


# MXNet 1.9.1 (retired; docs/workload.md "The same run in every framework").
LACKS: dict[str, tuple[Lack, ...]] = {
    "mxnet": (
        Lack("train.precision", "amp_bf16",
             "MXNet 1.9.1's bfloat16 mixed precision (contrib.amp) runs on CPUs only (oneDNN)",
             "use precision fp32 or amp_fp16 on a cuda variant", variants=("cuda",)),
        Lack("train.precision", "amp_fp16",
             "MXNet 1.9.1's float16 mixed precision (contrib.amp) runs on GPUs only",
             "use precision fp32 on CPU, or variant cuda", variants=("cpu", "ppc64le")),
        Lack("train.compile", True,
             "MXNet has no compiler beyond hybridize, which every MXNet run already uses "
             "(static graphs, memory planned once)", "set compile: false for runs that include mxnet"),
        Lack("parallel.mode", "data", "the MXNet backend has no data-parallel path (kvstore) in runner",
             "run mxnet on one device (leave resources.parallel out)"),
        Lack("train.cuda_graphs", True, "runner's MXNet backend has no CUDA-graph capture",
             "set cuda_graphs: false for runs that include mxnet"),
        Lack("train.channels_last", True, "runner's MXNet (Gluon) models are NCHW only",
             "set channels_last: false for runs that include mxnet"),
    ),
    # CUDA graphs capture GPU work: nothing to capture on a CPU.
    "pytorch": (
        Lack("train.cuda_graphs", True, "CUDA graphs replay GPU kernels; a CPU run has none",
             "use variant cuda, or cuda_graphs: false", variants=("cpu", "ppc64le")),
    ),
    # Data-parallel BatchNorm synchronisation (docs/workload.md "Data-parallel runs").
    "tensorflow": (
        Lack("train.cuda_graphs", True, "TensorFlow has no CUDA-graph capture of a training step; its "
             "launch-overhead remedy is XLA", "set cuda_graphs: false and compile: true (XLA) for tensorflow runs"),
        Lack("parallel.sync_batch_norm", True, "runner's TensorFlow BatchNorm (TorchBatchNorm) does not "
             "all-reduce its statistics under MirroredStrategy", "set recipe.data_parallel.sync_batch_norm: false"),
    ),
}


def lacks(framework: str, variant: str, train: dict[str, Any],
          parallel: dict[str, Any] | None = None) -> Lack | None:
    """The first thing `framework` on `variant` cannot do among run.json's `train` and `parallel` sections."""
    sections = {"train": train, "parallel": parallel or {}}
    for lack in LACKS.get(framework, ()):
        section, key = lack.field.split(".", 1)
        value = sections[section].get(key)
        if value == lack.value and type(value) is type(lack.value) \
                and (not lack.variants or variant in lack.variants):
            return lack
    return None


def check(framework: str, variant: str, train: dict[str, Any], file: Path | str | None = None,
          parallel: dict[str, Any] | None = None) -> None:
    """Raise a SpecError naming the run.json field when `framework` cannot run `train` / `parallel`."""
    lack = lacks(framework, variant, train, parallel)
    if lack is not None:
        where = f" on {variant}" if lack.variants else ""
        setting = f"{lack.field.split('.', 1)[1]}: {json.dumps(lack.value)}"
        raise SpecError(f"{framework} cannot run {setting}{where}: {lack.why}",
                        file=file, field=lack.field, fix=lack.fix)
