"""One run from start to finish: validate, build, train, measure, and always end the record.

Everything that can be checked without a framework (run.json, model, optimizer, schedule,
dataset, output folder) is checked first and raises a RunnerError (exit 2, nothing written).
From the moment `events.jsonl` exists, every outcome ends with a `run_end` event and a
`result.json`: a failure is a row with a reason, not a crash (exit 3).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from runner.errors import DatasetError, SpecError, UsageError
from runner.workload.events import EVENTS_FILE, EventWriter, write_json_atomic
from runner.workload.harness.backend import Backend, ParamCounts
from runner.workload.harness.batches import Batches
from runner.workload.harness.config import RunConfig, load_config
from runner.workload.harness.protocol import Diverged, Outcome, Protocol
from runner.workload.harness.replicas import NullEvents, Replica, first_failure, replica_of, report_failure
from runner.workload.inference.protocol import check_calibration, measure_inference
from runner.workload.measure import peak_host_bytes

RESULT_FILE = "result.json"
RESULT_SCHEMA = 1
EXIT_OK, EXIT_FAILED = 0, 3
_MAX_ERROR_CHARS = 500


class Interrupted(BaseException):
    """SIGTERM arrived (the engine stopping the container, a time limit)."""


@dataclass(frozen=True)
class Prepared:
    """A run checked and ready: nothing here has touched a framework."""

    cfg: RunConfig
    model_cfg: Any
    optim_cfg: Any
    schedule_cfg: Any
    arch: Any
    dataset: Any
    batches: Batches
    out_dir: Path
    pretrained: Pretrained | None = None
    replica: Replica = Replica()  # this process's rank in a PyTorch data-parallel run


@dataclass(frozen=True)
class Pretrained:
    """The weights file a run starts from, hashed and checked against the model before any run."""

    path: Path
    sha256: str
    weights: dict[str, Any]
    skip: tuple[str, ...]

    def record(self, plan: Any) -> dict[str, Any]:
        return {"sha256": self.sha256, "path": str(self.path)} | plan.record()


def load_pretrained(model_cfg: Any, arch: Any, weights_path: Path | None, cfg: RunConfig) -> Pretrained | None:
    """The `--weights` file, when run.json pins one: its sha256 must match, its tensors fit the model."""
    from runner.fileio import sha256_file
    from runner.workload.models.npz import read_npz
    from runner.workload.models.pretrained import plan_load

    pin = model_cfg.pretrained
    if pin is None:
        if weights_path is not None:
            raise UsageError("--weights given but run.json pins no pretrained weights", field="--weights",
                             fix="drop --weights, or regenerate run.json from a spec with model.pretrained")
        return None
    if weights_path is None:
        raise UsageError("run.json pins pretrained weights but no --weights file was given", file=cfg.path,
                         field="model.pretrained", fix="pass --weights FILE (the engine mounts it read-only)")
    weights = read_npz(weights_path)  # regular file, capped; any problem is one ModelError
    _, sha = sha256_file(weights_path)
    if sha != pin["sha256"]:
        raise SpecError(f"--weights {weights_path} has sha256 {sha}, run.json pins {pin['sha256']}",
                        file=cfg.path, field="model.pretrained.sha256",
                        fix="mount the weights file the spec pins")
    skip = tuple(pin["skip"])
    plan_load(arch, {k: (v.dtype, tuple(v.shape)) for k, v in weights.items()}, skip, str(weights_path))
    return Pretrained(Path(weights_path), sha, weights, skip)


def prepare_run(config_path: Path, data_dir: Path, out_dir: Path, weights_path: Path | None = None,
                images_dir: Path | None = None) -> Prepared:
    """Check everything that needs no framework; raise a RunnerError on bad input."""
    from runner.workload.harness.batches import open_dataset
    from runner.workload.models import ModelConfig, build_arch
    from runner.workload.optim import OptimConfig
    from runner.workload.schedule import ScheduleConfig

    cfg = load_config(config_path)
    source = str(cfg.path)
    model_cfg = ModelConfig.from_dict(cfg.model, source=source)
    optim_cfg = OptimConfig.from_dict(cfg.optimizer, source=source)
    schedule_cfg = ScheduleConfig.from_dict(cfg.schedule, total_epochs=cfg.train.epochs, source=source)
    arch = build_arch(model_cfg)
    pretrained = load_pretrained(model_cfg, arch, weights_path, cfg)
    dataset = open_dataset(cfg, data_dir, images_dir)  # prepared .npy, or JPEGs (data.decode: jpeg)
    replica = replica_of(cfg)
    batches = Batches(dataset, cfg, model_cfg.input_size, replica.shard)
    _check_dataset(cfg, model_cfg, dataset, batches.output_side())
    check_calibration(cfg, batches.train_size)  # measurement.inference: at most the training set
    if batches.steps_per_epoch() < 1:
        raise SpecError(f"batch size {cfg.train.batch_size} is larger than the {batches.train_size} "
                        "training images with drop_last", file=cfg.path, field="train.batch_size",
                        fix="use a smaller batch or drop_last: false")
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise UsageError("output folder does not exist", file=out_dir, fix="create it before the run")
    for name in (EVENTS_FILE, RESULT_FILE):
        if replica.leader and (out_dir / name).exists():  # the leader's are the run's; others write none
            raise UsageError(f"already holds {name}; results are never overwritten", file=out_dir,
                             fix="give each run a fresh --out folder")
    return Prepared(cfg, model_cfg, optim_cfg, schedule_cfg, arch, dataset, batches, out_dir, pretrained, replica)


def _check_dataset(cfg: RunConfig, model_cfg: Any, dataset: Any, side: int) -> None:
    if cfg.data.name != dataset.name:
        raise DatasetError(f"holds {dataset.name}, the run expects {cfg.data.name}", file=dataset.path,
                           fix="mount the prepared folder of the dataset the spec names")
    if dataset.num_classes != cfg.data.num_classes or model_cfg.num_classes != cfg.data.num_classes:
        raise DatasetError(f"has {dataset.num_classes} classes; run.json says data.num_classes="
                           f"{cfg.data.num_classes}, model.num_classes={model_cfg.num_classes}",
                           file=dataset.path, field="classes")
    if side != model_cfg.input_size:
        raise SpecError(f"the model takes {model_cfg.input_size}x{model_cfg.input_size} inputs but the "
                        f"data pipeline gives {side}x{side}", file=cfg.path, field="model.input_size",
                        fix=f"add a resize op to {model_cfg.input_size} or change model.input_size")


def make_backend(p: Prepared) -> Backend:
    """The framework's backend, imported only now (the process imports one framework)."""
    if p.cfg.framework == "pytorch":
        from runner.workload.harness.torch_harness import TorchBackend

        return TorchBackend(p.cfg, p.optim_cfg)
    if p.cfg.framework == "mxnet":  # imports mxnet in setup(), after its engine variables are set
        from runner.workload.harness.mx_harness import MXBackend

        return MXBackend(p.cfg, p.optim_cfg)
    if not p.cfg.on_gpu and "tensorflow" not in sys.modules:
        # TensorFlow places ops on a visible GPU by itself: hide GPUs from a CPU run (recorded
        # in run_start's python.env), before TensorFlow is imported.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    from runner.workload.harness.tf_harness import TFBackend

    return TFBackend(p.cfg, p.optim_cfg)


