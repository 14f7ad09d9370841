"""The inference comparison after training, written once for every framework.

Per precision (fp32 first: the baseline): the framework module (`torch_quant`, `tf_quant`) makes
the model that precision runs (int8: post-training static quantization calibrated on `Calibration`),
then the whole test split is evaluated through it, and for each batch size the same inputs (the
first images of the test split, in every framework) are timed: `max(warmup_steps, 3)` untimed
calls, then `latency_iterations` timed ones, each between two synchronised clock reads (the
process CPU time of each call beside it: on a shared machine, wall time far above it means the
process waited for a core). One `inference` event per (precision, batch size). A precision that
fails is a row with its error; the run goes on.
"""

from __future__ import annotations

import hashlib
import importlib
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from runner.data.augment import EpochPlan, apply_batch
from runner.errors import SpecError
from runner.workload.harness.config import InferenceConfig, RunConfig
from runner.workload.inference.support import BASELINE
from runner.workload.measure import SyncedClock, percentile

# Explicit registry: framework -> its module (imported only when that framework runs).
FRAMEWORK_MODULES = {"pytorch": "runner.workload.inference.torch_quant",
                     "tensorflow": "runner.workload.inference.tf_quant"}
CALIBRATION_BATCH = 32  # images per calibration forward pass (observers are batch-independent)
WARMUP_MIN = 3


class InferenceModel(Protocol):
    """One precision of the trained model, ready to time (a framework module makes it)."""

    runtime: str  # what executes it, e.g. "torch.ao FX int8 (x86)", "TFLite interpreter"
    model_format: str  # what `size_bytes` measured

    def place(self, x: np.ndarray) -> Any:
        """A float32 NHWC batch made ready for `run` (layout change, device copy): untimed."""

    def run(self, placed: Any) -> None:
        """One inference call on a placed batch (the timed part)."""

    def logits(self, placed: Any) -> np.ndarray:
        """Float logits of a placed batch, on the host."""

    def size_bytes(self) -> int:
        """Bytes of the serialized model this precision runs from."""


@dataclass(frozen=True)
class Calibration:
    """The images int8 is calibrated on: the first N training images (file order, the same in every
    framework), through the evaluation pipeline (deterministic ops, the run's normalisation)."""

    images: np.ndarray  # float32 NHWC
    indices_sha256: str  # of the image indices (int64 little-endian)
    sha256: str  # of the float32 pixels: equal in every framework, or the inputs differed

    def batches(self) -> Iterator[np.ndarray]:
        for i in range(0, len(self.images), CALIBRATION_BATCH):
            yield self.images[i:i + CALIBRATION_BATCH]


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def check_calibration(cfg: RunConfig, train_size: int) -> None:
    """Refuse (exit 2) more calibration images than the training set holds."""
    inf = cfg.measurement.inference
    if inf is not None and inf.calibration_images > train_size:
        raise SpecError(f"{inf.calibration_images} calibration images asked for, the training set has "
                        f"{train_size}", file=cfg.path, field="measurement.inference.calibration_images",
                        fix=f"use at most {train_size}")


def calibration_set(prepared: Any, cfg: RunConfig, ops: list[dict[str, Any]], n: int) -> Calibration:
    x, _ = prepared.split("train")
    plan = EpochPlan.identity(len(x), ops)
    images = apply_batch(x, plan, slice(0, n), plan.ops, cfg.data.mean, cfg.data.std)
    return Calibration(images, _sha256(np.arange(n, dtype="<i8")), _sha256(images))


