"""The one training and measurement protocol every framework runs through.

Per step: read the host clock, take the next batch and move it to the device = data time; set
the learning rate from the schedule and launch the step = compute time. The step's loss and
correct count stay on the device (`Backend.train_step` returns them unread) and are read back
together every `measurement.read_every_steps` steps and at the end of every epoch
(`Backend.read_steps`: one synchronisation, and for a data-parallel PyTorch run one all-reduce,
per read), so the host can run ahead of the device between reads. Each step's compute time is
measured on the device where the backend can (`Backend.mark`: CUDA events in PyTorch), else
by the host clock (exact on CPU, where steps are synchronous; dispatch time only for an
asynchronous device, said in `settings.step_timing`). Epoch and throughput times are host
times taken after a read, so they cover the device work they claim.

The first `warmup_steps` steps of the run (and always the first) are read back at once, each
timed alone; they are flagged and excluded from throughput; the first step's compute time
(tracing, graph build, XLA or torch.compile) is reported separately as `compile`. When warm-up
ends the device's peak-memory counter is reset, so `peak_device_bytes` is the timed steps'
footprint and the warm-up's (cuDNN autotuning workspaces) is reported beside it. After every
`eval_every_epochs` epochs the test split is evaluated; the first evaluation at or above
`target_accuracy` gives `target_reached`. After training, inference latency is measured per
batch size.

Data-parallel PyTorch runs drive one Protocol per replica process: every replica trains on its
slice of each global batch (the backend all-reduces gradients, and at each read the buffered
losses and correct counts); only the leader (rank 0) writes events, evaluates (the others wait
at a barrier) and measures latency.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runner.workload.events import EventWriter
from runner.workload.harness.backend import Backend
from runner.workload.harness.batches import Batches
from runner.workload.harness.config import RunConfig
from runner.workload.harness.replicas import Replica
from runner.workload.measure import EpochMeter, Latency, RunMeter, SyncedClock

# Under fp16 loss scaling an overflowing step is skipped, not fatal; this many in a row is.
MAX_NONFINITE_FP16_STEPS = 10
LATENCY_WARMUP_MIN = 3


@dataclass
class PendingStep:
    """A launched step whose loss, correct count and device time are not read back yet."""

    epoch: int
    step: int
    global_step: int
    lr: float
    images: int
    warmup: bool
    t0: float  # host clock before the batch was fetched
    t1: float  # after it was on the device (launched)
    t2: float  # after the step was launched (= done, on a synchronous device)
    stats: Any  # the backend's unread (loss, correct)
    marks: tuple[Any, Any] | None  # the backend's device timer marks around the step, if it has one


class Diverged(Exception):
    """The training loss became NaN or infinite."""


@dataclass
class Outcome:
    """What the protocol measured, filled in as it goes (a failed run keeps what it got)."""

    epochs_completed: int = 0
    global_steps: int = 0
    last_epoch: dict[str, Any] | None = None
    last_eval: dict[str, Any] | None = None
    compile: dict[str, Any] | None = None
    latency: list[dict[str, Any]] = field(default_factory=list)
    meter: RunMeter = field(default_factory=RunMeter)
    warmup_peak_device_bytes: int | None = None  # the device's peak over warm-up (reset after it)
    timed_peak_device_bytes: int | None = None  # the peak over the timed steps (read when training ends)


class Protocol:
    """Drives one backend through training, evaluation and latency, writing events."""

    def __init__(self, backend: Backend, cfg: RunConfig, batches: Batches, events: EventWriter,
                 lr_at: Callable[[int, int, int], float], run_start: float, replica: Replica = Replica()) -> None:
        self.backend, self.cfg, self.batches, self.events = backend, cfg, batches, events
        self.replica = replica
        self.lr_at = lr_at  # (epoch, step_in_epoch, steps_per_epoch) -> lr
        self.run_start = run_start
        self.clock = SyncedClock(backend.sync)
        self.outcome = Outcome(meter=RunMeter(target_accuracy=cfg.measurement.target_accuracy))
        self._nonfinite_run = 0
        self._compile_emitted = False
        self._pending: list[PendingStep] = []
        self._peak_reset = False

    # -- training -------------------------------------------------------------------------
    def train(self) -> Outcome:
        cfg, out = self.cfg, self.outcome
        steps = self.batches.steps_per_epoch()
        resident = None
        if cfg.measurement.synthetic_compute:
            x, y = self.batches.synthetic_batch()
            resident = self.backend.to_device(x, y)
        for epoch in range(cfg.train.epochs):
            meter = EpochMeter(epoch=epoch)
            meter.start = self.clock.now()
            # the backend may wrap the epoch's batches (PyTorch, augmentation on the device: a prefetcher)
            source = None if resident is not None else self.backend.feed(self.batches.train(epoch))
            try:
                for step in range(steps):
                    self._step(epoch, step, steps, meter, source, resident)
                self._read(meter)
            finally:
                if source is not None:
                    getattr(source, "close", lambda: None)()  # stops the loader's prefetch thread
            meter.finish(self.clock.now())  # after the epoch's last read: the device is idle
            out.meter.add_epoch(meter)
            out.epochs_completed = epoch + 1
            out.last_epoch = self.events.emit("epoch", **meter.summary())
            if self._eval_due(epoch):
                if self.replica.leader:
                    self.evaluate(epoch)
                if self.replica.processes > 1:
                    self.backend.barrier()  # type: ignore[attr-defined] - replicas wait for the leader's eval
            self.events.sync()
        self._emit_compile()  # a run shorter than its warm-up still reports its first step
        if self._peak_reset:
            out.timed_peak_device_bytes = self.backend.peak_device_bytes()
        return out

    def _step(self, epoch: int, step: int, steps: int, meter: EpochMeter,
              source: Iterator[tuple[np.ndarray, np.ndarray]] | None, resident: Any) -> None:
        out, warmup_steps = self.outcome, self.cfg.measurement.warmup_steps
        t0 = time.perf_counter()
        if resident is None:
            assert source is not None
            x, y, *decisions = next(source)  # (x, y), or (x_uint8, y, decisions) to augment on the device
            batch, images = self.backend.to_device(x, y, *decisions), int(len(y)) * self.replica.processes  # global
        else:
            batch, images = resident, self.cfg.train.batch_size
        t1 = time.perf_counter()
        lr = float(self.lr_at(epoch, step, steps))
        before = self.backend.mark()
        stats = self.backend.train_step(batch, lr)
        after = self.backend.mark()
        t2 = time.perf_counter()
        warmup = out.global_steps < warmup_steps
        self._pending.append(PendingStep(epoch, step, out.global_steps, lr, images, warmup, t0, t1, t2, stats,
                                         None if before is None else (before, after)))
        first = out.global_steps == 0
        out.global_steps += 1
        # warm-up steps (and the first, which holds compilation) are read, and timed, one by one
        if warmup or first or len(self._pending) >= self.cfg.measurement.read_every_steps:
            self._read(meter)
        if out.global_steps == warmup_steps and not self._peak_reset:
            self._peak_reset = True
            out.warmup_peak_device_bytes = self.backend.reset_peak_device_bytes()
        if out.global_steps == max(warmup_steps, 1):
            self._emit_compile()

    def _read(self, meter: EpochMeter) -> None:
        """Read back the launched steps (one synchronisation), then emit and count them in order.
        The last one ends at the host time after the read: the interval covers its device work."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        values = self.backend.read_steps([p.stats for p in pending])
        t_read = time.perf_counter()
        out = self.outcome
        for k, (p, (loss, correct)) in enumerate(zip(pending, values, strict=True)):
            last = k == len(pending) - 1
            end = t_read if last else p.t2
            if p.marks is not None:
                compute = self.backend.elapsed_s(*p.marks)
            else:  # host clock: the launch, and for the last step the wait for the device
                compute = (t_read if last else p.t2) - p.t1
            # A non-finite loss is written (as null) before the run is declared diverged.
            self.events.emit("step", epoch=p.epoch, step=p.step, global_step=p.global_step, loss=loss, lr=p.lr,
                             batch_size=p.images, data_time_s=p.t1 - p.t0, compute_time_s=compute,
                             warmup=p.warmup)
            meter.add_step(start=p.t0, end=end, images=p.images, loss=loss, correct=correct,
                           data_s=p.t1 - p.t0, compute_s=compute, warmup=p.warmup)
            if p.global_step == 0:  # read alone: host time from launch to read, compilation included
                out.compile = {"time_s": t_read - p.t1, "warmup_steps": self.cfg.measurement.warmup_steps,
                               "warmup_time_s": 0.0, **self._execution()}
            if p.warmup and out.compile is not None:
                out.compile["warmup_time_s"] += end - p.t0
        for p, (loss, _) in zip(pending, values, strict=True):
            self._check_finite(loss, p.epoch, p.step)

    def _emit_compile(self) -> None:
        if self.outcome.compile is not None and not self._compile_emitted:
            self._compile_emitted = True
            self.events.emit("compile", **self.outcome.compile)

    def _execution(self) -> dict[str, Any]:
        s = self.backend.settings()
        return {"execution": s.get("execution"), "compiled": self.cfg.train.compile}

    def _check_finite(self, loss: float, epoch: int, step: int) -> None:
        if math.isfinite(loss):
            self._nonfinite_run = 0
            return
        self._nonfinite_run += 1
        # Under fp16 the loss scaler skips overflowing steps and backs off; only a streak is fatal.
        if self.cfg.train.precision != "amp_fp16" or self._nonfinite_run >= MAX_NONFINITE_FP16_STEPS:
            raise Diverged(f"loss is {loss} at epoch {epoch} step {step}")

    def _eval_due(self, epoch: int) -> bool:
        every = self.cfg.measurement.eval_every_epochs
        last = epoch == self.cfg.train.epochs - 1
        return not self.cfg.measurement.synthetic_compute and ((epoch + 1) % every == 0 or last)

    # -- evaluation -----------------------------------------------------------------------
    def evaluate(self, epoch: int) -> dict[str, Any]:
        t0 = self.clock.now()
        loss_sum, correct, n = 0.0, 0, 0
        for x, y in self.batches.test():
            batch_loss, batch_correct = self.backend.eval_step(self.backend.to_device(x, y))
            loss_sum, correct, n = loss_sum + batch_loss, correct + batch_correct, n + len(y)
        t1 = self.clock.now()
        accuracy = correct / n if n else 0.0
        event = self.events.emit("eval", epoch=epoch, test_loss=loss_sum / n if n else None,
                                 test_accuracy=accuracy, images=n, time_s=t1 - t0)
        self.outcome.last_eval = event
        hit = self.outcome.meter.check_target(accuracy, epoch, time.perf_counter() - self.run_start)
        if hit is not None:
            self.events.emit("target_reached", **hit)
        return event

    # -- inference latency ----------------------------------------------------------------
    def latency(self) -> list[dict[str, Any]]:
        m = self.cfg.measurement
        warmup = max(m.warmup_steps, LATENCY_WARMUP_MIN)
        if not self.replica.leader:  # one process measures; the others would compete for the device
            return self.outcome.latency
        for batch_size in m.latency_batch_sizes:
            x, y = self.batches.random_batch(batch_size)
            batch = self.backend.to_device(x, y)
            for _ in range(warmup):
                self.backend.predict(batch)
            times = []
            for _ in range(m.latency_iterations):
                t0 = self.clock.now()
                self.backend.predict(batch)
                times.append(self.clock.now() - t0)
            stats = Latency.from_values(times, batch_size).as_dict()
            self.events.emit("latency", warmup_iterations=warmup, **stats)
            self.outcome.latency.append(stats)
        return self.outcome.latency
