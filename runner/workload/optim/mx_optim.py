"""The canonical optimizers in MXNet (formulas: `reference.py`, docs/models.md).

MXNet's own optimizers do NOT compute the canonical update: its SGD keeps lr inside the momentum
(`mom = momentum * mom - lr * (g + wd * w)`, Keras' form: equal only while lr is constant), its
Adam folds the bias corrections into lr and adds epsilon to the UNcorrected sqrt(v) (Keras'
"epsilon hat"), its RMSprop puts epsilon inside the sqrt and lr inside the momentum (centered:
Graves' form), and each rescales and may clip gradients (`rescale_grad`, `clip_gradient`). So, as for TensorFlow, this is a small optimizer on `mx.nd` operators, written in
PyTorch's operation order (Adam's `m + (1 - beta1)(g - m)` lerp, bias corrections as Python
floats like PyTorch's), with per-parameter step counters and state in the parameter's dtype.
MXNet's engine runs the operators asynchronously; nothing here waits for them.

`build(cfg)` -> `CanonicalOptimizer`; `opt.apply(params)` steps every Gluon `Parameter` whose
`grad_req` is not "null" with its current `.grad()`; `opt.update(key, w, g)` steps one NDArray
in place; `set_lr(opt, lr)` sets the learning rate of the next step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import mxnet as mx

from runner.workload.optim import OptimConfig

_SLOTS = {"sgd": ("b",), "adam": ("m", "v", "vmax"), "rmsprop": ("v", "a", "b")}


class CanonicalOptimizer:
    """One canonical step per `apply` / `update`; the learning rate is a plain float (`set_lr`)."""

    def __init__(self, cfg: OptimConfig) -> None:
        self.cfg = cfg
        self.lr = float(cfg.lr)
        self._state: dict[str, dict[str, Any]] = {}

    def set_lr(self, lr: float) -> None:
        self.lr = float(lr)

    def apply(self, params: Iterable[Any]) -> None:
        """One step for every parameter with a gradient (grad_req "null" = frozen: skipped)."""
        for p in params:
            if p.grad_req == "null":
                continue
            for w, g in zip(p.list_data(), p.list_grad(), strict=True):
                self.update(f"{p.name}@{w.context}", w, g)

    def _slots(self, key: str, w: mx.nd.NDArray) -> dict[str, Any]:
        s = self._state.get(key)
        if s is None:
            s = {"t": 0}
            for name in _SLOTS[self.cfg.name]:
                s[name] = mx.nd.zeros(w.shape, ctx=w.context, dtype=w.dtype)
            self._state[key] = s
        return s

    def update(self, key: str, w: mx.nd.NDArray, g: mx.nd.NDArray) -> None:
        """One canonical update of `w` (in place) with gradient `g`; state kept under `key`."""
        c, lr = self.cfg, self.lr
        s = self._slots(key, w)
        s["t"] += 1
        t = s["t"]
        if c.weight_decay and c.weight_decay_mode == "decoupled":
            w[:] = w * (1.0 - lr * c.weight_decay)
        elif c.weight_decay:
            g = g + w * c.weight_decay
        if c.name == "sgd":
            d = g
            if c.momentum > 0:
                if t == 1:
                    s["b"][:] = g
                else:
                    s["b"][:] = s["b"] * c.momentum + g * (1.0 - c.dampening)
                d = g + s["b"] * c.momentum if c.nesterov else s["b"]
            w[:] = w - d * lr
        elif c.name == "adam":
            m, v = s["m"], s["v"]
            m[:] = m + (g - m) * (1.0 - c.beta1)  # PyTorch's lerp
            v[:] = v * c.beta2 + g * g * (1.0 - c.beta2)
            if c.amsgrad:
                s["vmax"][:] = mx.nd.maximum(s["vmax"], v)
                v = s["vmax"]
            bc1 = 1.0 - c.beta1**t
            bc2_sqrt = (1.0 - c.beta2**t) ** 0.5
            denom = mx.nd.sqrt(v) / bc2_sqrt + c.epsilon
            w[:] = w - (m / denom) * (lr / bc1)
        elif c.name == "rmsprop":
            v = s["v"]
            v[:] = v * c.rho + g * g * (1.0 - c.rho)
            if c.centered:
                a = s["a"]
                a[:] = a + (g - a) * (1.0 - c.rho)
                avg = mx.nd.sqrt(v - a * a) + c.epsilon
            else:
                avg = mx.nd.sqrt(v) + c.epsilon
            if c.momentum > 0:
                s["b"][:] = s["b"] * c.momentum + g / avg
                w[:] = w - s["b"] * lr
            else:
                w[:] = w - (g / avg) * lr
        else:
            raise ValueError(f"unknown optimizer {c.name!r}")


def build(cfg: OptimConfig) -> CanonicalOptimizer:
    return CanonicalOptimizer(cfg)


def set_lr(opt: CanonicalOptimizer, lr: float) -> None:
    opt.set_lr(lr)
