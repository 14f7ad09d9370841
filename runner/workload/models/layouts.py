"""Canonical (PyTorch) layouts <-> Keras layouts, in numpy: exact permutations only.

Shared by `tf_impl` (loading and exporting a Keras model) and the host's Keras weights import
(`runner weights import x.weights.h5`), which must not import TensorFlow. Conv kernels OIHW <->
HWIO; dense kernels (out, in) <-> (in, out); a dense layer fed by a flattened (C, H, W) map
(`Dense.input_chw`) also has its rows permuted, because Keras flattens NHWC in (H, W, C) order.
"""

from __future__ import annotations

import numpy as np

from runner.workload.models.arch import BatchNorm2d, Conv2d, Dense, ParamSpec

# Keras variable name per (layer type, canonical param), in each layer's creation order.
KERAS_NAME = {
    (Conv2d, "weight"): "kernel", (Conv2d, "bias"): "bias",
    (Dense, "weight"): "kernel", (Dense, "bias"): "bias",
    (BatchNorm2d, "weight"): "gamma", (BatchNorm2d, "bias"): "beta",
    (BatchNorm2d, "running_mean"): "moving_mean", (BatchNorm2d, "running_var"): "moving_variance",
}


def to_keras(spec: ParamSpec, w: np.ndarray) -> np.ndarray:
    if spec.param != "weight":
        return w
    if isinstance(spec.layer, Conv2d):
        return w.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    if isinstance(spec.layer, Dense):
        if spec.layer.input_chw is not None:  # columns (C, H, W) -> rows (H, W, C)
            c, h, ww = spec.layer.input_chw
            return w.reshape(-1, c, h, ww).transpose(2, 3, 1, 0).reshape(h * ww * c, -1)
        return w.T  # (out, in) -> (in, out)
    return w


def from_keras(spec: ParamSpec, k: np.ndarray) -> np.ndarray:
    if spec.param != "weight":
        return k
    if isinstance(spec.layer, Conv2d):
        return k.transpose(3, 2, 0, 1)  # HWIO -> OIHW
    if isinstance(spec.layer, Dense):
        if spec.layer.input_chw is not None:
            c, h, w = spec.layer.input_chw
            return k.reshape(h, w, c, -1).transpose(3, 2, 0, 1).reshape(-1, c * h * w)
        return k.T
    return k


def keras_shape(spec: ParamSpec) -> tuple[int, ...]:
    """The shape of `spec`'s tensor in Keras' layout."""
    return tuple(to_keras(spec, np.empty(spec.shape, dtype=np.float32)).shape)
