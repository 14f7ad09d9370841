"""The canonical optimizers in PyTorch (formulas: `reference.py`, docs/models.md).

torch.optim's SGD, Adam (coupled L2 and, with `decoupled_weight_decay`, AdamW) and RMSprop ARE
the canonical formulas, so they are used as they are, with every hyperparameter passed
explicitly. torch.optim has no decoupled weight decay for SGD and RMSprop: `SGDW` and `RMSpropW`
add it (w <- w * (1 - lr * wd) before the step, exactly as AdamW orders it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from runner.workload.optim import OptimConfig


class _DecoupledDecay:
    """Mixin: shrink every parameter that has a gradient by (1 - lr * wd), then the base step."""

    param_groups: list[dict[str, Any]]

    def _decay(self) -> None:
        with torch.no_grad():
            for group in self.param_groups:
                factor = 1.0 - group["lr"] * group["decoupled_weight_decay"]
                if factor == 1.0:
                    continue
                for p in group["params"]:
                    if p.grad is not None:
                        p.mul_(factor)

    def step(self, closure: Callable[[], float] | None = None) -> Any:
        self._decay()
        return super().step(closure)  # type: ignore[misc]


class SGDW(_DecoupledDecay, torch.optim.SGD):
    def __init__(self, params: Iterable[Any], *, decoupled_weight_decay: float, **kwargs: Any) -> None:
        super().__init__(params, weight_decay=0.0, **kwargs)
        for group in self.param_groups:
            group.setdefault("decoupled_weight_decay", decoupled_weight_decay)


class RMSpropW(_DecoupledDecay, torch.optim.RMSprop):
    def __init__(self, params: Iterable[Any], *, decoupled_weight_decay: float, **kwargs: Any) -> None:
        super().__init__(params, weight_decay=0.0, **kwargs)
        for group in self.param_groups:
            group.setdefault("decoupled_weight_decay", decoupled_weight_decay)


def build(params: Iterable[Any], cfg: OptimConfig) -> torch.optim.Optimizer:
    """An optimizer over `params` (pass only the trainable ones) computing the canonical update."""
    decoupled = cfg.weight_decay_mode == "decoupled"
    if cfg.name == "sgd":
        kw: dict[str, Any] = dict(lr=cfg.lr, momentum=cfg.momentum, dampening=cfg.dampening,
                                  nesterov=cfg.nesterov, maximize=False)
        if decoupled:
            return SGDW(params, decoupled_weight_decay=cfg.weight_decay, **kw)
        return torch.optim.SGD(params, weight_decay=cfg.weight_decay, **kw)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.epsilon,
                                weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad, maximize=False,
                                decoupled_weight_decay=decoupled)
    if cfg.name == "rmsprop":
        kw = dict(lr=cfg.lr, alpha=cfg.rho, eps=cfg.epsilon, momentum=cfg.momentum, centered=cfg.centered,
                  maximize=False)
        if decoupled:
            return RMSpropW(params, decoupled_weight_decay=cfg.weight_decay, **kw)
        return torch.optim.RMSprop(params, weight_decay=cfg.weight_decay, **kw)
    raise ValueError(f"unknown optimizer {cfg.name!r}")


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group (the schedule's value for this step)."""
    for group in opt.param_groups:
        group["lr"] = float(lr)
