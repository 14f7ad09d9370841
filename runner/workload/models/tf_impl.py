"""TensorFlow/Keras builder: one `Arch` -> `keras.Model` (input NHWC float32, output logits).

Keras layer names equal the arch paths. What differs from Keras' defaults, and why:
- Padding: Keras 'same' on a stride-2 conv pads bottom/right only while PyTorch pads both sides,
  so every padded conv/pool uses explicit padding + 'valid' (zeros for convs, -inf for max-pools,
  PyTorch's semantics). Only stride-1 convs with symmetric (k-1)/2 padding use 'same' (identical).
- BatchNorm: momentum = 1 - canonical momentum, epsilon explicit (Keras defaults 0.99 / 1e-3),
  and the moving variance is updated with the unbiased batch variance, like PyTorch (stock Keras
  uses the biased one; normalization itself uses the biased one in both).
- Flatten: Keras flattens NHWC in (H, W, C) order; the canonical dense weight is in (C, H, W)
  order, so `load_weights`/`export_weights` permute the columns of the first dense layer.
- use_bias explicit on every conv/dense; initializers are irrelevant (weights are loaded).
- Freezing marks variables non-trainable, and a frozen BatchNorm normalizes with its moving
  statistics and never updates them, also in training (`TorchBatchNorm.frozen`; torch_impl does
  the same by keeping frozen BatchNorm modules in eval mode): a frozen layer does not change.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from runner.errors import ModelError
from runner.workload.models.arch import (
    Arch,
    BatchNorm2d,
    Conv2d,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Layer,
    MaxPool2d,
    ParamSpec,
    ReLU,
    Residual,
    Sequential,
    param_specs,
)
from runner.workload.models.init import check_weights
from runner.workload.models.layouts import KERAS_NAME
from runner.workload.models.layouts import from_keras as _from_keras
from runner.workload.models.layouts import to_keras as _to_keras


class TorchBatchNorm(keras.layers.BatchNormalization):
    """Keras BatchNormalization whose moving variance takes the UNBIASED batch variance.

    Same normalization as Keras/PyTorch (biased batch variance, eps inside the sqrt); only the
    running-statistics update differs from stock Keras, to equal PyTorch's `BatchNorm2d`.
    `frozen`: the layer is under a `model.freeze` prefix; it always uses (and keeps) its moving
    statistics, like a PyTorch BatchNorm2d held in eval mode.
    """

    def __init__(self, *args: object, frozen: bool = False, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.frozen = frozen

    def get_config(self) -> dict:
        return {**super().get_config(), "frozen": self.frozen}

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:  # type: ignore[override]
        inputs = tf.cast(inputs, self.variable_dtype)  # float32 (or float64), never half precision
        if training and not self.frozen:
            mean, variance = tf.nn.moments(inputs, axes=[0, 1, 2])
            n = tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], inputs.dtype)
            unbiased = variance * (n / tf.maximum(n - 1.0, 1.0))
            w_new = 1.0 - self.momentum  # canonical momentum: weight of the new batch statistic
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * w_new)
            self.moving_variance.assign(self.moving_variance * self.momentum + unbiased * w_new)
        else:
            mean, variance = self.moving_mean, self.moving_variance
        out = tf.nn.batch_normalization(inputs, mean, variance, self.beta, self.gamma, self.epsilon)
        return tf.cast(out, self.compute_dtype)


class NegInfPad2D(keras.layers.Layer):
    """Pad H and W with -inf (for max-pooling: a padded position is never the maximum)."""

    def __init__(self, padding: tuple[int, int, int, int], **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.padding = tuple(padding)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        t, b, left, r = self.padding
        return tf.pad(x, [[0, 0], [t, b], [left, r], [0, 0]], constant_values=float("-inf"))

    def compute_output_shape(self, shape: tuple) -> tuple:
        t, b, left, r = self.padding
        n, h, w, c = shape
        return (n, None if h is None else h + t + b, None if w is None else w + left + r, c)

    def get_config(self) -> dict:
        return {**super().get_config(), "padding": self.padding}


def _same_is_exact(layer: Conv2d) -> bool:
    """Keras 'same' equals the explicit padding: stride 1, odd kernel, symmetric (k-1)/2."""
    kh, kw = layer.kernel
    return layer.stride == (1, 1) and kh % 2 == 1 and kw % 2 == 1 and layer.padding == (
        kh // 2, kh // 2, kw // 2, kw // 2)


class _Given(keras.initializers.Initializer):
    """Initializer that returns a given array (canonical weights already in Keras layout)."""

    def __init__(self, value: np.ndarray) -> None:
        self.value = value

    def __call__(self, shape: tuple, dtype: str | None = None) -> tf.Tensor:
        if tuple(shape) != self.value.shape:
            raise ModelError(f"initial value {self.value.shape} does not fit variable {tuple(shape)}")
        return tf.constant(self.value, dtype=dtype)


class _Builder:
    """Turns arch layers into Keras layers; with `weights`, variables start at those values."""

    def __init__(self, arch: Arch, dtype: str, weights: dict[str, np.ndarray] | None) -> None:
        self.dtype = dtype
        self.arch = arch
        self.initial: dict[str, _Given] = {}
        if weights is not None:
            check_weights(arch, weights)
            self.initial = {s.key: _Given(_to_keras(s, weights[s.key])) for s in param_specs(arch)}

    def _init(self, path: str, **kwargs: str) -> dict[str, _Given]:
        """Keras initializer arguments for the canonical params of `path` (none without weights)."""
        keys = {kw: f"{path}.{param}" for kw, param in kwargs.items()}
        return {kw: self.initial[key] for kw, key in keys.items() if key in self.initial}

    def apply(self, layer: Layer, x: keras.KerasTensor, path: str) -> keras.KerasTensor:
        dtype = self.dtype
        if isinstance(layer, Sequential):
            for child in layer.layers:
                x = self.apply(child, x, f"{path}.{child.name}")
            return x
        if isinstance(layer, Residual):
            out = x
            for child in layer.body:
                out = self.apply(child, out, f"{path}.{child.name}")
            identity = x
            if layer.shortcut is not None:
                identity = self.apply(layer.shortcut, x, f"{path}.{layer.shortcut.name}")
            out = keras.layers.Add(name=f"{path}.add", dtype=dtype)([out, identity])
            return keras.layers.ReLU(name=f"{path}.relu", dtype=dtype)(out)
        if isinstance(layer, Conv2d):
            padding = "valid"
            if _same_is_exact(layer):
                padding = "same"
            elif any(layer.padding):
                t, b, left, r = layer.padding
                x = keras.layers.ZeroPadding2D(((t, b), (left, r)), name=f"{path}.pad", dtype=dtype)(x)
            return keras.layers.Conv2D(layer.out_channels, layer.kernel, strides=layer.stride, padding=padding,
                                       use_bias=layer.bias, name=path, dtype=dtype,
                                       **self._init(path, kernel_initializer="weight", bias_initializer="bias"))(x)
        if isinstance(layer, BatchNorm2d):
            inits = self._init(path, gamma_initializer="weight", beta_initializer="bias",
                               moving_mean_initializer="running_mean", moving_variance_initializer="running_var")
            return TorchBatchNorm(axis=-1, momentum=1.0 - layer.momentum, epsilon=layer.epsilon, name=path,
                                  frozen=self.arch.is_frozen(path),
                                  dtype=dtype, **inits)(x)
        if isinstance(layer, ReLU):
            return keras.layers.ReLU(name=path, dtype=dtype)(x)
        if isinstance(layer, MaxPool2d):
            if any(layer.padding):
                x = NegInfPad2D(layer.padding, name=f"{path}.pad", dtype=dtype)(x)
            return keras.layers.MaxPooling2D(layer.kernel, layer.stride, padding="valid", name=path,
                                             dtype=dtype)(x)
        if isinstance(layer, GlobalAvgPool):
            return keras.layers.GlobalAveragePooling2D(name=path, dtype=dtype)(x)
        if isinstance(layer, Flatten):
            return keras.layers.Flatten(name=path, dtype=dtype)(x)  # (H, W, C) order: see _to_keras
        if isinstance(layer, Dense):
            return keras.layers.Dense(layer.out_features, use_bias=layer.bias, name=path, dtype=dtype,
                                      **self._init(path, kernel_initializer="weight", bias_initializer="bias"))(x)
        if isinstance(layer, Dropout):
            return keras.layers.Dropout(layer.rate, name=path, dtype=dtype)(x)
        raise TypeError(f"no Keras layer for {layer!r}")


class Network(keras.Model):
    """The built functional model; `arch` is the description it was built from."""

    def __init__(self, arch: Arch, dtype: str = "float32", weights: dict[str, np.ndarray] | None = None) -> None:
        c, h, w = arch.input_shape
        mixed = dtype.startswith("mixed_")  # a Keras mixed-precision policy: float32 in, float32 logits
        inputs = keras.Input((h, w, c), dtype="float32" if mixed else dtype, name="images")
        builder = _Builder(arch, dtype, weights)
        x = inputs
        for layer in arch.layers:
            x = builder.apply(layer, x, layer.name)
        if mixed:
            x = keras.layers.Activation("linear", dtype="float32", name="logits_float32")(x)
        super().__init__(inputs=inputs, outputs=x, name=arch.name)
        object.__setattr__(self, "arch", arch)  # plain attribute, not tracked as Keras state
        for spec in param_specs(arch):
            if not spec.trainable and spec.param in ("weight", "bias"):
                _variable(self, spec).trainable = False


def build(arch: Arch, dtype: str = "float32", weights: dict[str, np.ndarray] | None = None) -> Network:
    """A Keras functional model (float32 unless `dtype`; float64 serves exact parity tests).

    `dtype` may also be a Keras mixed-precision policy ("mixed_float16", "mixed_bfloat16"):
    variables and BatchNorm statistics stay float32, inputs and logits are float32.

    With `weights` (canonical), variables are created at those values (the same as `build` then
    `load_weights`, without drawing Keras' random initial values first); without, they hold
    Keras' default initial values until `load_weights`.
    """
    return Network(arch, dtype, weights)


_KERAS_NAME = KERAS_NAME


def _variable(model: keras.Model, spec: ParamSpec) -> keras.Variable:
    layer = model.get_layer(spec.path)
    return getattr(layer, _KERAS_NAME[(type(spec.layer), spec.param)])


def load_weights(model: Network, weights: dict[str, np.ndarray]) -> None:
    """Assign canonical weights to the model's variables (exact: permutations only)."""
    arch: Arch = model.arch
    check_weights(arch, weights)
    for spec in param_specs(arch):
        var = _variable(model, spec)
        value = np.ascontiguousarray(_to_keras(spec, weights[spec.key])).astype(var.dtype)
        if tuple(var.shape) != value.shape:
            raise ModelError(f"{spec.key}: Keras variable {tuple(var.shape)} vs canonical {value.shape}")
        var.assign(value)


def export_weights(model: Network) -> dict[str, np.ndarray]:
    """Canonical weights (canonical layouts, in the model's dtype: float32 normally), current state."""
    out = {}
    for spec in param_specs(model.arch):
        value = np.asarray(keras.ops.convert_to_numpy(_variable(model, spec)))
        out[spec.key] = np.ascontiguousarray(_from_keras(spec, value))
    return out


def count_params(model: keras.Model) -> tuple[int, int]:
    """(trainable, total) measured on the model: total adds frozen ones and BN moving stats."""
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    return trainable, int(model.count_params())


def canonical_grads(model: Network, grads: list, variables: list) -> dict[str, np.ndarray]:
    """Gradients for `variables` (e.g. `model.trainable_variables`) as canonical keys and layouts.

    Lets gradients be compared across frameworks (and logged per layer) like weights.
    """
    by_id = {id(v): g for v, g in zip(variables, grads, strict=True)}
    out = {}
    for spec in param_specs(model.arch):
        g = by_id.get(id(_variable(model, spec)))
        if g is not None:
            out[spec.key] = np.ascontiguousarray(_from_keras(spec, np.asarray(g)))
    return out
