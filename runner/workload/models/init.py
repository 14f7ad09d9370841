"""Canonical weights: one seeded numpy generator, framework-neutral layouts.

Layouts (PyTorch's): conv weight (out, in, kh, kw) = OIHW; dense weight (out, in) with the
inputs of a dense layer fed by a flattened map in (C, H, W) order; BatchNorm `weight` (gamma),
`bias` (beta), `running_mean`, `running_var` of shape (C,). All float32.

Draw order: `param_specs(arch)` order (execution order, weight before bias); a tensor whose
initial value is a constant draws nothing. Draws are float64 from `numpy.random.default_rng(seed)`
(PCG64), rounded to float32, so both frameworks start from byte-identical weights.

Schemes (fan_in = in * kh * kw, fan_out = out * kh * kw; dense: kh = kw = 1):
- he_normal_fan_out: conv W ~ N(0, 2 / fan_out), conv bias 0; dense W, b ~ U(+-1/sqrt(fan_in))
  (torchvision's ResNet: kaiming_normal_(mode="fan_out") on convs, PyTorch's default on Linear).
- he_uniform: W ~ U(+-sqrt(6 / fan_in)), biases 0 (Keras' he_uniform).
- glorot_uniform: W ~ U(+-sqrt(6 / (fan_in + fan_out))), biases 0 (Keras' default).
- torch_default: W, b ~ U(+-1/sqrt(fan_in)) (PyTorch's own Conv2d/Linear reset_parameters).
BatchNorm: gamma 1 (0 for `zero_init` layers), beta 0, running mean 0, running variance 1.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from runner.errors import ModelError
from runner.workload.models.arch import Arch, BatchNorm2d, Conv2d, Dense, ParamSpec, param_specs


def _fans(spec: ParamSpec) -> tuple[int, int]:
    layer = spec.layer
    if isinstance(layer, Conv2d):
        kh, kw = layer.kernel
        return layer.in_channels * kh * kw, layer.out_channels * kh * kw
    assert isinstance(layer, Dense)
    return layer.in_features, layer.out_features


def _draw(rng: np.random.Generator, spec: ParamSpec, scheme: str) -> np.ndarray:
    layer = spec.layer
    if isinstance(layer, BatchNorm2d):
        value = {"weight": 0.0 if layer.zero_init else 1.0, "bias": 0.0, "running_mean": 0.0,
                 "running_var": 1.0}[spec.param]
        return np.full(spec.shape, value, dtype=np.float32)
    fan_in, fan_out = _fans(spec)
    is_conv = isinstance(layer, Conv2d)
    if spec.param == "weight":
        if scheme == "he_normal_fan_out" and is_conv:
            x = rng.normal(0.0, math.sqrt(2.0 / fan_out), spec.shape)
        elif scheme in ("torch_default", "he_normal_fan_out"):
            bound = 1.0 / math.sqrt(fan_in)
            x = rng.uniform(-bound, bound, spec.shape)
        elif scheme == "he_uniform":
            bound = math.sqrt(6.0 / fan_in)
            x = rng.uniform(-bound, bound, spec.shape)
        elif scheme == "glorot_uniform":
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            x = rng.uniform(-bound, bound, spec.shape)
        else:
            raise ModelError(f"unknown init {scheme!r}", field="model.init")
        return x.astype(np.float32)
    # bias
    if scheme == "torch_default" or (scheme == "he_normal_fan_out" and not is_conv):
        bound = 1.0 / math.sqrt(fan_in)
        return rng.uniform(-bound, bound, spec.shape).astype(np.float32)
    return np.zeros(spec.shape, dtype=np.float32)


def init_weights(arch: Arch, seed: int) -> dict[str, np.ndarray]:
    """Every canonical tensor of `arch`, drawn from one generator seeded with `seed`."""
    rng = np.random.default_rng(seed)
    return {spec.key: _draw(rng, spec, arch.init) for spec in param_specs(arch)}


def check_weights(arch: Arch, weights: dict[str, np.ndarray], source: str | None = None) -> None:
    """Raise ModelError unless `weights` holds exactly the canonical tensors of `arch`."""
    specs = {s.key: s for s in param_specs(arch)}
    missing = sorted(set(specs) - set(weights))
    extra = sorted(set(weights) - set(specs))
    if missing or extra:
        what = (f"missing {missing[:3]}" if missing else "") + (" " if missing and extra else "") + (
            f"unexpected {extra[:3]}" if extra else "")
        raise ModelError(f"weights do not fit {arch.name}: {what}", file=source, field="weights",
                         fix="use weights made for this exact model config (same classes, stem, layout)")
    for key, spec in specs.items():
        w = weights[key]
        if not isinstance(w, np.ndarray) or w.dtype != np.float32 or tuple(w.shape) != spec.shape:
            got = (getattr(w, "dtype", type(w).__name__), tuple(getattr(w, "shape", ())))
            raise ModelError(f"{key}: expected float32 {spec.shape}, got {got[0]} {got[1]}", file=source,
                             field="weights", fix="canonical layouts: conv OIHW, dense (out, in)")


def weights_fingerprint(weights: dict[str, np.ndarray]) -> str:
    """sha256 over keys (sorted), shapes, dtypes and bytes: records which weights a run started from."""
    h = hashlib.sha256()
    for key in sorted(weights):
        w = np.ascontiguousarray(weights[key])
        h.update(f"{key}|{w.dtype.str}|{w.shape}\n".encode())
        h.update(w.tobytes())
    return h.hexdigest()
