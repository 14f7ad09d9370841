"""TensorFlow's side of the inference comparison (imports tensorflow).

fp32: the trained Keras model in a `tf.function` (`training=False`). fp16 / bf16: the same weights in
a model built under the Keras mixed policy (`mixed_float16` / `mixed_bfloat16`: float32 variables
and BatchNorm statistics, float32 in and out), as in mixed-precision training. int8: TFLite
full-integer post-training quantization (`TFLiteConverter.from_keras_model`, `Optimize.DEFAULT`,
`TFLITE_BUILTINS_INT8` only, a representative dataset of `Calibration`'s images: the same images
PyTorch calibrates on; -inf paddings before max-pools become `MinPad2D`), run by the TFLite
interpreter. Input and output stay float32 (the quantize /
dequantize ops are inside the model, as in PyTorch's converted module), so both frameworks take the
same float inputs and return float logits. Model size: the Keras weights file (`.weights.h5`) for
fp32 / fp16 / bf16, the `.tflite` flatbuffer for int8.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from runner.workload.inference.protocol import Calibration

_POLICY = {"fp32": "float32", "fp16": "mixed_float16", "bf16": "mixed_bfloat16"}
_BUILTIN_KERNELS = tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES


def weights_file_bytes(model: Any) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.weights.h5"
        model.save_weights(path)
        return path.stat().st_size


class KerasInference:
    def __init__(self, model: Any, device: str, runtime: str) -> None:
        self.model, self.device, self.runtime = model, device, runtime
        self.model_format = "Keras .weights.h5, float32 weights"
        self._fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        self._size: int | None = None

    def place(self, x: np.ndarray) -> tf.Tensor:
        with tf.device(self.device):
            return tf.identity(tf.convert_to_tensor(x))

    def run(self, placed: tf.Tensor) -> None:
        self._fn(placed)

    def logits(self, placed: tf.Tensor) -> np.ndarray:
        return np.asarray(self._fn(placed).numpy(), dtype=np.float32)

    def size_bytes(self) -> int:
        if self._size is None:
            self._size = weights_file_bytes(self.model)
        return self._size


class TFLiteInference:
    """One interpreter per input shape, resized before its tensors are allocated (the fixed shape a
    deployed interpreter has; no reallocation between the timed calls of one batch size). A timed
    call is `set_tensor` (writing the input into the interpreter's own buffer, ~0.4 us for a 32 px
    image) + `invoke`, so no call can run on a buffer left from the previous one."""

    model_format = "TFLite flatbuffer (.tflite)"

    def __init__(self, flatbuffer: bytes, threads: int) -> None:
        self.flatbuffer, self.threads = flatbuffer, threads
        self.runtime = f"TFLite interpreter int8 ({threads} threads)"
        self.builtin_only = False  # the XNNPACK delegate refused the model: TFLite's own kernels
        self._by_shape: dict[tuple[int, ...], tuple[Any, int, int]] = {}
        self._current: tuple[Any, int, int] | None = None

    def _new(self, shape: tuple[int, ...]) -> tuple[Any, int, int]:
        kwargs = {}
        if self.builtin_only:
            kwargs["experimental_op_resolver_type"] = _BUILTIN_KERNELS
        it = tf.lite.Interpreter(model_content=self.flatbuffer, num_threads=self.threads, **kwargs)
        index = it.get_input_details()[0]["index"]
        it.resize_tensor_input(index, list(shape))
        it.allocate_tensors()
        return it, index, it.get_output_details()[0]["index"]

    def _interpreter(self, shape: tuple[int, ...]) -> tuple[Any, int, int]:
        if shape not in self._by_shape:
            try:
                self._by_shape[shape] = self._new(shape)
            except RuntimeError as exc:  # e.g. ResNet-50's -inf padded max-pool: "failed to create XNNPACK runtime"
                if self.builtin_only or "XNNPACK" not in str(exc):
                    raise
                self.builtin_only = True
                first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")[:120]
                self.runtime = (f"TFLite interpreter int8, builtin kernels ({self.threads} threads; the XNNPACK "
                                f"delegate refused the model: {first})")
                self._by_shape = {}
                self._by_shape[shape] = self._new(shape)
        return self._by_shape[shape]

    def place(self, x: np.ndarray) -> np.ndarray:
        self._current = self._interpreter(tuple(x.shape))
        return np.ascontiguousarray(x, dtype=np.float32)

    def run(self, placed: np.ndarray) -> None:
        assert self._current is not None
        it, index, _ = self._current
        it.set_tensor(index, placed)
        it.invoke()

    def logits(self, placed: np.ndarray) -> np.ndarray:
        assert self._current is not None
        self.run(placed)
        return np.array(self._current[0].get_tensor(self._current[2]), dtype=np.float32)

    def size_bytes(self) -> int:
        return len(self.flatbuffer)


class MinPad2D(keras.layers.Layer):
    """`tf_impl.NegInfPad2D` for quantization: pads with the tensor's own minimum instead of -inf.

    Before a max-pool the two are the same function (every pooling window holds a real value, and
    none is below the minimum), but -inf has no int8 representation: calibrated, it made the
    activation range infinite (ResNet-50's stem at chance accuracy in TFLite's builtin kernels, and
    "failed to create XNNPACK runtime").
    """

    def __init__(self, padding: tuple[int, int, int, int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.padding = tuple(padding)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        t, b, left, r = self.padding
        return tf.pad(x, [[0, 0], [t, b], [left, r], [0, 0]], constant_values=tf.reduce_min(x))

    def compute_output_shape(self, shape: tuple) -> tuple:
        t, b, left, r = self.padding
        n, h, w, c = shape
        return (n, None if h is None else h + t + b, None if w is None else w + left + r, c)


def for_quantization(model: Any) -> Any:
    """The same model (layers shared) with every -inf padding replaced by `MinPad2D`."""
    from runner.workload.models.tf_impl import NegInfPad2D

    if not any(isinstance(layer, NegInfPad2D) for layer in model.layers):
        return model

    def clone(layer: Any) -> Any:
        return MinPad2D(layer.padding, name=layer.name) if isinstance(layer, NegInfPad2D) else layer

    return keras.models.clone_model(model, clone_function=clone)


def quantize_int8(model: Any, calibration: Calibration) -> bytes:
    """TFLite full-integer quantization of a float32 Keras model; the .tflite flatbuffer."""
    converter = tf.lite.TFLiteConverter.from_keras_model(for_quantization(model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([b] for b in calibration.batches())
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.float32
    converter.inference_output_type = tf.float32
    return converter.convert()


def _float32_model(backend: Any) -> Any:
    """The trained model in float32 (rebuilt from its weights when training ran mixed)."""
    if backend.cfg.train.precision == "fp32":
        return backend.model
    return _rebuild(backend, "float32")


def _rebuild(backend: Any, dtype: str) -> Any:
    from runner.workload.models import tf_impl

    with tf.device(backend.device):
        return tf_impl.build(backend.model.arch, dtype=dtype, weights=tf_impl.export_weights(backend.model))


def make(backend: Any, precision: str, calibration: Calibration | None) -> Any:
    """The trained model of `backend` (runner.workload.harness.tf_harness) in `precision`."""
    if precision == "fp32":
        return KerasInference(_float32_model(backend), backend.device, "tf.function")
    if precision in ("fp16", "bf16"):
        return KerasInference(_rebuild(backend, _POLICY[precision]), backend.device,
                              f"tf.function, Keras policy {_POLICY[precision]}")
    if precision == "int8":
        assert calibration is not None
        threads = backend.cfg.train.threads or os.cpu_count() or 1
        return TFLiteInference(quantize_int8(_float32_model(backend), calibration), threads)
    raise ValueError(f"unknown precision {precision!r}")