@dataclass
class StopRequest:
    """Which stop signal arrived, if any.

    The handler raises wherever Python code happens to run, including inside a framework's own
    callbacks, which may turn the exception into an error type of their own (CI once saw a
    SIGTERM'd TensorFlow run end with reason `error`). So the outcome is judged by whether a
    stop signal arrived, not only by the exception's type.
    """

    signal_name: str | None = None


@contextmanager
def stop_signals_raise() -> Iterator[StopRequest]:
    """Turn SIGTERM (and SIGINT) into an exception so the run can still write its run_end."""
    request = StopRequest()

    def on_term(signum: int, frame: FrameType | None) -> None:
        request.signal_name = "SIGTERM"
        raise Interrupted("SIGTERM")

    def on_int(signum: int, frame: FrameType | None) -> None:
        request.signal_name = "SIGINT"
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, fn) for sig, fn in
                ((signal.SIGTERM, on_term), (signal.SIGINT, on_int))}
    try:
        yield request
    finally:
        for sig, fn in previous.items():
            signal.signal(sig, fn)


def classify(exc: BaseException, backend: Backend | None, stop: StopRequest | None = None) -> str:
    if isinstance(exc, KeyboardInterrupt | Interrupted) or (stop is not None and stop.signal_name):
        return "interrupted"
    if isinstance(exc, Diverged):
        return "diverged"
    if isinstance(exc, MemoryError) or (backend is not None and backend.is_oom(exc)):
        return "oom"
    return "error"


