"""From one run's events to its rows: the run's outcome and summary metrics, epochs, latency,
inference.

Outcome: the workload's own `run_end` says ok or failed (with its reason and error). A run
whose events stop without `run_end` was killed or crashed and is failed, whatever the engine
said; a run the engine reports as failed (timeout, non-zero exit) is failed even if its
events end cleanly. Metrics are taken from whatever events there are, so a run that failed
in epoch 3 still reports its first two epochs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from runner.bundle.events import EventLog

OK, FAILED, NOT_RUN = "ok", "failed", "not_run"
STATUSES = (OK, FAILED, NOT_RUN)


@dataclass
class RunRows:
    summary: dict[str, Any]
    epochs: list[dict[str, Any]] = field(default_factory=list)
    latency: list[dict[str, Any]] = field(default_factory=list)
    inference: list[dict[str, Any]] = field(default_factory=list)


def outcome(log: EventLog, engine_status: str, engine_reason: str | None) -> tuple[str, str | None, str | None]:
    """(status, failure reason, error) of a run from its events and what the engine saw."""
    end = log.last("run_end")
    if end is None:
        parts = [engine_reason] if engine_reason else []
        if not log.events and not log.steps.num_rows:
            parts.append("no events were recorded (the workload did not start)")
        else:
            parts.append("the events end without run_end (the run was killed or crashed)")
        if log.truncated:
            parts.append("last event line torn")
        return FAILED, "; ".join(parts), None
    status = end.get("status") if end.get("status") in (OK, FAILED) else FAILED
    reason, error = end.get("reason"), end.get("error")
    if engine_status != OK:
        status = FAILED
        reason = "; ".join(str(r) for r in (engine_reason, reason) if r) or "the engine reported a failure"
    elif status == FAILED and not reason:
        reason = "the workload reported a failure without a reason"
    return status, (reason if status == FAILED else None), error


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def epoch_rows(log: EventLog, run_id: str) -> list[dict[str, Any]]:
    evals = {e.get("epoch"): e for e in log.of("eval")}
    rows = []
    for e in log.of("epoch"):
        ev = evals.get(e.get("epoch"), {})
        rows.append({
            "run_id": run_id, "epoch": _int(e.get("epoch")), "train_loss": _num(e.get("train_loss")),
            "train_accuracy": _num(e.get("train_accuracy")), "images": _int(e.get("images")),
            "timed_images": _int(e.get("timed_images")), "time_s": _num(e.get("time_s")),
            "images_per_s": _num(e.get("images_per_s")), "data_time_s": _num(e.get("data_time_s")),
            "compute_time_s": _num(e.get("compute_time_s")), "test_loss": _num(ev.get("test_loss")),
            "test_accuracy": _num(ev.get("test_accuracy")), "eval_time_s": _num(ev.get("time_s")),
        })
    return rows


def latency_rows(log: EventLog, run_id: str) -> list[dict[str, Any]]:
    return [{"run_id": run_id, "batch_size": _int(e.get("batch_size")), "iterations": _int(e.get("iterations")),
             "p50_ms": _num(e.get("p50_ms")), "p90_ms": _num(e.get("p90_ms")), "p99_ms": _num(e.get("p99_ms")),
             "mean_ms": _num(e.get("mean_ms")), "per_image_ms": _num(e.get("per_image_ms"))}
            for e in log.of("latency")]


# inference event field -> how the inference table reads it (every other column is copied as it is)
_INFERENCE_INT = ("batch_size", "model_bytes", "test_images", "calibration_images", "iterations", "warmup_iterations")
_INFERENCE_TEXT = ("precision", "runtime", "model_format", "calibration_indices_sha256", "calibration_sha256",
                   "inputs_sha256", "error")


def inference_rows(log: EventLog, run_id: str) -> list[dict[str, Any]]:
    """One row per (precision, batch size) of the run's `inference` events."""
    from runner.bundle.schemas import INFERENCE

    rows = []
    for e in log.of("inference"):
        row: dict[str, Any] = {"run_id": run_id}
        for name in INFERENCE.names[1:]:
            read = _int if name in _INFERENCE_INT else _text if name in _INFERENCE_TEXT else _num
            row[name] = read(e.get(name))
        rows.append(row)
    return rows


