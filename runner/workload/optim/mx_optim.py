"""The canonical optimizers in MXNet (formulas: `reference.py`, docs/models.md).

MXNet's own optimizers do NOT compute the canonical update: its SGD keeps lr inside the momentum
(`mom = momentum * mom - lr * (g + wd * w)`, Keras' form: equal only while lr is constant), its
Adam folds the bias corrections into lr and adds epsilon to the UNcorrected sqrt(v) (Keras'
"epsilon hat"), its RMSprop puts epsilon inside the sqrt and lr inside the momentum (centered:
Graves' form), and each rescales and may clip gradients (`rescale_grad`, `clip_gradient`).

Two paths compute the canonical update:

- **fused** (float32 parameters, the training dtype): MXNet's one-pass update operators, with
  arguments chosen so their formula IS the canonical one (an operator pass over 24M ResNet-50
  weights is memory-bound: one fused pass instead of ~10 elementwise ones):
  * SGD + momentum: `sgd_mom_update` keeps `mom = -lr * b`; when lr changes from lr' to lr the
    momentum argument is `momentum * lr / lr'` (so `mom` stays `-lr * b`, PyTorch's buffer), and
    dampening enters as `rescale_grad = 1 - dampening` and `wd * (1 - dampening)` from step 2.
  * Nesterov: `nag_mom_update` (`mom <- m mom - lr g'; w <- w + m mom - lr g'`) is PyTorch's
    Nesterov with `mom = -lr * b`; when lr changes, `mom` is first rescaled by lr / lr' (a pass);
    L2 decay is added to the gradient first (the operator's `wd` does something else).
  * plain SGD: `sgd_update` (`w <- w - lr (g + wd w)`).
  * Adam (not AMSGrad): `adam_update` with `lr * sqrt(bc2) / bc1` and `epsilon * sqrt(bc2)`:
    `w - lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)` rewritten, bias corrections as Python floats.
  * RMSprop without momentum, not centered: `adam_update` with beta1 0 (its m is then g), beta2
    rho, and lr and epsilon as given: `w - lr * g / (sqrt(v) + eps)`.
  * decoupled decay: `w *= 1 - lr * wd` first (one pass), then the operator with wd 0.
  MXNet's operator arguments are float32, so this path is float32-exact (not float64-exact).
- **generic** (float64 parameters, and centered or momentum RMSprop and AMSGrad, which no MXNet
  operator computes: MXNet's RMSprop operators put epsilon inside the sqrt):
  `mx.nd` elementwise operators in PyTorch's order (Adam's `m + (1 - beta1)(g - m)` lerp), in
  place where possible. Bias corrections are Python floats, like PyTorch's.

Both are tested against `reference.py` (tests/workload/test_mx_optim.py: fused and generic in
float32, generic in float64). State is per parameter (its step count, buffers in its dtype).
MXNet's engine runs the operators asynchronously; nothing here waits for them.

`build(cfg)` -> `CanonicalOptimizer`; `opt.apply(params)` steps every Gluon `Parameter` whose
`grad_req` is not "null" with its current `.grad()`; `opt.update(key, w, g)` steps one NDArray
in place; `set_lr(opt, lr)` sets the learning rate of the next step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import mxnet as mx
import numpy as np

from runner.workload.optim import OptimConfig

_SLOTS = {"sgd": ("b",), "adam": ("m", "v"), "rmsprop": ("v", "a", "b")}


class CanonicalOptimizer:
    """One canonical step per `apply` / `update`; the learning rate is a plain float (`set_lr`).

    `fused`: None (default) = the fused operators wherever they apply (float32 parameters, not
    RMSprop or AMSGrad); False = always the generic path (for comparisons).
    """

    def __init__(self, cfg: OptimConfig, fused: bool | None = None) -> None:
        self.cfg = cfg
        self.lr = float(cfg.lr)
        self.fused = fused is not False and _has_fused(cfg)
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

    def uses_fused(self, w: mx.nd.NDArray) -> bool:
        return self.fused and np.dtype(w.dtype) == np.float32

    def _slots(self, key: str, w: mx.nd.NDArray) -> dict[str, Any]:
        s = self._state.get(key)
        if s is None:
            names = _SLOTS[self.cfg.name] + (("vmax",) if self.cfg.name == "adam" and self.cfg.amsgrad else ())
            s = {"t": 0, "lr": None}
            for name in names:
                s[name] = mx.nd.zeros(w.shape, ctx=w.context, dtype=w.dtype)
            self._state[key] = s
        return s

    def update(self, key: str, w: mx.nd.NDArray, g: mx.nd.NDArray) -> None:
        """One canonical update of `w` (in place) with gradient `g`; state kept under `key`."""
        s = self._slots(key, w)
        s["t"] += 1
        c, lr = self.cfg, self.lr
        if c.weight_decay and c.weight_decay_mode == "decoupled":
            w *= 1.0 - lr * c.weight_decay
        l2 = c.weight_decay if c.weight_decay_mode == "l2" else 0.0
        if self.uses_fused(w):
            self._fused(w, g, s, lr, l2)
        else:
            self._generic(w, g if not l2 else g + w * l2, s, lr)
        s["lr"] = lr

    def _fused(self, w: Any, g: Any, s: dict[str, Any], lr: float, wd: float) -> None:
        c, t = self.cfg, s["t"]
        nd = mx.nd
        if c.name == "sgd":
            if c.momentum == 0:
                nd.sgd_update(w, g, lr=lr, wd=wd, rescale_grad=1.0, out=w)
            elif c.nesterov:  # s["b"] holds -lr * b, rescaled (one pass) when lr changes; dampening is 0
                if t > 1 and lr != s["lr"]:
                    s["b"] *= lr / s["lr"]
                g = g + w * wd if wd else g  # the operator's own wd is not PyTorch's L2 here
                nd.nag_mom_update(w, g, s["b"], lr=lr, momentum=c.momentum, wd=0.0, rescale_grad=1.0, out=w)
            else:  # s["b"] holds -lr * b: rescaled by the lr ratio through the momentum argument
                scale = 1.0 if t == 1 else 1.0 - c.dampening
                momentum = 0.0 if t == 1 else c.momentum * lr / s["lr"]
                nd.sgd_mom_update(w, g, s["b"], lr=lr, momentum=momentum, wd=wd * scale, rescale_grad=scale, out=w)
        elif c.name == "adam":
            bc1, bc2_sqrt = 1.0 - c.beta1**t, math.sqrt(1.0 - c.beta2**t)
            nd.adam_update(w, g, s["m"], s["v"], lr=lr * bc2_sqrt / bc1, beta1=c.beta1, beta2=c.beta2,
                           epsilon=c.epsilon * bc2_sqrt, wd=wd, rescale_grad=1.0, out=w)
        elif c.name == "rmsprop":  # plain RMSprop = Adam with beta1 0 (m = g) and no bias correction
            nd.adam_update(w, g, s["a"], s["v"], lr=lr, beta1=0.0, beta2=c.rho, epsilon=c.epsilon, wd=wd,
                           rescale_grad=1.0, out=w)
        else:
            raise ValueError(f"no fused path for {c.name!r}")

    def _generic(self, w: Any, g: Any, s: dict[str, Any], lr: float) -> None:
        c, t = self.cfg, s["t"]
        if c.name == "sgd":
            d = g
            if c.momentum > 0:
                b = s["b"]
                if t == 1:
                    b[:] = g
                else:
                    b *= c.momentum
                    b += g * (1.0 - c.dampening) if c.dampening else g
                d = g + b * c.momentum if c.nesterov else b
            w -= d * lr
        elif c.name == "adam":
            m, v = s["m"], s["v"]
            m += (g - m) * (1.0 - c.beta1)  # PyTorch's lerp
            v *= c.beta2
            v += mx.nd.square(g) * (1.0 - c.beta2)
            if c.amsgrad:
                mx.nd.broadcast_maximum(s["vmax"], v, out=s["vmax"])
                v = s["vmax"]
            bc1, bc2_sqrt = 1.0 - c.beta1**t, math.sqrt(1.0 - c.beta2**t)
            denom = mx.nd.sqrt(v)
            denom /= bc2_sqrt
            denom += c.epsilon
            w -= (m / denom) * (lr / bc1)
        elif c.name == "rmsprop":
            v = s["v"]
            v *= c.rho
            v += mx.nd.square(g) * (1.0 - c.rho)
            if c.centered:
                a = s["a"]
                a += (g - a) * (1.0 - c.rho)
                avg = mx.nd.sqrt(v - mx.nd.square(a))
            else:
                avg = mx.nd.sqrt(v)
            avg += c.epsilon
            if c.momentum > 0:
                b = s["b"]
                b *= c.momentum
                b += g / avg
                w -= b * lr
            else:
                w -= (g / avg) * lr
        else:
            raise ValueError(f"unknown optimizer {c.name!r}")


def _has_fused(cfg: OptimConfig) -> bool:
    """Whether MXNet has an operator computing `cfg`'s canonical update (see the module doc)."""
    if cfg.name == "adam":
        return not cfg.amsgrad
    if cfg.name == "rmsprop":
        return not cfg.centered and cfg.momentum == 0
    return True


def build(cfg: OptimConfig, fused: bool | None = None) -> CanonicalOptimizer:
    return CanonicalOptimizer(cfg, fused)


def set_lr(opt: CanonicalOptimizer, lr: float) -> None:
    opt.set_lr(lr)
