"""PyTorch's side of the inference comparison (imports torch).

fp32: the trained module, eager, `eval()` + `inference_mode`. fp16 / bf16: the same module under
`torch.autocast` (the weights stay float32, as in mixed-precision training). int8: post-training
static quantization with torch.ao's FX graph mode (`prepare_fx` / `convert_fx`) and the x86
backend's default qconfig (per-channel symmetric int8 weights, HistogramObserver activations, whose
`reduce_range` is lifted on a VNNI CPU: `full_range_activations`;
Conv+BatchNorm+ReLU fused first), calibrated on `Calibration`'s images; float32 in and out (the
quantize / dequantize steps are part of the model, as in the TFLite model). Model size: the bytes
of `torch.save(state_dict)` (int8: the quantized module's state dict, packed weights included).
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from runner.workload.inference.protocol import Calibration

QUANT_ENGINE = "x86"
_AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def state_dict_bytes(module: torch.nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return len(buf.getvalue())


class TorchInference:
    def __init__(self, module: torch.nn.Module, device: torch.device, runtime: str, model_format: str,
                 autocast: torch.dtype | None = None, quantized: bool = False) -> None:
        self.module, self.device, self.runtime, self.model_format = module, device, runtime, model_format
        self.autocast = autocast
        self.quantized = quantized
        self._size: int | None = None

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        with _deterministic_off() if self.quantized else contextlib.nullcontext(), torch.inference_mode(), \
                torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            return self.module(x)

    def place(self, x: np.ndarray) -> torch.Tensor:
        return _nchw(x).to(self.device)

    def run(self, placed: torch.Tensor) -> None:
        self._forward(placed)

    def logits(self, placed: torch.Tensor) -> np.ndarray:
        return self._forward(placed).float().cpu().numpy()

    def size_bytes(self) -> int:
        if self._size is None:
            self._size = state_dict_bytes(self.module)
        return self._size


@contextlib.contextmanager
def _deterministic_off() -> Iterator[None]:
    """torch.ao's quantized CPU kernels have no deterministic variant (quantized_resize_cpu_ refuses to
    run under `use_deterministic_algorithms(True)`); they are deterministic on CPU in practice (no
    atomics), so the switch is lifted around int8 calls only and restored after."""
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was)


def full_range_activations() -> bool:
    """Whether activations may use all 8 bits: the x86 default qconfig observes them with
    `reduce_range=True` (7 bits), which only CPUs without VNNI need (their vpmaddubsw saturates);
    with VNNI (vpdpbusd) fbgemm/oneDNN take the full range, as TFLite's int8 always does."""
    probe = getattr(torch.cpu, "_is_vnni_supported", None)
    return bool(probe()) if probe is not None else False


def qconfig_mapping() -> Any:
    """The x86 backend's default mapping; on a VNNI CPU its activation observer takes 8 bits."""
    from torch.ao.quantization import HistogramObserver, QConfig, get_default_qconfig_mapping

    mapping = get_default_qconfig_mapping(QUANT_ENGINE)
    if full_range_activations():
        weight = mapping.global_qconfig.weight
        mapping.set_global(QConfig(activation=HistogramObserver.with_args(reduce_range=False), weight=weight))
    return mapping


def quantize_int8(module: torch.nn.Module, calibration: Calibration) -> torch.nn.Module:
    """torch.ao FX post-training static quantization (x86 backend) of a CPU copy of `module`."""
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = QUANT_ENGINE
    model = copy.deepcopy(module).cpu().eval()
    example = _nchw(calibration.images[:1])
    with _deterministic_off():
        prepared = prepare_fx(model, qconfig_mapping(), example_inputs=(example,))
        with torch.no_grad():
            for batch in calibration.batches():
                prepared(_nchw(batch))
        return convert_fx(prepared)


def make(backend: Any, precision: str, calibration: Calibration | None) -> TorchInference:
    """The trained model of `backend` (runner.workload.harness.torch_harness) in `precision`."""
    module = backend.model
    module.eval()  # training is over
    fmt = "torch.save(state_dict), float32 weights"
    if precision == "fp32":
        return TorchInference(module, backend.device, "eager", fmt)
    if precision in _AUTOCAST:
        return TorchInference(module, backend.device, f"eager, torch.autocast({precision})", fmt,
                              autocast=_AUTOCAST[precision])
    if precision == "int8":
        assert calibration is not None
        quantized = quantize_int8(module, calibration)
        bits = "8-bit activations (VNNI)" if full_range_activations() else "7-bit activations (reduce_range)"
        return TorchInference(quantized, torch.device("cpu"), f"torch.ao FX static int8 ({QUANT_ENGINE}, {bits})",
                              "torch.save(state_dict) of the quantized module", quantized=True)
    raise ValueError(f"unknown precision {precision!r}")