def first_test_images(batches: Any, count: int) -> np.ndarray:
    """The first `count` images of the test split (cycled when the split is smaller)."""
    got: list[np.ndarray] = []
    n = 0
    source = batches.test()
    try:
        for x, _ in source:
            got.append(x)
            n += len(x)
            if n >= count:
                break
    finally:
        getattr(source, "close", lambda: None)()
    images = np.concatenate(got)
    reps = -(-count // len(images))
    return np.ascontiguousarray(np.concatenate([images] * reps)[:count]) if reps > 1 else images[:count]


def _evaluate(model: InferenceModel, batches: Any) -> tuple[float, float, int, np.ndarray]:
    """(accuracy, mean loss, images, predictions) over the whole test split."""
    preds, loss_sum, correct, n = [], 0.0, 0, 0
    for x, y in batches.test():
        logits = np.asarray(model.logits(model.place(x)), dtype=np.float64)
        shifted = logits - logits.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss_sum += float(-logp[np.arange(len(y)), y].sum())
        pred = logits.argmax(axis=1)
        correct += int((pred == y).sum())
        n += len(y)
        preds.append(pred)
    return (correct / n if n else 0.0), (loss_sum / n if n else 0.0), n, np.concatenate(preds)


def _latency(model: InferenceModel, inputs: np.ndarray, clock: SyncedClock, warmup: int,
             iterations: int) -> dict[str, Any]:
    placed = model.place(inputs)
    for _ in range(warmup):
        model.run(placed)
    times, cpu = [], []
    for _ in range(iterations):
        c0 = time.process_time()
        t0 = clock.now()
        model.run(placed)
        times.append((clock.now() - t0) * 1000.0)
        cpu.append((time.process_time() - c0) * 1000.0)
    bs = len(inputs)
    p50, p90, p99 = (percentile(times, q) for q in (50, 90, 99))
    mean = float(sum(times) / len(times))
    return {"iterations": iterations, "warmup_iterations": warmup, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99,
            "mean_ms": mean, "per_image_p50_ms": p50 / bs, "per_image_p90_ms": p90 / bs,
            "per_image_p99_ms": p99 / bs, "images_per_s": bs / (mean / 1000.0) if mean > 0 else None,
            "cpu_p50_ms": percentile(cpu, 50)}


def ordered(inf: InferenceConfig) -> list[str]:
    """The baseline first (the others are compared with it), then the spec's order."""
    return [BASELINE] + [p for p in inf.precisions if p != BASELINE]


def measure_inference(backend: Any, cfg: RunConfig, prepared: Any, batches: Any, events: Any,
                      clock: SyncedClock) -> list[dict[str, Any]]:
    """Run the comparison; emit and return one row per (precision, batch size)."""
    inf = cfg.measurement.inference
    if inf is None:
        return []
    module = importlib.import_module(FRAMEWORK_MODULES[cfg.framework])
    calibration = calibration_set(prepared, cfg, batches.ops, inf.calibration_images)
    inputs = first_test_images(batches, max(inf.batch_sizes))
    warmup = max(cfg.measurement.warmup_steps, WARMUP_MIN)
    rows: list[dict[str, Any]] = []
    base: dict[str, Any] = {}  # the baseline's accuracy, predictions and p50 per batch size
    for precision in ordered(inf):
        common: dict[str, Any] = {
            "precision": precision, "calibration_images": None, "calibration_indices_sha256": None,
            "calibration_sha256": None}
        if precision == "int8":
            common.update(calibration_images=len(calibration.images),
                          calibration_indices_sha256=calibration.indices_sha256,
                          calibration_sha256=calibration.sha256)
        try:
            t0 = time.perf_counter()
            model = module.make(backend, precision, calibration if precision == "int8" else None)
            prepare_s = time.perf_counter() - t0
            accuracy, loss, n, preds = _evaluate(model, batches)
            if precision == BASELINE:
                base.update(accuracy=accuracy, preds=preds)
            common.update(runtime=model.runtime, model_format=model.model_format, model_bytes=model.size_bytes(),
                          prepare_time_s=prepare_s, test_accuracy=accuracy, test_loss=loss, test_images=n,
                          accuracy_drop=base["accuracy"] - accuracy if "accuracy" in base else None,
                          fp32_agreement=float((preds == base["preds"]).mean()) if "preds" in base else None,
                          error=None)
            per_bs = [(bs, _latency(model, inputs[:bs], clock, warmup, cfg.measurement.latency_iterations))
                      for bs in inf.batch_sizes]
        except Exception as exc:  # noqa: BLE001 - a precision that fails is a row; the run goes on
            line = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
            common["error"] = f"{type(exc).__name__}: {line}"[:500]
            print(f"inference {precision} failed: {common['error']}\n{traceback.format_exc(limit=8)}")
            per_bs = [(bs, {}) for bs in inf.batch_sizes]
        for bs, lat in per_bs:
            if precision == BASELINE and lat:
                base[bs] = lat["p50_ms"]
            speedup = base[bs] / lat["p50_ms"] if lat and base.get(bs) and lat["p50_ms"] > 0 else None
            row = {**common, "batch_size": bs, "inputs_sha256": _sha256(inputs[:bs]), **lat, "speedup": speedup}
            rows.append(events.emit("inference", **row))
    return rows
