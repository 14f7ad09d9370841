"""What a framework must provide to be driven by the one training/measurement protocol.

The protocol (harness/protocol.py) owns the loop, the clocks, the events and the statistics;
a backend owns only what differs between frameworks: building the model from the shared
architecture, moving a batch to the device, one training step, one evaluation step, one
inference call, and how to wait for the device. A training step's statistics are returned
unread (device values) and read back in groups (`read_steps`), so the host need not wait for the
device every step; everything else a backend returns has already been synchronised (a Python
float or int), so the protocol's clock reads are honest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class ParamCounts:
    trainable: int
    total: int


class Backend(Protocol):
    framework: str
    device: str  # "cpu" or "cuda:0" / "/GPU:0" / "gpu(0)"

    def setup(self) -> None:
        """Threads, seeds, determinism, precision policy: before any tensor exists."""

    def info(self) -> dict[str, Any]:
        """framework, framework_version, build, devices, threads (env_info.framework_info)."""

    def settings(self) -> dict[str, Any]:
        """What this run actually switched on: execution mode, precision, determinism flags."""

    def build(self, arch: Any, weights: dict[str, np.ndarray]) -> ParamCounts:
        """Build the model from the shared architecture, load the canonical weights, freeze,
        make the optimizer and the (compiled) step functions."""

    def feed(self, source: Any) -> Any:
        """The epoch's training batches, wrapped once per epoch (PyTorch with augment_on device:
        a DevicePrefetcher copying ahead on a side stream); identity elsewhere."""

    def to_device(self, x: np.ndarray, y: np.ndarray, decisions: Any = None) -> Any:
        """A float32 NHWC batch and int64 labels, on the device, in the framework's layout;
        returns once the copy is complete. With `decisions` (augment_on device) x is the uint8
        batch and the backend augments it on the device from those decisions."""

    def train_step(self, batch: Any, lr: float) -> Any:
        """Set the learning rate, launch forward/backward/update; return the step's (mean loss,
        correct) UNREAD (device values, or numbers where the framework has no lazy form)."""

    def read_steps(self, pending: list[Any]) -> list[tuple[float, int]]:
        """Read back the statistics of launched steps, in order: (mean loss, correct) of the
        global batch each. One synchronisation (and one all-reduce across replicas) for all."""

    def mark(self) -> Any:
        """A device timer mark in the launch stream (a CUDA event), or None: steps are then
        timed by the host clock."""

    def elapsed_s(self, start: Any, end: Any) -> float:
        """Seconds between two marks, once both are read (after `read_steps`)."""

    def reset_peak_device_bytes(self) -> int | None:
        """The device's peak memory so far (warm-up), then reset the counter; None on CPU."""

    def eval_step(self, batch: Any) -> tuple[float, int]:
        """Inference-mode forward on a labelled batch: (summed loss, correct)."""

    def predict(self, x: Any) -> None:
        """One inference call on a device-resident input, returning when it is done."""

    def sync(self) -> None:
        """Wait for all queued device work (no-op on CPU)."""

    def peak_device_bytes(self) -> int | None:
        """Peak device memory of this process so far; None on CPU."""

    def is_oom(self, exc: BaseException) -> bool:
        """Whether an exception is this framework's out-of-memory error."""
