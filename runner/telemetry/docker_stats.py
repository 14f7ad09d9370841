"""Container CPU and memory through the Docker engine's stats stream.

The engine computes a reading about once a second and pushes it on a stats stream; a single
request (even "one-shot") waits for the next one, which would stall every other source on
the sampling thread. So a small reader thread follows the stream and keeps the latest
reading, and `sample()` takes it without waiting: one row per new reading. CPU % is computed
the way `docker stats` does: container CPU time delta / host CPU time delta x online CPUs x 100.
The reader ends with the stream (the container stopped) or at the first reading after `close()`.
"""

from __future__ import annotations

import threading
from typing import Any

from runner.telemetry.schema import empty_sample


def memory_without_cache(mem: dict[str, Any]) -> int | None:
    """Memory use less the inactive page cache (cgroup v1 and v2 spell it differently)."""
    usage = mem.get("usage")
    if usage is None:
        return None
    stats = mem.get("stats") or {}
    for key in ("total_inactive_file", "inactive_file"):
        cache = stats.get(key)
        if cache is not None and cache < usage:
            return int(usage - cache)
    return int(usage)


def cpu_percent(stats: dict[str, Any]) -> float | None:
    """CPU % of a stats reading from its `cpu_stats` and `precpu_stats`; None on the first reading."""
    cpu, pre = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    total, pre_total = (cpu.get("cpu_usage") or {}).get("total_usage"), (pre.get("cpu_usage") or {}).get("total_usage")
    system, pre_system = cpu.get("system_cpu_usage"), pre.get("system_cpu_usage")
    if None in (total, pre_total, system, pre_system):
        return None
    d_total, d_system = total - pre_total, system - pre_system
    if d_system <= 0 or d_total < 0:
        return None
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    return d_total / d_system * online * 100.0


class ContainerProbe:
    source = "container"

    def __init__(self, container: Any) -> None:
        self.container = container
        self.errors = 0
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._latest: dict[str, Any] | None = None
        self._seq = 0
        self._taken = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="runner-docker-stats", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        try:
            for stats in self.container.stats(stream=True, decode=True):
                with self._lock:
                    self._latest, self._seq = stats, self._seq + 1
                if self._stop.is_set():
                    break
        except Exception as e:  # noqa: BLE001 - the engine's errors are many; count, never raise
            if not self._stop.is_set():
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"

    def sample(self, t: float, elapsed_s: float) -> list[dict[str, Any]]:
        with self._lock:
            stats, seq = self._latest, self._seq
        if stats is None or seq == self._taken:
            return []  # no new reading since the last sample
        self._taken = seq
        mem = stats.get("memory_stats") or {}
        row = empty_sample(t, elapsed_s, self.source)
        row.update(cpu_pct=cpu_percent(stats), mem_bytes=memory_without_cache(mem),
                   mem_limit_bytes=mem.get("limit"), processes=(stats.get("pids_stats") or {}).get("current"))
        return [row]

    def close(self) -> None:
        self._stop.set()  # the reader leaves at its next reading; it is a daemon thread