def one_line(exc: BaseException) -> str:
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line[:_MAX_ERROR_CHARS]


def execute(p: Prepared) -> int:
    """Run the checked run; returns 0 (ok) or 3 (failed, recorded in the events)."""
    from runner.workload.models import flops_per_image
    from runner.workload.schedule import lr_at

    t_start = time.perf_counter()
    cfg = p.cfg
    backend: Backend | None = None
    protocol: Protocol | None = None
    counts: ParamCounts | None = None
    flops: int | None = None
    start_info: dict[str, Any] = {}
    weights_record: dict[str, Any] | None = None
    inference_rows: list[dict[str, Any]] = []
    status, reason, error, tb = "ok", None, None, None
    leader = p.replica.leader
    with (EventWriter(p.out_dir / EVENTS_FILE, cfg.run_id) if leader else NullEvents()) as events, \
            stop_signals_raise() as stop:
        try:
            backend = make_backend(p)
            backend.setup()
            start_info = backend.info()
            initial, weights_record = initial_weights(p)
            counts = backend.build(p.arch, initial)
            del initial
            flops = int(flops_per_image(p.arch))
            events.emit(
                "run_start", run_id=cfg.run_id, experiment=cfg.experiment, sweep=cfg.sweep,
                repeat=cfg.repeat, seed=cfg.seed, variant=cfg.variant, **start_info,
                python=_python(), settings=backend.settings(),
                params={"trainable": counts.trainable, "total": counts.total},
                flops_per_image=flops, config_sha256=cfg.sha256,
                dataset={"name": p.dataset.name, "content_id": p.dataset.content_id,
                         "train": p.batches.train_size, "test": int(len(p.dataset.test_y))},
                steps_per_epoch=p.batches.steps_per_epoch(), weights=weights_record,
            )
            events.sync()
            base_lr = float(p.optim_cfg.lr) * cfg.parallel.lr_factor  # lr_scaling: linear -> x replicas

            def lr(epoch: int, step: int, steps: int) -> float:
                return lr_at(p.schedule_cfg, base_lr, epoch, step, steps)

            protocol = Protocol(backend, cfg, p.batches, events, lr, t_start, p.replica)
            protocol.train()
            protocol.latency()
            inference_rows = measure_inference(backend, cfg, p.dataset, p.batches, events, protocol.clock)
        except BaseException as exc:  # noqa: BLE001 - every outcome must end the record
            status, reason, error = "failed", classify(exc, backend, stop), one_line(exc)
            if stop.signal_name and not isinstance(exc, KeyboardInterrupt | Interrupted):
                error = f"stopped by {stop.signal_name} ({error})"[:_MAX_ERROR_CHARS]
            # Where an unexpected error came from; an expected outcome needs no traceback.
            tb = traceback.format_exc(limit=20) if reason == "error" else None
            if not leader:
                report_failure(p.out_dir, p.replica, reason, error)
            elif reason in ("interrupted", "error") and (other := first_failure(p.out_dir)) is not None:
                # the leader was stopped (torchrun's SIGTERM, a broken collective) because a replica failed
                reason, error = other["reason"], f"replica {other.get('rank')} failed: {other.get('error')}"[
                    :_MAX_ERROR_CHARS]
            print(f"run failed ({reason}): {error}", file=sys.stderr)
        # The record is being closed: a second stop signal must not tear it.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        memory = _memory(backend, events, protocol.outcome if protocol is not None else None)
        wall_s = time.perf_counter() - t_start
        events.emit("run_end", status=status, reason=reason, error=error, wall_s=wall_s,
                    traceback=tb.splitlines()[-12:] if tb else None)
        if not leader:
            return EXIT_OK if status == "ok" else EXIT_FAILED
        outcome = protocol.outcome if protocol is not None else Outcome()
        write_json_atomic(p.out_dir / RESULT_FILE, _result(
            cfg, status, reason, error, wall_s, outcome, counts, flops, memory, start_info,
            backend.settings() if backend is not None else {}) | {"weights": weights_record,
                                                                  "inference": inference_rows})
    return EXIT_OK if status == "ok" else EXIT_FAILED


