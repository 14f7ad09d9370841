"""The canonical optimizers in TensorFlow (formulas: `reference.py`, docs/models.md).

Keras' optimizers do NOT compute the canonical update (SGD keeps lr inside the velocity, Adam
adds epsilon to the uncorrected sqrt(v), RMSprop puts epsilon inside the sqrt), so this is a
small custom optimizer on tf ops, written in PyTorch's operation order (bias corrections in
float64 like PyTorch's Python floats) so both frameworks round alike. Usable eagerly and inside
`tf.function`: the learning rate is a variable (`set_lr` does not retrace) and per-variable
state is created once, lifted out of any function being traced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from runner.workload.optim import OptimConfig


class CanonicalOptimizer:
    """`apply(grads, variables)` performs one canonical step; `set_lr(lr)` sets the current lr."""

    def __init__(self, cfg: OptimConfig) -> None:
        self.cfg = cfg
        self.lr = tf.Variable(float(cfg.lr), dtype=tf.float64, trainable=False, name="lr")
        self._state: dict[int, tuple[Any, dict[str, tf.Variable]]] = {}

    def set_lr(self, lr: float) -> None:
        self.lr.assign(float(lr))

    def build(self, variables: Sequence[Any]) -> None:
        """Create the per-variable state up front (optional: `apply` creates it lazily)."""
        for v in variables:
            self._slots(v)

    def _slots(self, var: Any) -> dict[str, tf.Variable]:
        entry = self._state.get(id(var))
        if entry is not None:
            return entry[1]
        names = {"sgd": ("b",), "adam": ("m", "v", "vmax") if self.cfg.amsgrad else ("m", "v"),
                 "rmsprop": ("v", "a", "b")}[self.cfg.name]
        with tf.init_scope():  # state lives outside any traced function
            slots = {n: tf.Variable(tf.zeros(var.shape, var.dtype), trainable=False) for n in names}
            slots["t"] = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        self._state[id(var)] = (var, slots)
        return slots

    def apply(self, grads: Sequence[Any], variables: Sequence[Any]) -> None:
        """One step for every variable with a gradient (None gradients are skipped, like PyTorch)."""
        for g, var in zip(grads, variables, strict=True):
            if g is None:
                continue
            self._update(var, tf.cast(tf.convert_to_tensor(g), var.dtype), self._slots(var))

    def _update(self, var: Any, g: tf.Tensor, s: dict[str, tf.Variable]) -> None:
        c = self.cfg
        s["t"].assign_add(1.0)
        t = s["t"].read_value()
        lr64 = tf.convert_to_tensor(self.lr)
        w = tf.convert_to_tensor(var)
        dt = w.dtype  # float32 normally; float64 in exact parity tests
        if c.weight_decay and c.weight_decay_mode == "decoupled":
            w = w * tf.cast(1.0 - lr64 * c.weight_decay, dt)
        elif c.weight_decay:
            g = g + w * c.weight_decay
        lr = tf.cast(lr64, dt)
        if c.name == "sgd":
            d = g
            if c.momentum > 0:
                b = s["b"].assign(tf.where(t == 1.0, g, s["b"] * c.momentum + g * (1.0 - c.dampening)))
                d = g + b * c.momentum if c.nesterov else b
            var.assign(w - d * lr)
        elif c.name == "adam":
            m = s["m"].assign(s["m"] + (g - s["m"]) * (1.0 - c.beta1))  # PyTorch's lerp
            v = s["v"].assign(s["v"] * c.beta2 + g * g * (1.0 - c.beta2))
            if c.amsgrad:
                v = s["vmax"].assign(tf.maximum(s["vmax"], v))
            bc1 = 1.0 - tf.pow(tf.constant(c.beta1, tf.float64), t)
            bc2 = 1.0 - tf.pow(tf.constant(c.beta2, tf.float64), t)
            step_size = tf.cast(lr64 / bc1, dt)
            denom = tf.sqrt(v) / tf.cast(tf.sqrt(bc2), dt) + c.epsilon
            var.assign(w - step_size * (m / denom))
        elif c.name == "rmsprop":
            v = s["v"].assign(s["v"] * c.rho + g * g * (1.0 - c.rho))
            if c.centered:
                a = s["a"].assign(s["a"] + (g - s["a"]) * (1.0 - c.rho))
                avg = tf.sqrt(v - a * a) + c.epsilon
            else:
                avg = tf.sqrt(v) + c.epsilon
            if c.momentum > 0:
                b = s["b"].assign(s["b"] * c.momentum + g / avg)
                var.assign(w - lr * b)
            else:
                var.assign(w - lr * (g / avg))
        else:
            raise ValueError(f"unknown optimizer {c.name!r}")


def build(cfg: OptimConfig) -> CanonicalOptimizer:
    return CanonicalOptimizer(cfg)


def set_lr(opt: CanonicalOptimizer, lr: float) -> None:
    opt.set_lr(lr)
