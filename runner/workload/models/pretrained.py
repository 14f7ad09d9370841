"""Which tensors of a model come from pretrained weights, and which keep the seeded init.

The rule (`model.pretrained.skip`, docs/models.md "Pretrained weights"): every canonical tensor
of the model comes from the file, except those under a `skip` prefix, which keep the value the
shared seeded generator drew (a new classifier for 10 classes, say). Anything else is refused,
naming the tensor: a model tensor missing from the file or shaped differently, a file tensor the
model has no place for, a skip prefix that names no tensor. Nothing is matched "by shape", so a
file made for another model cannot load silently by half.

Pure numpy: the host checks a file against each run's model before any run starts (headers
only), and the workload applies it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from runner.errors import ModelError
from runner.workload.models.arch import Arch, param_specs

FIELD = "model.pretrained"


@dataclass(frozen=True)
class LoadPlan:
    """What loading a weights file into one model does (recorded in the run's events and result)."""

    loaded: tuple[str, ...]  # model tensors taken from the file
    kept_init: tuple[str, ...]  # model tensors under a skip prefix: the seeded init
    ignored: tuple[str, ...] = field(default=())  # file tensors under a skip prefix, unused

    def record(self) -> dict[str, object]:
        return {"loaded": len(self.loaded), "kept_init": list(self.kept_init), "ignored": list(self.ignored)}


def _under(key: str, prefix: str) -> bool:
    prefix = prefix.rstrip(".")
    return key == prefix or key.startswith(prefix + ".")


def plan_load(arch: Arch, file_tensors: dict[str, tuple[np.dtype, tuple[int, ...]]], skip: Iterable[str],
              source: str | None = None) -> LoadPlan:
    """Check a file's tensors (key -> dtype, shape) against `arch` under the skip rule."""
    skip = tuple(skip)
    specs = param_specs(arch)
    for prefix in skip:
        if not any(_under(s.key, prefix) for s in specs):
            raise ModelError(f"skip prefix {prefix!r} names no tensor of {arch.name}", file=source,
                             field=f"{FIELD}.skip", fix=f"use a layer path such as {specs[-1].path!r}")
    loaded, kept = [], []
    for spec in specs:
        if any(_under(spec.key, p) for p in skip):
            kept.append(spec.key)
            continue
        if spec.key not in file_tensors:
            raise ModelError(f"tensor {spec.key} of {arch.name} is missing from the weights", file=source,
                             field=FIELD, fix="import weights made for this model, or add its layer to "
                                              "pretrained.skip to keep the seeded init")
        dtype, shape = file_tensors[spec.key]
        if tuple(shape) != spec.shape or np.dtype(dtype) != np.float32:
            raise ModelError(f"tensor {spec.key}: the weights hold {np.dtype(dtype)} {tuple(shape)}, "
                             f"{arch.name} needs float32 {spec.shape}", file=source, field=FIELD,
                             fix=f"add {spec.path!r} to pretrained.skip to keep its seeded init "
                                 "(e.g. a new classifier), or import weights made for this model")
        loaded.append(spec.key)
    taken = set(loaded)
    ignored = []
    for key in sorted(file_tensors):
        if key in taken:
            continue
        if not any(_under(key, p) for p in skip):
            raise ModelError(f"the weights hold tensor {key}, which {arch.name} has no place for", file=source,
                             field=FIELD, fix="import weights made for this model, or add its prefix to "
                                              "pretrained.skip")
        ignored.append(key)
    if not loaded:
        raise ModelError(f"no tensor of {arch.name} would come from the weights", file=source,
                         field=f"{FIELD}.skip", fix="skip only the layers that differ (e.g. the classifier)")
    return LoadPlan(tuple(loaded), tuple(kept), tuple(ignored))


def apply_pretrained(arch: Arch, seeded: dict[str, np.ndarray], file_weights: dict[str, np.ndarray],
                     skip: Iterable[str], source: str | None = None) -> tuple[dict[str, np.ndarray], LoadPlan]:
    """The initial weights: the file's tensors where the rule says, the seeded ones elsewhere."""
    plan = plan_load(arch, {k: (v.dtype, tuple(v.shape)) for k, v in file_weights.items()}, skip, source)
    out = dict(seeded)
    for key in plan.loaded:
        out[key] = np.ascontiguousarray(file_weights[key], dtype=np.float32)
    return out, plan
