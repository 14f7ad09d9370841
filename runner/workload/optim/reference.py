"""The canonical optimizer updates, in numpy: the executable definition (docs/models.md).

Per parameter w with gradient g, learning rate lr (the current one, after the schedule),
weight decay wd and t = 1, 2, ... the number of updates this parameter has had:

    decoupled:  w <- w * (1 - lr * wd)            (first, before the update below)
    l2:         g <- g + wd * w

    sgd:     if momentum > 0:  b <- g (t = 1), else b <- momentum * b + (1 - dampening) * g
                               d <- g + momentum * b (nesterov) or b
             else d <- g
             w <- w - lr * d
    adam:    m <- beta1 * m + (1 - beta1) * g ;  v <- beta2 * v + (1 - beta2) * g^2
             (amsgrad: vmax <- max(vmax, v), used in place of v)
             w <- w - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + epsilon)
    rmsprop: v <- rho * v + (1 - rho) * g^2
             (centered: a <- rho * a + (1 - rho) * g ; s <- sqrt(v - a^2) + epsilon, else sqrt(v) + epsilon)
             if momentum > 0: b <- momentum * b + g / s ; w <- w - lr * b
             else             w <- w - lr * g / s

These are PyTorch's formulas (SGD, Adam/AdamW, RMSprop). Keras differs: SGD keeps lr inside the
velocity (v <- momentum * v - lr * g), Adam adds epsilon to the uncorrected sqrt(v), RMSprop puts
epsilon inside the sqrt and lr inside the momentum buffer; the frameworks' defaults differ too.
This module computes in float64; the framework implementations run in float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runner.workload.optim import OptimConfig


def new_state(shape: tuple[int, ...]) -> dict[str, Any]:
    z = np.zeros(shape, dtype=np.float64)
    return {"t": 0, "b": z.copy(), "m": z.copy(), "v": z.copy(), "vmax": z.copy(), "a": z.copy()}


def step(cfg: OptimConfig, lr: float, w: np.ndarray, g: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    """One canonical update of `w` (returned, float64); `state` is updated in place."""
    w = np.asarray(w, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    state["t"] += 1
    t = state["t"]
    wd = cfg.weight_decay
    if wd and cfg.weight_decay_mode == "decoupled":
        w = w * (1.0 - lr * wd)
    elif wd:
        g = g + wd * w
    if cfg.name == "sgd":
        d = g
        if cfg.momentum > 0:
            state["b"] = g.copy() if t == 1 else cfg.momentum * state["b"] + (1.0 - cfg.dampening) * g
            d = g + cfg.momentum * state["b"] if cfg.nesterov else state["b"]
        return w - lr * d
    if cfg.name == "adam":
        state["m"] = cfg.beta1 * state["m"] + (1.0 - cfg.beta1) * g
        state["v"] = cfg.beta2 * state["v"] + (1.0 - cfg.beta2) * g * g
        v = state["v"]
        if cfg.amsgrad:
            state["vmax"] = np.maximum(state["vmax"], state["v"])
            v = state["vmax"]
        m_hat = state["m"] / (1.0 - cfg.beta1**t)
        v_hat = v / (1.0 - cfg.beta2**t)
        return w - lr * m_hat / (np.sqrt(v_hat) + cfg.epsilon)
    if cfg.name == "rmsprop":
        state["v"] = cfg.rho * state["v"] + (1.0 - cfg.rho) * g * g
        if cfg.centered:
            state["a"] = cfg.rho * state["a"] + (1.0 - cfg.rho) * g
            s = np.sqrt(state["v"] - state["a"] ** 2) + cfg.epsilon
        else:
            s = np.sqrt(state["v"]) + cfg.epsilon
        if cfg.momentum > 0:
            state["b"] = cfg.momentum * state["b"] + g / s
            return w - lr * state["b"]
        return w - lr * g / s
    raise ValueError(f"unknown optimizer {cfg.name!r}")
