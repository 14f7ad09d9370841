"""Augmentation decisions made once, in numpy, so every framework sees the same pixels.

`plan_epoch(seed, epoch, n, ops)` draws every random decision of an epoch from ONE generator,
`np.random.default_rng([seed, epoch])`, in this fixed order:

1. the epoch's order: `rng.permutation(n)`;
2. for each op in list order, its decisions for all n positions:
   * random_crop {"padding": p (default 4)}: offsets (dy, dx) = `rng.integers(0, 2p + 1, size=(n, 2))`;
     the image is zero-padded by p on each side and the original-size window at (dy, dx) is
     kept (torchvision's RandomCrop(size, padding=p) semantics);
   * horizontal_flip {"p": q (default 0.5)}: flip = `rng.random(n) < q`;
   * brightness {"max_delta": d (default 0.2)}: factor = `rng.uniform(1 - d, 1 + d, size=n)`; pixel values (on
     the 0..255 scale) are multiplied by the factor and clipped to [0, 255];
   * random_resized_crop {"size": s (224), "scale": [0.08, 1], "ratio": [3/4, 4/3]}: uniforms
     `rng.random((n, 10, 4))` (per attempt: area, log-ratio, top, left), turned into a box by
     `decode.rrc_box` once the image's size is known (ImageNet-format data only: image_loader.py);
   * resize {"size": s, "method": "bilinear" | "nearest"}: no decisions (deterministic).

Decisions are indexed by *position in the epoch*: position i shows image order[i] with the i-th
decisions, so a batch is a slice of positions. The plan depends only on (seed, epoch, n, ops),
never on the batch size, the framework or the thread that applies it.

`apply_batch` applies the decisions vectorised, in op order, then normalises:
out = (pixel / 255 - mean) / std per channel, float32 NHWC. Geometric ops run on uint8; the
first op that changes values (brightness, bilinear resize) switches to float32.

Resize samples at half-pixel centres (align_corners=False): bilinear matches
`torch.nn.functional.interpolate(mode="bilinear", align_corners=False, antialias=False)` and
`tf.image.resize(method="bilinear", antialias=False)`; nearest picks source index
floor((i + 0.5) * in / out), matching torch's "nearest-exact" and TF's half-pixel nearest.
Random ops (crop, flip, brightness) are for training; `EpochPlan.identity` keeps only the
deterministic ones (resize) for evaluation, in a fixed order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from runner.errors import SpecError

RANDOM_OPS = ("random_crop", "horizontal_flip", "brightness", "random_resized_crop")
DETERMINISTIC_OPS = ("resize",)
# What runner.workload.harness.device_augment can apply on the device from the same decisions
# (kept here, torch-free: the planner reads it). random_resized_crop needs the decoded image's
# size, known only to the host image loader.
DEVICE_OPS = ("random_crop", "horizontal_flip", "brightness", "resize")

Op = dict[str, Any]


def _number(op: Op, i: int, key: str, default: float | None, lo: float, hi: float,
            integer: bool = False) -> float | int:
    value = op.get(key, default)
    if value is None:
        raise SpecError(f"{op['op']} needs {key}", field=f"ops[{i}].{key}")
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or not (lo <= value <= hi):
        kind = "an integer" if integer else "a number"
        raise SpecError(f"{key} must be {kind} in [{lo}, {hi}], got {value!r}", field=f"ops[{i}].{key}")
    return int(value) if integer else float(value)


def _pair(op: Op, i: int, key: str, default: tuple[float, float], hi: float) -> list[float]:
    value = op.get(key, list(default))
    ok = (isinstance(value, list | tuple) and len(value) == 2
          and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value))
    if not ok or not (0 < value[0] <= value[1] <= hi):
        raise SpecError(f"{key} must be [low, high] with 0 < low <= high <= {hi:g}, got {value!r}",
                        field=f"ops[{i}].{key}")
    return [float(value[0]), float(value[1])]


def normalize_ops(ops: Sequence[Op]) -> tuple[Op, ...]:
    """Validate op dicts and fill defaults; unknown ops or keys are refused."""
    if isinstance(ops, dict | str) or not isinstance(ops, Sequence):
        raise SpecError("ops must be a list of {'op': ...} mappings", field="ops")
    out: list[Op] = []
    for i, op in enumerate(ops):
        if not isinstance(op, dict) or "op" not in op:
            raise SpecError("each op must be a mapping with an 'op' key", field=f"ops[{i}]")
        name = op["op"]
        if name == "random_crop":
            allowed = {"op", "padding"}
            norm = {"op": name, "padding": _number(op, i, "padding", 4, 0, 64, integer=True)}
        elif name == "horizontal_flip":
            allowed = {"op", "p"}
            norm = {"op": name, "p": _number(op, i, "p", 0.5, 0.0, 1.0)}
        elif name == "brightness":
            allowed = {"op", "max_delta"}
            norm = {"op": name, "max_delta": _number(op, i, "max_delta", 0.2, 0.0, 1.0)}
        elif name == "random_resized_crop":
            allowed = {"op", "size", "scale", "ratio"}
            norm = {"op": name, "size": _number(op, i, "size", 224, 1, 4096, integer=True),
                    "scale": _pair(op, i, "scale", (0.08, 1.0), 1.0),
                    "ratio": _pair(op, i, "ratio", (3 / 4, 4 / 3), 100.0)}
        elif name == "resize":
            allowed = {"op", "size", "method"}
            method = op.get("method", "bilinear")
            if method not in ("bilinear", "nearest"):
                raise SpecError(f"method must be 'bilinear' or 'nearest', got {method!r}",
                                field=f"ops[{i}].method")
            norm = {"op": name, "size": _number(op, i, "size", None, 1, 4096, integer=True), "method": method}
        else:
            raise SpecError(f"unknown op {name!r}", field=f"ops[{i}].op",
                            fix=f"use one of: {', '.join(RANDOM_OPS + DETERMINISTIC_OPS)}")
        extra = sorted(set(op) - allowed)
        if extra:
            raise SpecError(f"unknown key(s) {', '.join(map(str, extra))} for {name}", field=f"ops[{i}]")
        out.append(norm)
    return tuple(out)


def output_side(side: int, ops: Sequence[Op]) -> int:
    """The image side after the ops: the last resize or random_resized_crop sets it."""
    for op in normalize_ops(ops):
        if op["op"] in ("resize", "random_resized_crop"):
            side = int(op["size"])
    return side


@dataclass(frozen=True)
class EpochPlan:
    """The order and every augmentation decision of one epoch (see module docstring)."""

    seed: int
    epoch: int
    n: int
    ops: tuple[Op, ...]
    order: np.ndarray  # int64 (n,): position -> image index
    decisions: tuple[np.ndarray | None, ...]  # one entry per op, indexed by position

    @classmethod
    def identity(cls, n: int, ops: Sequence[Op] = ()) -> EpochPlan:
        """Fixed order and only the deterministic ops: the evaluation pipeline."""
        kept = tuple(op for op in normalize_ops(ops) if op["op"] in DETERMINISTIC_OPS)
        return cls(seed=0, epoch=0, n=n, ops=kept, order=np.arange(n, dtype=np.int64),
                   decisions=tuple(None for _ in kept))

    def digest(self) -> str:
        """sha256 over the ops, the order and every decision: equal digests, equal pixels."""
        h = hashlib.sha256(json.dumps(self.ops, sort_keys=True).encode())
        h.update(np.ascontiguousarray(self.order, dtype="<i8").tobytes())
        for d in self.decisions:
            if d is not None:
                h.update(str(d.dtype).encode())
                h.update(np.ascontiguousarray(d).tobytes())
        return h.hexdigest()


def plan_epoch(seed: int, epoch: int, n: int, ops: Sequence[Op]) -> EpochPlan:
    """Draw the epoch's order and all decisions from np.random.default_rng([seed, epoch])."""
    for key, value in (("seed", seed), ("epoch", epoch), ("n", n)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise SpecError(f"{key} must be a non-negative integer, got {value!r}", field=key)
    norm = normalize_ops(ops)
    rng = np.random.default_rng([int(seed), int(epoch)])
    order = rng.permutation(int(n)).astype(np.int64)
    decisions: list[np.ndarray | None] = []
    for op in norm:
        if op["op"] == "random_crop":
            decisions.append(rng.integers(0, 2 * op["padding"] + 1, size=(n, 2), dtype=np.int64))
        elif op["op"] == "horizontal_flip":
            decisions.append(rng.random(n) < op["p"])
        elif op["op"] == "brightness":
            decisions.append(rng.uniform(1.0 - op["max_delta"], 1.0 + op["max_delta"], size=n))
        elif op["op"] == "random_resized_crop":  # 10 attempts x (area, log-ratio, top, left) uniforms
            decisions.append(rng.random((n, 10, 4)))
        else:
            decisions.append(None)
    return EpochPlan(seed=int(seed), epoch=int(epoch), n=int(n), ops=norm, order=order,
                     decisions=tuple(decisions))


def batch_decisions(plan: EpochPlan, positions: slice | np.ndarray) -> tuple[np.ndarray | None, ...]:
    """The plan's decisions for the plan positions of one batch, one entry per op (None: resize)."""
    return tuple(None if d is None else d[positions] for d in plan.decisions)


# -- applying decisions ----------------------------------------------------------------------------

def _crop(x: np.ndarray, offsets: np.ndarray, padding: int) -> np.ndarray:
    if padding == 0:
        return x
    b, h, w, c = x.shape
    padded = np.zeros((b, h + 2 * padding, w + 2 * padding, c), dtype=x.dtype)
    padded[:, padding:padding + h, padding:padding + w] = x
    # every h x w window of each padded image, as a view: (B, 2p+1, 2p+1, C, H, W); pick one per image
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(1, 2))
    return windows[np.arange(b), offsets[:, 0], offsets[:, 1]].transpose(0, 2, 3, 1)