def mean_images_per_s(epochs: list[dict[str, Any]]) -> float | None:
    """Timed images over timed time across epochs (each epoch's timed time = timed images / rate)."""
    images, seconds = 0, 0.0
    for e in epochs:
        rate = e.get("images_per_s")
        timed = e.get("timed_images") if e.get("timed_images") is not None else e.get("images")
        if rate and timed:
            images += timed
            seconds += timed / rate
    return images / seconds if seconds > 0 else None


def run_rows(log: EventLog, run_id: str, engine_status: str, engine_reason: str | None,
             target_accuracy: float | None) -> RunRows:
    status, reason, error = outcome(log, engine_status, engine_reason)
    start = log.first("run_start") or {}
    end = log.last("run_end") or {}
    epochs = epoch_rows(log, run_id)
    latency = latency_rows(log, run_id)
    evals = log.of("eval")
    last_epoch = log.last("epoch") or {}
    last_eval = evals[-1] if evals else {}
    target = log.first("target_reached")
    memory = log.of("memory")
    build = start.get("build") if isinstance(start.get("build"), dict) else {}
    python = start.get("python")
    params = start.get("params") if isinstance(start.get("params"), dict) else {}
    accs = [a for a in (_num(e.get("test_accuracy")) for e in evals) if a is not None]
    compile_times = [t for t in (_num(e.get("time_s")) for e in log.of("compile")) if t is not None]
    times = [e["time_s"] for e in epochs if e["time_s"] is not None]
    p50 = {str(r["batch_size"]): r["p50_ms"] for r in sorted(latency, key=lambda r: r["batch_size"] or 0)}
    summary = {
        "status": status, "failure_reason": reason, "error": error,
        "epochs_completed": len(epochs),
        "final_train_loss": _num(last_epoch.get("train_loss")),
        "final_train_accuracy": _num(last_epoch.get("train_accuracy")),
        "final_test_loss": _num(last_eval.get("test_loss")),
        "final_test_accuracy": _num(last_eval.get("test_accuracy")),
        "best_test_accuracy": max(accs) if accs else None,
        "training_time_s": sum(times) if times else None,
        "mean_images_per_s": mean_images_per_s(epochs),
        "target_accuracy": target_accuracy,
        "time_to_target_s": _num(target.get("time_s")) if target else None,
        "compile_time_s": sum(compile_times) if compile_times else None,
        "wall_s": _num(end.get("wall_s")),
        "params_trainable": _int(params.get("trainable")),
        "params_total": _int(params.get("total")),
        "flops_per_image": _int(start.get("flops_per_image")),
        "latency_p50_ms_json": json.dumps(p50) if p50 else None,
        "peak_device_memory_bytes": max((_int(m.get("peak_device_bytes")) or 0 for m in memory), default=None)
        or None,
        "warmup_peak_device_memory_bytes": max(
            (_int(m.get("warmup_peak_device_bytes")) or 0 for m in memory), default=None) or None,
        "peak_host_memory_bytes": max((_int(m.get("peak_host_bytes")) or 0 for m in memory), default=None)
        or None,
        "events_truncated": log.truncated,
        "framework_version": _text(start.get("framework_version")),
        "python_version": _text(python.get("python") if isinstance(python, dict) else python),
        "cuda_version": _text(build.get("cuda") or build.get("cuda_version")),
        "cudnn_version": _text(build.get("cudnn") or build.get("cudnn_version")),
        "config_sha256": _text(start.get("config_sha256")),
    }
    return RunRows(summary, epochs, latency, inference_rows(log, run_id))