def run(config_path: Path, data_dir: Path, out_dir: Path, weights_path: Path | None = None,
        images_dir: Path | None = None) -> int:
    return execute(prepare_run(config_path, data_dir, out_dir, weights_path, images_dir))


def initial_weights(p: Prepared) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The canonical weights both frameworks start from: the shared seeded draw, with the pinned
    pretrained tensors in place of it (the skip rule in models/pretrained.py); and what was done."""
    from runner.workload.models import init_weights, weights_fingerprint
    from runner.workload.models.pretrained import apply_pretrained

    seeded = init_weights(p.arch, p.cfg.seed)
    if p.pretrained is None:
        return seeded, None
    weights, plan = apply_pretrained(p.arch, seeded, p.pretrained.weights, p.pretrained.skip,
                                     str(p.pretrained.path))
    return weights, p.pretrained.record(plan) | {"initial_fingerprint": weights_fingerprint(weights)}


def _python() -> dict[str, Any]:
    from runner.workload.env_info import python_info

    return python_info()


def _memory(backend: Backend | None, events: EventWriter, outcome: Outcome | None) -> dict[str, Any]:
    """Peak device memory over the timed steps (the counter is reset when warm-up ends; a run
    that stopped before that reports its peak so far), the warm-up's beside it, and the host's."""
    device = outcome.timed_peak_device_bytes if outcome is not None else None
    if device is None and backend is not None:
        try:
            device = backend.peak_device_bytes()
        except Exception:  # noqa: BLE001 - a failed reading must not hide the run's own outcome
            device = None
    memory = {"peak_device_bytes": device,
              "warmup_peak_device_bytes": outcome.warmup_peak_device_bytes if outcome is not None else None,
              "peak_host_bytes": peak_host_bytes()}
    events.emit("memory", **memory)
    return memory


def _result(cfg: RunConfig, status: str, reason: str | None, error: str | None, wall_s: float,
            out: Outcome, counts: ParamCounts | None, flops: int | None, memory: dict[str, Any],
            info: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    epoch, ev, meter = out.last_epoch or {}, out.last_eval or {}, out.meter
    return {
        "schema": RESULT_SCHEMA, "run_id": cfg.run_id, "experiment": cfg.experiment, "sweep": cfg.sweep,
        "framework": cfg.framework, "framework_version": info.get("framework_version"),
        "variant": cfg.variant, "seed": cfg.seed, "repeat": cfg.repeat, "config_sha256": cfg.sha256,
        "status": status, "reason": reason, "error": error,
        "epochs_completed": out.epochs_completed, "global_steps": out.global_steps,
        "final_train_loss": epoch.get("train_loss"), "final_train_accuracy": epoch.get("train_accuracy"),
        "final_test_loss": ev.get("test_loss"), "final_test_accuracy": ev.get("test_accuracy"),
        "final_eval_epoch": ev.get("epoch"),
        "training_time_s": meter.train_time_s, "wall_s": wall_s,
        "images_per_s": meter.images_per_s, "timed_images": meter.timed_images,
        "data_time_s": meter.data_time_s, "compute_time_s": meter.compute_time_s,
        "compile_time_s": (out.compile or {}).get("time_s"),
        "warmup_time_s": (out.compile or {}).get("warmup_time_s"),
        "target_accuracy": cfg.measurement.target_accuracy,
        "time_to_target_s": (meter.target or {}).get("time_s"), "target": meter.target,
        "params": None if counts is None else {"trainable": counts.trainable, "total": counts.total},
        "flops_per_image": flops, "latency": out.latency, "memory": memory, "settings": settings,
    }
