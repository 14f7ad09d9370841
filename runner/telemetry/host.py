"""Host-wide CPU load while a run executes: busy share of all cores, steal, load average.

A run's throughput on a CPU depends on what else the machine did meanwhile. Each reading
compares psutil's system CPU times (Linux: /proc/stat) with the previous reading of this
probe, so the figures cover exactly one sampling interval (psutil's own
`cpu_times_percent(None)` keeps one module-wide previous reading, which two samplers in one
process would share). Busy = every CPU state but idle, iowait and steal; steal (time the
hypervisor gave this VM's CPUs to others) is kept apart. Both are % of ALL cores' time.

What the run itself used is read by the container or process-tree probe; the sampler
subtracts it (`attribute_other_load`), leaving `other_cpu_pct`: what other processes used.
"""

from __future__ import annotations

from typing import Any

import psutil

from runner.telemetry.schema import empty_sample

_NOT_BUSY = ("idle", "iowait", "steal")
_COUNTED_TWICE = ("guest", "guest_nice")  # Linux counts guest time inside user and nice too


def _total(times: Any) -> float:
    fields = times._asdict()
    return sum(fields.values()) - sum(fields.get(k, 0.0) for k in _COUNTED_TWICE)


def busy_and_steal_pct(before: Any, after: Any) -> tuple[float, float] | None:
    """(busy %, steal %) of all cores between two `psutil.cpu_times()` readings; None if no time passed."""
    span = _total(after) - _total(before)
    if span <= 0:
        return None
    a, b = after._asdict(), before._asdict()
    idle = sum(a.get(k, 0.0) - b.get(k, 0.0) for k in _NOT_BUSY)
    steal = a.get("steal", 0.0) - b.get("steal", 0.0)
    busy = span - idle
    return _clamp(100.0 * busy / span), _clamp(100.0 * steal / span)


def _clamp(pct: float) -> float:
    return min(100.0, max(0.0, pct))


class HostLoadProbe:
    source = "host"

    def __init__(self) -> None:
        self.cpus = psutil.cpu_count() or 1
        self._last = psutil.cpu_times()

    def sample(self, t: float, elapsed_s: float) -> list[dict[str, Any]]:
        now = psutil.cpu_times()
        shares = busy_and_steal_pct(self._last, now)
        self._last = now
        row = empty_sample(t, elapsed_s, self.source)
        row.update(host_cpus=self.cpus, host_load_1m=float(psutil.getloadavg()[0]))
        if shares is not None:
            row.update(host_cpu_pct=shares[0], host_steal_pct=shares[1])
        return [row]

    def close(self) -> None:
        pass


def attribute_other_load(host_row: dict[str, Any], run_cpu_pct: float | None) -> None:
    """Set `other_cpu_pct` on a host row: host busy less the run's own CPU (100 = one core), as % of all cores."""
    busy, cpus = host_row.get("host_cpu_pct"), host_row.get("host_cpus")
    if busy is None or run_cpu_pct is None or not cpus:
        return
    host_row["other_cpu_pct"] = _clamp(busy - run_cpu_pct / cpus)
