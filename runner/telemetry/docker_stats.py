"""Container CPU and memory through the Docker engine's stats API (one-shot reads).

One-shot reads (API >= 1.41) return at once instead of waiting a second for the engine's own
previous sample, so CPU % is computed here from two consecutive reads, the way `docker stats`
does: container CPU time delta / host CPU time delta x online CPUs x 100.
"""

from __future__ import annotations

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


class ContainerProbe:
    source = "container"

    def __init__(self, container: Any) -> None:
        self.container = container
        self._prev: tuple[int, int] | None = None

    def _read(self) -> dict[str, Any]:
        try:
            return self.container.stats(stream=False, one_shot=True)
        except TypeError:  # an SDK without one_shot
            return self.container.stats(stream=False)

    def sample(self, t: float, elapsed_s: float) -> list[dict[str, Any]]:
        stats = self._read()
        cpu = stats.get("cpu_stats") or {}
        total = (cpu.get("cpu_usage") or {}).get("total_usage")
        system = cpu.get("system_cpu_usage")
        online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
        cpu_pct = None
        if total is not None and system is not None:
            if self._prev is not None:
                d_total, d_system = total - self._prev[0], system - self._prev[1]
                if d_system > 0 and d_total >= 0:
                    cpu_pct = d_total / d_system * online * 100.0
            self._prev = (total, system)
        mem = stats.get("memory_stats") or {}
        row = empty_sample(t, elapsed_s, self.source)
        row.update(cpu_pct=cpu_pct, mem_bytes=memory_without_cache(mem), mem_limit_bytes=mem.get("limit"),
                   processes=(stats.get("pids_stats") or {}).get("current"))
        return [row]

    def close(self) -> None:
        pass
