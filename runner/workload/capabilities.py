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

from runner.data.augment import DEVICE_OPS
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
        Lack("train.augment_on", "device", "runner's device augmentation is written in PyTorch; MXNet runs "
             "augment on the host", "set augment_on: auto or host for runs that include mxnet"),
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
        Lack("train.augment_on", "device", "runner's device augmentation is written in PyTorch; TensorFlow runs "
             "augment on the host", "set augment_on: auto or host for runs that include tensorflow"),
    ),
}

# recipe.augment_on / run.json train.augment_on (docs/workload.md "The device data path").
AUGMENT_ON = ("auto", "host", "device")


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


def augment_on(framework: str, variant: str, requested: str, ops: list[dict[str, Any]], dataset: str,
               file: Path | str | None = None) -> str:
    """Where a run's training augmentation runs: "host" (numpy, runner.data.augment.apply_batch)
    or "device" (runner.workload.harness.device_augment, PyTorch, from the same decisions).

    The one rule the planner (through the run.json reader) and the workload both apply:
    `host` -> host; `device` -> device for PyTorch on any variant (on a CPU the torch ops run
    there), refused (SpecError naming train.augment_on) for another framework or for an op the
    device path cannot apply; `auto` -> device for PyTorch on variant cuda when every op is in
    DEVICE_OPS and the batches come from the array loader (runner.data.loader.BatchIterator, not
    the ImageNet image loader that random_resized_crop selects), else host. Pure Python."""
    if requested not in AUGMENT_ON:
        raise SpecError(f"must be one of {', '.join(AUGMENT_ON)}, got {requested!r}", file=file,
                        field="train.augment_on")
    if requested == "host":
        return "host"
    names = [op.get("op") if isinstance(op, dict) else None for op in ops]
    unsupported = [(i, name) for i, name in enumerate(names) if name not in DEVICE_OPS]
    image_loader = dataset == "imagenet" and "random_resized_crop" in names  # runner.data.image_loader
    if requested == "auto":
        ok = framework == "pytorch" and variant == "cuda" and not unsupported and not image_loader
        return "device" if ok else "host"
    if framework != "pytorch":
        raise SpecError(f"{framework} cannot run augment_on: \"device\": runner's device augmentation is "
                        "written in PyTorch", file=file, field="train.augment_on",
                        fix=f"set augment_on: auto or host for runs that include {framework}")
    if unsupported:
        i, name = unsupported[0]
        raise SpecError(f"augment_on: \"device\" cannot apply augmentation[{i}] ({name}): it needs the "
                        "decoded image's size, known only to the host image loader", file=file,
                        field="train.augment_on",
                        fix=f"use augment_on: auto or host, or only the ops {', '.join(DEVICE_OPS)}")
    return "device"
