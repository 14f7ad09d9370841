"""The sampler: a daemon thread reading every source at a fixed rate while a run executes.

Sampling never fails a run: an exception from a source is counted (`errors`, with the last
message in `last_error`) and the next tick tries again; readings a source could not take
(an NVML query failing) are added to `errors` at `stop()`. Ticks are scheduled on a fixed grid
(start + k x interval); a tick that falls behind is skipped rather than bunched up. One last
reading is taken at `stop()`, so counters (energy) cover the run's end.

GPUs are read only where the run was given some (`gpus`: NVML indices or UUIDs). The host's
CPU load is read every tick (`host=True`); each host row gets `other_cpu_pct` from the run's
latest CPU reading (container or process tree), so a busy machine shows in the bundle.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from runner.telemetry.docker_stats import ContainerProbe
from runner.telemetry.host import HostLoadProbe, attribute_other_load
from runner.telemetry.nvml import GpuProbe, NvmlUnavailable
from runner.telemetry.process import ProcessTreeProbe

AUTO = "auto"
DEFAULT_INTERVAL_S = 1.0


class Probe(Protocol):
    source: str

    def sample(self, t: float, elapsed_s: float) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


class TelemetrySampler:
    """Samples GPUs (NVML), a container (Docker stats), a process tree (psutil) and the host's CPU load.

    gpus: the run's GPUs (NVML indices or UUIDs); () = none, nothing read through NVML.
    nvml: "auto" (use NVML if a driver answers), None (no GPU sampling) or a pynvml-like module.
    container: a docker SDK Container, or None. pid: the root of a local process tree, or None.
    host: read the whole machine's CPU load (busy, steal, load average) each tick.
    """

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S, *, gpus: Sequence[int | str] = (), nvml: Any = AUTO,
                 container: Any = None, pid: int | None = None, host: bool = True) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.interval_s = interval_s
        self.samples: list[dict[str, Any]] = []
        self.errors: dict[str, int] = {}
        self.last_error: dict[str, str] = {}
        self.unavailable: dict[str, str] = {}
        self.ticks = 0
        self.sample_seconds = 0.0
        self._probes: list[Probe] = []
        if nvml is not None and gpus:
            try:
                self._probes.append(GpuProbe(gpus, None if nvml == AUTO else nvml))
            except NvmlUnavailable as e:
                self.unavailable["gpu"] = str(e)
        if container is not None:
            self._probes.append(ContainerProbe(container))
        if pid is not None:
            self._probes.append(ProcessTreeProbe(pid))
        if host:
            self._probes.append(HostLoadProbe())  # last: it is told the run's CPU of the same tick
        self._run_cpu_pct: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._t0_mono = 0.0

    @property
    def sources(self) -> list[str]:
        return [p.source for p in self._probes]

    @property
    def cost_per_sample_s(self) -> float | None:
        """Mean seconds one tick (every source once) took on the sampling thread."""
        return self.sample_seconds / self.ticks if self.ticks else None

    def sample_once(self) -> None:
        """Read every source once, appending rows; errors are counted, never raised."""
        start = time.perf_counter()
        now, elapsed = time.time(), time.monotonic() - self._t0_mono
        for probe in self._probes:
            try:
                rows = probe.sample(now, elapsed)
            except Exception as e:  # noqa: BLE001 - a sampling error must never reach the run
                self.errors[probe.source] = self.errors.get(probe.source, 0) + 1
                self.last_error[probe.source] = f"{type(e).__name__}: {e}"
                continue
            for row in rows:
                if row["source"] in ("container", "process") and row.get("cpu_pct") is not None:
                    self._run_cpu_pct = row["cpu_pct"]
                elif row["source"] == "host":
                    attribute_other_load(row, self._run_cpu_pct)
            self.samples.extend(rows)
        self.ticks += 1
        self.sample_seconds += time.perf_counter() - start

    def _loop(self) -> None:
        next_tick = self._t0_mono
        while not self._stop.is_set():
            self.sample_once()
            next_tick += self.interval_s
            delay = next_tick - time.monotonic()
            if delay < 0:  # fell behind: skip the missed ticks
                next_tick = time.monotonic()
                delay = 0.0
            if self._stop.wait(delay):
                break

    def start(self) -> TelemetrySampler:
        if self._thread is not None:
            raise RuntimeError("sampler already started")
        self._t0_mono = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="runner-telemetry", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[dict[str, Any]]:
        """Stop the thread, take a final reading, release NVML; returns the samples. Idempotent."""
        if self._stopped:
            return self.samples
        self._stopped = True
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=max(5.0, 2 * self.interval_s))
            if not self._thread.is_alive():
                self.sample_once()
        for probe in self._probes:
            field_errors = getattr(probe, "errors", 0)  # readings a probe could not take (counted by it)
            if field_errors:
                self.errors[probe.source] = self.errors.get(probe.source, 0) + field_errors
            if getattr(probe, "last_error", None):
                self.last_error[probe.source] = probe.last_error
            try:
                probe.close()
            except Exception as e:  # noqa: BLE001
                self.last_error[probe.source] = f"close: {type(e).__name__}: {e}"
        self._probes = []
        return self.samples

    def status(self) -> dict[str, Any]:
        """For the bundle: rate, sources, error counts, and why a source was not sampled."""
        return {"interval_s": self.interval_s, "ticks": self.ticks, "rows": len(self.samples),
                "errors": dict(self.errors), "last_error": dict(self.last_error),
                "unavailable": dict(self.unavailable), "cost_per_sample_s": self.cost_per_sample_s}

    def __enter__(self) -> TelemetrySampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