def _flip(x: np.ndarray, flips: np.ndarray) -> np.ndarray:
    if flips.any():
        x = x if x.flags.writeable else x.copy()
        x[flips] = x[flips, :, ::-1, :]
    return x


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    # floor((i + 0.5) * n_in / n_out) in exact integer arithmetic
    return np.minimum(((2 * np.arange(n_out) + 1) * n_in) // (2 * n_out), n_in - 1)


def _bilinear_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (src - lo).astype(np.float32)
    return lo, hi, frac


def _lerp(x: np.ndarray, axis: int, size: int) -> np.ndarray:
    lo, hi, frac = _bilinear_weights(x.shape[axis], size)
    a = np.take(x, lo, axis=axis)
    b = np.take(x, hi, axis=axis)
    shape = [1] * x.ndim
    shape[axis] = size
    b -= a  # a + (b - a) * frac, in place on the fresh gathers
    b *= frac.reshape(shape)
    b += a
    return b


def _resize(x: np.ndarray, size: int, method: str) -> np.ndarray:
    _, h, w, _ = x.shape
    if (h, w) == (size, size):
        return x
    if method == "nearest":
        return x[:, _nearest_index(h, size)][:, :, _nearest_index(w, size)]
    # separable: columns first (on the small image), then rows (whole contiguous rows gathered)
    x = x.astype(np.float32, copy=False)
    if w != size:
        x = _lerp(x, 2, size)
    if h != size:
        x = _lerp(x, 1, size)
    return x


def apply_batch(x_uint8_nhwc: np.ndarray, plan: EpochPlan, index_slice: slice | np.ndarray,
                ops: Sequence[Op], mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Images at plan positions `index_slice`, augmented per the plan and normalised (float32 NHWC)."""
    norm = normalize_ops(ops)
    if plan.ops != norm:
        raise SpecError("ops differ from the ops the plan was drawn with", field="ops",
                        fix="pass the same ops to plan_epoch and apply_batch")
    if x_uint8_nhwc.dtype != np.uint8 or x_uint8_nhwc.ndim != 4 or len(x_uint8_nhwc) != plan.n:
        raise SpecError(f"expected uint8 NHWC images of length {plan.n}, got "
                        f"{x_uint8_nhwc.dtype}{list(x_uint8_nhwc.shape)}", field="x")
    channels = x_uint8_nhwc.shape[-1]
    mean_a = np.asarray(mean, dtype=np.float32)
    std_a = np.asarray(std, dtype=np.float32)
    if mean_a.shape != (channels,) or std_a.shape != (channels,) or not (std_a > 0).all():
        raise SpecError(f"mean and std need {channels} values each, std > 0", field="mean/std")

    if any(op["op"] == "random_resized_crop" for op in plan.ops):
        raise SpecError("random_resized_crop works on ImageNet-format data (runner.data.image_loader)",
                        field="ops", fix="use random_crop on fixed-size (CIFAR) images")
    idx = plan.order[index_slice]
    x = np.asarray(x_uint8_nhwc[idx])  # fancy indexing copies, also from a read-only memmap
    for op, dec in zip(plan.ops, plan.decisions, strict=True):
        d = None if dec is None else dec[index_slice]
        if op["op"] == "random_crop":
            x = _crop(x, d, op["padding"])
        elif op["op"] == "horizontal_flip":
            x = _flip(x, d)
        elif op["op"] == "brightness":
            x = x.astype(np.float32, copy=False) * d.astype(np.float32)[:, None, None, None]
            np.clip(x, 0.0, 255.0, out=x)
        elif op["op"] == "resize":
            x = _resize(x, op["size"], op["method"])
    # a fresh, writable, C-contiguous float32 array (ops that allocate one are not copied again)
    fresh = x.dtype == np.float32 and x.flags.c_contiguous and x.flags.writeable and x.base is None
    out = x if fresh else x.astype(np.float32, order="C")
    out /= np.float32(255.0)
    out -= mean_a
    out /= std_a
    return out
