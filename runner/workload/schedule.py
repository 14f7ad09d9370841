"""Learning-rate schedules, defined once in pure Python and used by EVERY framework's harness.

`lr_at(cfg, base_lr, epoch, step_in_epoch, steps_per_epoch)` is the learning rate of the optimizer
step about to run (epoch and step count from 0); the harness calls it before every step and
hands the value to `set_lr`, so no framework scheduler (each with its own stepping convention)
is involved.

- constant:  base_lr
- step:      base_lr * gamma ** (epoch // step_size)                          (PyTorch StepLR)
- multistep: base_lr * gamma ** (number of milestones <= epoch)               (MultiStepLR)
- cosine:    min_lr + (base_lr - min_lr) * (1 + cos(pi * p)) / 2, p = (e - warmup_epochs) /
             (total_epochs - warmup_epochs) clipped to [0, 1]; e = epoch (granularity `epoch`,
             PyTorch's CosineAnnealingLR stepped once per epoch) or epoch + step_in_epoch /
             steps_per_epoch (granularity `step`).
- warmup (any schedule): during the first warmup_epochs epochs the lr rises linearly per step,
  base_lr * (k + 1) / (warmup_epochs * steps_per_epoch) for global step k, replacing the
  schedule's value. step_size and milestones count epochs from the start of training.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from runner.errors import SpecError
from runner.workload.sections import from_section

SCHEDULE_NAMES: tuple[str, ...] = ("constant", "step", "multistep", "cosine")


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = "constant"
    step_size: int | None = None  # epochs between decays (step)
    gamma: float = 0.1  # decay factor (step, multistep)
    milestones: tuple[int, ...] = ()  # epochs at which to decay (multistep)
    warmup_epochs: int = 0
    min_lr: float = 0.0  # floor of the cosine
    total_epochs: int | None = None  # length of the cosine (the run's epochs)
    granularity: str = "epoch"  # cosine: recompute per epoch or per step

    def __post_init__(self) -> None:
        if isinstance(self.milestones, list):
            object.__setattr__(self, "milestones", tuple(self.milestones))
        _validate(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, total_epochs: int | None = None,
                  source: str | None = None) -> ScheduleConfig:
        """Read the `schedule` section of run.json; unknown keys are errors.

        `total_epochs` (the run's epochs) fills the cosine's length when the section has none.
        """
        if isinstance(d, dict) and d.get("total_epochs") is None and total_epochs is not None:
            d = {**d, "total_epochs": total_epochs}
        return from_section(cls, d, "schedule", SpecError, source=source)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d


def _bad(field: str, message: str, fix: str | None = None) -> SpecError:
    return SpecError(message, field=f"schedule.{field}", fix=fix)


def _int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _validate(c: ScheduleConfig) -> None:
    if c.name not in SCHEDULE_NAMES:
        raise _bad("name", f"unknown schedule {c.name!r}", f"one of {', '.join(SCHEDULE_NAMES)}")
    if not _int(c.warmup_epochs) or c.warmup_epochs < 0:
        raise _bad("warmup_epochs", f"must be an integer >= 0, got {c.warmup_epochs!r}")
    if not isinstance(c.gamma, (int, float)) or isinstance(c.gamma, bool) or not 0 < c.gamma:
        raise _bad("gamma", f"must be > 0, got {c.gamma!r}")
    if not isinstance(c.min_lr, (int, float)) or isinstance(c.min_lr, bool) or c.min_lr < 0:
        raise _bad("min_lr", f"must be >= 0, got {c.min_lr!r}")
    if c.granularity not in ("epoch", "step"):
        raise _bad("granularity", f"must be epoch or step, got {c.granularity!r}")
    if c.name == "step" and (not _int(c.step_size) or c.step_size < 1):
        raise _bad("step_size", f"a step schedule needs step_size >= 1 (epochs), got {c.step_size!r}")
    if c.name == "multistep":
        ms = c.milestones
        if not ms or not all(_int(m) and m > 0 for m in ms) or list(ms) != sorted(set(ms)):
            raise _bad("milestones", f"a multistep schedule needs increasing positive epochs, got {list(ms)}")
    if c.name == "cosine":
        if not _int(c.total_epochs) or c.total_epochs <= c.warmup_epochs:
            raise _bad("total_epochs", f"a cosine schedule needs total_epochs > warmup_epochs, got "
                       f"{c.total_epochs!r}", "pass the run's epochs")


def lr_at(cfg: ScheduleConfig, base_lr: float, epoch: int, step_in_epoch: int, steps_per_epoch: int) -> float:
    """The learning rate for the step `step_in_epoch` (from 0) of epoch `epoch` (from 0)."""
    if steps_per_epoch < 1 or not 0 <= step_in_epoch < steps_per_epoch or epoch < 0:
        raise ValueError(f"bad position: epoch {epoch}, step {step_in_epoch} of {steps_per_epoch}")
    if epoch < cfg.warmup_epochs:
        k = epoch * steps_per_epoch + step_in_epoch
        return base_lr * (k + 1) / (cfg.warmup_epochs * steps_per_epoch)
    if cfg.name == "constant":
        return base_lr
    if cfg.name == "step":
        assert cfg.step_size is not None
        return base_lr * cfg.gamma ** (epoch // cfg.step_size)
    if cfg.name == "multistep":
        return base_lr * cfg.gamma ** sum(1 for m in cfg.milestones if m <= epoch)
    assert cfg.total_epochs is not None
    e = epoch + (step_in_epoch / steps_per_epoch if cfg.granularity == "step" else 0.0)
    p = min(max((e - cfg.warmup_epochs) / (cfg.total_epochs - cfg.warmup_epochs), 0.0), 1.0)
    return cfg.min_lr + (base_lr - cfg.min_lr) * (1.0 + math.cos(math.pi * p)) / 2.0
