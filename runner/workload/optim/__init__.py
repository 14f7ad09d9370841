"""Optimizers defined once (docs/models.md, `reference.py`), implemented identically per framework.

`OptimConfig` is pure Python. `torch_optim.build(params, cfg)` and `tf_optim.build(cfg)` implement
the SAME canonical update; `reference.step` is that update in numpy (the executable definition
the tests hold both against). Canonical = PyTorch's formulas (torch.optim SGD, Adam/AdamW,
RMSprop), with decoupled weight decay defined as AdamW's `w <- w * (1 - lr * wd)` for every
optimizer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from runner.errors import SpecError
from runner.workload.sections import from_section

OPTIMIZER_NAMES: tuple[str, ...] = ("sgd", "adam", "rmsprop")
WEIGHT_DECAY_MODES: tuple[str, ...] = ("l2", "decoupled")


@dataclass(frozen=True)
class OptimConfig:
    """Every optimizer hyperparameter, explicit (defaults are PyTorch's, never a framework's).

    sgd: lr, momentum, dampening, nesterov. adam: lr, beta1, beta2, epsilon, amsgrad.
    rmsprop: lr, rho (PyTorch's alpha), epsilon, momentum, centered. All: weight_decay with
    weight_decay_mode `l2` (added to the gradient) or `decoupled` (w *= 1 - lr * weight_decay).
    Fields that do not apply to `name` are carried (and recorded) but unused.
    """

    name: str
    lr: float
    momentum: float = 0.0
    nesterov: bool = False
    dampening: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8
    rho: float = 0.99
    centered: bool = False
    amsgrad: bool = False
    weight_decay: float = 0.0
    weight_decay_mode: str = "l2"

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str | None = None) -> OptimConfig:
        """Read the `optimizer` section of run.json; unknown keys are errors."""
        return from_section(cls, d, "optimizer", SpecError, required=("name", "lr"), source=source)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bad(field: str, message: str, fix: str | None = None) -> SpecError:
    return SpecError(message, field=f"optimizer.{field}", fix=fix)


def _real(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _validate(c: OptimConfig) -> None:
    if c.name not in OPTIMIZER_NAMES:
        raise _bad("name", f"unknown optimizer {c.name!r}", f"one of {', '.join(OPTIMIZER_NAMES)}")
    for key in ("lr", "momentum", "dampening", "beta1", "beta2", "epsilon", "rho", "weight_decay"):
        v = getattr(c, key)
        if not _real(v) or v < 0:
            raise _bad(key, f"must be a finite number >= 0, got {v!r}")
    for key in ("nesterov", "centered", "amsgrad"):
        if not isinstance(getattr(c, key), bool):
            raise _bad(key, "must be true or false")
    if c.lr <= 0:
        raise _bad("lr", f"must be > 0, got {c.lr}")
    if c.weight_decay_mode not in WEIGHT_DECAY_MODES:
        raise _bad("weight_decay_mode", f"unknown mode {c.weight_decay_mode!r}", "l2 or decoupled")
    if c.name in ("sgd", "rmsprop") and c.momentum >= 1:
        raise _bad("momentum", f"must be < 1, got {c.momentum}")
    if c.name == "sgd":
        if c.dampening >= 1:
            raise _bad("dampening", f"must be < 1, got {c.dampening}")
        if c.nesterov and (c.momentum <= 0 or c.dampening != 0):
            raise _bad("nesterov", "Nesterov momentum needs momentum > 0 and dampening 0")
    if c.name == "adam":
        for key in ("beta1", "beta2"):
            if getattr(c, key) >= 1:
                raise _bad(key, f"must be in [0, 1), got {getattr(c, key)}")
    if c.name in ("adam", "rmsprop") and c.epsilon <= 0:
        raise _bad("epsilon", f"must be > 0, got {c.epsilon}")
    if c.name == "rmsprop" and c.rho >= 1:
        raise _bad("rho", f"must be in [0, 1), got {c.rho}")
