"""Framework-neutral timing and statistics: the measurement protocol in one place.

Every clock read goes through `SyncedClock`, which first calls the framework's `sync`
(torch.cuda.synchronize on CUDA, fetching a value in TensorFlow, nothing on CPU), so a time
never ends before the device work it claims to measure. Steps flagged as warm-up are kept
in the event stream but excluded from every throughput figure.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np


class SyncedClock:
    """perf_counter preceded by a device synchronisation."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self._sync = sync

    def now(self) -> float:
        self._sync()
        return time.perf_counter()


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between order statistics.

    Rank r = q/100 * (n-1) on the sorted values; the result interpolates between the values at
    floor(r) and ceil(r) (numpy's default "linear" method, written out so the definition is
    on the page).
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be in [0, 100], got {q}")
    ordered = sorted(float(v) for v in values)
    rank = q / 100.0 * (len(ordered) - 1)
    lo = int(np.floor(rank))
    hi = min(lo + 1, len(ordered) - 1)
    frac = rank - lo
    return ordered[lo] + (ordered[hi] - ordered[lo]) * frac


@dataclass(frozen=True)
class Latency:
    """Inference latency of one batch size over timed iterations (warm-up already dropped)."""

    batch_size: int
    iterations: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    per_image_ms: float

    @classmethod
    def from_values(cls, seconds: Sequence[float], batch_size: int) -> Latency:
        """Statistics of per-call times in seconds; per-image latency is the median over batch."""
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        ms = [s * 1000.0 for s in seconds]
        p50 = percentile(ms, 50)
        return cls(
            batch_size=batch_size,
            iterations=len(ms),
            p50_ms=p50,
            p90_ms=percentile(ms, 90),
            p99_ms=percentile(ms, 99),
            mean_ms=float(sum(ms) / len(ms)),
            per_image_ms=p50 / batch_size,
        )

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass
class EpochMeter:
    """Accumulates the steps of one epoch.

    Throughput is timed over wall time from the start of the first non-warm-up step to the end
    of the last step, so whatever the harness does between steps (writing events) counts
    against it; data and compute time are the per-step sums.
    """

    epoch: int
    images: int = 0
    loss_sum: float = 0.0
    loss_images: int = 0  # images of steps whose loss was finite (fp16 may skip a step)
    correct: int = 0
    data_time_s: float = 0.0
    compute_time_s: float = 0.0
    timed_images: int = 0
    timed_start: float | None = None
    timed_end: float | None = None
    start: float = field(default_factory=time.perf_counter)
    end: float | None = None

    def add_step(
        self, *, start: float, end: float, images: int, loss: float, correct: int,
        data_s: float, compute_s: float, warmup: bool,
    ) -> None:
        self.images += images
        if math.isfinite(loss):
            self.loss_sum += loss * images
            self.loss_images += images
        self.correct += correct
        self.data_time_s += data_s
        self.compute_time_s += compute_s
        if not warmup:
            if self.timed_start is None:
                self.timed_start = start
            self.timed_end = end
            self.timed_images += images

    def finish(self, end: float) -> None:
        self.end = end

    @property
    def time_s(self) -> float:
        return (self.end if self.end is not None else time.perf_counter()) - self.start

    @property
    def timed_time_s(self) -> float:
        if self.timed_start is None or self.timed_end is None:
            return 0.0
        return self.timed_end - self.timed_start

    @property
    def images_per_s(self) -> float | None:
        t = self.timed_time_s
        return self.timed_images / t if self.timed_images and t > 0 else None

    def summary(self) -> dict[str, float | int | None]:
        return {
            "epoch": self.epoch,
            "train_loss": self.loss_sum / self.loss_images if self.loss_images else None,
            "train_accuracy": self.correct / self.images if self.images else None,
            "images": self.images,
            "time_s": self.time_s,
            "images_per_s": self.images_per_s,
            "timed_images": self.timed_images,
            "data_time_s": self.data_time_s,
            "compute_time_s": self.compute_time_s,
        }


@dataclass
class RunMeter:
    """Totals over epochs: training time, mean throughput, time to the target accuracy."""

    target_accuracy: float | None = None
    train_time_s: float = 0.0
    timed_images: int = 0
    timed_time_s: float = 0.0
    data_time_s: float = 0.0
    compute_time_s: float = 0.0
    target: dict[str, float | int] | None = None

    def add_epoch(self, meter: EpochMeter) -> None:
        self.train_time_s += meter.time_s
        self.timed_images += meter.timed_images
        self.timed_time_s += meter.timed_time_s
        self.data_time_s += meter.data_time_s
        self.compute_time_s += meter.compute_time_s

    @property
    def images_per_s(self) -> float | None:
        if not self.timed_images or self.timed_time_s <= 0:
            return None
        return self.timed_images / self.timed_time_s

    def check_target(self, accuracy: float, epoch: int, wall_s: float) -> dict[str, float | int] | None:
        """The first evaluation at or above the target: returns the event fields once.

        `time_s` is training time up to the end of that epoch (evaluation excluded);
        `wall_s` is time since the run started, everything included.
        """
        if self.target is not None or self.target_accuracy is None or accuracy < self.target_accuracy:
            return None
        self.target = {"accuracy": accuracy, "epoch": epoch, "time_s": self.train_time_s, "wall_s": wall_s}
        return self.target


def peak_host_bytes() -> int:
    """Peak resident set size of this process (ru_maxrss: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)
